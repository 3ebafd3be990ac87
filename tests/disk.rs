//! A full disk and a read-only one, for real: a small tmpfs mounted as the data directory
//! (needs root to mount; CI runs as root, elsewhere these tests say they are skipped).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::Server;
use common::*;
use serde_json::{json, Value};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a note) where this process may not mount.
    fn mount(options: &str) -> Option<Self> {
        let parent = tempfile::tempdir().expect("temp dir");
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).expect("mount point");
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(&dir).status();
        if !mounted.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Self { dir, _parent: parent })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system holding `dir` with one file, until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let block = vec![0xA5u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    filler
}

fn status_and_body(r: reqwest::blocking::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_string());
    (status, retry, r.json().expect("a JSON body"))
}

#[test]
fn a_full_disk_refuses_writes_clearly_loses_nothing_and_recovers_when_space_is_freed() {
    let Some(disk) = Tmpfs::mount("size=24m") else { return };
    let mut server = Server::start();
    server.kill();
    server.data_dir = disk.dir.join("index");
    server.start_again();
    let photos = committed_photos();
    let mut acknowledged = Vec::new();
    let first = server.add_image(&photos[0], "before-full.jpg");
    acknowledged.push(server.ingest(&first)["id"].as_str().expect("id").to_string());

    let filler = fill(&disk.dir);
    // Writes now fail for want of space: each answer is 200 (room was left in the database
    // file) or a JSON 507/503 with Retry-After, never a 500; the first refusal comes soon.
    let mut refused = None;
    for i in 0..200 {
        let bytes = [std::fs::read(&photos[i % photos.len()]).expect("photo"), format!("copy {i}").into_bytes()].concat();
        let path = server.image_root.join(format!("while-full-{i}.jpg"));
        std::fs::write(&path, bytes).expect("image root is not on the full disk");
        let (status, retry, body) = status_and_body(server.post_json("/ingest/image", &json!({ "path": path })));
        match status {
            200 => acknowledged.push(body["id"].as_str().expect("id").to_string()),
            507 | 503 => {
                assert!(retry.is_some(), "a refusal for a full disk says when to retry: {body}");
                assert!(
                    ["insufficient_storage", "store_unavailable"].contains(&body["error"]["code"].as_str().unwrap_or_default()),
                    "{body}"
                );
                refused = Some(body);
                break;
            }
            other => panic!("a full disk gave {other}: {body}"),
        }
    }
    let refused = refused.expect("a write was refused on the full disk");
    eprintln!("refused with {refused}");
    let upload = std::fs::read(&photos[1]).expect("photo");
    let (status, _, body) = status_and_body(server.upload("/ingest/upload", &[("full.jpg", upload)]));
    let result = &body["results"][0];
    assert!(status == 200 && result["status"] == "error" || [503, 507].contains(&status), "{status} {body}");
    if status == 200 {
        assert!(["insufficient_storage", "store_unavailable"].contains(&result["error"]["code"].as_str().unwrap_or_default()), "{body}");
    }
    // Reads still work while the disk is full.
    let searched = server.post_json("/search", &json!({ "query": "a photo", "top_k": 3 }));
    assert_eq!(searched.status(), 200);

    // Space freed: service resumes by itself, and every acknowledged image is there.
    std::fs::remove_file(filler).expect("free the space");
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = server.add_image(&photos[2], "after-freed.jpg");
    loop {
        let (status, _, body) = status_and_body(server.post_json("/ingest/image", &json!({ "path": after })));
        if status == 200 {
            acknowledged.push(body["id"].as_str().expect("id").to_string());
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after the space was freed: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.crash_and_restart();
    acknowledged.sort();
    acknowledged.dedup();
    assert_eq!(server.image_count(), acknowledged.len() as u64, "exactly the acknowledged images survive");
    for id in &acknowledged {
        assert_eq!(server.get(&format!("/images/{id}")).status(), 200, "{id} was acknowledged");
        // Its vector too, wherever the search reads it from (the vector file beside the database
        // missed the writes it had no room for; the restart caught it up).
        let found = server.post_json("/search", &json!({ "image_id": id, "top_k": 1 })).json::<Value>().expect("JSON");
        assert_eq!(found["results"][0]["id"], json!(id), "{found}");
        assert!(found["results"][0]["score"].as_f64().unwrap_or_default() > 0.999, "{found}");
    }
}

#[test]
fn a_read_only_data_dir_is_a_clear_error_at_start() {
    let Some(disk) = Tmpfs::mount("size=1m,ro") else { return };
    for data_dir in [disk.dir.clone(), disk.dir.join("not-yet-there")] {
        let output = Command::new(env!("CARGO_BIN_EXE_visionquery"))
            .args(["serve", "--model"])
            .arg(tiny_model())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--port", "0"])
            .output()
            .expect("run visionquery");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started on a read-only data dir");
        assert!(stderr.contains(&disk.dir.display().to_string()), "names the directory: {stderr}");
        assert!(stderr.to_lowercase().contains("read-only"), "says why: {stderr}");
    }
}
