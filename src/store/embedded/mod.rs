//! The embedded backend: records and vectors in a `redb` database file (ACID, fsync on commit,
//! so a write that returned survives `kill -9`). In memory: each image's id and facets
//! ([`rows`]) and an approximate index over int8 copies of the vectors ([`ann`]), persisted
//! beside the database with a flat copy of the f32 vectors ([`vector_file`]), which is read,
//! never held. Relevance searches take candidates from the index and re-score them with the f32
//! vectors; selective filters, other orders and `exact` queries score every passing image with
//! the f32 vectors ([`search`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use rayon::prelude::*;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

mod ann;
mod changes;
mod generations;
mod handle;
mod jobs;
mod rows;
mod search;
mod vector_file;

use ann::Ann;
pub use ann::{options as ann_index_options, to_int8 as ann_int8_copy, AnnParams};
use rows::Rows;
use vector_file::VectorFile;

use super::filter::{self, Candidate, Facets, Filter, SortBy};
use super::matrix::Matrix;
use super::{duplicates, DuplicateGroup, Hit, ImageRecord, Page, PhotoMeta, SearchQuery, StoreError, StoreInfo, Upserted, VectorStore};

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const VECTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("vectors");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Ingested path -> image id.
const PATHS: TableDefinition<&str, &str> = TableDefinition::new("paths");
/// Ingestion order: `order_key(record)` -> image id, so listings page newest or oldest first.
const ORDER: TableDefinition<&str, &str> = TableDefinition::new("ingest_order");
/// Image id -> other paths the same content was seen at (JSON list), for duplicate finding.
const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
/// Image id -> its key in the approximate index (stable, so the saved index stays valid).
const KEYS: TableDefinition<&str, u64> = TableDefinition::new("ann_keys");

const DB_FILE: &str = "index.redb";

/// How the embedded store searches.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub ann: AnnParams,
    /// Below this many images every search is exact (reading a few thousand vectors is cheap).
    pub ann_min_images: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { ann: AnnParams::default(), ann_min_images: 1000 }
    }
}

/// Where a saved cache of the database (the approximate index, the vector file) came from
/// when the store opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOrigin {
    /// The saved copy matched the database.
    Loaded,
    /// The saved copy was older than the database (the process was killed before saving):
    /// the images changed since it was saved were replayed into it.
    CaughtUp { changes: usize },
    /// Built from the vectors in the database, and why.
    Rebuilt { reason: String },
}

/// The in-memory side, changed only after the database commit it mirrors.
#[derive(Default)]
struct State {
    /// `None` until the first model or vector fixes the dimension.
    dim: Option<usize>,
    rows: Rows,
    /// `None` without a dimension, or after an index error (searches are exact then, and the
    /// next start rebuilds it).
    ann: Option<Ann>,
    /// `None` without a dimension, or after a write to it failed (searches read vectors from
    /// the database then, and the next start rewrites it).
    vectors: Option<VectorFile>,
    /// The database generation the in-memory state reflects.
    generation: u64,
}

pub struct EmbeddedStore {
    db: handle::DbHandle,
    path: PathBuf,
    dir: PathBuf,
    options: StoreOptions,
    state: RwLock<State>,
    /// Serialises writers so the database and the memory change in the same order.
    writer: Mutex<()>,
    origin: Mutex<Option<CacheOrigin>>,
    vector_file_origin: Mutex<Option<CacheOrigin>>,
    /// Off only in tests that stand in for a killed process.
    save_on_drop: bool,
}

use handle::classify as db_err;

impl EmbeddedStore {
    /// The database, or why it cannot be used right now.
    fn db(&self) -> Result<std::sync::Arc<Database>, StoreError> {
        self.db.get()
    }

    /// Opens (or creates) the index in `dir` with the default search options.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the index in `dir`: reads every image's facets, and loads the saved
    /// approximate index, or rebuilds it when it is missing, stale or damaged.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open { path: dir.display().to_string(), message };
        fs_err::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let path = dir.join(DB_FILE);
        let db = handle::DbHandle::open(&path)?;
        let txn = db.get()?.begin_write().map_err(db_err)?;
        {
            txn.open_table(IMAGES).map_err(db_err)?;
            txn.open_table(VECTORS).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
            txn.open_table(PATHS).map_err(db_err)?;
            txn.open_table(ALIASES).map_err(db_err)?;
            jobs::create_tables(&txn)?;
            changes::create(&txn)?;
            backfill_order(&txn)?;
            backfill_keys(&txn)?;
        }
        txn.commit().map_err(db_err)?;
        let store = Self {
            db,
            path,
            dir: dir.to_path_buf(),
            options,
            state: RwLock::new(State::default()),
            writer: Mutex::new(()),
            origin: Mutex::new(None),
            vector_file_origin: Mutex::new(None),
            save_on_drop: true,
        };
        store.load()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the approximate index was loaded or rebuilt at open (`None` for an empty store).
    pub fn ann_origin(&self) -> Option<CacheOrigin> {
        self.origin.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the vector file was loaded, caught up or rewritten at open (`None` for an empty
    /// store, or when it could not be written).
    pub fn vector_file_origin(&self) -> Option<CacheOrigin> {
        self.vector_file_origin.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Saves the approximate index and the vector file if they changed since they were saved or
    /// loaded (at shutdown, and now and then while serving).
    pub fn persist_ann(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let Some(ann) = state.ann.as_ref() else { return Ok(()) };
        if Ann::saved_generation(&self.dir) == Some(state.generation) {
            return Ok(());
        }
        self.save_index(ann, state.vectors.as_ref(), state.generation)
    }

    /// What the store holds in memory: (approximate index, per-image ids and facets), in bytes.
    /// The f32 vectors stay in the database and the vector file (read through the OS page cache),
    /// not here.
    pub fn memory_bytes(&self) -> (usize, usize) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (state.ann.as_ref().map_or(0, Ann::memory_bytes), state.rows.memory_bytes())
    }

    fn load(&self) -> Result<(), StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let Some(dim) = meta.get("dim").map_err(db_err)?.map(|v| v.value().to_string()) else {
            return Ok(());
        };
        let dim: usize = dim.parse().map_err(|_| StoreError::Corrupt(format!("dimension `{dim}` is not a number")))?;
        let generation = changes::generation(&meta)?;
        let keys = txn.open_table(KEYS).map_err(db_err)?;
        let images = txn.open_table(IMAGES).map_err(db_err)?;
        let mut rows = Rows::with_capacity(keys.len().map_err(db_err)? as usize);
        for entry in keys.iter().map_err(db_err)? {
            let (id, key) = entry.map_err(db_err)?;
            let record = images
                .get(id.value())
                .map_err(db_err)?
                .ok_or_else(|| StoreError::Corrupt(format!("key of {} has no record", id.value())))?;
            // The record is dropped before the row is stored (see `Rows::load`).
            let facets = Facets::of(&decode_record(record.value())?);
            rows.load(key.value(), id.value(), facets);
        }
        rows.finish_loading();
        let (ann, origin) = match self.saved_index(&txn, &rows, dim, generation) {
            Ok((ann, origin)) => {
                tracing::info!(images = rows.len(), ?origin, "approximate index loaded");
                (ann, origin)
            }
            Err(reason) => {
                tracing::warn!(%reason, images = rows.len(), "rebuilding the approximate index");
                (self.rebuild(&txn, &rows, dim)?, CacheOrigin::Rebuilt { reason })
            }
        };
        let vectors = match self.saved_vector_file(&txn, &rows, dim, generation) {
            Ok((file, origin)) => Some((file, origin)),
            Err(reason) => {
                tracing::warn!(%reason, images = rows.len(), "rewriting the vector file from the database");
                match self.rewrite_vector_file(&txn, &rows, dim) {
                    Ok(file) => Some((file, CacheOrigin::Rebuilt { reason })),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the vector file; searches read vectors from the database");
                        None
                    }
                }
            }
        };
        let (vectors, vector_file_origin) = vectors.map_or((None, None), |(file, origin)| (Some(file), Some(origin)));
        if origin != CacheOrigin::Loaded {
            if let Err(e) = self.save_index(&ann, vectors.as_ref(), generation) {
                tracing::warn!(error = %e, "cannot save the approximate index; it will be rebuilt at the next start");
            }
        } else if let Some(file) = vectors.as_ref().filter(|_| vector_file_origin != Some(CacheOrigin::Loaded)) {
            // The index as saved already matches: only the vector file needs saving.
            if let Err(e) = file.sync(generation) {
                tracing::warn!(error = %e, "cannot sync the vector file; it will be rewritten at the next start");
            }
        }
        *self.origin.lock().unwrap_or_else(|p| p.into_inner()) = Some(origin);
        *self.vector_file_origin.lock().unwrap_or_else(|p| p.into_inner()) = vector_file_origin;
        tracing::info!(
            images = rows.len(),
            dim,
            index_bytes = ann.memory_bytes(),
            facet_bytes = rows.memory_bytes(),
            path = %self.path.display(),
            "index loaded"
        );
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = State { dim: Some(dim), rows, ann: Some(ann), vectors, generation };
        Ok(())
    }

