//! Search as people use it, at 100k images in the embedded store: filtered searches whose
//! filters match 50 %, 5 % and 0.5 % of the index (p50/p99 latency, and proof each returns
//! `top_k` results), date-sorted search, duplicate finding over every pair, and the cost of
//! reading photo metadata next to decoding. `cargo run --release --example filtered_search`
//! (`-- 20000` for a smaller index).
//!
//! Vectors are clustered like CLIP embeddings (1,000 random unit centres, each image its
//! centre plus Gaussian noise, cosine to its centre about 0.8), not uniform noise, so top-k
//! and duplicate pairs behave as with real photos.

use std::time::Instant;

use visionquery::engine::metadata::read_photo_meta;
use visionquery::store::{conformance_record, Camera, EmbeddedStore, Filter, SearchQuery, SortBy, TakenAt, VectorStore};

#[path = "common/random.rs"]
mod random;
use random::{percentile, unit, Rng};

const DIM: usize = 512;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mut rng = Rng(42);
    let centres: Vec<Vec<f32>> = (0..1000)
        .map(|_| {
            let mut c: Vec<f32> = (0..DIM).map(|_| rng.normal()).collect();
            unit(&mut c);
            c
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let centre = &centres[i % centres.len()];
        let mut v: Vec<f32> = centre.iter().map(|c| c + 0.033 * rng.normal()).collect();
        unit(&mut v);
        let mut r = conformance_record(&format!("{i:016x}"));
        r.path = format!("/photos/{}/{i}.jpg", i % 200);
        // Cameras by share of the index: canon 50 %, nikon 5 %, leica 0.5 %, the rest phones.
        let camera = match i % 1000 {
            0..=499 => "Canon",
            500..=549 => "Nikon",
            550..=554 => "Leica",
            _ => "Apple",
        };
        r.photo.camera = Some(Camera { make: Some(camera.into()), model: None });
        r.photo.taken_at = TakenAt::parse(&format!("20{:02}-{:02}-{:02}T12:00:00", 10 + i % 15, 1 + i % 12, 1 + i % 28));
        batch.push((r, v));
        if batch.len() == 1000 {
            store.upsert_many(&batch).expect("write");
            batch.clear();
        }
    }
    store.upsert_many(&batch).expect("write");
    println!("loaded {n} images in {:.1}s", started.elapsed().as_secs_f64());

    let queries: Vec<Vec<f32>> = (0..60)
        .map(|q| {
            let mut v: Vec<f32> = centres[(q * 17) % centres.len()].iter().map(|c| c + 0.05 * rng.normal()).collect();
            unit(&mut v);
            v
        })
        .collect();
    println!("\n| search (top_k 20) | share of index | p50 ms | p99 ms | results returned |");
    println!("|---|---|---|---|---|");
    for (label, camera, share) in [
        ("no filter", None, "100 %"),
        ("camera = canon", Some("canon"), "50 %"),
        ("camera = nikon", Some("nikon"), "5 %"),
        ("camera = leica", Some("leica"), "0.5 %"),
    ] {
        let filter = Filter { cameras: camera.map(|c| vec![c.to_string()]).unwrap_or_default(), ..Filter::default() };
        run(&store, &queries, &filter, SortBy::Relevance, label, share);
    }
    let dated = Filter { cameras: vec!["nikon".into()], ..Filter::default() };
    run(&store, &queries, &dated, SortBy::TakenDesc, "camera = nikon, newest first", "5 %");

    let started = Instant::now();
    let groups = store.duplicates(0.95).expect("duplicates");
    println!(
        "\nduplicates over all {n} images (every pair, threshold 0.95): {:.1}s, {} groups",
        started.elapsed().as_secs_f64(),
        groups.len()
    );

    metadata_cost();
}

fn run(store: &EmbeddedStore, queries: &[Vec<f32>], filter: &Filter, sort: SortBy, label: &str, share: &str) {
    let mut times = Vec::new();
    let mut returned = usize::MAX;
    for q in queries {
        let started = Instant::now();
        let page = store.search_page(&SearchQuery { vector: q, filter, sort, offset: 0, limit: 20, exact: false }).expect("search");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        returned = returned.min(page.items.len());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "| {label} | {share} | {:.1} | {:.1} | {returned} of 20 (fewest over {} queries) |",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        queries.len()
    );
}

/// Metadata reading next to decoding, per image, on the shared COCO photos when present.
fn metadata_cost() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/photos/images");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("\n(no ../shared photos: metadata cost not measured)");
        return;
    };
    let files: Vec<Vec<u8>> = entries.flatten().take(100).filter_map(|e| std::fs::read(e.path()).ok()).collect();
    let started = Instant::now();
    for _ in 0..10 {
        for bytes in &files {
            std::hint::black_box(read_photo_meta(bytes));
        }
    }
    let meta_us = started.elapsed().as_secs_f64() * 1e6 / (10 * files.len()) as f64;
    let limits = visionquery::embed::DecodeLimits { max_pixels: 50_000_000, max_bytes: 64 << 20 };
    let started = Instant::now();
    for bytes in &files {
        std::hint::black_box(visionquery::embed::preprocess::decode(bytes, &limits).expect("decode"));
    }
    let decode_us = started.elapsed().as_secs_f64() * 1e6 / files.len() as f64;
    println!(
        "\nreading photo metadata: {meta_us:.1} µs per photo; decoding the same photo: {decode_us:.0} µs ({:.2} % of the decode), {} COCO photos",
        100.0 * meta_us / decode_us,
        files.len()
    );
}
