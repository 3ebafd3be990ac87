//! What one search of the embedded store's saved approximate index costs, and how many of its
//! candidates need re-scoring (issue 8: the 1M latency goal).
//!
//! `cargo run --release --example ann_walk -- <DATA_DIR>/ann-i8.usearch <vectors.f32> <n> <ef>...`
//!
//! Loads the index a store saved (e.g. one `load_vectors` filled from the first `n` rows of a
//! `scripts/bench_store.py` vectors file), then for each breadth `ef`: recall@10 of the top
//! 10 / 20 / 30 / 50 candidates re-scored with the f32 vectors, against the exact top 10 of 300
//! indexed rows (the image itself included, as in the store benchmark), and the time of 2,000
//! single-thread searches (p50, mean), twice. Run it on two builds to compare a change to the
//! index (e.g. `vendor/usearch/huge-pages.patch` reverse-applied and not).

use std::time::Instant;

use visionquery::store::{ann_index_options, ann_int8_copy, AnnParams};

const DIM: usize = 512;
const TIMED: usize = 2000;
const RECALL_QUERIES: usize = 300;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: ann_walk <index.usearch> <vectors.f32> <n> <ef>...");
        std::process::exit(2);
    }
    let (index_path, vectors_path) = (&args[1], &args[2]);
    let n: usize = args[3].parse().expect("n");
    let breadths: Vec<usize> = args[4..].iter().map(|a| a.parse().expect("ef")).collect();

    let index = usearch::Index::new(&ann_index_options(DIM, &AnnParams::default())).expect("index");
    index.load(index_path).expect("loading the index");
    assert_eq!(index.size(), n, "the index holds {} vectors, not {n}", index.size());

    let bytes = std::fs::read(vectors_path).expect("vectors file");
    let data: Vec<f32> = bytes[..n * DIM * 4].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    drop(bytes);
    let row = |r: usize| &data[r * DIM..(r + 1) * DIM];
    let rows: Vec<usize> = (0..TIMED).map(|i| (i * 7919 + 13) % n).collect();
    let queries: Vec<Vec<i8>> = rows.iter().map(|&r| ann_int8_copy(row(r))).collect();
    let truth: Vec<Vec<u64>> = rows
        .iter()
        .take(RECALL_QUERIES)
        .map(|&q| {
            let mut scored: Vec<(f32, u64)> = (0..n).map(|r| (dot(row(q), row(r)), r as u64)).collect();
            scored.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(10);
            scored.into_iter().map(|(_, key)| key).collect()
        })
        .collect();

    for ef in breadths {
        index.change_expansion_search(ef);
        for rescored in [10usize, 20, 30, 50] {
            let mut found = 0;
            for (i, exact) in truth.iter().enumerate() {
                let keys = index.search(&queries[i], rescored).expect("search").keys;
                let mut scored: Vec<(f32, u64)> = keys.iter().map(|&k| (dot(row(rows[i]), row(k as usize)), k)).collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                found += scored.iter().take(10).filter(|(_, k)| exact.contains(k)).count();
            }
            println!("ef {ef}: top {rescored} re-scored: recall@10 {:.4}", found as f64 / (10 * truth.len()) as f64);
        }
        for round in 1..=2 {
            let mut micros: Vec<f64> = queries
                .iter()
                .map(|q| {
                    let started = Instant::now();
                    index.search(q, 20).expect("search");
                    started.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            micros.sort_by(f64::total_cmp);
            let mean = micros.iter().sum::<f64>() / micros.len() as f64;
            println!("ef {ef}: round {round}: {TIMED} searches, p50 {:.0} us, mean {mean:.0} us", micros[micros.len() / 2]);
        }
    }
}
