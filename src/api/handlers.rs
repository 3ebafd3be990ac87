//! HTTP handlers: parse, call the engine, shape the answer. No model or storage details here.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::dto::*;
use super::error::{ApiError, ErrorBody};
use super::filters;
use super::AppState;
use crate::engine::{EngineError, SearchSpec, Term, Weighted};

fn model_status(state: &AppState) -> ModelStatus {
    let model = state.engine.model_info();
    ModelStatus { state: model.state, source: model.source, precision: model.precision, dim: model.dim, error: model.error }
}

/// Liveness: answers at once, even while the model loads, and says what the model is doing.
#[utoipa::path(get, path = "/health", tag = "status", responses((status = 200, body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> ApiJson<HealthResponse> {
    ApiJson(HealthResponse {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        model: model_status(&state),
        index: IndexStatus::of(&state.engine),
    })
}

/// Readiness: 200 once the model is loaded and the store answers; 503 before the model is
/// loaded (or if loading failed) and while the store's database cannot be reached.
#[utoipa::path(get, path = "/ready", tag = "status", responses(
    (status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let model = model_status(&state);
    let index = IndexStatus::of(&state.engine);
    let status = if model.state == "ready" && index.reachable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = HealthResponse {
        status: if status.is_success() { "ready" } else { "not_ready" },
        version: env!("CARGO_PKG_VERSION"),
        model,
        index,
    };
    (status, axum::Json(body)).into_response()
}

/// Index one image file that lies under an image root. Re-ingesting the same content returns the
/// existing entry.
#[utoipa::path(post, path = "/ingest/image", tag = "ingest", request_body = IngestImageRequest, responses(
    (status = 200, body = IngestImageResponse),
    (status = 400, description = "Invalid path", body = ErrorBody),
    (status = 403, description = "Path outside the image roots", body = ErrorBody),
    (status = 404, description = "No such file", body = ErrorBody),
    (status = 413, description = "Body or image file too large", body = ErrorBody),
    (status = 422, description = "Not an image, corrupt, or too many pixels", body = ErrorBody),
    (status = 503, description = "Model loading, overloaded, or the request deadline passed (`timeout`)", body = ErrorBody)))]
pub async fn ingest_image(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<IngestImageRequest>,
) -> Result<ApiJson<IngestImageResponse>, ApiError> {
    let ingested = state.engine.ingest_path(&req.path).await?;
    let duplicate = !ingested.is_new();
    Ok(ApiJson(IngestImageResponse { status: "ok", id: ingested.record.id, path: ingested.record.path, duplicate }))
}

/// Top-k images by cosine similarity to a text (`query`) or to an indexed image (`image_id`),
/// optionally combined with more `positive` and `negative` terms, filtered on photo metadata,
/// sorted and paged. The search vector is `normalize(Σ w·u over positives − Σ w·u over
/// negatives)` of unit embeddings; scores are cosine similarities to it.
#[utoipa::path(post, path = "/search", tag = "search", request_body = SearchRequest, responses(
    (status = 200, body = SearchResponse),
    (status = 404, description = "Unknown image_id", body = ErrorBody),
    (status = 415, description = "Not a JSON body", body = ErrorBody),
    (status = 422, description = "Empty or over-long query, bad top_k, offset, weight or filter (the message names the field)", body = ErrorBody),
    (status = 503, description = "Model loading, overloaded, or the request deadline passed (`timeout`)", body = ErrorBody)))]
