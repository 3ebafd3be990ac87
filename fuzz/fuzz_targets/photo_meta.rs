//! Any bytes through the EXIF reader ingest runs on every photo (JPEG, TIFF, PNG, WebP, HEIF
//! containers). It must never fail or panic: what cannot be read is absent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use visionquery::engine::metadata::read_photo_meta;

fuzz_target!(|data: &[u8]| {
    let meta = read_photo_meta(data);
    if let Some(location) = meta.location {
        assert!(
            (-90.0..=90.0).contains(&location.lat) && (-180.0..=180.0).contains(&location.lon),
            "an impossible position was kept: {location:?}"
        );
    }
});
