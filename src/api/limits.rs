//! Rate limits: one token bucket per key (per client address for anonymous callers), refilled
//! at `--rate-limit` requests per second with bursts of as many. Over the limit: 429 with
//! `Retry-After`, counted in `vq_rate_limited_total` by key name (never the key itself).
//!
//! Runs below the access guard, which names the caller; open routes (health, docs, the page)
//! have no caller and are not limited.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::access::Caller;
use super::error::ApiError;

pub struct RateLimits {
    buckets: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn per_second(rate: NonZeroU32) -> Arc<Self> {
        let limits = Arc::new(Self { buckets: RateLimiter::keyed(Quota::per_second(rate)), clock: DefaultClock::default() });
        // Anonymous buckets are per client address: forget idle ones so a scan of many
        // addresses cannot grow the table for ever.
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(limits) = weak.upgrade() else { return };
                limits.buckets.retain_recent();
                limits.buckets.shrink_to_fit();
            }
        });
        limits
    }

    /// `Err(seconds to wait)` when `bucket` is empty.
    fn take(&self, bucket: &String) -> Result<(), u32> {
        self.buckets.check_key(bucket).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Whole seconds, rounded up, at least 1: a client retrying sooner is refused again.
            u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(u32::MAX).max(1)
        })
    }
}

pub async fn throttle(State(limits): State<Option<Arc<RateLimits>>>, request: Request, next: Next) -> Response {
    let (Some(limits), Some(caller)) = (limits, request.extensions().get::<Caller>()) else { return next.run(request).await };
    let (bucket, label) = match &caller.key {
        Some(name) => (format!("key:{name}"), name.clone()),
        None => {
            let addr = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
            (format!("addr:{}", addr.as_deref().unwrap_or("unknown")), "anonymous".to_string())
        }
    };
    match limits.take(&bucket) {
        Ok(()) => next.run(request).await,
        Err(seconds) => {
            crate::metrics::rate_limited(&label);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than the allowed requests per second; retry in {seconds} s"),
            )
            .retry(seconds)
            .into_response()
        }
    }
}
