//! Bulk and upload ingestion, image-to-image search, listing, deletion and thumbnails, against
//! a real server process.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::Server;
use common::*;
use serde_json::{json, Value};

fn shared_photo_names(n: usize) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(shared_photos())
        .expect("shared photos")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    names.truncate(n);
    names
}

/// `n` distinct real photos in `folder`: the committed photos, and beyond them the same photos
/// with distinct trailing bytes after the JPEG end marker (the same picture, another content
/// hash). The same `n` always gives the same files.
fn copy_photos(server: &Server, folder: &str, n: usize) -> Vec<String> {
    let sources = shared_photo_names(usize::MAX);
    let names: Vec<String> = (0..n).map(|i| format!("photo_{i:04}.jpg")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut bytes = std::fs::read(shared_photos().join(&sources[i % sources.len()])).unwrap();
        if i >= sources.len() {
            bytes.extend_from_slice(format!("copy {i}").as_bytes());
        }
        let dest = server.image_root.join(folder).join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
    names
}

fn wait_job(server: &Server, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job: Value = server.get(&format!("/jobs/{id}")).json().unwrap();
        if until(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job did not reach the expected state: {job}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn finished(job: &Value) -> bool {
    ["completed", "cancelled", "failed"].contains(&job["state"].as_str().unwrap())
}

fn status_and_body(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().expect("JSON body"))
}

#[test]
fn a_directory_job_indexes_everything_reports_failures_and_skips_unchanged_files_next_time() {
    let server = Server::start();
    server.wait_ready();
    let names = copy_photos(&server, "album/2024", 30);
    std::fs::write(server.image_root.join("album/broken.jpg"), b"not a jpeg at all").unwrap();
    std::fs::write(server.image_root.join("album/notes.txt"), b"ignored: not an image name").unwrap();

    let (status, job) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "album", "recursive": true })));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = wait_job(&server, &id, finished);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["total"], names.len() + 1);
    assert_eq!(job["done"], names.len() + 1);
    assert_eq!(job["indexed"], names.len());
    assert_eq!(job["failed"], 1);
    let failure = &job["failures"][0];
    assert!(failure["path"].as_str().unwrap().ends_with("broken.jpg"));
    assert!(!failure["error"].as_str().unwrap().is_empty());
    assert_eq!(server.image_count(), names.len() as u64);

    // Without --recursive only the top level is read.
    let (_, flat) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "album" })));
    let flat = wait_job(&server, flat["id"].as_str().unwrap(), finished);
    assert_eq!(flat["total"], 1, "{flat}");

    // A second run over the same folder skips every unchanged file.
    let (_, again) =
        status_and_body(server.post_json("/ingest/directory", &json!({ "path": server.image_root.join("album"), "recursive": true })));
    let again = wait_job(&server, again["id"].as_str().unwrap(), finished);
    assert_eq!(again["indexed"], 0, "{again}");
    assert_eq!(again["skipped"], names.len());

    let jobs: Value = server.get("/jobs").json().unwrap();
    assert_eq!(jobs["jobs"][0]["id"], again["id"], "newest first");
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 3);

    let metrics = server.get("/metrics").text().unwrap();
    assert!(metrics.contains(&format!("vq_ingest_job_files_total{{outcome=\"indexed\"}} {}", names.len())), "{metrics}");
    assert!(metrics.contains(&format!("vq_ingest_job_files_total{{outcome=\"skipped\"}} {}", names.len())));
}

#[test]
fn directory_jobs_are_confined_to_the_roots_and_unknown_jobs_are_404() {
    let server = Server::start();
    server.wait_ready();
    let outside = server.image_root.parent().unwrap().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let cases = [
        (json!({ "path": outside }), 403),
        (json!({ "path": "../elsewhere" }), 403),
        (json!({ "path": "no-such-folder" }), 404),
        (json!({ "path": "" }), 400),
        (json!({ "path": "a", "recursive": "yes" }), 422),
    ];
    for (body, status) in cases {
        let (got, error) = status_and_body(server.post_json("/ingest/directory", &body));
        assert_eq!(got, status, "{body}: {error}");
        assert!(error["error"]["message"].is_string());
    }
    server.add_image(&image_path("baseline.jpg"), "one.jpg");
    let (status, error) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "one.jpg" })));
    assert_eq!((status, error["error"]["code"].as_str()), (400, Some("invalid_path")));
    let (status, error) = status_and_body(server.get("/jobs/nope"));
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("job_not_found")));
    assert_eq!(server.post("/jobs/nope/cancel").status(), 404);
    assert_eq!(server.delete("/jobs/nope").status(), 404);
}

