//! What text-tower calls cost: the numbers behind the batcher's length grouping (issue 13).
//!
//! ```text
//! cargo run --release --example text_call_cost -- --model .cache/bench/vit-b32 --precision fp32 \
//!     --captions /work/shared/data/photos/captions.json --batch 20
//! ```
//!
//! 1. One JSON line per (texts, length) with the median call time, then a least-squares fit
//!    `ms = fixed + per_position × texts × length` and the fixed cost in positions
//!    (`TEXT_CALL_OVERHEAD` in `src/embed/mod.rs`).
//! 2. With `--captions`: random batches of real captions (as the batcher drains them under load),
//!    each embedded three ways, in alternating order so a busy machine's drift hits all alike:
//!    one call padded to the longest caption (before issue 13), the length-grouped calls the
//!    batcher now makes, and every caption alone (what one client at a time costs). Reports the
//!    model time per caption of each and the padded positions computed. With `--two-sessions`,
//!    a fourth way: the grouped calls split over two sessions run side by side.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use visionquery::embed::onnx::{OnnxTextEncoder, TextEncoder};
use visionquery::embed::{grouping, model_files, runtime, ClipTokenizer, Precision, TEXT_CALL_OVERHEAD};

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
    /// Skip part 1 (the synthetic grid).
    #[arg(long)]
    no_grid: bool,
    /// COCO-style captions JSON ({key: [caption, ...]}) for part 2.
    #[arg(long)]
    captions: Option<PathBuf>,
    /// Captions per drained batch in part 2.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Batches timed in part 2.
    #[arg(long, default_value_t = 30)]
    trials: usize,
    /// Call overheads (positions) to group with in part 2, besides the batcher's own.
    #[arg(long, value_delimiter = ',')]
    overheads: Vec<usize>,
    /// Part 2 also runs each drained batch's grouped calls split over two sessions of the tower
    /// at once (sharing the thread pool): does running calls side by side beat running them in
    /// turn with every thread?
    #[arg(long)]
    two_sessions: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let precision = if args.precision == "quantized" { Precision::Quantized } else { Precision::Fp32 };
    let files = model_files::resolve(&args.model.to_string_lossy(), precision)?;
    let env = runtime::init(None, args.threads)?;
    let tokenizer = ClipTokenizer::from_file(&files.tokenizer)?;
    let mut encoder = OnnxTextEncoder::load(env, &files.text_model, tokenizer.pad_id()).context("text tower")?;
    let mut second = match args.two_sessions {
        true => Some(OnnxTextEncoder::load(env, &files.text_model, tokenizer.pad_id()).context("second text session")?),
        false => None,
    };
    if !args.no_grid {
        grid(&args, &mut encoder)?;
    }
    if let Some(captions) = &args.captions {
        drained_batches(&args, &tokenizer, &mut encoder, second.as_mut(), captions)?;
    }
    Ok(())
}

/// The calls of one drained batch split into two lanes of about equal padded positions (a lone
/// call is cut in two), each lane run on its own session at the same time.
fn two_lanes(
    first: &mut OnnxTextEncoder,
    second: &mut OnnxTextEncoder,
    batch: &[Vec<i64>],
    groups: &[std::ops::Range<usize>],
) -> Result<()> {
    let mut groups = groups.to_vec();
    if groups.len() == 1 && groups[0].len() > 1 {
        let g = groups.pop().unwrap_or_default();
        let middle = g.start + g.len() / 2;
        groups = vec![g.start..middle, middle..g.end];
    }
    let cost = |g: &std::ops::Range<usize>| g.len() * batch[g.end - 1].len();
    groups.sort_by_key(|g| std::cmp::Reverse(cost(g)));
    let (mut lanes, mut loads) = ([Vec::new(), Vec::new()], [0usize; 2]);
    for g in groups {
        let lane = if loads[0] <= loads[1] { 0 } else { 1 };
        loads[lane] += cost(&g);
        lanes[lane].push(g);
    }
    let [a, b] = lanes;
    std::thread::scope(|scope| {
        let other = scope.spawn(|| b.iter().try_for_each(|g| encoder_call(second, &batch[g.clone()])));
        let mine = a.iter().try_for_each(|g| encoder_call(first, &batch[g.clone()]));
        other.join().map_err(|_| anyhow::anyhow!("lane panicked"))?.and(mine)
    })
}

