//! The redb database handle, opened again after an I/O error. redb refuses every write after
//! one failed (`PreviousIo`: a full disk, say) until the database is opened anew; without this,
//! a server whose disk filled up would stay broken after the space was freed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::Database;

use crate::store::StoreError;

pub struct DbHandle {
    path: PathBuf,
    /// `None` while the database is being (or could not be) opened again.
    slot: RwLock<Option<Arc<Database>>>,
}

impl DbHandle {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self { path: path.to_path_buf(), slot: RwLock::new(Some(Arc::new(open_database(path)?))) })
    }

    /// The open database.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.slot.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(reopening)
    }

    /// Whether the database takes writes; after an I/O error, opens it again (once no
    /// transaction holds the old handle: the file stays locked until the last one ends).
    pub fn check(&self) -> Result<(), StoreError> {
        if let Ok(db) = self.get() {
            match db.begin_write() {
                Ok(txn) => return txn.abort().map_err(classify),
                Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)) => {}
                Err(e) => return Err(classify(e)),
            }
        }
        self.reopen()
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.take() {
            match Arc::try_unwrap(db) {
                Ok(db) => drop(db),
                Err(still_used) => {
                    *slot = Some(still_used);
                    return Err(reopening());
                }
            }
        }
        let db = open_database(&self.path)?;
        tracing::info!(path = %self.path.display(), "index database opened again after an I/O error");
        *slot = Some(Arc::new(db));
        Ok(())
    }
}

fn reopening() -> StoreError {
    StoreError::Unavailable("the index database had an I/O error (a full disk?) and is being opened again".into())
}

/// redb's page cache. Its default (1 GiB) filled with the f32 vectors re-scoring reads and
/// made the process's memory grow with the index (5.5 KiB per image at 100k, RSS); those reads
/// are served by the OS page cache instead, which the kernel gives back under pressure. 16 MiB
/// keeps the metadata tables and the B-trees' upper levels: servers alternating 64 and 16 MiB on
/// the same 1M images answered equally fast, and 64 MiB held 60-90 MB more RSS (BENCHMARKS.md,
/// "The embedded store at 1M, third pass").
const CACHE_BYTES: usize = 16 * 1024 * 1024;

fn open_database(path: &Path) -> Result<Database, StoreError> {
    redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.display().to_string() },
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) if crate::fsutil::is_out_of_space(&io) => {
            StoreError::StorageFull(io.to_string())
        }
        other => StoreError::Open { path: path.display().to_string(), message: other.to_string() },
    })
}

/// A redb error as the store reports it: a full disk and an earlier I/O failure are conditions
/// that pass (503/507 with Retry-After), not broken data.
pub fn classify(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if crate::fsutil::is_out_of_space(&io) => StoreError::StorageFull(io.to_string()),
        redb::Error::PreviousIo => reopening(),
        other => StoreError::Database(other.to_string()),
    }
}
