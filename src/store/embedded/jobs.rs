//! The embedded backend's job store: job records, their chunks and leases, finished paths and
//! kept failures in tables of the same redb database as the images, so one fsync makes progress
//! durable. redb admits one process, so at open every lease belongs to a dead process and is
//! dropped: a restarted server takes its jobs over at once instead of waiting for expiry.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{db_err, EmbeddedStore};
use crate::store::jobs::{
    chunked, ChunkClaim, ChunkEnd, ChunkRef, DoneFile, FileFailure, FileOutcome, JobRecord, JobRemoval, JobState, JobStore, LeaseStatus,
    Listing, MAX_FAILURES_KEPT,
};
use crate::store::StoreError;

/// Job id -> [`StoredJob`] (JSON, without its failures). Rows of older versions lack the
/// listing fields: their unfinished jobs are listed again (their recorded paths still count).
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// `job id \0 path` -> 1: the paths a job has finished.
const JOB_DONE: TableDefinition<&str, u8> = TableDefinition::new("job_done");
/// `job id \0 sequence` -> failure (JSON), the first [`MAX_FAILURES_KEPT`] of a job.
const JOB_FAILURES: TableDefinition<&str, &[u8]> = TableDefinition::new("job_failures");
/// `job id \0 chunk index` -> [`ChunkState`] (JSON): rewritten at every lease renewal.
const JOB_CHUNKS: TableDefinition<&str, &[u8]> = TableDefinition::new("job_chunks");
/// `job id \0 chunk index` -> the chunk's paths (JSON), written once.
const JOB_CHUNK_PATHS: TableDefinition<&str, &[u8]> = TableDefinition::new("job_chunk_paths");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    owner: String,
    /// Unix milliseconds.
    until_ms: i64,
}

