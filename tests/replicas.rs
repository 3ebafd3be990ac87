//! Several `visionquery serve` processes on one PostgreSQL database behave as one service, and
//! losing the database is a 503, never a crash or a lost ingest. Real servers, a real
//! PostgreSQL 16 with pgvector (scripts/pg.sh), real files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::Server;
use serde_json::{json, Value};
use visionquery::store::postgres::testing;

fn photos() -> Vec<PathBuf> {
    common::committed_photos()
}

/// Two replicas on database `db`, sharing one image root and one uploads folder.
struct Pair {
    a: Server,
    b: Server,
    root: tempfile::TempDir,
}

fn pair(db: &str, extra: &[&str]) -> Pair {
    let url = testing::fresh_database(db);
    let root = tempfile::tempdir().expect("shared folder");
    let uploads = root.path().join("uploads");
    let images = root.path().join("images");
    let mut args = vec!["--store", url.as_str(), "--uploads-dir", uploads.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let a = Server::start_sharing(&images, &args);
    let b = Server::start_sharing(&images, &args);
    a.wait_ready();
    b.wait_ready();
    Pair { a, b, root }
}

impl Pair {
    fn add_image(&self, source: &Path, name: &str) -> PathBuf {
        self.a.add_image(source, name)
    }
}

fn search_by_image(server: &Server, id: &str, k: u64) -> Vec<String> {
    let r = server.post_json("/search", &json!({ "image_id": id, "top_k": k }));
    assert_eq!(r.status(), 200);
    let body: Value = r.json().expect("json");
    body["results"].as_array().expect("results").iter().map(|h| h["id"].as_str().expect("id").to_string()).collect()
}

#[test]
fn what_one_replica_ingests_or_deletes_every_replica_sees_at_once() {
    let p = pair("replicas_see_each_other", &[]);
    let health: Value = p.a.get("/health").json().expect("json");
    assert_eq!(health["index"]["backend"], "postgres");
    assert_eq!(health["index"]["reachable"], true);
    assert!(!health["index"]["location"].as_str().expect("location").contains("vqpg:vqpg"), "no password in /health");

    let photos = photos();
    let first = p.add_image(&photos[0], "one.jpg");
    let second = p.add_image(&photos[1], "two.jpg");
    let id = p.a.ingest(&first)["id"].as_str().expect("id").to_string();
    let other = p.b.ingest(&second)["id"].as_str().expect("id").to_string();
    assert_eq!(p.b.get(&format!("/images/{id}")).status(), 200, "B knows what A ingested");
    assert_eq!(search_by_image(&p.b, &id, 2)[0], id, "B finds it by similarity");
    assert_eq!(search_by_image(&p.a, &other, 2)[0], other);
    let r = p.b.post_json("/search", &json!({ "query": "a photo", "top_k": 5 }));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().expect("json")["results"].as_array().expect("results").len(), 2);

    assert_eq!(p.b.delete(&format!("/images/{id}")).status(), 200);
    assert_eq!(p.a.get(&format!("/images/{id}")).status(), 404, "a delete on B is seen by A");
    assert!(!search_by_image(&p.a, &other, 5).contains(&id));
    assert_eq!(p.a.image_count(), 1);
}

#[test]
fn the_same_files_ingested_through_two_replicas_at_once_are_one_row_each() {
    let p = pair("replicas_same_file", &[]);
    let files: Vec<PathBuf> = photos().iter().take(8).enumerate().map(|(i, f)| p.add_image(f, &format!("f{i}.jpg"))).collect();
    let ingest_all = |server: &Server| files.iter().map(|f| server.ingest(f)["id"].as_str().expect("id").to_string()).collect::<Vec<_>>();
    let (from_a, from_b) = std::thread::scope(|s| {
        let a = s.spawn(|| ingest_all(&p.a));
        let b = s.spawn(|| ingest_all(&p.b));
        (a.join().expect("replica A thread"), b.join().expect("replica B thread"))
    });
    assert_eq!(from_a, from_b, "one id per file whichever replica answered");
    assert_eq!(p.a.image_count(), 8, "one row per file");
    let listed: Value = p.b.get("/images?limit=100").json().expect("json");
    assert_eq!(listed["images"].as_array().expect("images").len(), 8);
}