    /// The saved approximate index brought up to database generation `generation`: as saved, or
    /// with the images changed since it was saved replayed into it. `Err` says why it must be
    /// rebuilt instead.
    fn saved_index(&self, txn: &redb::ReadTransaction, rows: &Rows, dim: usize, generation: u64) -> Result<(Ann, CacheOrigin), String> {
        let (ann, saved) = Ann::load(&self.dir, dim, self.options.ann).map_err(|e| e.to_string())?;
        let origin = if saved == generation {
            CacheOrigin::Loaded
        } else {
            let changed = changed_since(txn, "the saved index", saved, generation)?;
            // Past half the images, a fresh graph costs no more and is better connected.
            if changed.len() > rows.len() / 2 {
                return Err(format!("{} of {} images changed since the index was saved", changed.len(), rows.len()));
            }
            self.replay(txn, &ann, rows, dim, &changed).map_err(|e| e.to_string())?;
            CacheOrigin::CaughtUp { changes: changed.len() }
        };
        if ann.len() != rows.len() || !rows.iter().all(|(key, _)| ann.contains(key)) {
            return Err(format!("the saved index holds {} images, the database {}", ann.len(), rows.len()));
        }
        Ok((ann, origin))
    }

    /// Brings the index's entries for `changed` keys to the database's state: the current
    /// vector, or no entry when the image is gone.
    fn replay(&self, txn: &redb::ReadTransaction, ann: &Ann, rows: &Rows, dim: usize, changed: &[u64]) -> Result<(), StoreError> {
        for &key in changed {
            if ann.contains(key) {
                ann.remove(key).map_err(ann_err)?;
            }
        }
        let vectors = txn.open_table(VECTORS).map_err(db_err)?;
        let present: Vec<(u64, &str)> = changed.iter().filter_map(|&key| rows.slot(key).map(|slot| (key, slot.id))).collect();
        ann.reserve(present.len()).map_err(ann_err)?;
        let entries = present.into_iter().map(|(key, id)| Ok((key, read_vector(&vectors, id, dim)?)));
        add_in_batches(ann, entries)
    }

    /// Builds the approximate index from the vectors in the database, on every core.
    fn rebuild(&self, txn: &redb::ReadTransaction, rows: &Rows, dim: usize) -> Result<Ann, StoreError> {
        let ann = Ann::new(dim, self.options.ann, rows.len()).map_err(ann_err)?;
        add_in_batches(&ann, every_vector(&txn.open_table(VECTORS).map_err(db_err)?, rows, dim)?)?;
        Ok(ann)
    }

    /// The saved vector file brought up to database generation `generation`, as [`Self::saved_index`]
    /// does for the index. `Err` says why it must be rewritten instead.
    fn saved_vector_file(
        &self,
        txn: &redb::ReadTransaction,
        rows: &Rows,
        dim: usize,
        generation: u64,
    ) -> Result<(VectorFile, CacheOrigin), String> {
        let (file, saved) = VectorFile::open(&self.dir, dim).map_err(|e| e.to_string())?;
        let origin = if saved == generation {
            CacheOrigin::Loaded
        } else {
            let changed = changed_since(txn, "the vector file", saved, generation)?;
            let vectors = txn.open_table(VECTORS).map_err(|e| e.to_string())?;
            for &key in &changed {
                if let Some(slot) = rows.slot(key) {
                    let vector = read_vector(&vectors, slot.id, dim).map_err(|e| e.to_string())?;
                    file.write(key, &vector).map_err(|e| e.to_string())?;
                }
            }
            CacheOrigin::CaughtUp { changes: changed.len() }
        };
        file.check_covers(rows.iter().map(|(key, _)| key + 1).max().unwrap_or(0)).map_err(|e| e.to_string())?;
        Ok((file, origin))
    }

    /// Writes a new vector file from the vectors in the database.
    fn rewrite_vector_file(&self, txn: &redb::ReadTransaction, rows: &Rows, dim: usize) -> Result<VectorFile, StoreError> {
        let file = VectorFile::create(&self.dir, dim).map_err(vector_file_err)?;
        for entry in every_vector(&txn.open_table(VECTORS).map_err(db_err)?, rows, dim)? {
            let (key, vector) = entry?;
            file.write(key, &vector).map_err(vector_file_err)?;
        }
        Ok(file)
    }

