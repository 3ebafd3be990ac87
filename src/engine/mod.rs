//! The core that joins the rooms: ingest a file (confine, hash, dedup, decode, embed, store) and
//! search by text or by image. Used by the HTTP handlers and the CLI alike, so both run the
//! same pipeline. Knows no HTTP: errors are typed and mapped to statuses by `api`.

pub mod jobs;
pub mod paths;
pub mod thumbnails;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use time::OffsetDateTime;

use crate::embed::{preprocess, ClipModel, DecodeLimits, DecodedImage, EmbedError, Embedder, ImageError};
use crate::metrics;
use crate::store::{Hit, ImageRecord, StoreError, VectorStore};

pub use paths::ImageRoots;

/// Longest query accepted, in characters. CLIP reads 77 tokens; this bound only stops abuse.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Largest `top_k` accepted.
pub const MAX_TOP_K: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("path is outside the allowed image roots: {0}")]
    PathOutsideRoots(String),
    #[error("no such file or folder: {0}")]
    FileNotFound(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("no image with id {0}")]
    ImageNotFound(String),
    #[error("the file of image {id} is no longer available at {path}")]
    ImageFileGone { id: String, path: String },
    #[error("no job with id {0}")]
    JobNotFound(String),
    #[error("query is empty")]
    EmptyQuery,
    #[error("query is {chars} characters long; the limit is {limit}")]
    QueryTooLong { chars: usize, limit: usize },
    #[error("top_k must be between 1 and {max}, got {got}")]
    InvalidTopK { got: i64, max: usize },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write {path}: {message}")]
    Write { path: String, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What ingesting one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// New content, embedded and stored.
    Indexed,
    /// The same bytes were already indexed (possibly under another path).
    Duplicate,
    /// The file is indexed and has not changed since (size and modification time); not read.
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Ingested {
    pub record: ImageRecord,
    pub outcome: IngestOutcome,
}

impl Ingested {
    pub fn is_new(&self) -> bool {
        self.outcome == IngestOutcome::Indexed
    }
}

/// Results of a text search.
#[derive(Debug, Clone)]
pub struct TextSearch {
    pub hits: Vec<Hit>,
    /// The query was longer than the model's 77 tokens and was cut.
    pub truncated: bool,
}

/// Where the engine keeps files it owns, under the data directory.
#[derive(Debug, Clone)]
pub struct DataDirs {
    /// Uploaded images, content-addressed.
    pub uploads: PathBuf,
    /// Cached thumbnails.
    pub thumbnails: PathBuf,
    /// Job records.
    pub jobs_file: PathBuf,
}

impl DataDirs {
    pub fn under(data_dir: &Path) -> Self {
        Self { uploads: data_dir.join("uploads"), thumbnails: data_dir.join("thumbnails"), jobs_file: data_dir.join("jobs.json") }
    }
}

pub struct Engine {
    embedder: Embedder,
    store: Arc<dyn VectorStore>,
    roots: ImageRoots,
    limits: DecodeLimits,
    dirs: DataDirs,
    /// Fingerprint of the model the store has been bound to in this process.
    bound_model: Mutex<Option<String>>,
    /// Files being read and decoded at once: one per core, so decoding keeps the model fed
    /// without crowding out its threads. Shared by ingest, search by image and thumbnails, so
    /// memory for decoded pixels is bounded by cores × one decode however many requests arrive.
    decoding: Arc<tokio::sync::Semaphore>,
}

/// The file-reading half of an ingest, done on a blocking thread.
enum Prepared {
    Known(Ingested),
    New { record: ImageRecord, pixels: ndarray::Array3<f32>, replaces: Option<String> },
}

impl Engine {
    pub fn new(embedder: Embedder, store: Arc<dyn VectorStore>, roots: ImageRoots, limits: DecodeLimits, dirs: DataDirs) -> Self {
        metrics::index_size(store.count());
        // Uploaded files are ours to serve like files under a root. Create the folder now so the
        // root is known by its canonical path (a symlinked data dir would otherwise not match).
        if let Err(e) = std::fs::create_dir_all(&dirs.uploads) {
            tracing::warn!(dir = %dirs.uploads.display(), error = %e, "cannot create the uploads folder");
        }
        let roots = roots.with_internal_root(&dirs.uploads);
        // A one-off after upgrading from the flat cache layout; on its own thread, as a large
        // old cache takes a while to remove and nothing waits for it.
        let thumbnail_dir = dirs.thumbnails.clone();
        let _ = std::thread::Builder::new().name("old-thumbnails".into()).spawn(move || {
            let removed = thumbnails::remove_flat_legacy_files(&thumbnail_dir);
            if removed > 0 {
                tracing::info!(removed, dir = %thumbnail_dir.display(), "removed thumbnails cached in the old flat layout");
            }
        });
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { embedder, store, roots, limits, dirs, bound_model: Mutex::new(None), decoding: Arc::new(tokio::sync::Semaphore::new(cores)) }
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    pub fn roots(&self) -> &ImageRoots {
        &self.roots
    }

    pub fn dirs(&self) -> &DataDirs {
        &self.dirs
    }

    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    pub fn image_count(&self) -> usize {
        self.store.count()
    }

    /// The loaded model, bound to the store (first use records it; another model is refused).
    fn model(&self) -> Result<Arc<ClipModel>, EngineError> {
        let model = self.embedder.model()?;
        let mut bound = self.bound_model.lock().unwrap_or_else(|p| p.into_inner());
        if bound.as_deref() != Some(model.fingerprint()) {
            self.store.bind_model(model.fingerprint(), model.dim())?;
            *bound = Some(model.fingerprint().to_string());
        }
        Ok(model)
    }

    /// Ingests one file named by a request (confined to the image roots).
    pub async fn ingest_path(&self, requested: &str) -> Result<Ingested, EngineError> {
        let outcome = match self.roots.resolve(requested) {
            Ok(path) => self.ingest_file(path).await,
            Err(e) => Err(e),
        };
        count_ingest(&outcome);
        outcome
    }

    /// Ingests a file already known to be under a root (canonical path).
    #[tracing::instrument(level = "info", skip(self), fields(path = %path.display()))]
    pub async fn ingest_file(&self, path: PathBuf) -> Result<Ingested, EngineError> {
        let model = self.model()?;
        let store = self.store.clone();
        let limits = self.limits;
        let prep_model = model.clone();
        let permit = self.decode_permit().await?;
        let prepared = blocking(move || {
            let _decoding = permit;
            prepare(&path, &limits, store.as_ref(), &prep_model)
        })
        .await?;
        let (record, pixels, replaces) = match prepared {
            Prepared::Known(ingested) => return Ok(ingested),
            Prepared::New { record, pixels, replaces } => (record, pixels, replaces),
        };
        let vector = model.embed_pixels(pixels).await?;
        let store = self.store.clone();
        let saved = record.clone();
        blocking(move || {
            store.upsert(&saved, &vector)?;
            if let Some(stale) = replaces {
                // The file at this path changed: its old content is no longer there.
                store.delete(&stale)?;
            }
            Ok(())
        })
        .await?;
        metrics::index_size(self.store.count());
        Ok(Ingested { record, outcome: IngestOutcome::Indexed })
    }

    /// Stores uploaded bytes content-addressed under the data directory and indexes them.
    /// The bytes are checked to be a decodable image before anything is written.
    pub async fn ingest_upload(&self, filename: &str, bytes: Vec<u8>) -> Result<Ingested, EngineError> {
        self.model()?;
        let limits = self.limits;
        let uploads = self.dirs.uploads.clone();
        let filename = filename.to_string();
        let path = blocking(move || {
            let decoded = preprocess::decode(&bytes, &limits)?;
            let hash = blake3::hash(&bytes).to_hex().to_string();
            // One folder per content hash keeps storage content-addressed while the file keeps
            // the name the user knows it by.
            let dir = uploads.join(&hash[..2]).join(&hash);
            if let Some(existing) = std::fs::read_dir(&dir).ok().and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path()))) {
                return Ok(existing);
            }
            let path = dir.join(upload_file_name(&filename, extension(&decoded)));
            write_atomically(&dir, &path, &bytes)?;
            Ok(path)
        })
        .await?;
        let outcome = self.ingest_file(path).await;
        count_ingest(&outcome);
        outcome
    }

    /// The `top_k` images closest to a text.
    #[tracing::instrument(level = "info", skip(self, query), fields(chars = query.len()))]
    pub async fn search_text(&self, query: &str, top_k: i64) -> Result<TextSearch, EngineError> {
        let k = check_top_k(top_k)?;
        let chars = query.chars().count();
        if query.trim().is_empty() {
            return Err(EngineError::EmptyQuery);
        }
        if chars > MAX_QUERY_CHARS {
            return Err(EngineError::QueryTooLong { chars, limit: MAX_QUERY_CHARS });
        }
        let model = self.model()?;
        let embedding = model.embed_text(query).await?;
        let hits = self.search_vector(embedding.vector, k).await?;
        Ok(TextSearch { hits, truncated: embedding.truncated })
    }

    /// The `top_k` images closest to an indexed image (itself included, first).
    pub async fn search_similar(&self, id: &str, top_k: i64) -> Result<Vec<Hit>, EngineError> {
        let k = check_top_k(top_k)?;
        self.model()?;
        let vector = self.store.vector(id)?.ok_or_else(|| EngineError::ImageNotFound(id.to_string()))?;
        self.search_vector(vector, k).await
    }

    /// The `top_k` indexed images closest to an image that is not (and will not be) indexed.
    pub async fn search_by_image(&self, bytes: Bytes, top_k: i64) -> Result<Vec<Hit>, EngineError> {
        let k = check_top_k(top_k)?;
        let model = self.model()?;
        let limits = self.limits;
        let prep_model = model.clone();
        let permit = self.decode_permit().await?;
        let pixels = blocking(move || {
            let _decoding = permit;
            Ok(prep_model.pixels(&preprocess::decode(&bytes, &limits)?)?)
        })
        .await?;
        let vector = model.embed_pixels(pixels).await?;
        self.search_vector(vector, k).await
    }

    #[tracing::instrument(level = "info", skip(self, vector))]
    async fn search_vector(&self, vector: Vec<f32>, k: usize) -> Result<Vec<Hit>, EngineError> {
        let store = self.store.clone();
        blocking(move || Ok(store.search(&vector, k)?)).await
    }

    pub fn image(&self, id: &str) -> Result<ImageRecord, EngineError> {
        self.store.get(id)?.ok_or_else(|| EngineError::ImageNotFound(id.to_string()))
    }

    /// A page of indexed images and the total count.
    pub fn list_images(&self, offset: usize, limit: usize) -> Result<(Vec<ImageRecord>, usize), EngineError> {
        Ok((self.store.list(offset, limit)?, self.store.count()))
    }

    /// Removes an image from the index, with its cached thumbnails and, for uploads, the stored
    /// bytes. The user's own files under the image roots are never touched.
    pub async fn delete_image(&self, id: &str) -> Result<ImageRecord, EngineError> {
        let record = self.image(id)?;
        let store = self.store.clone();
        let dirs = self.dirs.clone();
        let removed = record.clone();
        blocking(move || {
            store.delete(&removed.id)?;
            thumbnails::forget(&dirs.thumbnails, &removed.id);
            let path = Path::new(&removed.path);
            if path.starts_with(&dirs.uploads) {
                let _ = std::fs::remove_file(path);
                if let Some(folder) = path.parent() {
                    let _ = std::fs::remove_dir(folder);
                }
            }
            Ok(())
        })
        .await?;
        metrics::index_size(self.store.count());
        Ok(record)
    }

    /// The file behind an indexed image, if it is still there and still under a root.
    pub fn image_file(&self, id: &str) -> Result<(ImageRecord, PathBuf), EngineError> {
        let record = self.image(id)?;
        let gone = || EngineError::ImageFileGone { id: record.id.clone(), path: record.path.clone() };
        let canonical = std::fs::canonicalize(&record.path).map_err(|_| gone())?;
        if !self.roots.contains(&canonical) || !canonical.is_file() {
            return Err(gone());
        }
        Ok((record, canonical))
    }

    /// The file behind an indexed image as it is on disk now, for serving it.
    pub fn current_file(&self, id: &str) -> Result<ImageFile, EngineError> {
        let (record, path) = self.image_file(id)?;
        let meta = std::fs::metadata(&path).map_err(|_| EngineError::ImageFileGone { id: record.id.clone(), path: record.path.clone() })?;
        let modified = modified_nanos(&meta);
        // The same test as re-ingesting uses to skip a file: unchanged size and modification time.
        let as_indexed = record.bytes == meta.len() && record.modified.is_some() && record.modified == modified;
        Ok(ImageFile { record, path, len: meta.len(), modified_nanos: modified, as_indexed })
    }

    /// A JPEG thumbnail whose longer side is `size` snapped up to one of
    /// [`thumbnails::SIZES`] (never larger than the image), cached on disk.
    pub async fn thumbnail(&self, id: &str, size: u32) -> Result<Vec<u8>, EngineError> {
        let size = thumbnails::snap(size);
        let (record, path) = self.image_file(id)?;
        let dir = self.dirs.thumbnails.clone();
        let (cache, cached_id) = (dir.clone(), record.id.clone());
        if let Some(jpeg) = blocking(move || Ok(thumbnails::lookup(&cache, &cached_id, size))).await? {
            return Ok(jpeg);
        }
        let limits = self.limits;
        let permit = self.decode_permit().await?;
        blocking(move || {
            let _decoding = permit;
            // Requests for the same thumbnail that waited for a permit find it rendered.
            match thumbnails::lookup(&dir, &record.id, size) {
                Some(jpeg) => Ok(jpeg),
                None => thumbnails::render(&dir, &record.id, &path, size, &limits),
            }
        })
        .await
    }

    /// A permit to decode one image. Owned, so it moves into the blocking task: a request that
    /// times out drops its future, but the decode it started holds the permit until it ends.
    async fn decode_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, EngineError> {
        self.decoding.clone().acquire_owned().await.map_err(|e| EngineError::Internal(format!("decode permits: {e}")))
    }
}