pub async fn search(State(state): State<AppState>, ApiJson(req): ApiJson<SearchRequest>) -> Result<ApiJson<SearchResponse>, ApiError> {
    let main = match (req.query, req.image_id) {
        (Some(query), None) => Term::Text(query),
        (None, Some(id)) => Term::Image(id),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "give either `query` or `image_id`, not both"))
        }
        (None, None) => return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "missing field `query`")),
    };
    // A sigmoid head is calibrated for one text against one image, not for a mixed vector.
    let single_text = matches!(main, Term::Text(_)) && req.positive.is_empty() && req.negative.is_empty();
    let head_now = || if single_text { state.engine.embedder().model().ok().and_then(|m| m.family().score_head) } else { None };
    let mut positive = vec![Weighted { term: main, weight: 1.0 }];
    positive.extend(req.positive.into_iter().map(|t| weighted("positive", t)).collect::<Result<Vec<_>, _>>()?);
    let negative = req.negative.into_iter().map(|t| weighted("negative", t)).collect::<Result<Vec<_>, _>>()?;
    let min_probability = req.filters.min_probability;
    let mut filter = filters::to_filter(&state.engine, req.filters)?;
    if let Some(p) = min_probability {
        // While the model loads there is no head yet: answer 503 as the search would.
        state.engine.ensure_model_ready()?;
        filters::add_min_probability(&mut filter, p, head_now().as_ref(), single_text)?;
    }
    let head = head_now();
    let spec = SearchSpec { positive, negative, filter, sort: req.sort.into(), offset: req.offset, top_k: req.top_k, exact: req.exact };
    let found = state.engine.search(spec).await?;
    let with_probability = |hit| {
        let mut result = SearchResult::from(hit);
        result.probability = head.map(|h| h.probability(result.score));
        result
    };
    Ok(ApiJson(SearchResponse {
        results: found.hits.into_iter().map(with_probability).collect(),
        truncated: found.truncated,
        more: found.more,
    }))
}

fn weighted(list: &str, term: QueryTerm) -> Result<Weighted, ApiError> {
    let bad = |why: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", format!("{list}: {why}"));
    let (term, weight) = match term {
        QueryTerm::Text(text) => return Ok(Weighted { term: Term::Text(text), weight: 1.0 }),
        QueryTerm::Object(QueryTermObject { query: Some(text), image_id: None, weight }) => (Term::Text(text), weight),
        QueryTerm::Object(QueryTermObject { query: None, image_id: Some(id), weight }) => (Term::Image(id), weight),
        QueryTerm::Object(_) => return Err(bad("each term needs exactly one of `query` or `image_id`")),
    };
    // Checked at full precision: 100.00000000000001 would round to 100 as an f32.
    if !(weight > 0.0 && weight <= 100.0) {
        return Err(bad(&format!("weights must be in (0, 100], got {weight}")));
    }
    Ok(Weighted { term, weight: weight as f32 })
}

/// Duplicates: identical pictures (the same content at several paths, or the same pixels in
/// other bytes) and similar ones (cosine at or above `threshold`), in separate groups.
#[utoipa::path(get, path = "/duplicates", tag = "images", params(DuplicatesQuery), responses(
    (status = 200, body = DuplicatesResponse), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn duplicates(
    State(state): State<AppState>,
    query: Result<Query<DuplicatesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<DuplicatesResponse>, ApiError> {
    let Query(q) = query?;
    // Checked at full precision: 1.0000000000000002 would round to 1 as the f32 the engine uses.
    if !(0.5..=1.0).contains(&q.threshold) {
        let message = format!("threshold must be between 0.5 and 1, got {}", q.threshold);
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message));
    }
    let threshold = q.threshold as f32;
    let groups = state.engine.duplicates(threshold).await?;
    Ok(ApiJson(DuplicatesResponse { threshold, groups: groups.into_iter().map(DuplicateGroupInfo::from).collect() }))
}

/// Metadata of an indexed image.
#[utoipa::path(get, path = "/images/{id}", tag = "images", params(("id" = String, Path, description = "Image id")), responses(
    (status = 200, body = ImageInfo), (status = 404, body = ErrorBody)))]
pub async fn image_info(State(state): State<AppState>, Path(id): Path<String>) -> Result<ApiJson<ImageInfo>, ApiError> {
    Ok(ApiJson(state.engine.image(&id)?.into()))
}

/// Deepest offset of `GET /images` (documented in [`ListImagesQuery`]).
const MAX_LIST_OFFSET: usize = i64::MAX as usize;

/// A page of indexed images.
#[utoipa::path(get, path = "/images", tag = "images", params(ListImagesQuery), responses(
    (status = 200, body = ImageList),
    (status = 422, description = "`offset` or `limit` out of bounds, or a bad filter (the message names the parameter)", body = ErrorBody)))]
