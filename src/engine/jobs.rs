//! The job runner of this process: claims work from the [`JobStore`] that every replica shares,
//! lists folders and ingests chunks of them through the pipeline, and answers job queries from
//! the store, so every replica gives the same answer.
//!
//! One runner per process does one thing at a time: it prefers a chunk of a running job (older
//! jobs first) over listing a new one, so on one server jobs still run one after another. While
//! it works a chunk, it records the files finished since the last write every second together
//! with a lease renewal; the answer tells it to stop when the job is being cancelled (from any
//! replica) or when its lease was lost. A chunk whose worker died is claimed again by lease
//! expiry (at once on the embedded store: a restarted server owns every lease), and the paths it
//! recorded done are skipped; a file committed but not yet recorded is skipped by ingest's
//! path+size+mtime check, so nothing is embedded twice.
//!
//! A job's listing is final: files added to the folder after it was listed belong to the next
//! job on that folder (which skips every unchanged file cheaply).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::pipeline::{self, FileResult};
use super::{Engine, EngineError};
use crate::metrics;
use crate::store::{
    ChunkClaim, ChunkEnd, ChunkRef, DoneFile, FileFailure, JobKind, JobRecord, JobRemoval, JobState, JobStore, Listing, StoreError,
};

/// Finished jobs remembered.
const MAX_FINISHED_KEPT: usize = 100;
/// How often a worker records its finished files and renews its lease.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often an idle runner looks for work (other replicas' jobs, expired leases).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How jobs are run.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    /// Jobs that may be queued, running or cancelling at once; more are refused.
    pub max_unfinished: usize,
    /// How long a claim lasts without renewal: a dead worker's chunk is taken over after it.
    pub lease: Duration,
}

/// A job with its rates.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub record: JobRecord,
    /// Files per second since the job started while running; its average once finished.
    pub rate: f64,
    /// Seconds left at that rate, while running.
    pub eta_seconds: Option<f64>,
}

impl JobView {
    fn of(record: JobRecord) -> Self {
        let end = if record.state.is_finished() { record.finished_at } else { Some(OffsetDateTime::now_utc()) };
        let rate = match (record.started_at, end) {
            (Some(start), Some(end)) if (end - start).as_seconds_f64() > 0.0 => record.done as f64 / (end - start).as_seconds_f64(),
            _ => 0.0,
        };
        let running = matches!(record.state, JobState::Running | JobState::Cancelling);
        let left = record.total.saturating_sub(record.done) as f64;
        let eta_seconds = (running && rate > 0.0 && record.total > 0).then(|| left / rate);
        Self { record, rate, eta_seconds }
    }
}

/// The chunk this process works on: files finished since the last write, and whether to stop.
#[derive(Default)]
struct ChunkProgress {
    pending: Mutex<Vec<DoneFile>>,
    finished: AtomicUsize,
    stop: AtomicBool,
}

impl ChunkProgress {
    fn finished_file(&self, path: String, outcome: FileResult) {
        metrics::job_file(match outcome {
            FileResult::Indexed => "indexed",
            FileResult::Skipped => "skipped",
            FileResult::Failed(_) => "failed",
        });
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).push(DoneFile::new(path, outcome));
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    fn take_pending(&self) -> Vec<DoneFile> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts files whose write failed back in front, so the next write includes them.
    fn put_back(&self, files: Vec<DoneFile>) {
        let mut queue = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let later = std::mem::replace(&mut *queue, files);
        queue.extend(later);
    }
}

/// Runs jobs on a background task and answers for them.
pub struct JobManager {
    engine: Arc<Engine>,
    store: Arc<dyn JobStore>,
    settings: JobSettings,
    /// Names this process in leases: new at every start, so a restarted process never takes a
    /// dead one's leases for its own.
    owner: String,
    wake: Notify,
    /// The chunk being worked here, so a cancel received here stops it at once.
    working: Mutex<Option<(String, Arc<ChunkProgress>)>>,
}

