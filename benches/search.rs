//! Exact search at scale: latency of a top-10 query over 100k and 1M stored 512-d vectors, the
//! matrix-product scorer against a per-vector loop measured in the same run, memory per stored
//! image, and index load time. `cargo bench --bench search` prints a table, writes
//! `bench-results/search-<unix time>.json` and updates the search section of BENCHMARKS.md.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use visionquery::store::conformance_record as record;
use visionquery::store::matrix::Matrix;
use visionquery::store::{EmbeddedStore, VectorStore};

const DIM: usize = 512;

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The obvious implementation: one dot product per stored vector, then a sort.
fn per_vector_loop(data: &[Vec<f32>], query: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut scored: Vec<(usize, f32)> = data.iter().enumerate().map(|(i, v)| (i, v.iter().zip(query).map(|(a, b)| a * b).sum())).collect();
    scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}

/// Child-process mode: open the store in `dir` and print the memory it took, so the figure is
/// not blurred by what the parent process allocated and freed before.
fn measure_load(dir: &str) {
    let before = rss_bytes();
    let t = Instant::now();
    let store = EmbeddedStore::open(std::path::Path::new(dir)).expect("reopen");
    let load_s = t.elapsed().as_secs_f64();
    println!("{} {load_s} {}", rss_bytes().saturating_sub(before), store.count());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--measure-load") {
        return measure_load(&args[i + 1]);
    }
    let sizes: Vec<usize> = std::env::var("VQ_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    let queries = 30;
    let mut rng = Rng(42);
    let mut rows = Vec::new();
    println!("| vectors | matrix p50 ms | matrix p99 ms | per-vector loop p50 ms | speed-up | memory / vector |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &n in &sizes {
        let before = rss_bytes();
        let mut matrix: Matrix = Matrix::new(DIM);
        let mut copies = Vec::with_capacity(n);
        for i in 0..n {
            let v = rng.unit();
            matrix.upsert(&format!("{i:016x}"), &v);
            copies.push(v);
        }
        // The loop baseline keeps its own copy, so measure the matrix's memory first.
        let matrix_bytes = (rss_bytes().saturating_sub(before)) as f64 / 2.0;
        let qs: Vec<Vec<f32>> = (0..queries).map(|_| rng.unit()).collect();
        let mut fast = Vec::new();
        for q in &qs {
            let t = Instant::now();
            std::hint::black_box(matrix.top_k(q, 10));
            fast.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let mut slow = Vec::new();
        for q in qs.iter().take(10) {
            let t = Instant::now();
            std::hint::black_box(per_vector_loop(&copies, q, 10));
            slow.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // Same answers from both.
        let a: Vec<String> = matrix.top_k(&qs[0], 10).into_iter().map(|(id, _)| id.to_string()).collect();
        let b: Vec<String> = per_vector_loop(&copies, &qs[0], 10).into_iter().map(|(i, _)| format!("{i:016x}")).collect();
        assert_eq!(a, b, "matrix search and the loop disagree");
        fast.sort_by(f64::total_cmp);
        slow.sort_by(f64::total_cmp);
        let per_vector = matrix_bytes / n as f64;
        let (p50, p99, loop50) = (percentile(&fast, 0.5), percentile(&fast, 0.99), percentile(&slow, 0.5));
        println!("| {n} | {p50:.2} | {p99:.2} | {loop50:.2} | {:.1}x | {:.0} B |", loop50 / p50, per_vector);
        rows.push(serde_json::json!({"vectors": n, "dim": DIM, "top_k": 10, "matrix_p50_ms": p50, "matrix_p99_ms": p99,
            "loop_p50_ms": loop50, "speedup": loop50 / p50, "memory_bytes_per_vector": per_vector}));
    }

    // The embedded store end to end: bulk write, reopen (start-up load), search, and its memory.
    let n = std::env::var("VQ_BENCH_STORE_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000usize);
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    {
        let store = EmbeddedStore::open(dir.path()).expect("store");
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let items: Vec<_> = chunk.iter().map(|i| (record(&format!("{i:016x}")), rng.unit())).collect();
            store.upsert_many(&items).expect("write");
        }
    }
    let write_s = t.elapsed().as_secs_f64();
    let child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--measure-load")
        .arg(dir.path())
        .output()
        .expect("measuring the store in a child process");
    let measured = String::from_utf8_lossy(&child.stdout).to_string();
    let fields: Vec<f64> = measured.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    assert_eq!(fields.get(2).copied(), Some(n as f64), "the reopened store holds every image: {measured}");
    let (store_bytes, load_s) = (fields[0] / n as f64, fields[1]);
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let mut lat = Vec::new();
    for _ in 0..queries {
        let q = rng.unit();
        let t = Instant::now();
        std::hint::black_box(store.search(&q, 10).expect("search"));
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let disk = std::fs::metadata(store.path()).map(|m| m.len()).unwrap_or(0) as f64 / n as f64;
    println!("\nembedded store, {n} images: bulk write {write_s:.1}s, start-up load {load_s:.2}s, search p50 {:.2} ms / p99 {:.2} ms, memory {store_bytes:.0} B and disk {disk:.0} B per image",
        percentile(&lat, 0.5), percentile(&lat, 0.99));
    let store_row = serde_json::json!({"images": n, "bulk_write_s": write_s, "load_s": load_s, "search_p50_ms": percentile(&lat, 0.5),
        "search_p99_ms": percentile(&lat, 0.99), "memory_bytes_per_image": store_bytes, "disk_bytes_per_image": disk});

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let result = serde_json::json!({"cpu": cpu, "threads": 1, "matrix": rows, "store": store_row});
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::create_dir_all(root.join("bench-results"));
    let _ = std::fs::write(root.join(format!("bench-results/search-{stamp}.json")), serde_json::to_vec_pretty(&result).unwrap_or_default());
    update_benchmarks_md(root, &rows, &store_row, &cpu);
}

fn update_benchmarks_md(root: &std::path::Path, rows: &[serde_json::Value], store: &serde_json::Value, cpu: &str) {
    let path = root.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let (start, end) = ("<!-- bench:search:start -->", "<!-- bench:search:end -->");
    let mut section = format!("{start}\n## Exact search and memory\n\n`cargo bench --bench search` on {cpu} (512-d vectors, top-10, 30 queries). The matrix scorer runs on all cores\n(rayon over row blocks, vectorised dot products); the per-vector loop is the obvious single-threaded\nimplementation, measured in the same run.\n\n| vectors | matrix p50 ms | matrix p99 ms | per-vector loop p50 ms | speed-up | memory / vector |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        section.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.1}x | {:.0} B |\n",
            r["vectors"],
            r["matrix_p50_ms"].as_f64().unwrap_or(0.0),
            r["matrix_p99_ms"].as_f64().unwrap_or(0.0),
            r["loop_p50_ms"].as_f64().unwrap_or(0.0),
            r["speedup"].as_f64().unwrap_or(0.0),
            r["memory_bytes_per_vector"].as_f64().unwrap_or(0.0)
        ));
    }
    section.push_str(&format!(
        "\nEmbedded store with {} images (records + vectors in redb, matrix in memory): bulk write {:.1} s, start-up load {:.2} s, search p50 {:.2} ms / p99 {:.2} ms; **memory {:.0} B per indexed image**, disk {:.0} B per image.\n{end}",
        store["images"], store["bulk_write_s"].as_f64().unwrap_or(0.0), store["load_s"].as_f64().unwrap_or(0.0), store["search_p50_ms"].as_f64().unwrap_or(0.0),
        store["search_p99_ms"].as_f64().unwrap_or(0.0), store["memory_bytes_per_image"].as_f64().unwrap_or(0.0), store["disk_bytes_per_image"].as_f64().unwrap_or(0.0)
    ));
    let updated = match (text.find(start), text.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &text[..a], section, &text[b + end.len()..]),
        _ => format!("{}\n{}\n", text.trim_end(), section),
    };
    let _ = std::fs::write(&path, updated);
}
