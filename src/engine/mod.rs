//! The core that joins the rooms: ingest a file (confine, hash, dedup, decode, embed, store) and
//! search by text or by image. Used by the HTTP handlers and the CLI alike, so both run the
//! same pipeline. Knows no HTTP: errors are typed and mapped to statuses by `api`.

pub mod paths;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use crate::embed::{preprocess, ClipModel, DecodeLimits, EmbedError, Embedder, ImageError};
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
    #[error("no such file: {0}")]
    FileNotFound(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("no image with id {0}")]
    ImageNotFound(String),
    #[error("the file of image {id} is no longer available at {path}")]
    ImageFileGone { id: String, path: String },
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
    #[error("internal error: {0}")]
    Internal(String),
}

/// The result of ingesting one file.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub record: ImageRecord,
    /// The same bytes were already indexed; nothing new was added.
    pub duplicate: bool,
}

/// Results of a text search.
#[derive(Debug, Clone)]
pub struct TextSearch {
    pub hits: Vec<Hit>,
    /// The query was longer than the model's 77 tokens and was cut.
    pub truncated: bool,
}

pub struct Engine {
    embedder: Embedder,
    store: Arc<dyn VectorStore>,
    roots: ImageRoots,
    limits: DecodeLimits,
    /// Fingerprint of the model the store has been bound to in this process.
    bound_model: Mutex<Option<String>>,
}

/// Reads and hashes a file, then decodes and preprocesses it unless the content is known.
enum Prepared {
    Known(ImageRecord),
    New { record: ImageRecord, pixels: ndarray::Array3<f32> },
}

impl Engine {
    pub fn new(embedder: Embedder, store: Arc<dyn VectorStore>, roots: ImageRoots, limits: DecodeLimits) -> Self {
        metrics::index_size(store.count());
        Self { embedder, store, roots, limits, bound_model: Mutex::new(None) }
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    pub fn roots(&self) -> &ImageRoots {
        &self.roots
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
        let path = self.roots.resolve(requested)?;
        let outcome = self.ingest_file(path).await;
        metrics::ingest(match &outcome {
            Ok(Ingested { duplicate: true, .. }) => "duplicate",
            Ok(_) => "indexed",
            Err(_) => "failed",
        });
        outcome
    }

    /// Ingests a file already known to be under a root.
    pub async fn ingest_file(&self, path: PathBuf) -> Result<Ingested, EngineError> {
        let model = self.model()?;
        let store = self.store.clone();
        let limits = self.limits;
        let prep_model = model.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&path, &limits, store.as_ref(), &prep_model))
            .await
            .map_err(|e| EngineError::Internal(format!("ingest worker: {e}")))??;
        match prepared {
            Prepared::Known(record) => Ok(Ingested { record, duplicate: true }),
            Prepared::New { record, pixels } => {
                let vector = model.embed_pixels(pixels).await?;
                let store = self.store.clone();
                let saved = record.clone();
                tokio::task::spawn_blocking(move || store.upsert(&saved, &vector))
                    .await
                    .map_err(|e| EngineError::Internal(format!("store worker: {e}")))??;
                metrics::index_size(self.store.count());
                Ok(Ingested { record, duplicate: false })
            }
        }
    }

    /// The `top_k` images closest to a text.
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

    async fn search_vector(&self, vector: Vec<f32>, k: usize) -> Result<Vec<Hit>, EngineError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.search(&vector, k))
            .await
            .map_err(|e| EngineError::Internal(format!("search worker: {e}")))??)
    }

    pub fn image(&self, id: &str) -> Result<ImageRecord, EngineError> {
        self.store.get(id)?.ok_or_else(|| EngineError::ImageNotFound(id.to_string()))
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

fn prepare(path: &std::path::Path, limits: &DecodeLimits, store: &dyn VectorStore, model: &ClipModel) -> Result<Prepared, EngineError> {
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| EngineError::Unreadable { path: shown.clone(), message: e.to_string() };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > limits.max_bytes {
        return Err(ImageError::TooManyBytes { bytes: size, limit: limits.max_bytes }.into());
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let content_hash = blake3::hash(&bytes).to_hex().to_string();
    let id = image_id(&content_hash);
    if let Some(existing) = store.get(&id)? {
        if existing.content_hash == content_hash {
            return Ok(Prepared::Known(existing));
        }
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
        format: format_name(decoded.format),
        ingested_at: OffsetDateTime::now_utc(),
    };
    Ok(Prepared::New { record, pixels })
}

fn format_name(format: image::ImageFormat) -> String {
    format!("{format:?}").to_lowercase()
}

/// The media type to serve an indexed image's file with.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tiff" => "image/tiff",
        _ => "application/octet-stream",
    }
}
