//! Serving image bytes and staying up under load, against a real server process: thumbnails
//! (sizes, cache layout, torn files, validators, the decode budget), files (ranges, conditional
//! GETs, HEAD, media types), load shedding of heavy routes and request deadlines.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::server::{client, Server};
use common::*;
use serde_json::{json, Value};

/// The sizes thumbnails are rendered at (the API documents them).
const SIZES: [u32; 5] = [64, 128, 256, 512, 1024];

fn first_photo() -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(shared_photos())
        .expect("shared photos")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    names.sort();
    names.swap_remove(0)
}

fn ingest_photo(server: &Server, name: &str) -> (String, PathBuf) {
    let path = server.add_image(&first_photo(), name);
    (server.ingest(&path)["id"].as_str().unwrap().to_string(), path)
}

fn is_whole_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9]) && image::load_from_memory(bytes).is_ok()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn thumbnail_files(server: &Server) -> Vec<PathBuf> {
    files_under(&server.data_dir.join("thumbnails"))
}

fn header(r: &reqwest::blocking::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn thumbnails_snap_to_a_few_sizes_in_one_folder_per_image_that_delete_removes() {
    let server = Server::start();
    server.wait_ready();
    let (id, _) = ingest_photo(&server, "photo.jpg");
    let info: Value = server.get(&format!("/images/{id}")).json().unwrap();
    let own = info["width"].as_u64().unwrap().max(info["height"].as_u64().unwrap()) as u32;

    for requested in [32, 50, 64, 65, 100, 127, 128, 129, 200, 256, 300, 511, 512, 700, 1000, 1024] {
        let r = server.get(&format!("/images/{id}/thumbnail?size={requested}"));
        assert_eq!(r.status(), 200);
        let bytes = r.bytes().unwrap();
        let thumb = image::load_from_memory(&bytes).unwrap();
        let longest = thumb.width().max(thumb.height());
        let expected = SIZES.into_iter().find(|&s| s >= requested).unwrap().min(own);
        assert_eq!(longest, expected, "size={requested} snaps up to a cached size, never past the image's own");
    }
    let files = thumbnail_files(&server);
    assert!(files.len() <= SIZES.len(), "one file per cached size, not per requested size: {files:?}");
    let folder = files[0].parent().unwrap();
    assert!(folder.ends_with(&id), "an image's thumbnails live in a folder named by its id: {files:?}");
    assert!(files.iter().all(|f| f.parent() == Some(folder)));

    assert_eq!(server.delete(&format!("/images/{id}")).status(), 200);
    assert_eq!(thumbnail_files(&server), Vec::<PathBuf>::new(), "delete removes every cached size");
    assert!(!folder.exists());
    assert_eq!(server.get(&format!("/images/{id}/thumbnail?size=300")).status(), 404);
}

#[test]
fn concurrent_renders_give_whole_jpegs_and_a_torn_cache_file_is_never_served() {
    let server = Server::start_with(&tiny_model(), &["--max-heavy-requests", "32"]);
    server.wait_ready();
    let (id, _) = ingest_photo(&server, "photo.jpg");
    let url = format!("{}/images/{id}/thumbnail?size=256", server.url);
    let barrier = Barrier::new(12);
    let bodies: Vec<(u16, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let r = client().get(&url).send().unwrap();
                    (r.status().as_u16(), r.bytes().unwrap().to_vec())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &bodies {
        assert_eq!(*status, 200);
        assert!(is_whole_jpeg(body), "a whole JPEG for every concurrent request ({} bytes)", body.len());
        assert_eq!(body, &bodies[0].1);
    }
    let files = thumbnail_files(&server);
    assert_eq!(files.len(), 1, "one cached file and no temp files left behind: {files:?}");

    // A cache file cut off by a crash before its data reached the disk: served, it would be a
    // broken image every browser keeps. It must be rendered again instead.
    for keep in [bodies[0].1.len() / 2, 0] {
        std::fs::write(&files[0], &bodies[0].1[..keep]).unwrap();
        let again = server.get(&format!("/images/{id}/thumbnail?size=256")).bytes().unwrap();
        assert!(is_whole_jpeg(&again), "a torn cache file ({keep} bytes) is not served");
        assert_eq!(again.as_ref(), bodies[0].1.as_slice());
        assert!(is_whole_jpeg(&std::fs::read(&files[0]).unwrap()), "and it is replaced on disk");
    }
}

#[test]
fn thumbnails_carry_a_strong_etag_and_revalidate_with_304() {
    let server = Server::start();
    server.wait_ready();
    let (id, _) = ingest_photo(&server, "photo.jpg");
    let get = |size: u32, tag: Option<&str>| {
        let mut request = client().get(format!("{}/images/{id}/thumbnail?size={size}", server.url));
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        request.send().unwrap()
    };
    let first = get(200, None);
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag").expect("an ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong ETag: {etag}");
    let cache = header(&first, "cache-control").expect("Cache-Control");
    assert!(cache.contains("max-age=") && !cache.contains("immutable"), "{cache}");
    assert_eq!(header(&get(256, None), "etag").as_deref(), Some(etag.as_str()), "same returned size, same tag");
    assert_ne!(header(&get(64, None), "etag").as_deref(), Some(etag.as_str()));

    let revalidated = get(220, Some(&etag));
    assert_eq!(revalidated.status(), 304);
    assert_eq!(header(&revalidated, "etag").as_deref(), Some(etag.as_str()));
    assert!(revalidated.bytes().unwrap().is_empty());
    assert_eq!(get(220, Some(&format!("W/{etag}"))).status(), 304, "If-None-Match compares weakly");
    assert_eq!(get(220, Some("\"something-else\"")).status(), 200);
    assert_eq!(get(64, Some(&etag)).status(), 200, "another size has another tag");

    server.delete(&format!("/images/{id}"));
    assert_eq!(get(220, Some(&etag)).status(), 404, "no 304 for an image that is gone");
}

#[test]
fn image_files_support_ranges_conditional_requests_and_head() {
    let server = Server::start();
    server.wait_ready();
    let (id, path) = ingest_photo(&server, "photo.jpg");
    let bytes = std::fs::read(&path).unwrap();
    let url = format!("{}/images/{id}/file", server.url);
    let c = client();

    let full = c.get(&url).send().unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(header(&full, "content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(header(&full, "accept-ranges").as_deref(), Some("bytes"));
    let etag = header(&full, "etag").expect("an ETag");
    assert!(etag.starts_with('"'), "strong: {etag}");
    let modified = header(&full, "last-modified").expect("Last-Modified");
    assert_eq!(full.bytes().unwrap().as_ref(), bytes.as_slice());

    let part = c.get(&url).header("range", "bytes=100-1099").send().unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(header(&part, "content-range"), Some(format!("bytes 100-1099/{}", bytes.len())));
    assert_eq!(part.bytes().unwrap().as_ref(), &bytes[100..1100], "exactly the requested bytes of the file");
    let tail = c.get(&url).header("range", "bytes=-50").send().unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().unwrap().as_ref(), &bytes[bytes.len() - 50..]);
    assert_eq!(c.get(&url).header("range", format!("bytes={}-", bytes.len() + 10)).send().unwrap().status(), 416);
    // A resumed download of a file that changed gets the whole file, not a spliced range.
    let stale = c.get(&url).header("range", "bytes=0-9").header("if-range", "\"old\"").send().unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().unwrap().len(), bytes.len());
    assert_eq!(c.get(&url).header("range", "bytes=0-9").header("if-range", &etag).send().unwrap().status(), 206);

    let not_modified = c.get(&url).header("if-none-match", &etag).send().unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(header(&not_modified, "etag").as_deref(), Some(etag.as_str()));
    assert!(not_modified.bytes().unwrap().is_empty());
    assert_eq!(c.get(&url).header("if-modified-since", &modified).send().unwrap().status(), 304);
    assert_eq!(
        c.get(&url).header("if-none-match", "\"other\"").header("if-modified-since", &modified).send().unwrap().status(),
        200,
        "If-None-Match wins over If-Modified-Since"
    );

    let head = c.head(&url).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), Some(bytes.len().to_string()));
    assert!(head.bytes().unwrap().is_empty());

    // The media type comes from the extension, but only an image type: a PNG saved as
    // `page.html` is not served as HTML from our origin.
    let disguised = server.add_image(&image_path("rgb.png"), "page.html");
    let other = server.ingest(&disguised)["id"].as_str().unwrap().to_string();
    let r = server.get(&format!("/images/{other}/file"));
    assert_eq!(header(&r, "content-type").as_deref(), Some("image/png"));
    assert_eq!(header(&r, "x-content-type-options").as_deref(), Some("nosniff"));

    // Edited on disk since it was indexed: another tag, so caches do not keep the old bytes.
    std::fs::write(&path, std::fs::read(image_path("baseline.jpg")).unwrap()).unwrap();
    let edited = c.get(&url).header("if-none-match", &etag).send().unwrap();
    assert_eq!(edited.status(), 200);
    assert_ne!(header(&edited, "etag").as_deref(), Some(etag.as_str()));
    std::fs::remove_file(&path).unwrap();
    let gone = c.get(&url).send().unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(gone.json::<Value>().unwrap()["error"]["code"], "image_file_gone");
}

