//! `visionquery index` and `visionquery search` from a terminal.

mod common;

use std::process::{Command, Output};

use common::server::Server;
use common::*;

fn visionquery(args: &[&str], data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_visionquery"))
        .args(args)
        .arg("--model")
        .arg(tiny_model())
        .arg("--data-dir")
        .arg(data_dir)
        .env("VQ_LOG", "warn")
        .output()
        .expect("running visionquery")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn index_then_search_from_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(photos.join("nested")).unwrap();
    for name in ["baseline.jpg", "rgb.png", "webp_lossy.webp"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    std::fs::copy(image_path("animated.gif"), photos.join("nested/anim.gif")).unwrap();
    std::fs::write(photos.join("broken.jpg"), b"not really a jpeg").unwrap();
    let data = tmp.path().join("index");

    let flat = visionquery(&["index", photos.to_str().unwrap()], &data);
    assert!(flat.status.success(), "{}", text(&flat.stderr));
    let out = text(&flat.stdout);
    assert!(out.contains("indexed 3,") && out.contains("failed 1"), "{out}");
    assert!(out.contains("broken.jpg") && out.contains("failures:"), "the summary says what failed and why: {out}");

    let deep = visionquery(&["index", photos.to_str().unwrap(), "--recursive"], &data);
    let out = text(&deep.stdout);
    assert!(out.contains("indexed 1,") && out.contains("already indexed 3"), "{out}");
    assert!(out.contains("index now holds 4 images"), "{out}");

    let found = visionquery(&["search", "a photo of a bus", "-k", "3"], &data);
    assert!(found.status.success(), "{}", text(&found.stderr));
    let out = text(&found.stdout);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(out.lines().next().unwrap().contains("score"), "{out}");
    assert_eq!(rows.len(), 3, "{out}");
    let scores: Vec<f64> = rows.iter().map(|r| r.split_whitespace().nth(1).unwrap().parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "ranked best first: {out}");
    assert!(rows.iter().all(|r| r.contains(photos.to_str().unwrap())), "{out}");

    let empty_query = visionquery(&["search", "  "], &data);
    assert!(!empty_query.status.success());
    assert!(text(&empty_query.stderr).contains("query is empty"));
}

#[test]
fn the_cli_explains_missing_folders_and_an_index_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = visionquery(&["index", "/no/such/folder"], &tmp.path().join("index"));
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no such folder"), "{}", text(&missing.stderr));

    let server = Server::start();
    server.wait_ready();
    let busy = visionquery(&["index", server.image_root.to_str().unwrap()], &server.data_dir);
    assert!(!busy.status.success());
    server.add_image(&image_path("baseline.jpg"), "x.jpg");
    let busy = visionquery(&["index", server.image_root.to_str().unwrap()], &server.data_dir);
    assert!(!busy.status.success());
    assert!(text(&busy.stderr).contains("in use by another process"), "{}", text(&busy.stderr));
}
