//! Request and response bodies of the HTTP API (the wire format; documented in OpenAPI).

use axum::extract::FromRequest;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::store::{Hit, ImageRecord};

/// `axum::Json` whose rejections answer in our JSON error shape, and which takes only a JSON
/// object: serde would also fill a struct from an array of its fields in order (`["a.jpg"]`
/// for `{"path": "a.jpg"}`), a form the API does not document.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(request, state).await?;
        from_object(value).map(ApiJson)
    }
}

fn from_object<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    let invalid = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message);
    if !value.is_object() {
        return Err(invalid("the body must be a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| invalid(format!("Failed to deserialize the JSON body into the target type: {e}")))
}

/// For a field holding a struct: only a JSON object, never the array form serde also takes.
fn object_only<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    if !value.is_object() {
        return Err(serde::de::Error::invalid_type(unexpected(&value), &"a JSON object"));
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

/// `Option` of [`object_only`].
fn optional_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<Option<T>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        value => object_only(value).map(Some).map_err(serde::de::Error::custom),
    }
}

fn unexpected(value: &serde_json::Value) -> serde::de::Unexpected<'_> {
    use serde::de::Unexpected;
    match value {
        serde_json::Value::Null => Unexpected::Unit,
        serde_json::Value::Bool(b) => Unexpected::Bool(*b),
        serde_json::Value::Number(_) => Unexpected::Other("a number"),
        serde_json::Value::String(s) => Unexpected::Str(s),
        serde_json::Value::Array(_) => Unexpected::Seq,
        serde_json::Value::Object(_) => Unexpected::Map,
    }
}

impl<T: Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"path": "photo.jpg"}))]
pub struct IngestImageRequest {
    /// File to index: absolute, or relative to an image root; must lie under an image root.
    #[schema(min_length = 1)]
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
#[schema(example = json!({"query": "a dog on a beach", "top_k": 5}))]
pub struct SearchRequest {
    /// Text to search for, at most 1000 characters and not only white space. Give either
    /// `query` or `image_id`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1000)]
    pub query: Option<String>,
    /// Find images similar to this indexed image instead of a text.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Number of results, 1 to 1000.
    #[serde(default = "default_top_k")]
    #[schema(default = 5, minimum = 1, maximum = 1000)]
    pub top_k: i64,
    /// Results to skip (paging), at most 100000.
    #[serde(default)]
    #[schema(default = 0, minimum = 0, maximum = 100000)]
    pub offset: usize,
    /// More terms to pull the search towards: texts, or `{"query"|"image_id", "weight"}`.
    /// With `query`/`image_id` and `negative`, at most 16 terms in all.
    #[serde(default)]
    #[schema(max_items = 15)]
    pub positive: Vec<QueryTerm>,
    /// Terms to push the search away from ("beach" but not "people").
    #[serde(default)]
    #[schema(max_items = 15)]
    pub negative: Vec<QueryTerm>,
    /// Conditions on photo metadata; only images meeting all of them are ranked.
    #[serde(default, deserialize_with = "object_only")]
    pub filters: SearchFilters,
    /// `relevance` (default), `taken_at` (oldest first) or `-taken_at` (newest first).
    #[serde(default)]
    pub sort: SearchSort,
    /// Rank every image exactly instead of through the approximate index (slower; for checking
    /// its recall). Filtered searches that few images pass and date orders are always exact.
    #[serde(default)]
    #[schema(default = false)]
    pub exact: bool,
}

/// A term of a combined query: a text, or an object naming a text or an indexed image.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum QueryTerm {
    Text(String),
    Object(#[serde(deserialize_with = "object_only")] QueryTermObject),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryTermObject {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub image_id: Option<String>,
    /// Default 1; in (0, 100].
    #[serde(default = "default_weight")]
    #[schema(default = 1.0, exclusive_minimum = 0, maximum = 100)]
    pub weight: f64,
}

fn default_weight() -> f64 {
    1.0
}

/// Filters of `POST /search` (and, as query parameters, of `GET /images`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchFilters {
    /// Taken on or after: a date (`2019-01-01`) or an RFC 3339 time. Undated images never match.
    #[serde(default)]
    pub taken_after: Option<String>,
    /// Taken on or before: a date (the whole day counts) or an RFC 3339 time.
    #[serde(default)]
    pub taken_before: Option<String>,
    /// Any of these, each a case-insensitive substring of "make model".
    #[serde(default)]
    pub camera: Option<OneOrMany>,
    /// A folder (absolute, or relative to an image root), matched on whole path components.
    #[serde(default)]
    pub folder: Option<String>,
    /// Any of these formats (`jpeg`, `png`, `webp`, `gif`, `bmp`, `tiff`).
    #[serde(default)]
    pub format: Option<OneOrMany>,
    /// Within `radius_km` of a point (great-circle distance).
    #[serde(default, deserialize_with = "optional_object")]
    pub near: Option<NearFilter>,
    /// Cosine similarity floor, -1 to 1.
    #[serde(default)]
    #[schema(minimum = -1, maximum = 1)]
    pub min_score: Option<f64>,
    /// Calibrated floor, strictly between 0 and 1: only results whose `probability` is at least
    /// this. For a single text `query` on a model with a sigmoid head (SigLIP with
    /// `score_head.json`); 422 otherwise.
    #[serde(default)]
    #[schema(exclusive_minimum = 0, exclusive_maximum = 1)]
    pub min_probability: Option<f64>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NearFilter {
    /// Latitude, -90 to 90.
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    /// Longitude, -180 to 180.
    #[schema(minimum = -180, maximum = 180)]
    pub lon: f64,
    /// Radius in kilometres, > 0.
    #[schema(exclusive_minimum = 0)]
    pub radius_km: f64,
}

/// Order of search results.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub enum SearchSort {
    #[default]
    #[serde(rename = "relevance")]
    Relevance,
    #[serde(rename = "taken_at")]
    TakenOldestFirst,
    #[serde(rename = "-taken_at")]
    TakenNewestFirst,
}

