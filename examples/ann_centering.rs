//! How should the embedded store's HNSW index hold its int8 vectors, and how big a graph does it
//! need? (issue 8: at 1M clustered CLIP-like vectors the int8 index reached recall@10 0.78 at ef 64.)
//!
//! `cargo run --release --example ann_centering -- <vectors.f32> <n> <variant>...` with variants
//! `i8-cos` / `i8-cos-32` (f32 in, usearch's own cast: unit length × 127, M=16 / 32),
//! `i8-cos-maxabs` / `-24` / `-32` (our cast, as the store does now: each vector × 127 / its
//! largest |component|), `i8-l2-centred-own` (our cast of s·(x − μ)·127 under squared L2: the
//! same ranking as cosine for unit vectors, since ‖(q − μ) − (x − μ)‖ = ‖q − x‖), `i8-l2-centred`
//! (the 2026-12-02 attempt: s·(x − μ) in as f32, which usearch re-normalises, so it is *not* that
//! ranking), `f16-cos` / `f16-cos-32`. Which usearch is linked decides whether the graph keeps
//! pruned connections (vendor/usearch/VENDORED.md).
//!
//! Vectors: the first `n` rows of a `scripts/bench_store.py` file (row-major f32). Queries: 200
//! indexed rows, one at a time on one thread (search by image, the image itself included, as in
//! the store benchmark). Recall@10 against the exact f32 top 10, after re-scoring the index's top
//! 50 with f32 as the store does; also the raw top 10.

use std::time::Instant;

use rayon::prelude::*;

const DIM: usize = 512;
const QUERIES: usize = 200;
const RESCORE: usize = 50;

/// How a vector reaches usearch's int8 cells.
#[derive(Clone, Copy)]
enum Coding {
    /// f32 in; usearch scales each vector to unit norm, then × 127 (a step of 1/127 per component).
    Usearch,
    /// s·(x − μ) in as f32 (usearch then re-normalises it).
    UsearchCentred,
    /// The store's own cast (`visionquery::store::ann_int8_copy`): each vector × 127 / its
    /// largest |component| (cosine ignores the per-vector scale, so the whole int8 range is used).
    MaxAbs,
    /// Our own cast of s·(x − μ)·127, under squared L2 (no re-normalisation).
    Centred,
}

enum Encoded {
    F32(Vec<f32>),
    I8(Vec<i8>),
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn exact_top(data: &[f32], query: &[f32], k: usize) -> Vec<usize> {
    let n = data.len() / DIM;
    let scores: Vec<f32> = (0..n).into_par_iter().map(|r| dot(&data[r * DIM..(r + 1) * DIM], query)).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.select_nth_unstable_by(k - 1, |a, b| scores[*b].total_cmp(&scores[*a]));
    order.truncate(k);
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    order
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let n: usize = args[2].parse().expect("n");
    let variants: Vec<String> = args[3..].to_vec();
    let bytes = std::fs::read(path).expect("vectors file");
    let data: Vec<f32> = bytes[..n * DIM * 4].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    drop(bytes);
    let queries: Vec<usize> = (0..QUERIES).map(|i| (i * 7919 + 13) % n).collect();
    let started = Instant::now();
    let truth: Vec<Vec<usize>> = queries.iter().map(|&q| exact_top(&data, &data[q * DIM..(q + 1) * DIM], 10)).collect();
    eprintln!("exact top-10 of {QUERIES} queries over {n} in {:.1}s", started.elapsed().as_secs_f64());

    // μ and the stretch s: the mean vector, and 1 / the 99.9th percentile of |x − μ| components.
    let mut mean = vec![0f64; DIM];
    for row in data.chunks_exact(DIM) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += f64::from(*x);
        }
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
    let mut sample: Vec<f32> =
        data.chunks_exact(DIM).step_by((n / 2000).max(1)).flat_map(|r| r.iter().zip(&mean).map(|(x, m)| (x - m).abs())).collect();
    sample.sort_by(f32::total_cmp);
    let p999 = sample[sample.len() * 999 / 1000];
    let stretch = 1.0 / p999;
    eprintln!(
        "|μ| = {:.3}, 99.9th percentile of |x − μ| = {p999:.4} (int8 step today 1/127 = {:.4})",
        dot(&mean, &mean).sqrt(),
        1.0 / 127.0
    );