fn grid(args: &Args, encoder: &mut OnnxTextEncoder) -> Result<()> {
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

fn drained_batches(
    args: &Args,
    tokenizer: &ClipTokenizer,
    encoder: &mut OnnxTextEncoder,
    mut second: Option<&mut OnnxTextEncoder>,
    captions: &std::path::Path,
) -> Result<()> {
    let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(captions)?)?;
    let texts: Vec<Vec<i64>> = doc
        .values()
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(|c| c.as_str())
        .map(|c| tokenizer.encode(c).map(|t| t.ids))
        .collect::<Result<_, _>>()?;
    // xorshift: reproducible batches without a dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut overheads = vec![TEXT_CALL_OVERHEAD];
    overheads.extend(args.overheads.iter().filter(|&&o| o != TEXT_CALL_OVERHEAD));
    let (mut whole_ms, mut single_ms, mut two_lane_ms) = (0.0, 0.0, 0.0);
    let mut grouped_ms = vec![0.0; overheads.len()];
    let mut grouped_positions = vec![0usize; overheads.len()];
    let mut calls = vec![0usize; overheads.len()];
    let (mut whole_positions, mut real_positions) = (0usize, 0usize);
    let timed = |run: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let started = Instant::now();
        run()?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    for trial in 0..args.trials {
        let mut batch: Vec<Vec<i64>> = (0..args.batch).map(|_| texts[next() as usize % texts.len()].clone()).collect();
        batch.sort_by_key(Vec::len);
        let lengths: Vec<usize> = batch.iter().map(Vec::len).collect();
        // The first trial warms up allocations for these shapes and is not counted.
        let keep = if trial > 0 { 1.0 } else { 0.0 };
        whole_positions += batch.len() * lengths[lengths.len() - 1];
        real_positions += lengths.iter().sum::<usize>();
        whole_ms += keep * timed(&mut || encoder_call(encoder, &batch))?;
        for (k, &overhead) in overheads.iter().enumerate() {
            let groups = grouping::plan(&lengths, overhead);
            grouped_positions[k] += groups.iter().map(|g| g.len() * lengths[g.end - 1]).sum::<usize>();
            calls[k] += groups.len();
            grouped_ms[k] += keep * timed(&mut || groups.iter().try_for_each(|g| encoder_call(encoder, &batch[g.clone()])))?;
        }
        single_ms += keep * timed(&mut || batch.iter().try_for_each(|t| encoder_call(encoder, std::slice::from_ref(t))))?;
        if let Some(second) = second.as_deref_mut() {
            let groups = grouping::plan(&lengths, TEXT_CALL_OVERHEAD);
            two_lane_ms += keep * timed(&mut || two_lanes(encoder, second, &batch, &groups))?;
        }
    }
    let n = ((args.trials.saturating_sub(1)) * args.batch) as f64;
    let grouped: Vec<_> = overheads
        .iter()
        .enumerate()
        .map(|(k, overhead)| {
            json!({
                "call_overhead": overhead,
                "ms_per_caption": grouped_ms[k] / n,
                "vs_padded_call": grouped_ms[k] / whole_ms,
                "alone_vs_grouped_speedup": single_ms / grouped_ms[k],
                "positions_vs_real": grouped_positions[k] as f64 / real_positions as f64,
                "calls_per_batch": calls[k] as f64 / args.trials as f64,
            })
        })
        .collect();
    println!(
        "{}",
        json!({
            "precision": args.precision, "captions_per_batch": args.batch, "batches": args.trials - 1,
            "ms_per_caption_one_padded_call": whole_ms / n,
            "ms_per_caption_alone": single_ms / n,
            "alone_vs_padded_call_speedup": single_ms / whole_ms,
            "positions_padded_call_vs_real": whole_positions as f64 / real_positions as f64,
            "length_grouped": grouped,
            "two_sessions_at_once": second.is_some().then(|| json!({
                "ms_per_caption": two_lane_ms / n,
                "vs_grouped_on_one_session": two_lane_ms / grouped_ms[0],
                "alone_vs_two_sessions_speedup": single_ms / two_lane_ms,
            })),
        })
    );
    Ok(())
}

fn encoder_call(encoder: &mut OnnxTextEncoder, batch: &[Vec<i64>]) -> Result<()> {
    encoder.encode(batch)?;
    Ok(())
}