#[test]
fn jobs_can_be_cancelled_queued_or_running() {
    let server = Server::start_with(&tiny_model(), &["--max-batch", "1"]);
    server.wait_ready();
    copy_photos(&server, "many", 200);
    let (_, running) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "many" })));
    let (_, queued) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "many" })));
    let queued_id = queued["id"].as_str().unwrap();
    let (status, refused) = status_and_body(server.delete(&format!("/jobs/{queued_id}")));
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("job_unfinished")), "an unfinished job is not deleted: {refused}");
    let (status, cancelled) = status_and_body(server.post(&format!("/jobs/{queued_id}/cancel")));
    assert_eq!(status, 200);
    assert_eq!(cancelled["state"], "cancelled", "a queued job is cancelled at once");
    assert_eq!(cancelled["done"], 0);
    let (status, deleted) = status_and_body(server.delete(&format!("/jobs/{queued_id}")));
    assert_eq!((status, deleted["status"].as_str()), (200, Some("deleted")), "a finished job can be deleted: {deleted}");
    assert_eq!(server.get(&format!("/jobs/{queued_id}")).status(), 404, "a deleted job is gone");

    let id = running["id"].as_str().unwrap();
    let (_, cancelling) = status_and_body(server.post(&format!("/jobs/{id}/cancel")));
    assert!(["cancelling", "cancelled"].contains(&cancelling["state"].as_str().unwrap()), "{cancelling}");
    let job = wait_job(&server, id, finished);
    assert_eq!(job["state"], "cancelled");
    let done = job["done"].as_u64().unwrap();
    assert!(done < 200, "cancelled before the end ({done} of 200)");
    assert_eq!(server.image_count(), job["indexed"].as_u64().unwrap(), "everything counted as indexed is in the index");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.image_count(), job["indexed"].as_u64().unwrap(), "nothing more is ingested after cancelling");
    assert_eq!(server.delete(&format!("/jobs/{id}")).status(), 200);
    assert_eq!(server.image_count(), job["indexed"].as_u64().unwrap(), "deleting a job keeps the images it indexed");
}

#[test]
fn a_job_interrupted_by_a_restart_resumes_where_it_stopped() {
    let mut server = Server::start();
    server.wait_ready();
    let names = copy_photos(&server, "resume", 60);
    let folder = std::fs::canonicalize(server.image_root.join("resume")).unwrap();
    // A job as a server killed after 42 of 60 files leaves it in the index (files finish out
    // of order: 0-40 and 42): the restarted server must do only the 18 others.
    server.kill();
    {
        use visionquery::store::{DoneFile, EmbeddedStore, FileOutcome, JobRecord, JobStore, Listing};
        let store = EmbeddedStore::open(&server.data_dir).unwrap();
        let (killed, lease) = ("the killed server", Duration::from_secs(3600));
        store.create_job(&JobRecord::queued("resumable01".into(), folder.display().to_string(), false), 10).unwrap();
        let listed = store.claim_listing(killed, lease).unwrap().unwrap();
        let paths = names.iter().map(|n| folder.join(n).display().to_string()).collect();
        store.store_listing(&listed.id, killed, &Listing { paths, failures: vec![] }).unwrap();
        let claim = store.claim_chunk(killed, lease).unwrap().unwrap();
        let done: Vec<DoneFile> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 41 || *i == 42)
            .map(|(_, n)| DoneFile::new(folder.join(n).display().to_string(), FileOutcome::Indexed))
            .collect();
        assert_eq!(done.len(), 42);
        store.record_progress(&claim.chunk, killed, lease, &done).unwrap();
    }
    // A job's listing is final: a file added after the folder was listed belongs to the next job
    // on the folder, not to this one (which the user sees finish with the total it showed).
    let late = copy_photos(&server, "late", 61).pop().unwrap();
    std::fs::rename(server.image_root.join("late").join(&late), folder.join("zz_added_after_listing.jpg")).unwrap();
    server.start_again();
    let job = wait_job(&server, "resumable01", finished);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["done"], 60);
    assert_eq!(job["indexed"], 42 + 18);
    assert_eq!(job["total"], 60, "{job}");
    assert_eq!(server.image_count(), 18, "only the files not done before the restart were ingested, and not the late one");
    let skipped: Vec<&String> = names.iter().enumerate().filter(|(i, _)| *i < 41 || *i == 42).map(|(_, n)| n).collect();
    let listed: Value = server.get("/images?limit=1000").json().unwrap();
    let paths: Vec<&str> = listed["images"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert!(skipped.iter().all(|n| !paths.iter().any(|p| p.ends_with(n.as_str()))));

    // And a real kill -9 in the middle of a job loses nothing: after the restart the job
    // finishes and every file is in the index exactly once.
    copy_photos(&server, "crash", 150);
    let (_, job) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "crash" })));
    let id = job["id"].as_str().unwrap().to_string();
    wait_job(&server, &id, |j| j["done"].as_u64().unwrap() >= 5 || finished(j));
    std::thread::sleep(Duration::from_millis(1100));
    server.crash_and_restart();
    let job = wait_job(&server, &id, finished);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["total"], 150);
    assert_eq!(job["done"], 150, "no file counted twice: {job}");
    // The crash/ folder holds the same first 150 photos, 18 of which were indexed from resume/.
    assert_eq!(job["indexed"].as_u64().unwrap() + job["skipped"].as_u64().unwrap(), 150, "{job}");
    assert_eq!(server.image_count(), 150, "every distinct picture exactly once");
}

