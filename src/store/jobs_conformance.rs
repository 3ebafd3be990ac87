//! Behaviour every [`JobStore`] backend must show, run by each backend's tests with a fresh,
//! empty store per case. Concurrency is real: claims race from several threads, as replicas do.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::jobs::{ChunkEnd, DoneFile, FileFailure, FileOutcome, JobRecord, JobRemoval, JobState, JobStore, Listing, CHUNK_PATHS};
use super::StoreError;

/// Opens a fresh, empty store.
pub type Open<'a> = &'a (dyn Fn() -> Arc<dyn JobStore> + Sync);

const LONG: Duration = Duration::from_secs(3600);
/// A lease the cases let expire. Long enough that a busy machine (CI runs the suite's tests side
/// by side) does not let it lapse between two calls that expect it held.
const SHORT_LEASE: Duration = Duration::from_millis(1000);

/// Runs every case.
pub fn run_all(open: Open) {
    a_listing_is_claimed_by_one_runner_and_stored_as_chunks(open);
    two_owners_never_get_the_same_chunk(open);
    an_expired_lease_hands_the_chunk_over_with_its_recorded_files(open);
    recording_is_idempotent_per_path(open);
    cancel_stops_queued_jobs_at_once_and_running_ones_when_the_last_worker_lets_go(open);
    a_cancelled_job_whose_workers_died_ends_at_the_next_claim(open);
    nothing_is_recorded_after_a_job_reads_cancelled_however_claims_race_the_cancel(open);
    a_renewed_listing_lease_is_not_taken_over(open);
    the_worker_finishing_the_last_chunk_completes_the_job(open);
    the_cap_on_unfinished_jobs_holds_under_concurrent_creates(open);
    failures_and_empty_listings_and_failed_listings(open);
    prune_keeps_the_newest_finished_jobs(open);
    delete_forgets_finished_jobs_and_leaves_unfinished_ones(open);
    a_job_created_claimed_is_listed_by_its_creator_only(open);
}

fn a_job_created_claimed_is_listed_by_its_creator_only(open: Open) {
    let store = open();
    store.create_job(&JobRecord::queued("older".into(), "/older".into(), false), 10).unwrap();
    store.create_claimed_job(&JobRecord::queued("watch".into(), "/photos".into(), true), "watcher", LONG).unwrap();
    let job = store.job("watch").unwrap().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert!(job.started_at.is_some());
    // Another runner gets the older queued job, never the claimed one.
    assert_eq!(store.claim_listing("runner", LONG).unwrap().map(|j| j.id), Some("older".into()));
    assert_eq!(store.claim_listing("runner", LONG).unwrap(), None);
    assert!(!store.store_listing("watch", "runner", &Listing { paths: paths(1), failures: vec![] }).unwrap().held);
    let status = store.store_listing("watch", "watcher", &Listing { paths: paths(3), failures: vec![] }).unwrap();
    assert!(status.held);
    let claim = store.claim_chunk("worker", LONG).unwrap().expect("its chunk is free for any runner");
    assert_eq!(claim.chunk.job_id, "watch");
    assert_eq!(claim.paths, paths(3));
    let status = store.let_go(&claim.chunk, "worker", &indexed(&claim.paths), ChunkEnd::Finished).unwrap();
    assert_eq!(status.job_state, JobState::Completed);
    // Claimed jobs are not counted against the cap (their creator runs one at a time).
    store.create_claimed_job(&JobRecord::queued("empty".into(), "/photos".into(), true), "watcher", LONG).unwrap();
    let status = store.store_listing("empty", "watcher", &Listing::default()).unwrap();
    assert_eq!(status.job_state, JobState::Completed, "nothing to do: completed at once");
}

fn paths(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/photos/{i:06}.jpg")).collect()
}

