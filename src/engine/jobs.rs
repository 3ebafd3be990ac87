//! Directory ingestion: the pipeline shared by bulk jobs and `visionquery index`, and the job
//! manager that runs jobs one after another, persists their progress, and resumes them where
//! they stopped after a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{Engine, EngineError};
use crate::embed::EmbedError;
use crate::metrics;

/// File endings treated as images when walking a folder.
pub const IMAGE_EXTENSIONS: [&str; 10] = ["jpg", "jpeg", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff", "jpe"];
/// Failure reasons kept per job (all failures are counted).
const MAX_FAILURES_KEPT: usize = 1000;
/// Finished jobs remembered.
const MAX_FINISHED_KEPT: usize = 100;

/// Image files in `dir` (and below, if `recursive`), sorted so a resumed job sees the same order.
pub fn image_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let walker = walkdir::WalkDir::new(dir).follow_links(false).max_depth(if recursive { usize::MAX } else { 1 });
    let mut files: Vec<PathBuf> = walker
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() || e.path_is_symlink())
        .map(|e| e.into_path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    files.sort();
    files
}

/// How one file of a directory went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileResult {
    Indexed,
    /// Already indexed: unchanged, or the same content under another name.
    Skipped,
    Failed(String),
}

/// Ingests the files at the indices `todo`, keeping `window` files in flight so reading and
/// decoding overlap inference and model batches fill. `on_done` gets each file's index and
/// result as it finishes. Stops taking new files once `cancel` is set.
pub async fn ingest_files(
    engine: Arc<Engine>,
    files: &[PathBuf],
    todo: impl IntoIterator<Item = usize>,
    window: usize,
    cancel: &AtomicBool,
    mut on_done: impl FnMut(usize, &Path, FileResult),
) {
    let mut tasks: JoinSet<(usize, FileResult)> = JoinSet::new();
    let mut todo = todo.into_iter().filter(|&i| i < files.len());
    loop {
        while tasks.len() < window.max(1) && !cancel.load(Ordering::Relaxed) {
            let Some(index) = todo.next() else { break };
            let engine = engine.clone();
            let path = files[index].clone();
            tasks.spawn(async move { (index, ingest_one(&engine, &path).await) });
        }
        let Some(joined) = tasks.join_next().await else { break };
        match joined {
            Ok((index, result)) => on_done(index, &files[index], result),
            Err(e) => tracing::error!(error = %e, "an ingest task panicked"),
        }
    }
}

async fn ingest_one(engine: &Engine, path: &Path) -> FileResult {
    let Some(requested) = path.to_str() else {
        return FileResult::Failed("file name is not valid UTF-8".into());
    };
    let canonical = match engine.roots().resolve(requested) {
        Ok(p) => p,
        Err(e) => return FileResult::Failed(e.to_string()),
    };
    loop {
        match engine.ingest_file(canonical.clone()).await {
            Ok(ingested) if ingested.is_new() => return FileResult::Indexed,
            Ok(_) => return FileResult::Skipped,
            // Jobs share the model with live requests; wait for room rather than lose a file.
            Err(EngineError::Embed(EmbedError::Overloaded(_))) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return FileResult::Failed(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Cancelling,
    Completed,
    Cancelled,
    Failed,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Cancelled | JobState::Failed)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileFailure {
    pub path: String,
    pub error: String,
}

/// A job as persisted in `jobs.json` and shown by the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    /// Canonical folder being ingested.
    pub path: String,
    pub recursive: bool,
    pub state: JobState,
    /// Image files found (0 until the folder has been listed).
    pub total: usize,
    /// Files handled so far (indexed + skipped + failed).
    pub done: usize,
    pub indexed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Why files failed (the first 1000).
    pub failures: Vec<FileFailure>,
    /// Why the whole job failed, if it did.
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Every file before this index (in sorted order) is done: where a restart resumes.
    pub resume_from: usize,
    /// Files after `resume_from` that are done too (files finish out of order).
    #[serde(default)]
    pub done_after: Vec<usize>,
}

/// A job with its live rates.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub record: JobRecord,
    /// Files per second in the current run.
    pub rate: f64,
    /// Seconds left at the current rate, while running.
    pub eta_seconds: Option<f64>,
}

struct Job {
    record: Mutex<JobRecord>,
    cancel: AtomicBool,
    /// When this process started running it, and how many files were done then.
    run: Mutex<Option<(Instant, usize)>>,
}

impl Job {
    fn new(record: JobRecord) -> Arc<Self> {
        Arc::new(Self { record: Mutex::new(record), cancel: AtomicBool::new(false), run: Mutex::new(None) })
    }

    fn record(&self) -> std::sync::MutexGuard<'_, JobRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self) -> JobView {
        let record = self.record().clone();
        let (rate, eta_seconds) = match *self.run.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((since, done_then)) if record.state == JobState::Running => {
                let secs = since.elapsed().as_secs_f64();
                let rate = if secs > 0.0 { (record.done.saturating_sub(done_then)) as f64 / secs } else { 0.0 };
                let left = record.total.saturating_sub(record.done) as f64;
                (rate, (rate > 0.0 && record.total > 0).then(|| left / rate))
            }
            _ => (0.0, None),
        };
        JobView { record, rate, eta_seconds }
    }
}