/// A job longer than one chunk, its server killed with `kill -9` after the first chunk finished
/// and in the middle of the second: the restarted server takes the dead process's leases over at
/// once and finishes the job, every file indexed exactly once.
#[test]
fn a_job_spanning_chunks_survives_kill_9_with_every_file_indexed_once() {
    // Three chunks and more: progress is recorded once a second, so the job must outlast a few of
    // those after its first chunk to be seen running there. One chunk and a bit finished in 1.6 s in
    // a release build (286 files/s), before any progress past the first chunk was visible.
    let files = visionquery::store::jobs::CHUNK_PATHS * 3 + 200;
    let mut server = Server::start_with(&tiny_model(), &["--max-batch", "16"]);
    server.wait_ready();
    // Small files of distinct content, so the test spends its time on jobs, not on decoding.
    let small = std::fs::read(image_path("wide_320x40.jpg")).unwrap();
    std::fs::create_dir_all(server.image_root.join("chunks")).unwrap();
    for i in 0..files {
        let bytes = [small.as_slice(), format!("copy {i}").as_bytes()].concat();
        std::fs::write(server.image_root.join("chunks").join(format!("small_{i:04}.jpg")), bytes).unwrap();
    }
    let (_, job) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "chunks" })));
    let id = job["id"].as_str().unwrap().to_string();
    let first_chunk = visionquery::store::jobs::CHUNK_PATHS as u64;
    let before = wait_job(&server, &id, |j| j["done"].as_u64().unwrap() > first_chunk || finished(j));
    assert_eq!(before["state"], "running", "killed mid-job: {before}");
    server.crash_and_restart();
    let job = wait_job(&server, &id, finished);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!((job["total"].as_u64(), job["done"].as_u64()), (Some(files as u64), Some(files as u64)), "no file counted twice: {job}");
    assert!(job["done"].as_u64() >= before["done"].as_u64(), "nothing recorded was lost: {before} then {job}");
    // Files committed but not yet recorded when the process died count as skipped, not embedded again.
    assert_eq!(job["indexed"].as_u64().unwrap() + job["skipped"].as_u64().unwrap(), files as u64, "{job}");
    let listed: Value = server.get("/images?limit=1000").json().unwrap();
    let mut paths: Vec<&str> = listed["images"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!((paths.len(), server.image_count()), (files, files as u64), "every file in the index exactly once");
}

#[test]
fn uploads_are_stored_content_addressed_and_indexed_with_per_file_errors() {
    let server = Server::start_with(&tiny_model(), &["--max-image-bytes", "400000", "--max-upload-bytes", "3000000"]);
    server.wait_ready();
    let jpeg = std::fs::read(image_path("baseline.jpg")).unwrap();
    let png = std::fs::read(image_path("rgb.png")).unwrap();
    let big = std::fs::read(shared_photos().join(&shared_photo_names(1)[0])).unwrap();
    let mut too_big = big.clone();
    while too_big.len() <= 400_000 {
        too_big.extend_from_slice(&big);
    }
    let (status, body) = status_and_body(server.upload(
        "/ingest/upload",
        &[("holiday.jpg", jpeg.clone()), ("scan.png", png), ("notes.jpg", b"plain text".to_vec()), ("huge.jpg", too_big)],
    ));
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["status"], "ok");
    assert_eq!(results[0]["filename"], "holiday.jpg");
    assert_eq!(results[1]["status"], "ok");
    assert_eq!(results[2]["status"], "error");
    assert_eq!(results[2]["error"]["code"], "unsupported_image");
    assert_eq!(results[3]["error"]["code"], "image_too_large");
    assert_eq!(server.image_count(), 2);

    let id = results[0]["id"].as_str().unwrap();
    let info: Value = server.get(&format!("/images/{id}")).json().unwrap();
    let stored = Path::new(info["path"].as_str().unwrap());
    assert!(stored.starts_with(server.data_dir.join("uploads")), "{info}");
    assert_eq!(stored.file_name().unwrap(), "holiday.jpg", "the stored file keeps the uploaded name");
    assert!(stored.parent().unwrap().ends_with(info["content_hash"].as_str().unwrap()), "in a folder named by its content hash");
    assert_eq!(std::fs::read(stored).unwrap(), jpeg, "bytes stored as uploaded");
    assert_eq!(server.get(&format!("/images/{id}/file")).bytes().unwrap().as_ref(), jpeg.as_slice());

    let (_, again) = status_and_body(server.upload("/ingest/upload", &[("copy.jpg", jpeg)]));
    assert_eq!(again["results"][0]["duplicate"], true);
    assert_eq!(again["results"][0]["id"], id);
    assert_eq!(server.image_count(), 2);

    // An oversized upload is refused from its declared length, before its body is read.
    let (status, error) = oversized_upload(&server.url, 3_100_000);
    assert_eq!((status, error["error"]["code"].as_str()), (413, Some("payload_too_large")), "{error}");
    let c = common::server::client();
    let (status, error) = status_and_body(c.post(format!("{}/ingest/upload", server.url)).json(&json!({ "path": "x" })).send().unwrap());
    assert_eq!((status, error["error"]["code"].as_str()), (415, Some("unsupported_media_type")));
    let empty = reqwest::blocking::multipart::Form::new().text("note", "no files here");
    let (status, _) = status_and_body(c.post(format!("{}/ingest/upload", server.url)).multipart(empty).send().unwrap());
    assert_eq!(status, 422);
    assert_eq!(server.image_count(), 2, "failed uploads left nothing behind");
}