impl Lease {
    fn new(owner: &str, ttl: Duration) -> Self {
        Self { owner: owner.to_string(), until_ms: now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)) }
    }

    fn live(&self) -> bool {
        self.until_ms > now_ms()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredJob {
    #[serde(flatten)]
    record: JobRecord,
    /// Whether its listing is stored as chunks.
    #[serde(default)]
    listed: bool,
    /// Who is listing its folder.
    #[serde(default)]
    lister: Option<Lease>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ChunkState {
    lease: Option<Lease>,
    finished: bool,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn corrupt(what: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

/// Creates the tables and drops every lease (their owners died with the previous process).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(JOB_DONE).map_err(db_err)?;
    txn.open_table(JOB_FAILURES).map_err(db_err)?;
    txn.open_table(JOB_CHUNK_PATHS).map_err(db_err)?;
    let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
    for mut job in all_jobs(&jobs)? {
        if job.lister.take().is_some() {
            put_job(&mut jobs, &job)?;
        }
    }
    let mut chunks = txn.open_table(JOB_CHUNKS).map_err(db_err)?;
    let mut held = Vec::new();
    for entry in chunks.iter().map_err(db_err)? {
        let (key, value) = entry.map_err(db_err)?;
        let mut state: ChunkState = serde_json::from_slice(value.value()).map_err(corrupt("job chunk"))?;
        if state.lease.take().is_some() {
            held.push((key.value().to_string(), state));
        }
    }
    for (key, state) in held {
        put_chunk(&mut chunks, &key, &state)?;
    }
    Ok(())
}

/// The key range of one job's rows in the keyed tables.
fn job_range(id: &str) -> (String, String) {
    (format!("{id}\0"), format!("{id}\u{1}"))
}

fn chunk_key(chunk: &ChunkRef) -> String {
    format!("{}\0{:08}", chunk.job_id, chunk.index)
}

fn done_key(job_id: &str, path: &str) -> String {
    format!("{job_id}\0{path}")
}

fn decode_job(bytes: &[u8]) -> Result<StoredJob, StoreError> {
    serde_json::from_slice(bytes).map_err(corrupt("job record"))
}

fn all_jobs(table: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Vec<StoredJob>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter().map_err(db_err)? {
        let (_, value) = entry.map_err(db_err)?;
        out.push(decode_job(value.value())?);
    }
    Ok(out)
}

fn put_job(table: &mut Table<&str, &[u8]>, job: &StoredJob) -> Result<(), StoreError> {
    let bare = StoredJob { record: JobRecord { failures: Vec::new(), ..job.record.clone() }, ..job.clone() };
    let bytes = serde_json::to_vec(&bare).map_err(corrupt("job record"))?;
    table.insert(job.record.id.as_str(), bytes.as_slice()).map_err(db_err)?;
    Ok(())
}

fn put_chunk(table: &mut Table<&str, &[u8]>, key: &str, state: &ChunkState) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(state).map_err(corrupt("job chunk"))?;
    table.insert(key, bytes.as_slice()).map_err(db_err)?;
    Ok(())
}

fn failures_of(table: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Result<Vec<FileFailure>, StoreError> {
    let (start, end) = job_range(id);
    let mut out = Vec::new();
    for entry in table.range(start.as_str()..end.as_str()).map_err(db_err)? {
        let (_, value) = entry.map_err(db_err)?;
        out.push(serde_json::from_slice(value.value()).map_err(corrupt("job failure"))?);
    }
    Ok(out)
}

/// One job's chunk states, in chunk order, with their keys.
fn chunks_of(table: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Result<Vec<(String, ChunkState)>, StoreError> {
    let (start, end) = job_range(id);
    let mut out = Vec::new();
    for entry in table.range(start.as_str()..end.as_str()).map_err(db_err)? {
        let (key, value) = entry.map_err(db_err)?;
        out.push((key.value().to_string(), serde_json::from_slice(value.value()).map_err(corrupt("job chunk"))?));
    }
    Ok(out)
}

fn remove_range<V: redb::Value + 'static>(txn: &WriteTransaction, table: TableDefinition<&str, V>, id: &str) -> Result<(), StoreError> {
    let (start, end) = job_range(id);
    let mut table = txn.open_table(table).map_err(db_err)?;
    table.retain_in(start.as_str()..end.as_str(), |_, _| false).map_err(db_err)?;
    Ok(())
}

/// Removes a job's row and everything kept for it.
fn remove_job(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    txn.open_table(JOBS).map_err(db_err)?.remove(id).map_err(db_err)?;
    remove_range(txn, JOB_DONE, id)?;
    remove_range(txn, JOB_FAILURES, id)?;
    remove_range(txn, JOB_CHUNKS, id)?;
    remove_range(txn, JOB_CHUNK_PATHS, id)
}

fn finish(job: &mut JobRecord, state: JobState) {
    job.state = state;
    job.finished_at = Some(OffsetDateTime::now_utc());
}

/// Records files a job finished, each path once, and counts them.
fn record_done(txn: &WriteTransaction, job: &mut JobRecord, done: &[DoneFile]) -> Result<(), StoreError> {
    if done.is_empty() {
        return Ok(());
    }
    let mut finished = txn.open_table(JOB_DONE).map_err(db_err)?;
    let mut failures = txn.open_table(JOB_FAILURES).map_err(db_err)?;
    let (start, end) = job_range(&job.id);
    let mut kept = failures.range(start.as_str()..end.as_str()).map_err(db_err)?.count();
    for file in done {
        if finished.insert(done_key(&job.id, &file.path).as_str(), 1).map_err(db_err)?.is_some() {
            continue;
        }
        job.count(&file.outcome);
        if let FileOutcome::Failed(error) = &file.outcome {
            if kept < MAX_FAILURES_KEPT {
                let failure = FileFailure { path: file.path.clone(), error: error.clone() };
                let json = serde_json::to_vec(&failure).map_err(corrupt("job failure"))?;
                failures.insert(format!("{}\0{kept:06}", job.id).as_str(), json.as_slice()).map_err(db_err)?;
                kept += 1;
            }
        }
    }
    Ok(())
}

/// Ends a cancelling job no live lease holds any more, and completes a running one whose
/// chunks are all finished.
fn settle(txn: &WriteTransaction, job: &mut StoredJob) -> Result<(), StoreError> {
    let unsettled = job.record.state == JobState::Cancelling || (job.record.state == JobState::Running && job.listed);
    if !unsettled {
        return Ok(());
    }
    let chunks = chunks_of(&txn.open_table(JOB_CHUNKS).map_err(db_err)?, &job.record.id)?;
    if job.record.state == JobState::Cancelling {
        let held = job.lister.as_ref().is_some_and(Lease::live)
            || chunks.iter().any(|(_, c)| !c.finished && c.lease.as_ref().is_some_and(Lease::live));
        if !held {
            job.lister = None;
            finish(&mut job.record, JobState::Cancelled);
        }
    } else if chunks.iter().all(|(_, c)| c.finished) {
        finish(&mut job.record, JobState::Completed);
    }
    Ok(())
}

impl EmbeddedStore {
    /// Runs `work` in a write transaction, committed when it returns `Ok`.
    fn write_jobs<T>(&self, work: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        let out = work(&txn)?;
        txn.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Records `done` for a chunk's job, then applies `lease_change` to the chunk (given whether
    /// `owner` holds it) and settles the job.
    fn chunk_write(
        &self,
        chunk: &ChunkRef,
        owner: &str,
        done: &[DoneFile],
        lease_change: impl FnOnce(&mut ChunkState, bool),
    ) -> Result<LeaseStatus, StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let Some(bytes) = jobs.get(chunk.job_id.as_str()).map_err(db_err)?.map(|v| v.value().to_vec()) else {
                return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled });
            };
            let mut job = decode_job(&bytes)?;
            record_done(txn, &mut job.record, done)?;
            let key = chunk_key(chunk);
            let held = {
                let mut chunks = txn.open_table(JOB_CHUNKS).map_err(db_err)?;
                let state = chunks.get(key.as_str()).map_err(db_err)?.map(|v| v.value().to_vec());
                match state {
                    Some(bytes) => {
                        let mut state: ChunkState = serde_json::from_slice(&bytes).map_err(corrupt("job chunk"))?;
                        let held = !state.finished && state.lease.as_ref().is_some_and(|l| l.owner == owner);
                        lease_change(&mut state, held);
                        put_chunk(&mut chunks, &key, &state)?;
                        held
                    }
                    None => false,
                }
            };
            settle(txn, &mut job)?;
            put_job(&mut jobs, &job)?;
            Ok(LeaseStatus { held, job_state: job.record.state })
        })
    }
}

