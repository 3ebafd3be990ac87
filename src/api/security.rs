//! How the server protects itself beyond keys: it refuses to serve a network without keys unless
//! told to, answers only to allowed `Host` names (DNS rebinding), allows other origins only when
//! listed (CORS), and sends browser security headers with every response.
//!
//! Built once from [`crate::config::AccessArgs`]; the route guard itself is in `access`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::access::{Access, CSRF_HEADER};
use super::error::ApiError;
use super::limits::RateLimits;
use super::request_id::X_REQUEST_ID;
use crate::auth::AuthError;
use crate::config::AccessArgs;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(
        "refusing to serve {addr} without API keys: anyone on the network could read and change the index. \
         Create a key with `visionquery keys add NAME --scope admin --api-keys FILE` and pass `--api-keys FILE`, \
         or set VQ_API_KEY; or pass `--allow-anonymous` to serve without keys on purpose"
    )]
    ExposedWithoutKeys { addr: IpAddr },
    #[error("invalid --cors-origin `{0}`: expected an origin such as https://photos.example")]
    BadOrigin(String),
    #[error(transparent)]
    Keys(#[from] AuthError),
}

/// Everything the router needs to protect the API.
#[derive(Clone)]
pub struct Security {
    pub access: Arc<Access>,
    pub hosts: Arc<HostPolicy>,
    pub rate: Option<Arc<RateLimits>>,
    pub cors: Option<CorsLayer>,
}

impl Security {
    /// Reads the key file and checks the settings. Call from inside the async runtime (the key
    /// file watcher and the rate limiter's cleanup are tasks).
    pub fn from_args(args: &AccessArgs, bind: IpAddr) -> Result<Self, SecurityError> {
        let access = Arc::new(Access::new(args.api_keys.clone(), args.bootstrap_key(), args.metrics_need_key)?);
        if !bind.is_loopback() && !access.keys_required() && !args.allow_anonymous {
            return Err(SecurityError::ExposedWithoutKeys { addr: bind });
        }
        access.watch();
        if access.keys_required() && access.key_count() == 0 {
            tracing::warn!(file = ?args.api_keys, "API routes need a key but the key file has none yet: add one with `visionquery keys add`");
        } else if access.keys_required() {
            tracing::info!(keys = access.key_count(), file = ?args.api_keys, "API routes need a key");
        } else if !bind.is_loopback() {
            tracing::warn!(%bind, "serving without API keys on a non-loopback address (--allow-anonymous)");
        }
        let hosts = HostPolicy::from_args(&args.allowed_hosts, bind);
        let rate = args.rate_limit.and_then(std::num::NonZeroU32::new).map(RateLimits::per_second);
        let cors = if args.cors_origins.is_empty() { None } else { Some(cors(&args.cors_origins)?) };
        Ok(Self { access, hosts: Arc::new(hosts), rate, cors })
    }
}

fn cors(origins: &[String]) -> Result<CorsLayer, SecurityError> {
    let origins = origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .map(|o| {
            let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.contains('/')) {
                return Err(SecurityError::BadOrigin(o.to_string()));
            }
            HeaderValue::from_str(o).map_err(|_| SecurityError::BadOrigin(o.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, HeaderName::from_static(CSRF_HEADER), X_REQUEST_ID])
        .expose_headers([X_REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600)))
}

/// Which `Host` names the server answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    Any,
    /// Lower-case names without port; IPv6 addresses without brackets.
    Only(Vec<String>),
}

impl HostPolicy {
    pub fn from_args(allowed: &[String], bind: IpAddr) -> Self {
        let allowed: Vec<String> = allowed.iter().map(|h| normalize(h.trim())).filter(|h| !h.is_empty()).collect();
        if allowed.iter().any(|h| h == "*") {
            return Self::Any;
        }
        if !allowed.is_empty() {
            return Self::Only(allowed);
        }
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        if !bind.is_unspecified() && !names.contains(&bind.to_string()) {
            names.push(bind.to_string());
        }
        Self::Only(names)
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => {
                let host = normalize(host);
                names.contains(&host)
            }
        }
    }
}

/// `Example.COM.:8000` → `example.com`; `[::1]:8000` → `::1`.
fn normalize(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default().to_string()
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or_default().to_string()
    } else {
        host
    };
    name.trim_end_matches('.').to_string()
}

/// Refuses requests for a host name not allowed (421). DNS rebinding points an attacker's name
/// at 127.0.0.1, so the browser sends the attacker's name as `Host`. A request without any
/// `Host` (HTTP/1.0 probes) is let through: browsers always send one.
pub async fn check_host(State(policy): State<Arc<HostPolicy>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().host().map(str::to_string));
    match host {
        Some(host) if !policy.allows(&host) => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            "this server does not answer to that host name; add it with --allowed-hosts (VQ_ALLOWED_HOSTS)",
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// The page's policy: its own scripts, styles and images only (blob: for images fetched with a
/// key, data: for the inline icon), no inline script, never inside a frame.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                        connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Swagger UI (/docs) ships its own inline bootstrap; it still must not be framed.
const DOCS_CSP: &str = "frame-ancestors 'none'";

pub async fn headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = if docs { DOCS_CSP } else { PAGE_CSP };
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_compared_without_port_case_or_brackets() {
        let policy = HostPolicy::from_args(&[], "127.0.0.1".parse().unwrap());
        for ok in ["localhost", "LOCALHOST:8000", "127.0.0.1:9", "[::1]:8000", "localhost."] {
            assert!(policy.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.2"] {
            assert!(!policy.allows(bad), "{bad}");
        }
        let lan = HostPolicy::from_args(&[], "192.168.1.5".parse().unwrap());
        assert!(lan.allows("192.168.1.5:8000"));
        let listed = HostPolicy::from_args(&["photos.lan".into()], "0.0.0.0".parse().unwrap());
        assert!(listed.allows("photos.lan:8000") && !listed.allows("localhost"));
        assert_eq!(HostPolicy::from_args(&["*".into()], "0.0.0.0".parse().unwrap()), HostPolicy::Any);
    }

    #[test]
    fn cors_origins_must_be_origins() {
        assert!(cors(&["https://photos.example".into(), "http://localhost:5173/".into()]).is_ok());
        assert!(cors(&["photos.example".into()]).is_err());
        assert!(cors(&["https://photos.example/path".into()]).is_err());
    }
}
