//! The HTTP API end to end: a real server process on the fixture model and real photos.

mod common;

use std::time::Duration;

use common::server::{client, Server};
use common::*;
use serde_json::{json, Value};

fn error_code(response: reqwest::blocking::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: Value = response.json().expect("errors are JSON");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error has a message: {body}");
    body["error"]["code"].as_str().expect("error has a code").to_string()
}

/// The twelve real photos the reference search matrix covers, ingested under the image root.
fn ingest_reference_photos(server: &Server) -> Vec<(String, String)> {
    let search = read_json("reference/search.json");
    search["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| {
            let name = name.as_str().unwrap();
            let file = name.strip_prefix("shared:").unwrap();
            let path = server.add_image(&image_path(name), file);
            let body = server.ingest(&path);
            (name.to_string(), body["id"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn health_answers_at_once_and_ready_follows_the_model() {
    let server = Server::start();
    let health: Value = server.get("/health").json().unwrap();
    assert_eq!(health["status"], "ok");
    assert!(["loading", "ready"].contains(&health["model"]["state"].as_str().unwrap()), "{health}");
    server.wait_ready();
    let health: Value = server.get("/health").json().unwrap();
    assert_eq!(health["model"]["state"], "ready");
    assert_eq!(health["model"]["dim"], 32);
    assert_eq!(health["index"]["images"], 0);
}

#[test]
fn search_ranks_and_scores_like_the_reference() {
    let server = Server::start();
    server.wait_ready();
    let ids = ingest_reference_photos(&server);
    let reference = read_json("reference/search.json");
    let texts = reference["texts"].as_array().unwrap();
    let scores = reference["scores"].as_array().unwrap();
    for (t, text) in texts.iter().enumerate() {
        let response = server.post_json("/search", &json!({ "query": text, "top_k": 12 }));
        assert_eq!(response.status(), 200);
        let body: Value = response.json().unwrap();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 12);
        let mut previous = f64::INFINITY;
        for result in results {
            let id = result["id"].as_str().unwrap();
            let (name, _) = ids.iter().find(|(_, i)| i == id).expect("result is an ingested image");
            let column = reference["images"].as_array().unwrap().iter().position(|n| n == name.as_str()).unwrap();
            let expected = scores[t][column].as_f64().unwrap();
            let got = result["score"].as_f64().unwrap();
            assert!((got - expected).abs() <= 2e-3, "{text} / {name}: score {got}, reference {expected}");
            assert!(got <= previous + 1e-6, "results are best first");
            previous = got;
            assert!(result["path"].as_str().unwrap().ends_with(name.strip_prefix("shared:").unwrap()));
        }
    }
}

#[test]
fn top_k_defaults_to_five_and_the_original_request_shape_works() {
    let server = Server::start();
    server.wait_ready();
    ingest_reference_photos(&server);
    let body: Value = server.post_json("/search", &json!({ "query": "a dog on a beach" })).json().unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 5);
    let body: Value = server.post_json("/search", &json!({ "query": "a dog on a beach", "top_k": 1000 })).json().unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 12, "top_k larger than the index returns everything");
}

#[test]
fn the_same_content_is_indexed_once() {
    let server = Server::start();
    server.wait_ready();
    let photo = image_path("shared:000000000139.jpg");
    let first = server.ingest(&server.add_image(&photo, "a.jpg"));
    let again = server.ingest(&server.image_root.join("a.jpg"));
    let copy = server.ingest(&server.add_image(&photo, "sub/copy-of-a.jpg"));
    assert_eq!(first["status"], "ok");
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(copy["duplicate"], true);
    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["id"], copy["id"]);
    assert_eq!(server.image_count(), 1);
}

#[test]
fn an_acknowledged_ingest_survives_kill_9_and_restart() {
    let mut server = Server::start();
    server.wait_ready();
    ingest_reference_photos(&server);
    let query = json!({ "query": "a man riding a horse", "top_k": 12 });
    let before: Value = server.post_json("/search", &query).json().unwrap();
    server.crash_and_restart();
    assert_eq!(server.image_count(), 12);
    let after: Value = server.post_json("/search", &query).json().unwrap();
    assert_eq!(before, after, "same results after a crash and restart");
}

