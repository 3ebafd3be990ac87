//! Embedder micro-benchmarks: image-tower throughput, text-tower latency/throughput and
//! single-threaded preprocessing rate, printed as JSON lines on stdout.
//!
//! ```text
//! cargo build --release --example bench_embed
//! target/release/examples/bench_embed --model .cache/bench/vit-b32 --precision fp32 \
//!     --threads 2 --batches 1,8,32 --seconds 10 --images /work/shared/data/photos/images
//! ```
//!
//! What is timed:
//! - `preprocess`: decode + EXIF orientation + RGB + resize + crop + normalise of in-memory file
//!   bytes, one thread (file reading is done before the clock starts).
//! - `image`: `OnnxImageEncoder::encode` on pixel tensors prepared beforehand (real photos),
//!   i.e. batch assembly + ONNX Runtime inference + output extraction; nothing else.
//! - `text_latency` / `text_throughput`: `OnnxTextEncoder::encode` on captions tokenised
//!   beforehand (padding is part of the timed work: to the longest caption of a batch for CLIP,
//!   to the fixed 64 positions for SigLIP).
//!
//! The model family (CLIP or SigLIP: tokenizer rules, padding, output names) is read from the
//! checkpoint's files, as the service does (`Family::read`).
//!
//! `scripts/bench_embed.py` drives this together with the PyTorch reference.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ndarray::Array3;
use serde_json::json;
use visionquery::embed::model_files;
use visionquery::embed::onnx::{ImageEncoder, OnnxImageEncoder, OnnxTextEncoder, TextEncoder};
use visionquery::embed::preprocess::{decode, pixel_tensor, DecodeLimits, PreprocessConfig};
use visionquery::embed::{runtime, ClipTokenizer, Family, Precision};

#[derive(Parser, Debug)]
#[command(about = "Benchmark the ONNX embedder, CLIP or SigLIP (JSON lines on stdout)")]
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
    /// Image batch sizes to measure, comma separated.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    batches: Vec<usize>,
    /// Measuring time per configuration, in seconds (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Directory of photos (jpg/jpeg/png/webp), read in file-name order.
    #[arg(long)]
    images: PathBuf,
    /// Use at most this many photos (0 = all).
    #[arg(long, default_value_t = 0)]
    max_images: usize,
    /// Captions, one per line (default: a built-in list).
    #[arg(long)]
    captions: Option<PathBuf>,
    /// Text batch size for the throughput measurement.
    #[arg(long, default_value_t = 32)]
    text_batch: usize,
    /// Write the image embeddings of all photos (batches of 32) to this JSON file, for fidelity
    /// checks against other precisions or PyTorch.
    #[arg(long)]
    embeddings_out: Option<PathBuf>,
    /// Skip parts: any of preprocess,image,text.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// A measurement during which other processes used more than this share of the machine's
    /// CPU time (from /proc/stat) is repeated, up to --retries times, after waiting for quiet.
    #[arg(long, default_value_t = 0.10)]
    max_foreign_share: f64,
    #[arg(long, default_value_t = 3)]
    retries: usize,
    /// Path to libonnxruntime (default: found like the service finds it).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_library: Option<PathBuf>,
}

const DEFAULT_CAPTIONS: &[&str] = &[
    "a photo of a cat",
    "two dogs playing in the snow near a red fence",
    "a man riding a wave on top of a surfboard",
    "a plate of food with broccoli and rice",
    "a city street at night with cars and traffic lights",
    "a child holding a kite on a sunny beach",
    "a kitchen with white cabinets and a stainless steel refrigerator",
    "pizza",
];