/// A running job `id` with `n` listed paths, listed by `lister`.
fn listed_job(store: &dyn JobStore, id: &str, n: usize) {
    store.create_job(&JobRecord::queued(id.into(), format!("/{id}"), false), 100).unwrap();
    let claimed = store.claim_listing("lister", LONG).unwrap().expect("a queued job to list");
    assert_eq!(claimed.id, id);
    let status = store.store_listing(id, "lister", &Listing { paths: paths(n), failures: vec![] }).unwrap();
    assert!(status.held, "{status:?}");
}

fn indexed(paths: &[String]) -> Vec<DoneFile> {
    paths.iter().map(|p| DoneFile::new(p.clone(), FileOutcome::Indexed)).collect()
}

fn a_listing_is_claimed_by_one_runner_and_stored_as_chunks(open: Open) {
    let store = open();
    store.create_job(&JobRecord::queued("j".into(), "/j".into(), true), 10).unwrap();
    let start = Arc::new(Barrier::new(4));
    let winners: Vec<Option<JobRecord>> = (0..4)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                store.claim_listing(&format!("runner{i}"), LONG).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let won: Vec<&JobRecord> = winners.iter().flatten().collect();
    assert_eq!(won.len(), 1, "one runner lists a folder: {winners:?}");
    assert_eq!(won[0].state, JobState::Running);
    assert!(won[0].started_at.is_some());
    let owner = (0..4).find(|i| winners[*i].is_some()).map(|i| format!("runner{i}")).unwrap();

    let stranger = store.store_listing("j", "someone else", &Listing { paths: paths(3), failures: vec![] }).unwrap();
    assert!(!stranger.held, "only the lister stores the listing");
    let n = CHUNK_PATHS * 2 + 1;
    let status = store.store_listing("j", &owner, &Listing { paths: paths(n), failures: vec![] }).unwrap();
    assert_eq!((status.held, status.job_state), (true, JobState::Running));
    assert_eq!(store.job("j").unwrap().unwrap().total, n);
    assert!(store.claim_listing("late", LONG).unwrap().is_none(), "a listed job is not listed again");
    let mut sizes = Vec::new();
    while let Some(claim) = store.claim_chunk("worker", LONG).unwrap() {
        sizes.push(claim.paths.len());
    }
    assert_eq!(sizes, vec![CHUNK_PATHS, CHUNK_PATHS, 1]);
}

fn two_owners_never_get_the_same_chunk(open: Open) {
    let store = open();
    let chunks = 24;
    listed_job(store.as_ref(), "a", CHUNK_PATHS * chunks / 2);
    listed_job(store.as_ref(), "b", CHUNK_PATHS * chunks / 2);
    let start = Arc::new(Barrier::new(4));
    let claimed: Vec<_> = (0..4)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut mine = Vec::new();
                while let Some(claim) = store.claim_chunk(&format!("w{i}"), LONG).unwrap() {
                    mine.push((claim.chunk, claim.paths));
                }
                mine
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(claimed.len(), chunks, "every chunk claimed once");
    let distinct: HashSet<_> = claimed.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(distinct.len(), chunks, "no chunk claimed twice");
    let all_paths: HashSet<(String, String)> =
        claimed.iter().flat_map(|(c, ps)| ps.iter().map(|p| (c.job_id.clone(), p.clone()))).collect();
    assert_eq!(all_paths.len(), CHUNK_PATHS * chunks, "chunks do not overlap");
}

