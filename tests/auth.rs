//! Access control against a real server: keys and scopes, the key file and its CLI, the bootstrap
//! key, refusing to expose an open server, rate limits, CORS, security headers, request ids,
//! allowed hosts, the cross-site request guard, and keys kept out of the log.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{bare_client, client, free_port, Server};
use common::*;
use serde_json::{json, Value};

const BOOTSTRAP: &str = "bootstrap-key-for-tests-0123456789";

/// Runs `visionquery keys ...` and returns its stdout (asserting success).
fn keys(args: &[&str], file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_visionquery")).arg("keys").args(args).arg("--api-keys").arg(file).output().expect("keys");
    assert!(out.status.success(), "keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `keys add` and the key it printed on its last line.
fn add_key(file: &Path, name: &str, scope: &str) -> String {
    let out = keys(&["add", name, "--scope", scope], file);
    let key = out.lines().last().expect("a last line").trim().to_string();
    assert!(key.starts_with("vq_") && key.len() > 40, "the last line is the key: {out}");
    key
}

fn error_of(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn get(server: &Server, path: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = client().get(format!("{}{path}", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().expect("GET")
}

/// POST without the custom header, so only the key can authorise it.
fn post_json(server: &Server, path: &str, body: &Value, key: Option<&str>) -> reqwest::blocking::Response {
    let mut request = bare_client().post(format!("{}{path}", server.url)).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().expect("POST")
}

fn upload(server: &Server, client: &reqwest::blocking::Client, key: Option<&str>) -> reqwest::blocking::Response {
    let bytes = std::fs::read(fixtures().join("images/baseline.jpg")).expect("fixture");
    let form = reqwest::blocking::multipart::Form::new().part("files", reqwest::blocking::multipart::Part::bytes(bytes).file_name("a.jpg"));
    let mut request = client.post(format!("{}/ingest/upload", server.url)).multipart(form);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().expect("upload")
}

#[test]
fn scopes_give_401_403_and_200_on_read_and_write_routes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let read = add_key(&file, "viewer", "read");
    let write = add_key(&file, "uploader", "write");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&read) && !text.contains(&write), "only hashes are stored: {text}");

    let server = Server::start_with(&tiny_model(), &["--api-keys", file.to_str().unwrap()]);
    server.wait_ready();
    let image = server.add_image(&fixtures().join("images/baseline.jpg"), "a.jpg");

    // Read route.
    for key in [None, Some("vq_not-a-key")] {
        let r = get(&server, "/images", key);
        assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
        let (status, body) = error_of(r);
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    }
    assert_eq!(get(&server, "/images", Some(&read)).status(), 200);
    assert_eq!(get(&server, "/images", Some(&write)).status(), 200, "write implies read");

    // Write route.
    let ingest = json!({ "path": image });
    assert_eq!(post_json(&server, "/ingest/image", &ingest, None).status(), 401);
    let (status, body) = error_of(post_json(&server, "/ingest/image", &ingest, Some(&read)));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    assert_eq!(post_json(&server, "/ingest/image", &ingest, Some(&write)).status(), 200, "a key needs no custom header");

    // Open routes stay open.
    for path in ["/health", "/ready", "/metrics", "/", "/assets/app.js", "/openapi.json", "/docs/"] {
        assert_eq!(get(&server, path, None).status(), 200, "{path}");
    }
}

#[test]
fn keys_list_shows_names_and_keys_remove_revokes_in_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let key = add_key(&file, "laptop", "admin");
    let other = add_key(&file, "phone", "read");
    let listed = keys(&["list"], &file);
    assert!(listed.contains("laptop\tadmin") && listed.contains("phone\tread"), "{listed}");
    assert!(!listed.contains("blake3") && !listed.contains(&key), "no hashes or keys: {listed}");

    let server = Server::start_with(&tiny_model(), &["--api-keys", file.to_str().unwrap()]);
    assert_eq!(get(&server, "/jobs", Some(&key)).status(), 200);
    keys(&["remove", "laptop"], &file);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&server, "/jobs", Some(&key)).status() != 401 {
        assert!(Instant::now() < deadline, "the removed key still works after 10 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&server, "/jobs", Some(&other)).status(), 200, "the other key still works");
    // A key added to the running server's file works too.
    let new = add_key(&file, "tablet", "read");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&server, "/jobs", Some(&new)).status() != 200 {
        assert!(Instant::now() < deadline, "the added key does not work after 10 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_bootstrap_key_from_the_environment_is_an_admin_key() {
    let server = Server::start_with_env(&tiny_model(), &[], &[("VQ_API_KEY", BOOTSTRAP)]);
    assert_eq!(get(&server, "/images", None).status(), 401);
    assert_eq!(get(&server, "/images", Some(BOOTSTRAP)).status(), 200);
    let r = client().delete(format!("{}/jobs/nope", server.url)).bearer_auth(BOOTSTRAP).send().unwrap();
    assert_eq!(r.status(), 404, "a write route reaches its handler");
}

fn spawn_on_all_interfaces(port: u16, extra: &[&str], dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_visionquery"))
        .args(["serve", "--model"])
        .arg(tiny_model())
        .arg("--data-dir")
        .arg(dir.join("index"))
        .arg("--image-root")
        .arg(dir)
        .args(["--host", "0.0.0.0", "--port", &port.to_string()])
        .args(extra)
        .env("VQ_LOG", "warn")
        .env_remove("VQ_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("visionquery serve")
}

#[test]
fn refuses_to_serve_all_interfaces_without_keys_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = spawn_on_all_interfaces(free_port(), &[], dir.path()).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not start");
    assert!(stderr.contains("keys add") && stderr.contains("--allow-anonymous"), "says how to fix it: {stderr}");

    let port = free_port();
    let mut child = spawn_on_all_interfaces(port, &["--allow-anonymous"], dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{port}/health");
    loop {
        if client().get(&url).send().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "no answer within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_rate_limit_answers_429_with_retry_after_then_recovers() {
    let server = Server::start_with(&tiny_model(), &["--rate-limit", "2"]);
    let statuses: Vec<reqwest::blocking::Response> = (0..8).map(|_| get(&server, "/jobs", None)).collect();
    let limited: Vec<_> = statuses.iter().filter(|r| r.status() == 429).collect();
    assert!(!limited.is_empty(), "8 quick requests at 2/s with a burst of 2 are limited");
    let retry: u64 = limited[0].headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(get(&server, "/health", None).status(), 200, "open routes are not limited");
    let metrics = get(&server, "/metrics", None).text().unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("vq_rate_limited_total{key=\"anonymous\"}")), "metric: {metrics}");
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(get(&server, "/jobs", None).status(), 200, "recovers after Retry-After");
}

#[test]
fn cors_preflight_is_allowed_only_for_listed_origins() {
    let server = Server::start_with(&tiny_model(), &["--cors-origin", "https://photos.example"]);
    let preflight = |origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, format!("{}/ingest/upload", server.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,x-requested-with")
            .send()
            .unwrap()
    };
    let allowed = preflight("https://photos.example");
    assert_eq!(allowed.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://photos.example"));
    let refused = preflight("https://evil.example");
    assert!(refused.headers().get("access-control-allow-origin").is_none(), "{:?}", refused.headers());

    let without = Server::start();
    let r = client()
        .request(reqwest::Method::OPTIONS, format!("{}/ingest/upload", without.url))
        .header("origin", "https://photos.example")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "CORS is off by default");
}

#[test]
fn security_headers_are_on_the_page_and_on_files() {
    let server = Server::start();
    server.wait_ready();
    let id = server.ingest(&server.add_image(&fixtures().join("images/baseline.jpg"), "a.jpg"))["id"].as_str().unwrap().to_string();
    let page = server.get("/");
    let page_csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    let html = page.text().unwrap();
    for path in ["/".to_string(), format!("/images/{id}/file"), format!("/images/{id}/thumbnail")] {
        let r = server.get(&path);
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    // The policy forbids inline script: the page must not need any.
    assert!(page_csp.contains("default-src 'self'"));
    let lower = html.to_lowercase();
    let inline_scripts = lower.matches("<script").count() - lower.matches("<script src=").count();
    assert_eq!(inline_scripts, 0, "no inline <script>");
    assert!(!lower.contains(" onclick=") && !lower.contains(" onload=") && !lower.contains("javascript:"), "no inline handlers");
}

#[test]
fn request_ids_are_echoed_and_in_error_bodies() {
    let server = Server::start_logging(&[], &[]);
    let r = client().get(format!("{}/images/nope", server.url)).header("x-request-id", "trace-me-42").send().unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let (status, body) = error_of(r);
    assert_eq!(status, 404);
    assert_eq!(body["error"]["request_id"], "trace-me-42", "{body}");
    // Without one (or with an unusable one) the server makes one.
    let r = client().get(format!("{}/images/nope", server.url)).header("x-request-id", "two words\tand a tab").send().unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(made.len() >= 16 && !made.contains(' '), "{made}");
    assert_eq!(error_of(r).1["error"]["request_id"], made.as_str());
    let line = server.log_text().lines().find(|l| l.contains("request") && l.contains("/images/nope")).map(str::to_string);
    assert!(line.is_some_and(|l| l.contains("trace-me-42")), "the log line carries the id: {}", server.log_text());
}

#[test]
fn a_foreign_host_name_is_refused() {
    let server = Server::start();
    let r = client().get(format!("{}/images", server.url)).header("host", "evil.example").send().unwrap();
    let (status, body) = error_of(r);
    assert_eq!((status, body["error"]["code"].as_str()), (421, Some("host_not_allowed")), "{body}");
    let r = client().get(format!("{}/images", server.url)).header("host", "localhost:8000").send().unwrap();
    assert_eq!(r.status(), 200, "loopback names are allowed");
    // The harness reaches the server as 127.0.0.1, so it is listed too.
    let listed = Server::start_with(&tiny_model(), &["--allowed-hosts", "photos.lan,127.0.0.1"]);
    let r = client().get(format!("{}/health", listed.url)).header("host", "photos.lan").send().unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(format!("{}/health", listed.url)).header("host", "localhost").send().unwrap();
    assert_eq!(r.status(), 421, "a list replaces the defaults");
}

#[test]
fn state_changes_need_a_key_or_the_custom_header_while_reads_do_not() {
    let server = Server::start();
    server.wait_ready();
    // A foreign page's multipart form post: no key, no custom header.
    let (status, body) = error_of(upload(&server, &bare_client(), None));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("missing_csrf_header")), "{body}");
    let r = bare_client().delete(format!("{}/jobs/nope", server.url)).send().unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(server.image_count(), 0, "nothing was stored");
    // Reads need neither.
    assert_eq!(bare_client().get(format!("{}/images", server.url)).send().unwrap().status(), 200);
    let search = bare_client().post(format!("{}/search", server.url)).json(&json!({ "query": "a dog" })).send().unwrap();
    assert_eq!(search.status(), 200, "a search changes nothing");
    // The page's header lets the upload through.
    assert_eq!(upload(&server, &client(), None).status(), 200);
}

#[test]
fn the_key_never_appears_in_the_log_but_its_name_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let key = add_key(&file, "reader-one", "read");
    let server = Server::start_logging(&["--api-keys", file.to_str().unwrap(), "--metrics-need-key"], &[("VQ_API_KEY", BOOTSTRAP)]);
    server.wait_for("/health", 200);
    assert_eq!(get(&server, "/images", Some(&key)).status(), 200);
    assert_eq!(get(&server, "/images/nope", Some(&key)).status(), 404);
    assert_eq!(post_json(&server, "/ingest/image", &json!({ "path": "x.jpg" }), Some(&key)).status(), 403);
    assert_eq!(get(&server, "/images", Some("vq_wrong-key-that-must-not-be-logged")).status(), 401);
    assert_eq!(get(&server, "/metrics", None).status(), 401, "--metrics-need-key");
    let metrics = get(&server, "/metrics", Some(&key)).text().unwrap();
    assert!(!metrics.contains(&key) && !metrics.contains(BOOTSTRAP));
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log_text();
    assert!(log.contains("reader-one"), "the key's name is logged: {log}");
    for secret in [key.as_str(), BOOTSTRAP, "vq_wrong-key-that-must-not-be-logged", &key[3..]] {
        assert!(!log.contains(secret), "a key appears in the log");
    }
}

#[test]
fn openapi_describes_access_as_the_server_is_configured() {
    // With keys: every protected route needs a bearer key of its scope.
    let keyed = Server::start_with_env(&tiny_model(), &["--rate-limit", "100"], &[("VQ_API_KEY", BOOTSTRAP)]);
    let spec: Value = keyed.get("/openapi.json").json().unwrap();
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "{}", spec["components"]);
    let upload = &spec["paths"]["/ingest/upload"]["post"];
    let file = &spec["paths"]["/images/{id}/file"]["get"];
    assert_eq!(upload["security"], json!([{ "bearer": ["write"] }]));
    assert_eq!(spec["paths"]["/search"]["post"]["security"], json!([{ "bearer": ["read"] }]));
    for status in ["401", "403", "429", "421"] {
        assert!(upload["responses"][status].is_object(), "upload documents {status}");
    }
    assert!(file["responses"]["401"].is_object() && file["responses"]["429"].is_object());
    assert!(file["responses"]["403"].is_null(), "every key may read: a read route never answers 403");
    assert!(spec["paths"]["/health"]["get"]["security"].is_null(), "health is open");
    assert!(spec["paths"]["/health"]["get"]["responses"]["401"].is_null());

    // Without keys (loopback): reads are open, state changes need the page's header.
    let open = Server::start();
    let spec: Value = open.get("/openapi.json").json().unwrap();
    assert!(spec["components"]["securitySchemes"]["bearer"].is_null(), "no key can be checked: {}", spec["components"]);
    assert_eq!(spec["components"]["securitySchemes"]["same_origin_header"]["name"], "X-Requested-With");
    let upload = &spec["paths"]["/ingest/upload"]["post"];
    assert_eq!(upload["security"], json!([{ "same_origin_header": [] }]));
    assert!(upload["responses"]["403"]["description"].as_str().unwrap_or_default().contains("missing_csrf_header"), "{upload}");
    assert!(upload["responses"]["429"].is_null(), "no rate limit is set");
    assert!(spec["paths"]["/search"]["post"]["security"].is_null(), "a search changes nothing: open without keys");
}