    /// Saves the index and the vector file as reflecting `generation` and forgets the changes
    /// they now hold. The vector file goes first: if it cannot be synced, the change log is
    /// pruned past it all the same and the next start rewrites it whole.
    fn save_index(&self, ann: &Ann, vectors: Option<&VectorFile>, generation: u64) -> Result<(), StoreError> {
        if let Some(Err(e)) = vectors.map(|file| file.sync(generation)) {
            tracing::warn!(error = %e, "cannot sync the vector file; it will be rewritten at the next start");
        }
        ann.save(&self.dir, generation).map_err(ann_err)?;
        let txn = self.db()?.begin_write().map_err(db_err)?;
        changes::prune(&txn, generation)?;
        txn.commit().map_err(db_err)
    }

    fn check_dim(&self, got: usize) -> Result<(), StoreError> {
        match self.state.read().unwrap_or_else(|p| p.into_inner()).dim {
            Some(dim) if dim != got => Err(StoreError::DimensionMismatch { expected: dim, got }),
            _ => Ok(()),
        }
    }

    /// Makes sure the in-memory state has a dimension and an index once vectors exist.
    fn ensure_dim(&self, state: &mut State, dim: usize) -> Result<(), StoreError> {
        if state.dim.is_none() {
            state.dim = Some(dim);
            state.ann = Some(Ann::new(dim, self.options.ann, 1024).map_err(ann_err)?);
            state.vectors = VectorFile::create(&self.dir, dim)
                .inspect_err(|e| tracing::error!(error = %e, "cannot create the vector file; searches read vectors from the database"))
                .ok();
        }
        Ok(())
    }
}

impl Drop for EmbeddedStore {
    /// Saves the approximate index when it changed, so the next open loads it.
    fn drop(&mut self) {
        if !self.save_on_drop {
            return;
        }
        if let Err(e) = self.persist_ann() {
            tracing::warn!(error = %e, "cannot save the approximate index; it will be rebuilt at the next start");
        }
    }
}

fn vector_file_err(e: vector_file::VectorFileError) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The keys changed after generation `saved` (what a saved `cache` reflects), or why the
/// change log cannot say.
fn changed_since(txn: &redb::ReadTransaction, cache: &str, saved: u64, generation: u64) -> Result<Vec<u64>, String> {
    changes::changed_after(txn, saved).map_err(|e| e.to_string())?.ok_or_else(|| {
        format!("{cache} reflects database generation {saved}, which the change log no longer reaches (the database is at {generation})")
    })
}

/// Every image's (key, f32 vector) from the database, in id order.
fn every_vector<'t>(
    vectors: &'t redb::ReadOnlyTable<&'static str, &'static [u8]>,
    rows: &'t Rows,
    dim: usize,
) -> Result<impl Iterator<Item = Result<(u64, Vec<f32>), StoreError>> + 't, StoreError> {
    Ok(vectors.iter().map_err(db_err)?.map(move |entry| {
        let (id, bytes) = entry.map_err(db_err)?;
        let key = rows.key(id.value()).ok_or_else(|| StoreError::Corrupt(format!("vector {} has no key", id.value())))?;
        let vector = decode_vector(bytes.value(), dim)
            .ok_or_else(|| StoreError::Corrupt(format!("vector of {} has the wrong length", id.value())))?;
        Ok((key, vector))
    }))
}

/// The f32 vector of `id` from the database.
fn read_vector(vectors: &impl ReadableTable<&'static str, &'static [u8]>, id: &str, dim: usize) -> Result<Vec<f32>, StoreError> {
    let bytes = vectors.get(id).map_err(db_err)?.ok_or_else(|| StoreError::Corrupt(format!("{id} has no vector")))?;
    decode_vector(bytes.value(), dim).ok_or_else(|| StoreError::Corrupt(format!("vector of {id} has the wrong length")))
}

fn ann_err(e: ann::AnnError) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Adds `(key, vector)` entries to `ann` a few thousand at a time, each batch on every core.
fn add_in_batches(ann: &Ann, entries: impl Iterator<Item = Result<(u64, Vec<f32>), StoreError>>) -> Result<(), StoreError> {
    const BATCH: usize = 4096;
    let mut entries = entries.peekable();
    let mut batch = Vec::with_capacity(BATCH);
    while entries.peek().is_some() {
        batch.clear();
        for entry in entries.by_ref().take(BATCH) {
            batch.push(entry?);
        }
        batch.par_iter().try_for_each(|(key, vector)| ann.add(*key, vector)).map_err(ann_err)?;
    }
    Ok(())
}

/// Databases written before index keys existed get one key per image, once.
fn backfill_keys(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut keys = txn.open_table(KEYS).map_err(db_err)?;
    let images = txn.open_table(IMAGES).map_err(db_err)?;
    if keys.len().map_err(db_err)? == images.len().map_err(db_err)? {
        return Ok(());
    }
    let mut next = 0u64;
    for entry in keys.iter().map_err(db_err)? {
        next = next.max(entry.map_err(db_err)?.1.value() + 1);
    }
    let mut missing = Vec::new();
    for entry in images.iter().map_err(db_err)? {
        let (id, _) = entry.map_err(db_err)?;
        if keys.get(id.value()).map_err(db_err)?.is_none() {
            missing.push(id.value().to_string());
        }
    }
    let first = next;
    for id in &missing {
        keys.insert(id.as_str(), next).map_err(db_err)?;
        next += 1;
    }
    drop(keys);
    changes::record(txn, first..next)?;
    Ok(())
}

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8], dim: usize) -> Option<Vec<f32>> {
    (bytes.len() == dim * 4).then(|| {
        let mut vector = Vec::with_capacity(dim);
        decode_vector_into(bytes, &mut vector);
        vector
    })
}

/// [`decode_vector`] into a buffer a scoring loop reuses (its length is the caller's to check).
fn decode_vector_into(bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
}

/// Sorts by ingestion time, then id (ties are deterministic). Nanoseconds since 1970, zero-padded
/// so that string order is time order.
fn order_key(record: &ImageRecord) -> String {
    format!("{:024}:{}", record.ingested_at.unix_timestamp_nanos().max(0), record.id)
}

/// Indexes written before the ingestion-order table existed get it filled once.
fn backfill_order(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut order = txn.open_table(ORDER).map_err(db_err)?;
    if !order.is_empty().map_err(db_err)? {
        return Ok(());
    }
    let images = txn.open_table(IMAGES).map_err(db_err)?;
    for entry in images.iter().map_err(db_err)? {
        let (id, bytes) = entry.map_err(db_err)?;
        let record = decode_record(bytes.value())?;
        order.insert(order_key(&record).as_str(), id.value()).map_err(db_err)?;
    }
    Ok(())
}