fn an_expired_lease_hands_the_chunk_over_with_its_recorded_files(open: Open) {
    let store = open();
    listed_job(store.as_ref(), "j", 10);
    let short = SHORT_LEASE;
    let first = store.claim_chunk("crashed", short).unwrap().unwrap();
    let status = store.record_progress(&first.chunk, "crashed", short, &indexed(&first.paths[..3])).unwrap();
    assert!(status.held && !status.should_stop(), "{status:?}");
    assert!(store.claim_chunk("other", short).unwrap().is_none(), "a live lease is not taken");
    thread::sleep(SHORT_LEASE + Duration::from_millis(150));
    let taken = store.claim_chunk("other", LONG).unwrap().expect("an expired lease is taken over");
    assert_eq!(taken.chunk, first.chunk);
    assert_eq!(taken.done, first.paths[..3].iter().cloned().collect::<HashSet<_>>(), "recorded files are not done again");

    // The old owner wakes up: its files still count once, but the chunk is no longer its.
    let late = store.record_progress(&first.chunk, "crashed", short, &indexed(&first.paths[..4])).unwrap();
    assert!(!late.held && late.should_stop(), "{late:?}");
    let gone = store.let_go(&first.chunk, "crashed", &[], ChunkEnd::Finished).unwrap();
    assert!(!gone.held);
    assert_eq!(store.job("j").unwrap().unwrap().state, JobState::Running, "a lost lease does not finish the chunk");
    let rest: Vec<String> = taken.paths.iter().filter(|p| !taken.done.contains(*p)).cloned().collect();
    let end = store.let_go(&taken.chunk, "other", &indexed(&rest), ChunkEnd::Finished).unwrap();
    assert_eq!(end.job_state, JobState::Completed);
    let job = store.job("j").unwrap().unwrap();
    assert_eq!((job.done, job.indexed, job.total), (10, 10, 10), "{job:?}");
}

fn recording_is_idempotent_per_path(open: Open) {
    let store = open();
    listed_job(store.as_ref(), "j", 6);
    let claim = store.claim_chunk("w", LONG).unwrap().unwrap();
    let p = &claim.paths;
    let first = vec![
        DoneFile::new(p[0].clone(), FileOutcome::Indexed),
        DoneFile::new(p[1].clone(), FileOutcome::Skipped),
        DoneFile::new(p[2].clone(), FileOutcome::Failed("broken".into())),
    ];
    store.record_progress(&claim.chunk, "w", LONG, &first).unwrap();
    // The same files again (a retried write), one of them with another outcome, and a new one.
    let mut again = first.clone();
    again[0].outcome = FileOutcome::Skipped;
    again.push(DoneFile::new(p[3].clone(), FileOutcome::Indexed));
    store.record_progress(&claim.chunk, "w", LONG, &again).unwrap();
    // From two threads at once, as two replicas would after a hand-over.
    let twice: Vec<_> = (0..2)
        .map(|_| {
            let (store, chunk, files) = (store.clone(), claim.chunk.clone(), indexed(&p[4..6]));
            thread::spawn(move || store.record_progress(&chunk, "w", LONG, &files).unwrap())
        })
        .collect();
    for t in twice {
        t.join().unwrap();
    }
    let job = store.job("j").unwrap().unwrap();
    assert_eq!((job.done, job.indexed, job.skipped, job.failed), (6, 4, 1, 1), "{job:?}");
    assert_eq!(job.failures, vec![FileFailure { path: p[2].clone(), error: "broken".into() }]);
}

fn cancel_stops_queued_jobs_at_once_and_running_ones_when_the_last_worker_lets_go(open: Open) {
    let store = open();
    listed_job(store.as_ref(), "running", CHUNK_PATHS * 2);
    store.create_job(&JobRecord::queued("queued".into(), "/q".into(), false), 10).unwrap();
    let cancelled = store.cancel_job("queued").unwrap().unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled, "a queued job is cancelled at once");
    assert!(cancelled.finished_at.is_some());
    assert!(store.cancel_job("nope").unwrap().is_none());

    let a = store.claim_chunk("a", LONG).unwrap().unwrap();
    let b = store.claim_chunk("b", LONG).unwrap().unwrap();
    assert_eq!(store.cancel_job("running").unwrap().unwrap().state, JobState::Cancelling);
    // Each worker hears it at its next write, from another thread (another replica).
    let heard = {
        let (store, chunk) = (store.clone(), a.chunk.clone());
        thread::spawn(move || store.record_progress(&chunk, "a", LONG, &[]).unwrap()).join().unwrap()
    };
    assert!(heard.held && heard.should_stop() && heard.job_state == JobState::Cancelling, "{heard:?}");
    let first = store.let_go(&a.chunk, "a", &indexed(&a.paths[..2]), ChunkEnd::Stopped).unwrap();
    assert_eq!(first.job_state, JobState::Cancelling, "b still holds a chunk");
    let last = store.let_go(&b.chunk, "b", &indexed(&b.paths[..1]), ChunkEnd::Stopped).unwrap();
    assert_eq!(last.job_state, JobState::Cancelled, "the last worker to let go ends it");
    let job = store.job("running").unwrap().unwrap();
    assert_eq!((job.state, job.done), (JobState::Cancelled, 3));
    assert!(job.finished_at.is_some());
    assert!(store.claim_chunk("c", LONG).unwrap().is_none(), "nothing of a cancelled job is claimed");
    assert_eq!(store.cancel_job("running").unwrap().unwrap().state, JobState::Cancelled, "cancelling twice is harmless");

    // A running job no one works on right now is cancelled at once.
    listed_job(store.as_ref(), "idle", 3);
    assert_eq!(store.cancel_job("idle").unwrap().unwrap().state, JobState::Cancelled);
}

