//! The directory job scheduler: runs queued jobs one after another through the ingest pipeline,
//! and keeps their progress in a [`JobStore`].
//!
//! Progress is persisted by path: every second the files finished since the last write are
//! recorded done together with the counters (one transaction, off the async threads). A job
//! interrupted by a crash or restart resumes by walking its folder again and skipping the paths
//! it had recorded done, so files added, removed or renamed in between are handled truthfully.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::pipeline::{self, FileResult};
use super::{Engine, EngineError};
use crate::metrics;
use crate::store::jobs::MAX_FAILURES_KEPT;
use crate::store::{DoneFile, FileFailure, JobKind, JobRecord, JobState, JobStore, StoreError};

/// Finished jobs remembered.
const MAX_FINISHED_KEPT: usize = 100;
/// How often a running job's progress is written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A job with its rates.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub record: JobRecord,
    /// Files per second: the current run's while running, the job's average once finished.
    pub rate: f64,
    /// Seconds left at the current rate, while running.
    pub eta_seconds: Option<f64>,
}

impl JobView {
    fn stored(record: JobRecord) -> Self {
        let rate = match (record.state.is_finished(), record.started_at, record.finished_at) {
            (true, Some(start), Some(end)) => {
                let secs = (end - start).as_seconds_f64();
                if secs > 0.0 {
                    record.done as f64 / secs
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        Self { record, rate, eta_seconds: None }
    }
}

/// The job this process is running: its live counters and what is not yet written.
struct LiveJob {
    record: Mutex<JobRecord>,
    /// Files finished since the last write.
    pending: Mutex<Vec<DoneFile>>,
    cancel: AtomicBool,
    started: Instant,
    done_at_start: usize,
}

impl LiveJob {
    fn record(&self) -> std::sync::MutexGuard<'_, JobRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finished_file(&self, path: &Path, result: FileResult) {
        let mut record = self.record();
        record.done += 1;
        let failure = match result {
            FileResult::Indexed => {
                record.indexed += 1;
                metrics::job_file("indexed");
                None
            }
            FileResult::Skipped => {
                record.skipped += 1;
                metrics::job_file("skipped");
                None
            }
            FileResult::Failed(error) => {
                record.failed += 1;
                metrics::job_file("failed");
                // The live view shows failures as they happen, as the store will keep them.
                if record.failures.len() < MAX_FAILURES_KEPT {
                    record.failures.push(FileFailure { path: path.display().to_string(), error: error.clone() });
                }
                Some(error)
            }
        };
        // Taken under the record's lock, so a snapshot never separates counters from files.
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).push(DoneFile { path: path.display().to_string(), failure });
    }

    /// The counters and the files they count, taken together.
    fn snapshot(&self) -> (JobRecord, Vec<DoneFile>) {
        let record = self.record();
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        (record.clone(), pending)
    }

    fn view(&self) -> JobView {
        let record = self.record().clone();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { record.done.saturating_sub(self.done_at_start) as f64 / secs } else { 0.0 };
        let left = record.total.saturating_sub(record.done) as f64;
        let eta_seconds = (rate > 0.0 && record.total > 0).then(|| left / rate);
        JobView { record, rate, eta_seconds }
    }
}

/// Runs directory jobs one at a time on a background task.
pub struct JobManager {
    engine: Arc<Engine>,
    store: Arc<dyn JobStore>,
    live: Mutex<Option<Arc<LiveJob>>>,
    /// Held while a queued job changes hands (picked by the runner, or cancelled).
    claim: tokio::sync::Mutex<()>,
    wake: Notify,
    max_unfinished: usize,
}

impl JobManager {
    /// Starts the runner: jobs a previous process left running resume first.
    pub fn start(engine: Arc<Engine>, store: Arc<dyn JobStore>, max_unfinished: usize) -> Arc<Self> {
        let manager = Arc::new(Self {
            engine,
            store,
            live: Mutex::new(None),
            claim: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            max_unfinished: max_unfinished.max(1),
        });
        let runner = manager.clone();
        tokio::spawn(async move { runner.run_forever().await });
        manager
    }