#[test]
fn image_metadata_and_file_are_served_for_indexed_images_only() {
    let server = Server::start();
    server.wait_ready();
    let source = image_path("exif_rot6.jpg");
    let path = server.add_image(&source, "rotated.jpg");
    let id = server.ingest(&path)["id"].as_str().unwrap().to_string();
    let info: Value = server.get(&format!("/images/{id}")).json().unwrap();
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["format"], "jpeg");
    let reference = read_json("reference/images.json");
    let expected = reference.as_array().unwrap().iter().find(|c| c["file"] == "exif_rot6.jpg").unwrap();
    assert_eq!(info["width"], expected["width"], "size after EXIF orientation");
    assert_eq!(info["height"], expected["height"]);
    assert_eq!(info["bytes"].as_u64().unwrap(), std::fs::metadata(&source).unwrap().len());
    assert_eq!(info["content_hash"].as_str().unwrap().len(), 64);
    assert!(info["ingested_at"].as_str().unwrap().contains('T'));

    let file = server.get(info["file_url"].as_str().unwrap());
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "image/jpeg");
    assert_eq!(file.bytes().unwrap().as_ref(), std::fs::read(&source).unwrap().as_slice());

    assert_eq!(error_code(server.get("/images/0123456789abcdef"), 404), "image_not_found");
    assert_eq!(error_code(server.get("/images/0123456789abcdef/file"), 404), "image_not_found");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(error_code(server.get(&format!("/images/{id}/file")), 404), "image_file_gone");
}

#[test]
fn bad_ingest_requests_get_clear_errors_and_change_nothing() {
    let server = Server::start();
    server.wait_ready();
    let root = &server.image_root;
    let outside = root.parent().unwrap().join("outside.jpg");
    std::fs::copy(image_path("baseline.jpg"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link.jpg")).unwrap();
    std::fs::create_dir_all(root.join("folder")).unwrap();
    std::fs::write(root.join("notes.jpg"), "this is text, not a JPEG").unwrap();
    let jpeg = std::fs::read(image_path("baseline.jpg")).unwrap();
    std::fs::write(root.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let mut corrupt = std::fs::read(image_path("rgb.png")).unwrap();
    corrupt.truncate(corrupt.len() / 3);
    std::fs::write(root.join("corrupt.png"), &corrupt).unwrap();
    std::fs::write(root.join("bomb.png"), bomb_png()).unwrap();

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "path": outside }), 403, "path_outside_roots"),
        (json!({ "path": format!("{}/../outside.jpg", root.display()) }), 403, "path_outside_roots"),
        (json!({ "path": "../outside.jpg" }), 403, "path_outside_roots"),
        (json!({ "path": "/etc/passwd" }), 403, "path_outside_roots"),
        (json!({ "path": "link.jpg" }), 403, "path_outside_roots"),
        (json!({ "path": "missing.jpg" }), 404, "file_not_found"),
        (json!({ "path": "folder" }), 400, "invalid_path"),
        (json!({ "path": "" }), 400, "invalid_path"),
        (json!({ "path": "notes.jpg" }), 422, "unsupported_image"),
        (json!({ "path": "truncated.jpg" }), 422, "corrupt_image"),
        (json!({ "path": "corrupt.png" }), 422, "corrupt_image"),
        (json!({ "path": "bomb.png" }), 422, "image_too_large"),
        (json!({ "path": 42 }), 422, "invalid_request"),
        (json!({ "file": "a.jpg" }), 422, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let got = error_code(server.post_json("/ingest/image", &body), status);
        assert_eq!(got, code, "for {body}");
    }
    let c = client();
    let url = format!("{}/ingest/image", server.url);
    assert_eq!(
        error_code(c.post(&url).body("{\"path\": ").header("content-type", "application/json").send().unwrap(), 400),
        "malformed_json"
    );
    assert_eq!(
        error_code(c.post(&url).body("path=a.jpg").header("content-type", "text/plain").send().unwrap(), 415),
        "unsupported_media_type"
    );
    let huge = json!({ "path": "x".repeat(200_000) });
    assert_eq!(error_code(c.post(&url).json(&huge).send().unwrap(), 413), "payload_too_large");

    assert_eq!(server.image_count(), 0, "nothing was indexed");
    assert_eq!(server.get("/health").status(), 200, "the server stays healthy");
    server.ingest(&server.add_image(&image_path("baseline.jpg"), "good.jpg"));
    assert_eq!(server.image_count(), 1, "and keeps working");
}

/// A valid PNG header that claims 30000 x 30000 pixels (a decompression bomb).
fn bomb_png() -> Vec<u8> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&[0u8; 12], 2, 2, image::ExtendedColorType::Rgb8).unwrap();
    png[16..20].copy_from_slice(&30_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&30_000u32.to_be_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&png[12..29]);
    png[29..33].copy_from_slice(&hasher.finalize().to_be_bytes());
    png
}

