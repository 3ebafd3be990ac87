//! The HTTP room: router, handlers, wire types, error → status mapping, metrics and docs.
//! The only module that knows HTTP; it talks to the rest through [`crate::engine::Engine`].

pub mod docs;
pub mod dto;
pub mod error;
pub mod handlers;
mod observe;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: PrometheusHandle,
}

/// The whole HTTP API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics))
        .route("/ingest/image", post(handlers::ingest_image))
        .route("/search", post(handlers::search))
        .route("/images/{id}", get(handlers::image_info))
        .route("/images/{id}/file", get(handlers::image_file))
        .merge(docs::routes())
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(observe::record))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(observe::panic_response))
        .with_state(state)
}
