//! Which approximate index the embedded store should use, by measurement (issue 8):
//! `cargo run --release --example ann_choice -- <n> <candidate>` with candidate one of
//! `usearch-i8-16`, `usearch-i8-32`, `usearch-f16-16`, `hnsw_rs-16`, `int8-scan`. One candidate
//! per process, so the RSS delta is that candidate's alone.
//!
//! Data shaped like CLIP image embeddings, not uniform noise: 512-d unit vectors in
//! `n / 250` clusters (1,000 to 4,000). Every cluster centre leans on one shared direction
//! (as CLIP's embeddings share a common component: random pairs sit near cosine 0.4, not 0),
//! and each point is its centre plus Gaussian noise with a per-cluster spread, normalised, so
//! tight clusters (bursts, near-duplicates) and loose ones (a theme) both occur. The program
//! prints the nearest-neighbour cosines it produced (median top-1 and 10th), which land in
//! CLIP's 0.6-0.95 range. Queries are 500 fresh points from the same distribution (search by
//! image), answered one at a time on one thread. Recall@10 is against the exact f32 top 10;
//! approximate candidates are re-scored with the f32 vectors as the store does (top 50 from
//! the index, exact f32 order, first 10 kept).

use std::time::Instant;

use ndarray::{s, Array2};
use rayon::prelude::*;

#[path = "common/random.rs"]
mod random;
use random::{percentile, unit, Rng};

const DIM: usize = 512;
const QUERIES: usize = 500;
const RESCORE: usize = 50;

struct Clusters {
    centres: Vec<Vec<f32>>,
    spread: Vec<f32>,
}

impl Clusters {
    fn new(n: usize, rng: &mut Rng) -> Self {
        let count = (n / 250).clamp(1000, 4000);
        let mut shared: Vec<f32> = (0..DIM).map(|_| rng.normal()).collect();
        unit(&mut shared);
        let centres = (0..count)
            .map(|_| {
                let mut own: Vec<f32> = (0..DIM).map(|_| rng.normal()).collect();
                unit(&mut own);
                let mut c: Vec<f32> = shared.iter().zip(&own).map(|(s, o)| 0.8 * s + o).collect();
                unit(&mut c);
                c
            })
            .collect();
        // Per-dimension noise 0.012-0.040: cosine to the centre 0.95 down to 0.66.
        let spread = (0..count).map(|_| 0.012 + 0.028 * rng.next()).collect();
        Self { centres, spread }
    }

    fn point(&self, rng: &mut Rng) -> Vec<f32> {
        let c = ((rng.next() * self.centres.len() as f32) as usize).min(self.centres.len() - 1);
        let mut v: Vec<f32> = self.centres[c].iter().map(|x| x + self.spread[c] * rng.normal()).collect();
        unit(&mut v);
        v
    }
}

/// Points generated on every core, each chunk from its own seed (deterministic).
fn generate(clusters: &Clusters, n: usize, seed: u64) -> Vec<f32> {
    let chunks: Vec<Vec<f32>> = (0..n.div_ceil(10_000))
        .into_par_iter()
        .map(|c| {
            let mut rng = Rng(seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            (c * 10_000..((c + 1) * 10_000).min(n)).flat_map(|_| clusters.point(&mut rng)).collect()
        })
        .collect();
    chunks.concat()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Exact top 10 (row, score) per query, by blocked matrix products.
fn ground_truth(data: &[f32], queries: &[f32]) -> Vec<Vec<(usize, f32)>> {
    let n = data.len() / DIM;
    let q = Array2::from_shape_vec((QUERIES, DIM), queries.to_vec()).expect("whole rows");
    let data = ndarray::ArrayView2::from_shape((n, DIM), data).expect("whole rows");
    let mut best: Vec<Vec<(usize, f32)>> = vec![Vec::new(); QUERIES];
    for start in (0..n).step_by(50_000) {
        let end = (start + 50_000).min(n);
        let scores = data.slice(s![start..end, ..]).dot(&q.t());
        best.par_iter_mut().enumerate().for_each(|(qi, top)| {
            top.extend(scores.column(qi).iter().enumerate().map(|(r, &sc)| (start + r, sc)));
            top.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
            top.truncate(10);
        });
    }
    best
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()).unwrap_or(0) * 4096
}

/// An index under test: returns candidate rows for a query at a search breadth `ef`.
trait Candidate: Sync {
    fn search(&self, query: &[f32], count: usize, ef: usize) -> Vec<usize>;
    fn structure_bytes(&self) -> usize;
}

struct Usearch(usearch::Index);

impl Usearch {
    fn build(data: &[f32], scalar: usearch::ScalarKind, m: usize) -> Self {
        let n = data.len() / DIM;
        let options = usearch::IndexOptions {
            dimensions: DIM,
            metric: usearch::MetricKind::Cos,
            quantization: scalar,
            connectivity: m,
            expansion_add: 128,
            expansion_search: 64,
            multi: false,
        };
        let index = usearch::Index::new(&options).expect("index");
        let threads = rayon::current_num_threads();
        index.reserve_capacity_and_threads(n, threads).expect("reserve");
        (0..n).into_par_iter().for_each(|row| index.add(row as u64, &data[row * DIM..(row + 1) * DIM]).expect("add"));
        Self(index)
    }
}

impl Candidate for Usearch {
    fn search(&self, query: &[f32], count: usize, ef: usize) -> Vec<usize> {
        self.0.change_expansion_search(ef);
        self.0.search(query, count).expect("search").keys.into_iter().map(|k| k as usize).collect()
    }
    fn structure_bytes(&self) -> usize {
        self.0.memory_usage()
    }
}

struct HnswRs(hnsw_rs::hnsw::Hnsw<'static, f32, hnsw_rs::prelude::DistDot>);

impl Candidate for HnswRs {
    fn search(&self, query: &[f32], count: usize, ef: usize) -> Vec<usize> {
        self.0.search(query, count, ef).into_iter().map(|n| n.d_id).collect()
    }
    fn structure_bytes(&self) -> usize {
        0
    }
}

/// Int8 rows with a per-row scale, scanned in full on one thread; the best `4 * ef` go on.
struct Int8Scan {
    rows: Vec<i8>,
    scales: Vec<f32>,
}

fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE);
    let scale = max / 127.0;
    (v.iter().map(|x| (x / scale).round() as i8).collect(), scale)
}

fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.chunks_exact(32)
        .zip(b.chunks_exact(32))
        .map(|(x, y)| x.iter().zip(y).map(|(&p, &q)| p as i16 as i32 * q as i16 as i32).sum::<i32>())
        .sum()
}

impl Int8Scan {
    fn build(data: &[f32]) -> Self {
        let (rows, scales): (Vec<Vec<i8>>, Vec<f32>) = data.par_chunks(DIM).map(quantize).unzip();
        Self { rows: rows.concat(), scales }
    }
}

impl Candidate for Int8Scan {
    fn search(&self, query: &[f32], count: usize, ef: usize) -> Vec<usize> {
        let (q, qs) = quantize(query);
        let mut scored: Vec<(usize, f32)> =
            self.rows.chunks_exact(DIM).enumerate().map(|(r, row)| (r, dot_i8(row, &q) as f32 * self.scales[r] * qs)).collect();
        let keep = (4 * ef).max(count).min(scored.len());
        scored.select_nth_unstable_by(keep - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(keep);
        scored.into_iter().map(|(r, _)| r).collect()
    }
    fn structure_bytes(&self) -> usize {
        self.rows.len() + self.scales.len() * 4
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let which = args.get(2).cloned().unwrap_or_else(|| "usearch-i8-16".into());
    let mut rng = Rng(7);
    let clusters = Clusters::new(n, &mut rng);
    let data = generate(&clusters, n, 11);
    let queries = generate(&clusters, QUERIES, 12345);
    let truth = ground_truth(&data, &queries);
    let median = |mut v: Vec<f32>| {
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    };
    let top1 = median(truth.iter().map(|t| t[0].1).collect());
    let tenth = median(truth.iter().map(|t| t[9].1).collect());
    let random_pair = median((0..1000).map(|i| dot(&data[i * DIM..(i + 1) * DIM], &data[(n - 1 - i) * DIM..(n - i) * DIM])).collect());
    println!("n={n} clusters={} nn cosine median top1={top1:.3} 10th={tenth:.3} random pair={random_pair:.3}", clusters.centres.len());

    let before = rss_bytes();
    let started = Instant::now();
    let index: Box<dyn Candidate> = match which.as_str() {
        "usearch-i8-16" => Box::new(Usearch::build(&data, usearch::ScalarKind::I8, 16)),
        "usearch-i8-32" => Box::new(Usearch::build(&data, usearch::ScalarKind::I8, 32)),
        "usearch-f16-16" => Box::new(Usearch::build(&data, usearch::ScalarKind::F16, 16)),
        "hnsw_rs-16" => {
            let h = hnsw_rs::hnsw::Hnsw::new(16, n, 16, 128, hnsw_rs::prelude::DistDot {});
            let rows: Vec<(&[f32], usize)> = data.chunks_exact(DIM).enumerate().map(|(i, r)| (r, i)).collect();
            h.parallel_insert_slice(&rows);
            Box::new(HnswRs(h))
        }
        "int8-scan" => Box::new(Int8Scan::build(&data)),
        other => panic!("unknown candidate {other}"),
    };
    let build = started.elapsed().as_secs_f64();
    let rss = rss_bytes().saturating_sub(before) as f64 / n as f64;
    let structure = index.structure_bytes() as f64 / n as f64;
    println!("{which}: built in {build:.1} s, RSS delta {rss:.0} B/image, structure {structure:.0} B/image");
    for ef in [32usize, 64, 128, 256] {
        let mut times = Vec::with_capacity(QUERIES);
        let mut raw_hits = 0;
        let mut hits = 0;
        for (qi, query) in queries.chunks_exact(DIM).enumerate() {
            let t = Instant::now();
            let found = index.search(query, RESCORE.max(10), ef);
            let mut rescored: Vec<(usize, f32)> = found.iter().map(|&r| (r, dot(query, &data[r * DIM..(r + 1) * DIM]))).collect();
            rescored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
            rescored.truncate(10);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let exact: Vec<usize> = truth[qi].iter().map(|&(r, _)| r).collect();
            hits += rescored.iter().filter(|(r, _)| exact.contains(r)).count();
            raw_hits += found.iter().take(10).filter(|r| exact.contains(r)).count();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {which} | {n} | {build:.0} s | {rss:.0} | {structure:.0} | {ef} | {:.2} ms | {:.2} ms | {:.3} | {:.3} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            raw_hits as f64 / (QUERIES * 10) as f64,
            hits as f64 / (QUERIES * 10) as f64,
        );
    }
}
