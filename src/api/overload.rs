//! Load shedding and deadlines, as route layers.
//!
//! Heavy routes (uploads, search by image, duplicates) each may hold a request body of up to the
//! upload limit and a full image decode, so they share one budget of requests in flight: a
//! request over it is answered 503 with `Retry-After` at once, never queued, and the light routes
//! (health, text search, metrics) keep being served. Every route has a deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;

/// How much work the HTTP layer takes on at once, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ServingLimits {
    /// Deadline of every request but uploads.
    pub request_timeout: Duration,
    /// Deadline of `/ingest/upload` and `/search/image`, receiving the body included.
    pub upload_timeout: Duration,
    /// Heavy requests in flight at once.
    pub max_heavy_requests: usize,
}

/// The shared budget of heavy requests in flight.
#[derive(Clone)]
pub struct HeavyGate(Arc<Semaphore>);

impl HeavyGate {
    pub fn new(max_in_flight: usize) -> Self {
        Self(Arc::new(Semaphore::new(max_in_flight.max(1))))
    }
}

/// How long, and how much of, a refused request's body is read and thrown away.
const DISCARD_FOR: Duration = Duration::from_secs(10);
const DISCARD_BYTES: u64 = 64 * 1024 * 1024;

/// Admits a heavy request if the budget has room, else answers 503 at once. The permit lives
/// as long as the handler runs (responses of heavy routes are built in memory).
pub async fn shed(State(gate): State<HeavyGate>, request: Request, next: Next) -> Response {
    match gate.0.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => {
            let body = request.into_body();
            if !body.is_end_stream() {
                // Many clients read the answer only once they have sent the whole body. Closing
                // the connection on an unread upload resets it, and such a client sees a
                // connection error instead of this 503; so the rest of the body is read in the
                // background and dropped chunk by chunk (bounded, and never kept in memory).
                tokio::spawn(discard(body));
            }
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many uploads, image searches and duplicate listings in progress; retry shortly",
            )
            .retry(1)
            .into_response()
        }
    }
}

pub(super) async fn discard(mut body: Body) {
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_FOR, drain).await;
}

/// Answers 503 `timeout` when the request is not done within the deadline, and drops its work
/// (blocking decodes already started finish on their thread, still holding their decode permit).
/// The deadline covers producing the response, not streaming its body: a large file sent to a
/// slow client is not cut off.
///
/// 503 rather than 408: a request here runs out of time mostly because the server is busy
/// (decodes, the model queue), and 503 with `Retry-After` is the answer clients already handle
/// for overload; 408 would blame the client and invites an immediate retry.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request did not complete within {} s", limit.as_secs_f64()),
        )
        .retry(5)
        .into_response(),
    }
}
