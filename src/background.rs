//! Background work (a re-embed) yields the CPU to requests: its threads run at a lower
//! scheduling priority (`nice` 10), so searches keep their latency while it takes whatever is
//! left of the machine. Threads inherit the priority of the thread that creates them, which is
//! how a model loaded from a lowered thread gets all of its inference threads lowered too.

use std::sync::OnceLock;

/// How much background threads are lowered (`nice` steps): the scheduler gives a thread about
/// ten times the CPU of one 10 steps nicer when both want it.
const NICENESS: libc::c_int = 10;

/// This thread's `nice` value.
fn thread_nice() -> libc::c_int {
    // SAFETY: getpriority and gettid have no memory-safety preconditions; with PRIO_PROCESS and
    // a thread id, Linux answers for that thread.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// Lowers the calling thread's priority by [`NICENESS`] (and that of the threads it creates
/// from now on). Failure (a platform without per-thread priorities) only means the work is not
/// deprioritised.
pub fn lower_this_thread() {
    let lowered = (thread_nice() + NICENESS).min(19);
    // SAFETY: as in `thread_nice`; lowering one's own priority needs no privilege.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, lowered) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower a background thread's priority");
    }
}

/// Threads (one per core) at background priority, for the CPU work of background jobs
/// (decoding and preparing images to re-embed).
pub fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("background-{i}"))
            .start_handler(|_| lower_this_thread())
            .build()
            .expect("building the background thread pool: this is a bug or the OS is out of threads")
    })
}

/// Runs `work` on the background pool and waits for it without blocking an async thread.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    pool().spawn(move || {
        let _ = sender.send(work());
    });
    receiver.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_threads_run_at_a_lower_priority_and_the_caller_keeps_its_own() {
        let here = thread_nice();
        let background = pool().install(thread_nice);
        assert_eq!(background, (here + NICENESS).min(19));
        assert_eq!(thread_nice(), here);
    }
}