fn main() -> Result<()> {
    let args = Args::parse();
    let precision = match args.precision.as_str() {
        "fp32" => Precision::Fp32,
        "quantized" | "int8" => Precision::Quantized,
        other => bail!("--precision must be fp32 or quantized, not {other}"),
    };
    let skip = |part: &str| args.skip.iter().any(|s| s == part);
    let clean = Clean { max_foreign_share: args.max_foreign_share, retries: args.retries };
    let files = model_files::resolve(args.model.to_str().context("model path is not UTF-8")?, precision)?;
    let env = runtime::init(args.ort_library.as_deref(), args.threads)?;
    let config = PreprocessConfig::from_file(&files.preprocessor_config)?;
    let family = Family::read(files.config.as_deref(), files.tokenizer_config.as_deref(), files.score_head.as_deref())?;
    emit(json!({
        "kind": "meta",
        "family": family.name.as_str(),
        "precision": precision.as_str(),
        "threads": args.threads,
        "vision_model": files.vision_model,
        "text_model": files.text_model,
        "onnxruntime": runtime::ORT_WHEEL_VERSION,
        "seconds": args.seconds,
    }));

    // ---- photos: bytes in memory, then preprocessing (timed, one thread) ----------------
    let paths = photo_paths(&args.images, args.max_images)?;
    if paths.is_empty() {
        bail!("no photos in {}", args.images.display());
    }
    let bytes: Vec<Vec<u8>> = paths.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let limits = DecodeLimits::default();
    let mut decode_time = Duration::ZERO;
    let mut tensor_time = Duration::ZERO;
    let mut megapixels = 0.0;
    let mut pixels: Vec<Array3<f32>> = Vec::with_capacity(bytes.len());
    for (path, data) in paths.iter().zip(&bytes) {
        let t0 = Instant::now();
        let decoded = decode(data, &limits).with_context(|| format!("decoding {}", path.display()))?;
        let t1 = Instant::now();
        let tensor = pixel_tensor(&decoded.rgb, &config).with_context(|| format!("preprocessing {}", path.display()))?;
        let t2 = Instant::now();
        decode_time += t1 - t0;
        tensor_time += t2 - t1;
        megapixels += f64::from(decoded.width()) * f64::from(decoded.height()) / 1e6;
        pixels.push(tensor);
    }
    if !skip("preprocess") {
        let n = pixels.len() as f64;
        let total = (decode_time + tensor_time).as_secs_f64();
        emit(json!({
            "kind": "preprocess",
            "images": pixels.len(),
            "mean_megapixels": megapixels / n,
            "seconds": total,
            "images_per_s": n / total,
            "decode_ms_per_image": decode_time.as_secs_f64() * 1e3 / n,
            "resize_normalize_ms_per_image": tensor_time.as_secs_f64() * 1e3 / n,
        }));
    }

    // ---- image tower --------------------------------------------------------------------
    if !skip("image") || args.embeddings_out.is_some() {
        let t = Instant::now();
        let mut image = OnnxImageEncoder::load_for(env, &files.vision_model, &family)?;
        let load_s = t.elapsed().as_secs_f64();
        if !skip("image") {
            for &batch in &args.batches {
                let batches = batches_of(&pixels, batch);
                let run = |i: usize, image: &mut OnnxImageEncoder| -> Result<()> {
                    let out = image.encode(&batches[i % batches.len()])?;
                    anyhow::ensure!(out.len() == batch, "wrong number of embeddings");
                    Ok(())
                };
                let (times, m) = measure(&clean, args.seconds, &mut image, run)?;
                let s = Stats::of(&times);
                emit(json!({
                    "kind": "image",
                    "batch": batch,
                    "load_seconds": load_s,
                    "iterations": times.len(),
                    "images_per_s": batch as f64 * times.len() as f64 / s.total,
                    "batch_ms_p50": s.p50 * 1e3,
                    "batch_ms_mean": s.mean * 1e3,
                    "batch_ms_min": s.min * 1e3,
                    "foreign_cpu_share": m.foreign_share,
                    "attempts": m.attempts,
                }));
            }
        }
        if let Some(out) = &args.embeddings_out {
            let mut embeddings = Vec::with_capacity(pixels.len());
            for chunk in pixels.chunks(32) {
                embeddings.extend(image.encode(chunk)?);
            }
            let names: Vec<String> = paths.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
            let doc = json!({ "precision": precision.as_str(), "files": names, "embeddings": embeddings });
            std::fs::write(out, serde_json::to_vec(&doc)?).with_context(|| format!("writing {}", out.display()))?;
            emit(json!({ "kind": "embeddings", "path": out, "images": names.len() }));
        }
    }

    // ---- text tower ---------------------------------------------------------------------
    if !skip("text") {
        let tokenizer = ClipTokenizer::with_rules(&files.tokenizer, &family.text)?;
        let captions: Vec<String> = match &args.captions {
            Some(path) => std::fs::read_to_string(path)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
            None => DEFAULT_CAPTIONS.iter().map(|s| s.to_string()).collect(),
        };
        let ids: Vec<Vec<i64>> = captions.iter().map(|c| tokenizer.encode(c).map(|t| t.ids)).collect::<Result<_, _>>()?;
        let mean_tokens = ids.iter().map(Vec::len).sum::<usize>() as f64 / ids.len() as f64;
        let mut text = OnnxTextEncoder::load_for(env, &files.text_model, tokenizer.pad_id(), &family)?;

        let singles = batches_of(&ids, 1);
        let (times, m) = measure(&clean, args.seconds, &mut text, |i, text: &mut OnnxTextEncoder| {
            text.encode(&singles[i % singles.len()])?;
            Ok(())
        })?;
        let s = Stats::of(&times);
        emit(json!({
            "kind": "text_latency",
            "batch": 1,
            "captions": ids.len(),
            "mean_tokens": mean_tokens,
            "iterations": times.len(),
            "p50_ms": s.p50 * 1e3,
            "p99_ms": s.p99 * 1e3,
            "mean_ms": s.mean * 1e3,
            "texts_per_s": times.len() as f64 / s.total,
            "foreign_cpu_share": m.foreign_share,
            "attempts": m.attempts,
        }));

        let tb = args.text_batch;
        let batches = batches_of(&ids, tb);
        let (times, m) = measure(&clean, args.seconds, &mut text, |i, text: &mut OnnxTextEncoder| {
            text.encode(&batches[i % batches.len()])?;
            Ok(())
        })?;
        let s = Stats::of(&times);
        emit(json!({
            "kind": "text_throughput",
            "batch": tb,
            "iterations": times.len(),
            "texts_per_s": tb as f64 * times.len() as f64 / s.total,
            "batch_ms_p50": s.p50 * 1e3,
            "foreign_cpu_share": m.foreign_share,
            "attempts": m.attempts,
        }));
    }
    Ok(())
}

