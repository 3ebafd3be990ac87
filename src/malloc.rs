//! How the C allocator is set up for a long-running server.
//!
//! glibc gives every thread that allocates its own arena, up to eight per core, and keeps what is
//! freed in each. Searches run on tokio's blocking pool (dozens of threads under load) and read
//! pages of the database there, so each arena ended up holding its own scraps: at 200,000 images
//! the server grew by 118 MB during 16-client searching and never gave it back; with one arena per
//! core it grew by 2 MB, and answered faster (BENCHMARKS.md, "The embedded store at 1M, second
//! pass").

/// Caps glibc's arenas at one per core unless `MALLOC_ARENA_MAX` says otherwise. Call first
/// thing in `main`, before any thread starts. Other C libraries: nothing to do.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
        let cores = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes a tuning parameter; no thread has allocated in parallel yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores);
        }
    }
}

/// Hands the memory freed by start-up work (loading a model's weights and graph, reading the
/// index) back to the system. glibc returns only the free space at the very top of its main heap
/// by itself; with the arenas capped the model's temporary buffers land there, under live data,
/// and stayed resident (138 MB with the ViT-B/32 model). Cheap, and only worth calling after such
/// work, not per request.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
