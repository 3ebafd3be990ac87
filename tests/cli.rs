//! `visionquery index` and `visionquery search` from a terminal.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::server::Server;
use common::*;

/// The real binary with the tiny model and `data_dir`; the log settings are the defaults (no
/// `VQ_LOG` inherited from whoever runs the tests) unless `env` sets them.
fn visionquery_with_env(args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_visionquery"));
    command.args(args).arg("--model").arg(tiny_model()).arg("--data-dir").arg(data_dir);
    for var in ["VQ_LOG", "VQ_LOG_FORMAT", "VQ_IMAGE_ROOTS", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).output().expect("running visionquery")
}

fn visionquery(args: &[&str], data_dir: &Path) -> Output {
    visionquery_with_env(args, data_dir, &[])
}

/// Lines the log writes at info level (text format: `<time>  INFO <target>: <message>`).
fn info_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|line| line.split_whitespace().nth(1) == Some("INFO")).collect()
}

/// A folder with three fixture images, under `root`.
fn photo_folder(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["baseline.jpg", "rgb.png", "webp_lossy.webp"] {
        std::fs::copy(image_path(file), dir.join(file)).unwrap();
    }
    dir
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

#[test]
fn index_and_search_are_quiet_by_default_and_log_info_with_v() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = photo_folder(tmp.path(), "photos");
    let data = tmp.path().join("index");

    let quiet = visionquery(&["index", photos.to_str().unwrap()], &data);
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert_eq!(info_lines(&text(&quiet.stderr)), Vec::<&str>::new(), "index logs no info by default");
    assert!(text(&quiet.stdout).contains("indexed 3,"), "{}", text(&quiet.stdout));
    let quiet = visionquery(&["search", "a bus", "-k", "2"], &data);
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert_eq!(text(&quiet.stderr), "", "search writes nothing on stderr by default");

    let verbose = visionquery(&["search", "a bus", "-k", "2", "-v"], &data);
    let stderr = text(&verbose.stderr);
    let info = info_lines(&stderr);
    assert!(info.iter().any(|l| l.contains("loading ONNX Runtime")) && info.iter().any(|l| l.contains("index loaded")), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes when stderr is not a terminal: {stderr:?}");
    assert_eq!(text(&verbose.stdout), text(&quiet.stdout), "-v changes stderr only");
    let verbose = visionquery(&["index", "-v", photos.to_str().unwrap()], &data);
    assert!(!info_lines(&text(&verbose.stderr)).is_empty(), "{}", text(&verbose.stderr));
    let very = visionquery(&["search", "a bus", "-vv"], &data);
    assert!(very.status.success() && !info_lines(&text(&very.stderr)).is_empty(), "-vv includes info: {}", text(&very.stderr));

    // VQ_LOG, when set, decides either way.
    let env_info = visionquery_with_env(&["search", "a bus"], &data, &[("VQ_LOG", "info")]);
    assert!(!info_lines(&text(&env_info.stderr)).is_empty(), "{}", text(&env_info.stderr));
    let env_quiet = visionquery_with_env(&["search", "a bus", "-v"], &data, &[("VQ_LOG", "warn")]);
    assert_eq!(text(&env_quiet.stderr), "");
}

#[test]
fn index_takes_the_shared_flags_of_serve_and_finds_folders_under_an_image_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    photo_folder(&root, "holiday");
    let data = tmp.path().join("index");
    let root_arg = root.to_str().unwrap();

    // The relative folder is not under the current folder, only under the root.
    let shared = [
        "--image-root",
        root_arg,
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--max-batch",
        "4",
        "--queue-capacity",
        "8",
        "--max-image-pixels",
        "1000000",
        "--max-image-bytes",
        "1000000",
        "--log-format",
        "text",
    ];
    let mut args = vec!["index", "holiday"];
    args.extend(shared);
    let out = visionquery(&args, &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("indexed 3,"), "{}", text(&out.stdout));

    // The same flags work for search (where the root is unused), and the env variable for index.
    let mut args = vec!["search", "a bus", "--json"];
    args.extend(shared);
    let out = visionquery(&args, &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = visionquery_with_env(&["index", "holiday"], &data, &[("VQ_IMAGE_ROOTS", root_arg)]);
    assert!(text(&again.stdout).contains("already indexed 3"), "{}{}", text(&again.stdout), text(&again.stderr));

    let missing = visionquery(&["index", "no-such-album", "--image-root", root_arg], &data);
    assert!(!missing.status.success());
    let err = text(&missing.stderr);
    assert!(
        err.contains("no such folder: no-such-album") && err.contains(&root.join("no-such-album").display().to_string()),
        "names where it looked: {err}"
    );
}

#[test]
fn search_json_is_the_api_shape_and_matches_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = photo_folder(tmp.path(), "photos");
    let data = tmp.path().join("index");
    assert!(visionquery(&["index", photos.to_str().unwrap()], &data).status.success());

    let table = visionquery(&["search", "a photo of a bus", "-k", "3"], &data);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["rank", "score", "id", "path"], "{table}");
    let table_ids: Vec<&str> = lines.map(|l| l.split_whitespace().nth(2).unwrap()).collect();
    assert_eq!(table_ids.len(), 3, "{table}");

    let json = visionquery(&["search", "a photo of a bus", "-k", "3", "--json"], &data);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let stdout = text(&json.stdout);
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is one JSON object ({e}): {stdout}"));
    assert_eq!(value["query"], "a photo of a bus");
    assert_eq!(value["truncated"], false);
    let results = value["results"].as_array().unwrap_or_else(|| panic!("results: {value}"));
    let json_ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(json_ids, table_ids, "same ranking as the table");
    for r in results {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["camera", "id", "lens", "location", "path", "score", "taken_at"], "the API's result shape: {r}");
        assert!(r["path"].as_str().unwrap().starts_with(photos.to_str().unwrap()) && r["score"].is_f64(), "{r}");
    }
    assert_eq!(text(&json.stderr), "", "nothing but the JSON");

    let long = "a photo of a bus ".repeat(30);
    let truncated = visionquery(&["search", &long, "--json"], &data);
    let value: serde_json::Value = serde_json::from_slice(&truncated.stdout).expect("JSON for a long query too");
    assert_eq!(value["truncated"], true);

    let empty = visionquery(&["search", "anything", "--json"], &tmp.path().join("empty-index"));
    assert!(empty.status.success(), "{}", text(&empty.stderr));
    let value: serde_json::Value = serde_json::from_slice(&empty.stdout).expect("JSON for an empty index");
    assert_eq!(value["results"], serde_json::json!([]));
    assert!(text(&empty.stderr).contains("no images indexed"), "the hint goes to stderr: {}", text(&empty.stderr));
}

