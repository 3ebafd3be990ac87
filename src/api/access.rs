//! Who may call which route: the scope each route needs, the caller's key (`Authorization:
//! Bearer`), and the cross-site request guard on routes that change state. A route layer, so
//! handlers never check keys; the caller lands in the request extensions as a [`Caller`].
//!
//! The key is hashed on arrival and never logged; its name is recorded on the request span.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::{KeyFile, Keyring, Scope};

/// The custom header the web page sends. A cross-site page can only send it after a CORS
/// preflight, which we refuse unless its origin is listed, so its presence proves the request
/// does not come from a foreign page's form or `fetch` "simple request".
pub const CSRF_HEADER: &str = "x-requested-with";
pub const CSRF_VALUE: &str = "visionquery";

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, readiness, docs, the web page (and /metrics unless told otherwise).
    Open,
    Scope(Scope),
}

/// The scope a (method, route template) needs. Routes not listed need `admin`, so a route added
/// later without a line here is closed, not open.
pub fn route_needs(method: &Method, route: &str, metrics_need_key: bool) -> Need {
    use Need::{Open, Scope as S};
    let read = method == Method::GET || method == Method::HEAD;
    match (route, read) {
        ("/health" | "/ready" | "/" | "/assets/app.js" | "/assets/style.css" | "/openapi.json", true) => Open,
        (r, true) if r == "/docs" || r.starts_with("/docs/") => Open,
        ("/metrics", true) => {
            if metrics_need_key {
                S(Scope::Read)
            } else {
                Open
            }
        }
        (
            "/images"
            | "/images/{id}"
            | "/images/{id}/file"
            | "/images/{id}/thumbnail"
            | "/jobs"
            | "/jobs/{id}"
            | "/duplicates"
            | "/reindex",
            true,
        ) => S(Scope::Read),
        // Searches are POSTs (a JSON body or an uploaded photo) but change nothing.
        ("/search" | "/search/image", false) if method == Method::POST => S(Scope::Read),
        ("/ingest/image" | "/ingest/directory" | "/ingest/upload" | "/jobs/{id}/cancel" | "/reindex" | "/reindex/rollback", false)
            if method == Method::POST =>
        {
            S(Scope::Write)
        }
        ("/images/{id}" | "/jobs/{id}", false) if method == Method::DELETE => S(Scope::Write),
        _ => S(Scope::Admin),
    }
}

/// The caller of a protected route, for the layers and handlers below the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name; `None` for anonymous use (no keys configured).
    pub key: Option<String>,
    pub scope: Scope,
}

/// The keys the server accepts, reloaded when the key file changes.
pub struct Access {
    keyring: RwLock<Arc<Keyring>>,
    /// Decided at start: with a key file or a bootstrap key, every protected route needs a key,
    /// even once the last key is removed from the file (an empty file must not mean "open").
    keys_required: bool,
    metrics_need_key: bool,
    file: Option<PathBuf>,
    bootstrap: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("keys_required", &self.keys_required).field("file", &self.file).finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(file: Option<PathBuf>, bootstrap: Option<String>, metrics_need_key: bool) -> Result<Self, crate::auth::AuthError> {
        let keyring = Self::load(file.as_deref(), bootstrap.as_deref())?;
        Ok(Self {
            keyring: RwLock::new(Arc::new(keyring)),
            keys_required: file.is_some() || bootstrap.is_some(),
            metrics_need_key,
            file,
            bootstrap,
        })
    }

    fn load(file: Option<&std::path::Path>, bootstrap: Option<&str>) -> Result<Keyring, crate::auth::AuthError> {
        let entries = match file {
            Some(path) => KeyFile::read_existing(path)?,
            None => KeyFile::default(),
        };
        Keyring::new(entries, bootstrap)
    }

    pub fn keys_required(&self) -> bool {
        self.keys_required
    }

    pub fn metrics_need_key(&self) -> bool {
        self.metrics_need_key
    }

    /// Keys accepted right now (the file's and the bootstrap key).
    pub fn key_count(&self) -> usize {
        self.keyring().len()
    }