fn a_cancelled_job_whose_workers_died_ends_at_the_next_claim(open: Open) {
    let store = open();
    let short = SHORT_LEASE;
    listed_job(store.as_ref(), "j", 4);
    store.claim_chunk("dead", short).unwrap().unwrap();
    assert_eq!(store.cancel_job("j").unwrap().unwrap().state, JobState::Cancelling);
    // And a job whose lister died while it was being cancelled.
    store.create_job(&JobRecord::queued("k".into(), "/k".into(), false), 10).unwrap();
    assert_eq!(store.claim_listing("dead", short).unwrap().unwrap().id, "k");
    assert_eq!(store.cancel_job("k").unwrap().unwrap().state, JobState::Cancelling);
    thread::sleep(SHORT_LEASE + Duration::from_millis(150));
    assert!(store.claim_chunk("alive", LONG).unwrap().is_none());
    assert!(store.claim_listing("alive", LONG).unwrap().is_none());
    for id in ["j", "k"] {
        let job = store.job(id).unwrap().unwrap();
        assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    }
    let late = store.store_listing("k", "dead", &Listing { paths: paths(2), failures: vec![] }).unwrap();
    assert_eq!((late.held, late.job_state), (false, JobState::Cancelled));
}

fn the_worker_finishing_the_last_chunk_completes_the_job(open: Open) {
    let store = open();
    let workers = 3;
    listed_job(store.as_ref(), "j", CHUNK_PATHS * workers);
    let start = Arc::new(Barrier::new(workers));
    let ends: Vec<JobState> = (0..workers)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                let owner = format!("w{i}");
                let claim = store.claim_chunk(&owner, LONG).unwrap().expect("a chunk each");
                start.wait();
                for part in claim.paths.chunks(64) {
                    let status = store.record_progress(&claim.chunk, &owner, LONG, &indexed(part)).unwrap();
                    assert!(!status.should_stop(), "{status:?}");
                }
                store.let_go(&claim.chunk, &owner, &[], ChunkEnd::Finished).unwrap().job_state
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(ends.iter().filter(|s| **s == JobState::Completed).count(), 1, "one worker finishes last: {ends:?}");
    assert_eq!(ends.iter().filter(|s| **s == JobState::Running).count(), workers - 1);
    let job = store.job("j").unwrap().unwrap();
    assert_eq!(
        (job.state, job.done, job.indexed, job.total),
        (JobState::Completed, CHUNK_PATHS * workers, CHUNK_PATHS * workers, CHUNK_PATHS * workers)
    );
    assert!(job.finished_at.is_some() && job.started_at.is_some());
}

fn the_cap_on_unfinished_jobs_holds_under_concurrent_creates(open: Open) {
    let store = open();
    let start = Arc::new(Barrier::new(8));
    let results: Vec<Result<(), StoreError>> = (0..8)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                store.create_job(&JobRecord::queued(format!("j{i}"), "/x".into(), false), 3)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::TooManyJobs { limit: 3 })));
    // Finished jobs do not count.
    let queued = store.jobs().unwrap();
    store.cancel_job(&queued[0].id).unwrap();
    store.create_job(&JobRecord::queued("later".into(), "/x".into(), false), 3).unwrap();
    assert!(matches!(store.create_job(&JobRecord::queued("refused".into(), "/x".into(), false), 3), Err(StoreError::TooManyJobs { .. })));
    assert_eq!(store.jobs().unwrap().len(), 4);
}