#[test]
fn bad_search_requests_get_clear_errors() {
    let server = Server::start();
    server.wait_ready();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "query": "" }), 422, "empty_query"),
        (json!({ "query": "   \n\t" }), 422, "empty_query"),
        (json!({ "query": "a".repeat(1001) }), 422, "query_too_long"),
        (json!({ "query": "cat", "top_k": 0 }), 422, "invalid_top_k"),
        (json!({ "query": "cat", "top_k": -3 }), 422, "invalid_top_k"),
        (json!({ "query": "cat", "top_k": 1001 }), 422, "invalid_top_k"),
        (json!({ "query": "cat", "top_k": "ten" }), 422, "invalid_request"),
        (json!({ "query": "cat", "topk": 3 }), 422, "invalid_request"),
        (json!({ "top_k": 3 }), 422, "invalid_request"),
        (json!({ "image_id": "0123456789abcdef" }), 404, "image_not_found"),
        (json!({ "query": "cat", "image_id": "0123456789abcdef" }), 422, "invalid_request"),
    ];
    for (body, status, code) in cases {
        assert_eq!(error_code(server.post_json("/search", &body), status), code, "for {body}");
    }
    // Long but legal queries are cut to the model's 77 tokens, and the answer says so.
    let long = "a photo of a dog running on the beach ".repeat(20);
    let body: Value = server.post_json("/search", &json!({ "query": long })).json().unwrap();
    assert_eq!(body["truncated"], true);
    assert_eq!(error_code(server.get("/search"), 405), "method_not_allowed");
    assert_eq!(error_code(server.get("/no/such/endpoint"), 404), "not_found");
}

#[test]
fn a_model_that_cannot_load_is_reported_not_hidden() {
    let missing = tempfile::tempdir().unwrap();
    let server = Server::start_with(missing.path(), &[]);
    server.wait_for("/ready", 503);
    std::thread::sleep(Duration::from_millis(300));
    let health: Value = server.get("/health").json().unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model"]["state"], "failed", "{health}");
    let error = health["model"]["error"].as_str().unwrap();
    assert!(error.contains("onnx/vision_model.onnx") && error.contains("tokenizer.json"), "{error}");
    assert_eq!(error_code(server.post_json("/search", &json!({ "query": "cat" })), 503), "model_failed");
}

#[test]
fn overload_is_answered_at_once_with_retry_after() {
    let server = Server::start_with(&tiny_model(), &["--queue-capacity", "1", "--max-batch", "1"]);
    server.wait_ready();
    let url = format!("{}/search", server.url);
    let answers: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..48)
            .map(|i| {
                let url = url.clone();
                s.spawn(move || {
                    let r = client().post(&url).json(&json!({ "query": format!("picture number {i} of a busy street") })).send().unwrap();
                    (r.status().as_u16(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let overloaded: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(answers.iter().all(|(s, _)| *s == 200 || *s == 503), "{answers:?}");
    assert!(!overloaded.is_empty(), "a queue of one must overflow under 48 concurrent requests");
    assert!(overloaded.iter().all(|(_, retry)| retry.as_deref() == Some("1")), "503s carry Retry-After");
    assert!(answers.iter().any(|(s, _)| *s == 200), "some requests are served");
    assert_eq!(server.post_json("/search", &json!({ "query": "calm again" })).status(), 200);
}

#[test]
fn metrics_docs_and_openapi_are_served() {
    let server = Server::start();
    server.wait_ready();
    server.ingest(&server.add_image(&image_path("baseline.jpg"), "m.jpg"));
    server.post_json("/search", &json!({ "query": "a cat" }));
    server.post_json("/search", &json!({ "query": "" }));
    let metrics = server.get("/metrics").text().unwrap();
    for needle in [
        "vq_http_requests_total{route=\"/search\",method=\"POST\",status=\"200\"} 1",
        "vq_http_requests_total{route=\"/search\",method=\"POST\",status=\"422\"} 1",
        "vq_http_request_duration_seconds_bucket{route=\"/ingest/image\",method=\"POST\",status=\"200\"",
        "vq_embed_duration_seconds_bucket{modality=\"text\"",
        "vq_embed_duration_seconds_bucket{modality=\"image\"",
        "vq_embed_batch_size_bucket{modality=\"image\"",
        "vq_index_images 1",
        "vq_model_loaded 1",
        "vq_model_state{state=\"ready\"} 1",
        "vq_ingest_images_total{outcome=\"indexed\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing `{needle}` in:\n{metrics}");
    }
    let spec: Value = server.get("/openapi.json").json().unwrap();
    for path in ["/health", "/ready", "/search", "/ingest/image", "/images/{id}", "/images/{id}/file", "/metrics"] {
        assert!(spec["paths"][path].is_object(), "OpenAPI documents {path}");
    }
    // The fields, and (second) which one of `query` and `image_id` must be given.
    let exact = &spec["components"]["schemas"]["SearchRequest"]["allOf"][0]["properties"]["exact"];
    assert_eq!((exact["type"].as_str(), exact["default"].as_bool()), (Some("boolean"), Some(false)), "{exact}");
    let docs = server.get("/docs/");
    assert_eq!(docs.status(), 200);
    let html = docs.text().unwrap();
    assert!(html.contains("swagger") && !html.contains("cdn"), "docs page is served offline");
}

#[test]
fn traces_are_exported_over_otlp_when_configured() {
    use std::io::{Read, Write};
    // A minimal OTLP/HTTP collector: accepts POSTs and keeps their path and body.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (sender, received) = std::sync::mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 65536];
            let (head_end, length) = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break (data.len(), 0);
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..pos]).to_lowercase();
                    let length =
                        head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))).unwrap_or(0);
                    break (pos + 4, length);
                }
            };
            while data.len() < head_end + length {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            let request_line = String::from_utf8_lossy(&data[..data.iter().position(|&b| b == b'\r').unwrap_or(0)]).to_string();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
            let _ = sender.send((request_line, data[head_end.min(data.len())..].to_vec()));
        }
    });
    let server = Server::start_with_env(&tiny_model(), &["--otlp-endpoint", &endpoint], &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    server.wait_ready();
    server.post_json("/search", &json!({ "query": "a traced search" }));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut bodies = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok((line, body)) = received.recv_timeout(Duration::from_millis(200)) {
            assert!(line.starts_with("POST /v1/traces"), "{line}");
            bodies.extend(body);
            let text = String::from_utf8_lossy(&bodies);
            if text.contains("visionquery") && text.contains("engine.search") && text.contains("/search") {
                return;
            }
        }
    }
    panic!("no trace with the search spans arrived: {}", String::from_utf8_lossy(&bodies));
}

