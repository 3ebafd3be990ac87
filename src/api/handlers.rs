//! HTTP handlers: parse, call the engine, shape the answer. No model or storage details here.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::dto::*;
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::embed::ModelState;
use crate::engine;

fn model_status(state: &AppState) -> ModelStatus {
    let options = &state.engine.embedder().options;
    let current = state.engine.embedder().state();
    let (dim, error) = match &current {
        ModelState::Ready(model) => (Some(model.dim()), None),
        ModelState::Failed(msg) => (None, Some(msg.clone())),
        ModelState::Loading => (None, None),
    };
    ModelStatus { state: current.name(), source: options.source.clone(), precision: options.precision.as_str(), dim, error }
}

/// Liveness: answers at once, even while the model loads, and says what the model is doing.
#[utoipa::path(get, path = "/health", tag = "status", responses((status = 200, body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> ApiJson<HealthResponse> {
    ApiJson(HealthResponse {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        model: model_status(&state),
        index: IndexStatus { images: state.engine.image_count() },
    })
}

/// Readiness: 200 once the model is loaded, 503 before (or if loading failed).
#[utoipa::path(get, path = "/ready", tag = "status", responses(
    (status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let model = model_status(&state);
    let status = if model.state == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = HealthResponse {
        status: if status.is_success() { "ready" } else { "not_ready" },
        version: env!("CARGO_PKG_VERSION"),
        model,
        index: IndexStatus { images: state.engine.image_count() },
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
    (status = 503, description = "Model loading or overloaded", body = ErrorBody)))]
pub async fn ingest_image(State(state): State<AppState>, ApiJson(req): ApiJson<IngestImageRequest>) -> Result<ApiJson<IngestImageResponse>, ApiError> {
    let ingested = state.engine.ingest_path(&req.path).await?;
    Ok(ApiJson(IngestImageResponse { status: "ok", id: ingested.record.id, path: ingested.record.path, duplicate: ingested.duplicate }))
}

/// Top-k images by cosine similarity to a text (`query`) or to an indexed image (`image_id`).
#[utoipa::path(post, path = "/search", tag = "search", request_body = SearchRequest, responses(
    (status = 200, body = SearchResponse),
    (status = 404, description = "Unknown image_id", body = ErrorBody),
    (status = 422, description = "Empty or over-long query, bad top_k", body = ErrorBody),
    (status = 503, description = "Model loading or overloaded", body = ErrorBody)))]
pub async fn search(State(state): State<AppState>, ApiJson(req): ApiJson<SearchRequest>) -> Result<ApiJson<SearchResponse>, ApiError> {
    let (hits, truncated) = match (req.query, req.image_id) {
        (Some(query), None) => {
            let found = state.engine.search_text(&query, req.top_k).await?;
            (found.hits, found.truncated)
        }
        (None, Some(id)) => (state.engine.search_similar(&id, req.top_k).await?, false),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "give either `query` or `image_id`, not both"))
        }
        (None, None) => return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "missing field `query`")),
    };
    Ok(ApiJson(SearchResponse { results: hits.into_iter().map(SearchResult::from).collect(), truncated }))
}

/// Metadata of an indexed image.
#[utoipa::path(get, path = "/images/{id}", tag = "images", params(("id" = String, Path, description = "Image id")), responses(
    (status = 200, body = ImageInfo), (status = 404, body = ErrorBody)))]
pub async fn image_info(State(state): State<AppState>, Path(id): Path<String>) -> Result<ApiJson<ImageInfo>, ApiError> {
    Ok(ApiJson(state.engine.image(&id)?.into()))
}

/// The bytes of an indexed image, with its media type. Only indexed images are served.
#[utoipa::path(get, path = "/images/{id}/file", tag = "images", params(("id" = String, Path, description = "Image id")), responses(
    (status = 200, description = "The image file", content_type = "image/*"), (status = 404, body = ErrorBody)))]
pub async fn image_file(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (record, path) = state.engine.image_file(&id)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "image_file_gone", format!("the file of image {id} is no longer readable")))?;
    Ok((
        [
            (header::CONTENT_TYPE, engine::content_type(&record.format)),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        Body::from(bytes),
    )
        .into_response())
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