fn emit(value: serde_json::Value) {
    println!("{value}");
}

fn photo_paths(dir: &Path, max: usize) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png", "webp"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    if max > 0 {
        paths.truncate(max);
    }
    Ok(paths)
}

/// Consecutive batches of `size` items, cycling through `items` so every batch is full.
fn batches_of<T: Clone>(items: &[T], size: usize) -> Vec<Vec<T>> {
    let count = items.len().div_ceil(size).max(1);
    (0..count).map(|b| (0..size).map(|j| items[(b * size + j) % items.len()].clone()).collect()).collect()
}

/// When to repeat a measurement that other processes disturbed.
struct Clean {
    max_foreign_share: f64,
    retries: usize,
}

struct Measured {
    /// Share of the machine's CPU time used by other processes during the kept attempt
    /// (`null` where /proc/stat is unavailable).
    foreign_share: Option<f64>,
    attempts: usize,
}

/// Two warm-up calls, then calls until `seconds` have passed (at least 3); per-call durations.
/// Repeated (after waiting for a quiet machine) while other processes used more than
/// `clean.max_foreign_share` of the CPUs, up to `clean.retries` times; the least disturbed
/// attempt is kept.
fn measure<S>(
    clean: &Clean,
    seconds: f64,
    state: &mut S,
    mut call: impl FnMut(usize, &mut S) -> Result<()>,
) -> Result<(Vec<f64>, Measured)> {
    let mut best: Option<(Vec<f64>, Option<f64>)> = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        for i in 0..2 {
            call(i, state)?;
        }
        let before = CpuSnapshot::now();
        let budget = Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let mut times = Vec::new();
        let mut i = 0;
        while times.len() < 3 || start.elapsed() < budget {
            let t = Instant::now();
            call(i, state)?;
            times.push(t.elapsed().as_secs_f64());
            i += 1;
        }
        let share = before.zip(CpuSnapshot::now()).map(|(a, b)| a.foreign_share(&b));
        let better = match (&best, share) {
            (None, _) => true,
            (Some((_, Some(old))), Some(new)) => new < *old,
            _ => false,
        };
        if better {
            best = Some((times, share));
        }
        let disturbed = share.is_some_and(|s| s > clean.max_foreign_share);
        if !disturbed || attempts > clean.retries {
            let (times, foreign_share) = best.expect("at least one attempt");
            return Ok((times, Measured { foreign_share, attempts }));
        }
        eprintln!("measurement disturbed (other processes used {:.0}% of the CPUs); waiting to repeat it", 100.0 * share.unwrap_or(0.0));
        wait_quiet(clean.max_foreign_share, Duration::from_secs(120));
    }
}

/// Waits until other processes use less than `threshold` of the CPUs for 3 s in a row.
fn wait_quiet(threshold: f64, limit: Duration) {
    let start = Instant::now();
    let mut quiet = 0;
    while start.elapsed() < limit && quiet < 3 {
        let a = CpuSnapshot::now();
        std::thread::sleep(Duration::from_secs(1));
        match a.zip(CpuSnapshot::now()) {
            Some((a, b)) if a.foreign_share(&b) < threshold => quiet += 1,
            Some(_) => quiet = 0,
            None => return,
        }
    }
}

/// Machine-wide and own CPU time, in clock ticks (Linux /proc).
#[derive(Clone, Copy)]
struct CpuSnapshot {
    total: u64,
    idle: u64,
    own: u64,
}

impl CpuSnapshot {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
        if cpu.len() < 8 {
            return None;
        }
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = own_stat.rsplit_once(')')?.1.split_whitespace().collect();
        let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Self { total: cpu.iter().sum(), idle: cpu[3] + cpu[4], own })
    }

    fn foreign_share(&self, later: &Self) -> f64 {
        let total = later.total.saturating_sub(self.total) as f64;
        let busy = total - later.idle.saturating_sub(self.idle) as f64;
        let own = later.own.saturating_sub(self.own) as f64;
        if total > 0.0 {
            ((busy - own) / total).max(0.0)
        } else {
            0.0
        }
    }
}

struct Stats {
    total: f64,
    mean: f64,
    min: f64,
    p50: f64,
    p99: f64,
}

impl Stats {
    fn of(times: &[f64]) -> Self {
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let total: f64 = sorted.iter().sum();
        // Nearest-rank percentiles.
        let pct = |p: f64| sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Self { total, mean: total / sorted.len() as f64, min: sorted[0], p50: pct(50.0), p99: pct(99.0) }
    }
}
