//! Dynamic batching: a bounded queue in front of a dedicated inference thread.
//!
//! Callers enqueue one input and await its embedding; the worker takes whatever is waiting (up to
//! `max_batch`) and runs it as one batch, so concurrent requests share a model call. A full queue
//! is answered at once with [`EmbedError::Overloaded`] instead of growing memory, and requests
//! whose caller has gone are dropped before they cost inference. Inputs the model pads to a common
//! length can be split into calls of similar length ([`Grouping::ByLength`]).
//!
//! A panic inside a model call is caught: that call's callers get an error and the worker keeps
//! serving. Should the worker thread end anyway, [`BatchQueue::is_running`] says so, so readiness
//! can tell the truth.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::error::{panic_message, EmbedError};
use super::grouping;
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

/// How the worker turns the requests it took from the queue into model calls.
pub enum Grouping<I> {
    /// One call for all of them: inputs of one shape, such as pixel tensors.
    Whole,
    /// Inputs the model pads to the longest of their call, such as token ids: sorted by `length`
    /// and cut into calls where the padding saved outweighs `call_overhead`, the fixed cost of a
    /// call in length units (see [`grouping::plan`]).
    ByLength { length: fn(&I) -> usize, call_overhead: usize },
}

// By hand: a derive would ask `I: Copy`, which the inputs are not.
impl<I> Clone for Grouping<I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for Grouping<I> {}

struct Request<I> {
    input: I,
    reply: oneshot::Sender<Result<Vec<f32>, EmbedError>>,
}

/// Handle to one modality's queue; cheap to clone.
pub struct BatchQueue<I> {
    sender: Sender<Request<I>>,
    modality: Modality,
    running: Arc<AtomicBool>,
}

impl<I> Clone for BatchQueue<I> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone(), modality: self.modality, running: self.running.clone() }
    }
}

impl<I: Send + 'static> BatchQueue<I> {
    /// Starts the worker thread. `run` embeds a batch and must return one vector per input.
    pub fn spawn<F>(modality: Modality, max_batch: usize, capacity: usize, grouping: Grouping<I>, run: F) -> Self
    where
        F: FnMut(&[I]) -> Result<Vec<Vec<f32>>, EmbedError> + Send + 'static,
    {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let running = Arc::new(AtomicBool::new(true));
        let worker = Worker { modality, max_batch: max_batch.max(1), grouping, run, _running: RunningFlag(running.clone()) };
        std::thread::Builder::new()
            .name(format!("embed-{}", modality.as_str()))
            .spawn(move || worker.serve(receiver))
            .expect("spawning the embedding worker thread: this is a bug or the OS is out of threads");
        Self { sender, modality, running }
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

    /// Whether the worker thread is still there to answer. It only stops when every handle is
    /// gone, unless something outside the caught model call panicked: then this turns false.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// Cleared when the worker thread ends, however it ends (a drop runs during unwinding too).
struct RunningFlag(Arc<AtomicBool>);

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

struct Worker<I, F> {
    modality: Modality,
    max_batch: usize,
    grouping: Grouping<I>,
    run: F,
    _running: RunningFlag,
}

impl<I, F> Worker<I, F>
where
    F: FnMut(&[I]) -> Result<Vec<Vec<f32>>, EmbedError>,
{
    fn serve(mut self, receiver: Receiver<Request<I>>) {
        let label = self.modality.as_str();
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            metrics::embed_queue_depth(label, receiver.len());
            batch.retain(|r| !r.reply.is_closed());
            for call in split(batch, self.grouping) {
                self.answer(call);
            }
        }
    }

    /// Runs one model call and answers its callers.
    fn answer(&mut self, mut call: Vec<Request<I>>) {
        let label = self.modality.as_str();
        // Callers may have given up while the earlier calls of the same drain ran.
        call.retain(|r| !r.reply.is_closed());
        if call.is_empty() {
            return;
        }
        let (inputs, replies): (Vec<I>, Vec<_>) = call.into_iter().map(|r| (r.input, r.reply)).unzip();
        let outcome = match self.run_caught(&inputs) {
            Err(Panicked(message)) if inputs.len() > 1 => {
                // One bad input should not fail the strangers it was batched with: run each alone,
                // so only the one that panics again gets the error.
                tracing::error!(modality = label, inputs = inputs.len(), panic = %message, "model call panicked; retrying its inputs one by one");
                for (input, reply) in inputs.chunks(1).zip(replies) {
                    let single = self.run_caught(input).unwrap_or_else(|p| Err(p.into_error(label)));
                    reply_all(label, vec![reply], single);
                }
                return;
            }
            Err(panicked) => Err(panicked.into_error(label)),
            Ok(result) => result,
        };
        reply_all(label, replies, outcome);
    }

    /// The model call, timed, with a panic caught rather than ending the thread. The unwind may
    /// leave the closure mid-call (hence `AssertUnwindSafe`): that is safe for our encoders, which
    /// build every input tensor afresh per call and keep nothing but the session between calls.
    fn run_caught(&mut self, inputs: &[I]) -> Result<Result<Vec<Vec<f32>>, EmbedError>, Panicked> {
        let started = Instant::now();
        let run = &mut self.run;
        let outcome = catch_unwind(AssertUnwindSafe(|| run(inputs))).map_err(Panicked::from_payload);
        metrics::embed_batch(self.modality.as_str(), inputs.len(), started.elapsed());
        outcome
    }
}