#[test]
fn an_upload_to_one_replica_is_served_by_the_other() {
    let p = pair("replicas_uploads", &[]);
    let bytes = std::fs::read(&photos()[2]).expect("photo");
    let r = p.a.upload("/ingest/upload", &[("holiday.jpg", bytes.clone())]);
    assert_eq!(r.status(), 200);
    let body: Value = r.json().expect("json");
    let id = body["results"][0]["id"].as_str().unwrap_or_else(|| panic!("an id in {body}")).to_string();
    let served = p.b.get(&format!("/images/{id}/file"));
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().expect("bytes").to_vec(), bytes, "B serves the bytes A stored in the shared uploads folder");
    assert_eq!(p.b.get(&format!("/images/{id}/thumbnail?size=64")).status(), 200);
    assert!(p.root.path().join("uploads").read_dir().expect("uploads folder").next().is_some());
}

/// A PostgreSQL of this test's own (another port), so it can be killed without disturbing the
/// server the other tests share. Ports below the kernel's ephemeral range (32768-60999), so
/// no outgoing connection of a concurrent test holds the port when the database restarts.
struct OwnDatabase {
    port: String,
}

impl OwnDatabase {
    fn start(port: u16) -> (Self, String) {
        let db = OwnDatabase { port: port.to_string() };
        let out = db.pg("start");
        let server = String::from_utf8(out).expect("utf-8").trim().to_string();
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("admin connection");
        admin.batch_execute("DROP DATABASE IF EXISTS vq_fault WITH (FORCE)").expect("drop");
        admin.batch_execute("CREATE DATABASE vq_fault").expect("create");
        (db, testing::database_url(&server, "vq_fault"))
    }

