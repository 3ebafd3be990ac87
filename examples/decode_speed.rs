//! Decode-only timing of JPEG photos (full size, as the embedding path does), for comparing
//! decoder builds: `cargo run --release --example decode_speed -- <dir-of-jpegs> [N]`.

use std::time::Instant;

use visionquery::embed::preprocess::{decode, DecodeLimits};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: decode_speed <dir> [upscale-long-side]");
    let long: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("dir").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.truncate(40);
    let jpegs: Vec<Vec<u8>> = files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).expect("read");
            if long == 0 {
                return bytes;
            }
            let img = image::load_from_memory(&bytes).expect("image");
            let s = long as f32 / img.width().max(img.height()) as f32;
            let big = img
                .resize_exact((img.width() as f32 * s) as u32, (img.height() as f32 * s) as u32, image::imageops::FilterType::Triangle)
                .to_rgb8();
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&big).expect("encode");
            out
        })
        .collect();
    let started = Instant::now();
    for jpeg in &jpegs {
        decode(jpeg, &DecodeLimits::default()).expect("decode");
    }
    let per = started.elapsed().as_secs_f64() / jpegs.len() as f64;
    println!("{} JPEGs, {:.2} ms each ({:.0}/s, one thread)", jpegs.len(), per * 1e3, 1.0 / per);
}