/// Photos with real EXIF (tests/fixtures/exif), indexed under dated folders.
fn ingest_exif_library(server: &Server) -> std::collections::HashMap<&'static str, String> {
    let files = [
        ("full.jpg", "holiday/2019/paris.jpg"),
        ("south_west.jpg", "holiday/2020/rio.jpg"),
        ("no_offset.jpg", "holiday/2021/fuji.jpg"),
        ("no_exif.jpg", "misc/plain.jpg"),
        ("padded_camera.jpg", "misc/nikon.jpg"),
        ("full.png", "holiday/2019/paris.png"),
        ("truncated_segment.jpg", "misc/broken_exif.jpg"),
    ];
    files
        .iter()
        .map(|(fixture, name)| {
            let path = server.add_image(&fixtures().join("exif").join(fixture), name);
            (*name, server.ingest(&path)["id"].as_str().unwrap().to_string())
        })
        .collect()
}

fn search_ids(server: &Server, body: Value) -> (u16, Value, Vec<String>) {
    let r = server.post_json("/search", &body);
    let status = r.status().as_u16();
    let json: Value = r.json().unwrap();
    let ids = json["results"].as_array().map(|a| a.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()).unwrap_or_default();
    (status, json, ids)
}

#[test]
fn photo_metadata_is_read_at_ingest_and_shown_everywhere() {
    let server = Server::start();
    server.wait_ready();
    let ids = ingest_exif_library(&server);
    let info: Value = server.get(&format!("/images/{}", ids["holiday/2019/paris.jpg"])).json().unwrap();
    assert_eq!(info["taken_at"], "2019-07-14T12:30:05+02:00");
    assert_eq!(info["camera"], json!({ "make": "Canon", "model": "Canon EOS 5D Mark IV" }));
    assert_eq!(info["lens"], "EF24-70mm f/2.8L II USM");
    assert!((info["location"]["lat"].as_f64().unwrap() - 48.8566).abs() < 1e-4, "{info}");
    let plain: Value = server.get(&format!("/images/{}", ids["misc/plain.jpg"])).json().unwrap();
    for field in ["taken_at", "camera", "lens", "location"] {
        assert!(plain[field].is_null(), "{field} is null where the photo says nothing: {plain}");
    }
    let broken: Value = server.get(&format!("/images/{}", ids["misc/broken_exif.jpg"])).json().unwrap();
    assert!(broken["taken_at"].is_null(), "bad EXIF never fails an ingest: {broken}");
    let (_, found, _) = search_ids(&server, json!({ "query": "a photo", "top_k": 10 }));
    let fuji = found["results"].as_array().unwrap().iter().find(|r| r["id"] == ids["holiday/2021/fuji.jpg"].as_str()).unwrap();
    assert_eq!(fuji["taken_at"], "2021-12-31T23:59:58", "no offset recorded, none invented");
    let listed: Value = server.get("/images?limit=10").json().unwrap();
    assert!(listed["images"].as_array().unwrap().iter().any(|i| i["camera"]["make"] == "NIKON CORPORATION"));
}

