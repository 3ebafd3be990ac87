//! One computation per key at a time: a caller asking for a key that is being computed waits
//! for that computation's result instead of starting another.
//!
//! Thumbnails use it: ten thousand requests for the thumbnail of one huge image decode it once,
//! and every one of them is answered with that render. Knows nothing of what is computed.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OnceCell;

pub struct SingleFlight<K, V> {
    /// Computations in flight. Weak, so a finished one is gone once its last waiter is.
    calls: Mutex<HashMap<K, Weak<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    pub fn new() -> Self {
        Self { calls: Mutex::new(HashMap::new()) }
    }

    /// The result of `compute` for `key`, run by the first caller; callers arriving while it
    /// runs wait for it. If the caller running it gives up (its request timed out), a waiting
    /// caller runs its own `compute`.
    pub async fn run<F, Fut>(&self, key: K, compute: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let call = self.join(key);
        call.get_or_init(compute).await.clone()
    }

    /// Computations in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().values().filter(|call| call.strong_count() > 0).count()
    }

    fn join(&self, key: K) -> Arc<OnceCell<V>> {
        let mut calls = self.lock();
        if let Some(call) = calls.get(&key).and_then(Weak::upgrade) {
            return call;
        }
        // Few keys are in flight at once, so sweeping the finished ones here keeps the map small.
        calls.retain(|_, call| call.strong_count() > 0);
        let call = Arc::new(OnceCell::new());
        calls.insert(key, Arc::downgrade(&call));
        call
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Weak<OnceCell<V>>>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_of_one_key_share_one_computation() {
        let flights = Arc::new(SingleFlight::<&str, usize>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..100)
            .map(|_| {
                let (flights, runs) = (flights.clone(), runs.clone());
                tokio::spawn(async move {
                    flights
                        .run("a", || async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            runs.fetch_add(1, Ordering::SeqCst) + 7
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0, "a finished computation is forgotten");
        assert_eq!(flights.run("a", || async { 9 }).await, 9, "a later call computes again");
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_hands_the_computation_to_a_waiting_one() {
        let flights = Arc::new(SingleFlight::<u8, u8>::new());
        let first = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(1, std::future::pending).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(1, || async { 2 }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap(), 2);
    }
}
