//! The PostgreSQL backend's job store: the same chunked, leased jobs as the embedded one, in
//! tables every replica shares. Every change to a job locks its row (`FOR UPDATE`), so counters
//! and states stay consistent however many replicas write; free chunks and listings are claimed
//! with `FOR UPDATE SKIP LOCKED`, so two replicas never wait on or take the same one. Leases are
//! timed by the database's clock (`now()`), so replicas' clocks do not matter.

use std::collections::HashSet;
use std::time::Duration;

use postgres::Transaction;
use time::OffsetDateTime;

use super::{off_runtime, sql_err, PgStore, TxError};
use crate::store::jobs::{
    chunked, ChunkClaim, ChunkEnd, ChunkRef, DoneFile, FileFailure, FileOutcome, JobRecord, JobRemoval, JobState, JobStore, LeaseStatus,
    Listing, MAX_FAILURES_KEPT,
};
use crate::store::StoreError;

/// Tables of the job store (schema version 2).
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE vq_jobs (
        id           text PRIMARY KEY,
        -- The job record without its failures (JSON, as the API shows it).
        record       jsonb NOT NULL,
        state        text NOT NULL,
        created_at   timestamptz NOT NULL,
        -- Whether its listing is stored as chunks; who lists it, until when.
        listed       boolean NOT NULL DEFAULT false,
        lister       text,
        lister_until timestamptz
    );
    CREATE INDEX vq_jobs_state ON vq_jobs (state, created_at);
    CREATE TABLE vq_job_done (
        job_id text NOT NULL REFERENCES vq_jobs (id) ON DELETE CASCADE,
        path   text NOT NULL,
        PRIMARY KEY (job_id, path)
    );
    CREATE TABLE vq_job_failures (
        job_id text NOT NULL REFERENCES vq_jobs (id) ON DELETE CASCADE,
        seq    integer NOT NULL,
        path   text NOT NULL,
        error  text NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    CREATE TABLE vq_job_chunks (
        job_id      text NOT NULL REFERENCES vq_jobs (id) ON DELETE CASCADE,
        idx         integer NOT NULL,
        paths       text[] NOT NULL,
        finished    boolean NOT NULL DEFAULT false,
        owner       text,
        lease_until timestamptz,
        PRIMARY KEY (job_id, idx)
    );
"#;

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Cancelling => "cancelling",
        JobState::Completed => "completed",
        JobState::Cancelled => "cancelled",
        JobState::Failed => "failed",
    }
}

fn secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

/// A job row as locked for a change.
struct Locked {
    record: JobRecord,
    listed: bool,
    lister: Option<String>,
    lister_live: bool,
}

/// What to do with the listing lease when a job row is written back.
enum ListerWrite<'a> {
    Keep,
    Clear,
    Take(&'a str, Duration),
}

type Db = TxError;

fn decode(text: &str) -> Result<JobRecord, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("job record: {e}")))
}

fn lock(txn: &mut Transaction, id: &str) -> Result<Option<Locked>, Db> {
    let row = txn.query_opt(
        "SELECT record::text, listed, lister, coalesce(lister_until > now(), false) FROM vq_jobs WHERE id = $1 FOR UPDATE",
        &[&id],
    )?;
    row.map(|r| Ok(Locked { record: decode(r.get(0))?, listed: r.get(1), lister: r.get(2), lister_live: r.get(3) })).transpose()
}

fn put(txn: &mut Transaction, job: &Locked, lister: ListerWrite) -> Result<(), Db> {
    let bare = JobRecord { failures: Vec::new(), ..job.record.clone() };
    let json = serde_json::to_string(&bare).unwrap_or_default();
    let state = state_name(job.record.state);
    match lister {
        ListerWrite::Keep => txn.execute(
            "UPDATE vq_jobs SET record = $2::text::jsonb, state = $3, listed = $4 WHERE id = $1",
            &[&job.record.id, &json, &state, &job.listed],
        )?,
        ListerWrite::Clear => txn.execute(
            "UPDATE vq_jobs SET record = $2::text::jsonb, state = $3, listed = $4, lister = NULL, lister_until = NULL WHERE id = $1",
            &[&job.record.id, &json, &state, &job.listed],
        )?,
        ListerWrite::Take(owner, ttl) => txn.execute(
            "UPDATE vq_jobs SET record = $2::text::jsonb, state = $3, listed = $4, lister = $5,
                 lister_until = now() + make_interval(secs => $6) WHERE id = $1",
            &[&job.record.id, &json, &state, &job.listed, &owner, &secs(ttl)],
        )?,
    };
    Ok(())
}

