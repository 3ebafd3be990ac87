//! A real `visionquery serve` process on a free loopback port with its own temp directories,
//! killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    pub image_root: PathBuf,
    pub extra_args: Vec<String>,
    pub extra_env: Vec<(String, String)>,
    pub model: PathBuf,
    /// Working directory of the server process, when the test sets one.
    pub cwd: Option<PathBuf>,
    /// Where the server's stderr goes, when a test reads its log (else inherited).
    pub log: Option<PathBuf>,
    _tmp: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// Generous: CI machines are small and a test may load the server on purpose. Sends the
/// header the web page sends (`X-Requested-With: visionquery`), without which a request that
/// changes state and carries no key is refused as possibly cross-site.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(180))
        .default_headers(same_page_headers())
        .build()
        .expect("http client")
}

/// A client that sends only what a foreign web page could: no key, no custom header.
pub fn bare_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(180)).build().expect("http client")
}

pub fn same_page_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-requested-with", reqwest::header::HeaderValue::from_static("visionquery"));
    headers
}

impl Server {
    /// Starts a server on the tiny fixture model and waits until it is ready.
    pub fn start() -> Self {
        Self::start_with(&super::tiny_model(), &[])
    }

    pub fn start_with(model: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_env(model, extra_args, &[])
    }

    /// A server run from inside its temp folder with a relative `--data-dir`.
    pub fn start_with_relative_data_dir() -> Self {
        Self::start_configured(&super::tiny_model(), &[], &[], true)
    }

    pub fn start_with_env(model: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_configured(model, extra_args, env, false)
    }

    /// A replica: its own data directory, and the image root another server (or the test)
    /// shares with it.
    pub fn start_sharing(image_root: &Path, extra_args: &[&str]) -> Self {
        Self::start_in(&super::tiny_model(), extra_args, &[], false, Some(image_root))
    }

    fn start_configured(model: &Path, extra_args: &[&str], env: &[(&str, &str)], relative_data_dir: bool) -> Self {
        Self::start_in(model, extra_args, env, relative_data_dir, None)
    }

    fn start_in(model: &Path, extra_args: &[&str], env: &[(&str, &str)], relative_data_dir: bool, shared_root: Option<&Path>) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("index");
        let image_root = shared_root.map_or_else(|| tmp.path().join("images"), Path::to_path_buf);
        std::fs::create_dir_all(&image_root).expect("image root");
        let mut server = Server {
            child: None,
            url: String::new(),
            data_dir,
            image_root,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            model: model.to_path_buf(),
            cwd: relative_data_dir.then(|| tmp.path().to_path_buf()),
            log: None,
            _tmp: tmp,
        };
        server.spawn();
        server
    }

    /// A server whose stderr (at debug level, unless `env` says otherwise) is kept in a file
    /// the test reads with [`Server::log_text`].
    pub fn start_logging(extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let image_root = tmp.path().join("images");
        std::fs::create_dir_all(&image_root).expect("image root");
        let mut server = Server {
            child: None,
            url: String::new(),
            data_dir: tmp.path().join("index"),
            image_root,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: [("VQ_LOG", "debug")].iter().chain(env).map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            model: super::tiny_model(),
            cwd: None,
            log: Some(tmp.path().join("server.log")),
            _tmp: tmp,
        };
        server.spawn();
        server
    }

    /// Everything the server wrote on stderr so far (servers started with `start_logging`).
    pub fn log_text(&self) -> String {
        self.log.as_ref().map(|p| std::fs::read_to_string(p).unwrap_or_default()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let port = free_port();
        self.url = format!("http://127.0.0.1:{port}");
        // With a working directory set, the data dir is given relative to it (as a user who
        // runs `visionquery serve` from a folder with the default `./data/index` would).
        let data_dir = match &self.cwd {
            Some(cwd) => self.data_dir.strip_prefix(cwd).expect("data dir inside the working directory").to_path_buf(),
            None => self.data_dir.clone(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_visionquery"));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let stderr = match &self.log {
            Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).expect("server log file")),
            None => Stdio::inherit(),
        };
        let child = command
            .arg("serve")
            .arg("--model")
            .arg(&self.model)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--image-root")
            .arg(&self.image_root)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(&self.extra_args)
            .env("VQ_LOG", "warn")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting visionquery serve");
        self.child = Some(child);
        self.wait_for("/health", 200);
    }

    /// Polls `path` until it answers `status` (30 s at most).
    pub fn wait_for(&self, path: &str, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = client();
        loop {
            if let Ok(r) = client.get(format!("{}{path}", self.url)).send() {
                if r.status().as_u16() == status {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{path} did not answer {status} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server process's id (to read its memory use from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn wait_ready(&self) {
        self.wait_for("/ready", 200);
    }

    /// `kill -9` and start again on the same directories.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// `kill -9`, leaving the data directory as a crash leaves it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaping");
        }
    }

    /// Starts the killed server again on the same directories and waits until it is ready.
    pub fn start_again(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// The value of one series of `/metrics`, named with its labels; 0 when absent.
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self.get("/metrics").text().expect("the metrics text");
        text.lines().find_map(|l| l.strip_prefix(name_and_labels)).map_or(0.0, |v| v.trim().parse().expect("a metric value"))
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        client().get(format!("{}{path}", self.url)).send().expect("GET")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> reqwest::blocking::Response {
        client().post(format!("{}{path}", self.url)).json(body).send().expect("POST")
    }

    /// A POST without a body (an action such as `/jobs/{id}/cancel`).
    pub fn post(&self, path: &str) -> reqwest::blocking::Response {
        client().post(format!("{}{path}", self.url)).send().expect("POST")
    }

    pub fn upload(&self, path: &str, files: &[(&str, Vec<u8>)]) -> reqwest::blocking::Response {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (name, bytes) in files {
            form = form.part("files", reqwest::blocking::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()));
        }
        client().post(format!("{}{path}", self.url)).multipart(form).send().expect("multipart POST")
    }

    pub fn delete(&self, path: &str) -> reqwest::blocking::Response {
        client().delete(format!("{}{path}", self.url)).send().expect("DELETE")
    }

    /// Copies a file into the image root and returns its path there.
    pub fn add_image(&self, source: &Path, name: &str) -> PathBuf {
        let dest = self.image_root.join(name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("image sub-folder");
        }
        std::fs::copy(source, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", source.display()));
        dest
    }

    pub fn ingest(&self, path: &Path) -> Value {
        let r = self.post_json("/ingest/image", &serde_json::json!({ "path": path }));
        let status = r.status();
        let body: Value = r.json().expect("JSON body");
        assert_eq!(status, 200, "ingest {}: {body}", path.display());
        body
    }

    pub fn image_count(&self) -> u64 {
        let health: Value = self.get("/health").json().expect("health JSON");
        health["index"]["images"].as_u64().expect("index.images")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