fn failures_and_empty_listings_and_failed_listings(open: Open) {
    let store = open();
    store.create_job(&JobRecord::queued("j".into(), "/j".into(), true), 10).unwrap();
    store.claim_listing("me", LONG).unwrap().unwrap();
    let failures = vec![FileFailure { path: "/j/locked".into(), error: "cannot read".into() }];
    let status = store.store_listing("j", "me", &Listing { paths: vec![], failures: failures.clone() }).unwrap();
    assert_eq!(status.job_state, JobState::Completed, "nothing to do: completed at once");
    let job = store.job("j").unwrap().unwrap();
    assert_eq!((job.total, job.done, job.failed), (1, 1, 1));
    assert_eq!(job.failures, failures);
    assert!(job.finished_at.is_some());

    store.create_job(&JobRecord::queued("gone".into(), "/gone".into(), true), 10).unwrap();
    store.claim_listing("me", LONG).unwrap().unwrap();
    assert!(!store.fail_listing("gone", "stranger", "no").unwrap().held);
    let failed = store.fail_listing("gone", "me", "no such folder").unwrap();
    assert_eq!(failed.job_state, JobState::Failed);
    let job = store.job("gone").unwrap().unwrap();
    assert_eq!((job.state, job.error.as_deref()), (JobState::Failed, Some("no such folder")));
    let newest_first: Vec<String> = store.jobs().unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(newest_first, vec!["gone", "j"]);
}

fn prune_keeps_the_newest_finished_jobs(open: Open) {
    let store = open();
    for i in 0..5 {
        let mut job = JobRecord::queued(format!("j{i}"), "/x".into(), false);
        job.created_at += time::Duration::seconds(i);
        store.create_job(&job, 100).unwrap();
    }
    for i in 0..4 {
        store.cancel_job(&format!("j{i}")).unwrap();
    }
    store.prune_finished_jobs(2).unwrap();
    let left: Vec<String> = store.jobs().unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(left, vec!["j4", "j3", "j2"], "the unfinished one and the two newest finished");
}

fn delete_forgets_finished_jobs_and_leaves_unfinished_ones(open: Open) {
    let store = open();
    assert_eq!(store.delete_job("nope").unwrap(), JobRemoval::NotFound);
    listed_job(store.as_ref(), "done", 3);
    assert_eq!(store.delete_job("done").unwrap(), JobRemoval::Unfinished(JobState::Running));
    store.create_job(&JobRecord::queued("queued".into(), "/q".into(), false), 100).unwrap();
    assert_eq!(store.delete_job("queued").unwrap(), JobRemoval::Unfinished(JobState::Queued));
    let claim = store.claim_chunk("w", LONG).unwrap().expect("the listed chunk");
    assert_eq!(store.let_go(&claim.chunk, "w", &indexed(&claim.paths), ChunkEnd::Finished).unwrap().job_state, JobState::Completed);

    assert_eq!(store.delete_job("done").unwrap(), JobRemoval::Removed);
    assert_eq!(store.job("done").unwrap(), None);
    assert_eq!(store.delete_job("done").unwrap(), JobRemoval::NotFound, "deleting twice finds nothing");
    store.cancel_job("queued").unwrap();
    assert_eq!(store.delete_job("queued").unwrap(), JobRemoval::Removed, "a cancelled job can be deleted");
    assert!(store.jobs().unwrap().is_empty());

    // Nothing of the deleted job lingers: a new job under the same id starts from scratch.
    listed_job(store.as_ref(), "done", 3);
    let claim = store.claim_chunk("w", LONG).unwrap().expect("the new chunk");
    assert!(claim.done.is_empty(), "no recorded paths survive the delete: {:?}", claim.done);
    assert_eq!(store.job("done").unwrap().map(|j| j.done), Some(0));
}

