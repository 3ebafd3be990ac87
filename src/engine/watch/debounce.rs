//! Turns the stream of file system events into settled changes: a path is handed on once it
//! has been quiet for the settle time, and a file still open for writing (created or written,
//! no close-after-write seen yet) waits for its close, so a 40 MB file copied slowly is handed
//! on once, complete. Bounded: past [`Debouncer::new`]'s cap, new paths are dropped and a
//! rescan is asked for instead (as when the kernel's own queue overflows).
//!
//! Pure: knows paths, change kinds and instants, not notify, the store or the clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A writer silent this long is taken as done even without a close (a process that died, or
/// a file system that does not report closes); a later write re-indexes the file.
pub const OPEN_WRITER_TIMEOUT: Duration = Duration::from_secs(30);

/// What happened to a path, as far as indexing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created: open for writing until its close.
    Created,
    /// Written: open for writing until its close.
    Written,
    /// Closed after writing: complete unless written again.
    Closed,
    /// Renamed here, attributes changed: complete as it is.
    Touched,
    /// Removed or renamed away: a file, or a folder with everything below it.
    Gone,
    /// A folder created or moved in: everything below it is new to us.
    FolderAdded,
}

/// A settled path: what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Check the file (index it if new or changed).
    File(PathBuf),
    /// Take it (or everything below it) out of the index, unless it is there again.
    Gone(PathBuf),
    /// Walk it and check every file below it.
    Folder(PathBuf),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    last: Instant,
    writing: bool,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    File,
    Gone,
    Folder,
}

/// Paths waiting to settle.
#[derive(Debug)]
pub struct Debouncer {
    pending: HashMap<PathBuf, Entry>,
    settle: Duration,
    cap: usize,
    overflowed: bool,
}

impl Debouncer {
    /// Paths settle after `settle` of quiet; at most `cap` paths wait at once.
    pub fn new(settle: Duration, cap: usize) -> Self {
        Self { pending: HashMap::new(), settle, cap: cap.max(1), overflowed: false }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Notes a change; `false` when the path was dropped because too many paths wait (a
    /// rescan is then due, see [`Debouncer::take_overflow`]).
    pub fn note(&mut self, path: PathBuf, change: Change, now: Instant) -> bool {
        if !self.pending.contains_key(&path) && self.pending.len() >= self.cap {
            self.overflowed = true;
            return false;
        }
        let entry = self.pending.entry(path).or_insert(Entry { last: now, writing: false, kind: Kind::File });
        entry.last = now;
        match change {
            Change::Created | Change::Written => {
                entry.writing = true;
                // A path removed and created again is a file again.
                if entry.kind == Kind::Gone {
                    entry.kind = Kind::File;
                }
            }
            Change::Closed => {
                entry.writing = false;
                if entry.kind == Kind::Gone {
                    entry.kind = Kind::File;
                }
            }
            Change::Touched => {
                if entry.kind == Kind::Gone {
                    entry.kind = Kind::File;
                }
            }
            Change::Gone => {
                entry.writing = false;
                entry.kind = Kind::Gone;
            }
            Change::FolderAdded => {
                entry.writing = false;
                entry.kind = Kind::Folder;
            }
        }
        true
    }

    /// Whether paths were dropped since the last call (and so a rescan is due).
    pub fn take_overflow(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// Forgets every waiting path (a rescan covers them).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// The paths that have settled by `now`, in path order, removed from the waiting set.
    pub fn take_settled(&mut self, now: Instant) -> Vec<Settled> {
        let settle = self.settle;
        let mut settled: Vec<(PathBuf, Kind)> = Vec::new();
        self.pending.retain(|path, entry| {
            let quiet = now.saturating_duration_since(entry.last);
            let done = if entry.writing { quiet >= OPEN_WRITER_TIMEOUT.max(settle) } else { quiet >= settle };
            if done {
                settled.push((path.clone(), entry.kind));
            }
            !done
        });
        settled.sort();
        settled
            .into_iter()
            .map(|(path, kind)| match kind {
                Kind::File => Settled::File(path),
                Kind::Gone => Settled::Gone(path),
                Kind::Folder => Settled::Folder(path),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    const SETTLE: Duration = Duration::from_millis(500);

    #[test]
    fn a_file_being_written_waits_for_its_close_however_long_the_pauses() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(SETTLE, 100);
        d.note(p("/r/big.jpg"), Change::Created, t0);
        for i in 1..10 {
            // Pauses longer than the settle time between chunks.
            d.note(p("/r/big.jpg"), Change::Written, t0 + SETTLE * 2 * i);
            assert!(d.take_settled(t0 + SETTLE * (2 * i + 1) + Duration::from_millis(1)).is_empty(), "still open after chunk {i}");
        }
        let closed = t0 + SETTLE * 20;
        d.note(p("/r/big.jpg"), Change::Closed, closed);
        assert!(d.take_settled(closed + SETTLE / 2).is_empty(), "settles after the close too");
        assert_eq!(d.take_settled(closed + SETTLE), vec![Settled::File(p("/r/big.jpg"))]);
        assert!(d.take_settled(closed + SETTLE * 10).is_empty(), "handed on once");
    }

    #[test]
    fn a_writer_that_never_closes_is_taken_after_the_timeout() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(SETTLE, 100);
        d.note(p("/r/a.jpg"), Change::Written, t0);
        assert!(d.take_settled(t0 + OPEN_WRITER_TIMEOUT - Duration::from_millis(1)).is_empty());
        assert_eq!(d.take_settled(t0 + OPEN_WRITER_TIMEOUT), vec![Settled::File(p("/r/a.jpg"))]);
    }

    #[test]
    fn the_last_change_decides_and_renames_settle_without_a_close() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(SETTLE, 100);
        d.note(p("/r/old.jpg"), Change::Gone, t0);
        d.note(p("/r/new.jpg"), Change::Touched, t0);
        d.note(p("/r/back.jpg"), Change::Gone, t0);
        d.note(p("/r/back.jpg"), Change::Created, t0);
        d.note(p("/r/back.jpg"), Change::Closed, t0);
        d.note(p("/r/dir"), Change::FolderAdded, t0);
        d.note(p("/r/written-then-deleted.jpg"), Change::Written, t0);
        d.note(p("/r/written-then-deleted.jpg"), Change::Gone, t0);
        assert_eq!(
            d.take_settled(t0 + SETTLE),
            vec![
                Settled::File(p("/r/back.jpg")),
                Settled::Folder(p("/r/dir")),
                Settled::File(p("/r/new.jpg")),
                Settled::Gone(p("/r/old.jpg")),
                Settled::Gone(p("/r/written-then-deleted.jpg")),
            ]
        );
        assert!(d.is_empty());
    }

    #[test]
    fn past_the_cap_paths_are_dropped_and_a_rescan_is_asked_for() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(SETTLE, 2);
        assert!(d.note(p("/r/1.jpg"), Change::Touched, t0));
        assert!(d.note(p("/r/2.jpg"), Change::Touched, t0));
        assert!(d.note(p("/r/1.jpg"), Change::Closed, t0), "a waiting path is updated, not dropped");
        assert!(!d.note(p("/r/3.jpg"), Change::Touched, t0));
        assert_eq!(d.len(), 2);
        assert!(d.take_overflow());
        assert!(!d.take_overflow(), "asked once");
    }
}
