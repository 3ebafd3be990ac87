//! The embedded backend: records and vectors in a `redb` database file (ACID, fsync on commit,
//! so a write that returned survives `kill -9`), mirrored into an in-memory [`Matrix`] that is
//! rebuilt from disk at start-up and answers searches.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

mod jobs;

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

const DB_FILE: &str = "index.redb";

pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
    /// `None` until the first model binds the store to a dimension.
    matrix: RwLock<Option<Matrix<Facets>>>,
    /// Serialises writers so the database and the matrix change in the same order.
    writer: Mutex<()>,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the index in `dir` and loads every vector into memory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open { path: dir.display().to_string(), message };
        fs_err::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.display().to_string() },
            other => open_err(other.to_string()),
        })?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(IMAGES).map_err(db_err)?;
            txn.open_table(VECTORS).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
            txn.open_table(PATHS).map_err(db_err)?;
            txn.open_table(ALIASES).map_err(db_err)?;
            jobs::create_tables(&txn)?;
            backfill_order(&txn)?;
        }
        txn.commit().map_err(db_err)?;
        let store = Self { db, path, matrix: RwLock::new(None), writer: Mutex::new(()) };
        store.load_matrix()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load_matrix(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let Some(dim) = meta.get("dim").map_err(db_err)?.map(|v| v.value().to_string()) else {
            return Ok(());
        };
        let dim: usize = dim.parse().map_err(|_| StoreError::Corrupt(format!("dimension `{dim}` is not a number")))?;
        let vectors = txn.open_table(VECTORS).map_err(db_err)?;
        let images = txn.open_table(IMAGES).map_err(db_err)?;
        let mut matrix = Matrix::new(dim);
        for entry in vectors.iter().map_err(db_err)? {
            let (id, bytes) = entry.map_err(db_err)?;
            let vector = decode_vector(bytes.value(), dim)
                .ok_or_else(|| StoreError::Corrupt(format!("vector of {} has the wrong length", id.value())))?;
            let record = images
                .get(id.value())
                .map_err(db_err)?
                .ok_or_else(|| StoreError::Corrupt(format!("vector {} has no record", id.value())))?;
            matrix.upsert_with(id.value(), &vector, Facets::of(&decode_record(record.value())?));
        }
        tracing::info!(images = matrix.len(), dim, path = %self.path.display(), "index loaded");
        *self.matrix.write().unwrap_or_else(|p| p.into_inner()) = Some(matrix);
        Ok(())
    }

    fn check_dim(&self, got: usize) -> Result<(), StoreError> {
        match self.matrix.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(m) if m.dim() != got => Err(StoreError::DimensionMismatch { expected: m.dim(), got }),
            _ => Ok(()),
        }
    }
}

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8], dim: usize) -> Option<Vec<f32>> {
    (bytes.len() == dim * 4).then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
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
fn remove_rows(txn: &redb::WriteTransaction, id: &str) -> Result<Option<ImageRecord>, StoreError> {
    let removed = txn.open_table(IMAGES).map_err(db_err)?.remove(id).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()?;
    txn.open_table(VECTORS).map_err(db_err)?.remove(id).map_err(db_err)?;
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
    Ok(removed)
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

/// The rows `keep` accepts, as page candidates scored by `score`.
fn passing<'a>(matrix: &'a Matrix<Facets>, keep: impl Fn(usize, &Facets) -> bool, score: impl Fn(usize) -> f32) -> Vec<Candidate<'a>> {
    matrix
        .payloads()
        .iter()
        .enumerate()
        .filter(|(row, facets)| keep(*row, facets))
        .map(|(row, facets)| Candidate { row, id: &matrix.ids()[row], score: score(row), taken: facets.taken, ingested: facets.ingested })
        .collect()
}

fn decode_record(bytes: &[u8]) -> Result<ImageRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("image record: {e}")))
}

impl VectorStore for EmbeddedStore {
    fn describe(&self) -> StoreInfo {
        StoreInfo { backend: "embedded", location: self.path.display().to_string() }
    }