#[test]
fn image_to_image_search_by_id_and_by_uploaded_picture() {
    let server = Server::start();
    server.wait_ready();
    for name in shared_photo_names(12) {
        server.ingest(&server.add_image(&shared_photos().join(&name), &name));
    }
    let target = shared_photo_names(12)[5].clone();
    let id = server.ingest(&server.image_root.join(&target))["id"].as_str().unwrap().to_string();

    let (status, body) = status_and_body(server.post_json("/search", &json!({ "image_id": id, "top_k": 3 })));
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["id"], id.as_str(), "an image is most similar to itself");
    assert!((body["results"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4);
    assert!(body["results"][1]["score"].as_f64().unwrap() < 0.9999);

    // The same picture re-encoded as PNG, uploaded for searching only.
    let decoded = image::open(shared_photos().join(&target)).unwrap();
    let mut png = Vec::new();
    decoded.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let form =
        reqwest::blocking::multipart::Form::new().part("file", reqwest::blocking::multipart::Part::bytes(png).file_name("query.png"));
    let r = common::server::client().post(format!("{}/search/image?top_k=2", server.url)).multipart(form).send().unwrap();
    let (status, body) = status_and_body(r);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["id"], id.as_str());
    assert!(body["results"][0]["score"].as_f64().unwrap() > 0.999);
    assert_eq!(server.image_count(), 12, "searching with a picture does not index it");
}