impl JobStore for EmbeddedStore {
    fn create_job(&self, job: &JobRecord, max_unfinished: usize) -> Result<(), StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let unfinished = all_jobs(&jobs)?.iter().filter(|j| !j.record.state.is_finished()).count();
            if unfinished >= max_unfinished {
                return Err(StoreError::TooManyJobs { limit: max_unfinished });
            }
            put_job(&mut jobs, &StoredJob { record: job.clone(), listed: false, lister: None })
        })
    }

    fn create_claimed_job(&self, job: &JobRecord, owner: &str, ttl: Duration) -> Result<(), StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let mut record = job.clone();
            record.state = JobState::Running;
            record.started_at.get_or_insert_with(OffsetDateTime::now_utc);
            put_job(&mut jobs, &StoredJob { record, listed: false, lister: Some(Lease::new(owner, ttl)) })
        })
    }

    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let Some(value) = txn.open_table(JOBS).map_err(db_err)?.get(id).map_err(db_err)? else { return Ok(None) };
        let mut job = decode_job(value.value())?.record;
        job.failures = failures_of(&txn.open_table(JOB_FAILURES).map_err(db_err)?, id)?;
        Ok(Some(job))
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let failures = txn.open_table(JOB_FAILURES).map_err(db_err)?;
        let mut out = Vec::new();
        for stored in all_jobs(&txn.open_table(JOBS).map_err(db_err)?)? {
            let mut job = stored.record;
            job.failures = failures_of(&failures, &job.id)?;
            out.push(job);
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        Ok(out)
    }

    fn claim_listing(&self, owner: &str, ttl: Duration) -> Result<Option<JobRecord>, StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let mut all = all_jobs(&jobs)?;
            all.sort_by(|a, b| a.record.created_at.cmp(&b.record.created_at).then_with(|| a.record.id.cmp(&b.record.id)));
            let free = |j: &StoredJob| !j.listed && !j.lister.as_ref().is_some_and(Lease::live);
            // A cancelling job whose lister died ends here.
            for mut job in all.iter().filter(|j| j.record.state == JobState::Cancelling && free(j)).cloned() {
                settle(txn, &mut job)?;
                put_job(&mut jobs, &job)?;
            }
            let next = all.into_iter().find(|j| match j.record.state {
                JobState::Queued => true,
                JobState::Running => free(j),
                _ => false,
            });
            let Some(mut job) = next else { return Ok(None) };
            job.record.state = JobState::Running;
            job.record.started_at.get_or_insert_with(OffsetDateTime::now_utc);
            job.listed = false;
            job.lister = Some(Lease::new(owner, ttl));
            put_job(&mut jobs, &job)?;
            Ok(Some(job.record))
        })
    }

    fn store_listing(&self, job_id: &str, owner: &str, listing: &Listing) -> Result<LeaseStatus, StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let Some(bytes) = jobs.get(job_id).map_err(db_err)?.map(|v| v.value().to_vec()) else {
                return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled });
            };
            let mut job = decode_job(&bytes)?;
            let held = !job.listed && job.lister.as_ref().is_some_and(|l| l.owner == owner);
            if !held {
                return Ok(LeaseStatus { held, job_state: job.record.state });
            }
            job.lister = None;
            if job.record.state == JobState::Running {
                let failures: Vec<DoneFile> =
                    listing.failures.iter().map(|f| DoneFile::new(f.path.clone(), FileOutcome::Failed(f.error.clone()))).collect();
                record_done(txn, &mut job.record, &failures)?;
                let todo: Vec<String> = {
                    let recorded = txn.open_table(JOB_DONE).map_err(db_err)?;
                    let mut todo = Vec::with_capacity(listing.paths.len());
                    for path in &listing.paths {
                        if recorded.get(done_key(job_id, path).as_str()).map_err(db_err)?.is_none() {
                            todo.push(path.clone());
                        }
                    }
                    todo
                };
                job.record.total = job.record.done + todo.len();
                let mut states = txn.open_table(JOB_CHUNKS).map_err(db_err)?;
                let mut paths = txn.open_table(JOB_CHUNK_PATHS).map_err(db_err)?;
                for (index, chunk) in chunked(todo).into_iter().enumerate() {
                    let key = chunk_key(&ChunkRef { job_id: job_id.to_string(), index: index as u32 });
                    put_chunk(&mut states, &key, &ChunkState::default())?;
                    let json = serde_json::to_vec(&chunk).map_err(corrupt("job chunk"))?;
                    paths.insert(key.as_str(), json.as_slice()).map_err(db_err)?;
                }
                job.listed = true;
            }
            settle(txn, &mut job)?;
            put_job(&mut jobs, &job)?;
            Ok(LeaseStatus { held, job_state: job.record.state })
        })
    }

    fn renew_listing(&self, job_id: &str, owner: &str, ttl: Duration) -> Result<LeaseStatus, StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let Some(bytes) = jobs.get(job_id).map_err(db_err)?.map(|v| v.value().to_vec()) else {
                return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled });
            };
            let mut job = decode_job(&bytes)?;
            let held = !job.listed && job.lister.as_ref().is_some_and(|l| l.owner == owner);
            if held {
                job.lister = Some(Lease::new(owner, ttl));
                put_job(&mut jobs, &job)?;
            }
            Ok(LeaseStatus { held, job_state: job.record.state })
        })
    }

    fn fail_listing(&self, job_id: &str, owner: &str, error: &str) -> Result<LeaseStatus, StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let Some(bytes) = jobs.get(job_id).map_err(db_err)?.map(|v| v.value().to_vec()) else {
                return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled });
            };
            let mut job = decode_job(&bytes)?;
            let held = !job.listed && job.lister.as_ref().is_some_and(|l| l.owner == owner);
            if held {
                job.lister = None;
                if job.record.state == JobState::Running {
                    job.record.error = Some(error.to_string());
                    finish(&mut job.record, JobState::Failed);
                } else {
                    settle(txn, &mut job)?;
                }
                put_job(&mut jobs, &job)?;
            }
            Ok(LeaseStatus { held, job_state: job.record.state })
        })
    }

    fn claim_chunk(&self, owner: &str, ttl: Duration) -> Result<Option<ChunkClaim>, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        let mut changed = false;
        let mut claim = None;
        {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let mut all = all_jobs(&jobs)?;
            all.sort_by(|a, b| a.record.created_at.cmp(&b.record.created_at).then_with(|| a.record.id.cmp(&b.record.id)));
            for mut job in all.into_iter().filter(|j| j.record.state == JobState::Cancelling) {
                settle(&txn, &mut job)?;
                if job.record.state != JobState::Cancelling {
                    put_job(&mut jobs, &job)?;
                    changed = true;
                }
            }
            let mut all = all_jobs(&jobs)?;
            all.sort_by(|a, b| a.record.created_at.cmp(&b.record.created_at).then_with(|| a.record.id.cmp(&b.record.id)));
            let mut states = txn.open_table(JOB_CHUNKS).map_err(db_err)?;
            'jobs: for job in all.iter().filter(|j| j.record.state == JobState::Running && j.listed) {
                for (key, mut state) in chunks_of(&states, &job.record.id)? {
                    if state.finished || state.lease.as_ref().is_some_and(Lease::live) {
                        continue;
                    }
                    state.lease = Some(Lease::new(owner, ttl));
                    put_chunk(&mut states, &key, &state)?;
                    changed = true;
                    let index = key
                        .rsplit('\0')
                        .next()
                        .and_then(|i| i.parse().ok())
                        .ok_or_else(|| StoreError::Corrupt(format!("chunk key {key:?}")))?;
                    let paths: Vec<String> = match txn.open_table(JOB_CHUNK_PATHS).map_err(db_err)?.get(key.as_str()).map_err(db_err)? {
                        Some(json) => serde_json::from_slice(json.value()).map_err(corrupt("job chunk paths"))?,
                        None => return Err(StoreError::Corrupt(format!("job chunk {key:?} has no paths"))),
                    };
                    let recorded = txn.open_table(JOB_DONE).map_err(db_err)?;
                    let mut done = HashSet::new();
                    for path in &paths {
                        if recorded.get(done_key(&job.record.id, path).as_str()).map_err(db_err)?.is_some() {
                            done.insert(path.clone());
                        }
                    }
                    claim =
                        Some(ChunkClaim { chunk: ChunkRef { job_id: job.record.id.clone(), index }, kind: job.record.kind, paths, done });
                    break 'jobs;
                }
            }
        }
        if changed {
            txn.commit().map_err(db_err)?;
        } else {
            txn.abort().map_err(db_err)?;
        }
        Ok(claim)
    }

    fn record_progress(&self, chunk: &ChunkRef, owner: &str, ttl: Duration, done: &[DoneFile]) -> Result<LeaseStatus, StoreError> {
        self.chunk_write(chunk, owner, done, |state, held| {
            if held {
                state.lease = Some(Lease::new(owner, ttl));
            }
        })
    }

    fn let_go(&self, chunk: &ChunkRef, owner: &str, done: &[DoneFile], end: ChunkEnd) -> Result<LeaseStatus, StoreError> {
        self.chunk_write(chunk, owner, done, |state, held| {
            if held {
                state.lease = None;
                state.finished = end == ChunkEnd::Finished;
            }
        })
    }

    fn cancel_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.write_jobs(|txn| {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let Some(bytes) = jobs.get(id).map_err(db_err)?.map(|v| v.value().to_vec()) else { return Ok(None) };
            let mut job = decode_job(&bytes)?;
            match job.record.state {
                JobState::Queued => finish(&mut job.record, JobState::Cancelled),
                JobState::Running => {
                    job.record.state = JobState::Cancelling;
                    settle(txn, &mut job)?;
                }
                _ => {}
            }
            put_job(&mut jobs, &job)?;
            job.record.failures = failures_of(&txn.open_table(JOB_FAILURES).map_err(db_err)?, id)?;
            Ok(Some(job.record))
        })
    }

    fn delete_job(&self, id: &str) -> Result<JobRemoval, StoreError> {
        self.write_jobs(|txn| {
            let state = {
                let jobs = txn.open_table(JOBS).map_err(db_err)?;
                let Some(bytes) = jobs.get(id).map_err(db_err)?.map(|v| v.value().to_vec()) else { return Ok(JobRemoval::NotFound) };
                decode_job(&bytes)?.record.state
            };
            if !state.is_finished() {
                return Ok(JobRemoval::Unfinished(state));
            }
            remove_job(txn, id)?;
            Ok(JobRemoval::Removed)
        })
    }

    fn prune_finished_jobs(&self, keep: usize) -> Result<(), StoreError> {
        let finished: Vec<String> = self.jobs()?.into_iter().filter(|j| j.state.is_finished()).skip(keep).map(|j| j.id).collect();
        if finished.is_empty() {
            return Ok(());
        }
        self.write_jobs(|txn| {
            for id in &finished {
                remove_job(txn, id)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> EmbeddedStore {
        EmbeddedStore::open(dir).expect("open store")
    }

    #[test]
    fn the_embedded_job_store_passes_the_job_conformance_suite() {
        let dirs = std::sync::Mutex::new(Vec::new());
        crate::store::jobs_conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = open(dir.path());
            dirs.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
            std::sync::Arc::new(store)
        });
    }

    #[test]
    fn the_embedded_store_passes_the_generations_conformance_suite() {
        let dirs = std::sync::Mutex::new(Vec::new());
        crate::store::generations::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = open(dir.path());
            dirs.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
            std::sync::Arc::new(store)
        });
    }

    #[test]
    fn a_reopened_store_frees_every_lease_of_the_dead_process_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let long = Duration::from_secs(3600);
        {
            let store = open(dir.path());
            store.create_job(&JobRecord::queued("a".into(), "/a".into(), false), 10).unwrap();
            store.create_job(&JobRecord::queued("b".into(), "/b".into(), false), 10).unwrap();
            let a = store.claim_listing("dead", long).unwrap().unwrap();
            let listing = Listing { paths: vec!["/a/1.jpg".into(), "/a/2.jpg".into()], failures: vec![] };
            store.store_listing(&a.id, "dead", &listing).unwrap();
            let claim = store.claim_chunk("dead", long).unwrap().unwrap();
            store.record_progress(&claim.chunk, "dead", long, &[DoneFile::new("/a/1.jpg", FileOutcome::Indexed)]).unwrap();
            assert_eq!(store.claim_listing("dead", long).unwrap().unwrap().id, "b");
        }
        let store = open(dir.path());
        let claim = store.claim_chunk("alive", long).unwrap().expect("the dead process's chunk is free at once");
        assert_eq!(claim.done, HashSet::from(["/a/1.jpg".to_string()]));
        assert_eq!(store.claim_listing("alive", long).unwrap().expect("so is its listing").id, "b");
    }

    #[test]
    fn unfinished_jobs_of_older_versions_are_listed_again_keeping_their_recorded_paths() {
        let dir = tempfile::tempdir().unwrap();
        {
            // As the previous version wrote them: a bare record, and its finished paths.
            let db = redb::Database::create(dir.path().join("index.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut old = JobRecord::queued("old".into(), "/photos".into(), false);
                (old.state, old.total, old.done, old.indexed) = (JobState::Running, 3, 1, 1);
                let json = serde_json::to_vec(&old).unwrap();
                txn.open_table(JOBS).unwrap().insert("old", json.as_slice()).unwrap();
                txn.open_table(JOB_DONE).unwrap().insert("old\0/photos/1.jpg", 1).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = open(dir.path());
        let ttl = Duration::from_secs(60);
        let job = store.claim_listing("me", ttl).unwrap().expect("an interrupted old job is listed again");
        assert_eq!((job.id.as_str(), job.done), ("old", 1));
        let paths = ["/photos/1.jpg", "/photos/2.jpg", "/photos/3.jpg"].map(String::from).to_vec();
        store.store_listing("old", "me", &Listing { paths, failures: vec![] }).unwrap();
        let claim = store.claim_chunk("me", ttl).unwrap().unwrap();
        assert_eq!(claim.paths, ["/photos/2.jpg", "/photos/3.jpg"], "what it finished is not done again");
        let done = [DoneFile::new("/photos/2.jpg", FileOutcome::Indexed), DoneFile::new("/photos/3.jpg", FileOutcome::Skipped)];
        store.let_go(&claim.chunk, "me", &done, ChunkEnd::Finished).unwrap();
        let job = store.job("old").unwrap().unwrap();
        assert_eq!((job.state, job.total, job.done, job.indexed, job.skipped), (JobState::Completed, 3, 3, 2, 1));
    }
}