pub async fn list_images(
    State(state): State<AppState>,
    query: Result<Query<ListImagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<ImageList>, ApiError> {
    let Query(q) = query?;
    // The PostgreSQL store's OFFSET is a signed 64-bit integer.
    if q.offset > MAX_LIST_OFFSET {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_offset",
            format!("offset must be at most {MAX_LIST_OFFSET}, got {}", q.offset),
        ));
    }
    if !(1..=1000).contains(&q.limit) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_limit",
            format!("limit must be between 1 and 1000, got {}", q.limit),
        ));
    }
    let near = q.near.as_deref().map(filters::parse_near_param).transpose()?;
    let split = |list: Option<String>| list.map(|l| OneOrMany::Many(l.split(',').map(str::to_string).collect()));
    let wanted = SearchFilters {
        taken_after: q.taken_after,
        taken_before: q.taken_before,
        camera: split(q.camera),
        folder: q.folder,
        format: split(q.format),
        near,
        min_score: None,
        min_probability: None,
    };
    let filter = filters::to_filter(&state.engine, wanted)?;
    let engine = state.engine.clone();
    let (offset, limit, sort) = (q.offset, q.limit, q.sort.into());
    let page = tokio::task::spawn_blocking(move || engine.list_images(&filter, sort, offset, limit))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(ApiJson(ImageList {
        images: page.items.into_iter().map(ImageInfo::from).collect(),
        total: page.total.unwrap_or_default(),
        offset,
        limit,
        more: page.more,
    }))
}

/// Remove an image from the index (and its thumbnails; for uploads, the stored file).
#[utoipa::path(delete, path = "/images/{id}", tag = "images", params(("id" = String, Path, description = "Image id")), responses(
    (status = 200, body = DeletedImage), (status = 404, body = ErrorBody)))]
pub async fn delete_image(State(state): State<AppState>, Path(id): Path<String>) -> Result<ApiJson<DeletedImage>, ApiError> {
    let record = state.engine.delete_image(&id).await?;
    Ok(ApiJson(DeletedImage { status: "deleted", id: record.id }))
}

/// Upload one or more images (multipart parts named `files`); each is stored content-addressed
/// in the data directory and indexed. Failures are reported per file.
#[utoipa::path(post, path = "/ingest/upload", tag = "ingest", request_body(content_type = "multipart/form-data", description = "One or more parts named `files`"), responses(
    (status = 200, description = "Each file's outcome; a file that is not an image is an `error` entry, not a refusal", body = UploadResponse),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 422, description = "No part named `files` or `file` (`no_files`), or a part of another name (`unexpected_part`)", body = ErrorBody),
    (status = 503, description = "Model loading, too many heavy requests at once (`overloaded`, with `Retry-After`), or the upload deadline passed (`timeout`)", body = ErrorBody)))]
pub async fn ingest_upload(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<ApiJson<UploadResponse>, ApiError> {
    check_declared_length(&headers, state.limits.upload)?;
    let mut multipart = multipart?;
    let answer = upload_parts(&state, &mut multipart).await;
    if answer.is_err() {
        drain(&mut multipart).await;
    }
    answer
}

/// The parts of an upload, stored and indexed one by one.
async fn upload_parts(state: &AppState, multipart: &mut Multipart) -> Result<ApiJson<UploadResponse>, ApiError> {
    // Fail fast (503) rather than accept a large upload the model cannot process.
    state.engine.ensure_model_ready()?;
    let mut results = Vec::new();
    let mut parts = 0;
    while let Some(field) = multipart.next_field().await? {
        parts += 1;
        if parts > state.limits.upload_parts {
            // Files before this one are indexed; sending them again only finds them known.
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_parts",
                format!("an upload may carry at most {} parts", state.limits.upload_parts),
            ));
        }
        expect_image_part(&field)?;
        let filename = field.file_name().unwrap_or("upload").to_string();
        // Streamed to disk as it arrives: a large upload is never held in memory whole.
        let mut sink = state.engine.upload_sink()?;
        let mut field = field;
        while let Some(chunk) = field.chunk().await? {
            if !sink.write(chunk).await {
                break;
            }
        }
        let received = sink.finish().await;
        let result = match async { state.engine.ingest_upload(&filename, received?).await }.await {
            Ok(ingested) => {
                let duplicate = !ingested.is_new();
                UploadResult { filename, status: "ok", id: Some(ingested.record.id), duplicate: Some(duplicate), error: None }
            }
            Err(e) => {
                let e = ApiError::from(e);
                if e.status.is_server_error() && e.status != StatusCode::INTERNAL_SERVER_ERROR {
                    return Err(e);
                }
                UploadResult {
                    filename,
                    status: "error",
                    id: None,
                    duplicate: None,
                    error: Some(super::error::ErrorDetail { code: e.code, message: e.message, request_id: None }),
                }
            }
        };
        results.push(result);
    }
    if results.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_files", "no file parts named `files` in the upload"));
    }
    Ok(ApiJson(UploadResponse { results }))
}