#[test]
fn listing_pages_through_the_index_and_delete_is_consistent_everywhere() {
    let mut server = Server::start();
    server.wait_ready();
    let mut ids = Vec::new();
    for name in shared_photo_names(7) {
        ids.push(server.ingest(&server.add_image(&shared_photos().join(&name), &name))["id"].as_str().unwrap().to_string());
    }
    let uploaded = std::fs::read(image_path("webp_lossy.webp")).unwrap();
    let (_, up) = status_and_body(server.upload("/ingest/upload", &[("u.webp", uploaded)]));
    let upload_id = up["results"][0]["id"].as_str().unwrap().to_string();
    let upload_path: String = server.get(&format!("/images/{upload_id}")).json::<Value>().unwrap()["path"].as_str().unwrap().into();

    let mut seen = Vec::new();
    for page in 0..3 {
        let list: Value = server.get(&format!("/images?offset={}&limit=3", page * 3)).json().unwrap();
        assert_eq!(list["total"], 8);
        seen.extend(list["images"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()));
    }
    seen.sort();
    let mut all = ids.clone();
    all.push(upload_id.clone());
    all.sort();
    assert_eq!(seen, all);
    assert_eq!(server.get("/images?limit=0").status(), 422);
    assert_eq!(server.get("/images?limit=abc").status(), 400);
    // Ingestion order, newest first by default, as a photo library lists.
    let order = |query: &str| -> Vec<String> {
        let list: Value = server.get(&format!("/images?limit=100{query}")).json().unwrap();
        list["images"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
    };
    let mut ingested = ids.clone();
    ingested.push(upload_id.clone());
    assert_eq!(order("&sort=ingested_at"), ingested);
    ingested.reverse();
    assert_eq!(order(""), ingested);
    assert_eq!(order("&sort=-ingested_at"), ingested);
    assert_eq!(server.get("/images?sort=name").status(), 400);

    // Thumbnails are cached per size, and go away with the image.
    let thumb = server.get(&format!("/images/{}/thumbnail?size=64", ids[0]));
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let small = image::load_from_memory(&thumb.bytes().unwrap()).unwrap();
    assert_eq!(small.width().max(small.height()), 64);
    let cached = server.data_dir.join(format!("thumbnails/{}/{}/64.jpg", &ids[0][..2], ids[0]));
    assert!(cached.exists());
    assert_eq!(server.get(&format!("/images/{}/thumbnail?size=5000", ids[0])).status(), 422);

    let (status, body) = status_and_body(server.delete(&format!("/images/{}", ids[0])));
    assert_eq!((status, body["status"].as_str()), (200, Some("deleted")));
    let (status, _) = status_and_body(server.delete(&format!("/images/{upload_id}")));
    assert_eq!(status, 200);
    assert!(!Path::new(&upload_path).exists(), "an uploaded file is removed with its image");
    assert!(!cached.parent().unwrap().exists());
    assert!(server.image_root.join(&shared_photo_names(1)[0]).exists(), "the user's own file is never deleted");
    for gone in [&ids[0], &upload_id] {
        assert_eq!(server.get(&format!("/images/{gone}")).status(), 404);
        assert_eq!(server.delete(&format!("/images/{gone}")).status(), 404);
    }
    let check = |server: &Server| {
        assert_eq!(server.image_count(), 6);
        let body: Value = server.post_json("/search", &json!({ "query": "anything", "top_k": 100 })).json().unwrap();
        let found: Vec<&str> = body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(found.len(), 6);
        assert!(!found.contains(&ids[0].as_str()) && !found.contains(&upload_id.as_str()));
    };
    check(&server);
    server.crash_and_restart();
    check(&server);
    // Deleted content can be ingested again.
    let again = server.ingest(&server.image_root.join(&shared_photo_names(1)[0]));
    assert_eq!(again["id"], ids[0].as_str());
    assert_eq!(again["duplicate"], false);
}

#[test]
fn moved_and_edited_files_keep_the_index_truthful() {
    let server = Server::start();
    server.wait_ready();
    let a = server.add_image(&image_path("baseline.jpg"), "a.jpg");
    let first = server.ingest(&a);
    let id = first["id"].as_str().unwrap().to_string();
    // Renamed: same content, new path; the image follows its file.
    let b = server.image_root.join("b.jpg");
    std::fs::rename(&a, &b).unwrap();
    let moved = server.ingest(&b);
    assert_eq!((moved["id"].as_str(), moved["duplicate"].as_bool()), (Some(id.as_str()), Some(true)));
    let info: Value = server.get(&format!("/images/{id}")).json().unwrap();
    assert!(info["path"].as_str().unwrap().ends_with("b.jpg"), "{info}");
    assert_eq!(server.get(&format!("/images/{id}/file")).status(), 200);
    // Edited in place: new content replaces the old entry of that path.
    std::fs::copy(image_path("progressive.jpg"), &b).unwrap();
    std::fs::write(&b, std::fs::read(image_path("exif_rot3.jpg")).unwrap()).unwrap();
    let edited = server.ingest(&b);
    assert_ne!(edited["id"].as_str(), Some(id.as_str()));
    assert_eq!(edited["duplicate"], false);
    assert_eq!(server.get(&format!("/images/{id}")).status(), 404, "the old content is gone from the index");
    assert_eq!(server.image_count(), 1);
}

/// Sends upload headers declaring `length` bytes and only the start of the body, then reads the
/// answer (a well-behaved server answers without waiting for the rest).
fn oversized_upload(url: &str, length: usize) -> (u16, Value) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /ingest/upload HTTP/1.1\r\nhost: {address}\r\nx-requested-with: visionquery\r\ncontent-type: multipart/form-data; boundary=XyZ\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n--XyZ\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status: u16 = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("{}");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Regression (issue 14): a resumed job trusted saved positions in a listing made afresh, so a
/// file added or renamed before the restart shifted which files counted as done.
#[test]
fn a_resumed_job_follows_paths_not_positions_after_the_folder_changed() {
    let mut server = Server::start();
    server.wait_ready();
    let names = copy_photos(&server, "album", 30);
    let folder = std::fs::canonicalize(server.image_root.join("album")).unwrap();
    for name in &names[..10] {
        server.ingest(&folder.join(name));
    }
    server.kill();
    // As an earlier version left a job killed after its first ten files (by position).
    let record = json!([{
        "id": "shifted01", "path": folder, "recursive": false, "state": "running", "total": 30, "done": 10,
        "indexed": 10, "skipped": 0, "failed": 0, "failures": [], "error": null,
        "created_at": "2026-01-01T00:00:00Z", "started_at": "2026-01-01T00:00:01Z", "finished_at": null,
        "resume_from": 10, "done_after": []
    }]);
    std::fs::write(server.data_dir.join("jobs.json"), serde_json::to_vec(&record).unwrap()).unwrap();
    // Meanwhile the folder changed: a file added early in the order, one removed, one renamed.
    let extra = copy_photos(&server, "spare", 31).pop().unwrap();
    std::fs::rename(server.image_root.join("spare").join(&extra), folder.join("photo_0000a.jpg")).unwrap();
    std::fs::remove_file(folder.join(&names[5])).unwrap();
    std::fs::rename(folder.join(&names[20]), folder.join("photo_0001b.jpg")).unwrap();
    server.start_again();

    let job = wait_job(&server, "shifted01", finished);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["done"], job["total"], "{job}");
    assert_eq!(job["failed"], 0, "{job}");
    let listed: Value = server.get("/images?limit=1000").json().unwrap();
    let indexed: Vec<&str> = listed["images"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        assert!(indexed.contains(&path.to_str().unwrap()), "{} was never visited: {job}", path.display());
    }
    assert!(!server.data_dir.join("jobs.json").exists(), "old job records are moved into the index once");
}