    fn bind_model(&self, fingerprint: &str, dim: usize) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(db_err)?;
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
        let mut matrix = self.matrix.write().unwrap_or_else(|p| p.into_inner());
        if matrix.is_none() {
            *matrix = Some(Matrix::new(dim));
        }
        Ok(())
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
        let txn = self.db.begin_write().map_err(db_err)?;
        // Images that stop existing in this write: a path names one image, so new content at a
        // path retires the image that path named before (same transaction, so a crash can
        // never leave the stale record searchable).
        let mut retired = Vec::new();
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
                    remove_rows(&txn, &old)?;
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
        }
        txn.commit().map_err(db_err)?;
        let mut matrix = self.matrix.write().unwrap_or_else(|p| p.into_inner());
        let matrix = matrix.get_or_insert_with(|| Matrix::new(dim));
        for id in &retired {
            matrix.remove(id);
        }
        Ok(items
            .iter()
            .map(|(r, v)| if matrix.upsert_with(&r.id, v, Facets::of(r)) { Upserted::Inserted } else { Upserted::Replaced })
            .collect())
    }

    fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(IMAGES).map_err(db_err)?;
        let value = table.get(id).map_err(db_err)?;
        value.map(|v| decode_record(v.value())).transpose()
    }

    fn find_by_path(&self, path: &str) -> Result<Option<ImageRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let Some(id) = txn.open_table(PATHS).map_err(db_err)?.get(path).map_err(db_err)?.map(|v| v.value().to_string()) else {
            return Ok(None);
        };
        let images = txn.open_table(IMAGES).map_err(db_err)?;
        let record = images.get(id.as_str()).map_err(db_err)?.map(|v| decode_record(v.value())).transpose()?;
        Ok(record.filter(|r| r.path == path))
    }

    fn vector(&self, id: &str) -> Result<Option<Vec<f32>>, StoreError> {
        Ok(self.matrix.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|m| m.get(id).map(<[f32]>::to_vec)))
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(db_err)?;
        let existed = remove_rows(&txn, id)?.is_some();
        txn.commit().map_err(db_err)?;
        if let Some(m) = self.matrix.write().unwrap_or_else(|p| p.into_inner()).as_mut() {
            m.remove(id);
        }
        Ok(existed)
    }

    fn search_page(&self, query: &SearchQuery) -> Result<Page<Hit>, StoreError> {
        let (page, more): (Vec<(String, f32)>, bool) = {
            let guard = self.matrix.read().unwrap_or_else(|p| p.into_inner());
            let Some(matrix) = guard.as_ref() else { return Ok(Page { items: Vec::new(), more: false, total: None }) };
            if matrix.dim() != query.vector.len() {
                return Err(StoreError::DimensionMismatch { expected: matrix.dim(), got: query.vector.len() });
            }
            let scores = matrix.scores(query.vector);
            let floor = query.filter.min_score.unwrap_or(f32::NEG_INFINITY);
            let everything = query.filter.is_empty();
            let candidates =
                passing(matrix, |row, facets| scores[row] >= floor && (everything || query.filter.matches(facets)), |row| scores[row]);
            let (page, more) = filter::page(candidates, query.sort, query.offset, query.limit);
            (page.into_iter().map(|c| (c.id.to_string(), c.score)).collect(), more)
        };
        let txn = self.db.begin_read().map_err(db_err)?;
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
        let txn = self.db.begin_read().map_err(db_err)?;
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
            let guard = self.matrix.read().unwrap_or_else(|p| p.into_inner());
            let Some(matrix) = guard.as_ref() else { return Ok(Page { items: Vec::new(), more: false, total: Some(0) }) };
            let candidates = passing(matrix, |_, facets| filter.matches(facets), |_| 0.0);
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
        let txn = self.db.begin_write().map_err(db_err)?;
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
        if let Some(matrix) = self.matrix.write().unwrap_or_else(|p| p.into_inner()).as_mut() {
            matrix.set_payload(id, Facets::of(&record));
        }
        Ok(true)
    }

    fn add_alias(&self, id: &str, path: &str) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(db_err)?;
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

    fn duplicates(&self, threshold: f32) -> Result<Vec<DuplicateGroup>, StoreError> {
        let (ids, pairs): (Vec<String>, Vec<(usize, usize, f32)>) = {
            let guard = self.matrix.read().unwrap_or_else(|p| p.into_inner());
            let Some(matrix) = guard.as_ref() else { return Ok(Vec::new()) };
            (matrix.ids().to_vec(), matrix.pairs_at_least(threshold))
        };
        let txn = self.db.begin_read().map_err(db_err)?;
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
        let guard = self.matrix.read().unwrap_or_else(|p| p.into_inner());
        let Some(matrix) = guard.as_ref() else { return Ok(Vec::new()) };
        Ok(passing(matrix, |_, facets| !facets.photo_read, |_| 0.0).into_iter().map(|c| c.id.to_string()).collect())
    }

    fn bound_model(&self) -> Result<Option<(String, usize)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let model = meta.get("model").map_err(db_err)?.map(|v| v.value().to_string());
        let dim = meta.get("dim").map_err(db_err)?.and_then(|v| v.value().parse::<usize>().ok());
        Ok(model.zip(dim))
    }

    fn export_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(ImageRecord, Vec<f32>)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
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
        self.matrix.read().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, Matrix::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(|dir| Box::new(EmbeddedStore::open(dir).unwrap()));
    }

    #[test]
    fn a_second_process_opening_the_index_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path()).unwrap();
        let err = EmbeddedStore::open(dir.path()).err().expect("second open must fail");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }
}