#[test]
fn filters_sorting_and_paging_through_the_api() {
    let server = Server::start();
    server.wait_ready();
    let ids = ingest_exif_library(&server);
    let id = |name: &str| ids[name].clone();
    let q = |filters: Value| json!({ "query": "a photo", "top_k": 10, "filters": filters });

    let (_, _, got) = search_ids(&server, q(json!({ "camera": ["CANON", "fujifilm x-t3"] })));
    let mut expected = vec![id("holiday/2019/paris.jpg"), id("holiday/2019/paris.png"), id("holiday/2021/fuji.jpg")];
    let mut sorted = got.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "camera: any of, case-insensitive");
    let (_, _, got) = search_ids(&server, q(json!({ "taken_after": "2019-07-14", "taken_before": "2019-07-14" })));
    assert_eq!(got.len(), 2, "a date bound is the whole day, inclusive: {got:?}");
    let (_, _, got) = search_ids(&server, q(json!({ "taken_after": "2020-01-01T00:00:00Z" })));
    assert_eq!(got, vec![id("holiday/2021/fuji.jpg")], "undated photos never match a date filter");
    let (status, _, exact) = search_ids(&server, json!({ "query": "a photo", "top_k": 10, "exact": true }));
    assert_eq!(status, 200);
    assert_eq!(exact, search_ids(&server, json!({ "query": "a photo", "top_k": 10 })).2, "a small library is ranked exactly either way");
    let (status, _, _) = search_ids(&server, json!({ "query": "a photo", "exact": "yes" }));
    assert_eq!(status, 422, "`exact` is a boolean");
    let (_, _, got) = search_ids(&server, q(json!({ "folder": "holiday/2019" })));
    assert_eq!(got.len(), 2);
    let (_, _, got) = search_ids(&server, q(json!({ "folder": "holiday/201" })));
    assert!(got.is_empty(), "folders match whole path components");
    let (_, _, got) = search_ids(&server, q(json!({ "format": "png" })));
    assert_eq!(got, vec![id("holiday/2019/paris.png")]);
    let (_, _, got) = search_ids(&server, q(json!({ "near": { "lat": -22.9, "lon": -43.2, "radius_km": 50 } })));
    assert_eq!(got, vec![id("holiday/2020/rio.jpg")]);

    let (_, _, newest) = search_ids(&server, json!({ "query": "a photo", "top_k": 10, "sort": "-taken_at" }));
    assert_eq!(newest[0], id("holiday/2021/fuji.jpg"));
    assert_eq!(newest.len(), 7, "undated photos still listed, after the dated ones");
    let (_, _, oldest) = search_ids(&server, json!({ "query": "a photo", "top_k": 10, "sort": "taken_at" }));
    assert_eq!(oldest[2], id("holiday/2021/fuji.jpg"));

    let (_, first, page1) = search_ids(&server, json!({ "query": "a photo", "top_k": 3, "offset": 0 }));
    let (_, _, page2) = search_ids(&server, json!({ "query": "a photo", "top_k": 3, "offset": 3 }));
    let (_, last, page3) = search_ids(&server, json!({ "query": "a photo", "top_k": 3, "offset": 6 }));
    assert_eq!((first["more"].as_bool(), last["more"].as_bool()), (Some(true), Some(false)));
    let all: std::collections::HashSet<_> = page1.iter().chain(&page2).chain(&page3).collect();
    assert_eq!(all.len(), 7, "pages neither repeat nor skip");

    let listed: Value = server.get("/images?camera=canon&sort=-taken_at&limit=1").json().unwrap();
    assert_eq!((listed["total"].as_u64(), listed["more"].as_bool()), (Some(2), Some(true)), "{listed}");

    for (filters, field) in [
        (json!({ "taken_after": "yesterday" }), "filters.taken_after"),
        (json!({ "near": { "lat": 91, "lon": 0, "radius_km": 1 } }), "filters.near.lat"),
        (json!({ "near": { "lat": 0, "lon": 0, "radius_km": -1 } }), "filters.near.radius_km"),
        (json!({ "colour": "red" }), "colour"),
    ] {
        let (status, body, _) = search_ids(&server, q(filters.clone()));
        assert_eq!(status, 422, "{filters}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(field), "the message names {field}: {body}");
    }
    assert_eq!(server.get("/images?near=1,2").status(), 422);
}

