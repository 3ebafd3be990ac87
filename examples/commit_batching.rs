//! What committing a directory job's images in batches saves: the same 2,000 records with 512-d
//! vectors written to the embedded store one durable transaction per image (as jobs did) and in
//! batches of 32 (as jobs do now: half the in-flight window), measured in the same run on the
//! same disk. `cargo run --release --example commit_batching`.

use std::time::Instant;

use visionquery::store::conformance_record as record;
use visionquery::store::{EmbeddedStore, VectorStore};

const DIM: usize = 512;
const IMAGES: usize = 2000;
const BATCH: usize = 32;

fn items() -> Vec<(visionquery::store::ImageRecord, Vec<f32>)> {
    (0..IMAGES)
        .map(|i| {
            let mut r = record(&format!("{i:016x}"));
            r.path = format!("/photos/{i}.jpg");
            let mut v = vec![0.0f32; DIM];
            v[i % DIM] = 1.0;
            (r, v)
        })
        .collect()
}

fn time_writes(batch: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let items = items();
    let started = Instant::now();
    for chunk in items.chunks(batch) {
        store.upsert_many(chunk).expect("write");
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    for round in 1..=3 {
        let single = time_writes(1);
        let batched = time_writes(BATCH);
        println!(
            "round {round}: one commit per image {:.0} images/s ({:.2} ms each); batches of {BATCH} {:.0} images/s; {:.1}x",
            IMAGES as f64 / single,
            single * 1000.0 / IMAGES as f64,
            IMAGES as f64 / batched,
            single / batched
        );
    }
}
