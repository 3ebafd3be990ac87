//! HEIC/HEIF, AVIF and camera RAW (issue 11): the fixtures of `tests/fixtures/formats/` (made by
//! `scripts/make_format_fixtures.py`) decode to the reference's pixels and embeddings (Pillow +
//! pillow-heif / pillow-avif-plugin, rawpy's `extract_thumb` for RAW, then transformers'
//! processor), broken files are refused per file with a clear error, and the HTTP API ingests,
//! serves and thumbnails them. Without the `heif` feature, HEIF files are refused with "HEIC
//! support not built in".

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use common::server::Server;
use common::*;
use ndarray::Array3;
use serde_json::{json, Value};
use visionquery::embed::onnx::{ImageEncoder, OnnxImageEncoder};
use visionquery::embed::preprocess::{self, DecodeLimits, PreprocessConfig};
use visionquery::embed::{ImageError, RawKind, SourceFormat};

fn format_file(name: &str) -> PathBuf {
    fixtures().join("formats").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn is_heif(name: &str) -> bool {
    name.ends_with(".heic") || name.ends_with(".avif")
}

fn expected_format(name: &str) -> SourceFormat {
    match name.rsplit('.').next() {
        Some("heic") => SourceFormat::Heic,
        Some("avif") => SourceFormat::Avif,
        Some("dng") => SourceFormat::Raw(RawKind::Dng),
        Some("nef") => SourceFormat::Raw(RawKind::Nef),
        Some("orf") => SourceFormat::Raw(RawKind::Orf),
        Some("rw2") => SourceFormat::Raw(RawKind::Rw2),
        Some("cr2") => SourceFormat::Raw(RawKind::Cr2),
        Some("raf") => SourceFormat::Raw(RawKind::Raf),
        Some("arw") => SourceFormat::Raw(RawKind::Arw),
        Some("cr3") => SourceFormat::Raw(RawKind::Cr3),
        other => panic!("no format for {other:?}"),
    }
}

/// The RAW fixtures with a reference, one or more per container (DNG from pidng, the others
/// written by scripts/raw_containers.py in their makers' layouts).
const RAW_FIXTURES: &[&str] = &[
    "dng_rot6.dng",
    "dng_plain.dng",
    "nef_rot8.nef",
    "orf_plain.orf",
    "rw2_plain.rw2",
    "cr2_plain.cr2",
    "arw_plain.arw",
    "raf_plain.raf",
    "cr3_rot3.cr3",
];

fn reference_pixels() -> Vec<(String, Array3<f32>)> {
    reference_pixel_tensors("reference/formats_pixels.safetensors")
}

/// Every fixture with a reference: same size after orientation, pixels within one level, and an
/// embedding that agrees with the reference's (cos >= 0.9999, as for every other format).
#[test]
fn heif_and_raw_fixtures_embed_like_the_reference() {
    let config = PreprocessConfig::from_file(&tiny_model().join("preprocessor_config.json")).unwrap();
    let mut encoder = OnnxImageEncoder::load(ort_env(), &tiny_model().join("onnx/vision_model.onnx")).unwrap();
    let reference = read_json("reference/formats.json");
    let pixels = reference_pixels();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in reference["images"].as_array().unwrap() {
        let name = case["file"].as_str().unwrap();
        let result = preprocess::decode(&read(name), &DecodeLimits::default());
        if is_heif(name) && !cfg!(feature = "heif") {
            assert!(matches!(result, Err(ImageError::NotBuiltIn(_))), "{name}: {result:?}");
            continue;
        }
        let decoded = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.format, expected_format(name), "{name}");
        let size = (u64::from(decoded.width()), u64::from(decoded.height()));
        assert_eq!(size, (case["width"].as_u64().unwrap(), case["height"].as_u64().unwrap()), "{name}: size after orientation");
        assert_eq!(decoded.rgb.dimensions(), decoded.rgb.dimensions());

        let ours = preprocess::pixel_tensor(&decoded.rgb, &config).unwrap();
        let (_, expected) = pixels.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no reference pixels for {name}"));
        let diffs: Vec<f32> = ours.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).collect();
        let max = diffs.iter().cloned().fold(0.0f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;

        let embedding = encoder.encode(&[ours]).unwrap().remove(0);
        let cos = cosine(&embedding, &floats(&case["embedding"]));
        println!("{name:24} max |diff| {max:.4} mean {mean:.5} cos {cos:.6}");
        // One 8-bit level is 1/255/std ≈ 0.015 after normalisation: every format, AVIF included,
        // within one level. (AVIF's reference converts YUV->RGB with libavif + libyuv, not
        // libheif, so our AVIF decode takes libheif's YCbCr planes and redoes libavif's
        // fixed-point conversion: src/embed/decode/yuv.rs.)
        let (max_allowed, mean_allowed, cos_allowed) = (0.016, 0.0005, 0.9999);
        if max > max_allowed || mean > mean_allowed || cos < cos_allowed {
            failures.push(format!("{name}: max {max}, mean {mean}, cos {cos}"));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "differ from the reference: {failures:#?}");
    let raw = RAW_FIXTURES.len();
    let expected = if cfg!(feature = "heif") { 8 + raw } else { raw };
    assert_eq!(checked, expected, "fixtures checked");
}

/// The RAW's largest preview wins (IFD0's 240x320 preview, not IFD1's 160x114 thumbnail of
/// another photo), turned by the RAW's Orientation 6.
#[test]
fn a_raw_gives_its_largest_preview_turned_by_its_orientation() {
    let decoded = preprocess::decode(&read("dng_rot6.dng"), &DecodeLimits::default()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    assert_eq!(decoded.rgb.dimensions(), (320, 240));
    // The reduced decode thumbnails use: a smaller picture, the same full size.
    let small = preprocess::decode_reduced(&read("dng_rot6.dng"), &DecodeLimits::default(), Some(64)).unwrap();
    assert_eq!((small.width(), small.height()), (320, 240));
    assert!(small.rgb.width() < 320 && small.rgb.width() > small.rgb.height(), "{:?}", small.rgb.dimensions());
}

#[cfg(not(feature = "heif"))]
#[test]
fn without_the_heif_feature_heic_and_avif_are_refused_with_a_clear_error() {
    for (name, kind) in [("heic_8bit.heic", "HEIC"), ("avif_8bit.avif", "AVIF")] {
        let err = preprocess::decode(&read(name), &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, ImageError::NotBuiltIn(k) if k == kind), "{name}: {err}");
        assert!(err.to_string().contains(&format!("{kind} support not built in")), "{err}");
    }
}

#[cfg(feature = "heif")]
#[test]
fn a_200_megapixel_heic_is_refused_before_decoding() {
    let started = std::time::Instant::now();
    let err = preprocess::decode(&read("heic_200mp_declared.heic"), &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, ImageError::TooManyPixels { width: 20000, height: 10000, .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "refused quickly, not after decoding");
}

/// Decodes `bytes`, turning a panic into a test failure message.
fn decode_no_panic(what: &str, bytes: &[u8]) -> Result<(), ImageError> {
    match catch_unwind(AssertUnwindSafe(|| preprocess::decode(bytes, &DecodeLimits::default()))) {
        Ok(result) => result.map(drop),
        Err(_) => panic!("{what}: decoding panicked"),
    }
}

/// Truncated at many points, HEIC, AVIF and RAW files are refused with an error that says so
/// (never a panic, never a half-grey picture).
#[test]
fn truncated_heic_avif_and_raw_files_are_refused() {
    let mut names = RAW_FIXTURES.to_vec();
    if cfg!(feature = "heif") {
        names.extend([
            "heic_8bit.heic",
            "heic_10bit.heic",
            "heic_rot.heic",
            "avif_8bit.avif",
            "avif_10bit.avif",
            "avif_10bit_420.avif",
            "avif_rot.avif",
        ]);
    }
    for name in names {
        let bytes = read(name);
        // (Cut in the last 10%, dng_rot6.dng loses only its trailing IFD1 thumbnail: its preview
        // and sensor data are whole, and it still decodes, as it should.)
        for fraction in [0.02, 0.1, 0.3, 0.5, 0.7, 0.9] {
            let cut = ((bytes.len() as f64) * fraction) as usize;
            let Err(err) = decode_no_panic(&format!("{name} cut at {cut}"), &bytes[..cut]) else {
                panic!("{name} cut at {cut} of {}: decoded, but a cut file must be refused", bytes.len());
            };
            assert!(!err.to_string().is_empty());
            assert!(
                matches!(err, ImageError::Corrupt(_) | ImageError::NoPreview | ImageError::UnsupportedFormat),
                "{name} cut at {cut}: {err:?}"
            );
        }
    }
}

/// Bytes flipped through HEIF and RAW files: an error or a picture, never a panic.
#[test]
fn garbled_heic_avif_and_raw_files_never_panic() {
    let mut names = RAW_FIXTURES.to_vec();
    if cfg!(feature = "heif") {
        names.extend(["heic_8bit.heic", "avif_10bit.avif"]);
    }
    for name in names {
        let bytes = read(name);
        for at in (0..bytes.len()).step_by((bytes.len() / 60).max(1)) {
            let mut broken = bytes.clone();
            for b in broken.iter_mut().skip(at).take(16) {
                *b ^= 0xA5;
            }
            let _ = decode_no_panic(&format!("{name} garbled at {at}"), &broken);
        }
    }
}

#[test]
fn a_raw_with_a_corrupt_preview_says_so() {
    let err = preprocess::decode(&read("dng_corrupt_preview.dng"), &DecodeLimits::default()).unwrap_err();
    assert!(matches!(&err, ImageError::Corrupt(m) if m.starts_with("RAW preview") && m.contains("Quantization table")), "{err}");
}

#[test]
fn a_raw_without_a_preview_says_so() {
    let err = preprocess::decode(&read("dng_no_preview.dng"), &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, ImageError::NoPreview), "{err}");
    assert!(err.to_string().contains("no usable embedded JPEG preview"), "{err}");
}

#[test]
fn a_raw_that_is_really_a_text_file_is_not_an_image() {
    let err = preprocess::decode(b"Camera settings, not a picture.\n", &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, ImageError::UnsupportedFormat), "{err}");
    // A TIFF header followed by text: rawler does not take it for a RAW, the TIFF decoder fails.
    let err = preprocess::decode(b"II*\0\x08\0\0\0 this is text pretending to be a CR2", &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt(_) | ImageError::UnsupportedFormat), "{err}");
}

