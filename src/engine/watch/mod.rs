//! Folders that index themselves (`serve --watch`): inotify events on every image root, through
//! notify, become ingests and removals.
//!
//! How an event becomes an ingest: notify's thread passes raw events into a bounded channel
//! (when the loop is behind, that thread blocks, the kernel's queue overflows, and a rescan
//! follows: memory stays bounded however many files arrive). The loop maps each event to a
//! [`Change`] of one path, drops what the exclusion policy names, and lets the [`Debouncer`]
//! settle it: quiet for the settle time, and closed if it was being written. Settled files are
//! handed to the job runner as one `watch` job (the same runner and pipeline as directory jobs
//! and so as uploads: one way to ingest a file), with progress at `GET /jobs/{id}`. One watch
//! job runs at a time; what settles meanwhile waits for the next.
//!
//! Moves keep their id: a file renamed or moved under a root is ingested at its new path, where
//! ingest finds its content already indexed at a path that is gone and moves the record. That
//! is why removals wait for the job in flight: a path gone from the index only leaves it once
//! the files of the same batch had their chance to claim its content. A removed path whose
//! content was also seen at another path that still exists moves the image there; otherwise the
//! image leaves the index with its thumbnails. A folder removed or renamed away takes every
//! image below it.
//!
//! At start, and after the kernel's queue overflowed, a reconcile pass ([`reconcile`]) compares
//! the roots with the index and runs as a watch job too.
//!
//! Knows no HTTP. Several replicas sharing a PostgreSQL store may each watch the same roots:
//! their jobs find the same files already indexed (content ids), and removals are idempotent.

mod debounce;
pub mod reconcile;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use time::OffsetDateTime;
use tokio::sync::mpsc;

pub use self::debounce::{Change, Debouncer, Settled, OPEN_WRITER_TIMEOUT};
use super::exclude::Exclusions;
use super::jobs::JobManager;
use super::pipeline::{has_image_extension, walk_images};
use super::{blocking, Engine, EngineError};
use crate::metrics;
use crate::store::{FileFailure, ImageRecord};

/// Paths that may wait to settle at once; past it they are dropped and a rescan is run.
pub const MAX_PENDING: usize = 100_000;
/// Raw events buffered between notify's thread and the loop.
const EVENT_BUFFER: usize = 4096;
/// How often the loop looks for settled paths and at its job.
const TICK: Duration = Duration::from_millis(100);
/// How long the loop waits before trying again when the store cannot take a job.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start watching: {0}")]
    Start(String),
}

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// The image roots to watch (as configured; made canonical here).
    pub roots: Vec<PathBuf>,
    /// Quiet time before a closed file is indexed.
    pub settle: Duration,
    /// Folders under a root that are never indexed (the service's own data directory).
    pub ignore: Vec<PathBuf>,
}

/// The running watcher: events keep coming while it lives; dropping it stops watching.
pub struct FolderWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FolderWatcher {
    /// Watches every root that exists (one that cannot be watched is logged and skipped: its
    /// files are still served), then runs the reconcile pass and follows events. Must be called
    /// inside a Tokio runtime.
    pub fn start(engine: Arc<Engine>, jobs: Arc<JobManager>, settings: WatchSettings) -> Result<Self, WatchError> {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let handler = move |event: notify::Result<Event>| {
            // Blocks while the loop is behind: the kernel queue fills instead of our memory,
            // and its overflow is reported as a rescan.
            let _ = tx.blocking_send(event);
        };
        // Symlinks are not followed, as folder walks do not follow them.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = notify::RecommendedWatcher::new(handler, config).map_err(|e| WatchError::Start(e.to_string()))?;
        let mut roots = Vec::new();
        for root in &settings.roots {
            let canonical = match std::fs::canonicalize(root) {
                Ok(canonical) => canonical,
                Err(e) => {
                    tracing::error!(root = %root.display(), error = %e, "cannot watch an image root that does not exist");
                    continue;
                }
            };
            if let Err(e) = watcher.watch(&canonical, RecursiveMode::Recursive) {
                // Typically the per-user limit on inotify watches (one per folder).
                tracing::error!(root = %canonical.display(), error = %e,
                    "cannot watch an image root; raise fs.inotify.max_user_watches if the limit was reached");
                continue;
            }
            roots.push(canonical);
        }
        metrics::watch_roots(roots.len());
        tracing::info!(roots = ?roots, settle_ms = settings.settle.as_millis() as u64, excluded = ?engine.exclusions().extra(), "watching the image roots");
        let ignore = settings.ignore.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
        let state = Loop {
            engine,
            jobs,
            roots,
            ignore,
            debouncer: Debouncer::new(settings.settle, MAX_PENDING),
            in_flight: None,
            rescan_due: true,
            retry_at: None,
        };
        let task = tokio::spawn(state.run(rx));
        Ok(Self { _watcher: watcher, task })
    }
}