/// A camera as its EXIF names it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CameraInfo {
    pub make: Option<String>,
    pub model: Option<String>,
}

/// A place in signed decimal degrees.
#[derive(Debug, Serialize, ToSchema)]
pub struct LocationInfo {
    pub lat: f64,
    pub lon: f64,
}

/// What a photo's EXIF says; `null` where it says nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhotoInfo {
    /// Capture time: RFC 3339 when the camera recorded its UTC offset, else local time without offset.
    pub taken_at: Option<String>,
    pub camera: Option<CameraInfo>,
    pub lens: Option<String>,
    pub location: Option<LocationInfo>,
}

impl From<crate::store::PhotoMeta> for PhotoInfo {
    fn from(p: crate::store::PhotoMeta) -> Self {
        Self {
            taken_at: p.taken_at.map(|t| t.to_text()),
            camera: p.camera.map(|c| CameraInfo { make: c.make, model: c.model }),
            lens: p.lens,
            location: p.location.map(|l| LocationInfo { lat: l.lat, lon: l.lon }),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub id: String,
    pub path: String,
    /// Cosine similarity between the query and the image, in [-1, 1].
    pub score: f32,
    /// The model's calibrated probability that the text matches the image,
    /// `sigmoid(score * exp(logit_scale) + logit_bias)`: only for a single text `query` on a
    /// model with a sigmoid head (SigLIP with `score_head.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
    #[serde(flatten)]
    pub photo: PhotoInfo,
}

impl From<Hit> for SearchResult {
    fn from(hit: Hit) -> Self {
        Self { id: hit.record.id, path: hit.record.path, score: hit.score, probability: None, photo: hit.record.photo.into() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// In the requested order (best first by default).
    pub results: Vec<SearchResult>,
    /// A text had more than the model's 77 tokens; only the start was used.
    pub truncated: bool,
    /// More results follow this page (ask again with `offset` + `top_k`).
    #[serde(default)]
    pub more: bool,
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
    #[serde(flatten)]
    pub photo: PhotoInfo,
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
            photo: r.photo.into(),
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
    /// `embedded` (a local file) or `postgres`.
    pub backend: &'static str,
    /// The index file, or the database URL without its password.
    pub location: String,
    /// Whether the store answered its last check (every 2 s); `/ready` is 503 while it does not.
    pub reachable: bool,
    /// Why it cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The index generation searches are answered from (`main` until the first re-embed).
    pub generation: String,
    /// A re-embed in progress: the generation it builds, with which model, and its job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reembed: Option<ReembedInfo>,
}

impl IndexStatus {
    pub fn of(engine: &crate::engine::Engine) -> Self {
        let store = engine.store_status();
        let generation = engine.current().name.clone();
        // Only while one is loaded here: the pointer itself is read by `/reindex`.
        let reembed = engine.building().map(|_| engine.build_info()).and_then(|b| b.map(ReembedInfo::from));
        Self {
            images: engine.image_count(),
            backend: store.info.backend,
            location: store.info.location,
            reachable: store.reachable,
            error: store.error,
            generation,
            reembed,
        }
    }
}

/// A re-embed: the index generation it builds with another model, and the job filling it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReembedInfo {
    pub generation: String,
    pub model: String,
    /// `fp32` or `quantized`.
    pub precision: String,
    /// `GET /jobs/{job_id}` shows its progress; cancelling it abandons the re-embed.
    pub job_id: String,
    pub started_at: String,
}

impl From<crate::engine::generations::BuildInfo> for ReembedInfo {
    fn from(b: crate::engine::generations::BuildInfo) -> Self {
        Self { generation: b.generation, model: b.model, precision: b.precision, job_id: b.job_id, started_at: rfc3339(b.started_at) }
    }
}

/// Re-embed the index with another model (`POST /reindex`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReindexRequest {
    /// The model: a directory on the server in the Hugging Face ONNX layout. Default: the
    /// server's `--model`.
    pub model: Option<String>,
    /// Default: the server's `--precision`.
    pub precision: Option<PrecisionName>,
}

/// A model's precision, as `--precision` spells it.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionName {
    Fp32,
    Quantized,
}

/// One index generation, as `GET /reindex` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerationInfo {
    pub name: String,
    /// The model it was embedded with (empty when an older version made it).
    pub model: String,
    pub precision: String,
}