#[test]
fn combined_queries_add_and_subtract_terms() {
    let server = Server::start();
    server.wait_ready();
    let photos = ingest_reference_photos(&server);
    let texts =
        read_json("reference/search.json")["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>();
    let (status, plain, plain_ids) = search_ids(&server, json!({ "query": texts[0], "top_k": 12 }));
    assert_eq!(status, 200, "{plain}");
    // Subtracting the best match's own image pushes it down; adding it back with weight 3 pulls it first.
    let best = plain_ids[0].clone();
    let (_, minus, minus_ids) = search_ids(&server, json!({ "query": texts[0], "top_k": 12, "negative": [{ "image_id": best }] }));
    assert_ne!(minus_ids[0], best, "{minus}");
    let (_, _, plus_ids) = search_ids(&server, json!({ "query": texts[1], "top_k": 12, "positive": [{ "image_id": best, "weight": 3 }] }));
    assert_eq!(plus_ids[0], best);
    let (status, body, _) = search_ids(&server, json!({ "query": texts[0], "negative": [texts[0]] }));
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_request")), "terms that cancel out: {body}");
    let (status, _, _) = search_ids(&server, json!({ "query": "x", "negative": [{ "query": "y", "image_id": best }] }));
    assert_eq!(status, 422);
    let (status, _, _) = search_ids(&server, json!({ "query": "x", "positive": [{ "query": "y", "weight": -1 }] }));
    assert_eq!(status, 422);
    assert_eq!(photos.len(), 12);
}

#[test]
fn images_indexed_before_metadata_get_it_from_a_background_job() {
    let mut server = Server::start();
    server.wait_ready();
    let photo = server.add_image(&fixtures().join("exif/full.jpg"), "old/paris.jpg");
    let photo = std::fs::canonicalize(photo).unwrap();
    server.kill();
    {
        // As an older version stored it: no photo metadata read.
        use visionquery::store::{EmbeddedStore, VectorStore};
        let store = EmbeddedStore::open(&server.data_dir).unwrap();
        let mut old = visionquery::store::conformance_record("0123456789abcdef");
        old.path = photo.display().to_string();
        old.photo_read = false;
        let mut vector = vec![0.0f32; 32];
        vector[0] = 1.0;
        store.upsert(&old, &vector).unwrap();
    }
    server.start_again();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        let jobs: Value = server.get("/jobs").json().unwrap();
        let job = jobs["jobs"].as_array().unwrap().iter().find(|j| j["kind"] == "photo_metadata").cloned();
        if let Some(job) = job.filter(|j| j["state"] == "completed") {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "no completed metadata job: {jobs}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((job["total"].as_u64(), job["indexed"].as_u64()), (Some(1), Some(1)), "{job}");
    let info: Value = server.get("/images/0123456789abcdef").json().unwrap();
    assert_eq!(info["camera"]["make"], "Canon", "{info}");
    // Read once: a restart queues no second pass.
    server.crash_and_restart();
    std::thread::sleep(Duration::from_millis(300));
    let jobs: Value = server.get("/jobs").json().unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().iter().filter(|j| j["kind"] == "photo_metadata").count(), 1);
}

#[test]
fn duplicates_are_grouped_as_identical_copies_and_similar_pictures() {
    let server = Server::start();
    server.wait_ready();
    let original = server.add_image(&image_path("baseline.jpg"), "a.jpg");
    let copy = server.add_image(&image_path("baseline.jpg"), "backup/a-copy.jpg");
    let first = server.ingest(&original)["id"].as_str().unwrap().to_string();
    assert_eq!(server.ingest(&copy)["duplicate"], true);
    // The same pixels in other bytes (only the EXIF differs).
    let tagged = server.ingest(&server.add_image(&fixtures().join("exif/full.jpg"), "tagged/full.jpg"))["id"].as_str().unwrap().to_string();
    let retagged = server.ingest(&server.add_image(&fixtures().join("exif/no_offset.jpg"), "tagged/no_offset.jpg"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The same picture resized and re-encoded: close, not identical.
    let picture = image::open(image_path("baseline.jpg")).unwrap();
    let smaller = picture.resize(288, 288, image::imageops::FilterType::Triangle);
    let resized = server.image_root.join("resized.jpg");
    smaller.to_rgb8().save_with_format(&resized, image::ImageFormat::Jpeg).unwrap();
    let reencoded = server.ingest(&resized)["id"].as_str().unwrap().to_string();
    server.ingest(&server.add_image(&image_path("rgb.png"), "other.png"));

    let body: Value = server.get("/duplicates?threshold=0.97").json().unwrap();
    let groups = body["groups"].as_array().unwrap();
    let members = |g: &Value| -> Vec<(String, String)> {
        g["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["id"].as_str().unwrap().to_string(), i["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string()))
            .collect()
    };
    let identical: Vec<Vec<(String, String)>> = groups.iter().filter(|g| g["kind"] == "identical").map(members).collect();
    assert!(identical.contains(&vec![(first.clone(), "a.jpg".into()), (first.clone(), "a-copy.jpg".into())]), "one entry per path: {body}");
    assert!(
        identical.iter().any(|g| g.iter().any(|(id, _)| *id == tagged) && g.iter().any(|(id, _)| *id == retagged)),
        "same pixels: {body}"
    );
    let similar: Vec<Vec<(String, String)>> = groups.iter().filter(|g| g["kind"] == "similar").map(members).collect();
    assert!(similar.iter().any(|g| g.iter().any(|(id, _)| *id == reencoded)), "a re-encode is similar: {body}");
    assert!(similar.iter().flatten().all(|(_, path)| path != "other.png"), "{body}");
    for g in groups.iter().filter(|g| g["kind"] == "similar") {
        assert!(g["min_score"].as_f64().unwrap() >= 0.97);
    }
    // Deleting the copy's file ends it being a copy.
    std::fs::remove_file(&copy).unwrap();
    let body: Value = server.get("/duplicates?threshold=0.97").json().unwrap();
    assert!(!body.to_string().contains("a-copy.jpg"), "{body}");
    assert_eq!(server.get("/duplicates?threshold=0.2").status(), 422);
    assert_eq!(server.get("/duplicates?limit=3").status(), 400);
}

/// Whoever can write inside a root swaps the folder of an indexed photo for a symlink to a
/// folder outside, over and over, while the photo is fetched: every answer is the photo or a
/// 404, never the file outside (the path is checked, then the file is opened beneath the root
/// and read from that handle).
#[test]
fn a_folder_swapped_for_a_symlink_never_serves_a_file_from_outside_the_roots() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = Server::start();
    server.wait_ready();
    let photo = server.add_image(&image_path("baseline.jpg"), "album/photo.jpg");
    let id = server.ingest(&photo)["id"].as_str().unwrap().to_string();
    let real = std::fs::read(&photo).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("album")).unwrap();
    let secret = b"SECRET outside the image roots".repeat(64);
    std::fs::write(outside.path().join("album/photo.jpg"), &secret).unwrap();

    let album = server.image_root.join("album");
    let parked = server.image_root.join("album.real");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, album, parked, target) = (stop.clone(), album.clone(), parked.clone(), outside.path().join("album"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::fs::rename(&album, &parked).unwrap();
                std::os::unix::fs::symlink(&target, &album).unwrap();
                std::fs::remove_file(&album).unwrap();
                std::fs::rename(&parked, &album).unwrap();
            }
        })
    };
    let (mut served, mut refused) = (0, 0);
    let http = client();
    for _ in 0..1500 {
        let response = http.get(format!("{}/images/{id}/file", server.url)).send().unwrap();
        match response.status().as_u16() {
            200 => {
                let body = response.bytes().unwrap();
                assert!(!body.windows(6).any(|w| w == b"SECRET"), "a file outside the roots was served");
                assert_eq!(body.as_ref(), real.as_slice());
                served += 1;
            }
            404 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!("served {served}, refused {refused}");
    assert!(served > 0, "the photo itself was never served while the folder was in place");
}

/// The statuses `/openapi.json` documents for `method path`.
fn documented(spec: &Value, method: &str, path: &str) -> Vec<u16> {
    let responses = spec["paths"][path][method]["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} is documented"));
    responses.keys().filter_map(|status| status.parse().ok()).collect()
}