/// Reads and drops what a refused upload still carries (the rest of the current part and the
/// parts after it, bounded by the body limit): an answer sent while the client is still
/// sending its body reaches it as a reset connection instead of the JSON error.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// Refuses an upload whose declared size is over the limit before reading any of it.
fn check_declared_length(headers: &axum::http::HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("upload of {length} bytes is over the limit of {limit} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Search with an uploaded image (multipart part `file`) without indexing it.
#[utoipa::path(post, path = "/search/image", tag = "search", params(SearchImageQuery), request_body(content_type = "multipart/form-data", description = "A part named `file`"), responses(
    (status = 200, body = SearchResponse), (status = 415, body = ErrorBody),
    (status = 422, description = "Not an image, or too many pixels; no image part (`no_files`), two (`too_many_files`) or another part (`unexpected_part`); `top_k` out of bounds", body = ErrorBody),
    (status = 503, description = "Model loading, too many heavy requests at once (`overloaded`, with `Retry-After`), or the upload deadline passed (`timeout`)", body = ErrorBody)))]
pub async fn search_image(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    query: Result<Query<SearchImageQuery>, axum::extract::rejection::QueryRejection>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<ApiJson<SearchResponse>, ApiError> {
    let Query(q) = query?;
    check_declared_length(&headers, state.limits.upload)?;
    let mut multipart = multipart?;
    let image = image_part(&mut multipart).await;
    if image.is_err() {
        drain(&mut multipart).await;
    }
    let hits = state.engine.search_by_image(image?, q.top_k).await?;
    Ok(ApiJson(SearchResponse { results: hits.into_iter().map(SearchResult::from).collect(), truncated: false, more: false }))
}

/// The one image part of an image search.
async fn image_part(multipart: &mut Multipart) -> Result<axum::body::Bytes, ApiError> {
    let mut image = None;
    while let Some(field) = multipart.next_field().await? {
        expect_image_part(&field)?;
        if image.is_some() {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too_many_files", "a search takes one image part"));
        }
        image = Some(field.bytes().await?);
    }
    image.ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_files", "no part named `file` in the upload"))
}

/// Names an image part may have in an upload or an image search.
const IMAGE_PARTS: [&str; 2] = ["files", "file"];

/// Refuses a part that is not an image part, as unknown JSON fields are: a misspelt part name
/// must not look like an upload of nothing.
fn expect_image_part(field: &axum::extract::multipart::Field<'_>) -> Result<(), ApiError> {
    match field.name() {
        Some(name) if IMAGE_PARTS.contains(&name) => Ok(()),
        name => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unexpected_part",
            format!("unexpected part `{}`: images go in parts named `files` or `file`", name.unwrap_or_default()),
        )),
    }
}

/// Index a whole folder in the background. Answers 202 with the job at once.
#[utoipa::path(post, path = "/ingest/directory", tag = "ingest", request_body = IngestDirectoryRequest, responses(
    (status = 202, body = JobInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 429, description = "Too many jobs queued or running (`too_many_jobs`, with Retry-After)", body = ErrorBody)))]
pub async fn ingest_directory(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<IngestDirectoryRequest>,
) -> Result<(StatusCode, ApiJson<JobInfo>), ApiError> {
    let job = state.jobs.submit(&req.path, req.recursive).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(job.into())))
}

/// Directory jobs, newest first.
#[utoipa::path(get, path = "/jobs", tag = "ingest", responses((status = 200, body = JobList)))]
pub async fn list_jobs(State(state): State<AppState>) -> Result<ApiJson<JobList>, ApiError> {
    Ok(ApiJson(JobList { jobs: state.jobs.list().await?.into_iter().map(JobInfo::from).collect() }))
}

/// A job's state, progress, rate, ETA and per-file failures.
#[utoipa::path(get, path = "/jobs/{id}", tag = "ingest", params(("id" = String, Path, description = "Job id")), responses((status = 200, body = JobInfo), (status = 404, body = ErrorBody)))]
pub async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<ApiJson<JobInfo>, ApiError> {
    Ok(ApiJson(state.jobs.get(&id).await?.into()))
}