#[test]
fn bad_flags_and_values_get_a_clear_error_without_a_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("index");
    for (args, expect) in [
        (&["index", ".", "--bogus"][..], "unexpected argument '--bogus'"),
        (&["search", "x", "--precision", "fp16"][..], "possible values: fp32, quantized"),
        (&["search", "x", "-k", "many"][..], "invalid value 'many' for '--top-k <TOP_K>'"),
    ] {
        let out = visionquery(args, &data);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains(expect) && err.contains("--help"), "{args:?}: {err}");
        assert_eq!(text(&out.stdout), "");
    }
    // Errors after parsing read the same way: one `error:` line with its causes, no backtrace.
    let missing = visionquery_with_env(&["index", "/no/such/folder"], &data, &[("RUST_BACKTRACE", "1")]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(text(&missing.stderr), "error: no such folder: /no/such/folder\n");
}

#[test]
fn duplicates_lists_copies_from_the_terminal_and_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = photo_folder(tmp.path(), "photos");
    std::fs::create_dir_all(photos.join("backup")).unwrap();
    std::fs::copy(image_path("baseline.jpg"), photos.join("backup/baseline-copy.jpg")).unwrap();
    let data = tmp.path().join("index");
    assert!(visionquery(&["index", photos.to_str().unwrap(), "--recursive"], &data).status.success());

    let listing = visionquery(&["duplicates"], &data);
    assert!(listing.status.success(), "{}", text(&listing.stderr));
    let out = text(&listing.stdout);
    assert!(out.starts_with("identical (2 images"), "{out}");
    assert!(out.contains("backup/baseline-copy.jpg") && out.contains("photos/baseline.jpg"), "{out}");
    assert!(text(&listing.stderr).contains("1 groups of identical copies"), "{}", text(&listing.stderr));

    let json = visionquery(&["duplicates", "--json", "--threshold", "0.99"], &data);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["threshold"].as_f64().map(|t| (t * 100.0).round()), Some(99.0));
    assert_eq!(value["groups"][0]["kind"], "identical");
    assert_eq!(value["groups"][0]["images"].as_array().unwrap().len(), 2);

    let bad = visionquery(&["duplicates", "--threshold", "0.1"], &data);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("threshold must be between 0.5 and 1"), "{}", text(&bad.stderr));
}

