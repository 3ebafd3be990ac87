//! Changing the model without losing search: `serve --model NEW --reembed` (and `POST /reindex`)
//! builds a new index generation in the background while every search is answered from the old
//! one with the old model; it becomes current in one step, survives `kill -9` mid-way, and a
//! rollback goes back. Real servers, real photos, the CLIP and SigLIP fixture models; the
//! PostgreSQL case on a real PostgreSQL with pgvector.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::Server;
use serde_json::{json, Value};

/// Score tolerance against f32 references for vectors kept as `halfvec` (PostgreSQL).
const HALF: f64 = 3e-3;

const QUERY: &str = "a dog running on the beach";

/// How long a build may take. Builds run at background priority, so while the other tests of
/// this file (or anything else) keep both cores busy they get little CPU: a generous limit that
/// only a build that never ends reaches.
const BUILD_LIMIT: Duration = Duration::from_secs(300);

fn clip() -> PathBuf {
    common::tiny_model()
}

fn siglip() -> PathBuf {
    common::fixtures().join("tiny-siglip")
}

/// Id -> score of every indexed image for [`QUERY`] (top_k above the index size).
fn scores(server: &Server) -> HashMap<String, f64> {
    let r = server.post_json("/search", &json!({ "query": QUERY, "top_k": 1000 }));
    assert_eq!(r.status(), 200, "search answers throughout");
    let body: Value = r.json().expect("json");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| (h["id"].as_str().expect("id").to_string(), h["score"].as_f64().expect("score")))
        .collect()
}

/// Which reference every score of `got` comes from: `Some(name)` when all of them match it.
fn made_by<'a>(got: &HashMap<String, f64>, references: &[(&'a str, &HashMap<String, f64>)]) -> Option<&'a str> {
    made_by_within(got, references, 1e-4)
}

/// As [`made_by`], within `tolerance` (PostgreSQL keeps vectors as `halfvec`: about 1e-3).
fn made_by_within<'a>(got: &HashMap<String, f64>, references: &[(&'a str, &HashMap<String, f64>)], tolerance: f64) -> Option<&'a str> {
    references.iter().find_map(|(name, reference)| {
        let all = got.iter().all(|(id, score)| reference.get(id).is_some_and(|r| (r - score).abs() < tolerance));
        all.then_some(*name)
    })
}

/// `count` distinct JPEGs made from the committed photos (bytes appended after the end of the
/// image change the content hash, not the picture), in `dir`.
fn distinct_photos(dir: &Path, count: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("folder");
    let photos = common::committed_photos();
    (0..count)
        .map(|i| {
            let mut bytes = std::fs::read(&photos[i % photos.len()]).expect("photo");
            bytes.extend_from_slice(format!("copy {i}").as_bytes());
            let path = dir.join(format!("{i:04}.jpg"));
            std::fs::write(&path, bytes).expect("write");
            path
        })
        .collect()
}

fn generations(server: &Server) -> Value {
    let r = server.get("/reindex");
    assert_eq!(r.status(), 200);
    r.json().expect("json")
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Threads of process `pid` running at lowered priority (nice > 0), other than the background
/// pool's, which decodes for builds and stays lowered by design.
fn lowered_threads(pid: u32) -> Vec<String> {
    let mut lowered = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads").flatten() {
        // A thread that ended meanwhile has no stat to read.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // "tid (name) state ...": the name may hold spaces; nice is field 19, the 17th after the name.
        let (head, rest) = stat.rsplit_once(')').expect("a stat line");
        let name = head.split_once('(').map_or("", |(_, name)| name);
        let nice: i64 = rest.split_whitespace().nth(16).and_then(|n| n.parse().ok()).expect("the nice field");
        if nice > 0 && !name.starts_with("background-") {
            lowered.push(format!("{name} (nice {nice})"));
        }
    }
    lowered
}

/// Once a build is served, its model runs at normal priority with every thread: the build's
/// niced copy is gone.
fn served_at_full_priority(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lowered = lowered_threads(server.pid());
    while !lowered.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        lowered = lowered_threads(server.pid());
    }
    assert!(lowered.is_empty(), "{}: threads still at background priority after the switch: {lowered:?}", server.url);
}

/// The scores a server running `model` alone gives for the same files.
fn reference_scores(model: &Path, files: &[PathBuf]) -> HashMap<String, f64> {
    let server = Server::start_with(model, &[]);
    server.wait_ready();
    for (i, file) in files.iter().enumerate() {
        let copy = server.add_image(file, &format!("{i:04}.jpg"));
        server.ingest(&copy);
    }
    scores(&server)
}

