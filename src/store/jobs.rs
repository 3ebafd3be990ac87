//! Directory jobs as data, shared by every runner of every replica: the record a job keeps, and
//! the [`JobStore`] trait that persists jobs beside the images they index.
//!
//! A job's life: created `queued`; one runner claims it to list its folder (the job turns
//! `running`) and stores the listing as chunks of [`CHUNK_PATHS`] paths; any runner then claims
//! one chunk at a time under a lease (an owner and an expiry), records finished files while it
//! renews the lease, and lets the chunk go when done or told to stop. Recording is idempotent per
//! (job, path), so a chunk handed over after a crash skips what was recorded and no file is
//! counted twice. Counters are increments made by the store, never whole-record overwrites, so
//! several workers can report on one job at once.
//!
//! Knows nothing of how files are ingested or scheduled; that is `engine::jobs`.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::StoreError;

/// Failure reasons kept per job (all failures are counted).
pub const MAX_FAILURES_KEPT: usize = 1000;

/// Paths per chunk: big enough that claiming costs little next to the work (seconds to minutes
/// of embedding), small enough that a crashed worker's chunk is quickly redone by another.
pub const CHUNK_PATHS: usize = 256;

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

    /// Whether a worker should stop taking files of a job in this state.
    pub fn stops_work(self) -> bool {
        self != JobState::Running
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFailure {
    pub path: String,
    pub error: String,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Index the images of a folder.
    #[default]
    Directory,
    /// Read the photo metadata of images indexed before it was read at ingest (no re-embedding).
    PhotoMetadata,
    /// Index files the folder watcher saw appear or change (or a reconcile pass found): the
    /// creating runner stores the listing itself, right after creating the job.
    Watch,
    /// Embed every indexed image with another model into a new index generation (the "paths"
    /// are image ids); when it completes, that generation becomes current.
    Reembed,
}

/// A job as persisted and shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    #[serde(default)]
    pub kind: JobKind,
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
    /// Why files failed (the first [`MAX_FAILURES_KEPT`]).
    pub failures: Vec<FileFailure>,
    /// Why the whole job failed, if it did.
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

impl JobRecord {
    pub fn queued(id: String, path: String, recursive: bool) -> Self {
        Self {
            id,
            kind: JobKind::Directory,
            path,
            recursive,
            state: JobState::Queued,
            total: 0,
            done: 0,
            indexed: 0,
            skipped: 0,
            failed: 0,
            failures: Vec::new(),
            error: None,
            created_at: OffsetDateTime::now_utc(),
            started_at: None,
            finished_at: None,
        }
    }

    /// Adds one recorded file to the counters (the store calls it once per path).
    pub fn count(&mut self, outcome: &FileOutcome) {
        self.done += 1;
        match outcome {
            FileOutcome::Indexed => self.indexed += 1,
            FileOutcome::Skipped => self.skipped += 1,
            FileOutcome::Failed(_) => self.failed += 1,
        }
    }
}

/// How one file of a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Indexed,
    /// Already indexed: unchanged, or the same content under another name.
    Skipped,
    Failed(String),
}

/// One finished file of a job, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneFile {
    pub path: String,
    pub outcome: FileOutcome,
}

impl DoneFile {
    pub fn new(path: impl Into<String>, outcome: FileOutcome) -> Self {
        Self { path: path.into(), outcome }
    }
}

/// What listing a job's folder found: the files to do, and entries that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub paths: Vec<String>,
    pub failures: Vec<FileFailure>,
}

/// Names one chunk of one job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    pub job_id: String,
    pub index: u32,
}

/// A chunk a worker now holds the lease of.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkClaim {
    pub chunk: ChunkRef,
    pub kind: JobKind,
    pub paths: Vec<String>,
    /// Those of `paths` already recorded done (by an earlier holder): not to be done again.
    pub done: HashSet<String>,
}

/// What a worker learns when it writes: whether it still holds its lease, and the job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseStatus {
    pub held: bool,
    pub job_state: JobState,
}

impl LeaseStatus {
    /// Whether the worker should stop after its files in flight.
    pub fn should_stop(&self) -> bool {
        !self.held || self.job_state.stops_work()
    }
}

/// How a worker lets go of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEnd {
    /// Every path of the chunk is done: the chunk is finished (and the job, if it was the last).
    Finished,
    /// Stopped early (cancel, lost lease, shutdown): the chunk is free for another claim.
    Stopped,
}