    /// Queues a folder (confined to the image roots); refused when too many jobs wait.
    pub async fn submit(&self, requested: &str, recursive: bool) -> Result<JobView, EngineError> {
        let dir = self.engine.roots().resolve_dir(requested)?;
        let record = JobRecord::queued(new_job_id(&dir.display().to_string()), dir.display().to_string(), recursive);
        let saved = record.clone();
        let max = self.max_unfinished;
        self.with_store(move |store| store.create_job(&saved, max)).await?;
        self.wake.notify_one();
        Ok(JobView::stored(record))
    }

    /// Queues a pass that reads the photo metadata of images indexed before it was read at
    /// ingest, unless one is waiting already or there is nothing to read.
    pub async fn fill_missing_photo_metadata(&self) -> Result<Option<JobView>, EngineError> {
        if self.engine.unread_photo_ids()?.is_empty() {
            return Ok(None);
        }
        let jobs = self.with_store(|store| store.jobs()).await?;
        if jobs.iter().any(|j| j.kind == JobKind::PhotoMetadata && !j.state.is_finished()) {
            return Ok(None);
        }
        let mut record = JobRecord::queued(new_job_id("photo-metadata"), "(photo metadata of indexed images)".into(), false);
        record.kind = JobKind::PhotoMetadata;
        let saved = record.clone();
        self.with_store(move |store| store.create_job(&saved, usize::MAX)).await?;
        self.wake.notify_one();
        Ok(Some(JobView::stored(record)))
    }

    /// Newest first.
    pub async fn list(&self) -> Result<Vec<JobView>, EngineError> {
        let jobs = self.with_store(|store| store.jobs()).await?;
        Ok(jobs.into_iter().map(|record| self.view_of(record)).collect())
    }

    pub async fn get(&self, id: &str) -> Result<JobView, EngineError> {
        let wanted = id.to_string();
        let record = self.with_store(move |store| store.job(&wanted)).await?;
        record.map(|r| self.view_of(r)).ok_or_else(|| EngineError::JobNotFound(id.to_string()))
    }

    /// Cancels a queued job at once, or asks the running one to stop after its files in flight.
    pub async fn cancel(&self, id: &str) -> Result<JobView, EngineError> {
        if let Some(live) = self.live_job(id) {
            live.cancel.store(true, Ordering::Relaxed);
            {
                let mut record = live.record();
                if record.state == JobState::Running {
                    record.state = JobState::Cancelling;
                }
            }
            self.flush(&live).await;
            return Ok(live.view());
        }
        let _claim = self.claim.lock().await;
        let mut record = self.get(id).await?.record;
        if record.state == JobState::Queued {
            record.state = JobState::Cancelled;
            record.finished_at = Some(OffsetDateTime::now_utc());
            let saved = record.clone();
            self.with_store(move |store| store.save_job(&saved)).await?;
        }
        Ok(self.view_of(record))
    }