/// An indexed image's file, as found on disk.
#[derive(Debug, Clone)]
pub struct ImageFile {
    pub record: ImageRecord,
    /// Canonical path, under an image root.
    pub path: PathBuf,
    /// Size in bytes now.
    pub len: u64,
    /// Modification time now (nanoseconds since the epoch), where the file system keeps one.
    pub modified_nanos: Option<i128>,
    /// Size and modification time are those recorded at ingest, so the record's content hash
    /// still names these bytes.
    pub as_indexed: bool,
}

/// Runs blocking work (file I/O, decoding, database) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, EngineError> + Send + 'static) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| EngineError::Internal(format!("worker thread: {e}")))?
}

/// Counts one single-image ingest (by path or upload) in the metrics.
fn count_ingest(outcome: &Result<Ingested, EngineError>) {
    metrics::ingest(match outcome {
        Ok(i) if i.is_new() => "indexed",
        Ok(_) => "duplicate",
        Err(_) => "failed",
    });
}

fn check_top_k(top_k: i64) -> Result<usize, EngineError> {
    if (1..=MAX_TOP_K as i64).contains(&top_k) {
        Ok(top_k as usize)
    } else {
        Err(EngineError::InvalidTopK { got: top_k, max: MAX_TOP_K })
    }
}

/// Ids are the first 16 hex digits (64 bits) of the content's BLAKE3: stable across re-ingests,
/// restarts and machines, and short enough for URLs.
pub fn image_id(content_hash: &str) -> String {
    content_hash[..16].to_string()
}