/// Cancel a job: a queued one at once, a running one after its files in flight (the rest are
/// not ingested). Cancelling a finished job changes nothing and answers it as it is.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "ingest", params(("id" = String, Path, description = "Job id")), responses(
    (status = 200, description = "The job, `cancelling` or `cancelled` (or as it was, when already finished)", body = JobInfo),
    (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody)))]
pub async fn cancel_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<ApiJson<JobInfo>, ApiError> {
    Ok(ApiJson(state.jobs.cancel(&id).await?.into()))
}

/// Delete a finished job's record (its progress and failures). The images it indexed stay.
/// A job still queued, running or cancelling is refused with 409: cancel it first.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "ingest", params(("id" = String, Path, description = "Job id")), responses(
    (status = 200, body = DeletedJob),
    (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    (status = 409, description = "The job is not finished yet (`job_unfinished`): cancel it first", body = ErrorBody)))]
pub async fn delete_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<ApiJson<DeletedJob>, ApiError> {
    state.jobs.delete(&id).await?;
    Ok(ApiJson(DeletedJob { status: "deleted", id }))
}

/// The index generations: the one searches are answered from (and its model), the one kept for
/// a rollback, and a re-embed in progress.
#[utoipa::path(get, path = "/reindex", tag = "index", responses((status = 200, body = GenerationsInfo)))]
pub async fn generations(State(state): State<AppState>) -> Result<ApiJson<GenerationsInfo>, ApiError> {
    Ok(ApiJson(state.engine.generations()?.into()))
}

/// Re-embed every indexed image with another model into a new index generation, as a job
/// (`GET /jobs/{id}` shows progress). Searches are answered from the current generation with
/// its own model until the new one is complete, then it becomes current in one step; the old
/// one is kept for `POST /reindex/rollback`. Ingests and deletes meanwhile are carried over.
#[utoipa::path(post, path = "/reindex", tag = "index", request_body = ReindexRequest, responses(
    (status = 202, body = ReindexStarted),
    (status = 400, description = "Not JSON, an unknown field, or an unknown precision (`invalid_json`)", body = ErrorBody),
    (status = 409, description = "A re-embed is running (`reembed_running`), or the index already uses that model (`nothing_to_reembed`)", body = ErrorBody),
    (status = 422, description = "`model` is not a directory on the server holding a model (`cannot_reembed`)", body = ErrorBody)))]
pub async fn reindex(State(state): State<AppState>, body: axum::body::Bytes) -> Result<(StatusCode, ApiJson<ReindexStarted>), ApiError> {
    // The body is optional: no body re-embeds with the server's own `--model`.
    let request: ReindexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReindexRequest { model: None, precision: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("request body: {e}")))?
    };
    let mut target = (*state.engine.embedder().options).clone();
    if let Some(model) = request.model.filter(|m| !m.trim().is_empty()) {
        // A directory only: a request must not make the server download from the Hub (that
        // is what `serve --model REPO --reembed` is for, by whoever runs the server).
        if !std::path::Path::new(&model).is_dir() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "cannot_reembed",
                format!("model `{model}` is not a directory on the server; give the directory of a model in the Hugging Face ONNX layout"),
            ));
        }
        target.source = model;
    }
    if let Some(precision) = request.precision {
        target.precision = match precision {
            PrecisionName::Fp32 => crate::embed::Precision::Fp32,
            PrecisionName::Quantized => crate::embed::Precision::Quantized,
        };
    }
    // Checked before anything is recorded: a model that does not load must not start a build.
    let check = target.clone();
    let files = tokio::task::spawn_blocking(move || crate::embed::model_files::resolve(&check.source, check.precision))
        .await
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    files.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_reembed", format!("model: {e}")))?;
    let (job, build) = state.jobs.reembed(target).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(ReindexStarted { reembed: build.into(), job: job.into() })))
}

/// Make the index generation before the last switch current again (and the current one the
/// previous): one step, no re-embedding. Its model is loaded first; searches are answered by the
/// current generation until it is ready.
#[utoipa::path(post, path = "/reindex/rollback", tag = "index", responses(
    (status = 200, body = GenerationsInfo),
    (status = 409, description = "No previous generation (`cannot_reembed`) or a re-embed running (`reembed_running`)", body = ErrorBody)))]
pub async fn rollback(State(state): State<AppState>) -> Result<ApiJson<GenerationsInfo>, ApiError> {
    state.engine.rollback().await?;
    Ok(ApiJson(state.engine.generations()?.into()))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "status", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
}