impl From<crate::store::GenerationRef> for GenerationInfo {
    fn from(g: crate::store::GenerationRef) -> Self {
        let (model, precision) = g.model.map_or_else(Default::default, |m| (m.source, m.precision));
        Self { name: g.name, model, precision }
    }
}

/// The index generations: the current one, the one kept for a rollback, the one being built.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerationsInfo {
    pub current: GenerationInfo,
    pub previous: Option<GenerationInfo>,
    pub reembed: Option<ReembedInfo>,
}

impl From<crate::store::Generations> for GenerationsInfo {
    fn from(g: crate::store::Generations) -> Self {
        Self {
            current: g.current.into(),
            previous: g.previous.map(Into::into),
            reembed: g.building.as_ref().map(|b| crate::engine::generations::BuildInfo::from(b).into()),
        }
    }
}

/// A re-embed just started.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReindexStarted {
    pub reembed: ReembedInfo,
    pub job: JobInfo,
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
#[into_params(parameter_in = Query)]
pub struct ListImagesQuery {
    /// Images to skip.
    #[serde(default)]
    #[param(default = 0, minimum = 0, maximum = 9223372036854775807_i64)]
    pub offset: usize,
    /// Page size, 1 to 1000.
    #[serde(default = "default_limit")]
    #[param(default = 50, minimum = 1, maximum = 1000)]
    pub limit: usize,
    /// Order: `-ingested_at` (newest first, the default), `ingested_at`, `taken_at` or `-taken_at`.
    #[serde(default)]
    #[param(inline)]
    pub sort: ListSort,
    /// As in `POST /search`: a date (`2019-01-01`) or an RFC 3339 time.
    #[param(min_length = 1)]
    pub taken_after: Option<String>,
    /// A date (the whole day counts) or an RFC 3339 time, not before `taken_after`.
    #[param(min_length = 1)]
    pub taken_before: Option<String>,
    /// Comma-separated cameras (any of).
    #[param(min_length = 1)]
    pub camera: Option<String>,
    /// A folder (absolute, or relative to an image root).
    #[param(min_length = 1)]
    pub folder: Option<String>,
    /// Comma-separated formats (any of).
    #[param(min_length = 1)]
    pub format: Option<String>,
    /// `lat,lon,radius_km`: latitude -90 to 90, longitude -180 to 180, radius > 0.
    #[param(pattern = "^[^,]+,[^,]+,[^,]+$")]
    pub near: Option<String>,
}