fn modified_nanos(meta: &std::fs::Metadata) -> Option<i128> {
    let modified = meta.modified().ok()?;
    Some(OffsetDateTime::from(modified).unix_timestamp_nanos())
}

fn prepare(path: &Path, limits: &DecodeLimits, store: &dyn VectorStore, model: &ClipModel) -> Result<Prepared, EngineError> {
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| EngineError::Unreadable { path: shown.clone(), message: e.to_string() };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let size = meta.len();
    let modified = modified_nanos(&meta);
    let previous = store.find_by_path(&shown)?;
    if let Some(previous) = &previous {
        if previous.bytes == size && previous.modified.is_some() && previous.modified == modified {
            return Ok(Prepared::Known(Ingested { record: previous.clone(), outcome: IngestOutcome::Unchanged }));
        }
    }
    if size > limits.max_bytes {
        return Err(ImageError::TooManyBytes { bytes: size, limit: limits.max_bytes }.into());
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let content_hash = blake3::hash(&bytes).to_hex().to_string();
    let id = image_id(&content_hash);
    if let Some(existing) = store.get(&id)?.filter(|r| r.content_hash == content_hash) {
        // Known content. If its recorded file is gone (moved or renamed), it lives here now.
        if existing.path != shown && !Path::new(&existing.path).exists() {
            if let Some(vector) = store.vector(&id)? {
                let moved = ImageRecord { path: shown, modified, ..existing };
                store.upsert(&moved, &vector)?;
                return Ok(Prepared::Known(Ingested { record: moved, outcome: IngestOutcome::Duplicate }));
            }
        }
        return Ok(Prepared::Known(Ingested { record: existing, outcome: IngestOutcome::Duplicate }));
    }
    let decoded = preprocess::decode(&bytes, limits)?;
    let pixels = model.pixels(&decoded)?;
    let record = ImageRecord {
        id,
        path: shown,
        content_hash,
        width: decoded.width(),
        height: decoded.height(),
        bytes: bytes.len() as u64,
        modified,
        format: format_name(decoded.format),
        ingested_at: OffsetDateTime::now_utc(),
    };
    let replaces = previous.map(|p| p.id).filter(|old| *old != record.id);
    Ok(Prepared::New { record, pixels, replaces })
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    use std::io::Write;
    let failed = |e: std::io::Error| EngineError::Write { path: path.display().to_string(), message: e.to_string() };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

/// A safe file name from an uploaded one: its last component, with anything unusual replaced.
fn upload_file_name(original: &str, extension: &str) -> String {
    let base = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String =
        base.chars().map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') { c } else { '_' }).take(120).collect();
    let cleaned = cleaned.trim_matches(|c| c == '.' || c == ' ');
    if cleaned.is_empty() {
        format!("upload.{extension}")
    } else {
        cleaned.to_string()
    }
}

fn extension(decoded: &DecodedImage) -> &'static str {
    decoded.format.extensions_str().first().copied().unwrap_or("img")
}

fn format_name(format: image::ImageFormat) -> String {
    format!("{format:?}").to_lowercase()
}