/// Regression (issue 14): `POST /ingest/directory` queued jobs without bound.
#[test]
fn too_many_waiting_jobs_are_refused_with_429_and_retry_after() {
    let server = Server::start_with(&tiny_model(), &["--max-queued-jobs", "2", "--max-batch", "1"]);
    server.wait_ready();
    copy_photos(&server, "big", 60);
    let answers: Vec<(u16, Option<String>, Value)> = (0..6)
        .map(|_| {
            let r = server.post_json("/ingest/directory", &json!({ "path": "big" }));
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            (status, retry, r.json().unwrap())
        })
        .collect();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(!refused.is_empty(), "six jobs at once with a limit of two: {answers:?}");
    for (_, retry, body) in &refused {
        assert!(retry.is_some(), "429 carries Retry-After");
        assert_eq!(body["error"]["code"], "too_many_jobs");
    }
    for (_, _, job) in answers.iter().filter(|(s, _, _)| *s == 202) {
        let done = wait_job(&server, job["id"].as_str().unwrap(), finished);
        assert_eq!(done["state"], "completed");
        assert!(done["rate"].as_f64().unwrap() > 0.0, "a finished job reports its average rate: {done}");
    }
    // Room again once they finished.
    assert_eq!(server.post_json("/ingest/directory", &json!({ "path": "big" })).status(), 202);
}

/// Regression (issue 14): on `Overloaded` a job retried the whole ingest, reading, hashing and
/// decoding the file again every 20 ms.
#[test]
fn a_busy_model_makes_jobs_retry_only_the_embedding() {
    let server = Server::start_with(&tiny_model(), &["--queue-capacity", "1", "--max-batch", "4"]);
    server.wait_ready();
    copy_photos(&server, "busy", 40);
    let (_, job) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "busy" })));
    let job = wait_job(&server, job["id"].as_str().unwrap(), finished);
    assert_eq!((job["state"].as_str(), job["indexed"].as_u64()), (Some("completed"), Some(40)), "{job}");
    assert_eq!(server.metric("vq_image_decodes_total{purpose=\"ingest\"}"), 40.0, "each file decoded once");
}

/// Regression (issue 14): walk errors were dropped, so unreadable folders went unreported.
#[test]
fn folders_that_cannot_be_read_are_reported_as_failures() {
    let server = Server::start();
    server.wait_ready();
    copy_photos(&server, "deep", 3);
    // A folder nested deeper than PATH_MAX cannot be listed, even by root.
    let status = std::process::Command::new("sh")
        .current_dir(server.image_root.join("deep"))
        .arg("-c")
        .arg("n=$(printf 'd%.0s' $(seq 200)); for i in $(seq 24); do mkdir $n && cd $n || break; done; true")
        .status()
        .unwrap();
    assert!(status.success());
    let (_, job) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "deep", "recursive": true })));
    let job = wait_job(&server, job["id"].as_str().unwrap(), finished);
    assert_eq!(job["indexed"], 3, "{job}");
    assert!(job["failed"].as_u64().unwrap() >= 1, "the unreadable folder is a failure: {job}");
    assert!(job["failures"][0]["error"].as_str().unwrap().contains("cannot read"), "{job}");
}

