//! Folders that index themselves (`serve --watch`), against a real server watching a real
//! folder through inotify. Every wait polls with a generous deadline; nothing asserts on time.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::Server;
use common::*;
use serde_json::{json, Value};

/// Settle time the tests run with: short, so they are quick, yet the rules are the same.
const SETTLE_MS: &str = "300";
const DEADLINE: Duration = Duration::from_secs(120);

fn watching(extra: &[&str]) -> Server {
    let mut args = vec!["--watch", "--watch-settle-ms", SETTLE_MS];
    args.extend_from_slice(extra);
    let server = Server::start_with(&tiny_model(), &args);
    server.wait_ready();
    server
}

/// The root as the server names it (canonical).
fn root(server: &Server) -> PathBuf {
    std::fs::canonicalize(&server.image_root).unwrap()
}

/// Distinct photo bytes: a committed photo, with bytes after its end marker beyond the first
/// round (the same picture, another content hash).
fn photo(i: usize) -> Vec<u8> {
    let photos = committed_photos();
    let mut bytes = std::fs::read(&photos[i % photos.len()]).unwrap();
    if i >= photos.len() {
        bytes.extend_from_slice(format!("copy {i}").as_bytes());
    }
    bytes
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Every indexed image, by path: what a search can return.
fn searchable(server: &Server) -> HashMap<String, String> {
    let body: Value = server.post_json("/search", &json!({ "query": "a photo", "top_k": 1000 })).json().unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["path"].as_str().unwrap().to_string(), r["id"].as_str().unwrap().to_string()))
        .collect()
}

fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `path` is searchable and returns its id.
fn wait_indexed(server: &Server, path: &Path) -> String {
    let key = path.display().to_string();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(id) = searchable(server).get(&key) {
            return id.clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {key} to be searchable; watch jobs: {:?}", watch_jobs(server));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_not_indexed(server: &Server, path: &Path) {
    let key = path.display().to_string();
    wait_until(&format!("{key} to leave the index"), || (!searchable(server).contains_key(&key)).then_some(()))
}

fn watch_jobs(server: &Server) -> Vec<Value> {
    let jobs: Value = server.get("/jobs").json().unwrap();
    jobs["jobs"].as_array().unwrap().iter().filter(|j| j["kind"] == "watch").cloned().collect()
}

fn finished(job: &Value) -> bool {
    ["completed", "cancelled", "failed"].contains(&job["state"].as_str().unwrap_or(""))
}

/// Waits until no watch job is unfinished (the watcher has handed over and the runner done it).
fn wait_watch_jobs_idle(server: &Server) {
    wait_until("the watch jobs to finish", || watch_jobs(server).iter().all(finished).then_some(()));
}

fn ingest_decodes(server: &Server) -> f64 {
    server.metric("vq_image_decodes_total{purpose=\"ingest\"}")
}

#[test]
fn new_changed_moved_and_deleted_files_are_followed() {
    let server = watching(&[]);
    let root = root(&server);
    assert_eq!(server.metric("vq_watch_roots"), 1.0);

    // New: searchable, through a watch job.
    let a = root.join("a.jpg");
    write(&a, &photo(0));
    let first = wait_indexed(&server, &a);
    wait_watch_jobs_idle(&server);
    assert!(watch_jobs(&server).iter().any(|j| j["total"] == 1 && j["indexed"] == 1), "{:?}", watch_jobs(&server));

    // Changed: the new content is indexed at the path and the old one leaves.
    write(&a, &photo(1));
    let second = wait_until("the changed file to be indexed again", || {
        searchable(&server).get(&a.display().to_string()).filter(|id| **id != first).cloned()
    });
    assert_eq!(server.get(&format!("/images/{first}")).status(), 404, "the old content left the index");

    // Moved to another folder: the same id, not embedded again.
    let decodes = ingest_decodes(&server);
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let b = root.join("sub/b.jpg");
    std::fs::rename(&a, &b).unwrap();
    assert_eq!(wait_indexed(&server, &b), second, "a moved file keeps its id");
    wait_not_indexed(&server, &a);
    assert_eq!(ingest_decodes(&server), decodes, "a move is not decoded again");
    assert_eq!(server.image_count(), 1);

    // Deleted: leaves the index, its thumbnail with it.
    assert_eq!(server.get(&format!("/images/{second}/thumbnail")).status(), 200);
    std::fs::remove_file(&b).unwrap();
    wait_not_indexed(&server, &b);
    assert_eq!(server.get(&format!("/images/{second}")).status(), 404);
    assert_eq!(server.get(&format!("/images/{second}/thumbnail")).status(), 404);
    assert_eq!(server.image_count(), 0);
    assert!(server.metric("vq_watch_removed_total") >= 1.0);
    for kind in ["create", "close_write", "rename", "remove"] {
        assert!(server.metric(&format!("vq_watch_events_total{{kind=\"{kind}\"}}")) > 0.0, "{kind} events are counted");
    }
    assert!(server.metric("vq_watch_last_reconcile_timestamp_seconds") > 0.0, "the start's reconcile pass is recorded");
}

#[test]
fn a_deleted_file_whose_content_lives_at_another_path_moves_there() {
    let server = watching(&[]);
    let root = root(&server);
    let (a, copy) = (root.join("a.jpg"), root.join("copy/a.jpg"));
    write(&a, &photo(2));
    let id = wait_indexed(&server, &a);
    write(&copy, &photo(2));
    wait_watch_jobs_idle(&server);
    wait_until("the copy's job", || watch_jobs(&server).iter().any(|j| j["skipped"] == 1).then_some(()));
    std::fs::remove_file(&a).unwrap();
    assert_eq!(wait_indexed(&server, &copy), id, "only the deleted path goes; the image stays under its copy");
    assert_eq!(server.image_count(), 1);
    assert_eq!(server.get(&format!("/images/{id}/thumbnail")).status(), 200);
}

#[test]
fn a_large_file_written_slowly_is_embedded_once_when_complete() {
    let server = watching(&[]);
    let root = root(&server);
    let decodes = ingest_decodes(&server);
    let big = root.join("big.jpg");
    // A 40 MB JPEG (a photo carrying 40 MB of APP15 segments, which decoders skip) written in
    // chunks with pauses longer than the settle time: a read before the close would decode
    // (and fail on, or embed) a partial file.
    let jpeg = photo(3);
    let mut bytes = jpeg[..2].to_vec();
    while bytes.len() < 40 << 20 {
        bytes.extend_from_slice(&[0xff, 0xef, 0xff, 0xff]);
        bytes.extend(std::iter::repeat_n(0x5a_u8, 0xffff - 2));
    }
    bytes.extend_from_slice(&jpeg[2..]);
    let mut file = std::fs::File::create(&big).unwrap();
    for chunk in bytes.chunks(bytes.len() / 10 + 1) {
        file.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(600));
    }
    drop(file);
    assert!(std::fs::metadata(&big).unwrap().len() > 40_000_000);
    let id = wait_indexed(&server, &big);
    wait_watch_jobs_idle(&server);
    // Well past another settle period: still one decode.
    std::thread::sleep(Duration::from_millis(1500));
    wait_watch_jobs_idle(&server);
    assert_eq!(ingest_decodes(&server) - decodes, 1.0, "decoded once, when complete");
    let info: Value = server.get(&format!("/images/{id}")).json().unwrap();
    assert!(info["bytes"].as_u64().unwrap() > 40_000_000, "the complete file was indexed: {info}");
    let indexed: u64 = watch_jobs(&server).iter().map(|j| j["indexed"].as_u64().unwrap()).sum();
    assert_eq!(indexed, 1, "{:?}", watch_jobs(&server));
}

#[test]
fn excluded_names_are_ignored_and_a_finished_download_is_indexed() {
    let server = watching(&["--exclude", "private,*.xcf.jpg"]);
    let root = root(&server);
    for excluded in [
        ".hidden.jpg",
        "._a.jpg",
        "@eaDir/a.jpg/SYNOPHOTO_THUMB_M.jpg",
        ".Trash-1000/files/b.jpg",
        ".thumbnails/c.png",
        "private/d.jpg",
        "e.xcf.jpg",
        "f.jpg.part",
        "g.jpg.crdownload",
        "h.tmp",
    ] {
        write(&root.join(excluded), &photo(4));
    }
    // Written after the excluded ones: once it is in, they would have been too.
    let kept = root.join("kept.jpg");
    write(&kept, &photo(5));
    wait_indexed(&server, &kept);
    wait_watch_jobs_idle(&server);
    assert_eq!(server.image_count(), 1, "{:?}", searchable(&server));
    assert!(server.metric("vq_watch_events_total{kind=\"excluded\"}") > 0.0);

    // The download completes: renamed to its real name, it is indexed.
    let done = root.join("f.jpg");
    std::fs::rename(root.join("f.jpg.part"), &done).unwrap();
    wait_indexed(&server, &done);
    assert_eq!(server.image_count(), 2);

    // Directory jobs apply the same policy.
    let job: Value = server.post_json("/ingest/directory", &json!({ "path": root, "recursive": true })).json().unwrap();
    let id = job["id"].as_str().unwrap();
    let job = wait_until("the directory job", || {
        let job: Value = server.get(&format!("/jobs/{id}")).json().unwrap();
        finished(&job).then_some(job)
    });
    assert_eq!(job["total"], 2, "{job}");
}