fn indexed(server: &Server, count: usize) -> Vec<PathBuf> {
    let files = distinct_photos(&server.image_root.join("album"), count);
    for file in &files {
        server.ingest(file);
    }
    files
}

#[test]
fn another_model_is_still_refused_without_reembed() {
    let mut server = Server::start();
    server.wait_ready();
    indexed(&server, 2);
    server.kill();
    server.model = siglip();
    server.start_again();
    let r = server.post_json("/search", &json!({ "query": QUERY }));
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "model_mismatch");
}

#[test]
fn a_reembed_switches_models_in_the_background_and_no_search_mixes_them() {
    let mut server = Server::start();
    server.wait_ready();
    let files = indexed(&server, 12);
    let late = distinct_photos(&server.image_root.join("late"), 14).pop().expect("a late photo");
    let before = scores(&server);
    assert_eq!(before.len(), 12);
    let mut all = files.clone();
    all.push(late.clone());
    let clip_scores = reference_scores(&clip(), &all);
    let siglip_scores = reference_scores(&siglip(), &all);
    assert_ne!(made_by(&before, &[("siglip", &siglip_scores)]), Some("siglip"), "the models score differently");

    server.kill();
    server.model = siglip();
    server.extra_args.extend(["--reembed".into(), "--max-batch".into(), "1".into()]);
    server.start_again();
    let started = generations(&server);
    let job_id = started["reembed"]["job_id"].as_str().map(str::to_string);

    // Every answer, however the build is going, is wholly one model's: never empty, never mixed.
    let mut answers = Vec::new();
    let mut ingested_late = false;
    let gone = files[0].clone();
    let gone_id = server.ingest(&gone)["id"].as_str().expect("id").to_string();
    wait_until("the new generation becomes current", BUILD_LIMIT, || {
        let got = scores(&server);
        assert!(!got.is_empty(), "search never returns an empty index");
        let model = made_by(&got, &[("clip", &clip_scores), ("siglip", &siglip_scores)]);
        assert!(model.is_some(), "one model's scores per answer: {got:?}");
        answers.push(model.expect("checked"));
        if !ingested_late {
            // Ingests and deletes during the build are carried into the new generation.
            server.ingest(&late);
            assert_eq!(server.delete(&format!("/images/{gone_id}")).status(), 200);
            ingested_late = true;
        }
        generations(&server)["current"]["name"] == "g1"
    });
    assert_eq!(answers[0], "clip", "the old model answers while the new generation is built");

    let after = scores(&server);
    assert_eq!(made_by(&after, &[("siglip", &siglip_scores)]), Some("siglip"));
    let late_id = server.ingest(&late)["id"].as_str().expect("id").to_string();
    assert!(after.contains_key(&late_id), "the photo ingested during the build is in the new generation");
    assert!(!after.contains_key(&gone_id), "the image deleted during the build is not");
    assert_eq!(after.len(), 12);
    let health: Value = server.get("/health").json().expect("json");
    assert_eq!(health["index"]["generation"], "g1");
    assert!(health["model"]["source"].as_str().expect("source").ends_with("tiny-siglip"));
    served_at_full_priority(&server);
    if let Some(job_id) = job_id {
        let job: Value = server.get(&format!("/jobs/{job_id}")).json().expect("job");
        assert_eq!(job["kind"], "reembed");
        assert_eq!(job["state"], "completed");
        assert_eq!(job["failed"], 0, "{job}");
    }
    let generations_now = generations(&server);
    assert_eq!(generations_now["previous"]["name"], "main");
    assert!(generations_now["reembed"].is_null());

    // One step back: the old generation with the old model, as it was at the switch.
    let r = server.post("/reindex/rollback");
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    let rolled = scores(&server);
    assert_eq!(made_by(&rolled, &[("clip", &clip_scores)]), Some("clip"));
    assert!(!rolled.contains_key(&gone_id));
    assert_eq!(generations(&server)["current"]["name"], "main");
    assert_eq!(generations(&server)["previous"]["name"], "g1");

    // After a restart with the model of the rolled-back generation, it is served as it was.
    server.kill();
    server.model = clip();
    server.extra_args.clear();
    server.start_again();
    assert_eq!(made_by(&scores(&server), &[("clip", &clip_scores)]), Some("clip"));
}