/// A `/proc/<pid>/status` field in bytes (`VmRSS`: resident now; `VmHWM`: peak resident).
#[test]
fn concurrent_thumbnails_and_image_searches_of_a_huge_image_decode_at_most_one_per_core_at_a_time() {
    // A heavy-request budget large enough that only the decode budget bounds the work.
    let server = Server::start_with(&tiny_model(), &["--max-heavy-requests", "100"]);
    server.wait_ready();
    let (width, height) = (4000u32, 3000u32);
    let decoded = u64::from(width * height * 3);
    let png = big_png(width, height);
    std::fs::write(server.image_root.join("huge.png"), &png).unwrap();
    let id = server.ingest(&server.image_root.join("huge.png"))["id"].as_str().unwrap().to_string();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;

    // Thumbnails of every size, then searches with the picture itself (each holds its upload).
    for (what, requests) in [("thumbnails", 40usize), ("image searches", 10)] {
        let before = reset_peak(server.pid());
        let barrier = Barrier::new(requests);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..requests)
                .map(|i| {
                    let (barrier, png, id, server) = (&barrier, &png, &id, &server);
                    s.spawn(move || {
                        barrier.wait();
                        if what == "thumbnails" {
                            let url = format!("{}/images/{id}/thumbnail?size={}", server.url, SIZES[i % SIZES.len()]);
                            let r = client().get(&url).send().unwrap();
                            let status = r.status().as_u16();
                            assert!(is_whole_jpeg(&r.bytes().unwrap()));
                            status
                        } else {
                            let part = reqwest::blocking::multipart::Part::bytes(png.clone()).file_name("query.png");
                            let form = reqwest::blocking::multipart::Form::new().part("file", part);
                            let r = client().post(format!("{}/search/image?top_k=1", server.url)).multipart(form).send().unwrap();
                            r.status().as_u16()
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(statuses.iter().all(|&s| s == 200), "{what}: {statuses:?}");
        let grown = memory(server.pid(), "VmHWM:").saturating_sub(before);
        let uploads = if what == "thumbnails" { 0 } else { requests as u64 * png.len() as u64 };
        eprintln!(
            "{requests} concurrent {what} of a {width}x{height} PNG ({} MB decoded, {} MB encoded): peak memory grew {} MB",
            decoded >> 20,
            png.len() >> 20,
            grown >> 20
        );
        // {requests} decodes at once would need {requests} x 36 MB; one per core, with a decode's
        // intermediate copies and the allocator's slack, stays far below. Uploads held in
        // memory are the heavy-request budget's business, not the decoder's.
        let bound = (cores + 1) * 2 * decoded + 2 * uploads;
        assert!(grown < bound, "peak memory grew {} MB for {requests} {what} (bound {} MB)", grown >> 20, bound >> 20);
    }
}

#[test]
fn heavy_routes_shed_load_at_once_while_light_routes_stay_served() {
    let server = Server::start_with(&tiny_model(), &["--max-heavy-requests", "4"]);
    server.wait_ready();
    ingest_photo(&server, "photo.jpg");
    let png = big_png(3000, 2000);
    std::fs::write(server.image_root.join("big.png"), &png).unwrap();
    server.ingest(&server.image_root.join("big.png"));

    let stop = AtomicBool::new(false);
    let heavy = 40;
    let barrier = Barrier::new(heavy + 1);
    let (light, answers) = std::thread::scope(|s| {
        let light = s.spawn(|| {
            let c = client();
            let mut slowest = (Duration::ZERO, Duration::ZERO);
            let mut count = 0;
            barrier.wait();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                assert_eq!(c.get(format!("{}/health", server.url)).send().unwrap().status(), 200);
                slowest.0 = slowest.0.max(started.elapsed());
                let started = Instant::now();
                let r = c.post(format!("{}/search", server.url)).json(&json!({ "query": "a photo", "top_k": 3 })).send().unwrap();
                assert_eq!(r.status(), 200);
                slowest.1 = slowest.1.max(started.elapsed());
                count += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (slowest, count)
        });
        let handles: Vec<_> = (0..heavy)
            .map(|i| {
                let (barrier, png, server) = (&barrier, &png, &server);
                s.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    let sent = if i % 2 == 0 {
                        client().get(format!("{}/duplicates?threshold=0.9", server.url)).send()
                    } else {
                        let part = reqwest::blocking::multipart::Part::bytes(png.clone()).file_name("query.png");
                        let form = reqwest::blocking::multipart::Form::new().part("file", part);
                        client().post(format!("{}/search/image?top_k=1", server.url)).multipart(form).send()
                    };
                    // A connection error is recorded as status 0, so the assertions below say
                    // which request failed how instead of a thread panicking mid-storm.
                    match sent {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let retry = header(&r, "retry-after");
                            (i, status, retry, r.bytes().map(|b| b.to_vec()).unwrap_or_default(), started.elapsed())
                        }
                        Err(e) => (i, 0, Some(e.to_string()), Vec::new(), started.elapsed()),
                    }
                })
            })
            .collect();
        let answers: Vec<_> = handles.into_iter().map(|h| h.join().expect("a heavy request thread")).collect();
        stop.store(true, Ordering::Relaxed);
        (light.join().unwrap(), answers)
    });

    let shed: Vec<_> = answers.iter().filter(|a| a.1 == 503).collect();
    let served: Vec<_> = answers.iter().filter(|a| a.1 == 200).collect();
    let slowest_shed = shed.iter().filter(|a| a.0 % 2 == 0).map(|a| a.4).max().unwrap_or_default();
    let slowest_served = served.iter().map(|a| a.4).max().unwrap_or_default();
    eprintln!(
        "{heavy} heavy requests with a budget of 4: {} served (slowest {slowest_served:?}), {} shed (slowest shed listing {slowest_shed:?}); \
         light routes during the storm: {} rounds, slowest /health {:?}, slowest text /search {:?}",
        served.len(),
        shed.len(),
        light.1,
        light.0 .0,
        light.0 .1
    );
    let failed: Vec<_> = answers.iter().filter(|a| a.1 != 200 && a.1 != 503).map(|a| (a.0, a.1, &a.2)).collect();
    assert!(failed.is_empty(), "every heavy request is served or shed: {failed:?}");
    assert!(!shed.is_empty(), "{heavy} requests at once exceed a budget of 4");
    for (i, _, retry, body, elapsed) in &shed {
        assert_eq!(retry.as_deref(), Some("1"), "503s carry Retry-After");
        let error: Value = serde_json::from_slice(body).expect("a JSON error");
        assert_eq!(error["error"]["code"], "overloaded", "request {i}: {error}");
        // Timed for listings only: a refused upload's time includes sending its body.
        if i % 2 == 0 {
            assert!(*elapsed < Duration::from_secs(1), "shed at once, not queued: {elapsed:?}");
        }
    }
    for (_, _, _, body, _) in &served {
        assert!(serde_json::from_slice::<Value>(body).is_ok(), "a served heavy request answers JSON");
    }
    assert!(light.1 > 0, "the light routes were exercised during the storm");
    assert!(light.0 .0 < Duration::from_secs(1) && light.0 .1 < Duration::from_secs(1), "light routes stay fast: {:?}", light.0);
    assert_eq!(server.get("/duplicates?threshold=0.9").status(), 200, "served again once calm");
}

/// Sends a request head declaring `length` body bytes and only `sent` of them, then waits for
/// the answer: (status, JSON body, seconds until it came).
fn stalled_request(url: &str, target: &str, content_type: &str, length: usize, sent: &[u8]) -> (u16, Value, f64) {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!("POST {target} HTTP/1.1\r\nhost: {address}\r\nx-requested-with: visionquery\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\r\n");
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(sent).unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the whole answer is in (its Content-Length), the server closes, or 20 s pass.
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let declared = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
            if declared.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null), elapsed)
}