/// Workers claim, record one file and let go in a loop while the job is cancelled: once the job
/// reads `cancelled`, no claim made in the meantime may still record files into it.
fn nothing_is_recorded_after_a_job_reads_cancelled_however_claims_race_the_cancel(open: Open) {
    let store = open();
    for round in 0..12 {
        let id = format!("race{round}");
        listed_job(store.as_ref(), &id, CHUNK_PATHS * 40);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|w| {
                let (store, stop) = (store.clone(), stop.clone());
                thread::spawn(move || {
                    let owner = format!("w{w}");
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let Some(claim) = store.claim_chunk(&owner, LONG).unwrap() else { continue };
                        thread::sleep(Duration::from_millis(3)); // the first file
                        let status = store.record_progress(&claim.chunk, &owner, LONG, &indexed(&claim.paths[..1])).unwrap();
                        let end = if status.should_stop() { ChunkEnd::Stopped } else { ChunkEnd::Finished };
                        store.let_go(&claim.chunk, &owner, &indexed(&claim.paths[1..]), end).unwrap();
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(5 + round * 2));
        store.cancel_job(&id).unwrap();
        let cancelled = loop {
            let job = store.job(&id).unwrap().unwrap();
            if job.state.is_finished() {
                break job;
            }
            thread::yield_now();
        };
        thread::sleep(Duration::from_millis(50));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        let later = store.job(&id).unwrap().unwrap();
        assert_eq!(cancelled.state, JobState::Cancelled, "{cancelled:?}");
        assert_eq!(later.done, cancelled.done, "files recorded after the job read cancelled (round {round})");
    }
}

/// Listing a big folder can take longer than a lease: the lister renews it, and no one else
/// lists the job meanwhile; once it stops renewing, the lease expires and another takes over.
fn a_renewed_listing_lease_is_not_taken_over(open: Open) {
    let store = open();
    // Renewed every 150 ms: a lease ten times that long holds even when a busy machine delays a
    // renewal by a second (one of 300 ms was taken over in a CI run).
    let short = Duration::from_millis(1500);
    store.create_job(&JobRecord::queued("big".into(), "/big".into(), true), 10).unwrap();
    store.claim_listing("slow", short).unwrap().unwrap();
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(150));
        let status = store.renew_listing("big", "slow", short).unwrap();
        assert!(status.held && !status.should_stop(), "{status:?}");
        assert!(store.claim_listing("other", short).unwrap().is_none(), "a renewed listing lease is not taken over");
    }
    assert!(!store.renew_listing("big", "stranger", short).unwrap().held);
    store.cancel_job("big").unwrap();
    let heard = store.renew_listing("big", "slow", short).unwrap();
    assert!(heard.held && heard.should_stop() && heard.job_state == JobState::Cancelling, "{heard:?}");
    thread::sleep(short + Duration::from_millis(150));
    assert!(store.claim_listing("other", short).unwrap().is_none(), "a cancelled job is not listed again");
    assert_eq!(store.job("big").unwrap().unwrap().state, JobState::Cancelled);

    store.create_job(&JobRecord::queued("next".into(), "/next".into(), true), 10).unwrap();
    store.claim_listing("dies", short).unwrap().unwrap();
    thread::sleep(short + Duration::from_millis(150));
    assert_eq!(store.claim_listing("other", LONG).unwrap().expect("an expired listing lease is taken over").id, "next");
    assert!(!store.renew_listing("next", "dies", short).unwrap().held, "the late lister hears it lost the lease");
    let late = store.store_listing("next", "dies", &Listing { paths: paths(3), failures: vec![] }).unwrap();
    assert!(!late.held);
    assert!(store.store_listing("next", "other", &Listing { paths: paths(3), failures: vec![] }).unwrap().held);
    assert_eq!(store.job("next").unwrap().unwrap().total, 3);
}
