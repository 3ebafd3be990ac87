//! Request ids: the caller's `X-Request-Id` when it is a plain token, else a new one. The id is
//! put back on the request (so the request span records it), returned on the response, and
//! kept in a task-local for error bodies built anywhere below.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Only short tokens are taken from callers: ids end up in every log line, and a free-form
/// value could forge log lines or bloat them.
fn acceptable(value: &HeaderValue) -> Option<&str> {
    let id = value.to_str().ok()?;
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(id)
}

fn fresh() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Random where the OS gives randomness; otherwise a process-unique counter still tells
    // requests apart in the logs.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    match (getrandom::u64(), getrandom::u64()) {
        (Ok(a), Ok(b)) => format!("{a:016x}{b:016x}"),
        _ => format!("req-{}", COUNTER.fetch_add(1, Ordering::Relaxed)),
    }
}

pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request.headers().get(&X_REQUEST_ID).and_then(acceptable).map_or_else(fresh, str::to_string);
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(X_REQUEST_ID, value.clone());
    let mut response = CURRENT.scope(id, next.run(request)).await;
    response.headers_mut().insert(X_REQUEST_ID, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tokens_are_taken_from_callers() {
        assert_eq!(acceptable(&HeaderValue::from_static("abc-123_x.y:z")), Some("abc-123_x.y:z"));
        assert_eq!(acceptable(&HeaderValue::from_static("two words")), None);
        assert_eq!(acceptable(&HeaderValue::from_static("")), None);
        assert_eq!(acceptable(&HeaderValue::from_str(&"a".repeat(129)).unwrap()), None);
        assert_ne!(fresh(), fresh());
    }
}
