//! Every error the API can answer with, mapped to a status and a stable code. The match over
//! engine errors lists each variant with no catch-all arm, so a new error cannot ship without
//! a status.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::embed::{EmbedError, ImageError};
use crate::engine::EngineError;
use crate::store::StoreError;

/// `{"error": {"code", "message"}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `path_outside_roots`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The request's `X-Request-Id` (also on the response's header), to find it in the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds after which a retry may succeed (503s).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// Adds `Retry-After` (for 503s).
    pub fn retry(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // 503s (loading, overload) are expected operating states, not faults.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(code = self.code, message = %self.message, "request refused");
        } else if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, message = %self.message, "request failed");
        }
        let request_id = super::request_id::current();
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message, request_id } };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match &rejection {
            JsonRejection::JsonDataError(_) => "invalid_request",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "invalid_request",
        };
        Self::new(rejection.status(), code, rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", rejection.body_text())
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(rejection: axum::extract::multipart::MultipartRejection) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected multipart/form-data: {}", rejection.body_text()),
        )
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(err: axum::extract::multipart::MultipartError) -> Self {
        let status = err.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "invalid_request" };
        Self::new(status, code, err.body_text())
    }
}

impl From<ImageError> for ApiError {
    fn from(err: ImageError) -> Self {
        let message = err.to_string();
        match err {
            ImageError::UnsupportedFormat => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported_image", message),
            ImageError::NotBuiltIn(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported_image", message),
            ImageError::NoPreview => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image", message),
            ImageError::Corrupt(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image", message),
            ImageError::TooManyPixels { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "image_too_large", message),
            ImageError::TooManyBytes { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", message),
            ImageError::Empty => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image", message),
        }
    }
}

impl From<EmbedError> for ApiError {
    fn from(err: EmbedError) -> Self {
        let message = err.to_string();
        match err {
            EmbedError::NotReady => Self::new(StatusCode::SERVICE_UNAVAILABLE, "model_loading", message).retry(5),
            EmbedError::LoadFailed(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "model_failed", message),
            EmbedError::Overloaded(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry(1),
            EmbedError::Image(image) => image.into(),
            EmbedError::Tokenizer(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message),
            EmbedError::Inference(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "inference_failed", message),
            EmbedError::WorkerGone => Self::new(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", message).retry(5),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::ModelMismatch { .. } => Self::new(StatusCode::CONFLICT, "model_mismatch", message),
            StoreError::Locked { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, "index_locked", message).retry(5),
            StoreError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message).retry(5),
            StoreError::StorageFull(_) => Self::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", message).retry(30),
            StoreError::TooManyJobs { .. } => Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_jobs", message).retry(10),
            StoreError::DimensionMismatch { .. }
            | StoreError::Database(_)
            | StoreError::Corrupt(_)
            | StoreError::Open { .. }
            | StoreError::Setup(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "index_error", message),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let message = err.to_string();
        match err {
            EngineError::PathOutsideRoots(_) => Self::new(StatusCode::FORBIDDEN, "path_outside_roots", message),
            EngineError::FileNotFound(_) => Self::new(StatusCode::NOT_FOUND, "file_not_found", message),
            EngineError::InvalidPath(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_path", message),
            EngineError::Unreadable { .. } => Self::new(StatusCode::FORBIDDEN, "file_unreadable", message),
            EngineError::ImageNotFound(_) => Self::new(StatusCode::NOT_FOUND, "image_not_found", message),
            EngineError::ImageFileGone { .. } => Self::new(StatusCode::NOT_FOUND, "image_file_gone", message),
            EngineError::JobNotFound(_) => Self::new(StatusCode::NOT_FOUND, "job_not_found", message),
            EngineError::JobUnfinished { .. } => Self::new(StatusCode::CONFLICT, "job_unfinished", message),
            EngineError::Write { .. } => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "write_failed", message),
            EngineError::DiskFull { .. } => Self::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", message).retry(30),
            EngineError::EmptyQuery => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_query", message),
            EngineError::QueryTooLong { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "query_too_long", message),
            EngineError::InvalidTopK { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_top_k", message),
            EngineError::InvalidSearch(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message),
            EngineError::Image(image) => image.into(),
            EngineError::Embed(embed) => embed.into(),
            EngineError::Store(store) => store.into(),
            EngineError::ReembedRunning { .. } => Self::new(StatusCode::CONFLICT, "reembed_running", message),
            EngineError::NothingToReembed(_) => Self::new(StatusCode::CONFLICT, "nothing_to_reembed", message),
            EngineError::CannotReembed(_) => Self::new(StatusCode::CONFLICT, "cannot_reembed", message),
            EngineError::GenerationChanged => Self::new(StatusCode::SERVICE_UNAVAILABLE, "index_switching", message).retry(1),
            EngineError::Internal(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}