/// Plain TIFFs still go to the TIFF decoder (rawler is asked first and says no).
#[test]
fn a_plain_tiff_is_still_a_tiff() {
    let decoded = preprocess::decode(&std::fs::read(fixtures().join("exif/full.tif")).unwrap(), &DecodeLimits::default()).unwrap();
    assert_eq!(decoded.format, SourceFormat::Image(image::ImageFormat::Tiff));
}

fn status_and_body(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().expect("JSON body"))
}

/// Upload, path ingest, the original file's Content-Type, thumbnails, and per-file errors in a
/// directory job, through a real server.
#[test]
fn the_api_ingests_serves_and_thumbnails_heic_avif_and_raw() {
    let server = Server::start();
    server.wait_ready();
    let heif = cfg!(feature = "heif");

    // Upload.
    let (status, body) = status_and_body(server.upload(
        "/ingest/upload",
        &[("IMG_0001.HEIC", read("heic_rot.heic")), ("shot.dng", read("dng_rot6.dng")), ("broken.dng", read("dng_corrupt_preview.dng"))],
    ));
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    if heif {
        assert_eq!(results[0]["status"], "ok", "{body}");
    } else {
        assert_eq!(results[0]["error"]["code"], "unsupported_image", "{body}");
        assert!(results[0]["error"]["message"].as_str().unwrap().contains("HEIC support not built in"), "{body}");
    }
    assert_eq!(results[1]["status"], "ok", "{body}");
    assert_eq!(results[2]["error"]["code"], "corrupt_image", "{body}");

    let dng_id = results[1]["id"].as_str().unwrap();
    let info: Value = server.get(&format!("/images/{dng_id}")).json().unwrap();
    assert_eq!(info["format"], "dng", "{info}");
    let file = server.get(&format!("/images/{dng_id}/file"));
    assert_eq!(file.headers()["content-type"], "image/x-adobe-dng");
    assert_eq!(file.bytes().unwrap().as_ref(), read("dng_rot6.dng").as_slice(), "the original bytes");
    let thumb = server.get(&format!("/images/{dng_id}/thumbnail?size=64"));
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let small = image::load_from_memory(&thumb.bytes().unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (64, 48), "the preview, turned");
    if heif {
        let heic_id = results[0]["id"].as_str().unwrap();
        let info: Value = server.get(&format!("/images/{heic_id}")).json().unwrap();
        assert_eq!(info["format"], "heic", "{info}");
        assert_eq!(server.get(&format!("/images/{heic_id}/file")).headers()["content-type"], "image/heic");
        let thumb = server.get(&format!("/images/{heic_id}/thumbnail?size=64"));
        assert_eq!(thumb.headers()["content-type"], "image/jpeg");
        let small = image::load_from_memory(&thumb.bytes().unwrap()).unwrap();
        assert_eq!((small.width(), small.height()), (64, 48), "irot applied");
    }

    // Path ingest: clear per-file errors with the right status.
    let folder = server.image_root.join("camera");
    std::fs::create_dir_all(&folder).unwrap();
    let names = [
        "heic_8bit.heic",
        "heic_10bit.heic",
        "avif_8bit.avif",
        "avif_10bit.avif",
        "dng_plain.dng",
        "dng_no_preview.dng",
        "heic_200mp_declared.heic",
    ];
    for name in names {
        std::fs::copy(format_file(name), folder.join(name)).unwrap();
    }
    std::fs::write(folder.join("fake.cr2"), b"this RAW is really a text file\n").unwrap();
    let heic = read("heic_8bit.heic");
    std::fs::write(folder.join("cut.heic"), &heic[..heic.len() / 2]).unwrap();
    let dng = read("dng_plain.dng");
    std::fs::write(folder.join("cut.dng"), &dng[..dng.len() / 3]).unwrap();

    let ingest = |name: &str| status_and_body(server.post_json("/ingest/image", &json!({ "path": format!("camera/{name}") })));
    let code = |body: &Value| body["error"]["code"].as_str().unwrap_or_default().to_string();
    let (status, body) = ingest("fake.cr2");
    assert_eq!((status, code(&body).as_str()), (422, "unsupported_image"), "{body}");
    let (status, body) = ingest("dng_no_preview.dng");
    assert_eq!((status, code(&body).as_str()), (422, "corrupt_image"), "{body}");
    let (status, body) = ingest("cut.dng");
    assert_eq!((status, code(&body).as_str()), (422, "corrupt_image"), "{body}");
    let (status, body) = ingest("heic_200mp_declared.heic");
    if heif {
        assert_eq!((status, code(&body).as_str()), (422, "image_too_large"), "{body}");
        let (status, body) = ingest("cut.heic");
        assert_eq!((status, code(&body).as_str()), (422, "corrupt_image"), "{body}");
        let (status, body) = ingest("avif_10bit.avif");
        assert_eq!(status, 200, "{body}");
        let id = body["id"].as_str().unwrap();
        assert_eq!(server.get(&format!("/images/{id}/file")).headers()["content-type"], "image/avif");
    } else {
        assert_eq!((status, code(&body).as_str()), (422, "unsupported_image"), "{body}");
    }

    // A directory job takes every new extension and reports each bad file.
    let (status, job) = status_and_body(server.post_json("/ingest/directory", &json!({ "path": "camera" })));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let job = loop {
        let job: Value = server.get(&format!("/jobs/{id}")).json().unwrap();
        if ["completed", "cancelled", "failed"].contains(&job["state"].as_str().unwrap()) {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["total"], names.len() + 3, "{job}");
    let failed: Vec<String> = job["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(!f["error"].as_str().unwrap().is_empty(), "{f}");
            f["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
        })
        .collect();
    let mut expected_failures = vec!["cut.dng", "dng_no_preview.dng", "fake.cr2"];
    if heif {
        expected_failures.extend(["cut.heic", "heic_200mp_declared.heic"]);
    } else {
        expected_failures.extend([
            "avif_10bit.avif",
            "avif_8bit.avif",
            "cut.heic",
            "heic_10bit.heic",
            "heic_200mp_declared.heic",
            "heic_8bit.heic",
        ]);
    }
    expected_failures.sort();
    let mut failed = failed;
    failed.sort();
    assert_eq!(failed, expected_failures, "{job}");
    assert!(server.get("/health").status().is_success(), "the server is still up");
}

/// Inputs the fuzzer once found a fault with (fuzz/regressions/decode_image/, replayed by every
/// fuzz run too) are refused or decoded here without a panic or an abort. The first: a 1.3 KB
/// TIFF whose entry claims ~2 billion LONG values, on which the RAW library we used before
/// allocated 8 GB (the fuzzer's memory limit stopped it); its variant claims 4 billion
/// RATIONALs, 34 GB, more than this machine has: that allocation fails, and a failed
/// allocation aborts a Rust process, the server with it.
#[test]
fn inputs_the_fuzzer_found_faults_with_are_handled() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/decode_image");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let _ = decode_no_panic(&path.display().to_string(), &bytes);
        let _ = preprocess::decode_reduced(&bytes, &DecodeLimits::default(), Some(64));
        replayed += 1;
    }
    assert!(replayed >= 2, "regression inputs missing in {}", folder.display());
}