/// Removes an image's rows (record, vector, path and order entries) inside a write transaction.
/// Removes an image's rows; returns its record and its index key.
fn remove_rows(txn: &redb::WriteTransaction, id: &str) -> Result<(Option<ImageRecord>, Option<u64>), StoreError> {
    let removed = txn.open_table(IMAGES).map_err(db_err)?.remove(id).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()?;
    txn.open_table(VECTORS).map_err(db_err)?.remove(id).map_err(db_err)?;
    let key = txn.open_table(KEYS).map_err(db_err)?.remove(id).map_err(db_err)?.map(|k| k.value());
    if let Some(record) = &removed {
        let mut paths = txn.open_table(PATHS).map_err(db_err)?;
        if paths.get(record.path.as_str()).map_err(db_err)?.is_some_and(|v| v.value() == id) {
            paths.remove(record.path.as_str()).map_err(db_err)?;
        }
        txn.open_table(ORDER).map_err(db_err)?.remove(order_key(record).as_str()).map_err(db_err)?;
        for alias in take_aliases(txn, id)? {
            if paths.get(alias.as_str()).map_err(db_err)?.is_some_and(|v| v.value() == id) {
                paths.remove(alias.as_str()).map_err(db_err)?;
            }
        }
    }
    Ok((removed, key))
}

fn read_aliases(bytes: Option<&[u8]>) -> Result<Vec<String>, StoreError> {
    bytes.map_or(Ok(Vec::new()), |b| serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("aliases: {e}"))))
}

/// Removes and returns an image's alias paths.
fn take_aliases(txn: &redb::WriteTransaction, id: &str) -> Result<Vec<String>, StoreError> {
    let mut aliases = txn.open_table(ALIASES).map_err(db_err)?;
    let taken = aliases.remove(id).map_err(db_err)?;
    read_aliases(taken.as_ref().map(|v| v.value()))
}

/// Changes an image's alias list inside a write transaction.
fn edit_aliases(txn: &redb::WriteTransaction, id: &str, edit: impl FnOnce(&mut Vec<String>)) -> Result<(), StoreError> {
    let mut aliases = txn.open_table(ALIASES).map_err(db_err)?;
    let mut list = read_aliases(aliases.get(id).map_err(db_err)?.as_ref().map(|v| v.value()))?;
    edit(&mut list);
    if list.is_empty() {
        aliases.remove(id).map_err(db_err)?;
    } else {
        let json = serde_json::to_vec(&list).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        aliases.insert(id, json.as_slice()).map_err(db_err)?;
    }
    Ok(())
}

/// The images `keep` accepts, as page candidates scored by `score` (row = index key).
fn passing<'a>(rows: &'a Rows, keep: impl Fn(u64, &Facets<&str>) -> bool, score: impl Fn(u64) -> f32) -> Vec<Candidate<'a>> {
    rows.iter()
        .filter(|(key, slot)| keep(*key, &slot.facets))
        .map(|(key, slot)| Candidate {
            row: key as usize,
            id: slot.id,
            score: score(key),
            taken: slot.facets.taken,
            ingested: slot.facets.ingested,
        })
        .collect()
}

/// Drops `key` from the index; an index that fails is dropped whole (exact search until the next
/// start rebuilds it), never left proposing a deleted image.
fn remove_from_index(ann: &mut Option<Ann>, key: u64) {
    if let Some(Err(e)) = ann.as_ref().map(|a| a.remove(key)) {
        tracing::error!(error = %e, "approximate index failed; searching exactly until the next start");
        *ann = None;
    }
}

fn decode_record(bytes: &[u8]) -> Result<ImageRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("image record: {e}")))
}

impl VectorStore for EmbeddedStore {
    fn save_caches(&self) -> Result<(), StoreError> {
        self.persist_ann()
    }

    fn describe(&self) -> StoreInfo {
        StoreInfo { backend: "embedded", location: self.path.display().to_string() }
    }

    /// Whether the database takes writes; after an I/O error (a full disk) it is opened again
    /// here, so service resumes once the cause is gone.
    fn ping(&self) -> Result<(), StoreError> {
        self.db.check()
    }

    fn bind_model(&self, fingerprint: &str, dim: usize) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let stored = meta.get("model").map_err(db_err)?.map(|v| v.value().to_string());
            match stored {
                Some(stored) if stored == fingerprint => return Ok(()),
                Some(stored) => return Err(StoreError::ModelMismatch { stored, current: fingerprint.to_string() }),
                None => {
                    meta.insert("model", fingerprint).map_err(db_err)?;
                    meta.insert("dim", dim.to_string().as_str()).map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)?;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        self.ensure_dim(&mut state, dim)
    }