fn finish(job: &mut JobRecord, state: JobState) {
    job.state = state;
    job.finished_at = Some(OffsetDateTime::now_utc());
}

/// Records files a job finished, each path once, and counts them.
fn record_done(txn: &mut Transaction, job: &mut JobRecord, done: &[DoneFile]) -> Result<(), Db> {
    if done.is_empty() {
        return Ok(());
    }
    let paths: Vec<&str> = done.iter().map(|f| f.path.as_str()).collect();
    let new: HashSet<String> = txn
        .query(
            "INSERT INTO vq_job_done (job_id, path) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING path",
            &[&job.id, &paths],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut kept: i64 = txn.query_one("SELECT count(*) FROM vq_job_failures WHERE job_id = $1", &[&job.id])?.get(0);
    let mut counted = HashSet::new();
    for file in done.iter().filter(|f| new.contains(&f.path)) {
        if !counted.insert(file.path.as_str()) {
            continue;
        }
        job.count(&file.outcome);
        if let FileOutcome::Failed(error) = &file.outcome {
            if (kept as usize) < MAX_FAILURES_KEPT {
                txn.execute(
                    "INSERT INTO vq_job_failures (job_id, seq, path, error) VALUES ($1, $2, $3, $4)",
                    &[&job.id, &(kept as i32), &file.path, error],
                )?;
                kept += 1;
            }
        }
    }
    Ok(())
}

/// Ends a cancelling job no live lease holds any more, and completes a running one whose
/// chunks are all finished.
fn settle(txn: &mut Transaction, job: &mut Locked) -> Result<(), Db> {
    let state = job.record.state;
    if !(state == JobState::Cancelling || (state == JobState::Running && job.listed)) {
        return Ok(());
    }
    let row = txn.query_one(
        "SELECT coalesce(bool_and(finished), true),
                coalesce(bool_or(NOT finished AND owner IS NOT NULL AND lease_until > now()), false)
         FROM vq_job_chunks WHERE job_id = $1",
        &[&job.record.id],
    )?;
    let (all_finished, held): (bool, bool) = (row.get(0), row.get(1));
    if state == JobState::Cancelling {
        if !(job.lister_live || held) {
            job.lister = None;
            job.lister_live = false;
            finish(&mut job.record, JobState::Cancelled);
        }
    } else if all_finished {
        finish(&mut job.record, JobState::Completed);
    }
    Ok(())
}

fn failures_of(txn: &mut impl postgres::GenericClient, id: &str) -> Result<Vec<FileFailure>, postgres::Error> {
    let rows = txn.query("SELECT path, error FROM vq_job_failures WHERE job_id = $1 ORDER BY seq", &[&id])?;
    Ok(rows.iter().map(|r| FileFailure { path: r.get(0), error: r.get(1) }).collect())
}

/// Settles the cancelling jobs no one is changing right now.
fn settle_cancelling(txn: &mut Transaction) -> Result<(), Db> {
    let ids: Vec<String> = txn
        .query("SELECT id FROM vq_jobs WHERE state = 'cancelling' ORDER BY created_at FOR UPDATE SKIP LOCKED", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in ids {
        if let Some(mut job) = lock(txn, &id)? {
            settle(txn, &mut job)?;
            if job.record.state != JobState::Cancelling {
                put(txn, &job, ListerWrite::Clear)?;
            }
        }
    }
    Ok(())
}

impl PgStore {
    /// Records `done` for a chunk's job, then applies `change` to the chunk (given whether
    /// `owner` holds it) and settles the job.
    fn chunk_write(&self, chunk: &ChunkRef, owner: &str, done: &[DoneFile], change: ChunkChange) -> Result<LeaseStatus, StoreError> {
        self.in_transaction(|txn| {
            let Some(mut job) = lock(txn, &chunk.job_id)? else {
                return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled });
            };
            record_done(txn, &mut job.record, done)?;
            let index = chunk.index as i32;
            let row = txn.query_opt(
                "SELECT NOT finished AND owner IS NOT DISTINCT FROM $3 FROM vq_job_chunks WHERE job_id = $1 AND idx = $2 FOR UPDATE",
                &[&chunk.job_id, &index, &owner],
            )?;
            let held = row.is_some_and(|r| r.get(0));
            if held {
                match change {
                    ChunkChange::Renew(ttl) => txn.execute(
                        "UPDATE vq_job_chunks SET lease_until = now() + make_interval(secs => $3) WHERE job_id = $1 AND idx = $2",
                        &[&chunk.job_id, &index, &secs(ttl)],
                    )?,
                    ChunkChange::LetGo(end) => txn.execute(
                        "UPDATE vq_job_chunks SET owner = NULL, lease_until = NULL, finished = $3 WHERE job_id = $1 AND idx = $2",
                        &[&chunk.job_id, &index, &(end == ChunkEnd::Finished)],
                    )?,
                };
            }
            settle(txn, &mut job)?;
            put(txn, &job, ListerWrite::Keep)?;
            Ok(LeaseStatus { held, job_state: job.record.state })
        })
    }
}

