//! Ingesting many files: walking a folder (walk errors are results, not silence) and a window of
//! files in flight whose embedded images are committed to the store in batches (one durable
//! write per batch instead of one per file). Shared by directory jobs and `visionquery index`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::exclude::Exclusions;
use super::ingest::{Staged, WhenBusy};
use super::{Engine, EngineError};
use crate::store::{ImageRecord, StoreError};

/// File endings treated as images when walking a folder. HEIC/HEIF/AVIF are listed even in a
/// build without the `heif` feature, so that a job reports them per file ("HEIC support not
/// built in") instead of passing over them in silence.
pub const IMAGE_EXTENSIONS: [&str; 22] = [
    "jpg", "jpeg", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff", "jpe", // the image crate
    "heic", "heif", "hif", "avif", // libheif
    "dng", "cr2", "cr3", "nef", "arw", "raf", "orf", "rw2", // camera RAW previews
];

/// What a folder walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Image files, sorted.
    pub files: Vec<PathBuf>,
    /// Entries that could not be read (path, reason): reported as failed files.
    pub errors: Vec<(String, String)>,
}

/// Image files in `dir` (and below, if `recursive`). Files and folders the exclusion policy
/// names (hidden ones, `@eaDir`, partial downloads, the user's globs) are skipped.
/// Fails only when `dir` itself cannot be read; errors below it are listed in the result.
pub fn walk_images(dir: &Path, recursive: bool, exclusions: &Exclusions) -> Result<Walk, EngineError> {
    let mut walk = Walk::default();
    let walker = walkdir::WalkDir::new(dir).follow_links(false).max_depth(if recursive { usize::MAX } else { 1 });
    let entries = walker.into_iter().filter_entry(|e| e.depth() == 0 || !exclusions.excludes_entry(e.path()));
    for entry in entries {
        match entry {
            Ok(e) if e.file_type().is_file() || e.path_is_symlink() => {
                if has_image_extension(e.path()) {
                    walk.files.push(e.into_path());
                }
            }
            Ok(_) => {}
            Err(e) if e.depth() == 0 => {
                return Err(EngineError::Unreadable { path: dir.display().to_string(), message: io_message(&e) });
            }
            Err(e) => {
                let path = e.path().unwrap_or(dir).display().to_string();
                walk.errors.push((path, format!("cannot read: {}", io_message(&e))));
            }
        }
    }
    walk.files.sort();
    Ok(walk)
}

fn io_message(e: &walkdir::Error) -> String {
    e.io_error().map_or_else(|| e.to_string(), ToString::to_string)
}

/// Whether a file's name ends like an image (the one test for walks and the watcher).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// How one file of a directory went: what a job records.
pub use crate::store::FileOutcome as FileResult;

/// Ingests `files` with `window` files in flight, so reading and decoding overlap inference and
/// model batches fill; embedded images are committed together, and `on_done` hears of a file
/// only once its result is durable. Stops taking new files once `cancel` is set.
pub async fn ingest_files(
    engine: Arc<Engine>,
    files: Vec<PathBuf>,
    window: usize,
    cancel: &AtomicBool,
    mut on_done: impl FnMut(&Path, FileResult),
) {
    let commit_every = (window / 2).max(1);
    let mut batch: Vec<StagedFile> = Vec::new();
    let mut in_flight = Window::default();
    let mut todo = files.into_iter();
    loop {
        while in_flight.len() < window.max(1) && !cancel.load(Ordering::Relaxed) {
            let Some(path) = todo.next() else { break };
            let engine = engine.clone();
            in_flight.spawn(path.clone(), async move { stage_file(&engine, path).await });
        }
        let Some((path, outcome)) = in_flight.next().await else { break };
        match outcome {
            Ok(Staged::Done(ingested)) => on_done(&path, if ingested.is_new() { FileResult::Indexed } else { FileResult::Skipped }),
            Ok(Staged::Embedded { record, vector, generation }) => batch.push((path, record, vector, generation)),
            Err(error) => on_done(&path, FileResult::Failed(error)),
        }
        // Commit when the batch is full, or when the window has drained (nothing else to wait for).
        if batch.len() >= commit_every
            || (in_flight.len() == 0 && !batch.is_empty())
            || (cancel.load(Ordering::Relaxed) && !batch.is_empty())
        {
            for (path, result) in commit_batch(&engine, std::mem::take(&mut batch)).await {
                on_done(&path, result);
            }
        }
    }
    for (path, result) in commit_batch(&engine, batch).await {
        on_done(&path, result);
    }
}