/// The watch job being worked, and what to do once it is done.
struct InFlight {
    job: String,
    /// Paths seen gone in the same batch: forgotten after the job (moves first).
    gone: Vec<PathBuf>,
    /// The job is a reconcile pass.
    reconcile: bool,
}

struct Loop {
    engine: Arc<Engine>,
    jobs: Arc<JobManager>,
    roots: Vec<PathBuf>,
    ignore: Vec<PathBuf>,
    debouncer: Debouncer,
    in_flight: Option<InFlight>,
    /// The roots must be compared with the index (at start; after lost events).
    rescan_due: bool,
    /// After a failure to hand work over, when to try again.
    retry_at: Option<Instant>,
}

impl Loop {
    async fn run(mut self, mut events: mpsc::Receiver<notify::Result<Event>>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A reconcile pass walks every root: events keep being taken meanwhile (so the kernel
        // queue does not overflow into another pass), and settled paths wait for its end.
        let mut comparing: Option<tokio::task::JoinHandle<Result<reconcile::Drift, EngineError>>> = None;
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else {
                        tracing::error!("the file system watcher stopped; changes are no longer followed");
                        return;
                    };
                    let now = Instant::now();
                    self.absorb(event, now);
                    // Take what else is buffered at once, so a burst costs one wake-up.
                    while let Ok(event) = events.try_recv() {
                        self.absorb(event, now);
                    }
                }
                drift = async { comparing.as_mut().expect("polled only while comparing: this is a bug").await }, if comparing.is_some() => {
                    comparing = None;
                    let drift = drift.map_err(|e| EngineError::Internal(format!("reconcile pass: {e}"))).and_then(|d| d);
                    self.compared(drift).await;
                }
                _ = tick.tick(), if comparing.is_none() => {
                    if let Some(pass) = self.step().await {
                        comparing = Some(pass);
                    }
                }
            }
        }
    }

    fn root_of(&self, path: &Path) -> Option<&Path> {
        self.roots.iter().map(PathBuf::as_path).filter(|root| path.starts_with(root)).max_by_key(|root| root.as_os_str().len())
    }

    /// Notes one raw event.
    fn absorb(&mut self, event: notify::Result<Event>, now: Instant) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                metrics::watch_event("error");
                tracing::warn!(error = %e, paths = ?e.paths, "file system watcher error");
                return;
            }
        };
        if event.need_rescan() {
            metrics::watch_event("rescan");
            tracing::warn!("the kernel dropped file system events (queue overflow); the roots will be rescanned");
            self.rescan_due = true;
            return;
        }
        let Some((kind, change)) = classify(&event) else { return };
        metrics::watch_event(kind);
        for path in event.paths {
            let Some(root) = self.root_of(&path) else { continue };
            if self.engine.exclusions().excludes(root, &path) || self.ignore.iter().any(|i| path.starts_with(i)) {
                metrics::watch_event("excluded");
                continue;
            }
            let change = match change {
                // A rename says nothing of what arrived: a folder brings all it holds.
                Change::Touched if kind == "rename" && path.is_dir() => Change::FolderAdded,
                other => other,
            };
            // Only image files are indexed; a gone path may be a folder, so it is kept.
            let is_file_change = matches!(change, Change::Created | Change::Written | Change::Closed | Change::Touched);
            if is_file_change && !has_image_extension(&path) {
                continue;
            }
            if !self.debouncer.note(path, change, now) {
                metrics::watch_event("dropped");
            }
        }
        metrics::watch_pending(self.debouncer.len());
    }

    /// Looks at the job in flight and hands on what has settled; starts a reconcile pass when
    /// one is due (the caller awaits it and hands its result to [`Loop::compared`]).
    async fn step(&mut self) -> Option<tokio::task::JoinHandle<Result<reconcile::Drift, EngineError>>> {
        let now = Instant::now();
        metrics::watch_pending(self.debouncer.len());
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        self.retry_at = None;
        if let Some(flight) = &self.in_flight {
            match self.jobs.get(&flight.job).await {
                Ok(job) if !job.record.state.is_finished() => return None,
                Ok(_) | Err(EngineError::JobNotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(job = %flight.job, error = %e, "cannot read the watch job's state; will retry");
                    self.retry_at = Some(now + RETRY);
                    return None;
                }
            }
            let flight = self.in_flight.take()?;
            self.forget(flight.gone).await;
            if flight.reconcile {
                metrics::watch_reconciled(OffsetDateTime::now_utc());
                tracing::info!(job = %flight.job, "the image roots and the index agree again");
            }
        }
        if self.debouncer.take_overflow() || self.rescan_due {
            // Whatever was waiting is covered by the pass.
            self.debouncer.clear();
            // Cleared now: an overflow during the pass asks for another one.
            self.rescan_due = false;
            let (roots, exclusions, store) = (self.roots.clone(), self.engine.exclusions().clone(), self.engine.current().store.clone());
            let ignore = self.ignore.clone();
            return Some(tokio::task::spawn_blocking(move || reconcile::compare(&roots, &exclusions, &ignore, store.as_ref())));
        }
        let settled = self.debouncer.take_settled(now);
        if settled.is_empty() {
            return None;
        }
        let exclusions = self.engine.exclusions().clone();
        let sorted = blocking(move || Ok(sort_out(settled, &exclusions))).await;
        match sorted {
            Ok(batch) => self.hand_over(batch, false).await,
            Err(e) => tracing::error!(error = %e, "cannot look at changed files"),
        }
        None
    }

    /// Hands the difference a reconcile pass found over as a job.
    async fn compared(&mut self, drift: Result<reconcile::Drift, EngineError>) {
        match drift {
            Ok(drift) => {
                tracing::info!(
                    files = drift.checked,
                    changed = drift.changed.len(),
                    gone = drift.gone.len(),
                    "compared the image roots with the index"
                );
                let batch = Batch { files: drift.changed.into_iter().collect(), failures: drift.failures, gone: drift.gone };
                self.hand_over(batch, true).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot compare the image roots with the index; will retry");
                self.rescan_due = true;
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
    }

    /// Queues a batch's files as one watch job (removals follow it), or forgets its gone paths
    /// at once when it has no files.
    async fn hand_over(&mut self, batch: Batch, reconcile: bool) {
        if batch.files.is_empty() && batch.failures.is_empty() && !reconcile {
            self.forget(batch.gone).await;
            return;
        }
        let label = self.label(batch.files.iter().next().map(Path::new));
        let files: Vec<String> = batch.files.into_iter().collect();
        let count = files.len();
        match self.jobs.submit_files(&label, files, batch.failures).await {
            Ok(job) => {
                tracing::info!(job = %job.record.id, files = count, reconcile, "queued the files the watcher found");
                self.in_flight = Some(InFlight { job: job.record.id.clone(), gone: batch.gone, reconcile });
            }
            Err(e) => {
                // Lost paths are found again by the rescan.
                tracing::error!(error = %e, "cannot queue the watcher's files; the roots will be rescanned");
                self.rescan_due = true;
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
    }

    /// The folder a watch job shows: the root of its first file, or the roots.
    fn label(&self, first: Option<&Path>) -> String {
        if let Some(root) = first.and_then(|p| self.root_of(p)) {
            return root.display().to_string();
        }
        self.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Takes gone paths out of the index (each a file, or a folder with all below it).
    async fn forget(&self, gone: Vec<PathBuf>) {
        let mut removed = 0;
        for path in gone {
            // Back again (replaced by a save, renamed away and back): the files step saw to it.
            if path.exists() {
                continue;
            }
            match self.engine.forget_path(&path).await {
                Ok(n) => removed += n,
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot take a deleted file out of the index"),
            }
        }
        if removed > 0 {
            tracing::info!(images = removed, "took deleted files out of the index");
            metrics::watch_removed(removed);
        }
    }
}

/// Settled paths sorted out by what is on disk now.
#[derive(Debug, Default)]
struct Batch {
    files: BTreeSet<String>,
    failures: Vec<FileFailure>,
    gone: Vec<PathBuf>,
}

impl Batch {
    fn add_file(&mut self, path: PathBuf) {
        match path.into_os_string().into_string() {
            Ok(path) => {
                self.files.insert(path);
            }
            Err(name) => self
                .failures
                .push(FileFailure { path: PathBuf::from(name).display().to_string(), error: "file name is not valid UTF-8".into() }),
        }
    }

    fn add_folder(&mut self, dir: &Path, exclusions: &Exclusions) {
        match walk_images(dir, true, exclusions) {
            Ok(walk) => {
                self.failures.extend(walk.errors.into_iter().map(|(path, error)| FileFailure { path, error }));
                for file in walk.files {
                    self.add_file(file);
                }
            }
            // Gone again before it could be read (renamed on, removed).
            Err(_) if !dir.exists() => self.gone.push(dir.to_path_buf()),
            Err(e) => self.failures.push(FileFailure { path: dir.display().to_string(), error: e.to_string() }),
        }
    }
}

/// What each settled path is now: a file to check, a folder to walk, or gone. Blocking (stats
/// and walks).
fn sort_out(settled: Vec<Settled>, exclusions: &Exclusions) -> Batch {
    let mut batch = Batch::default();
    for item in settled {
        let path = match item {
            Settled::File(path) | Settled::Gone(path) | Settled::Folder(path) => path,
        };
        // What the path is now decides, whatever the last event said: events race the disk.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => batch.add_folder(&path, exclusions),
            Ok(_) if has_image_extension(&path) => batch.add_file(path),
            Ok(_) => {}
            Err(_) => batch.gone.push(path),
        }
    }
    batch
}

/// The counted kind of an event and the change it makes to its path; `None` for events that
/// change nothing (opens, reads: our own reads among them).
fn classify(event: &Event) -> Option<(&'static str, Change)> {
    Some(match event.kind {
        EventKind::Create(CreateKind::Folder) => ("create", Change::FolderAdded),
        EventKind::Create(_) => ("create", Change::Created),
        EventKind::Modify(ModifyKind::Metadata(_)) => ("modify", Change::Touched),
        // From and To are reported on their own as well; acting on both once is enough.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => return None,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => ("rename", Change::Gone),
        EventKind::Modify(ModifyKind::Name(_)) => ("rename", Change::Touched),
        EventKind::Modify(_) => ("modify", Change::Written),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => ("close_write", Change::Closed),
        EventKind::Access(_) => return None,
        EventKind::Remove(_) => ("remove", Change::Gone),
        EventKind::Any | EventKind::Other => return None,
    })
}

impl Engine {
    /// Takes a path that is gone from disk out of the index: the image indexed at it (moved to
    /// another path where the same content was also seen and still is, else removed with its
    /// thumbnails), and, for a folder, every image below it. Returns the images removed.
    pub async fn forget_path(&self, path: &Path) -> Result<usize, EngineError> {
        let (store, roots, shown) = (self.current().store.clone(), self.roots.clone(), path.display().to_string());
        let folder = path.to_path_buf();
        let writing = self.served.writable().await;
        let (moved, doomed) = blocking(move || {
            let mut records: Vec<ImageRecord> = Vec::new();
            if let Some(record) = store.find_by_path(&shown)?.filter(|r| r.path == shown) {
                records.push(record);
            }
            // A name without an image ending may have been a folder.
            if !has_image_extension(&folder) {
                for gone in reconcile::gone_below(&folder, store.as_ref())? {
                    if let Some(record) = store.find_by_path(&gone.display().to_string())? {
                        records.push(record);
                    }
                }
            }
            let (mut moved, mut doomed) = (0, Vec::new());
            for record in records {
                // The same content seen at another path that is still there: it lives on there.
                let copy = store.aliases(&record.id)?.into_iter().find(|alias| {
                    std::fs::canonicalize(alias).is_ok_and(|c| c.is_file() && roots.contains(&c) && c.to_str() == Some(alias.as_str()))
                });
                match (copy, store.vector(&record.id)?) {
                    (Some(copy), Some(vector)) => {
                        tracing::debug!(id = %record.id, from = %record.path, to = %copy, "a deleted file's content lives on at a copy");
                        store.upsert(&ImageRecord { path: copy, ..record }, &vector)?;
                        moved += 1;
                    }
                    _ => doomed.push(record.id),
                }
            }
            Ok((moved, doomed))
        })
        .await?;
        drop(writing);
        if moved > 0 {
            tracing::info!(images = moved, path = %path.display(), "deleted files whose content lives on at a copy now point there");
        }
        let mut removed = 0;
        for id in doomed {
            match self.delete_image(&id).await {
                Ok(_) => removed += 1,
                // Removed meanwhile (by a user, another replica): what was wanted.
                Err(EngineError::ImageNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, MetadataKind, RemoveKind};

    fn event(kind: EventKind) -> Event {
        Event::new(kind).add_path(PathBuf::from("/r/a.jpg"))
    }

    #[test]
    fn events_map_to_changes_and_our_own_reads_are_ignored() {
        let cases = [
            (EventKind::Create(CreateKind::File), Some(("create", Change::Created))),
            (EventKind::Create(CreateKind::Folder), Some(("create", Change::FolderAdded))),
            (EventKind::Modify(ModifyKind::Data(DataChange::Any)), Some(("modify", Change::Written))),
            (EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)), Some(("modify", Change::Touched))),
            (EventKind::Modify(ModifyKind::Name(RenameMode::From)), Some(("rename", Change::Gone))),
            (EventKind::Modify(ModifyKind::Name(RenameMode::To)), Some(("rename", Change::Touched))),
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), None),
            (EventKind::Access(AccessKind::Close(AccessMode::Write)), Some(("close_write", Change::Closed))),
            (EventKind::Access(AccessKind::Close(AccessMode::Read)), None),
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), None),
            (EventKind::Remove(RemoveKind::File), Some(("remove", Change::Gone))),
        ];
        for (kind, expected) in cases {
            assert_eq!(classify(&event(kind)), expected, "{kind:?}");
        }
    }

    #[test]
    fn settled_paths_are_sorted_out_by_what_is_on_disk_now() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.jpg"), b"x").unwrap();
        std::fs::write(root.join("notes.txt"), b"x").unwrap();
        std::fs::create_dir_all(root.join("album/.hidden")).unwrap();
        std::fs::write(root.join("album/b.png"), b"x").unwrap();
        std::fs::write(root.join("album/.hidden/c.png"), b"x").unwrap();
        let settled = vec![
            Settled::File(root.join("a.jpg")),
            // Said gone, but there again: checked as a file.
            Settled::Gone(root.join("notes.txt")),
            Settled::File(root.join("deleted-before-it-was-read.jpg")),
            Settled::Folder(root.join("album")),
            Settled::Folder(root.join("renamed-on")),
        ];
        let batch = sort_out(settled, &Exclusions::default());
        let files: Vec<&str> = batch.files.iter().map(String::as_str).collect();
        let expected = [root.join("a.jpg"), root.join("album/b.png")];
        assert_eq!(files, expected.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>());
        assert_eq!(batch.gone, vec![root.join("deleted-before-it-was-read.jpg"), root.join("renamed-on")]);
        assert!(batch.failures.is_empty());
    }
}