/// A model call that panicked, with the panic's message.
struct Panicked(String);

impl Panicked {
    fn from_payload(payload: Box<dyn std::any::Any + Send>) -> Self {
        Self(panic_message(&*payload))
    }

    fn into_error(self, label: &str) -> EmbedError {
        EmbedError::Inference(format!("the {label} model panicked: {}", self.0))
    }
}

fn reply_all(label: &'static str, replies: Vec<oneshot::Sender<Result<Vec<f32>, EmbedError>>>, outcome: Result<Vec<Vec<f32>>, EmbedError>) {
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
            let msg = match err {
                EmbedError::Inference(msg) => msg,
                other => other.to_string(),
            };
            for reply in replies {
                let _ = reply.send(Err(EmbedError::Inference(msg.clone())));
            }
        }
    }
}

/// The model calls for one drained batch, in the order they run.
fn split<I>(mut batch: Vec<Request<I>>, grouping: Grouping<I>) -> Vec<Vec<Request<I>>> {
    if batch.is_empty() {
        return Vec::new();
    }
    let Grouping::ByLength { length, call_overhead } = grouping else { return vec![batch] };
    // Shortest first: those calls are the cheapest, so most callers are answered soonest.
    batch.sort_by_key(|r| length(&r.input));
    let lengths: Vec<usize> = batch.iter().map(|r| length(&r.input)).collect();
    let groups = grouping::plan(&lengths, call_overhead);
    let mut calls = Vec::with_capacity(groups.len());
    for group in groups.iter().rev() {
        calls.push(batch.split_off(group.start));
    }
    calls.reverse();
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Answers within a few seconds, so a lost reply fails the test instead of hanging it.
    async fn answered<T>(task: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("no answer within 10 s").expect("task panicked")
    }

    /// Holds the worker inside a model call (the one whose first input is `blocker`) until the
    /// gate opens, so the requests sent meanwhile are all waiting when it next drains the queue.
    struct Gate {
        open: crossbeam_channel::Sender<()>,
        entered: crossbeam_channel::Receiver<()>,
    }

    impl Gate {
        async fn wait_until_held(&self) {
            for _ in 0..500 {
                if self.entered.try_recv().is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the worker never started the blocking call");
        }

        fn open(&self) {
            self.open.send(()).expect("the worker waits at the gate");
        }
    }

    fn gated(blocker: u32) -> (Gate, impl Fn(u32) + Send + 'static) {
        let (open, opened) = crossbeam_channel::bounded::<()>(0);
        let (enter, entered) = crossbeam_channel::bounded::<()>(1);
        let hold = move |id| {
            if id == blocker {
                let _ = enter.send(());
                let _ = opened.recv();
            }
        };
        (Gate { open, entered }, hold)
    }

    async fn wait_for_depth<I: Send + 'static>(queue: &BatchQueue<I>, depth: usize) {
        for _ in 0..500 {
            if queue.depth() == depth {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("queue depth stayed {} instead of reaching {depth}", queue.depth());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_get_their_own_answers() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let queue = BatchQueue::spawn(Modality::Text, 8, 64, Grouping::Whole, move |batch: &[u32]| {
            seen.lock().unwrap().push(batch.len());
            std::thread::sleep(Duration::from_millis(20));
            Ok(batch.iter().map(|&x| vec![x as f32, 2.0 * x as f32]).collect())
        });
        let tasks: Vec<_> = (0..20u32)
            .map(|i| {
                let q = queue.clone();
                tokio::spawn(async move { (i, q.embed(i).await.unwrap()) })
            })
            .collect();
        for t in tasks {
            let (i, v) = answered(t).await;
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
        let queue = BatchQueue::spawn(Modality::Image, 1, 2, Grouping::Whole, move |batch: &[u32]| {
            let _ = gate_rx.recv();
            Ok(batch.iter().map(|_| vec![0.0]).collect())
        });
        // One request is taken by the worker (blocked on the gate), two fill the queue.
        let mut pending = Vec::new();
        for i in 0..3u32 {
            let q = queue.clone();
            pending.push(tokio::spawn(async move { q.embed(i).await }));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let err = queue.embed(99).await.unwrap_err();
        assert!(matches!(err, EmbedError::Overloaded("image")), "{err}");
        for _ in 0..3 {
            gate_tx.send(()).unwrap();
        }
        for p in pending {
            assert!(answered(p).await.is_ok());
        }
    }

    /// A text-like input: an id to check the answer against, and a length the model pads to.
    type Text = (u32, usize);

    fn text_length(text: &Text) -> usize {
        text.1
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_13_texts_waiting_together_run_in_calls_of_similar_length() {
        let calls = Arc::new(Mutex::new(Vec::<Vec<usize>>::new()));
        let seen = calls.clone();
        let (gate, hold) = gated(0);
        let grouping = Grouping::ByLength { length: text_length, call_overhead: 10 };
        let queue = BatchQueue::spawn(Modality::Text, 32, 64, grouping, move |batch: &[Text]| {
            hold(batch[0].0);
            seen.lock().unwrap().push(batch.iter().map(|t| t.1).collect());
            // The "embedding" names the input, so a swapped answer shows.
            Ok(batch.iter().map(|&(id, len)| vec![id as f32, len as f32]).collect())
        });
        let first = {
            let q = queue.clone();
            tokio::spawn(async move { q.embed((0, 5)).await })
        };
        gate.wait_until_held().await;
        // Short and long texts interleaved, as they arrive from different clients.
        let texts: Vec<Text> = (1..=12).map(|id| (id, if id % 2 == 0 { 60 } else { 4 + id as usize % 3 })).collect();
        let pending: Vec<_> = texts
            .iter()
            .map(|&text| {
                let q = queue.clone();
                tokio::spawn(async move { (text, q.embed(text).await) })
            })
            .collect();
        wait_for_depth(&queue, texts.len()).await;
        gate.open();
        assert!(answered(first).await.is_ok());
        for task in pending {
            let ((id, len), answer) = answered(task).await;
            assert_eq!(answer.unwrap(), vec![id as f32, len as f32], "text {id} got another text's answer");
        }
        let calls = calls.lock().unwrap();
        // The blocker alone, then the twelve drained together: the short ones in one call, padded
        // to 6, and the long ones in another, instead of twelve texts padded to 60.
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[1], vec![4, 4, 5, 5, 6, 6], "{calls:?}");
        assert_eq!(calls[2], vec![60; 6], "{calls:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_whole_grouping_keeps_one_call() {
        let calls = Arc::new(Mutex::new(Vec::<usize>::new()));
        let seen = calls.clone();
        let (gate, hold) = gated(0);
        let queue = BatchQueue::spawn(Modality::Image, 32, 64, Grouping::Whole, move |batch: &[Text]| {
            hold(batch[0].0);
            seen.lock().unwrap().push(batch.len());
            Ok(batch.iter().map(|&(id, _)| vec![id as f32]).collect())
        });
        let first = {
            let q = queue.clone();
            tokio::spawn(async move { q.embed((0, 5)).await })
        };
        gate.wait_until_held().await;
        let pending: Vec<_> = [(1, 4), (2, 60), (3, 4)]
            .into_iter()
            .map(|text| {
                let q = queue.clone();
                tokio::spawn(async move { q.embed(text).await })
            })
            .collect();
        wait_for_depth(&queue, 3).await;
        gate.open();
        answered(first).await.unwrap();
        for task in pending {
            answered(task).await.unwrap();
        }
        assert_eq!(*calls.lock().unwrap(), vec![1, 3]);
    }

    const POISON: u32 = 13;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_14_a_panic_in_the_model_fails_only_its_input_and_the_worker_keeps_serving() {
        let (gate, hold) = gated(0);
        let queue = BatchQueue::spawn(Modality::Text, 32, 64, Grouping::Whole, move |batch: &[u32]| {
            hold(batch[0]);
            assert!(!batch.contains(&POISON), "the model cannot take input {POISON}");
            Ok(batch.iter().map(|&x| vec![x as f32]).collect())
        });
        let first = {
            let q = queue.clone();
            tokio::spawn(async move { q.embed(0).await })
        };
        gate.wait_until_held().await;
        // The poisonous input shares a batch with two innocent ones.
        let pending: Vec<_> = [1, POISON, 2]
            .into_iter()
            .map(|x| {
                let q = queue.clone();
                tokio::spawn(async move { (x, q.embed(x).await) })
            })
            .collect();
        wait_for_depth(&queue, 3).await;
        gate.open();
        answered(first).await.unwrap();
        for task in pending {
            match answered(task).await {
                (POISON, answer) => {
                    let err = answer.expect_err("the panicking input must get an error");
                    assert!(
                        matches!(&err, EmbedError::Inference(m) if m.contains("panicked") && m.contains("cannot take input 13")),
                        "{err}"
                    );
                }
                (x, answer) => assert_eq!(answer.expect("an innocent input batched with a panicking one"), vec![x as f32]),
            }
        }
        // A batch of one that panics, then the queue still answers.
        let err = queue.embed(POISON).await.unwrap_err();
        assert!(matches!(err, EmbedError::Inference(_)), "{err}");
        assert_eq!(queue.embed(7).await.unwrap(), vec![7.0]);
        assert!(queue.is_running());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_14_a_worker_that_dies_anyway_says_so_and_nobody_hangs() {
        // A panic outside the model call (here in the length function) still ends the thread:
        // the queue must then report it, and answer at once rather than leave callers waiting.
        fn exploding_length(text: &Text) -> usize {
            assert!(text.0 != POISON, "length of {POISON}");
            text.1
        }
        let grouping = Grouping::ByLength { length: exploding_length, call_overhead: 0 };
        let queue = BatchQueue::spawn(Modality::Text, 32, 64, grouping, |batch: &[Text]| Ok(batch.iter().map(|_| vec![1.0]).collect()));
        assert!(queue.is_running());
        assert_eq!(queue.embed((1, 3)).await.unwrap(), vec![1.0]);
        let q = queue.clone();
        let lost = answered(tokio::spawn(async move { q.embed((POISON, 3)).await })).await;
        assert!(matches!(lost, Err(EmbedError::WorkerGone)), "{lost:?}");
        for _ in 0..100 {
            if !queue.is_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!queue.is_running(), "the worker is gone but the queue says it runs");
        let q = queue.clone();
        let later = answered(tokio::spawn(async move { q.embed((2, 3)).await })).await;
        assert!(matches!(later, Err(EmbedError::WorkerGone)), "{later:?}");
    }
}
