//! What the fuzz targets share: the app users run (`visionquery serve`'s own assembly, with the
//! tiny test model and an embedded store in a temporary folder) driven in-process, and the rule
//! every answer must keep.
//!
//! The rule is the API's promise for bad input: a clear JSON error with the right status. A 500
//! (a panic is caught and answered 500) or an error without the JSON shape is a finding.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use clap::Parser;
use tower::ServiceExt;
use visionquery::config::ServeArgs;
use visionquery::embed::PreprocessConfig;
use visionquery::service::Service;

/// The repository, for the committed fixtures.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz/ is inside the repository").to_path_buf()
}

/// The tiny test model's preprocessing (CLIP's: 224 shortest edge, bicubic, centre crop).
pub fn clip_preprocessing() -> &'static PreprocessConfig {
    static CONFIG: LazyLock<PreprocessConfig> = LazyLock::new(|| {
        PreprocessConfig::from_file(&repo().join("tests/fixtures/tiny-clip/preprocessor_config.json"))
            .expect("the committed preprocessor config")
    });
    &CONFIG
}

#[derive(Parser)]
struct ServeCli {
    #[command(flatten)]
    serve: ServeArgs,
}

/// The images indexed before fuzzing (from `tests/fixtures/images`).
pub const INDEXED: [&str; 3] = ["baseline.jpg", "rgb.png", "webp_lossy.webp"];

/// The running app, one per fuzz process.
pub struct App {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _folder: tempfile::TempDir,
}

/// An answer, whole.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl App {
    /// The app, started on first use: the tiny model and three committed images under the
    /// image root, indexed (so searches rank, filter and page real rows).
    pub fn get() -> &'static App {
        static APP: OnceLock<App> = OnceLock::new();
        APP.get_or_init(App::start)
    }

    fn start() -> App {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let (data, images) = (folder.path().join("data"), folder.path().join("images"));
        std::fs::create_dir_all(&images).expect("the image root");
        for name in INDEXED {
            std::fs::copy(repo().join("tests/fixtures/images").join(name), images.join(name)).expect("a fixture image");
        }
        let model = repo().join("tests/fixtures/tiny-clip");
        let argv = ["visionquery", "--model", path(&model), "--data-dir", path(&data), "--image-root", path(&images), "--threads", "1"];
        let args = ServeCli::parse_from(argv).serve;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
        let metrics = visionquery::metrics::install();
        let service = runtime.block_on(Service::assemble(&args, metrics)).expect("the service assembles");
        let app = App { runtime, router: service.router, _folder: folder };
        app.wait_ready();
        for name in INDEXED {
            let body = serde_json::json!({ "path": name }).to_string();
            let request = Request::post("/ingest/image").header(header::CONTENT_TYPE, "application/json").body(Body::from(body));
            let answer = app.send(request.expect("a request"));
            assert_eq!(answer.status, StatusCode::OK, "indexing {name}: {}", String::from_utf8_lossy(&answer.body));
        }
        app
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while self.send(Request::get("/ready").body(Body::empty()).expect("a request")).status != StatusCode::OK {
            assert!(started.elapsed() < Duration::from_secs(120), "the tiny model did not load (is ORT_DYLIB_PATH set?)");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one request as a same-host page on loopback would (the `Host` allowed by default,
    /// the header state-changing routes ask of callers without a key) and reads the answer.
    pub fn send(&self, mut request: Request<Body>) -> Answer {
        let headers = request.headers_mut();
        headers.insert(header::HOST, "127.0.0.1".parse().expect("a header value"));
        headers.insert(visionquery::api::access::CSRF_HEADER, visionquery::api::access::CSRF_VALUE.parse().expect("a header value"));
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.expect("the router never fails");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("an answer's body");
            Answer { status, body }
        })
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// The rule every answer keeps: no 500 and no other 5xx than "unavailable, retry" (503) and
/// "disk full" (507); every error a JSON `{"error": {"code", "message"}}`.
pub fn check(what: &str, answer: &Answer) {
    let status = answer.status;
    // `VQ_FUZZ_TRACE=1` shows what each input did (to see that seeds reach the handlers).
    if std::env::var_os("VQ_FUZZ_TRACE").is_some() {
        eprintln!("{what} -> {status} {}", String::from_utf8_lossy(&answer.body[..answer.body.len().min(160)]));
    }
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::INSUFFICIENT_STORAGE,
        "{what} was answered {status}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    if status.is_client_error() || status.is_server_error() {
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
            panic!("{what} was answered {status} with a body that is not JSON ({e}): {:?}", String::from_utf8_lossy(&answer.body))
        });
        let error = &body["error"];
        assert!(error["code"].is_string() && error["message"].is_string(), "{what} was answered {status} without the error shape: {body}");
    }
}

/// Deletes what an answer says it newly indexed, so a long run keeps the index (and the
/// uploads folder) small and every input meets nearly the same state: the images indexed at
/// start stay.
pub fn forget_indexed(app: &App, answer: &Answer) {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&answer.body) else { return };
    let outcomes = body["results"].as_array().cloned().unwrap_or_else(|| vec![body.clone()]);
    let new = |outcome: &serde_json::Value| outcome["duplicate"] == serde_json::Value::Bool(false);
    let ids: Vec<String> = outcomes.iter().filter(|o| new(o)).filter_map(|o| o["id"].as_str().map(str::to_string)).collect();
    for id in ids {
        let deleted = app.send(Request::delete(format!("/images/{id}")).body(Body::empty()).expect("a request"));
        check("DELETE /images/{id}", &deleted);
    }
}