#[test]
fn requests_that_outlive_their_deadline_get_503_timeout_and_uploads_have_their_own() {
    let server = Server::start_with(&tiny_model(), &["--request-timeout-secs", "1", "--upload-timeout-secs", "3"]);
    server.wait_ready();
    let (status, body, secs) = stalled_request(&server.url, "/search", "application/json", 100, b"{\"query\"");
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("timeout")), "{body}");
    assert!((0.9..2.5).contains(&secs), "answered at the 1 s deadline, after {secs:.2} s");

    let (status, body, secs) = stalled_request(
        &server.url,
        "/search/image",
        "multipart/form-data; boundary=XyZ",
        100_000,
        b"--XyZ\r\ncontent-disposition: form-data",
    );
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("timeout")), "{body}");
    assert!((2.9..4.5).contains(&secs), "an upload has its own, longer deadline: answered after {secs:.2} s");

    let c = client();
    assert_eq!(c.get(format!("{}/health", server.url)).send().unwrap().status(), 200);
    assert_eq!(c.post(format!("{}/search", server.url)).json(&json!({ "query": "fine" })).send().unwrap().status(), 200);
}

/// Incompressible PNGs (noise) of `side` × `side`, `count` distinct ones (they differ in their
/// first pixel).
fn noise_pngs(count: u8, side: u32) -> Vec<Vec<u8>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut pixels: Vec<u8> = (0..side as usize * side as usize * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    (0..count)
        .map(|seed| {
            pixels[0] = seed;
            encode_png(&pixels, side)
        })
        .collect()
}