impl JobManager {
    /// Starts the runner: work other runners left behind is taken over as their leases expire.
    pub fn start(engine: Arc<Engine>, store: Arc<dyn JobStore>, settings: JobSettings) -> Arc<Self> {
        let settings = JobSettings { max_unfinished: settings.max_unfinished.max(1), ..settings };
        let manager = Arc::new(Self { engine, store, settings, owner: new_owner_id(), wake: Notify::new(), working: Mutex::new(None) });
        let runner = manager.clone();
        tokio::spawn(async move { runner.run_forever().await });
        manager
    }

    /// Queues a folder (confined to the image roots); refused when too many jobs wait.
    pub async fn submit(&self, requested: &str, recursive: bool) -> Result<JobView, EngineError> {
        let dir = self.engine.roots().resolve_dir(requested)?;
        let record = JobRecord::queued(new_job_id(&dir.display().to_string()), dir.display().to_string(), recursive);
        let saved = record.clone();
        let max = self.settings.max_unfinished;
        self.with_store(move |store| store.create_job(&saved, max)).await?;
        self.wake.notify_one();
        Ok(JobView::of(record))
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
        Ok(Some(JobView::of(record)))
    }

    /// Queues the ingest of files already listed (by the folder watcher, or its reconcile pass)
    /// as a job of its own, under `label` (the watched root). The files then go through the
    /// same runner and pipeline as a directory job's, with the same progress and failures.
    pub async fn submit_files(&self, label: &str, paths: Vec<String>, failures: Vec<FileFailure>) -> Result<JobView, EngineError> {
        let mut record = JobRecord::queued(new_job_id(label), label.to_string(), true);
        record.kind = JobKind::Watch;
        let (saved, owner, ttl) = (record.clone(), self.owner.clone(), self.settings.lease);
        self.with_store(move |store| store.create_claimed_job(&saved, &owner, ttl)).await?;
        let (id, owner) = (record.id.clone(), self.owner.clone());
        let listing = Listing { paths, failures };
        let status = self.with_store(move |store| store.store_listing(&id, &owner, &listing)).await?;
        if status.job_state.is_finished() {
            self.finished(&record.id, status.job_state).await;
        }
        self.wake.notify_one();
        self.get(&record.id).await
    }

    /// Starts re-embedding the index with `target` into a new generation, as a job (searches
    /// keep being answered from the current generation until the new one is complete).
    pub async fn reembed(&self, target: crate::embed::ModelOptions) -> Result<(JobView, super::generations::BuildInfo), EngineError> {
        let label = format!("(re-embed with {})", target.source);
        let mut record = JobRecord::queued(new_job_id(&label), label, false);
        record.kind = JobKind::Reembed;
        let build = self.engine.begin_build(target, &record.id).await?;
        let saved = record.clone();
        // Not counted against the cap: refusing it here would leave the build without its job.
        self.with_store(move |store| store.create_job(&saved, usize::MAX)).await?;
        self.wake.notify_one();
        Ok((JobView::of(record), build))
    }