    for variant in variants {
        let (metric, scalar, coding, connectivity) = match variant.as_str() {
            "i8-cos" => (usearch::MetricKind::Cos, usearch::ScalarKind::I8, Coding::Usearch, 16),
            "i8-cos-32" => (usearch::MetricKind::Cos, usearch::ScalarKind::I8, Coding::Usearch, 32),
            // Flawed (kept to reproduce the 2026-12-02 table): usearch re-normalises every
            // vector before its int8 cast, which undoes the centring's L2 equivalence.
            "i8-l2-centred" => (usearch::MetricKind::L2sq, usearch::ScalarKind::I8, Coding::UsearchCentred, 16),
            "i8-cos-maxabs" => (usearch::MetricKind::Cos, usearch::ScalarKind::I8, Coding::MaxAbs, 16),
            "i8-cos-maxabs-24" => (usearch::MetricKind::Cos, usearch::ScalarKind::I8, Coding::MaxAbs, 24),
            "f16-cos-32" => (usearch::MetricKind::Cos, usearch::ScalarKind::F16, Coding::Usearch, 32),
            "i8-cos-maxabs-32" => (usearch::MetricKind::Cos, usearch::ScalarKind::I8, Coding::MaxAbs, 32),
            "i8-l2-centred-own" => (usearch::MetricKind::L2sq, usearch::ScalarKind::I8, Coding::Centred, 16),
            "f16-cos" => (usearch::MetricKind::Cos, usearch::ScalarKind::F16, Coding::Usearch, 16),
            other => panic!("unknown variant {other}"),
        };
        let encode = |v: &[f32]| -> Encoded {
            match coding {
                Coding::Usearch => Encoded::F32(v.to_vec()),
                Coding::UsearchCentred => Encoded::F32(v.iter().zip(&mean).map(|(x, m)| ((x - m) * stretch).clamp(-1.0, 1.0)).collect()),
                Coding::MaxAbs => Encoded::I8(visionquery::store::ann_int8_copy(v)),
                Coding::Centred => {
                    Encoded::I8(v.iter().zip(&mean).map(|(x, m)| ((x - m) * stretch * 127.0).round().clamp(-127.0, 127.0) as i8).collect())
                }
            }
        };
        let options = usearch::IndexOptions {
            dimensions: DIM,
            metric,
            quantization: scalar,
            connectivity,
            expansion_add: 128,
            expansion_search: 64,
            multi: false,
        };
        let index = usearch::Index::new(&options).expect("index");
        index.reserve_capacity_and_threads(n, rayon::current_num_threads()).expect("reserve");
        let started = Instant::now();
        (0..n).into_par_iter().for_each(|r| match encode(&data[r * DIM..(r + 1) * DIM]) {
            Encoded::F32(v) => index.add(r as u64, &v).expect("add"),
            Encoded::I8(v) => index.add(r as u64, &v).expect("add"),
        });
        let build = started.elapsed().as_secs_f64();
        // The saved file's size: usearch's `memory_usage` counts reserved room and contexts too.
        let bytes_per_image = index.serialized_length() / n;
        for ef in [64, 128, 256, 512] {
            index.change_expansion_search(ef);
            let (mut hit_raw, mut hit, mut times) = (0usize, 0usize, Vec::new());
            for (q, truth) in queries.iter().zip(&truth) {
                let query = &data[q * DIM..(q + 1) * DIM];
                let t = Instant::now();
                let found = match encode(query) {
                    Encoded::F32(v) => index.search(&v, RESCORE),
                    Encoded::I8(v) => index.search(&v, RESCORE),
                }
                .expect("search");
                let mut candidates: Vec<(usize, f32)> =
                    found.keys.iter().map(|&k| (k as usize, dot(&data[k as usize * DIM..(k as usize + 1) * DIM], query))).collect();
                candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
                times.push(t.elapsed().as_secs_f64() * 1e3);
                hit_raw += found.keys.iter().take(10).filter(|k| truth.contains(&(**k as usize))).count();
                hit += candidates.iter().take(10).filter(|(r, _)| truth.contains(r)).count();
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{variant:<14} n={n} build {build:.0}s ef={ef:<4} recall@10 raw {:.3} re-scored {:.3} p50 {:.2} ms, {bytes_per_image} B/image saved",
                hit_raw as f64 / (10 * QUERIES) as f64,
                hit as f64 / (10 * QUERIES) as f64,
                times[times.len() / 2],
            );
        }
    }
}