#[derive(Clone, Copy)]
enum ChunkChange {
    Renew(Duration),
    LetGo(ChunkEnd),
}

impl JobStore for PgStore {
    fn create_job(&self, job: &JobRecord, max_unfinished: usize) -> Result<(), StoreError> {
        off_runtime(|| {
            let created = self.in_transaction(|txn| {
                // One creator at a time across replicas, so the cap holds.
                txn.execute("SELECT pg_advisory_xact_lock(hashtextextended('vq-create-job', 0))", &[])?;
                let unfinished: i64 =
                    txn.query_one("SELECT count(*) FROM vq_jobs WHERE state IN ('queued', 'running', 'cancelling')", &[])?.get(0);
                if unfinished as usize >= max_unfinished {
                    return Ok(false);
                }
                let bare = JobRecord { failures: Vec::new(), ..job.clone() };
                let json = serde_json::to_string(&bare).unwrap_or_default();
                let created_at = std::time::SystemTime::from(job.created_at);
                txn.execute(
                    "INSERT INTO vq_jobs (id, record, state, created_at) VALUES ($1, $2::text::jsonb, $3, $4)",
                    &[&job.id, &json, &state_name(job.state), &created_at],
                )?;
                Ok(true)
            })?;
            if created {
                Ok(())
            } else {
                Err(StoreError::TooManyJobs { limit: max_unfinished })
            }
        })
    }