#[test]
fn json_bodies_are_objects_never_arrays_of_their_fields() {
    let server = Server::start();
    server.wait_ready();
    let photo = server.add_image(&image_path("baseline.jpg"), "photo.jpg");
    // serde fills a struct from an array of its fields in order; the API documents objects only.
    assert_eq!(error_code(server.post_json("/ingest/image", &json!([photo])), 422), "invalid_request");
    for body in [
        json!(["a dog"]),
        json!({ "query": "a dog", "filters": [null, null] }),
        json!({ "query": "a dog", "filters": { "near": [48.8, 2.3, 5.0] } }),
        json!({ "query": "a dog", "positive": [["a cat"]] }),
    ] {
        assert_eq!(error_code(server.post_json("/search", &body), 422), "invalid_request", "for {body}");
    }
    assert_eq!(server.post_json("/search", &json!({ "query": "a dog", "positive": ["a cat", { "query": "a ball" }] })).status(), 200);
    assert_eq!(server.image_count(), 0, "nothing was ingested");
}

#[test]
fn bounds_are_checked_before_numbers_are_rounded_to_32_bits() {
    let server = Server::start();
    server.wait_ready();
    // Each is just past its documented bound and would round onto it as an f32.
    assert_eq!(error_code(server.get("/duplicates?threshold=1.0000000000000004"), 422), "invalid_request");
    assert_eq!(error_code(server.get("/duplicates?threshold=0.49999999999999994"), 422), "invalid_request");
    let weight = json!({ "query": "a dog", "positive": [{ "query": "a cat", "weight": 100.00000000000001 }] });
    assert_eq!(error_code(server.post_json("/search", &weight), 422), "invalid_request");
    let min_score = json!({ "query": "a dog", "filters": { "min_score": 1.0000000000000002 } });
    assert_eq!(error_code(server.post_json("/search", &min_score), 422), "invalid_filter");
    assert_eq!(server.get("/duplicates?threshold=1").status(), 200);
}