/// Regression (issue 14): upload dedup took any entry of the content folder as the stored file,
/// including a temp file left by a crash.
#[test]
fn a_temp_file_left_by_a_crashed_upload_is_never_taken_for_the_stored_file() {
    let server = Server::start();
    server.wait_ready();
    let bytes = std::fs::read(image_path("baseline.jpg")).unwrap();
    let hash = blake3_hex(&bytes);
    let folder = server.data_dir.join("uploads").join(&hash[..2]).join(&hash);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(".12345.tmp"), b"half a file").unwrap();
    let (status, body) = status_and_body(server.upload("/ingest/upload", &[("cat.jpg", bytes.clone())]));
    assert_eq!((status, body["results"][0]["status"].as_str()), (200, Some("ok")), "{body}");
    let id = body["results"][0]["id"].as_str().unwrap();
    assert_eq!(server.get(&format!("/images/{id}/file")).bytes().unwrap().as_ref(), bytes.as_slice());
}

/// Regression (issue 14): concurrent uploads of the same picture shared one temp name.
#[test]
fn concurrent_uploads_of_one_picture_store_one_file_and_one_row() {
    // A heavy-request budget above the eight uploads, so none is shed.
    let server = Server::start_with(&tiny_model(), &["--max-heavy-requests", "16"]);
    server.wait_ready();
    let bytes = std::fs::read(image_path("progressive.jpg")).unwrap();
    let ids: Vec<String> = std::thread::scope(|s| {
        let uploads: Vec<_> = (0..8)
            .map(|i| {
                let bytes = bytes.clone();
                let server = &server;
                s.spawn(move || {
                    let (status, body) = status_and_body(server.upload("/ingest/upload", &[(&format!("copy{i}.jpg"), bytes)]));
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["results"][0]["status"], "ok", "{body}");
                    body["results"][0]["id"].as_str().unwrap().to_string()
                })
            })
            .collect();
        uploads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(server.image_count(), 1);
    let hash = blake3_hex(&bytes);
    let folder = server.data_dir.join("uploads").join(&hash[..2]).join(&hash);
    let entries: Vec<String> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert_eq!(entries.len(), 1, "one stored file, no temp files: {entries:?}");
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir.join("uploads"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temp files left in the uploads folder");
}

/// Regression (issue 14): upload records kept the uploads path as configured (relative), so
/// deleting the image never found the stored file.
#[test]
fn uploads_under_a_relative_data_dir_are_recorded_canonically_and_deleted_with_their_image() {
    let server = Server::start_with_relative_data_dir();
    server.wait_ready();
    let (_, body) = status_and_body(server.upload("/ingest/upload", &[("a.png", std::fs::read(image_path("rgb.png")).unwrap())]));
    let id = body["results"][0]["id"].as_str().unwrap().to_string();
    let info: Value = server.get(&format!("/images/{id}")).json().unwrap();
    let stored = PathBuf::from(info["path"].as_str().unwrap());
    assert!(stored.is_absolute(), "{stored:?}");
    assert!(stored.exists());
    assert_eq!(server.delete(&format!("/images/{id}")).status(), 200);
    assert!(!stored.exists(), "the stored upload goes with its image");
}

/// Regression (issue 14): when a path's new content was already indexed under another path, the
/// path's old record stayed searchable.
#[test]
fn new_content_at_a_path_that_is_indexed_elsewhere_retires_the_old_record() {
    let server = Server::start();
    server.wait_ready();
    let names = shared_photo_names(2);
    let p = server.add_image(&shared_photos().join(&names[0]), "p.jpg");
    let q = server.add_image(&shared_photos().join(&names[1]), "q.jpg");
    let old = server.ingest(&p)["id"].as_str().unwrap().to_string();
    let other = server.ingest(&q)["id"].as_str().unwrap().to_string();
    std::fs::copy(&q, &p).unwrap();
    let again = server.ingest(&p);
    assert_eq!((again["id"].as_str(), again["duplicate"].as_bool()), (Some(other.as_str()), Some(true)));
    assert_eq!(server.get(&format!("/images/{old}")).status(), 404, "p.jpg no longer shows the old picture");
    assert_eq!(server.image_count(), 1);
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn issue_14_corrupt_jpegs_get_a_4xx_and_the_server_keeps_serving() {
    let server = Server::start();
    server.wait_ready();
    let jpeg = std::fs::read(image_path("baseline.jpg")).unwrap();
    let refusals = ["corrupt_image", "image_too_large", "unsupported_image"];
    for (name, bytes) in common::jpeg::broken_variants(&jpeg) {
        // Uploaded: the batch answers 200 with a per-file error (a 500 would say "internal").
        let (status, body) = status_and_body(server.upload("/ingest/upload", &[(name, bytes.clone())]));
        assert_eq!(status, 200, "upload {name}: {body}");
        let result = &body["results"][0];
        assert_eq!(result["status"], "error", "upload {name}: {body}");
        assert!(refusals.contains(&result["error"]["code"].as_str().unwrap_or_default()), "upload {name}: {body}");

        // Ingested by path, and used as a search query.
        let path = server.image_root.join(name);
        std::fs::write(&path, &bytes).unwrap();
        for (what, response) in [
            ("path ingest", server.post_json("/ingest/image", &json!({ "path": path }))),
            ("image search", server.upload("/search/image", &[(name, bytes.clone())])),
        ] {
            let (status, body) = status_and_body(response);
            assert!((400..500).contains(&status), "{what} of {name}: {status} {body}");
            assert!(refusals.contains(&body["error"]["code"].as_str().unwrap_or_default()), "{what} of {name}: {body}");
        }
    }
    assert_eq!(server.get("/health").status(), 200);
    assert_eq!(server.get("/ready").status(), 200);
    let valid = server.add_image(&image_path("baseline.jpg"), "valid.jpg");
    assert_eq!(server.ingest(&valid)["duplicate"], false);
    assert_eq!(server.image_count(), 1);
}

/// The last "approximate index loaded" line of the server's log, or the rebuild warning.
fn last_index_origin(server: &Server) -> String {
    let log = server.log_text();
    log.lines()
        .rev()
        .find(|l| l.contains("approximate index loaded") || l.contains("rebuilding the approximate index"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn after_kill_9_the_approximate_index_restarts_from_its_last_periodic_save() {
    let mut server = Server::start_logging(&["--index-save-secs", "1"], &[]);
    server.wait_ready();
    let small = std::fs::read(image_path("wide_320x40.jpg")).unwrap();
    std::fs::create_dir_all(server.image_root.join("first")).unwrap();
    for i in 0..30 {
        let bytes = [small.as_slice(), format!("first {i}").as_bytes()].concat();
        std::fs::write(server.image_root.join("first").join(format!("{i:02}.jpg")), bytes).unwrap();
    }
    let (_, job) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "first" })));
    let job = wait_job(&server, job["id"].as_str().unwrap(), finished);
    assert_eq!(job["indexed"], 30, "{job}");
    // The running server saves the index within a second or two of the last change.
    std::thread::sleep(Duration::from_secs(3));
    server.kill();
    // Without periodic saves from here on, so the next kill leaves an index that misses writes.
    server.extra_args = vec!["--index-save-secs".into(), "0".into()];
    server.start_again();
    let origin = last_index_origin(&server);
    assert!(origin.contains("origin=Loaded"), "the periodic save was not loaded after kill -9: {origin}");

    let mut ids = Vec::new();
    for i in 0..5 {
        let path = server.image_root.join(format!("later_{i}.jpg"));
        std::fs::write(&path, [small.as_slice(), format!("later {i}").as_bytes()].concat()).unwrap();
        ids.push(server.ingest(&path)["id"].as_str().unwrap().to_string());
    }
    let listed: Value = server.get("/images?limit=2&sort=ingested_at").json().unwrap();
    for image in listed["images"].as_array().unwrap() {
        assert_eq!(server.delete(&format!("/images/{}", image["id"].as_str().unwrap())).status(), 200);
    }
    server.crash_and_restart();
    let origin = last_index_origin(&server);
    assert!(origin.contains("CaughtUp { changes: 7 }"), "kill -9 should replay the 7 changes, not rebuild: {origin}");
    assert_eq!(server.image_count(), 33);
    for id in &ids {
        assert_eq!(server.get(&format!("/images/{id}")).status(), 200, "an image ingested before the kill is gone");
    }
}

/// Regression: a file whose modification time changed but not its content (a copy that did not
/// keep dates, `touch`) was read and hashed again by every later job: re-indexing it kept the
/// old date, so the quick "unchanged" check never matched again (found by the soak benchmark).
/// The file's ETag shows it: the content hash while the file is as indexed, else size and date.
#[test]
fn re_indexing_a_touched_file_remembers_its_new_date() {
    let server = Server::start();
    server.wait_ready();
    let path = server.add_image(&committed_photos()[0], "touched.jpg");
    let id = server.ingest(&path)["id"].as_str().unwrap().to_string();
    let etag = || server.get(&format!("/images/{id}/file")).headers()["etag"].to_str().unwrap().to_string();
    let as_indexed = etag();

    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(an_hour_ago).unwrap();
    assert_ne!(etag(), as_indexed, "a touched file is tagged by its size and date until indexed again");

    let again = server.ingest(&path);
    assert_eq!(again["duplicate"], true, "the same content: nothing to embed");
    assert_eq!(etag(), as_indexed, "indexing it again recorded its new date");
}