    fn keyring(&self) -> Arc<Keyring> {
        // A poisoned lock only means a reload panicked; the ring it holds is still whole.
        self.keyring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the key file whenever it changes (checked every second), so `keys add` and
    /// `keys remove` take effect without a restart. A file that fails to parse keeps the keys
    /// loaded before, with an error in the log.
    pub fn watch(self: &Arc<Self>) {
        let Some(path) = self.file.clone() else { return };
        let access = Arc::downgrade(self);
        tokio::spawn(async move {
            let stamp = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len(), inode(&m)));
            let mut seen = stamp(&path);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(access) = access.upgrade() else { return };
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match Self::load(Some(&path), access.bootstrap.as_deref()) {
                    Ok(ring) => {
                        *access.keyring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
                        tracing::info!(file = %path.display(), "reloaded the API keys");
                    }
                    Err(e) => tracing::error!(error = %e, "keeping the previous API keys"),
                }
            }
        });
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The key of `Authorization: Bearer <key>`: `Ok(None)` without the header, `Err` when it is
/// there but is not a bearer token.
fn bearer(request: &Request) -> Result<Option<&str>, ()> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, key) = value.split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(());
    }
    Ok(Some(key.trim()))
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Methods that never change state: exempt from the cross-site request guard.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a call without a key must prove it comes from the page itself (the custom header):
/// state changes do, i.e. routes needing more than `read` with a method that is not safe.
/// Searches are POSTs too but change nothing.
pub fn guards_cross_site(method: &Method, needed: Scope) -> bool {
    needed > Scope::Read && !is_safe(method)
}

pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    match admit(&access, request) {
        Ok(request) => next.run(request).await,
        Err((refusal, request)) => {
            let body = request.into_body();
            if !axum::body::HttpBody::is_end_stream(&body) {
                // As for overload: a client still sending an upload would see its connection
                // reset instead of this answer, so the rest is read and dropped (bounded).
                tokio::spawn(super::overload::discard(body));
            }
            refusal
        }
    }
}

/// The request with its [`Caller`], or the refusal (and the request, for its body).
#[allow(clippy::result_large_err)]
fn admit(access: &Access, mut request: Request) -> Result<Request, (Response, Request)> {
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let need = match &route {
        Some(route) => route_needs(request.method(), route, access.metrics_need_key),
        None => Need::Scope(Scope::Admin),
    };
    let Need::Scope(needed) = need else { return Ok(request) };
    let presented = match bearer(&request) {
        Ok(key) => key.map(str::to_string),
        Err(()) => return Err((unauthorized("the Authorization header must be `Bearer <key>`"), request)),
    };
    let caller = match &presented {
        Some(key) => match access.keyring().identify(key) {
            Some(identity) => Caller { key: Some(identity.name), scope: identity.scope },
            None => return Err((unauthorized("unknown API key"), request)),
        },
        None if access.keys_required => {
            return Err((unauthorized("this route needs an API key: send `Authorization: Bearer <key>`"), request))
        }
        None => Caller { key: None, scope: Scope::Admin },
    };
    tracing::Span::current().record("key", caller.key.as_deref().unwrap_or("anonymous"));
    if !caller.scope.allows(needed) {
        let refusal = ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this route needs a `{needed}` key; this key has scope `{}`", caller.scope),
        );
        return Err((refusal.into_response(), request));
    }
    // A key is a credential no foreign page can attach by itself; without one, a state change
    // must carry the custom header that only same-origin (or CORS-allowed) code can set.
    let custom_header = request.headers().get(CSRF_HEADER).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(CSRF_VALUE.as_bytes()));
    if presented.is_none() && guards_cross_site(request.method(), needed) && !custom_header {
        let refusal = ApiError::new(
            StatusCode::FORBIDDEN,
            "missing_csrf_header",
            format!("requests that change state need an API key or the header `X-Requested-With: {CSRF_VALUE}`"),
        );
        return Err((refusal.into_response(), request));
    }
    request.extensions_mut().insert(caller);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_documented_scopes_and_unknown_ones_need_admin() {
        let get = Method::GET;
        assert_eq!(route_needs(&get, "/health", true), Need::Open);
        assert_eq!(route_needs(&get, "/docs/{*rest}", false), Need::Open);
        assert_eq!(route_needs(&get, "/metrics", false), Need::Open);
        assert_eq!(route_needs(&get, "/metrics", true), Need::Scope(Scope::Read));
        assert_eq!(route_needs(&get, "/images/{id}/file", false), Need::Scope(Scope::Read));
        assert_eq!(route_needs(&Method::HEAD, "/images/{id}/thumbnail", false), Need::Scope(Scope::Read));
        assert_eq!(route_needs(&Method::POST, "/search", false), Need::Scope(Scope::Read));
        assert_eq!(route_needs(&Method::POST, "/ingest/upload", false), Need::Scope(Scope::Write));
        assert_eq!(route_needs(&Method::DELETE, "/jobs/{id}", false), Need::Scope(Scope::Write));
        assert_eq!(route_needs(&Method::POST, "/jobs/{id}/cancel", false), Need::Scope(Scope::Write));
        assert_eq!(route_needs(&Method::POST, "/health", false), Need::Scope(Scope::Admin));
        assert_eq!(route_needs(&Method::PUT, "/images/{id}", false), Need::Scope(Scope::Admin));
        assert_eq!(route_needs(&get, "/admin/unknown", false), Need::Scope(Scope::Admin));
    }
}