#[test]
fn a_restart_reconciles_what_changed_while_the_server_was_down() {
    let mut server = watching(&[]);
    let root = root(&server);
    let (kept, deleted, moved, changed) =
        (root.join("kept.jpg"), root.join("deleted.jpg"), root.join("moved.jpg"), root.join("changed.jpg"));
    write(&kept, &photo(6));
    write(&deleted, &photo(7));
    write(&moved, &photo(8));
    write(&changed, &photo(9));
    let ids: Vec<String> = [&kept, &deleted, &moved, &changed].iter().map(|p| wait_indexed(&server, p)).collect();
    wait_watch_jobs_idle(&server);
    server.kill();

    let added = root.join("while-down/added.jpg");
    write(&added, &photo(10));
    std::fs::remove_file(&deleted).unwrap();
    let moved_to = root.join("elsewhere/moved.jpg");
    std::fs::create_dir_all(moved_to.parent().unwrap()).unwrap();
    std::fs::rename(&moved, &moved_to).unwrap();
    // Another size, so the change is seen whatever the clock's resolution.
    write(&changed, &photo(11));

    server.start_again();
    wait_indexed(&server, &added);
    assert_eq!(wait_indexed(&server, &moved_to), ids[2], "moved while down: the same id");
    wait_not_indexed(&server, &deleted);
    wait_until("the changed file", || searchable(&server).get(&changed.display().to_string()).filter(|id| **id != ids[3]).cloned());
    wait_watch_jobs_idle(&server);
    assert_eq!(searchable(&server).get(&kept.display().to_string()), Some(&ids[0]));
    assert_eq!(server.image_count(), 4);
    // The reconcile pass ran as a job: the new and the changed file (the moved one, found at a
    // new path, is checked too and kept its id).
    let jobs = watch_jobs(&server);
    let reconcile = &jobs[0];
    assert_eq!(reconcile["total"], 3, "the newest watch job is the reconcile pass: {jobs:?}");
    assert_eq!(reconcile["indexed"], 2, "{jobs:?}");
    // Metrics start again with the process: only the added and the changed file were decoded.
    assert_eq!(ingest_decodes(&server), 2.0, "the unchanged file is not read again");
    assert!(server.metric("vq_watch_last_reconcile_timestamp_seconds") > 0.0);
}

#[test]
fn a_folder_renamed_while_watched_keeps_its_images_and_stays_watched() {
    let server = watching(&[]);
    let root = root(&server);
    let names = ["1.jpg", "2.jpg", "deeper/3.jpg"];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        write(&root.join("album").join(name), &photo(12 + i));
    }
    for name in names {
        ids.push(wait_indexed(&server, &root.join("album").join(name)));
    }
    wait_watch_jobs_idle(&server);
    let decodes = ingest_decodes(&server);

    std::fs::rename(root.join("album"), root.join("renamed")).unwrap();
    for (name, id) in names.iter().zip(&ids) {
        assert_eq!(&wait_indexed(&server, &root.join("renamed").join(name)), id, "{name} keeps its id");
    }
    wait_watch_jobs_idle(&server);
    assert_eq!(server.image_count(), 3, "{:?}", searchable(&server));
    assert_eq!(ingest_decodes(&server), decodes, "nothing decoded again");

    // The renamed folder is still watched, down to its sub-folder.
    let later = root.join("renamed/deeper/4.jpg");
    write(&later, &photo(15));
    wait_indexed(&server, &later);

    // A folder removed takes its images along.
    std::fs::remove_dir_all(root.join("renamed")).unwrap();
    wait_until("the removed folder's images to leave", || (server.image_count() == 0).then_some(()));
}

