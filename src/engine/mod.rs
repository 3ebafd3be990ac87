//! The core that joins the rooms: ingest a file (confine, hash, dedup, decode, embed, store) and
//! search by text or by image. Used by the HTTP handlers and the CLI alike, so both run the
//! same pipeline. Knows no HTTP: errors are typed and mapped to statuses by `api`.

pub mod cache_saver;
pub mod eval;
pub mod exclude;
pub mod generations;
mod ingest;
pub mod jobs;
pub mod metadata;
pub mod paths;
pub mod pipeline;
mod reembed;
pub mod search;
pub mod single_flight;
pub mod store_health;
pub mod thumbnails;
pub mod uploads;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

pub use self::store_health::{StoreHealth, StoreStatus};
use crate::embed::{preprocess, DecodeLimits, EmbedError, Embedder, ImageError, ModelState};
use crate::metrics;
use crate::store::{DuplicateGroup, Filter, Hit, ImageRecord, Page, SortBy, StoreError};
use generations::{Generation, Served};
use single_flight::SingleFlight;

pub use ingest::WhenBusy;
pub use paths::ImageRoots;
pub use search::{SearchOutcome, SearchSpec, Term, Weighted};
pub use uploads::{Upload, UploadSink};

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
    #[error("job {id} is {state}: cancel it (POST /jobs/{id}/cancel) and wait for it to finish before deleting it")]
    JobUnfinished { id: String, state: String },
    #[error("query is empty")]
    EmptyQuery,
    #[error("query is {chars} characters long; the limit is {limit}")]
    QueryTooLong { chars: usize, limit: usize },
    #[error("top_k must be between 1 and {max}, got {got}")]
    InvalidTopK { got: i64, max: usize },
    #[error("{0}")]
    InvalidSearch(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write {path}: {message}")]
    Write { path: String, message: String },
    #[error("no space left to write {path}: {message}")]
    DiskFull { path: String, message: String },
    #[error("a re-embed is already building generation {generation} (job {job_id}); cancel that job first")]
    ReembedRunning { generation: String, job_id: String },
    #[error("{0}")]
    NothingToReembed(String),
    #[error("{0}")]
    CannotReembed(String),
    /// The index switched to another model while this image was embedded; it is embedded again.
    #[error("the index switched to another model meanwhile; try again")]
    GenerationChanged,
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// A failed write to `path`: a full disk (or quota) is told apart, as it passes once space
    /// is freed.
    pub fn write(path: &Path, e: std::io::Error) -> Self {
        let (path, message) = (path.display().to_string(), e.to_string());
        if crate::fsutil::is_out_of_space(&e) {
            Self::DiskFull { path, message }
        } else {
            Self::Write { path, message }
        }
    }
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

/// The model's state as status pages show it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub state: &'static str,
    pub source: String,
    pub precision: &'static str,
    pub dim: Option<usize>,
    pub error: Option<String>,
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
    /// The generation served (a model and its vectors), and the one being built.
    served: Served,
    roots: ImageRoots,
    limits: DecodeLimits,
    dirs: DataDirs,
    /// Files being read and decoded at once: one per core, so decoding keeps the model fed
    /// without crowding out its threads. Shared by ingest, search by image and thumbnails, so
    /// memory for decoded pixels is bounded by cores × one decode however many requests arrive.
    decoding: Arc<tokio::sync::Semaphore>,
    /// Uploads of the same content wait for each other (one stored file, one row).
    upload_locks: uploads::HashLocks,
    /// Thumbnails being rendered, by (image id, size): their result or failure, once.
    thumbnail_renders: SingleFlight<(String, u32), Result<Bytes, Arc<EngineError>>>,
    store_health: Arc<StoreHealth>,
    /// Files and folders never indexed: one policy for walks and the watcher.
    exclusions: exclude::Exclusions,
}

