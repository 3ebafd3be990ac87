//! Whether the store can be reached, checked in the background so `/health` and `/ready`
//! answer at once (never waiting on a database that is gone) and say what is wrong.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics;
use crate::store::{StoreInfo, VectorStore};

/// How often the store is asked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The store's last known reachability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub info: StoreInfo,
    pub reachable: bool,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct StoreHealth {
    reachable: AtomicBool,
    error: Mutex<Option<String>>,
}

impl StoreHealth {
    /// Asks the store once, now, and remembers the answer.
    pub fn check(&self, store: &dyn VectorStore) -> bool {
        let outcome = store.ping();
        let up = outcome.is_ok();
        let was_up = self.reachable.swap(up, Ordering::Relaxed);
        let error = outcome.err().map(|e| e.to_string());
        match (&error, was_up) {
            (Some(e), true) => tracing::error!(error = %e, "the index database became unreachable"),
            (None, false) => tracing::info!("the index database is reachable"),
            _ => {}
        }
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = error;
        metrics::store_up(up);
        up
    }

    pub fn status(&self, info: StoreInfo) -> StoreStatus {
        StoreStatus {
            info,
            reachable: self.reachable.load(Ordering::Relaxed),
            error: self.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Keeps checking on a background task for as long as the process runs.
    pub fn watch(self: &Arc<Self>, store: Arc<dyn VectorStore>) {
        let health = self.clone();
        tokio::spawn(async move {
            loop {
                let (h, s) = (health.clone(), store.clone());
                let _ = tokio::task::spawn_blocking(move || h.check(s.as_ref())).await;
                tokio::time::sleep(CHECK_EVERY).await;
            }
        });
    }
}
