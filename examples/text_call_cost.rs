//! What one text-tower call costs, as a function of texts per call and padded length: the
//! numbers behind the batcher's length grouping (`TEXT_CALL_OVERHEAD` in `src/embed/mod.rs`).
//!
//! ```text
//! cargo run --release --example text_call_cost -- --model .cache/bench/vit-b32 --precision fp32
//! ```
//!
//! Prints one JSON line per (texts, length) with the median call time, then a least-squares fit
//! `ms = fixed + per_position × texts × length` and the fixed cost in positions.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use visionquery::embed::onnx::{OnnxTextEncoder, TextEncoder};
use visionquery::embed::{model_files, runtime, Precision};

#[derive(Parser, Debug)]
struct Args {
    /// Model directory in the Hugging Face ONNX layout.
    #[arg(long)]
    model: PathBuf,
    /// fp32 or quantized.
    #[arg(long, default_value = "fp32")]
    precision: String,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Calls timed per configuration (the median is reported).
    #[arg(long, default_value_t = 15)]
    repeats: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let precision = if args.precision == "quantized" { Precision::Quantized } else { Precision::Fp32 };
    let files = model_files::resolve(&args.model.to_string_lossy(), precision)?;
    let env = runtime::init(None, args.threads)?;
    let mut encoder = OnnxTextEncoder::load(env, &files.text_model, 49407).context("text tower")?;
    let mut points = Vec::new();
    for texts in [1usize, 2, 4, 8, 16, 32] {
        for length in [8usize, 14, 20, 30] {
            // Start and end tokens around an ordinary word: speed does not depend on the ids.
            let ids: Vec<i64> = std::iter::once(49406).chain(std::iter::repeat_n(320, length - 2)).chain([49407]).collect();
            let batch = vec![ids; texts];
            encoder.encode(&batch)?;
            let mut times: Vec<f64> = (0..args.repeats)
                .map(|_| {
                    let started = Instant::now();
                    encoder.encode(&batch).map(|_| started.elapsed().as_secs_f64() * 1e3)
                })
                .collect::<Result<_, _>>()?;
            times.sort_by(f64::total_cmp);
            let ms = times[times.len() / 2];
            println!(
                "{}",
                json!({ "precision": args.precision, "texts": texts, "length": length, "ms": ms, "ms_per_text": ms / texts as f64 })
            );
            points.push(((texts * length) as f64, ms));
        }
    }
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let slope = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / points.iter().map(|(x, _)| (x - mx).powi(2)).sum::<f64>();
    let fixed = my - slope * mx;
    println!(
        "{}",
        json!({ "precision": args.precision, "fit_fixed_ms": fixed, "fit_ms_per_position": slope, "fixed_in_positions": fixed / slope })
    );
    Ok(())
}
