//! Request metrics and logs, labelled by the matched route template (not the raw path, which
//! would give every image id its own series).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::metrics;

pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::http_request(&route, method.as_str(), status, elapsed);
    tracing::debug!(%method, route, status, ms = elapsed.as_secs_f64() * 1e3, "request");
    response
}

/// The request span: every log line inside carries the request id and, once the access guard
/// has identified the caller, the key's name (never the key). At ERROR level so the fields show
/// whatever the log filter (a span filtered out would drop them from the lines inside it).
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request.headers().get(super::request_id::X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::error_span!(
        "request",
        method = %request.method(),
        uri = %request.uri().path(),
        request_id = %id,
        key = tracing::field::Empty,
    )
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
}