    fn pg(&self, action: &str) -> Vec<u8> {
        let out =
            Command::new(common::repo().join("scripts/pg.sh")).arg(action).env("VQ_PG_PORT", &self.port).output().expect("scripts/pg.sh");
        assert!(out.status.success(), "pg.sh {action}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn rows(&self, url: &str, sql: &str) -> i64 {
        let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connection");
        client.query_one(sql, &[]).expect("query").get(0)
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        let _ = Command::new(common::repo().join("scripts/pg.sh")).arg("stop").env("VQ_PG_PORT", &self.port).output();
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn losing_the_database_is_a_503_with_retry_after_and_service_resumes_by_itself() {
    let (db, url) = OwnDatabase::start(25491);
    let images = tempfile::tempdir().expect("images");
    let server = Server::start_sharing(images.path(), &["--store", &url]);
    server.wait_ready();
    let photos = photos();
    let kept = server.add_image(&photos[0], "kept.jpg");
    let id = server.ingest(&kept)["id"].as_str().expect("id").to_string();

    db.pg("kill");
    wait_until("/ready turns 503", Duration::from_secs(15), || server.get("/ready").status() == 503);
    let health: Value = server.get("/health").json().expect("json");
    assert_eq!(health["index"]["reachable"], false, "{health}");
    assert!(health["index"]["error"].is_string(), "{health}");
    for r in [
        server.post_json("/search", &json!({ "query": "a dog", "top_k": 3 })),
        server.post_json("/search", &json!({ "image_id": id, "top_k": 3 })),
        server.post_json("/ingest/image", &json!({ "path": server.add_image(&photos[1], "while-down.jpg") })),
        server.get("/images"),
    ] {
        let status = r.status();
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_string());
        let body: Value = r.json().expect("a JSON error body");
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
        assert!(retry.is_some(), "503 carries Retry-After");
    }

    db.pg("start");
    wait_until("/ready is 200 again", Duration::from_secs(30), || server.get("/ready").status() == 200);
    assert_eq!(search_by_image(&server, &id, 1), vec![id.clone()], "the acknowledged ingest is still there");
    let again = server.add_image(&photos[1], "after.jpg");
    server.ingest(&again);
    assert_eq!(db.rows(&url, "SELECT count(*) FROM vq_images"), 2);
}

#[test]
fn a_directory_job_outlives_a_database_restart_with_every_file_once() {
    let (db, url) = OwnDatabase::start(25492);
    let images = tempfile::tempdir().expect("images");
    let server = Server::start_sharing(images.path(), &["--store", &url, "--max-batch", "2"]);
    server.wait_ready();
    let folder = images.path().join("album");
    let photos = photos();
    for (i, photo) in photos.iter().enumerate() {
        server.add_image(photo, &format!("album/{i:02}.jpg"));
    }
    let r = server.post_json("/ingest/directory", &json!({ "path": folder }));
    assert_eq!(r.status(), 202);
    let job_id = r.json::<Value>().expect("json")["id"].as_str().expect("job id").to_string();
    // Kill the database while the job runs (after its first files are in).
    wait_until("the job starts indexing", Duration::from_secs(60), || db.rows(&url, "SELECT count(*) FROM vq_images") > 0);
    db.pg("kill");
    std::thread::sleep(Duration::from_secs(3));
    db.pg("start");
    wait_until("the job completes", Duration::from_secs(120), || {
        server.get(&format!("/jobs/{job_id}")).json::<Value>().is_ok_and(|j| j["state"] == "completed")
    });
    let job: Value = server.get(&format!("/jobs/{job_id}")).json().expect("json");
    assert_eq!(job["failed"], 0, "no file failed because the database was away: {job}");
    assert_eq!(db.rows(&url, "SELECT count(*) FROM vq_images"), photos.len() as i64, "the index is complete, one row per file");
    assert_eq!(db.rows(&url, "SELECT count(DISTINCT path) FROM vq_images"), photos.len() as i64);
}

fn job(server: &Server, id: &str) -> Value {
    server.get(&format!("/jobs/{id}")).json().expect("job JSON")
}

/// `vq_image_decodes_total{purpose="ingest"}` of one server.
fn ingest_decodes(server: &Server) -> u64 {
    let text = server.get("/metrics").text().expect("metrics");
    text.lines()
        .find(|l| l.starts_with("vq_image_decodes_total") && l.contains("purpose=\"ingest\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn album(server: &Server) -> (PathBuf, usize) {
    let photos = photos();
    for (i, photo) in photos.iter().enumerate() {
        server.add_image(photo, &format!("album/{i:02}.jpg"));
    }
    (server.image_root.join("album"), photos.len())
}

#[test]
fn a_job_reads_the_same_on_every_replica_and_a_cancel_on_one_stops_them_all() {
    let p = pair("replicas_job_cancel", &["--max-batch", "1", "--job-lease-secs", "3"]);
    let (folder, _) = album(&p.a);
    let r = p.a.post_json("/ingest/directory", &json!({ "path": folder }));
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().expect("json")["id"].as_str().expect("job id").to_string();
    assert_eq!(job(&p.b, &id)["id"], id.as_str(), "B knows the job A accepted");
    wait_until("the job is listed", Duration::from_secs(60), || job(&p.b, &id)["total"].as_u64().unwrap_or(0) > 0);
    let (on_a, on_b) = (job(&p.a, &id), job(&p.b, &id));
    assert_eq!(on_a["total"], on_b["total"]);
    assert_eq!(on_a["path"], on_b["path"]);

    let r = p.b.post(&format!("/jobs/{id}/cancel"));
    assert!(r.status().is_success());
    wait_until("both replicas show it cancelled", Duration::from_secs(30), || {
        job(&p.a, &id)["state"] == "cancelled" && job(&p.b, &id)["state"] == "cancelled"
    });
    let done = job(&p.a, &id)["done"].as_u64().expect("done");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(job(&p.b, &id)["done"].as_u64(), Some(done), "no replica keeps working a cancelled job");
    assert_eq!(job(&p.a, &id), job(&p.b, &id), "the same answer on every replica");
}

#[test]
fn when_the_replica_working_a_job_is_killed_another_finishes_it_without_embedding_twice() {
    let url = testing::fresh_database("replicas_job_takeover");
    let root = tempfile::tempdir().expect("shared folder");
    let images = root.path().join("images");
    let args = ["--store", url.as_str(), "--max-batch", "1", "--job-lease-secs", "3"];
    let mut a = Server::start_sharing(&images, &args);
    a.wait_ready();
    let (folder, files) = album(&a);
    let r = a.post_json("/ingest/directory", &json!({ "path": folder }));
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().expect("json")["id"].as_str().expect("job id").to_string();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connection");
    let mut rows = || db.query_one("SELECT count(*) FROM vq_images", &[]).expect("count").get::<_, i64>(0) as u64;
    wait_until("A indexes its first files", Duration::from_secs(60), || rows() >= 2);
    a.kill();
    let indexed_before = rows();
    assert!(indexed_before < files as u64, "A was killed mid-job");

    let b = Server::start_sharing(&images, &args);
    b.wait_ready();
    wait_until("B finishes the job after A's lease expires", Duration::from_secs(120), || job(&b, &id)["state"] == "completed");
    let finished = job(&b, &id);
    assert_eq!(finished["done"].as_u64(), Some(files as u64), "{finished}");
    assert_eq!(finished["failed"], 0, "{finished}");
    assert_eq!(rows(), files as u64, "every file once");
    assert_eq!(ingest_decodes(&b), files as u64 - indexed_before, "B embedded only what A had not written");
}

/// `visionquery serve` with `--store url`: its exit status and stderr (it must exit by itself).
fn serve_fails_with(url: &str) -> String {
    let data = tempfile::tempdir().expect("data dir");
    let out = Command::new(env!("CARGO_BIN_EXE_visionquery"))
        .args(["serve", "--model"])
        .arg(common::tiny_model())
        .arg("--data-dir")
        .arg(data.path())
        .args(["--port", &common::server::free_port().to_string(), "--store", url])
        .output()
        .expect("running visionquery");
    assert!(!out.status.success(), "serve must refuse {url}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_bad_store_url_password_or_missing_pgvector_stops_the_start_with_a_clear_error() {
    let err = serve_fails_with("postgres://vq@127.0.0.1:notaport/db");
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
    let err = serve_fails_with("mysql://vq@127.0.0.1/db");
    assert!(err.contains("postgres://"), "{err}");

    let server = testing::server_url();
    let wrong = server.replacen("vqpg:vqpg@", "vqpg:wrong@", 1);
    let err = serve_fails_with(&wrong);
    assert!(err.contains("refused the credentials of user `vqpg`"), "{err}");
    assert!(!err.contains("wrong@"), "the password is not echoed: {err}");

    // A user who may not enable pgvector, on a database without it.
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("admin");
    admin.batch_execute("DROP DATABASE IF EXISTS vq_no_vector WITH (FORCE)").expect("drop");
    admin.batch_execute("CREATE DATABASE vq_no_vector").expect("create");
    admin
        .batch_execute("DROP ROLE IF EXISTS vq_plain; CREATE ROLE vq_plain LOGIN PASSWORD 'plain'; GRANT ALL ON DATABASE vq_no_vector TO vq_plain; ALTER DATABASE vq_no_vector OWNER TO vq_plain")
        .expect("role");
    let plain = testing::database_url(&server, "vq_no_vector").replacen("vqpg:vqpg@", "vq_plain:plain@", 1);
    let err = serve_fails_with(&plain);
    assert!(err.contains("CREATE EXTENSION vector"), "says how to enable pgvector: {err}");
}

fn cli(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_visionquery"));
    command.args(args);
    for var in ["VQ_LOG", "VQ_STORE", "DATABASE_URL", "VQ_IMAGE_ROOTS"] {
        command.env_remove(var);
    }
    command.output().expect("running visionquery")
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_cli_indexes_searches_and_migrates_with_the_same_store_flag() {
    let url = testing::fresh_database("cli_store_flag");
    let tmp = tempfile::tempdir().expect("temp");
    let folder = tmp.path().join("photos");
    std::fs::create_dir_all(&folder).expect("folder");
    for photo in photos().iter().take(5) {
        std::fs::copy(photo, folder.join(photo.file_name().expect("name"))).expect("copy");
    }
    let model = common::tiny_model();
    let model = model.to_str().expect("utf-8");
    let (embedded, copy) = (tmp.path().join("index"), tmp.path().join("copy"));
    let (embedded, copy) = (embedded.to_str().expect("utf-8"), copy.to_str().expect("utf-8"));
    let folder = folder.to_str().expect("utf-8");

    // Index into PostgreSQL with --store, and into an embedded index.
    assert!(ok(&cli(&["index", folder, "--model", model, "--store", &url])).contains("indexed 5"));
    ok(&cli(&["index", folder, "--model", model, "--data-dir", embedded]));
    let search = |extra: &[&str]| -> Value {
        let mut args = vec!["search", "a photo", "--json", "-k", "5", "--model", model];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&cli(&args))).expect("search --json")
    };
    let ids = |v: &Value| v["results"].as_array().expect("results").iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
    let in_postgres = search(&["--store", &url]);
    assert_eq!(ids(&in_postgres), ids(&search(&["--data-dir", embedded])), "same ranking in both stores");
    assert_eq!(ids(&in_postgres).len(), 5);

    // PostgreSQL -> a new embedded index, without re-embedding: the same answers.
    let out = ok(&cli(&["migrate", "--from", &url, "--to", copy]));
    assert!(out.contains("copied 5 images"), "{out}");
    assert_eq!(ids(&search(&["--data-dir", copy])), ids(&in_postgres));
    // Copying into a store bound to another model is refused.
    let other = testing::fresh_database("cli_store_other");
    let mut client = postgres::Client::connect(&other, postgres::NoTls).expect("connection");
    drop(visionquery::store::PgStore::connect(visionquery::store::PgOptions::new(other.clone())).expect("schema"));
    client.batch_execute("INSERT INTO vq_meta (key, value) VALUES ('model', 'some-other-model')").expect("bind");
    let refused = cli(&["migrate", "--from", embedded, "--to", &other]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("some-other-model"), "{}", String::from_utf8_lossy(&refused.stderr));
}
