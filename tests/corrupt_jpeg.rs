//! Corrupt JPEGs (issue 14): libjpeg's fatal errors unwind out of `mozjpeg`, so every JPEG,
//! however broken, must come back as `Ok` or a typed `ImageError`, never as a panic. The broken
//! files are made here from the real fixtures: cut at many offsets, bytes changed in every
//! header and across the scan data, and headers that lie about the picture.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::image_path;
use common::jpeg::*;
use visionquery::embed::preprocess::{self, DecodeLimits};
use visionquery::embed::ImageError;

/// Broken variants of one JPEG, each with a name saying what was done to it.
fn corruptions(jpeg: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let sos = find(jpeg, |m| m == 0xDA);
    let scan = sos.end;

    // Cut at many offsets, as is and with an end marker glued on (which gets past the
    // truncation check and into libjpeg).
    for cut in (0..jpeg.len()).step_by((jpeg.len() / 150).max(1)) {
        out.push((format!("cut at {cut}"), jpeg[..cut].to_vec()));
        out.push((format!("cut at {cut} + EOI"), [&jpeg[..cut], &EOI[..]].concat()));
    }
    // Every header byte changed, two ways.
    for at in 2..scan {
        out.push((format!("header byte {at} inverted"), with(jpeg, |j| j[at] ^= 0xFF)));
        out.push((format!("header byte {at} + 1"), with(jpeg, |j| j[at] = j[at].wrapping_add(1))));
    }
    // The scan data: bytes inverted, and markers that have no business there.
    for at in (scan..jpeg.len() - 2).step_by(((jpeg.len() - scan) / 100).max(1)) {
        out.push((format!("scan byte {at} inverted"), with(jpeg, |j| j[at] ^= 0xFF)));
        for marker in [0x00, 0x01, 0xC0, 0xC4, 0xD0, 0xD7, 0xD8, 0xDA, 0xDB, 0xFF] {
            out.push((format!("marker FF{marker:02X} at scan byte {at}"), with(jpeg, |j| j.splice(at..at, [0xFF, marker]).for_each(drop))));
        }
    }
    // Headers that lie: the frame's size, precision, components and sampling factors.
    let sof = find(jpeg, is_sof);
    let (precision, height, width, count) = (sof.payload, sof.payload + 1, sof.payload + 3, sof.payload + 5);
    for (h, w) in [(65535, 65535), (0, 0), (0, 640), (65535, 1), (1, 65535), (6000, 6000), (1, 1), (7, 3)] {
        out.push((
            format!("SOF says {w}x{h}"),
            with(jpeg, |j| {
                j[height..height + 2].copy_from_slice(&u16::to_be_bytes(h));
                j[width..width + 2].copy_from_slice(&u16::to_be_bytes(w));
            }),
        ));
    }
    for bits in [0, 1, 7, 12, 16, 255] {
        out.push((format!("SOF precision {bits}"), with(jpeg, |j| j[precision] = bits)));
    }
    for n in [0, 2, 4, 5, 255] {
        out.push((format!("SOF with {n} components"), with(jpeg, |j| j[count] = n)));
    }
    let first_component = count + 1;
    for (i, sampling) in [0x00, 0x01, 0x10, 0x33, 0x44, 0x55, 0xFF].into_iter().enumerate() {
        out.push((format!("sampling factors {sampling:02X} ({i})"), with(jpeg, |j| j[first_component + 1] = sampling)));
    }
    for table in [1, 3, 4, 15, 255] {
        out.push((format!("quantisation table {table}"), with(jpeg, |j| j[first_component + 2] = table)));
    }
    // Tables gone, or the frame declared twice.
    for segment in segments(jpeg) {
        if segment.marker != 0xDA {
            out.push((format!("segment FF{:02X} at {} removed", segment.marker, segment.at), without(jpeg, segment)));
        }
    }
    out.push(("SOF twice".into(), [&jpeg[..sof.end], &jpeg[sof.at..]].concat()));
    // The scan header's selectors and spectral/approximation parameters.
    for at in sos.payload..sos.end {
        for value in [0x00, 0x3F, 0x40, 0xFF] {
            out.push((format!("SOS byte {at} = {value:02X}"), with(jpeg, |j| j[at] = value)));
        }
    }
    out
}

/// Decodes every variant (full size and the reduced path thumbnails use) and returns the ones
/// that panicked, with the panic message.
fn panics(name: &str) -> (usize, usize, Vec<String>) {
    let jpeg = std::fs::read(image_path(name)).expect("fixture JPEG");
    let limits = DecodeLimits::default();
    let (mut ok, mut refused, mut panicked) = (0, 0, Vec::new());
    for (what, bytes) in corruptions(&jpeg) {
        for reduced in [None, Some(32)] {
            match catch_unwind(AssertUnwindSafe(|| preprocess::decode_reduced(&bytes, &limits, reduced))) {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(err)) => {
                    assert!(!err.to_string().is_empty(), "{name}, {what}: an error without a message");
                    refused += 1;
                }
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panicked.push(format!("{what} (reduced {reduced:?}): {message}"));
                }
            }
        }
    }
    (ok, refused, panicked)
}

fn assert_never_panics(name: &str) {
    let (ok, refused, panicked) = panics(name);
    assert!(
        panicked.is_empty(),
        "{name}: {} of {} corrupt variants panicked:\n{}",
        panicked.len(),
        ok + refused + panicked.len(),
        panicked.join("\n")
    );
    // The variants must really be broken, or this test proves nothing.
    assert!(refused > ok / 4, "{name}: only {refused} of {} variants were refused", ok + refused);
}

#[test]
fn corrupt_baseline_jpegs_never_panic() {
    assert_never_panics("baseline.jpg");
}

#[test]
fn corrupt_progressive_jpegs_never_panic() {
    assert_never_panics("progressive.jpg");
}

#[test]
fn a_frame_of_65535_by_65535_is_refused_before_decoding() {
    let jpeg = std::fs::read(image_path("baseline.jpg")).unwrap();
    let sof = find(&jpeg, is_sof);
    let huge = with(&jpeg, |j| j[sof.payload + 1..sof.payload + 5].copy_from_slice(&[0xFF; 4]));
    let err = preprocess::decode(&huge, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, ImageError::TooManyPixels { width: 65535, height: 65535, .. }), "{err}");
}

#[test]
fn issue_14_a_jpeg_libjpeg_rejects_is_a_corrupt_image_with_libjpegs_reason() {
    // Without its quantisation tables the header still parses, and libjpeg stops with a fatal
    // error once it starts decoding: that used to unwind through the decoding thread (a 500).
    let jpeg = std::fs::read(image_path("baseline.jpg")).unwrap();
    let mut broken = jpeg.clone();
    while let Some(dqt) = segments(&broken).into_iter().find(|s| s.marker == 0xDB) {
        broken = without(&broken, dqt);
    }
    let err = preprocess::decode(&broken, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(&err, ImageError::Corrupt(m) if m.contains("libjpeg") && m.contains("Quantization table")), "{err}");
}
