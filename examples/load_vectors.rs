//! Bulk loader for the store benchmark (`scripts/bench_store.py`): puts N raw f32 vectors into
//! the embedded store and/or PostgreSQL as images bound to a model's fingerprint, the fastest
//! correct way each backend allows, and prints one JSON line of timings per backend.
//!
//! ```sh
//! cargo run --release --example load_vectors -- --vectors v.f32 --dim 512 --model DIR \
//!     [--precision fp32] [--embedded DATA_DIR] [--postgres URL] [--m 16] [--ef-construction 64]
//! ```
//!
//! Image `i` gets id `format!("{i:016x}")` (16 hex digits, like real ids) and path
//! `/bench/images/{i:08}.jpg`; its record is `conformance_record` with a distinct ingest time.
//!
//! - Embedded: `upsert_many` in batches (one redb transaction each): the store's own write path.
//! - PostgreSQL: the store opened as the server opens it + `bind_model` (schema migrations, the vector column and
//!   the HNSW index exactly as the server creates them), then the index is dropped, the rows
//!   go in by binary `COPY` into `vq_images` and `vq_paths`, and the index is created again
//!   with the same name and parameters (building HNSW once over all rows is far faster than
//!   maintaining it row by row), then `ANALYZE`.
//!
//! The fingerprint comes from loading the model with `ClipModel::load` (the server's own code),
//! unless `--fingerprint` gives it.

use std::error::Error;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{IsNull, ToSql, Type};
use visionquery::embed::{ClipModel, ModelOptions, Precision};
use visionquery::store::filter::Facets;
use visionquery::store::{conformance_record, open::open, ImageRecord, PgOptions, StoreLocation};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

struct Args {
    vectors: PathBuf,
    dim: usize,
    count: Option<usize>,
    model: Option<String>,
    precision: String,
    fingerprint: Option<String>,
    embedded: Option<PathBuf>,
    postgres: Option<String>,
    m: u32,
    ef_construction: u32,
    maintenance_work_mem: String,
    parallel_workers: u32,
    batch: usize,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        vectors: PathBuf::new(),
        dim: 512,
        count: None,
        model: None,
        precision: "fp32".into(),
        fingerprint: None,
        embedded: None,
        postgres: None,
        m: 16,
        ef_construction: 64,
        maintenance_work_mem: "4GB".into(),
        parallel_workers: 1,
        batch: 5_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--vectors" => a.vectors = val()?.into(),
            "--dim" => a.dim = val()?.parse()?,
            "--count" => a.count = Some(val()?.parse()?),
            "--model" => a.model = Some(val()?),
            "--precision" => a.precision = val()?,
            "--fingerprint" => a.fingerprint = Some(val()?),
            "--embedded" => a.embedded = Some(val()?.into()),
            "--postgres" => a.postgres = Some(val()?),
            "--m" => a.m = val()?.parse()?,
            "--ef-construction" => a.ef_construction = val()?.parse()?,
            "--maintenance-work-mem" => a.maintenance_work_mem = val()?,
            "--parallel-workers" => a.parallel_workers = val()?.parse()?,
            "--batch" => a.batch = val()?.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.vectors.as_os_str().is_empty() {
        return Err("--vectors FILE is required".into());
    }
    Ok(a)
}

/// Model fingerprint the server will bind: from `--fingerprint`, or by loading the model.
fn fingerprint(a: &Args) -> Res<String> {
    if let Some(f) = &a.fingerprint {
        return Ok(f.clone());
    }
    let source = a.model.clone().ok_or("--model DIR or --fingerprint is required")?;
    let precision = match a.precision.as_str() {
        "fp32" => Precision::Fp32,
        "quantized" => Precision::Quantized,
        other => return Err(format!("unknown precision {other}").into()),
    };
    let options = ModelOptions { source, precision, ort_library: None, threads: 1, max_batch: 1, queue_capacity: 4 };
    let model = ClipModel::load(&options)?;
    if model.dim() != a.dim {
        return Err(format!("the model gives {}-d embeddings, the vectors are {}-d", model.dim(), a.dim).into());
    }
    Ok(model.fingerprint().to_string())
}

/// Streams the raw little-endian f32 file in batches of (record, vector).
struct Source {
    reader: BufReader<File>,
    dim: usize,
    next: usize,
    count: usize,
}

impl Source {
    fn open(a: &Args) -> Res<Self> {
        let file = File::open(&a.vectors)?;
        let rows = file.metadata()?.len() as usize / (4 * a.dim);
        let count = a.count.unwrap_or(rows).min(rows);
        Ok(Self { reader: BufReader::with_capacity(1 << 22, file), dim: a.dim, next: 0, count })
    }

    fn batch(&mut self, n: usize) -> Res<Vec<(ImageRecord, Vec<f32>)>> {
        let take = n.min(self.count - self.next);
        let mut out = Vec::with_capacity(take);
        let mut buf = vec![0u8; 4 * self.dim];
        for _ in 0..take {
            self.reader.read_exact(&mut buf)?;
            let v: Vec<f32> = buf.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            out.push((record(self.next), v));
            self.next += 1;
        }
        Ok(out)
    }
}

fn record(i: usize) -> ImageRecord {
    let id = format!("{i:016x}");
    let mut r = conformance_record(&id);
    r.path = format!("/bench/images/{i:08}.jpg");
    r.content_hash = format!("{id}{:048x}", 0);
    r.ingested_at += Duration::from_micros(i as u64);
    r
}