#[test]
fn a_reembed_killed_mid_way_resumes_at_restart_and_leaves_nothing_out() {
    let mut server = Server::start();
    server.wait_ready();
    let files = distinct_photos(&server.image_root.join("album"), 300);
    let r = server.post_json("/ingest/directory", &json!({ "path": server.image_root.join("album") }));
    assert_eq!(r.status(), 202);
    let job: Value = r.json().expect("job");
    let first_job = job["id"].as_str().expect("id").to_string();
    wait_until("the album is indexed", Duration::from_secs(300), || {
        server.get(&format!("/jobs/{first_job}")).json::<Value>().expect("job")["state"] == "completed"
    });
    assert_eq!(server.image_count(), 300);

    server.kill();
    server.model = siglip();
    server.extra_args.extend(["--reembed".into(), "--max-batch".into(), "1".into(), "--job-lease-secs".into(), "2".into()]);
    server.start_again();
    let job_id = generations(&server)["reembed"]["job_id"].as_str().expect("a re-embed in progress").to_string();
    wait_until("the re-embed is part-way", BUILD_LIMIT, || {
        let job: Value = server.get(&format!("/jobs/{job_id}")).json().expect("job");
        job["done"].as_u64().unwrap_or(0) >= 20
    });
    let job: Value = server.get(&format!("/jobs/{job_id}")).json().expect("job");
    assert!(job["done"].as_u64().expect("done") < 300, "killed before the end: {job}");
    server.kill();

    server.start_again();
    // Searches are answered at once, from the old generation (the old model's scores).
    let during = scores(&server);
    assert_eq!(during.len(), 300, "the old generation keeps answering in full");
    wait_until("the resumed re-embed completes", Duration::from_secs(300), || generations(&server)["current"]["name"] == "g1");
    let job: Value = server.get(&format!("/jobs/{job_id}")).json().expect("job");
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["done"], 300);
    assert_eq!(job["failed"], 0);
    let after = scores(&server);
    assert_eq!(after.len(), 300, "every image is in the new generation");
    let siglip_scores = reference_scores(&siglip(), &files[..10]);
    for (id, score) in &siglip_scores {
        assert!((after[id] - score).abs() < 1e-4, "{id}: {} vs {score}", after[id]);
    }
}