/// Listing order, by ingestion time.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub enum ListSort {
    #[default]
    #[serde(rename = "-ingested_at")]
    NewestFirst,
    #[serde(rename = "ingested_at")]
    OldestFirst,
    #[serde(rename = "taken_at")]
    TakenOldestFirst,
    #[serde(rename = "-taken_at")]
    TakenNewestFirst,
}

impl From<ListSort> for crate::store::SortBy {
    fn from(sort: ListSort) -> Self {
        match sort {
            ListSort::NewestFirst => crate::store::SortBy::IngestedDesc,
            ListSort::OldestFirst => crate::store::SortBy::IngestedAsc,
            ListSort::TakenOldestFirst => crate::store::SortBy::TakenAsc,
            ListSort::TakenNewestFirst => crate::store::SortBy::TakenDesc,
        }
    }
}

impl From<SearchSort> for crate::store::SortBy {
    fn from(sort: SearchSort) -> Self {
        match sort {
            SearchSort::Relevance => crate::store::SortBy::Relevance,
            SearchSort::TakenOldestFirst => crate::store::SortBy::TakenAsc,
            SearchSort::TakenNewestFirst => crate::store::SortBy::TakenDesc,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageInfo>,
    /// Images that pass the filters (all images without filters).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// More images follow this page.
    pub more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedImage {
    /// Always `deleted`.
    pub status: &'static str,
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedJob {
    /// Always `deleted`.
    pub status: &'static str,
    pub id: String,
}

fn default_thumbnail_size() -> u32 {
    256
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThumbnailQuery {
    /// Longest side wanted, in pixels, 32 to 1024. Rounded up to a cached size (64, 128, 256,
    /// 512 or 1024); never larger than the image.
    #[serde(default = "default_thumbnail_size")]
    #[param(default = 256, minimum = 32, maximum = 1024)]
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
#[schema(example = json!({"path": "album", "recursive": true}))]
pub struct IngestDirectoryRequest {
    /// Folder to index: absolute, or relative to an image root; must lie under an image root.
    #[schema(min_length = 1)]
    pub path: String,
    /// Descend into sub-folders.
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchImageQuery {
    /// Number of results, 1 to 1000.
    #[serde(default = "default_top_k")]
    #[param(default = 5, minimum = 1, maximum = 1000)]
    pub top_k: i64,
}

/// A directory ingest job (see `GET /jobs/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobInfo {
    pub id: String,
    /// `directory` (index a folder), `watch` (files the folder watcher saw change, or its
    /// reconcile pass found; `path` is the watched root), `photo_metadata` (read the EXIF of
    /// images indexed before it was read at ingest; its "files" are image ids) or `reembed`
    /// (embed every image with another model into a new index generation; "files" are image ids).
    pub kind: String,
    pub path: String,
    pub recursive: bool,
    /// `queued`, `running`, `cancelling`, `completed`, `cancelled` or `failed`.
    pub state: String,
    pub total: usize,
    pub done: usize,
    pub indexed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Files per second: the current run's while running, the job's average once finished.
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
        let kind = serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        Self {
            id: r.id,
            kind,
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

fn default_threshold() -> f64 {
    0.95
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DuplicatesQuery {
    /// Cosine similarity at or above which two pictures are "similar", 0.5 to 1.
    #[serde(default = "default_threshold")]
    #[param(default = 0.95, minimum = 0.5, maximum = 1.0)]
    pub threshold: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicateGroupInfo {
    /// `identical`: one picture at several paths (same bytes, or same pixels after decoding);
    /// `similar`: distinct pictures with close embeddings.
    pub kind: &'static str,
    /// The lowest similarity that joined the group (1 for identical groups).
    pub min_score: f32,
    /// One entry per path (the same id appears once per path it was seen at).
    pub images: Vec<ImageInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicatesResponse {
    pub threshold: f32,
    pub groups: Vec<DuplicateGroupInfo>,
}

impl From<crate::store::DuplicateGroup> for DuplicateGroupInfo {
    fn from(g: crate::store::DuplicateGroup) -> Self {
        let kind = match g.kind {
            crate::store::DuplicateKind::Identical => "identical",
            crate::store::DuplicateKind::Similar => "similar",
        };
        let images = g
            .members
            .into_iter()
            .map(|(record, path)| {
                let mut info = ImageInfo::from(record);
                info.path = path;
                info
            })
            .collect();
        Self { kind, min_score: g.min_score, images }
    }
}