fn load_embedded(a: &Args, dir: &Path, fp: &str) -> Res<serde_json::Value> {
    let t0 = Instant::now();
    // Opened as the server opens it.
    let store = open(&StoreLocation::embedded(dir))?;
    store.bind_model(fp, a.dim)?;
    let mut src = Source::open(a)?;
    let mut last = Instant::now();
    while src.next < src.count {
        let batch = src.batch(a.batch)?;
        store.upsert_many(&batch)?;
        if last.elapsed() > Duration::from_secs(10) {
            eprintln!("embedded: {}/{} ({:.0} s)", src.next, src.count, t0.elapsed().as_secs_f64());
            last = Instant::now();
        }
    }
    let n = store.count();
    drop(store);
    Ok(serde_json::json!({"backend": "embedded", "images": n, "load_s": t0.elapsed().as_secs_f64(), "index_s": null,
                          "fingerprint": fp}))
}

/// A `jsonb` value in COPY's binary format: version byte 1, then the JSON text.
#[derive(Debug)]
struct Jsonb(String);

impl ToSql for Jsonb {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    postgres::types::to_sql_checked!();
}

fn load_postgres(a: &Args, url: &str, fp: &str) -> Res<serde_json::Value> {
    let mut options = PgOptions::new(url);
    options.pool_size = 1;
    options.hnsw.m = a.m;
    options.hnsw.ef_construction = a.ef_construction;
    let t0 = Instant::now();
    // Opened as the server opens it (same schema migrations).
    let store = open(&StoreLocation::Postgres(options))?;
    store.bind_model(fp, a.dim)?;
    drop(store);
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    // The index definition as the store created it, to create it again after the load.
    let index_def: String = client.query_one("SELECT indexdef FROM pg_indexes WHERE indexname = 'vq_images_embedding'", &[])?.get(0);
    client.batch_execute("DROP INDEX vq_images_embedding")?;
    let halfvec = client.prepare("SELECT embedding FROM vq_images")?.columns()[0].type_().clone();

    let mut src = Source::open(a)?;
    let t_copy = Instant::now();
    let mut txn = client.transaction()?;
    {
        let sink = txn.copy_in(
            "COPY vq_images (id, path, record, ingested_ns, taken_ns, camera, format, lat, lon, photo_read, embedding) FROM STDIN BINARY",
        )?;
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::BOOL,
            halfvec.clone(),
        ];
        let mut w = BinaryCopyInWriter::new(sink, &types);
        let mut last = Instant::now();
        while src.next < src.count {
            for (r, v) in src.batch(a.batch)? {
                let f = Facets::of(&r);
                let json = Jsonb(serde_json::to_string(&r)?);
                let ingested = f.ingested;
                let taken = f.taken;
                let (lat, lon) = f.location.map_or((None, None), |l| (Some(l.lat), Some(l.lon)));
                let hv = pgvector::HalfVector::from_f32_slice(&v);
                w.write(&[&r.id, &r.path, &json, &ingested, &taken, &&*f.camera, &&*f.format, &lat, &lon, &f.photo_read, &hv])?;
            }
            if last.elapsed() > Duration::from_secs(10) {
                eprintln!("postgres: {}/{} rows copied ({:.0} s)", src.next, src.count, t_copy.elapsed().as_secs_f64());
                last = Instant::now();
            }
        }
        w.finish()?;
    }
    // Each image's own path (the store's `write_image` writes the same row).
    let paths = txn.execute("INSERT INTO vq_paths (path, id, alias) SELECT path, id, false FROM vq_images", &[])?;
    txn.commit()?;
    let copy_s = t_copy.elapsed().as_secs_f64();
    eprintln!("postgres: {} rows and {paths} paths in {copy_s:.1} s; building the HNSW index", src.count);

    let t_index = Instant::now();
    client.batch_execute(&format!(
        "SET maintenance_work_mem = '{}'; SET max_parallel_maintenance_workers = {}; {index_def}",
        a.maintenance_work_mem, a.parallel_workers
    ))?;
    let index_s = t_index.elapsed().as_secs_f64();
    let t_analyze = Instant::now();
    // One statement per call: VACUUM refuses to run in the implicit transaction of a batch.
    client.batch_execute("VACUUM ANALYZE vq_images")?;
    client.batch_execute("VACUUM ANALYZE vq_paths")?;
    let analyze_s = t_analyze.elapsed().as_secs_f64();
    Ok(serde_json::json!({"backend": "postgres", "images": src.count, "load_s": copy_s, "index_s": index_s,
                          "vacuum_analyze_s": analyze_s, "connect_bind_s": (t_copy - t0).as_secs_f64(),
                          "index_def": index_def, "fingerprint": fp,
                          "maintenance_work_mem": a.maintenance_work_mem, "parallel_workers": a.parallel_workers}))
}

fn main() -> Res<()> {
    let a = parse_args()?;
    let fp = fingerprint(&a)?;
    eprintln!("model fingerprint: {fp}");
    if let Some(dir) = &a.embedded {
        println!("{}", load_embedded(&a, dir, &fp)?);
    }
    if let Some(url) = &a.postgres {
        println!("{}", load_postgres(&a, url, &fp)?);
    }
    Ok(())
}
