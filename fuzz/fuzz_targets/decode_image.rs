//! Any bytes through the image paths: the full decode and the model's pixel tensor (ingest,
//! uploads, search by image), and the reduced decode to a JPEG thumbnail. Every format the
//! decoder knows is reached from the seeds (JPEG, PNG, WebP, GIF, BMP, TIFF, and from
//! `tests/fixtures/formats/` HEIC/AVIF through libheif when built with `--features heif`, and
//! DNG RAW previews). Bytes may be refused with an error; nothing may panic, hang or allocate
//! past the decode limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use visionquery::embed::{preprocess, DecodeLimits};
use visionquery::engine::thumbnails;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(decoded) = preprocess::decode(data, &limits) {
        let tensor =
            preprocess::pixel_tensor(&decoded.rgb, visionquery_fuzz::clip_preprocessing()).expect("a decoded image always makes a tensor");
        assert!(tensor.iter().all(|v| v.is_finite()), "the pixel tensor holds a non-finite value");
    }
    if let Ok(jpeg) = thumbnails::render_jpeg(data, thumbnails::snap(64), &limits) {
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]), "a thumbnail is a whole JPEG");
    }
});
