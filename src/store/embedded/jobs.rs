//! The embedded backend's job store: job records, their finished paths and kept failures in
//! tables of the same redb database as the images, so one fsync makes progress durable.

use std::collections::HashSet;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{db_err, EmbeddedStore};
use crate::store::jobs::{DoneFile, FileFailure, JobRecord, JobStore, MAX_FAILURES_KEPT};
use crate::store::StoreError;

/// Job id -> record (JSON, without its failures).
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// `job id \0 path` -> 1: the paths a job has finished.
const JOB_DONE: TableDefinition<&str, u8> = TableDefinition::new("job_done");
/// `job id \0 sequence` -> failure (JSON), the first [`MAX_FAILURES_KEPT`] of a job.
const JOB_FAILURES: TableDefinition<&str, &[u8]> = TableDefinition::new("job_failures");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(JOBS).map_err(db_err)?;
    txn.open_table(JOB_DONE).map_err(db_err)?;
    txn.open_table(JOB_FAILURES).map_err(db_err)?;
    Ok(())
}

/// The key range of one job's rows in the keyed tables.
fn job_range(id: &str) -> (String, String) {
    (format!("{id}\0"), format!("{id}\u{1}"))
}

fn encode(job: &JobRecord) -> Result<Vec<u8>, StoreError> {
    let bare = JobRecord { failures: Vec::new(), ..job.clone() };
    serde_json::to_vec(&bare).map_err(|e| StoreError::Corrupt(format!("job record: {e}")))
}

fn decode(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("job record: {e}")))
}

fn failures_of(table: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Result<Vec<FileFailure>, StoreError> {
    let (start, end) = job_range(id);
    let mut out = Vec::new();
    for entry in table.range(start.as_str()..end.as_str()).map_err(db_err)? {
        let (_, value) = entry.map_err(db_err)?;
        out.push(serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt(format!("job failure: {e}")))?);
    }
    Ok(out)
}

fn remove_range<V: redb::Value + 'static>(txn: &WriteTransaction, table: TableDefinition<&str, V>, id: &str) -> Result<(), StoreError> {
    let (start, end) = job_range(id);
    let mut table = txn.open_table(table).map_err(db_err)?;
    table.retain_in(start.as_str()..end.as_str(), |_, _| false).map_err(db_err)?;
    Ok(())
}

impl JobStore for EmbeddedStore {
    fn create_job(&self, job: &JobRecord, max_unfinished: usize) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
            let mut unfinished = 0;
            for entry in jobs.iter().map_err(db_err)? {
                let (_, value) = entry.map_err(db_err)?;
                if !decode(value.value())?.state.is_finished() {
                    unfinished += 1;
                }
            }
            if unfinished >= max_unfinished {
                return Err(StoreError::TooManyJobs { limit: max_unfinished });
            }
            jobs.insert(job.id.as_str(), encode(job)?.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let Some(value) = txn.open_table(JOBS).map_err(db_err)?.get(id).map_err(db_err)? else { return Ok(None) };
        let mut job = decode(value.value())?;
        job.failures = failures_of(&txn.open_table(JOB_FAILURES).map_err(db_err)?, id)?;
        Ok(Some(job))
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let failures = txn.open_table(JOB_FAILURES).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in txn.open_table(JOBS).map_err(db_err)?.iter().map_err(db_err)? {
            let (id, value) = entry.map_err(db_err)?;
            let mut job = decode(value.value())?;
            job.failures = failures_of(&failures, id.value())?;
            out.push(job);
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        Ok(out)
    }

    fn save_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.record_progress(job, &[])
    }

    fn record_progress(&self, job: &JobRecord, done: &[DoneFile]) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut finished = txn.open_table(JOB_DONE).map_err(db_err)?;
            let mut failures = txn.open_table(JOB_FAILURES).map_err(db_err)?;
            let (start, end) = job_range(&job.id);
            let mut kept = failures.range(start.as_str()..end.as_str()).map_err(db_err)?.count();
            for file in done {
                finished.insert(format!("{}\0{}", job.id, file.path).as_str(), 1).map_err(db_err)?;
                if let Some(error) = &file.failure {
                    if kept < MAX_FAILURES_KEPT {
                        let failure = FileFailure { path: file.path.clone(), error: error.clone() };
                        let json = serde_json::to_vec(&failure).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        failures.insert(format!("{}\0{kept:06}", job.id).as_str(), json.as_slice()).map_err(db_err)?;
                        kept += 1;
                    }
                }
            }
            txn.open_table(JOBS).map_err(db_err)?.insert(job.id.as_str(), encode(job)?.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    fn done_paths(&self, id: &str) -> Result<HashSet<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(JOB_DONE).map_err(db_err)?;
        let (start, end) = job_range(id);
        let prefix = start.len();
        let mut out = HashSet::new();
        for entry in table.range(start.as_str()..end.as_str()).map_err(db_err)? {
            let (key, _) = entry.map_err(db_err)?;
            out.insert(key.value()[prefix..].to_string());
        }
        Ok(out)
    }

    fn prune_finished_jobs(&self, keep: usize) -> Result<(), StoreError> {
        let finished: Vec<String> = self.jobs()?.into_iter().filter(|j| j.state.is_finished()).skip(keep).map(|j| j.id).collect();
        if finished.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(db_err)?;
        for id in &finished {
            txn.open_table(JOBS).map_err(db_err)?.remove(id.as_str()).map_err(db_err)?;
            remove_range(&txn, JOB_DONE, id)?;
            remove_range(&txn, JOB_FAILURES, id)?;
        }
        txn.commit().map_err(db_err)
    }
}
