//! Dynamic batching: a bounded queue in front of a dedicated inference thread.
//!
//! Callers enqueue one input and await its embedding; the worker takes whatever is waiting (up to
//! `max_batch`) and runs it as one batch, so concurrent requests share a model call. A full queue
//! is answered at once with [`EmbedError::Overloaded`] instead of growing memory, and requests
//! whose caller has gone are dropped before they cost inference.

use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::error::EmbedError;
use crate::metrics;

/// Which tower a queue feeds; used for metrics labels and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Text,
    Image,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
        }
    }
}

struct Request<I> {
    input: I,
    reply: oneshot::Sender<Result<Vec<f32>, EmbedError>>,
}

/// Handle to one modality's queue; cheap to clone.
pub struct BatchQueue<I> {
    sender: Sender<Request<I>>,
    modality: Modality,
}

impl<I> Clone for BatchQueue<I> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone(), modality: self.modality }
    }
}

impl<I: Send + 'static> BatchQueue<I> {
    /// Starts the worker thread. `run` embeds a batch and must return one vector per input.
    pub fn spawn<F>(modality: Modality, max_batch: usize, capacity: usize, run: F) -> Self
    where
        F: FnMut(&[I]) -> Result<Vec<Vec<f32>>, EmbedError> + Send + 'static,
    {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        std::thread::Builder::new()
            .name(format!("embed-{}", modality.as_str()))
            .spawn(move || worker(modality, max_batch.max(1), receiver, run))
            .expect("spawning the embedding worker thread: this is a bug or the OS is out of threads");
        Self { sender, modality }
    }

    /// Embeds one input, batched with whatever else is waiting.
    pub async fn embed(&self, input: I) -> Result<Vec<f32>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        self.sender.try_send(Request { input, reply }).map_err(|e| match e {
            TrySendError::Full(_) => EmbedError::Overloaded(self.modality.as_str()),
            TrySendError::Disconnected(_) => EmbedError::WorkerGone,
        })?;
        metrics::embed_queue_depth(self.modality.as_str(), self.sender.len());
        answer.await.map_err(|_| EmbedError::WorkerGone)?
    }

    /// Requests waiting for the model.
    pub fn depth(&self) -> usize {
        self.sender.len()
    }
}

fn worker<I, F>(modality: Modality, max_batch: usize, receiver: Receiver<Request<I>>, mut run: F)
where
    F: FnMut(&[I]) -> Result<Vec<Vec<f32>>, EmbedError>,
{
    let label = modality.as_str();
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        metrics::embed_queue_depth(label, receiver.len());
        batch.retain(|r| !r.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (inputs, replies): (Vec<I>, Vec<_>) = batch.into_iter().map(|r| (r.input, r.reply)).unzip();
        let started = Instant::now();
        let outcome = run(&inputs);
        metrics::embed_batch(label, inputs.len(), started.elapsed());
        match outcome {
            Ok(vectors) if vectors.len() == replies.len() => {
                for (reply, vector) in replies.into_iter().zip(vectors) {
                    let _ = reply.send(Ok(vector));
                }
            }
            Ok(vectors) => {
                let msg = format!("model returned {} embeddings for {} inputs", vectors.len(), replies.len());
                for reply in replies {
                    let _ = reply.send(Err(EmbedError::Inference(msg.clone())));
                }
            }
            Err(err) => {
                tracing::error!(modality = label, error = %err, "batch inference failed");
                let msg = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(EmbedError::Inference(msg.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_get_their_own_answers() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let queue = BatchQueue::spawn(Modality::Text, 8, 64, move |batch: &[u32]| {
            seen.lock().unwrap().push(batch.len());
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(batch.iter().map(|&x| vec![x as f32, 2.0 * x as f32]).collect())
        });
        let tasks: Vec<_> = (0..20u32)
            .map(|i| {
                let q = queue.clone();
                tokio::spawn(async move { (i, q.embed(i).await.unwrap()) })
            })
            .collect();
        for t in tasks {
            let (i, v) = t.await.unwrap();
            assert_eq!(v, vec![i as f32, 2.0 * i as f32]);
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.iter().any(|&s| s > 1), "no batching happened: {sizes:?}");
        assert!(sizes.iter().all(|&s| s <= 8), "batch over the limit: {sizes:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_overloaded_at_once() {
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let queue = BatchQueue::spawn(Modality::Image, 1, 2, move |batch: &[u32]| {
            let _ = gate_rx.recv();
            Ok(batch.iter().map(|_| vec![0.0]).collect())
        });
        // One request is taken by the worker (blocked on the gate), two fill the queue.
        let mut pending = Vec::new();
        for i in 0..3u32 {
            let q = queue.clone();
            pending.push(tokio::spawn(async move { q.embed(i).await }));
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        let err = queue.embed(99).await.unwrap_err();
        assert!(matches!(err, EmbedError::Overloaded("image")), "{err}");
        for _ in 0..3 {
            gate_tx.send(()).unwrap();
        }
        for p in pending {
            assert!(p.await.unwrap().is_ok());
        }
    }
}