async fn stage_file(engine: &Engine, path: PathBuf) -> Result<Staged, String> {
    let Some(requested) = path.to_str() else {
        return Err("file name is not valid UTF-8".into());
    };
    let canonical = engine.roots().resolve(requested).map_err(|e| e.to_string())?;
    // Jobs share the model with live requests: wait for room rather than lose a file; and a
    // database that went away is waited for, so the job continues when it is back.
    loop {
        match engine.stage(canonical.clone(), WhenBusy::Wait).await {
            Err(EngineError::Store(StoreError::Unavailable(why) | StoreError::StorageFull(why))) => wait_for_store(&why).await,
            outcome => return outcome.map_err(|e| e.to_string()),
        }
    }
}

/// How long a job waits before trying an unreachable store again.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

async fn wait_for_store(why: &str) {
    tracing::warn!(error = %why, "index database unavailable; the job waits for it");
    tokio::time::sleep(STORE_RETRY).await;
}

/// A file embedded and waiting for its batch's write: its path, record, vector and the index
/// generation whose model made the vector.
type StagedFile = (PathBuf, ImageRecord, Vec<f32>, String);

/// Writes a batch; the same content twice in one batch is stored once.
async fn commit_batch(engine: &Engine, mut batch: Vec<StagedFile>) -> Vec<(PathBuf, FileResult)> {
    let mut results = Vec::with_capacity(batch.len());
    let mut copies = Vec::new();
    loop {
        let mut seen = HashSet::new();
        let mut indexed = Vec::with_capacity(batch.len());
        let mut writes = Vec::with_capacity(batch.len());
        let generation = batch.first().map(|(.., g)| g.clone()).unwrap_or_default();
        let mut stale = Vec::new();
        for (path, record, vector, made_by) in batch {
            if made_by != generation {
                stale.push(path);
            } else if seen.insert(record.id.clone()) {
                indexed.push(path);
                writes.push((record, vector));
            } else {
                copies.push((record.id, record.path));
                results.push((path, FileResult::Skipped));
            }
        }
        batch = Vec::new();
        match engine.commit(&generation, writes.clone()).await {
            Ok(()) => results.extend(indexed.into_iter().map(|path| (path, FileResult::Indexed))),
            // Embedded by the model the index has just switched away from: again with the new one.
            Err(EngineError::GenerationChanged) => stale.extend(indexed),
            // Nothing of the batch was written (one transaction): write it again when the
            // database is back, rather than lose files that are embedded already.
            Err(EngineError::Store(StoreError::Unavailable(why) | StoreError::StorageFull(why))) => {
                wait_for_store(&why).await;
                batch.extend(indexed.into_iter().zip(writes).map(|(path, (record, vector))| (path, record, vector, generation.clone())));
            }
            Err(e) => {
                let message = e.to_string();
                results.extend(indexed.into_iter().map(|path| (path, FileResult::Failed(message.clone()))));
            }
        }
        for path in stale {
            match stage_file(engine, path.clone()).await {
                Ok(Staged::Embedded { record, vector, generation }) => batch.push((path, record, vector, generation)),
                Ok(Staged::Done(ingested)) => {
                    results.push((path, if ingested.is_new() { FileResult::Indexed } else { FileResult::Skipped }))
                }
                Err(error) => results.push((path, FileResult::Failed(error))),
            }
        }
        if batch.is_empty() {
            break;
        }
    }
    for (id, path) in copies {
        // The same content at another path, as a later ingest of that path would record it.
        if let Err(e) = engine.record_copy(&id, &path).await {
            tracing::warn!(%id, %path, error = %e, "could not record a copy for duplicate finding");
        }
    }
    results
}

