//! The change log of the approximate index: a generation counting the writes that changed
//! vectors, and which index keys each write touched, kept in the same transaction as the write.
//! The saved index names the generation it reflects; after a crash (`kill -9`, power loss) the
//! next start replays only the keys changed since then instead of rebuilding the whole graph
//! (about 40 minutes at a million images on two cores). Entries the saved index already holds
//! are pruned when it is saved.

use redb::{ReadableTable, TableDefinition};

use super::{db_err, META};
use crate::store::StoreError;

/// Index key -> the generation of its last change (add, replace or delete).
const CHANGED: TableDefinition<u64, u64> = TableDefinition::new("ann_changed");
/// Meta entry counting the writes that changed vectors.
const GENERATION: &str = "ann_generation";
/// Meta entry: the log holds every change made after this generation.
const COMPLETE_AFTER: &str = "ann_changed_after";

/// Creates the log; a database from before it starts its log at its current generation.
pub fn create(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CHANGED).map_err(db_err)?;
    let mut meta = txn.open_table(META).map_err(db_err)?;
    if meta.get(COMPLETE_AFTER).map_err(db_err)?.is_none() {
        let now = read_number(&meta, GENERATION)?;
        meta.insert(COMPLETE_AFTER, now.to_string().as_str()).map_err(db_err)?;
    }
    Ok(())
}

fn read_number(meta: &impl ReadableTable<&'static str, &'static str>, name: &str) -> Result<u64, StoreError> {
    match meta.get(name).map_err(db_err)? {
        Some(v) => v.value().parse().map_err(|_| StoreError::Corrupt(format!("{name} `{}` is not a number", v.value()))),
        None => Ok(0),
    }
}

/// The database's current generation.
pub fn generation(meta: &impl ReadableTable<&'static str, &'static str>) -> Result<u64, StoreError> {
    read_number(meta, GENERATION)
}

/// Counts a write that changes the vectors under `keys`; returns the new generation.
pub fn record(txn: &redb::WriteTransaction, keys: impl IntoIterator<Item = u64>) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let next = read_number(&meta, GENERATION)? + 1;
    meta.insert(GENERATION, next.to_string().as_str()).map_err(db_err)?;
    let mut changed = txn.open_table(CHANGED).map_err(db_err)?;
    for key in keys {
        changed.insert(key, next).map_err(db_err)?;
    }
    Ok(next)
}

/// The keys changed after generation `saved`, or `None` when the log no longer reaches back
/// that far (it was pruned past it: the saved index is older than the log).
pub fn changed_after(txn: &redb::ReadTransaction, saved: u64) -> Result<Option<Vec<u64>>, StoreError> {
    let meta = txn.open_table(META).map_err(db_err)?;
    if saved < read_number(&meta, COMPLETE_AFTER)? || saved > read_number(&meta, GENERATION)? {
        return Ok(None);
    }
    let changed = txn.open_table(CHANGED).map_err(db_err)?;
    let mut keys = Vec::new();
    for entry in changed.iter().map_err(db_err)? {
        let (key, generation) = entry.map_err(db_err)?;
        if generation.value() > saved {
            keys.push(key.value());
        }
    }
    Ok(Some(keys))
}

/// Forgets the changes up to generation `saved`, which a saved index now holds.
pub fn prune(txn: &redb::WriteTransaction, saved: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    if saved <= read_number(&meta, COMPLETE_AFTER)? {
        return Ok(());
    }
    meta.insert(COMPLETE_AFTER, saved.to_string().as_str()).map_err(db_err)?;
    txn.open_table(CHANGED).map_err(db_err)?.retain(|_, generation| generation > saved).map_err(db_err)?;
    Ok(())
}