/// What [`JobStore::delete_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRemoval {
    /// The finished job is forgotten, with its recorded files, failures and chunks.
    Removed,
    /// The job is still queued, running or cancelling (in this state) and was left alone:
    /// workers may hold it, so it must be cancelled and finish first.
    Unfinished(JobState),
    NotFound,
}

/// Persistence of jobs, shared by every runner. Every write is durable when it returns, and
/// every method is safe to call from many processes at once (one transaction each).
///
/// `owner` names a runner (random per process start); `ttl` is how long a lease lasts without a
/// renewal. A lease whose owner is gone is taken over once it expired.
pub trait JobStore: Send + Sync {
    /// Saves a new job, refused with [`StoreError::TooManyJobs`] when `max_unfinished` jobs are
    /// already queued, running or cancelling (checked and written in one transaction).
    fn create_job(&self, job: &JobRecord, max_unfinished: usize) -> Result<(), StoreError>;
    /// Saves a new job already `running` with its listing claimed by `owner` (as
    /// [`JobStore::claim_listing`] leaves a job), so that `owner` stores the listing it already
    /// has with [`JobStore::store_listing`]. Not counted against a cap: its creator runs one at
    /// a time. A creator that dies before storing the listing leaves it to be listed again by
    /// whoever claims it after the lease.
    fn create_claimed_job(&self, job: &JobRecord, owner: &str, ttl: Duration) -> Result<(), StoreError>;
    /// A job with its kept failures.
    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Every job, newest first, with their kept failures.
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// Claims the oldest job whose folder needs listing (queued, or being listed under an expired
    /// lease): it becomes `running` (started now, unless it started before) under `owner`'s lease.
    fn claim_listing(&self, owner: &str, ttl: Duration) -> Result<Option<JobRecord>, StoreError>;
    /// Stores a claimed job's listing in one transaction: its failures recorded done, the paths
    /// not recorded done yet as chunks, `total` set. A job with nothing to do completes; one
    /// cancelled meanwhile ends cancelled with nothing stored; a lost lease stores nothing.
    fn store_listing(&self, job_id: &str, owner: &str, listing: &Listing) -> Result<LeaseStatus, StoreError>;
    /// Renews the lease of a listing in progress (a big folder can take longer than one lease
    /// to walk); the answer says whether `owner` still holds it and the job's state.
    fn renew_listing(&self, job_id: &str, owner: &str, ttl: Duration) -> Result<LeaseStatus, StoreError>;
    /// Fails a job whose listing `owner` holds (its folder cannot be read, say).
    fn fail_listing(&self, job_id: &str, owner: &str, error: &str) -> Result<LeaseStatus, StoreError>;

    /// Claims one chunk of the oldest running job whose chunk is free or whose lease expired.
    /// Also ends cancelling jobs no live lease holds any more.
    fn claim_chunk(&self, owner: &str, ttl: Duration) -> Result<Option<ChunkClaim>, StoreError>;
    /// Records `done` (paths already recorded are not counted again) and renews the lease, in
    /// one transaction. The files are recorded even when the lease was lost: they are done.
    fn record_progress(&self, chunk: &ChunkRef, owner: &str, ttl: Duration, done: &[DoneFile]) -> Result<LeaseStatus, StoreError>;
    /// Records `done` and lets the chunk go as `end` says: a finished last chunk completes the
    /// job, and the last worker to let go of a cancelling job makes it cancelled.
    fn let_go(&self, chunk: &ChunkRef, owner: &str, done: &[DoneFile], end: ChunkEnd) -> Result<LeaseStatus, StoreError>;

    /// Cancels a queued job at once; a running one becomes `cancelling` (workers stop at their
    /// next write) and `cancelled` when no live lease holds it. `None` when there is no such job.
    fn cancel_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Forgets one finished job (and its files and chunks) in one transaction; an unfinished one
    /// is left as it is.
    fn delete_job(&self, id: &str) -> Result<JobRemoval, StoreError>;
    /// Forgets all but the newest `keep` finished jobs (and their files and chunks).
    fn prune_finished_jobs(&self, keep: usize) -> Result<(), StoreError>;
}

/// Splits listed paths into chunks of [`CHUNK_PATHS`], in order.
pub fn chunked(paths: Vec<String>) -> Vec<Vec<String>> {
    let mut chunks = Vec::with_capacity(paths.len().div_ceil(CHUNK_PATHS));
    let mut rest = paths.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(CHUNK_PATHS).collect());
    }
    chunks
}