    fn create_claimed_job(&self, job: &JobRecord, owner: &str, ttl: Duration) -> Result<(), StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                let mut bare = JobRecord { failures: Vec::new(), ..job.clone() };
                bare.state = JobState::Running;
                bare.started_at.get_or_insert_with(OffsetDateTime::now_utc);
                let json = serde_json::to_string(&bare).unwrap_or_default();
                let created_at = std::time::SystemTime::from(job.created_at);
                txn.execute(
                    "INSERT INTO vq_jobs (id, record, state, created_at, listed, lister, lister_until)
                     VALUES ($1, $2::text::jsonb, $3, $4, false, $5, now() + make_interval(secs => $6))",
                    &[&job.id, &json, &state_name(bare.state), &created_at, &owner, &secs(ttl)],
                )?;
                Ok(())
            })
        })
    }

    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            let Some(row) = conn.query_opt("SELECT record::text FROM vq_jobs WHERE id = $1", &[&id]).map_err(sql_err)? else {
                return Ok(None);
            };
            let mut job = decode(row.get(0))?;
            job.failures = failures_of(&mut *conn, id).map_err(sql_err)?;
            Ok(Some(job))
        })
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            let rows = conn.query("SELECT record::text FROM vq_jobs ORDER BY created_at DESC, id DESC", &[]).map_err(sql_err)?;
            // Every job's failures in one round trip (the list is asked for every second or so).
            let mut failures: std::collections::HashMap<String, Vec<FileFailure>> = std::collections::HashMap::new();
            for row in conn.query("SELECT job_id, path, error FROM vq_job_failures ORDER BY job_id, seq", &[]).map_err(sql_err)? {
                failures.entry(row.get(0)).or_default().push(FileFailure { path: row.get(1), error: row.get(2) });
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut job = decode(row.get(0))?;
                job.failures = failures.remove(&job.id).unwrap_or_default();
                out.push(job);
            }
            Ok(out)
        })
    }

    fn claim_listing(&self, owner: &str, ttl: Duration) -> Result<Option<JobRecord>, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                settle_cancelling(txn)?;
                let next = txn.query_opt(
                    "SELECT id FROM vq_jobs
                     WHERE state = 'queued' OR (state = 'running' AND NOT listed AND (lister IS NULL OR lister_until <= now()))
                     ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    &[],
                )?;
                let Some(id) = next.map(|r| r.get::<_, String>(0)) else { return Ok(None) };
                let Some(mut job) = lock(txn, &id)? else { return Ok(None) };
                job.record.state = JobState::Running;
                job.record.started_at.get_or_insert_with(OffsetDateTime::now_utc);
                job.listed = false;
                put(txn, &job, ListerWrite::Take(owner, ttl))?;
                Ok(Some(job.record))
            })
        })
    }

    fn store_listing(&self, job_id: &str, owner: &str, listing: &Listing) -> Result<LeaseStatus, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                let Some(mut job) = lock(txn, job_id)? else { return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled }) };
                let held = !job.listed && job.lister.as_deref() == Some(owner);
                if !held {
                    return Ok(LeaseStatus { held, job_state: job.record.state });
                }
                job.lister = None;
                job.lister_live = false;
                if job.record.state == JobState::Running {
                    let failures: Vec<DoneFile> =
                        listing.failures.iter().map(|f| DoneFile::new(f.path.clone(), FileOutcome::Failed(f.error.clone()))).collect();
                    record_done(txn, &mut job.record, &failures)?;
                    let todo: Vec<String> = txn
                        .query(
                            "SELECT p.path FROM unnest($2::text[]) WITH ORDINALITY AS p(path, n)
                             WHERE NOT EXISTS (SELECT 1 FROM vq_job_done d WHERE d.job_id = $1 AND d.path = p.path) ORDER BY p.n",
                            &[&job_id, &listing.paths],
                        )?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    job.record.total = job.record.done + todo.len();
                    for (index, chunk) in chunked(todo).into_iter().enumerate() {
                        txn.execute(
                            "INSERT INTO vq_job_chunks (job_id, idx, paths) VALUES ($1, $2, $3)",
                            &[&job_id, &(index as i32), &chunk],
                        )?;
                    }
                    job.listed = true;
                }
                settle(txn, &mut job)?;
                put(txn, &job, ListerWrite::Clear)?;
                Ok(LeaseStatus { held, job_state: job.record.state })
            })
        })
    }

    fn renew_listing(&self, job_id: &str, owner: &str, ttl: Duration) -> Result<LeaseStatus, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                let Some(job) = lock(txn, job_id)? else { return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled }) };
                let held = !job.listed && job.lister.as_deref() == Some(owner);
                if held {
                    txn.execute(
                        "UPDATE vq_jobs SET lister_until = now() + make_interval(secs => $2) WHERE id = $1",
                        &[&job_id, &secs(ttl)],
                    )?;
                }
                Ok(LeaseStatus { held, job_state: job.record.state })
            })
        })
    }

    fn fail_listing(&self, job_id: &str, owner: &str, error: &str) -> Result<LeaseStatus, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                let Some(mut job) = lock(txn, job_id)? else { return Ok(LeaseStatus { held: false, job_state: JobState::Cancelled }) };
                let held = !job.listed && job.lister.as_deref() == Some(owner);
                if held {
                    job.lister = None;
                    job.lister_live = false;
                    if job.record.state == JobState::Running {
                        job.record.error = Some(error.to_string());
                        finish(&mut job.record, JobState::Failed);
                    } else {
                        settle(txn, &mut job)?;
                    }
                    put(txn, &job, ListerWrite::Clear)?;
                }
                Ok(LeaseStatus { held, job_state: job.record.state })
            })
        })
    }

    fn claim_chunk(&self, owner: &str, ttl: Duration) -> Result<Option<ChunkClaim>, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                settle_cancelling(txn)?;
                // The running jobs first, shared (the job row before its chunks, as every writer
                // takes them): a cancel then waits for this claim and sees its lease, instead of
                // ending the job while a worker is about to start on it.
                let running: Vec<String> = txn
                    .query("SELECT id FROM vq_jobs WHERE state = 'running' AND listed ORDER BY created_at, id FOR SHARE", &[])?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let row = txn.query_opt(
                    "SELECT c.job_id, c.idx, c.paths, j.record->>'kind' FROM vq_job_chunks c JOIN vq_jobs j ON j.id = c.job_id
                     WHERE c.job_id = ANY($1) AND NOT c.finished AND (c.owner IS NULL OR c.lease_until <= now())
                     ORDER BY j.created_at, j.id, c.idx LIMIT 1 FOR UPDATE OF c SKIP LOCKED",
                    &[&running],
                )?;
                let Some(row) = row else { return Ok(None) };
                let (job_id, index, paths, kind): (String, i32, Vec<String>, Option<String>) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                txn.execute(
                    "UPDATE vq_job_chunks SET owner = $3, lease_until = now() + make_interval(secs => $4) WHERE job_id = $1 AND idx = $2",
                    &[&job_id, &index, &owner, &secs(ttl)],
                )?;
                let done: HashSet<String> = txn
                    .query("SELECT path FROM vq_job_done WHERE job_id = $1 AND path = ANY($2)", &[&job_id, &paths])?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let kind =
                    serde_json::from_value(serde_json::Value::String(kind.unwrap_or_else(|| "directory".into()))).unwrap_or_default();
                Ok(Some(ChunkClaim { chunk: ChunkRef { job_id, index: index as u32 }, kind, paths, done }))
            })
        })
    }

    fn record_progress(&self, chunk: &ChunkRef, owner: &str, ttl: Duration, done: &[DoneFile]) -> Result<LeaseStatus, StoreError> {
        off_runtime(|| self.chunk_write(chunk, owner, done, ChunkChange::Renew(ttl)))
    }

    fn let_go(&self, chunk: &ChunkRef, owner: &str, done: &[DoneFile], end: ChunkEnd) -> Result<LeaseStatus, StoreError> {
        off_runtime(|| self.chunk_write(chunk, owner, done, ChunkChange::LetGo(end)))
    }

    fn cancel_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                let Some(mut job) = lock(txn, id)? else { return Ok(None) };
                match job.record.state {
                    JobState::Queued => finish(&mut job.record, JobState::Cancelled),
                    JobState::Running => {
                        job.record.state = JobState::Cancelling;
                        settle(txn, &mut job)?;
                    }
                    _ => {}
                }
                put(txn, &job, ListerWrite::Keep)?;
                job.record.failures = failures_of(txn, id)?;
                Ok(Some(job.record))
            })
        })
    }

    fn delete_job(&self, id: &str) -> Result<JobRemoval, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                let Some(job) = lock(txn, id)? else { return Ok(JobRemoval::NotFound) };
                if !job.record.state.is_finished() {
                    return Ok(JobRemoval::Unfinished(job.record.state));
                }
                // Its files, failures and chunks go with it (ON DELETE CASCADE).
                txn.execute("DELETE FROM vq_jobs WHERE id = $1", &[&id])?;
                Ok(JobRemoval::Removed)
            })
        })
    }

    fn prune_finished_jobs(&self, keep: usize) -> Result<(), StoreError> {
        off_runtime(|| {
            self.conn()?
                .execute(
                    "DELETE FROM vq_jobs WHERE id IN (
                       SELECT id FROM vq_jobs WHERE state IN ('completed', 'cancelled', 'failed')
                       ORDER BY created_at DESC, id DESC OFFSET $1)",
                    &[&(keep as i64)],
                )
                .map_err(sql_err)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::super::{testing, PgOptions, PgStore};

    #[test]
    fn the_postgres_job_store_passes_the_job_conformance_suite() {
        let n = AtomicUsize::new(0);
        crate::store::jobs_conformance::run_all(&|| {
            let name = format!("jobs_conformance_{}", n.fetch_add(1, Ordering::Relaxed));
            let mut options = PgOptions::new(testing::fresh_database(&name));
            options.pool_size = 8;
            Arc::new(PgStore::connect(options).expect("test database"))
        });
    }

    #[test]
    fn the_postgres_store_passes_the_generations_conformance_suite() {
        let n = AtomicUsize::new(0);
        crate::store::generations::conformance::run_all(&|| {
            let name = format!("generations_conformance_{}", n.fetch_add(1, Ordering::Relaxed));
            let mut options = PgOptions::new(testing::fresh_database(&name));
            options.pool_size = 4;
            Arc::new(PgStore::connect(options).expect("test database"))
        });
    }
}