#[test]
fn reindex_over_http_starts_a_build_and_says_what_it_does() {
    let mut server = Server::start();
    server.wait_ready();
    indexed(&server, 3);
    for model in ["/no/such/model", "google/siglip-base-patch16-224"] {
        let r = server.post_json("/reindex", &json!({ "model": model }));
        assert_eq!(r.status(), 422, "{model}: a directory on the server, never a download");
        assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "cannot_reembed");
    }
    let r = server.post_json("/reindex", &json!({ "model": common::fixtures() }));
    assert_eq!(r.status(), 422, "a directory without the model files");
    let r = server.post_json("/reindex", &json!({ "precision": "half" }));
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "invalid_json");
    let r = server.post("/reindex");
    assert_eq!(r.status(), 409, "the index already uses the server's model");
    assert_eq!(r.json::<Value>().expect("json")["error"]["code"], "nothing_to_reembed");
    assert_eq!(server.post("/reindex/rollback").status(), 409, "nothing to roll back to");

    let r = server.post_json("/reindex", &json!({ "model": siglip() }));
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    let started: Value = r.json().expect("json");
    assert_eq!(started["reembed"]["generation"], "g1");
    assert_eq!(started["job"]["kind"], "reembed");
    let again = server.post_json("/reindex", &json!({ "model": siglip() }));
    assert!(matches!(again.status().as_u16(), 409), "one re-embed at a time");
    wait_until("the build completes", BUILD_LIMIT, || generations(&server)["current"]["name"] == "g1");
    assert_eq!(scores(&server).len(), 3);
    // A second switch drops the generation before the previous one.
    let r = server.post_json("/reindex", &json!({ "model": clip() }));
    assert_eq!(r.status(), 202);
    wait_until("the second build completes", BUILD_LIMIT, || generations(&server)["current"]["name"] == "g2");
    assert_eq!(generations(&server)["previous"]["name"], "g1");
    assert_eq!(scores(&server).len(), 3);

    // The command line shows the generations and rolls back with the server stopped.
    server.kill();
    let data_dir = server.data_dir.clone();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_visionquery"))
            .arg("reindex")
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .expect("visionquery reindex");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, stdout, _) = cli(&["--json"]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!((shown["current"]["name"].as_str(), shown["previous"]["name"].as_str()), (Some("g2"), Some("g1")));
    let (ok, stdout, stderr) = cli(&["--rollback"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("rolled back") && stdout.contains("tiny-siglip"), "says which model to serve now: {stdout}");
    server.model = siglip();
    server.start_again();
    assert_eq!(generations(&server)["current"]["name"], "g1");
    assert_eq!(scores(&server).len(), 3, "g1 is served again, with its own model");
    server.kill();
    let (ok, _, stderr) = cli(&["--rollback"]);
    assert!(ok, "{stderr}");
    let (_, stdout, _) = cli(&["--json"]);
    let shown: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(shown["current"]["name"], "g2", "a second rollback goes forward again");
}

#[test]
fn cancelling_the_reembed_job_abandons_the_build_and_keeps_the_index() {
    let server = Server::start_with(&clip(), &["--max-batch", "1"]);
    server.wait_ready();
    let r = server.post_json("/ingest/directory", &json!({ "path": server.image_root.join("album") }));
    assert_eq!(r.status(), 404, "no album yet");
    distinct_photos(&server.image_root.join("album"), 200);
    let r = server.post_json("/ingest/directory", &json!({ "path": server.image_root.join("album") }));
    let first = r.json::<Value>().expect("job")["id"].as_str().expect("id").to_string();
    wait_until("indexed", Duration::from_secs(300), || {
        server.get(&format!("/jobs/{first}")).json::<Value>().expect("job")["state"] == "completed"
    });
    let before = scores(&server);

    let r = server.post_json("/reindex", &json!({ "model": siglip() }));
    assert_eq!(r.status(), 202);
    let job_id = r.json::<Value>().expect("json")["job"]["id"].as_str().expect("id").to_string();
    assert_eq!(server.post(&format!("/jobs/{job_id}/cancel")).status(), 200);
    wait_until("the build is abandoned", Duration::from_secs(60), || generations(&server)["reembed"].is_null());
    assert_eq!(generations(&server)["current"]["name"], "main");
    assert_eq!(scores(&server), before, "the index and its model are as they were");
    assert!(!server.data_dir.join("generations/g1").exists(), "the abandoned generation's files are removed");
}

#[test]
fn on_postgresql_a_reembed_switches_every_replica_and_keeps_what_they_ingest() {
    let url = visionquery::store::postgres::testing::fresh_database("reembed_replicas");
    let root = tempfile::tempdir().expect("shared folder");
    let images = root.path().join("images");
    let args = ["--store", url.as_str(), "--max-batch", "1"];
    let mut a = Server::start_sharing(&images, &args);
    let b = Server::start_sharing(&images, &args);
    a.wait_ready();
    b.wait_ready();
    let files = indexed(&a, 10);
    let late = distinct_photos(&images.join("late"), 12).pop().expect("a late photo");
    let mut all = files.clone();
    all.push(late.clone());
    let clip_scores = reference_scores(&clip(), &all);
    let siglip_scores = reference_scores(&siglip(), &all);

    a.kill();
    a.model = siglip();
    a.extra_args.push("--reembed".into());
    a.start_again();
    let job_id = generations(&a)["reembed"]["job_id"].as_str().expect("a re-embed in progress").to_string();
    // Replica B (started with the old model) follows the pointer: it answers with one model at
    // a time throughout, takes ingests meanwhile, and ends on the new generation.
    let late_id = b.ingest(&late)["id"].as_str().expect("id").to_string();
    wait_until("replica B follows the switch", BUILD_LIMIT, || {
        let got = scores(&b);
        assert!(
            made_by_within(&got, &[("clip", &clip_scores), ("siglip", &siglip_scores)], HALF).is_some(),
            "one model per answer: {got:?}"
        );
        b.get("/health").json::<Value>().expect("json")["index"]["generation"] == "g1"
    });
    // Replicas follow the pointer within a second or so.
    wait_until("replica A serves the new generation too", Duration::from_secs(30), || {
        a.get("/health").json::<Value>().expect("json")["index"]["generation"] == "g1"
    });
    for server in [&a, &b] {
        let got = scores(server);
        assert_eq!(got.len(), 11, "every image, the late one included");
        assert!(got.contains_key(&late_id));
        let off: Vec<_> =
            got.iter().filter(|(id, s)| (siglip_scores[*id] - *s).abs() >= HALF).map(|(id, s)| (id, s, siglip_scores[id])).collect();
        assert!(off.is_empty(), "{}: scores not the new model's: {off:?}", server.url);
    }
    for server in [&a, &b] {
        served_at_full_priority(server);
        let job: Value = server.get(&format!("/jobs/{job_id}")).json().expect("job");
        assert_eq!((job["state"].as_str(), job["done"].as_u64(), job["failed"].as_u64()), (Some("completed"), Some(10), Some(0)), "{job}");
    }
}
