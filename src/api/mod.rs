//! The HTTP room: router, handlers, wire types, error → status mapping, metrics and docs.
//! The only module that knows HTTP; it talks to the rest through [`crate::engine::Engine`].

pub mod access;
pub mod docs;
pub mod dto;
pub mod error;
pub mod files;
mod filters;
pub mod handlers;
pub mod limits;
mod observe;
pub mod overload;
pub mod request_id;
pub mod security;
pub mod serve;
mod web;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::jobs::JobManager;
use crate::engine::Engine;
pub use overload::ServingLimits;
pub use security::Security;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub jobs: Arc<JobManager>,
    pub metrics: PrometheusHandle,
    pub limits: BodyLimits,
    pub serving: ServingLimits,
    /// Keys, rate limits, allowed hosts and origins.
    pub security: Security,
}

/// Request size limits.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// JSON bodies.
    pub json: usize,
    /// Multipart uploads (all files of one request).
    pub upload: usize,
    /// Parts of one multipart upload: each file is stored, decoded and answered for, so a body
    /// of a hundred thousand tiny parts would keep a worker busy for minutes.
    pub upload_parts: usize,
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let (limits, serving) = (state.limits, state.serving);
    let security = state.security.clone();
    // Heavy routes share one budget of requests in flight; see `overload`.
    let heavy = from_fn_with_state(overload::HeavyGate::new(serving.max_heavy_requests), overload::shed);
    let uploads = Router::new()
        .route("/ingest/upload", post(handlers::ingest_upload))
        .route("/search/image", post(handlers::search_image))
        .layer(DefaultBodyLimit::max(limits.upload))
        .layer(heavy.clone())
        // The body is read inside the handler, so a slow upload counts against this deadline.
        .layer(from_fn_with_state(serving.upload_timeout, overload::deadline));
    // Comparing every pair of images takes minutes at 100k images (BENCHMARKS.md): a heavy
    // route with the long deadline, not the ordinary one.
    let long = Router::new()
        .route("/duplicates", get(handlers::duplicates))
        .layer(heavy)
        .layer(from_fn_with_state(serving.upload_timeout, overload::deadline));
    // Answered from memory at once: no deadline (`docs::WITHOUT_DEADLINE` documents no 503).
    let status = Router::new()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics));
    let router = Router::new()
        .route("/ingest/image", post(handlers::ingest_image))
        .route("/ingest/directory", post(handlers::ingest_directory))
        .route("/jobs", get(handlers::list_jobs))
        .route("/jobs/{id}", get(handlers::get_job).delete(handlers::delete_job))
        .route("/jobs/{id}/cancel", post(handlers::cancel_job))
        .route("/reindex", get(handlers::generations).post(handlers::reindex))
        .route("/reindex/rollback", post(handlers::rollback))
        .route("/search", post(handlers::search))
        .route("/images", get(handlers::list_images))
        .route("/images/{id}", get(handlers::image_info).delete(handlers::delete_image))
        .route("/images/{id}/file", get(files::image_file))
        // Not a heavy route: a cached thumbnail is a small file read, requests for one being
        // rendered wait for that render, and renders take the engine's decode permits.
        .route("/images/{id}/thumbnail", get(files::image_thumbnail))
        .layer(DefaultBodyLimit::max(limits.json))
        .layer(from_fn_with_state(serving.request_timeout, overload::deadline))
        .merge(status)
        .merge(uploads)
        .merge(long)
        .merge(docs::routes(docs::DocSettings::of(&security)))
        .merge(web::routes())
        // Per route (they read the matched route): the rate limit below the guard that names
        // the caller. The 404 fallback, added after, is open.
        .layer(from_fn_with_state(security.rate.clone(), limits::throttle))
        .layer(from_fn_with_state(security.access.clone(), access::guard))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn(observe::record))
        .layer(axum::middleware::from_fn(security::headers));
    // Outside the guard, so a listed origin's preflight is answered without a key.
    let router = match security.cors.clone() {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(from_fn_with_state(security.hosts.clone(), security::check_host))
        // One span per request (exported when OpenTelemetry is on); logging is `observe`'s job.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(observe::request_span)
                .on_request(())
                .on_response(())
                .on_failure(()),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(observe::panic_response))
        // Outermost: every layer, log line and error body below sees the id.
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}
