//! Decode + CLIP preprocessing time per file, one thread, for `scripts/bench_formats.py`:
//! `cargo run --release --features heif --example format_speed -- SECONDS CONFIG FILE...`
//! prints one JSON line per file with the per-call times (two warm-up calls, then calls until
//! SECONDS have passed, at least 3; the same rule as the Python side).

use std::time::Instant;

use visionquery::embed::preprocess::{decode, pixel_tensor, DecodeLimits, PreprocessConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: format_speed SECONDS preprocessor_config.json FILE...";
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let config = PreprocessConfig::from_file(std::path::Path::new(&args.next().expect(usage))).expect("preprocessor config");
    let limits = DecodeLimits { max_pixels: 100_000_000, max_bytes: 256 * 1024 * 1024 };
    for path in args {
        let bytes = std::fs::read(&path).expect("read");
        let run = || {
            let t = Instant::now();
            let decoded = decode(&bytes, &limits).expect("decode");
            let decode_s = t.elapsed().as_secs_f64();
            let tensor = pixel_tensor(&decoded.rgb, &config).expect("tensor");
            std::hint::black_box(&tensor);
            (decode_s, t.elapsed().as_secs_f64(), decoded.width, decoded.height)
        };
        run();
        run();
        let (mut decode_times, mut total_times) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let mut size = (0, 0);
        while total_times.len() < 3 || started.elapsed().as_secs_f64() < seconds {
            let (d, t, w, h) = run();
            decode_times.push(d);
            total_times.push(t);
            size = (w, h);
        }
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(",");
        println!(
            "{{\"file\":{path:?},\"width\":{},\"height\":{},\"decode_s\":[{}],\"total_s\":[{}]}}",
            size.0,
            size.1,
            list(&decode_times),
            list(&total_times)
        );
    }
}
