//! Directory jobs as data: the record a job keeps, and the [`JobStore`] trait that persists jobs
//! beside the images they index. Progress is written incrementally (the files finished since the
//! last write, and the counters that go with them, in one transaction), so a restart resumes by
//! path: a file is done once its path is recorded done, whatever the folder looks like later.
//!
//! Knows nothing of how files are ingested or scheduled; that is `engine::jobs`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::StoreError;

/// Failure reasons kept per job (all failures are counted).
pub const MAX_FAILURES_KEPT: usize = 1000;

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
}

/// How one file of a job ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneFile {
    pub path: String,
    /// `None` when the file was indexed or skipped; the reason when it failed.
    pub failure: Option<String>,
}

/// Persistence of directory jobs. Every write is durable when it returns.
pub trait JobStore: Send + Sync {
    /// Saves a new job, refused with [`StoreError::TooManyJobs`] when `max_unfinished` jobs are
    /// already queued or running (checked and written in one transaction).
    fn create_job(&self, job: &JobRecord, max_unfinished: usize) -> Result<(), StoreError>;
    /// A job with its kept failures.
    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Every job, newest first, with their kept failures.
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// Saves a job's state and counters (its failures are written by `record_progress`).
    fn save_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// Marks `done` files finished, keeps their failures, and saves `job`'s counters: one
    /// transaction, so the counters always match the recorded files.
    fn record_progress(&self, job: &JobRecord, done: &[DoneFile]) -> Result<(), StoreError>;
    /// Paths a job has finished, for resuming it.
    fn done_paths(&self, id: &str) -> Result<HashSet<String>, StoreError>;
    /// Forgets all but the newest `keep` finished jobs (and their file lists).
    fn prune_finished_jobs(&self, keep: usize) -> Result<(), StoreError>;
}
