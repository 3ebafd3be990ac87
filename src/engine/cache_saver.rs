//! Saves what the store keeps in memory (the embedded store's approximate index) while the
//! server runs, not only at shutdown: a process that is killed then restarts by replaying the
//! few changes since the last save instead of replaying or rebuilding everything.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;

/// Saves every `every` for as long as the process runs (a store skips a save when nothing
/// changed since the last one).
pub fn keep_saving(engine: Arc<Engine>, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate: the index was just loaded
        loop {
            ticks.tick().await;
            let engine = engine.clone();
            let saved = tokio::task::spawn_blocking(move || engine.save_caches()).await;
            match saved {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the approximate index; trying again later"),
                Err(e) => tracing::warn!(error = %e, "saving the approximate index failed"),
            }
        }
    });
}