#[test]
fn a_file_deleted_between_the_event_and_the_read_fails_alone_and_watching_goes_on() {
    // One file at a time in the model, so the job works through its files slowly and in order.
    let server = watching(&["--max-batch", "1"]);
    let root = root(&server);
    // Prepared outside the root and moved in at once: one folder event, one job.
    let staging = server.image_root.parent().unwrap().join("staging");
    for i in 0..200 {
        write(&staging.join(format!("p{i:03}.jpg")), &photo(20 + i));
    }
    write(&staging.join("zzz_victim.jpg"), &photo(300));
    std::fs::rename(&staging, root.join("burst")).unwrap();
    let job = wait_until("the burst's job", || watch_jobs(&server).into_iter().find(|j| j["total"] == 201));
    // Listed in path order: the victim is read last, long after this.
    std::fs::remove_file(root.join("burst/zzz_victim.jpg")).unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let job = wait_until("the burst's job to finish", || {
        let job: Value = server.get(&format!("/jobs/{id}")).json().unwrap();
        finished(&job).then_some(job)
    });
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!((job["indexed"].as_u64(), job["failed"].as_u64()), (Some(200), Some(1)), "{job}");
    let failure = &job["failures"][0];
    assert!(failure["path"].as_str().unwrap().ends_with("zzz_victim.jpg"), "{failure}");
    assert!(!failure["error"].as_str().unwrap().is_empty());

    // The watcher goes on.
    let after = root.join("after.jpg");
    write(&after, &photo(301));
    wait_indexed(&server, &after);
    assert_eq!(server.image_count(), 201);
}

/// The kernel's event queue is made tiny for the server's inotify instance (the limit is read
/// when an instance is created; we are root), so a burst overflows it for real: notify reports
/// the overflow as a rescan, and the rescan finds every file.
#[test]
fn a_kernel_queue_overflow_is_followed_by_a_rescan_that_finds_every_file() {
    const KNOB: &str = "/proc/sys/fs/inotify/max_queued_events";
    let Ok(old) = std::fs::read_to_string(KNOB) else {
        eprintln!("skipped: {KNOB} cannot be read");
        return;
    };
    if std::fs::write(KNOB, "1").is_err() {
        eprintln!("skipped: {KNOB} cannot be written (not root)");
        return;
    }
    // Restored as soon as the server's watcher exists (it is created before /health answers).
    let server = std::panic::catch_unwind(|| Server::start_with(&tiny_model(), &["--watch", "--watch-settle-ms", SETTLE_MS]));
    std::fs::write(KNOB, old.trim()).expect("restoring the inotify queue limit");
    let server = server.unwrap_or_else(|e| std::panic::resume_unwind(e));
    server.wait_ready();
    let root = root(&server);
    wait_watch_jobs_idle(&server);
    let n = 150;
    for i in 0..n {
        write(&root.join(format!("burst/{i:03}.jpg")), &photo(400 + i));
    }
    wait_until("every file of the burst", || (server.image_count() == n as u64).then_some(()));
    assert!(server.metric("vq_watch_events_total{kind=\"rescan\"}") >= 1.0, "the overflow was reported as a rescan");
    wait_watch_jobs_idle(&server);
    assert_eq!(server.image_count(), n as u64);
}

#[test]
fn a_root_found_empty_at_start_keeps_its_images_as_an_unmounted_drive_would() {
    let mut server = watching(&[]);
    let root = root(&server);
    let photo_path = root.join("on-the-drive.jpg");
    write(&photo_path, &photo(500));
    let id = wait_indexed(&server, &photo_path);
    wait_watch_jobs_idle(&server);
    server.kill();
    // The mount point is left empty, as when the drive is not mounted.
    std::fs::remove_file(&photo_path).unwrap();
    server.start_again();
    let pass = wait_until("the reconcile pass", || watch_jobs(&server).into_iter().find(|j| j["failed"] == 1 && finished(j)));
    assert!(pass["failures"][0]["error"].as_str().unwrap().contains("not mounted"), "{pass}");
    assert_eq!(server.get(&format!("/images/{id}")).status(), 200, "kept");
    assert_eq!(server.image_count(), 1);
}
