//! Request and response bodies of the HTTP API (the wire format; documented in OpenAPI).

use axum::extract::FromRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::store::{Hit, ImageRecord};

/// `axum::Json` whose rejections answer in our JSON error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestImageRequest {
    /// File to index: absolute, or relative to an image root; must lie under an image root.
    pub path: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestImageResponse {
    /// Always `ok` on success.
    pub status: &'static str,
    pub id: String,
    pub path: String,
    /// True when the same content was already indexed (nothing new was added).
    pub duplicate: bool,
}

fn default_top_k() -> i64 {
    5
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Text to search for. Give either `query` or `image_id`.
    #[serde(default)]
    pub query: Option<String>,
    /// Find images similar to this indexed image instead of a text.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Number of results, 1 to 1000.
    #[serde(default = "default_top_k")]
    #[schema(default = 5, minimum = 1, maximum = 1000)]
    pub top_k: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub id: String,
    pub path: String,
    /// Cosine similarity between the query and the image, in [-1, 1].
    pub score: f32,
}

impl From<Hit> for SearchResult {
    fn from(hit: Hit) -> Self {
        Self { id: hit.record.id, path: hit.record.path, score: hit.score }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    pub results: Vec<SearchResult>,
    /// The query had more than the model's 77 tokens; only the start was used.
    pub truncated: bool,
}

/// Metadata of an indexed image.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageInfo {
    pub id: String,
    pub path: String,
    /// BLAKE3 hash of the file's bytes.
    pub content_hash: String,
    /// Width after EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// File size.
    pub bytes: u64,
    pub format: String,
    /// RFC 3339 time of ingestion.
    pub ingested_at: String,
    /// Where to fetch the image itself.
    pub file_url: String,
}

impl From<ImageRecord> for ImageInfo {
    fn from(r: ImageRecord) -> Self {
        let ingested_at = rfc3339(r.ingested_at);
        Self {
            file_url: format!("/images/{}/file", r.id),
            id: r.id,
            path: r.path,
            content_hash: r.content_hash,
            width: r.width,
            height: r.height,
            bytes: r.bytes,
            format: r.format,
            ingested_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelStatus {
    /// `loading`, `ready` or `failed`.
    pub state: &'static str,
    /// Directory or Hugging Face repo id.
    pub source: String,
    pub precision: &'static str,
    /// Embedding dimension, once loaded.
    pub dim: Option<usize>,
    /// Why loading failed.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IndexStatus {
    pub images: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` while the process serves requests.
    pub status: &'static str,
    pub version: &'static str,
    pub model: ModelStatus,
    pub index: IndexStatus,
}

fn default_limit() -> usize {
    50
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListImagesQuery {
    /// Images to skip.
    #[serde(default)]
    pub offset: usize,
    /// Page size, 1 to 1000.
    #[serde(default = "default_limit")]
    pub limit: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageInfo>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedImage {
    /// Always `deleted`.
    pub status: &'static str,
    pub id: String,
}

fn default_thumbnail_size() -> u32 {
    256
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailQuery {
    /// Longest side wanted, in pixels, 32 to 1024. Rounded up to a cached size (64, 128, 256,
    /// 512 or 1024); never larger than the image.
    #[serde(default = "default_thumbnail_size")]
    pub size: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResult {
    pub filename: String,
    /// `ok` or `error`.
    pub status: &'static str,
    pub id: Option<String>,
    pub duplicate: Option<bool>,
    pub error: Option<super::error::ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResponse {
    /// One entry per uploaded file, in request order.
    pub results: Vec<UploadResult>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestDirectoryRequest {
    /// Folder to index: absolute, or relative to an image root; must lie under an image root.
    pub path: String,
    /// Descend into sub-folders.
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchImageQuery {
    /// Number of results, 1 to 1000.
    #[serde(default = "default_top_k")]
    pub top_k: i64,
}

/// A directory ingest job (see `GET /jobs/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobInfo {
    pub id: String,
    pub path: String,
    pub recursive: bool,
    /// `queued`, `running`, `cancelling`, `completed`, `cancelled` or `failed`.
    pub state: String,
    pub total: usize,
    pub done: usize,
    pub indexed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Files per second in the current run.
    pub rate: f64,
    pub eta_seconds: Option<f64>,
    pub failures: Vec<FailureInfo>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailureInfo {
    pub path: String,
    pub error: String,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl From<crate::engine::jobs::JobView> for JobInfo {
    fn from(view: crate::engine::jobs::JobView) -> Self {
        let r = view.record;
        let state = serde_json::to_value(r.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        Self {
            id: r.id,
            path: r.path,
            recursive: r.recursive,
            state,
            total: r.total,
            done: r.done,
            indexed: r.indexed,
            skipped: r.skipped,
            failed: r.failed,
            rate: view.rate,
            eta_seconds: view.eta_seconds,
            failures: r.failures.into_iter().map(|f| FailureInfo { path: f.path, error: f.error }).collect(),
            error: r.error,
            created_at: rfc3339(r.created_at),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobInfo>,
}