    fn upsert_many(&self, items: &[(ImageRecord, Vec<f32>)]) -> Result<Vec<Upserted>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let dim = items[0].1.len();
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.check_dim(dim)?;
        if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != dim) {
            return Err(StoreError::DimensionMismatch { expected: dim, got: v.len() });
        }
        // Keys handed out for new images, given back if the write fails.
        let mut allocated = Vec::new();
        let written = (|| -> Result<(Vec<String>, Vec<u64>, u64), StoreError> {
            let txn = self.db()?.begin_write().map_err(db_err)?;
            // Images that stop existing in this write: a path names one image, so new content at a
            // path retires the image that path named before (same transaction, so a crash can
            // never leave the stale record searchable).
            let mut retired = Vec::new();
            let mut retired_keys = Vec::new();
            let mut item_keys = Vec::with_capacity(items.len());
            {
                let mut meta = txn.open_table(META).map_err(db_err)?;
                if meta.get("dim").map_err(db_err)?.is_none() {
                    meta.insert("dim", dim.to_string().as_str()).map_err(db_err)?;
                }
            }
            for (record, vector) in items {
                let named_before =
                    txn.open_table(PATHS).map_err(db_err)?.get(record.path.as_str()).map_err(db_err)?.map(|v| v.value().to_string());
                if let Some(old) = named_before.filter(|old| *old != record.id) {
                    let old_record = txn
                        .open_table(IMAGES)
                        .map_err(db_err)?
                        .get(old.as_str())
                        .map_err(db_err)?
                        .map(|v| decode_record(v.value()))
                        .transpose()?;
                    if old_record.is_some_and(|r| r.path == record.path) {
                        retired_keys.extend(remove_rows(&txn, &old)?.1);
                        retired.push(old);
                    } else {
                        // The path was another copy of `old`; it shows this image now.
                        edit_aliases(&txn, &old, |list| list.retain(|p| *p != record.path))?;
                    }
                }
                let json = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let previous = txn
                    .open_table(IMAGES)
                    .map_err(db_err)?
                    .insert(record.id.as_str(), json.as_slice())
                    .map_err(db_err)?
                    .map(|v| decode_record(v.value()))
                    .transpose()?;
                let mut paths = txn.open_table(PATHS).map_err(db_err)?;
                let mut order = txn.open_table(ORDER).map_err(db_err)?;
                if let Some(previous) = &previous {
                    if previous.path != record.path
                        && paths.get(previous.path.as_str()).map_err(db_err)?.is_some_and(|id| id.value() == record.id)
                    {
                        // The image moved: its old path no longer names it.
                        paths.remove(previous.path.as_str()).map_err(db_err)?;
                    }
                    order.remove(order_key(previous).as_str()).map_err(db_err)?;
                }
                paths.insert(record.path.as_str(), record.id.as_str()).map_err(db_err)?;
                order.insert(order_key(record).as_str(), record.id.as_str()).map_err(db_err)?;
                txn.open_table(VECTORS).map_err(db_err)?.insert(record.id.as_str(), encode_vector(vector).as_slice()).map_err(db_err)?;
                let mut keys = txn.open_table(KEYS).map_err(db_err)?;
                let key = match keys.get(record.id.as_str()).map_err(db_err)? {
                    Some(key) => key.value(),
                    None => {
                        let key = self.state.write().unwrap_or_else(|p| p.into_inner()).rows.allocate();
                        allocated.push(key);
                        key
                    }
                };
                keys.insert(record.id.as_str(), key).map_err(db_err)?;
                item_keys.push(key);
            }
            let generation = changes::record(&txn, item_keys.iter().copied().chain(retired_keys))?;
            txn.commit().map_err(db_err)?;
            Ok((retired, item_keys, generation))
        })();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let (retired, keys, generation) = match written {
            Ok(written) => written,
            Err(e) => {
                for key in allocated {
                    state.rows.release(key);
                }
                return Err(e);
            }
        };
        self.ensure_dim(&mut state, dim)?;
        state.generation = generation;
        let state = &mut *state;
        for id in &retired {
            if let Some(key) = state.rows.remove(id) {
                remove_from_index(&mut state.ann, key);
            }
        }
        if let Some(ann) = &state.ann {
            if let Err(e) = ann.reserve(items.len()) {
                tracing::error!(error = %e, "approximate index failed; searching exactly until the next start");
                state.ann = None;
            }
        }
        let mut outcomes = Vec::with_capacity(items.len());
        for ((record, _), &key) in items.iter().zip(&keys) {
            outcomes.push(if state.rows.key(&record.id).is_some() { Upserted::Replaced } else { Upserted::Inserted });
            state.rows.place(key, &record.id, Facets::of(record));
        }
        if let Some(ann) = &state.ann {
            let vectors = items.iter().map(|(_, vector)| vector.as_slice());
            let added = if keys.iter().collect::<std::collections::HashSet<_>>().len() == keys.len() {
                // Distinct keys go in on every core (usearch inserts concurrently).
                keys.par_iter().zip(vectors.collect::<Vec<_>>()).try_for_each(|(&key, vector)| ann.add(key, vector))
            } else {
                // The same image twice in one write: in order, so its last vector stays.
                keys.iter().zip(vectors).try_for_each(|(&key, vector)| ann.add(key, vector))
            };
            if let Err(e) = added {
                tracing::error!(error = %e, "approximate index failed; searching exactly until the next start");
                state.ann = None;
            }
        }
        if let Some(file) = &state.vectors {
            // In order: the same image twice in one write keeps its last vector.
            if let Err(e) = items.iter().zip(&keys).try_for_each(|((_, vector), &key)| file.write(key, vector)) {
                tracing::error!(error = %e, "vector file write failed; reading vectors from the database until the next start");
                state.vectors = None;
            }
        }
        Ok(outcomes)
    }

    fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(IMAGES).map_err(db_err)?;
        let value = table.get(id).map_err(db_err)?;
        value.map(|v| decode_record(v.value())).transpose()
    }

    fn find_by_path(&self, path: &str) -> Result<Option<ImageRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let Some(id) = txn.open_table(PATHS).map_err(db_err)?.get(path).map_err(db_err)?.map(|v| v.value().to_string()) else {
            return Ok(None);
        };
        let images = txn.open_table(IMAGES).map_err(db_err)?;
        let record = images.get(id.as_str()).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()?;
        Ok(record.filter(|r| r.path == path))
    }

    fn vector(&self, id: &str) -> Result<Option<Vec<f32>>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let vectors = txn.open_table(VECTORS).map_err(db_err)?;
        let Some(bytes) = vectors.get(id).map_err(db_err)? else { return Ok(None) };
        let dim = bytes.value().len() / 4;
        decode_vector(bytes.value(), dim).map(Some).ok_or_else(|| StoreError::Corrupt(format!("vector of {id} has a partial value")))
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        let (removed, key) = remove_rows(&txn, id)?;
        if removed.is_none() {
            return Ok(false);
        }
        let generation = changes::record(&txn, key)?;
        txn.commit().map_err(db_err)?;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        state.generation = generation;
        if let Some(key) = state.rows.remove(id) {
            remove_from_index(&mut state.ann, key);
        }
        Ok(true)
    }

    fn search_page(&self, query: &SearchQuery) -> Result<Page<Hit>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let vectors = txn.open_table(VECTORS).map_err(db_err)?;
        let (page, more): (Vec<(String, f32)>, bool) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let Some(dim) = state.dim else { return Ok(Page { items: Vec::new(), more: false, total: None }) };
            if dim != query.vector.len() {
                return Err(StoreError::DimensionMismatch { expected: dim, got: query.vector.len() });
            }
            let ann = state.ann.as_ref().filter(|_| !query.exact && state.rows.len() >= self.options.ann_min_images);
            let vectors = search::Vectors { file: state.vectors.as_ref(), table: &vectors };
            search::page(&state.rows, ann, &vectors, query)?
        };
        let table = txn.open_table(IMAGES).map_err(db_err)?;
        let mut hits = Vec::with_capacity(page.len());
        for (id, score) in page {
            // A delete may land between scoring and this read; such a hit is simply gone.
            if let Some(value) = table.get(id.as_str()).map_err(db_err)? {
                hits.push(Hit { record: decode_record(value.value())?, score });
            }
        }
        Ok(Page { items: hits, more, total: None })
    }

    fn list_page(&self, filter: &Filter, sort: SortBy, offset: usize, limit: usize) -> Result<Page<ImageRecord>, StoreError> {
        let sort = if sort == SortBy::Relevance { SortBy::IngestedDesc } else { sort };
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let images = txn.open_table(IMAGES).map_err(db_err)?;
        if filter.is_empty() && matches!(sort, SortBy::IngestedAsc | SortBy::IngestedDesc) {
            // The ingestion-order table pages without touching the other rows.
            let by_time = txn.open_table(ORDER).map_err(db_err)?;
            let total = by_time.len().map_err(db_err)? as usize;
            let range = by_time.iter().map_err(db_err)?;
            let ids: Box<dyn Iterator<Item = _>> = if sort == SortBy::IngestedDesc { Box::new(range.rev()) } else { Box::new(range) };
            let mut items = Vec::new();
            for entry in ids.skip(offset).take(limit) {
                let (_, id) = entry.map_err(db_err)?;
                if let Some(value) = images.get(id.value()).map_err(db_err)? {
                    items.push(decode_record(value.value())?);
                }
            }
            return Ok(Page { more: offset.saturating_add(items.len()) < total, items, total: Some(total) });
        }
        let (ids, more, total): (Vec<String>, bool, usize) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let candidates = passing(&state.rows, |_, facets| filter.matches(facets), |_| 0.0);
            let total = candidates.len();
            let (page, more) = filter::page(candidates, sort, offset, limit);
            (page.into_iter().map(|c| c.id.to_string()).collect(), more, total)
        };
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(value) = images.get(id.as_str()).map_err(db_err)? {
                items.push(decode_record(value.value())?);
            }
        }
        Ok(Page { items, more, total: Some(total) })
    }

    fn set_photo(&self, id: &str, photo: &PhotoMeta) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        let updated = {
            let mut images = txn.open_table(IMAGES).map_err(db_err)?;
            let current = images.get(id).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()?;
            match current {
                Some(mut record) => {
                    record.photo = photo.clone();
                    record.photo_read = true;
                    let json = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    images.insert(id, json.as_slice()).map_err(db_err)?;
                    Some(record)
                }
                None => None,
            }
        };
        txn.commit().map_err(db_err)?;
        let Some(record) = updated else { return Ok(false) };
        self.state.write().unwrap_or_else(|p| p.into_inner()).rows.set_facets(id, Facets::of(&record));
        Ok(true)
    }

    fn add_alias(&self, id: &str, path: &str) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        {
            let images = txn.open_table(IMAGES).map_err(db_err)?;
            let Some(record) = images.get(id).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()? else { return Ok(()) };
            if record.path == path {
                return Ok(());
            }
        }
        edit_aliases(&txn, id, |list| {
            if !list.iter().any(|p| p == path) {
                list.push(path.to_string());
            }
        })?;
        txn.open_table(PATHS).map_err(db_err)?.insert(path, id).map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    fn aliases(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let aliases = txn.open_table(ALIASES).map_err(db_err)?;
        read_aliases(aliases.get(id).map_err(db_err)?.as_ref().map(|v| v.value()))
    }

    fn duplicates(&self, threshold: f32) -> Result<Vec<DuplicateGroup>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        // Exact over every pair, so the f32 vectors are read into a matrix for this call only.
        let (ids, pairs): (Vec<String>, Vec<(usize, usize, f32)>) = {
            let Some(dim) = self.state.read().unwrap_or_else(|p| p.into_inner()).dim else { return Ok(Vec::new()) };
            let mut matrix: Matrix = Matrix::new(dim);
            for entry in txn.open_table(VECTORS).map_err(db_err)?.iter().map_err(db_err)? {
                let (id, bytes) = entry.map_err(db_err)?;
                let vector = decode_vector(bytes.value(), dim)
                    .ok_or_else(|| StoreError::Corrupt(format!("vector of {} has the wrong length", id.value())))?;
                matrix.upsert(id.value(), &vector);
            }
            (matrix.ids().to_vec(), matrix.pairs_at_least(threshold))
        };
        let images = txn.open_table(IMAGES).map_err(db_err)?;
        let aliases = txn.open_table(ALIASES).map_err(db_err)?;
        let mut known = Vec::with_capacity(ids.len());
        let mut index = Vec::with_capacity(ids.len());
        for id in &ids {
            // Deleted between the scan and this read: left out, with its pairs.
            let Some(record) = images.get(id.as_str()).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()? else {
                index.push(None);
                continue;
            };
            let alias_paths = read_aliases(aliases.get(id.as_str()).map_err(db_err)?.as_ref().map(|v| v.value()))?;
            // Only copies that are still there are duplicates now.
            let alias_paths = alias_paths.into_iter().filter(|p| std::path::Path::new(p).is_file()).collect();
            index.push(Some(known.len()));
            known.push(duplicates::Known { record, aliases: alias_paths });
        }
        let pairs: Vec<(usize, usize, f32)> = pairs.into_iter().filter_map(|(a, b, s)| Some((index[a]?, index[b]?, s))).collect();
        Ok(duplicates::group(&known, &pairs))
    }

    fn unread_photo_ids(&self) -> Result<Vec<String>, StoreError> {
        // From the facets in memory: the records were decoded once already, at open.
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        Ok(passing(&state.rows, |_, facets| !facets.photo_read, |_| 0.0).into_iter().map(|c| c.id.to_string()).collect())
    }

    fn bound_model(&self) -> Result<Option<(String, usize)>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let model = meta.get("model").map_err(db_err)?.map(|v| v.value().to_string());
        let dim = meta.get("dim").map_err(db_err)?.and_then(|v| v.value().parse::<usize>().ok());
        Ok(model.zip(dim))
    }

    fn export_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(ImageRecord, Vec<f32>)>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let images = txn.open_table(IMAGES).map_err(db_err)?;
        let vectors = txn.open_table(VECTORS).map_err(db_err)?;
        let range = match after {
            Some(after) => images.range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)).map_err(db_err)?,
            None => images.iter().map_err(db_err)?,
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        for entry in range.take(limit) {
            let (id, bytes) = entry.map_err(db_err)?;
            let record = decode_record(bytes.value())?;
            let vector = vectors.get(id.value()).map_err(db_err)?.and_then(|v| decode_vector(v.value(), v.value().len() / 4));
            let vector = vector.ok_or_else(|| StoreError::Corrupt(format!("image {} has no vector", id.value())))?;
            out.push((record, vector));
        }
        Ok(out)
    }

    fn count(&self) -> usize {
        self.state.read().unwrap_or_else(|p| p.into_inner()).rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(|dir| Box::new(EmbeddedStore::open(dir).unwrap()));
    }

    /// Clustered unit vectors (60 centres, noise per dimension 0.08), deterministic.
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut normal = move || {
            let mut uniform = || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 + 0.5) / (1u64 << 24) as f32
            };
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
        };
        let unit = |v: Vec<f32>| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let centres: Vec<Vec<f32>> = (0..60).map(|_| unit((0..dim).map(|_| normal()).collect())).collect();
        (0..n).map(|i| unit(centres[i % 60].iter().map(|c| c + 0.08 * normal()).collect())).collect()
    }

    fn filled(dir: &Path, n: usize) -> (EmbeddedStore, Vec<Vec<f32>>) {
        let store = EmbeddedStore::open(dir).unwrap();
        let vectors = clustered(n, 64, 3);
        let items: Vec<(ImageRecord, Vec<f32>)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut r = super::super::conformance_record(&format!("{i:05}"));
                r.path = format!("/photos/{}/{i}.jpg", if i % 100 == 0 { "rare" } else { "common" });
                (r, v.clone())
            })
            .collect();
        for chunk in items.chunks(500) {
            store.upsert_many(chunk).unwrap();
        }
        (store, vectors)
    }

    fn ids(store: &EmbeddedStore, query: &[f32], filter: &Filter, exact: bool) -> Vec<String> {
        let q = SearchQuery { vector: query, filter, sort: SortBy::Relevance, offset: 0, limit: 10, exact };
        store.search_page(&q).unwrap().items.into_iter().map(|h| h.record.id).collect()
    }

    #[test]
    fn approximate_search_finds_the_exact_top_ten_and_selective_filters_stay_exact() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = filled(dir.path(), 3000);
        let queries = clustered(40, 64, 99);
        let all = Filter::default();
        let mut found = 0;
        for q in &queries {
            let exact = ids(&store, q, &all, true);
            assert_eq!(exact.len(), 10);
            found += ids(&store, q, &all, false).iter().filter(|id| exact.contains(id)).count();
        }
        let recall = found as f64 / (queries.len() * 10) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
        // 1 % pass: ranked exactly, whatever the index would propose.
        let rare = Filter { folders: vec!["/photos/rare".into()], ..Filter::default() };
        for q in &queries[..5] {
            assert_eq!(ids(&store, q, &rare, false), ids(&store, q, &rare, true));
        }
    }

    #[test]
    fn deleted_images_are_never_returned_before_or_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, vectors) = filled(dir.path(), 2000);
        let gone: Vec<String> = (0..2000).step_by(3).map(|i| format!("{i:05}")).collect();
        for id in &gone {
            assert!(store.delete(id).unwrap());
        }
        let check = |store: &EmbeddedStore| {
            for i in (0..2000).step_by(3).take(200) {
                let found = ids(store, &vectors[i], &Filter::default(), false);
                assert_eq!(found.len(), 10);
                assert!(found.iter().all(|id| !gone.contains(id)), "a deleted image came back: {found:?}");
            }
        };
        check(&store);
        // A replaced vector is found where it is now.
        let mut moved = super::super::conformance_record("00001");
        moved.path = "/photos/common/1.jpg".into();
        assert_eq!(store.upsert(&moved, &vectors[5]).unwrap(), Upserted::Replaced);
        let near_five = ids(&store, &vectors[5], &Filter::default(), false);
        assert!(near_five[..2].contains(&"00001".to_string()), "{near_five:?}");
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.ann_origin(), Some(CacheOrigin::Loaded));
        assert_eq!(store.count(), 2000 - gone.len());
        check(&store);
    }

    /// Every live image's entry in the vector file equals its vector in the database.
    fn assert_vector_file_matches_database(store: &EmbeddedStore) {
        let state = store.state.read().unwrap();
        let (file, dim) = (state.vectors.as_ref().expect("a vector file"), state.dim.unwrap());
        let txn = store.db().unwrap().begin_read().unwrap();
        let table = txn.open_table(VECTORS).unwrap();
        let mut bytes = vec![0u8; dim * 4];
        for (key, slot) in state.rows.iter() {
            file.read_run(key, &mut bytes).unwrap();
            assert_eq!(decode_vector(&bytes, dim).unwrap(), read_vector(&table, slot.id, dim).unwrap(), "key {key} ({})", slot.id);
        }
    }

    /// What `kill -9` leaves: the database has every acknowledged write, the saved index does not.
    fn crash(mut store: EmbeddedStore) {
        store.save_on_drop = false;
    }

    #[test]
    fn after_a_crash_the_saved_index_catches_up_with_the_writes_it_missed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, vectors) = filled(dir.path(), 1500);
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        // Writes the saved index never saw: 300 new images, 100 deleted, one moved elsewhere.
        let more = clustered(300, 64, 17);
        let items: Vec<(ImageRecord, Vec<f32>)> = more
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut r = super::super::conformance_record(&format!("new{i:05}"));
                r.path = format!("/photos/new/{i}.jpg");
                (r, v.clone())
            })
            .collect();
        store.upsert_many(&items).unwrap();
        let gone: Vec<String> = (0..1500).step_by(15).map(|i| format!("{i:05}")).collect();
        for id in &gone {
            assert!(store.delete(id).unwrap());
        }
        let mut moved = super::super::conformance_record("00001");
        moved.path = "/photos/common/1.jpg".into();
        assert_eq!(store.upsert(&moved, &vectors[5]).unwrap(), Upserted::Replaced);
        crash(store);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.ann_origin(), Some(CacheOrigin::CaughtUp { changes: 300 + gone.len() + 1 }));
        assert_eq!(store.vector_file_origin(), Some(CacheOrigin::CaughtUp { changes: 300 + gone.len() + 1 }));
        assert_vector_file_matches_database(&store);
        assert_eq!(store.count(), 1500 + 300 - gone.len());
        let all = Filter::default();
        for (i, v) in more.iter().enumerate().step_by(7) {
            assert_eq!(ids(&store, v, &all, false).first(), Some(&format!("new{i:05}")), "a new image is not found by itself");
        }
        for i in (0..1500).step_by(15) {
            let found = ids(&store, &vectors[i], &all, false);
            assert!(found.iter().all(|id| !gone.contains(id)), "a deleted image came back: {found:?}");
        }
        assert!(ids(&store, &vectors[5], &all, false)[..2].contains(&"00001".to_string()), "the moved image is not where it moved");
        assert!(!ids(&store, &vectors[1], &all, false).contains(&"00001".to_string()), "the moved image is still where it was");
        // Caught up, saved again: the next start loads it as it is.
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.ann_origin(), Some(CacheOrigin::Loaded));
        assert_eq!(store.vector_file_origin(), Some(CacheOrigin::Loaded));
        assert_eq!(ids(&store, &more[0], &all, false).first().map(String::as_str), Some("new00000"));
    }

    /// Scores of an approximate search for `query` where image `i` of `vectors` is "{i:05}",
    /// checked against the cosine computed here.
    fn assert_scores_exact(store: &EmbeddedStore, query: &[f32], vector_of: impl Fn(&str) -> Vec<f32>) {
        let q = SearchQuery { vector: query, filter: &Filter::default(), sort: SortBy::Relevance, offset: 0, limit: 10, exact: false };
        let hits = store.search_page(&q).unwrap().items;
        assert_eq!(hits.len(), 10);
        for hit in hits {
            let expected: f32 = vector_of(&hit.record.id).iter().zip(query).map(|(a, b)| a * b).sum();
            assert!((hit.score - expected).abs() < 1e-5, "{}: {} instead of {expected}", hit.record.id, hit.score);
        }
    }

    #[test]
    fn a_stale_damaged_short_or_missing_vector_file_is_rewritten_and_scores_stay_exact() {
        let dir = tempfile::tempdir().unwrap();
        let (store, vectors) = filled(dir.path(), 1500);
        assert_eq!(store.vector_file_origin(), None, "a new store has nothing to load");
        drop(store);
        let file = VectorFile::path(dir.path());
        let stale = std::fs::read(&file).unwrap();
        // A saved write the old copy lacks: image 2 now shows what image 9 does.
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.vector_file_origin(), Some(CacheOrigin::Loaded));
        let mut moved = super::super::conformance_record("00002");
        moved.path = "/photos/common/2.jpg".into();
        assert_eq!(store.upsert(&moved, &vectors[9]).unwrap(), Upserted::Replaced);
        drop(store);
        let vector_of = |id: &str| vectors[if id == "00002" { 9 } else { id.parse::<usize>().unwrap() }].clone();

        let damages: [(&str, &dyn Fn()); 4] = [
            ("generation", &|| std::fs::write(&file, &stale).unwrap()),
            ("damaged", &|| {
                let mut bytes = std::fs::read(&file).unwrap();
                bytes[20] ^= 0x40;
                std::fs::write(&file, bytes).unwrap();
            }),
            ("vectors need", &|| {
                let f = std::fs::File::options().write(true).open(&file).unwrap();
                f.set_len(f.metadata().unwrap().len() - 4096).unwrap();
            }),
            ("no vector file", &|| std::fs::remove_file(&file).unwrap()),
        ];
        for (reason_names, damage) in damages {
            damage();
            let store = EmbeddedStore::open(dir.path()).unwrap();
            assert!(
                matches!(store.vector_file_origin(), Some(CacheOrigin::Rebuilt { reason }) if reason.contains(reason_names)),
                "{reason_names}: {:?}",
                store.vector_file_origin()
            );
            assert_eq!(store.ann_origin(), Some(CacheOrigin::Loaded), "the index does not depend on the vector file");
            assert_vector_file_matches_database(&store);
            assert_scores_exact(&store, &vectors[9], vector_of);
            assert_scores_exact(&store, &vectors[2], vector_of);
            drop(store);
            let store = EmbeddedStore::open(dir.path()).unwrap();
            assert_eq!(store.vector_file_origin(), Some(CacheOrigin::Loaded), "{reason_names}: rewritten and saved");
        }
    }

    #[test]
    fn a_restart_loads_the_saved_index_and_a_stale_or_damaged_one_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let (store, vectors) = filled(dir.path(), 1500);
        let index_file = Ann::index_path(dir.path());
        assert_eq!(store.ann_origin(), None, "a new store has nothing to load");
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.ann_origin(), Some(CacheOrigin::Loaded));
        let before = ids(&store, &vectors[7], &Filter::default(), false);
        assert_eq!(before.first().map(String::as_str), Some("00007"));
        drop(store);

        // Stale: the saved files of an older generation put back after more writes.
        let saved: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ann-")))
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        assert_eq!(saved.len(), 2);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.delete("00007").unwrap();
        drop(store);
        for (path, bytes) in &saved {
            std::fs::write(path, bytes).unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(
            matches!(store.ann_origin(), Some(CacheOrigin::Rebuilt { reason }) if reason.contains("generation")),
            "{:?}",
            store.ann_origin()
        );
        assert!(!ids(&store, &vectors[7], &Filter::default(), false).contains(&"00007".to_string()));
        drop(store);

        // Damaged: bytes changed inside the saved graph.
        let mut bytes = std::fs::read(&index_file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle..middle + 64].iter_mut().for_each(|b| *b = !*b);
        std::fs::write(&index_file, bytes).unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(
            matches!(store.ann_origin(), Some(CacheOrigin::Rebuilt { reason }) if reason.contains("damaged")),
            "{:?}",
            store.ann_origin()
        );
        assert_eq!(ids(&store, &vectors[8], &Filter::default(), false).first().map(String::as_str), Some("00008"));
    }

    /// Bytes per image added between 3,000 and 6,000 images: the ids and facets as counted in
    /// memory, the index as saved (its vectors and graph; usearch's own memory report moves in
    /// arena-sized steps at this size, and RSS at 1M is measured in BENCHMARKS.md).
    #[test]
    fn memory_per_image_stays_under_1_1_kib() {
        let dir = tempfile::tempdir().unwrap();
        let vectors = clustered(6000, 512, 5);
        let add = |range: std::ops::Range<usize>| {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let items: Vec<(ImageRecord, Vec<f32>)> = range
                .map(|i| {
                    let mut r = super::super::conformance_record(&format!("{i:016x}"));
                    r.path = format!("/home/someone/Pictures/2024/trip-{}/IMG_{i:05}.jpg", i % 50);
                    (r, vectors[i].clone())
                })
                .collect();
            for chunk in items.chunks(1000) {
                store.upsert_many(chunk).unwrap();
            }
            drop(store);
            let store = EmbeddedStore::open(dir.path()).unwrap();
            assert_eq!(store.ann_origin(), Some(CacheOrigin::Loaded));
            let saved = std::fs::metadata(Ann::index_path(dir.path())).unwrap().len() as usize;
            (saved, store.memory_bytes().1)
        };
        let (index_before, facets_before) = add(0..3000);
        let (index_after, facets_after) = add(3000..6000);
        let index = (index_after - index_before) / 3000;
        let facets = (facets_after - facets_before) / 3000;
        eprintln!("per image: index {index} B, ids and facets {facets} B");
        assert!(facets <= 250, "ids and facets take {facets} B per image");
        assert!(index + facets <= 1126, "{} B per image", index + facets);
    }

    #[test]
    fn a_second_process_opening_the_index_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path()).unwrap();
        let err = EmbeddedStore::open(dir.path()).err().expect("second open must fail");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }
}