    /// Follows the index generations other replicas (or an interrupted run) left, every
    /// [`super::generations::FOLLOW_EVERY`].
    pub fn follow_generations(self: &Arc<Self>) {
        let manager = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(super::generations::FOLLOW_EVERY).await;
                if let Err(e) = manager.engine.follow_pointer(&manager.store).await {
                    tracing::warn!(error = %e, "cannot follow the index generations; retrying");
                }
            }
        });
    }

    /// Newest first, as stored (at most a second behind the workers).
    pub async fn list(&self) -> Result<Vec<JobView>, EngineError> {
        let jobs = self.with_store(|store| store.jobs()).await?;
        Ok(jobs.into_iter().map(JobView::of).collect())
    }

    pub async fn get(&self, id: &str) -> Result<JobView, EngineError> {
        let wanted = id.to_string();
        let record = self.with_store(move |store| store.job(&wanted)).await?;
        record.map(JobView::of).ok_or_else(|| EngineError::JobNotFound(id.to_string()))
    }

    /// Cancels a queued job at once; a running one stops after its files in flight, here at
    /// once and on other replicas at their next write.
    pub async fn cancel(&self, id: &str) -> Result<JobView, EngineError> {
        let wanted = id.to_string();
        let record = self.with_store(move |store| store.cancel_job(&wanted)).await?;
        let record = record.ok_or_else(|| EngineError::JobNotFound(id.to_string()))?;
        if let Some(progress) = self.working_on(id) {
            progress.stop.store(true, Ordering::Relaxed);
        }
        Ok(JobView::of(record))
    }

    /// Forgets a finished job. An unfinished one is refused: workers (here or on another
    /// replica) may still hold it, so it is cancelled first.
    pub async fn delete(&self, id: &str) -> Result<(), EngineError> {
        let wanted = id.to_string();
        match self.with_store(move |store| store.delete_job(&wanted)).await? {
            JobRemoval::Removed => Ok(()),
            JobRemoval::NotFound => Err(EngineError::JobNotFound(id.to_string())),
            JobRemoval::Unfinished(state) => Err(EngineError::JobUnfinished { id: id.to_string(), state: state_name(state) }),
        }
    }

    fn working_on(&self, id: &str) -> Option<Arc<ChunkProgress>> {
        let working = self.working.lock().unwrap_or_else(|p| p.into_inner());
        working.as_ref().filter(|(job, _)| job == id).map(|(_, progress)| progress.clone())
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
        // Claim nothing before the model is up: a lease must not expire while it loads.
        let _ = self.engine.embedder().wait_loaded().await;
        loop {
            match self.work_once().await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim job work; retrying");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        }
    }

    /// Works one chunk, or lists one folder; `false` when there was nothing to do.
    async fn work_once(&self) -> Result<bool, EngineError> {
        let (owner, ttl) = (self.owner.clone(), self.settings.lease);
        if let Some(claim) = self.with_store(move |store| store.claim_chunk(&owner, ttl)).await? {
            metrics::jobs_running(1);
            self.work_chunk(claim).await;
            metrics::jobs_running(0);
            return Ok(true);
        }
        let owner = self.owner.clone();
        if let Some(job) = self.with_store(move |store| store.claim_listing(&owner, ttl)).await? {
            self.list_job(job).await;
            return Ok(true);
        }
        Ok(false)
    }

    /// Lists a claimed job's files (a folder, or the images lacking photo metadata) and stores
    /// the listing as chunks.
    async fn list_job(&self, job: JobRecord) {
        let listing = self.list_files(&job);
        tokio::pin!(listing);
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        ticker.tick().await;
        // Walking a big folder can outlast a lease: renew it, or another replica would list the
        // job too (and take the lease from this one, over and over).
        let listing = loop {
            tokio::select! {
                listing = &mut listing => break listing,
                _ = ticker.tick() => self.renew_listing(&job.id).await,
            }
        };
        let (id, owner) = (job.id.clone(), self.owner.clone());
        let stored = match listing {
            Ok(listing) => {
                tracing::info!(job = %id, files = listing.paths.len(), "job listed");
                self.with_store(move |store| store.store_listing(&id, &owner, &listing)).await
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(job = %id, %error, "job failed");
                self.with_store(move |store| store.fail_listing(&id, &owner, &error)).await
            }
        };
        match stored {
            Ok(status) if status.job_state.is_finished() => self.finished(&job.id, status.job_state).await,
            Ok(status) if !status.held => tracing::warn!(job = %job.id, "another runner took over the job's listing"),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "could not store the job's listing; it is listed again once the lease expires")
            }
        }
    }

    async fn list_files(&self, job: &JobRecord) -> Result<Listing, EngineError> {
        match job.kind {
            JobKind::Directory => self.list_folder(job).await,
            JobKind::PhotoMetadata => self.engine.unread_photo_ids().map(|paths| Listing { paths, failures: Vec::new() }),
            // Listed by the watcher that created it; one listed again had a creator that died
            // before storing its files, which the next start's reconcile pass finds again.
            JobKind::Watch => Ok(Listing::default()),
            JobKind::Reembed => self.engine.current_ids().await.map(|paths| Listing { paths, failures: Vec::new() }),
        }
    }

    async fn renew_listing(&self, id: &str) {
        let (id, owner, ttl) = (id.to_string(), self.owner.clone(), self.settings.lease);
        match self.with_store(move |store| store.renew_listing(&id, &owner, ttl)).await {
            Ok(status) if !status.held => tracing::warn!("lost the lease of a job's listing (a write was late); another runner lists it"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not renew a job's listing lease; will retry"),
        }
    }

    async fn list_folder(&self, job: &JobRecord) -> Result<Listing, EngineError> {
        self.engine.embedder().wait_loaded().await?;
        let (dir, recursive, exclusions) = (PathBuf::from(&job.path), job.recursive, self.engine.exclusions().clone());
        let walk = tokio::task::spawn_blocking(move || pipeline::walk_images(&dir, recursive, &exclusions))
            .await
            .map_err(|e| EngineError::Internal(format!("listing the folder: {e}")))??;
        let mut paths = Vec::with_capacity(walk.files.len());
        let mut failures: Vec<_> = walk.errors.into_iter().map(|(path, error)| crate::store::FileFailure { path, error }).collect();
        for file in walk.files {
            match file.to_str() {
                Some(path) => paths.push(path.to_string()),
                None => failures
                    .push(crate::store::FileFailure { path: file.display().to_string(), error: "file name is not valid UTF-8".into() }),
            }
        }
        Ok(Listing { paths, failures })
    }

    /// Works a claimed chunk until it is done or the worker is told to stop, then lets it go.
    async fn work_chunk(&self, claim: ChunkClaim) {
        let progress = Arc::new(ChunkProgress::default());
        *self.working.lock().unwrap_or_else(|p| p.into_inner()) = Some((claim.chunk.job_id.clone(), progress.clone()));
        let todo: Vec<String> = claim.paths.into_iter().filter(|p| !claim.done.contains(p)).collect();
        let todo_count = todo.len();
        tracing::debug!(job = %claim.chunk.job_id, chunk = claim.chunk.index, files = todo_count, "working a chunk");
        let work = self.process(claim.kind, todo, &progress);
        tokio::pin!(work);
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut work => break,
                _ = ticker.tick() => self.renew(&claim.chunk, &progress).await,
            }
        }
        // Every file done finishes the chunk, even when told to stop after the last one.
        let end = if progress.finished.load(Ordering::Relaxed) == todo_count { ChunkEnd::Finished } else { ChunkEnd::Stopped };
        self.let_go(&claim.chunk, &progress, end).await;
        *self.working.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn process(&self, kind: JobKind, todo: Vec<String>, progress: &ChunkProgress) {
        match kind {
            JobKind::Directory | JobKind::Watch => {
                let window = self.engine.embedder().options.max_batch * 2;
                let files = todo.into_iter().map(PathBuf::from).collect();
                pipeline::ingest_files(self.engine.clone(), files, window, &progress.stop, |path, result| {
                    progress.finished_file(path.display().to_string(), result)
                })
                .await;
            }
            JobKind::Reembed => {
                let window = self.engine.embedder().options.max_batch * 2;
                self.engine.reembed_images(todo, window, &progress.stop, |id, result| progress.finished_file(id, result)).await;
            }
            // The "paths" are image ids.
            JobKind::PhotoMetadata => {
                for image in todo {
                    if progress.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = match self.engine.refresh_photo_meta(&image).await {
                        Ok(true) => FileResult::Indexed,
                        Ok(false) | Err(EngineError::ImageNotFound(_)) => FileResult::Skipped,
                        Err(e) => FileResult::Failed(e.to_string()),
                    };
                    progress.finished_file(image, result);
                }
            }
        }
    }

    /// Records the files finished since the last write and renews the lease; stops the work
    /// when the job is being cancelled or the lease was lost.
    async fn renew(&self, chunk: &ChunkRef, progress: &ChunkProgress) {
        let done = progress.take_pending();
        let (chunk, owner, ttl, kept) = (chunk.clone(), self.owner.clone(), self.settings.lease, done.clone());
        match self.with_store(move |store| store.record_progress(&chunk, &owner, ttl, &done)).await {
            Ok(status) if status.should_stop() => {
                if !status.held {
                    tracing::warn!("lost the lease of a job chunk (a write was late); another runner finishes it");
                }
                progress.stop.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not save job progress; will retry");
                progress.put_back(kept);
            }
        }
    }

    /// Records the last files and lets the chunk go, retrying while the lease would last; if it
    /// never succeeds the lease expires and another claim redoes what was not recorded.
    async fn let_go(&self, chunk: &ChunkRef, progress: &ChunkProgress, end: ChunkEnd) {
        let done = progress.take_pending();
        let deadline = Instant::now() + self.settings.lease;
        loop {
            let (writing, owner, done) = (chunk.clone(), self.owner.clone(), done.clone());
            match self.with_store(move |store| store.let_go(&writing, &owner, &done, end)).await {
                Ok(status) => {
                    if status.job_state.is_finished() {
                        self.finished(&chunk.job_id, status.job_state).await;
                    }
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::error!(error = %e, "could not save job progress; will retry");
                    tokio::time::sleep(FLUSH_EVERY).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not save job progress; the chunk is redone once its lease expires");
                    return;
                }
            }
        }
    }

    async fn finished(&self, id: &str, state: JobState) {
        match self.get(id).await {
            Ok(job) => {
                let r = &job.record;
                tracing::info!(job = %id, ?state, indexed = r.indexed, skipped = r.skipped, failed = r.failed, error = ?r.error, "job finished");
                if r.kind == JobKind::Reembed {
                    // Switch to the new generation (or drop it); on failure the follower retries.
                    if let Err(e) = self.engine.finish_build(id, state).await {
                        tracing::error!(job = %id, error = %e, "could not finish the re-embed; retrying shortly");
                    }
                }
            }
            Err(_) => tracing::info!(job = %id, ?state, "job finished"),
        }
        if let Err(e) = self.with_store(|store| store.prune_finished_jobs(MAX_FINISHED_KEPT)).await {
            tracing::warn!(error = %e, "could not prune old job records");
        }
    }
}