    fn live_job(&self, id: &str) -> Option<Arc<LiveJob>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|j| j.record().id == id).cloned()
    }

    /// The live view when this process runs the job (counters ahead of the last write).
    fn view_of(&self, record: JobRecord) -> JobView {
        match self.live_job(&record.id) {
            Some(live) => live.view(),
            None => JobView::stored(record),
        }
    }

    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn JobStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|e| EngineError::Internal(format!("job store thread: {e}")))?
            .map_err(EngineError::from)
    }

    async fn run_forever(self: Arc<Self>) {
        loop {
            let next = {
                let _claim = self.claim.lock().await;
                match self.next_job().await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the job records; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            match next {
                Some(record) => {
                    metrics::jobs_running(1);
                    self.run(record).await;
                    metrics::jobs_running(0);
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// The job to run next, marked running: one a previous process left running (a job being
    /// cancelled then is cancelled), else the oldest queued.
    async fn next_job(&self) -> Result<Option<JobRecord>, EngineError> {
        let jobs = self.with_store(|store| store.jobs()).await?;
        for job in jobs.iter().filter(|j| j.state == JobState::Cancelling) {
            let mut cancelled = job.clone();
            cancelled.state = JobState::Cancelled;
            cancelled.finished_at = Some(OffsetDateTime::now_utc());
            self.with_store(move |store| store.save_job(&cancelled)).await?;
        }
        let next =
            jobs.iter().rev().find(|j| j.state == JobState::Running).or_else(|| jobs.iter().rev().find(|j| j.state == JobState::Queued));
        let Some(mut record) = next.cloned() else { return Ok(None) };
        if record.state == JobState::Running {
            tracing::info!(job = %record.id, done = record.done, "resuming an interrupted job");
        }
        record.state = JobState::Running;
        record.started_at.get_or_insert(OffsetDateTime::now_utc());
        let saved = record.clone();
        self.with_store(move |store| store.save_job(&saved)).await?;
        Ok(Some(record))
    }

    async fn run(&self, mut record: JobRecord) {
        if record.kind == JobKind::PhotoMetadata {
            return self.run_photo_metadata(record).await;
        }
        if let Err(e) = self.engine.embedder().wait_loaded().await {
            record.error = Some(e.to_string());
            return self.finish_stored(record, JobState::Failed).await;
        }
        let (dir, recursive, id) = (PathBuf::from(&record.path), record.recursive, record.id.clone());
        let walked = tokio::task::spawn_blocking(move || pipeline::walk_images(&dir, recursive)).await;
        let walk = match walked {
            Ok(Ok(walk)) => walk,
            Ok(Err(e)) => {
                record.error = Some(e.to_string());
                return self.finish_stored(record, JobState::Failed).await;
            }
            Err(e) => {
                record.error = Some(format!("listing the folder: {e}"));
                return self.finish_stored(record, JobState::Failed).await;
            }
        };
        let done = match self.with_store(move |store| store.done_paths(&id)).await {
            Ok(done) => done,
            Err(e) => {
                record.error = Some(format!("reading the job's progress: {e}"));
                return self.finish_stored(record, JobState::Failed).await;
            }
        };
        // Resume by path: what a previous run finished is not done again; anything else the
        // folder holds now (added or renamed since) is.
        let is_new = |path: &str| !done.contains(path);
        let walk_errors: Vec<(String, String)> = walk.errors.into_iter().filter(|(p, _)| is_new(p)).collect();
        let todo: Vec<PathBuf> = walk.files.into_iter().filter(|p| is_new(&p.display().to_string())).collect();
        record.total = record.done + walk_errors.len() + todo.len();
        let live = self.go_live(record);
        for (path, error) in walk_errors {
            live.finished_file(Path::new(&path), FileResult::Failed(error));
        }
        self.flush(&live).await;

        let window = self.engine.embedder().options.max_batch * 2;
        let ingest =
            pipeline::ingest_files(self.engine.clone(), todo, window, &live.cancel, |path, result| live.finished_file(path, result));
        tokio::pin!(ingest);
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut ingest => break,
                _ = ticker.tick() => self.flush(&live).await,
            }
        }
        let state = if live.cancel.load(Ordering::Relaxed) { JobState::Cancelled } else { JobState::Completed };
        {
            let mut record = live.record();
            record.state = state;
            record.finished_at = Some(OffsetDateTime::now_utc());
            tracing::info!(job = %record.id, state = ?state, indexed = record.indexed, skipped = record.skipped, failed = record.failed, "job finished");
        }
        self.flush(&live).await;
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.prune().await;
    }

    /// Reads the photo metadata of every image that lacks it; done "paths" are image ids.
    async fn run_photo_metadata(&self, mut record: JobRecord) {
        let id = record.id.clone();
        let done = match self.with_store(move |store| store.done_paths(&id)).await {
            Ok(done) => done,
            Err(e) => {
                record.error = Some(format!("reading the job's progress: {e}"));
                return self.finish_stored(record, JobState::Failed).await;
            }
        };
        let todo: Vec<String> = match self.engine.unread_photo_ids() {
            Ok(ids) => ids.into_iter().filter(|id| !done.contains(id)).collect(),
            Err(e) => {
                record.error = Some(e.to_string());
                return self.finish_stored(record, JobState::Failed).await;
            }
        };
        record.total = record.done + todo.len();
        let live = self.go_live(record);
        let mut last_flush = Instant::now();
        for image in todo {
            if live.cancel.load(Ordering::Relaxed) {
                break;
            }
            let result = match self.engine.refresh_photo_meta(&image).await {
                Ok(true) => FileResult::Indexed,
                Ok(false) | Err(EngineError::ImageNotFound(_)) => FileResult::Skipped,
                Err(e) => FileResult::Failed(e.to_string()),
            };
            live.finished_file(Path::new(&image), result);
            if last_flush.elapsed() >= FLUSH_EVERY {
                self.flush(&live).await;
                last_flush = Instant::now();
            }
        }
        self.finish_live(&live).await;
    }

    fn go_live(&self, record: JobRecord) -> Arc<LiveJob> {
        let live = Arc::new(LiveJob {
            done_at_start: record.done,
            record: Mutex::new(record),
            pending: Mutex::new(Vec::new()),
            cancel: AtomicBool::new(false),
            started: Instant::now(),
        });
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(live.clone());
        live
    }

    async fn finish_live(&self, live: &LiveJob) {
        let state = if live.cancel.load(Ordering::Relaxed) { JobState::Cancelled } else { JobState::Completed };
        {
            let mut record = live.record();
            record.state = state;
            record.finished_at = Some(OffsetDateTime::now_utc());
            tracing::info!(job = %record.id, state = ?state, indexed = record.indexed, skipped = record.skipped, failed = record.failed, "job finished");
        }
        self.flush(live).await;
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.prune().await;
    }

    /// Writes the files finished since the last write with the counters that include them.
    async fn flush(&self, live: &LiveJob) {
        let (record, pending) = live.snapshot();
        let kept = pending.clone();
        if let Err(e) = self.with_store(move |store| store.record_progress(&record, &pending)).await {
            tracing::error!(error = %e, "could not save job progress; will retry");
            // Put them back in front so the next write includes them.
            let mut queue = live.pending.lock().unwrap_or_else(|p| p.into_inner());
            let later = std::mem::replace(&mut *queue, kept);
            queue.extend(later);
        }
    }

    async fn finish_stored(&self, mut record: JobRecord, state: JobState) {
        record.state = state;
        record.finished_at = Some(OffsetDateTime::now_utc());
        tracing::info!(job = %record.id, state = ?state, error = ?record.error, "job finished");
        if let Err(e) = self.with_store(move |store| store.save_job(&record)).await {
            tracing::error!(error = %e, "could not save the job record");
        }
        self.prune().await;
    }

    async fn prune(&self) {
        if let Err(e) = self.with_store(|store| store.prune_finished_jobs(MAX_FINISHED_KEPT)).await {
            tracing::warn!(error = %e, "could not prune old job records");
        }
    }
}

/// A fresh job id: 12 hex digits of a hash of what the job is about, the time and the process.
fn new_job_id(subject: &str) -> String {
    let seed = format!("{subject}{}{}", OffsetDateTime::now_utc().unix_timestamp_nanos(), std::process::id());
    blake3::hash(seed.as_bytes()).to_hex()[..12].to_string()
}

/// Moves job records of versions that kept them in `jobs.json` into the job store, once.
/// Unfinished ones resume by walking their folder again (the path index skips what is indexed).
pub fn import_legacy_jobs(file: &Path, store: &dyn JobStore) {
    let Ok(bytes) = std::fs::read(file) else { return };
    let records: Vec<JobRecord> = match serde_json::from_slice(&bytes) {
        Ok(records) => records,
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "old job records unreadable; left in place");
            return;
        }
    };
    for mut record in records {
        if matches!(store.job(&record.id), Ok(Some(_))) {
            continue;
        }
        if !record.state.is_finished() {
            // Its finished paths were not kept by path: count afresh as the walk finds them.
            (record.done, record.indexed, record.skipped, record.failed) = (0, 0, 0, 0);
            record.failures.clear();
        }
        if let Err(e) = store.create_job(&record, usize::MAX) {
            tracing::error!(job = %record.id, error = %e, "could not import an old job record");
            return;
        }
    }
    let _ = std::fs::rename(file, file.with_extension("json.imported"));
}