fn encode_png(pixels: &[u8], side: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(pixels, side, side, image::ExtendedColorType::Rgb8)
    .unwrap();
    png
}

/// Regression (issue 14): multipart parts were buffered whole and copied, and decodes for
/// uploads and search-by-image skipped the decode budget, so N large requests cost N × (body +
/// a full decode). 32 concurrent 40 MB uploads and 32 searches by an 8000 × 6000 picture, with
/// the heavy-request budget opened wide so that only streaming and the decode budget bound
/// memory; meanwhile /health and text searches keep being answered.
#[test]
fn many_large_uploads_and_huge_image_searches_keep_memory_bounded_and_other_clients_served() {
    let server = Server::start_with(&tiny_model(), &["--max-heavy-requests", "100", "--max-image-bytes", "67108864"]);
    server.wait_ready();
    server.ingest(&server.add_image(&image_path("baseline.jpg"), "seed.jpg"));
    // 3700 x 3700 x 3 bytes of noise: a 41 MB PNG; four distinct ones, four uploads each.
    let uploads = noise_pngs(4, 3700);
    assert!(uploads[0].len() > 40_000_000, "{}", uploads[0].len());
    let huge = {
        let picture = image::RgbImage::from_fn(8000, 6000, |x, y| image::Rgb([(x / 32) as u8, (y / 24) as u8, ((x + y) / 64) as u8]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80).encode_image(&picture).unwrap();
        jpeg
    };
    let before = reset_peak(server.pid());
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(32);
    let (statuses, probes) = std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let c = client();
            let mut slowest = Duration::ZERO;
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                assert_eq!(c.get(format!("{}/health", server.url)).send().unwrap().status(), 200);
                let r = c.post(format!("{}/search", server.url)).json(&json!({ "query": "a quiet query" })).send().unwrap();
                assert_eq!(r.status(), 200, "text search while loaded");
                slowest = slowest.max(started.elapsed());
                rounds += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (rounds, slowest)
        });
        let workers: Vec<_> = (0..32)
            .map(|i| {
                let (barrier, uploads, huge, server) = (&barrier, &uploads, &huge, &server);
                s.spawn(move || {
                    barrier.wait();
                    let c = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(600))
                        .default_headers(common::server::same_page_headers())
                        .build()
                        .unwrap();
                    if i % 2 == 0 {
                        let part = reqwest::blocking::multipart::Part::bytes(uploads[i / 2 % 4].clone()).file_name(format!("big{i}.png"));
                        let form = reqwest::blocking::multipart::Form::new().part("files", part);
                        c.post(format!("{}/ingest/upload", server.url)).multipart(form).send().map_or(0, |r| r.status().as_u16())
                    } else {
                        let part = reqwest::blocking::multipart::Part::bytes(huge.clone()).file_name("huge.jpg");
                        let form = reqwest::blocking::multipart::Form::new().part("file", part);
                        c.post(format!("{}/search/image?top_k=1", server.url)).multipart(form).send().map_or(0, |r| r.status().as_u16())
                    }
                })
            })
            .collect();
        let statuses: Vec<u16> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        (statuses, prober.join().unwrap())
    });
    let grown = memory(server.pid(), "VmHWM:").saturating_sub(before);
    let (rounds, slowest) = probes;
    eprintln!(
        "16 x 40 MB uploads + 16 searches by an 8000x6000 picture: peak memory grew {} MB; {rounds} health+search rounds meanwhile, slowest {} ms",
        grown >> 20,
        slowest.as_millis()
    );
    assert!(statuses.iter().all(|&s| s == 200), "every heavy request served: {statuses:?}");
    // Buffering would cost 16 x 40 MB of bodies plus 16 x 144 MB decodes (about 3 GB). Streaming
    // and one decode per core keep it to a few decodes' worth.
    assert!(grown < 1536 << 20, "peak memory grew {} MB (bound 1536 MB)", grown >> 20);
    assert!(rounds > 0 && slowest < Duration::from_secs(5), "other clients served: {rounds} rounds, slowest {slowest:?}");
    assert_eq!(server.image_count(), 5, "four distinct uploads and the seed");
}