#[test]
fn listing_offsets_past_a_signed_64_bit_integer_are_refused() {
    let server = Server::start();
    server.wait_ready();
    // The PostgreSQL store's OFFSET is a bigint: a larger offset wrapped to a negative one (500).
    assert_eq!(error_code(server.get("/images?offset=9223372036854775808"), 422), "invalid_offset");
    assert_eq!(server.get("/images?offset=9223372036854775807").status(), 200);
}

#[test]
fn multipart_parts_are_only_the_documented_ones() {
    use reqwest::blocking::multipart::{Form, Part};
    let server = Server::start();
    server.wait_ready();
    let jpeg = std::fs::read(image_path("baseline.jpg")).unwrap();
    let part = || Part::bytes(jpeg.clone()).file_name("a.jpg");
    let send = |path: &str, form: Form| client().post(format!("{}{path}", server.url)).multipart(form).send().unwrap();

    let misspelt = Form::new().part("photo", part());
    assert_eq!(error_code(send("/ingest/upload", misspelt), 422), "unexpected_part");
    assert_eq!(server.image_count(), 0);
    let extra = Form::new().part("file", part()).text("comment", "hi");
    assert_eq!(error_code(send("/search/image", extra), 422), "unexpected_part");
    let two = Form::new().part("file", part()).part("file", part());
    assert_eq!(error_code(send("/search/image", two), 422), "too_many_files");
    assert_eq!(send("/search/image", Form::new().part("file", part())).status(), 200);
    assert_eq!(send("/ingest/upload", Form::new().part("files", part()).part("file", part())).status(), 200);
}

#[test]
fn openapi_documents_every_refusal_of_a_malformed_request() {
    let server = Server::start();
    server.wait_ready();
    let spec: Value = server.get("/openapi.json").json().unwrap();
    let raw = |path: &str, content_type: &str, body: &'static str| {
        client().post(format!("{}{path}", server.url)).header("content-type", content_type).body(body).send().unwrap()
    };
    for path in ["/search", "/ingest/image", "/ingest/directory"] {
        for (response, status) in
            [(raw(path, "text/plain", "{}"), 415), (raw(path, "application/json", "{"), 400), (raw(path, "application/json", "[]"), 422)]
        {
            assert_eq!(response.status().as_u16(), status, "POST {path}");
            assert!(documented(&spec, "post", path).contains(&status), "POST {path} documents {status}");
        }
    }
    for path in ["/search/image", "/ingest/upload"] {
        let malformed = raw(path, "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"fi\0le\"\r\n\r\n");
        let statuses = [
            (raw(path, "application/json", "{}"), 415),
            (malformed, 400),
            (raw(path, "multipart/form-data; boundary=x", "--x--\r\n"), 422),
        ];
        for (response, status) in statuses {
            assert_eq!(response.status().as_u16(), status, "POST {path}");
            assert!(documented(&spec, "post", path).contains(&status), "POST {path} documents {status}");
        }
    }
    assert_eq!(server.get("/images?limit=ten").status(), 400);
    assert!(documented(&spec, "get", "/images").contains(&400));
    let threshold = &spec["paths"]["/duplicates"]["get"]["parameters"][0];
    assert_eq!((threshold["in"].as_str(), threshold["required"].as_bool()), (Some("query"), Some(false)), "{threshold}");
}

/// A multipart request refused at its first part (a misspelt name) while megabytes of it are
/// still on the way gets its JSON answer: the server reads and drops the rest before answering.
/// (Answering first made the client see a reset connection, not the error.)
#[test]
fn a_refused_large_upload_still_gets_its_json_answer() {
    use reqwest::blocking::multipart::{Form, Part};
    let server = Server::start();
    server.wait_ready();
    let large = vec![0x5Au8; 8 * 1024 * 1024];
    for path in ["/ingest/upload", "/search/image"] {
        let form = Form::new().part("photo", Part::bytes(large.clone()).file_name("big.jpg"));
        let response = client().post(format!("{}{path}", server.url)).multipart(form).send().expect("an answer, not a reset connection");
        assert_eq!(error_code(response, 422), "unexpected_part", "{path}");
    }
}