impl Engine {
    pub fn new(served: Served, roots: ImageRoots, limits: DecodeLimits, dirs: DataDirs) -> Self {
        metrics::index_size(served.current().store.count());
        // Uploaded files are ours to serve like files under a root. Create the folder now so the
        // root is known by its canonical path (a symlinked data dir would otherwise not match).
        if let Err(e) = std::fs::create_dir_all(&dirs.uploads) {
            tracing::warn!(dir = %dirs.uploads.display(), error = %e, "cannot create the uploads folder");
        }
        // Records name uploads by canonical path: never relative to the working directory, so
        // deleting an image finds its stored file whatever directory the server runs in.
        let mut dirs = dirs;
        if let Ok(canonical) = std::fs::canonicalize(&dirs.uploads) {
            dirs.uploads = canonical;
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
        Self {
            served,
            roots,
            limits,
            dirs,
            decoding: Arc::new(tokio::sync::Semaphore::new(cores)),
            upload_locks: uploads::HashLocks::default(),
            thumbnail_renders: SingleFlight::new(),
            store_health: Arc::default(),
            exclusions: exclude::Exclusions::default(),
        }
    }

    /// The same engine with `exclusions` as its policy for what is never indexed.
    pub fn with_exclusions(mut self, exclusions: exclude::Exclusions) -> Self {
        self.exclusions = exclusions;
        self
    }

    /// What folder walks and the watcher never index.
    pub fn exclusions(&self) -> &exclude::Exclusions {
        &self.exclusions
    }

    /// Starts checking the store's reachability in the background (after a first check now).
    pub fn watch_store(&self) {
        let home: Arc<dyn crate::store::VectorStore> = self.served.home.clone();
        self.store_health.check(home.as_ref());
        self.store_health.watch(home);
    }

    /// Saves the stores' in-memory caches every `every` in the background (`None`: at shutdown only).
    pub fn keep_saving_caches(self: &Arc<Self>, every: Option<std::time::Duration>) {
        if let Some(every) = every {
            cache_saver::keep_saving(self.clone(), every);
        }
    }

    /// Saves what the stores of the loaded generations keep in memory (the embedded store's
    /// approximate index), so the next start loads it instead of rebuilding it.
    pub fn save_caches(&self) -> Result<(), StoreError> {
        let mut stores: Vec<Arc<dyn crate::store::VectorStore>> = vec![self.served.home.clone()];
        for generation in [Some(self.current()), self.building()].into_iter().flatten() {
            if generation.name != crate::store::generations::MAIN {
                stores.push(generation.store.clone());
            }
        }
        stores.iter().try_for_each(|store| store.save_caches())
    }

    /// The store's backend and whether it answered the last check.
    pub fn store_status(&self) -> StoreStatus {
        self.store_health.status(self.served.home.describe())
    }

    /// What the model is doing, for status pages.
    pub fn model_info(&self) -> ModelInfo {
        let generation = self.current();
        let options = &generation.embedder.options;
        let current = generation.embedder.state();
        let (dim, error) = match &current {
            ModelState::Ready(model) => (Some(model.dim()), None),
            ModelState::Failed(msg) => (None, Some(msg.clone())),
            ModelState::Loading => (None, None),
        };
        ModelInfo { state: current.name(), source: options.source.clone(), precision: options.precision.as_str(), dim, error }
    }

    /// Fails fast (model loading or failed) before a caller sends a large body for nothing.
    pub fn ensure_model_ready(&self) -> Result<(), EngineError> {
        self.current().model().map(|_| ())
    }

    /// The serving generation's model handle (which may still be loading).
    pub fn embedder(&self) -> Embedder {
        self.current().embedder.clone()
    }

    /// The generation searches are answered from: a request takes it once and uses its model
    /// and its vectors together.
    pub fn current(&self) -> Arc<Generation> {
        self.served.current()
    }

    /// The generation a re-embed is building, if one is.
    pub fn building(&self) -> Option<Arc<Generation>> {
        self.served.next()
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
        self.current().store.count()
    }

    /// The `top_k` images closest to a text.
    pub async fn search_text(&self, query: &str, top_k: i64) -> Result<TextSearch, EngineError> {
        let spec =
            SearchSpec { positive: vec![Weighted { term: Term::Text(query.to_string()), weight: 1.0 }], top_k, ..SearchSpec::default() };
        let found = self.search(spec).await?;
        Ok(TextSearch { hits: found.hits, truncated: found.truncated })
    }

    /// The `top_k` images closest to an indexed image (itself included, first).
    pub async fn search_similar(&self, id: &str, top_k: i64) -> Result<Vec<Hit>, EngineError> {
        let spec =
            SearchSpec { positive: vec![Weighted { term: Term::Image(id.to_string()), weight: 1.0 }], top_k, ..SearchSpec::default() };
        Ok(self.search(spec).await?.hits)
    }

    /// The `top_k` indexed images closest to an image that is not (and will not be) indexed.
    pub async fn search_by_image(&self, bytes: Bytes, top_k: i64) -> Result<Vec<Hit>, EngineError> {
        let k = check_top_k(top_k)?;
        let generation = self.current();
        let model = generation.model()?;
        let limits = self.limits;
        let prep_model = model.clone();
        let permit = self.decode_permit().await?;
        let pixels = blocking(move || {
            let _decoding = permit;
            Ok(prep_model.pixels(&preprocess::decode(&bytes, &limits)?)?)
        })
        .await?;
        let vector = model.embed_pixels(pixels).await?;
        let store = generation.store.clone();
        blocking(move || Ok(store.search(&vector, k)?)).await
    }

    pub fn image(&self, id: &str) -> Result<ImageRecord, EngineError> {
        self.current().store.get(id)?.ok_or_else(|| EngineError::ImageNotFound(id.to_string()))
    }

    /// Identical and similar images (cosine at or above `threshold`, 0.5 to 1). Exact: every pair
    /// is compared, on blocking threads.
    pub async fn duplicates(&self, threshold: f32) -> Result<Vec<DuplicateGroup>, EngineError> {
        if !(0.5..=1.0).contains(&threshold) {
            return Err(EngineError::InvalidSearch(format!("threshold must be between 0.5 and 1, got {threshold}")));
        }
        let store = self.current().store.clone();
        blocking(move || Ok(store.duplicates(threshold)?)).await
    }

    /// Remembers that image `id`'s content is also at `path` (for duplicate finding).
    pub async fn record_copy(&self, id: &str, path: &str) -> Result<(), EngineError> {
        let _writing = self.served.writable().await;
        let (store, id, path) = (self.current().store.clone(), id.to_string(), path.to_string());
        blocking(move || Ok(store.add_alias(&id, &path)?)).await
    }

    /// Ids of images whose photo metadata was never read (indexed by older versions).
    pub fn unread_photo_ids(&self) -> Result<Vec<String>, EngineError> {
        Ok(self.current().store.unread_photo_ids()?)
    }

    /// Reads an indexed image's photo metadata from its file and stores it (no re-embedding).
    /// `false` when the file is gone (the image is marked read with no metadata).
    pub async fn refresh_photo_meta(&self, id: &str) -> Result<bool, EngineError> {
        let _writing = self.served.writable().await;
        let record = self.image(id)?;
        let store = self.current().store.clone();
        let max_bytes = self.limits.max_bytes;
        let roots = self.roots.clone();
        blocking(move || {
            let bytes = roots
                .open(Path::new(&record.path))
                .and_then(|file| ingest::read_at_most(&file, max_bytes))
                .ok()
                .filter(|bytes| bytes.len() as u64 <= max_bytes);
            let photo = bytes.as_deref().map(metadata::read_photo_meta).unwrap_or_default();
            store.set_photo(&record.id, &photo)?;
            Ok(bytes.is_some())
        })
        .await
    }

    /// A page of indexed images and the total count.
    pub fn list_images(&self, filter: &Filter, sort: SortBy, offset: usize, limit: usize) -> Result<Page<ImageRecord>, EngineError> {
        Ok(self.current().store.list_page(filter, sort, offset, limit)?)
    }

    /// Removes an image from the index, with its cached thumbnails and, for uploads, the stored
    /// bytes. The user's own files under the image roots are never touched.
    pub async fn delete_image(&self, id: &str) -> Result<ImageRecord, EngineError> {
        let _writing = self.served.writable().await;
        let record = self.image(id)?;
        let store = self.current().store.clone();
        // A re-embed must not carry it over either (its last catch-up would, too).
        let building = self.building().map(|next| next.store.clone());
        let dirs = self.dirs.clone();
        let removed = record.clone();
        blocking(move || {
            store.delete(&removed.id)?;
            if let Some(next) = building {
                next.delete(&removed.id)?;
            }
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
        metrics::index_size(self.image_count());
        Ok(record)
    }

    /// The file behind an indexed image, if it is still there and still under a root: opened
    /// beneath its root, to be read from the handle (never reopened by path).
    fn open_image_file(&self, id: &str) -> Result<(ImageRecord, PathBuf, std::fs::File), EngineError> {
        let record = self.image(id)?;
        let gone = || EngineError::ImageFileGone { id: record.id.clone(), path: record.path.clone() };
        let canonical = std::fs::canonicalize(&record.path).map_err(|_| gone())?;
        if !self.roots.contains(&canonical) {
            return Err(gone());
        }
        let file = self.roots.open(&canonical).map_err(|_| gone())?;
        Ok((record, canonical, file))
    }

    /// The file behind an indexed image as it is on disk now, for serving it.
    pub fn current_file(&self, id: &str) -> Result<ImageFile, EngineError> {
        let (record, path, file) = self.open_image_file(id)?;
        let meta = file.metadata().map_err(|_| EngineError::ImageFileGone { id: record.id.clone(), path: record.path.clone() })?;
        let modified = ingest::modified_nanos(&meta);
        // The same test as re-ingesting uses to skip a file: unchanged size and modification time.
        let as_indexed = record.bytes == meta.len() && record.modified.is_some() && record.modified == modified;
        Ok(ImageFile { record, path, file, len: meta.len(), modified_nanos: modified, as_indexed })
    }

    /// A JPEG thumbnail whose longer side is `size` snapped up to one of
    /// [`thumbnails::SIZES`] (never larger than the image), cached on disk.
    ///
    /// Requests for a thumbnail that is being rendered wait for that render, so however many
    /// ask at once an image is decoded once per size, and a waiting request holds no file open.
    pub async fn thumbnail(&self, id: &str, size: u32) -> Result<Bytes, EngineError> {
        let size = thumbnails::snap(size);
        // The image must still be indexed and its file still there; the file is closed again.
        let (record, _, _) = self.open_image_file(id)?;
        let (cache, cached_id) = (self.dirs.thumbnails.clone(), record.id.clone());
        if let Some(jpeg) = blocking(move || Ok(thumbnails::lookup(&cache, &cached_id, size))).await? {
            return Ok(jpeg.into());
        }
        let key = (record.id, size);
        self.thumbnail_renders.run(key.clone(), || self.render_thumbnail(key.0, key.1)).await.map_err(|failed| shared_failure(&failed))
    }

    async fn render_thumbnail(&self, id: String, size: u32) -> Result<Bytes, Arc<EngineError>> {
        let permit = self.decode_permit().await?;
        let (record, path, file) = self.open_image_file(&id)?;
        let (dir, limits) = (self.dirs.thumbnails.clone(), self.limits);
        let jpeg = blocking(move || {
            let _decoding = permit;
            // A render that finished while this one waited for its permit left the file.
            if let Some(jpeg) = thumbnails::lookup(&dir, &record.id, size) {
                return Ok(jpeg);
            }
            metrics::image_decode("thumbnail");
            let unreadable = |e: std::io::Error| EngineError::Unreadable { path: path.display().to_string(), message: e.to_string() };
            let bytes = ingest::read_at_most(&file, limits.max_bytes).map_err(unreadable)?;
            thumbnails::render(&dir, &record.id, &bytes, size, &limits)
        })
        .await?;
        Ok(jpeg.into())
    }

    /// A permit to decode one image. Owned, so it moves into the blocking task: a request that
    /// times out drops its future, but the decode it started holds the permit until it ends.
    async fn decode_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, EngineError> {
        self.decoding.clone().acquire_owned().await.map_err(|e| EngineError::Internal(format!("decode permits: {e}")))
    }
}

/// An indexed image's file, as found on disk.
#[derive(Debug)]
pub struct ImageFile {
    pub record: ImageRecord,
    /// Canonical path, under an image root (for messages; read from `file`).
    pub path: PathBuf,
    /// The file, opened beneath its root.
    pub file: std::fs::File,
    /// Size in bytes now.
    pub len: u64,
    /// Modification time now (nanoseconds since the epoch), where the file system keeps one.
    pub modified_nanos: Option<i128>,
    /// Size and modification time are those recorded at ingest, so the record's content hash
    /// still names these bytes.
    pub as_indexed: bool,
}

/// A failure several requests share (a thumbnail render they all waited for), as each one's
/// own error: the kinds a render can fail with keep their kind, and so their status.
fn shared_failure(failed: &EngineError) -> EngineError {
    match failed {
        EngineError::Image(e) => EngineError::Image(e.clone()),
        EngineError::Store(e) => EngineError::Store(e.clone()),
        EngineError::Unreadable { path, message } => EngineError::Unreadable { path: path.clone(), message: message.clone() },
        EngineError::ImageNotFound(id) => EngineError::ImageNotFound(id.clone()),
        EngineError::ImageFileGone { id, path } => EngineError::ImageFileGone { id: id.clone(), path: path.clone() },
        EngineError::GenerationChanged => EngineError::GenerationChanged,
        other => EngineError::Internal(other.to_string()),
    }
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

pub(super) fn check_top_k(top_k: i64) -> Result<usize, EngineError> {
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

fn format_name(format: crate::embed::SourceFormat) -> String {
    format.name()
}