/// Runs directory jobs one at a time on a background task; persists them in `jobs.json`.
pub struct JobManager {
    engine: Arc<Engine>,
    jobs: Mutex<Vec<Arc<Job>>>,
    wake: Notify,
    file: PathBuf,
    save_lock: Mutex<Instant>,
}

impl JobManager {
    /// Loads saved jobs (unfinished ones are queued again, to resume) and starts the runner.
    pub fn start(engine: Arc<Engine>) -> Arc<Self> {
        let file = engine.dirs().jobs_file.clone();
        let saved: Vec<JobRecord> = std::fs::read(&file)
            .ok()
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(jobs) => Some(jobs),
                Err(e) => {
                    tracing::error!(file = %file.display(), error = %e, "job records unreadable; starting without them");
                    None
                }
            })
            .unwrap_or_default();
        let jobs = saved
            .into_iter()
            .map(|mut record| {
                match record.state {
                    JobState::Running | JobState::Queued => {
                        tracing::info!(job = %record.id, from = record.resume_from, "resuming job");
                        record.state = JobState::Queued;
                    }
                    JobState::Cancelling => record.state = JobState::Cancelled,
                    _ => {}
                }
                Job::new(record)
            })
            .collect();
        let manager = Arc::new(Self { engine, jobs: Mutex::new(jobs), wake: Notify::new(), file, save_lock: Mutex::new(Instant::now()) });
        let runner = manager.clone();
        tokio::spawn(async move { runner.run_forever().await });
        manager
    }

    /// Queues a folder (confined to the image roots).
    pub fn submit(&self, requested: &str, recursive: bool) -> Result<JobView, EngineError> {
        let dir = self.engine.roots().resolve_dir(requested)?;
        let now = OffsetDateTime::now_utc();
        let id = blake3::hash(format!("{}{}{}", dir.display(), now.unix_timestamp_nanos(), std::process::id()).as_bytes()).to_hex()[..12]
            .to_string();
        let job = Job::new(JobRecord {
            id,
            path: dir.display().to_string(),
            recursive,
            state: JobState::Queued,
            total: 0,
            done: 0,
            indexed: 0,
            skipped: 0,
            failed: 0,
            failures: Vec::new(),
            error: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            resume_from: 0,
            done_after: Vec::new(),
        });
        let view = job.view();
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.push(job);
            prune(&mut jobs);
        }
        self.save(true);
        self.wake.notify_one();
        Ok(view)
    }

    /// Newest first.
    pub fn list(&self) -> Vec<JobView> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().map(|j| j.view()).collect()
    }

    pub fn get(&self, id: &str) -> Result<JobView, EngineError> {
        self.find(id).map(|j| j.view())
    }

    /// Cancels a queued job at once, or asks a running one to stop after its files in flight.
    pub fn cancel(&self, id: &str) -> Result<JobView, EngineError> {
        let job = self.find(id)?;
        job.cancel.store(true, Ordering::Relaxed);
        {
            let mut record = job.record();
            match record.state {
                JobState::Queued => {
                    record.state = JobState::Cancelled;
                    record.finished_at = Some(OffsetDateTime::now_utc());
                }
                JobState::Running => record.state = JobState::Cancelling,
                _ => {}
            }
        }
        self.save(true);
        Ok(job.view())
    }

    fn find(&self, id: &str) -> Result<Arc<Job>, EngineError> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|j| j.record().id == id)
            .cloned()
            .ok_or_else(|| EngineError::JobNotFound(id.to_string()))
    }

    async fn run_forever(self: Arc<Self>) {
        loop {
            let next = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|j| j.record().state == JobState::Queued).cloned();
            match next {
                Some(job) => {
                    metrics::jobs_running(1);
                    self.run(&job).await;
                    metrics::jobs_running(0);
                }
                None => self.wake.notified().await,
            }
        }
    }

    async fn run(&self, job: &Job) {
        let (dir, recursive, resume_from, done_after) = {
            let mut record = job.record();
            record.state = JobState::Running;
            record.started_at.get_or_insert(OffsetDateTime::now_utc());
            (PathBuf::from(&record.path), record.recursive, record.resume_from, record.done_after.clone())
        };
        self.save(true);
        if let Err(e) = self.engine.embedder().wait_loaded().await {
            return self.finish(job, JobState::Failed, Some(e.to_string()));
        }
        let files = match tokio::task::spawn_blocking(move || image_files(&dir, recursive)).await {
            Ok(files) => files,
            Err(e) => return self.finish(job, JobState::Failed, Some(format!("listing the folder: {e}"))),
        };
        {
            let mut record = job.record();
            record.total = files.len();
            *job.run.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), record.done));
        }
        // Resume: the files a previous run finished (as last saved) are not done again.
        let mut finished_beyond: BTreeSet<usize> = done_after.into_iter().collect();
        let mut prefix = resume_from.min(files.len());
        let todo: Vec<usize> = (prefix..files.len()).filter(|i| !finished_beyond.contains(i)).collect();
        let window = self.engine.embedder().options.max_batch * 2;
        ingest_files(self.engine.clone(), &files, todo, window, &job.cancel, |index, path, result| {
            {
                let mut record = job.record();
                record.done += 1;
                match result {
                    FileResult::Indexed => {
                        record.indexed += 1;
                        metrics::job_file("indexed");
                    }
                    FileResult::Skipped => {
                        record.skipped += 1;
                        metrics::job_file("skipped");
                    }
                    FileResult::Failed(error) => {
                        record.failed += 1;
                        metrics::job_file("failed");
                        if record.failures.len() < MAX_FAILURES_KEPT {
                            record.failures.push(FileFailure { path: path.display().to_string(), error });
                        }
                    }
                }
                finished_beyond.insert(index);
                while finished_beyond.remove(&prefix) {
                    prefix += 1;
                }
                record.resume_from = prefix;
                record.done_after = finished_beyond.iter().copied().collect();
            }
            self.save(false);
        })
        .await;
        let state = if job.cancel.load(Ordering::Relaxed) { JobState::Cancelled } else { JobState::Completed };
        self.finish(job, state, None);
    }

    fn finish(&self, job: &Job, state: JobState, error: Option<String>) {
        {
            let mut record = job.record();
            record.state = state;
            record.error = error;
            record.finished_at = Some(OffsetDateTime::now_utc());
            tracing::info!(job = %record.id, state = ?state, indexed = record.indexed, skipped = record.skipped, failed = record.failed, "job finished");
        }
        self.save(true);
    }

    /// Writes all job records atomically; progress saves are throttled to one a second.
    fn save(&self, force: bool) {
        let mut last = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !force && last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        let records: Vec<JobRecord> = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|j| j.record().clone()).collect();
        let result = serde_json::to_vec_pretty(&records).map_err(std::io::Error::other).and_then(|bytes| {
            if let Some(dir) = self.file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.file.with_extension("json.tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.file)
        });
        if let Err(e) = result {
            tracing::error!(file = %self.file.display(), error = %e, "could not save job records");
        }
    }
}

/// Keeps every unfinished job and the newest finished ones.
fn prune(jobs: &mut Vec<Arc<Job>>) {
    let finished = jobs.iter().filter(|j| j.record().state.is_finished()).count();
    let mut excess = finished.saturating_sub(MAX_FINISHED_KEPT);
    jobs.retain(|j| {
        if excess > 0 && j.record().state.is_finished() {
            excess -= 1;
            false
        } else {
            true
        }
    });
}