/// Files being staged at once. A task that panics comes back as a failure of its file,
/// never lost (the job's count would otherwise never complete).
#[derive(Default)]
struct Window {
    tasks: JoinSet<Result<Staged, String>>,
    paths: HashMap<tokio::task::Id, PathBuf>,
}

impl Window {
    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn spawn(&mut self, path: PathBuf, work: impl Future<Output = Result<Staged, String>> + Send + 'static) {
        let handle = self.tasks.spawn(work);
        self.paths.insert(handle.id(), path);
    }

    async fn next(&mut self) -> Option<(PathBuf, Result<Staged, String>)> {
        let (id, outcome) = match self.tasks.join_next_with_id().await? {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "an ingest task panicked");
                let why = if e.is_panic() { "the task panicked" } else { "the task was cancelled" };
                (e.id(), Err(format!("internal error while ingesting: {why}")))
            }
        };
        let path = self.paths.remove(&id).expect("every task is recorded when spawned: this is a bug");
        Some((path, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{IngestOutcome, Ingested};
    use crate::store::conformance_record;

    #[tokio::test]
    async fn a_panicking_ingest_is_reported_as_a_failed_file_not_lost() {
        let mut window = Window::default();
        for i in 0..6 {
            let path = PathBuf::from(format!("/photos/{i}.jpg"));
            window.spawn(path.clone(), async move {
                if path.ends_with("3.jpg") {
                    panic!("decoder bug");
                }
                Ok(Staged::Done(Ingested { record: conformance_record("a"), outcome: IngestOutcome::Unchanged }))
            });
        }
        let mut reported = Vec::new();
        while let Some((path, outcome)) = window.next().await {
            reported.push((path, outcome.is_ok()));
        }
        assert_eq!(reported.len(), 6, "every file is reported: {reported:?}");
        let failed: Vec<_> = reported.iter().filter(|(_, ok)| !ok).collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].0.ends_with("3.jpg"));
    }

    #[test]
    fn walk_reports_unreadable_entries_and_fails_on_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join(".hidden.jpg"), b"x").unwrap();
        std::fs::create_dir(dir.path().join(".Trash-1000")).unwrap();
        std::fs::write(dir.path().join(".Trash-1000/b.jpg"), b"x").unwrap();
        // A folder nested deeper than PATH_MAX: reading it fails even for root.
        let status = std::process::Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg("n=$(printf 'd%.0s' $(seq 200)); for i in $(seq 24); do mkdir $n && cd $n || break; done; true")
            .status()
            .unwrap();
        assert!(status.success());
        let walk = walk_images(dir.path(), true, &Exclusions::default()).unwrap();
        assert_eq!(walk.files, vec![dir.path().join("a.jpg")]);
        assert!(!walk.errors.is_empty(), "the unreadable nested folder is reported");
        assert!(walk_images(&dir.path().join("missing"), true, &Exclusions::default()).is_err());
    }

    #[test]
    fn walks_skip_what_the_exclusion_policy_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["keep.jpg", "@eaDir/a.jpg/SYNOPHOTO_THUMB_M.jpg", "drafts/b.jpg", "c.jpg.part", "d.tmp", "._e.jpg", "sub/f.png"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let ex = Exclusions::new(&["drafts".into()]).unwrap();
        let walk = walk_images(dir.path(), true, &ex).unwrap();
        assert_eq!(walk.files, vec![dir.path().join("keep.jpg"), dir.path().join("sub/f.png")]);
    }
}