/// A fresh job id: 12 hex digits of a hash of what the job is about, the time and the process.
/// The state as the API spells it (`queued`, `running`, ...).
fn state_name(state: JobState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn new_job_id(subject: &str) -> String {
    let seed = format!("{subject}{}{}", OffsetDateTime::now_utc().unix_timestamp_nanos(), std::process::id());
    blake3::hash(seed.as_bytes()).to_hex()[..12].to_string()
}

/// This process's name in leases: host, process id and a hash of the start time.
fn new_owner_id() -> String {
    let pid = std::process::id();
    let seed = format!("{}{pid}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    format!("{pid}-{}", &blake3::hash(seed.as_bytes()).to_hex()[..16])
}

/// Moves job records of versions that kept them in `jobs.json` into the job store, once.
/// Unfinished ones are queued again: their folder is listed afresh (their finished files were
/// kept by position, not path; the path index skips what is indexed).
pub fn import_legacy_jobs(file: &std::path::Path, store: &dyn JobStore) {
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
        if record.state == JobState::Cancelling {
            record.state = JobState::Cancelled;
            record.finished_at = Some(OffsetDateTime::now_utc());
        } else if !record.state.is_finished() {
            record.state = JobState::Queued;
            (record.total, record.done, record.indexed, record.skipped, record.failed) = (0, 0, 0, 0, 0);
            record.failures.clear();
        }
        if let Err(e) = store.create_job(&record, usize::MAX) {
            tracing::error!(job = %record.id, error = %e, "could not import an old job record");
            return;
        }
    }
    let _ = std::fs::rename(file, file.with_extension("json.imported"));
}