/// Python with NumPy for the reference implementations: `scripts/test.sh` installs NumPy into
/// `.runtime/python` (pip --target); a system NumPy serves as well.
fn python_with_numpy() -> Command {
    let mut python = Command::new("python3");
    let deps = repo().join(".runtime/python");
    let path = std::env::var("PYTHONPATH").map_or_else(|_| deps.display().to_string(), |p| format!("{}:{p}", deps.display()));
    python.env("PYTHONPATH", path);
    python
}

#[test]
fn eval_reports_recall_both_ways_and_matches_a_numpy_implementation_on_the_same_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for photo in committed_photos() {
        std::fs::copy(&photo, photos.join(photo.file_name().unwrap())).unwrap();
    }
    // An uncaptioned copy of a captioned photo ties with it on every query: the tie is broken by
    // image id and then file name, as /search does, and it makes a distractor for the rest.
    std::fs::copy(photos.join("000000000139.jpg"), photos.join("zz_copy_of_139.jpg")).unwrap();
    let mut captions = std::fs::read_to_string(shared_photos().join("captions.tsv")).unwrap();
    captions.push_str("missing.jpg\tA photo that is not in the folder\n");
    let captions_file = tmp.path().join("captions.tsv");
    std::fs::write(&captions_file, &captions).unwrap();
    let (dump, data) = (tmp.path().join("embeddings.json"), tmp.path().join("index"));
    let args = ["eval", "--captions", captions_file.to_str().unwrap(), "--images", photos.to_str().unwrap()];

    let out = visionquery(&[&args[..], &["--json", "--dump-embeddings", dump.to_str().unwrap()]].concat(), &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let caption_lines = captions.lines().skip(1).count();
    assert_eq!(ours["captions"], caption_lines - 1, "every caption of a present image is scored: {ours}");
    assert!(text(&out.stderr).contains("1 captions skipped"), "the missing image is reported: {}", text(&out.stderr));
    for direction in ["text_to_image", "image_to_text"] {
        let s = &ours[direction];
        for key in ["recall@1", "recall@5", "recall@10", "median_rank", "mrr"] {
            assert!(s[key].is_f64(), "{direction}.{key} is a number: {ours}");
        }
        let r = |k: &str| s[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r("recall@1")) && r("recall@1") <= r("recall@5") && r("recall@5") <= r("recall@10"), "{ours}");
        assert!(r("median_rank") >= 1.0 && r("mrr") > 0.0 && r("mrr") <= 1.0, "{ours}");
    }
    assert_eq!(ours["image_to_text"]["queries"], committed_photos().len(), "captioned images are the image->text queries");

    let reference = python_with_numpy().arg(repo().join("scripts/eval_reference.py")).arg(&dump).output().expect("running python3");
    assert!(
        reference.status.success(),
        "scripts/eval_reference.py (needs NumPy; scripts/test.sh installs it): {}",
        text(&reference.stderr)
    );
    let numpy: serde_json::Value = serde_json::from_slice(&reference.stdout).expect("reference JSON");
    for direction in ["text_to_image", "image_to_text"] {
        for key in ["recall@1", "recall@5", "recall@10", "median_rank", "queries"] {
            assert_eq!(ours[direction][key], numpy[direction][key], "{direction}.{key}: ours {ours}, NumPy {numpy}");
        }
        let (a, b) = (ours[direction]["mrr"].as_f64().unwrap(), numpy[direction]["mrr"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-12, "{direction}.mrr: ours {a}, NumPy {b} (only the summation order may differ)");
    }

    let table = visionquery(&args, &data);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    let row = table.lines().find(|l| l.starts_with("text->image")).unwrap_or_else(|| panic!("a text->image row: {table}"));
    assert_eq!(row.split_whitespace().nth(1).unwrap(), format!("{:.3}", ours["text_to_image"]["recall@1"].as_f64().unwrap()), "{table}");
    assert!(!data.join("index.redb").exists() && !data.exists(), "eval reads files only and leaves no index behind");
}

#[test]
fn models_lists_the_families_and_known_repositories() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_visionquery")).args(args).output().unwrap();
    let out = run(&["models"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["clip", "siglip2", "Xenova/clip-vit-base-patch32", "Xenova/siglip-base-patch16-224", "768"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let out = run(&["models", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["families"].as_array().unwrap().len(), 3);
    assert!(json["models"].as_array().unwrap().iter().any(|m| m["family"] == "siglip" && m["dim"] == 768));
}
