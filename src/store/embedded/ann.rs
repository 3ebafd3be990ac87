//! The approximate index of the embedded store: an HNSW graph over int8 copies of the vectors
//! (usearch), keyed by the store's row keys. It only proposes candidates; the store re-scores
//! them with the exact f32 vectors. Chosen by measurement (`examples/ann_choice.rs`,
//! `examples/ann_centering.rs`, BENCHMARKS.md): int8 rows keep it under 0.9 KiB per image at
//! M=32, and re-scoring the top few recovers what int8 loses in order. The usearch build is
//! patched to keep pruned connections (without it, tight clusters of similar photos left
//! recall@10 near 0.95 however wide the search) and to put its arenas on huge pages
//! (vendor/usearch/VENDORED.md).
//!
//! Persisted as two files beside the database: the usearch file and a small JSON sidecar naming
//! the database generation it reflects and the BLAKE3 of the usearch file, so a partial or
//! corrupt file is rebuilt rather than trusted, and an older one is caught up from the store's
//! change log.

use std::path::Path;
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};

const INDEX_FILE: &str = "ann-i8.usearch";
const SIDECAR_FILE: &str = "ann-i8.json";
/// Sidecar layout version: a change makes old files stale. 2: vectors cast by [`to_int8`], graph
/// built keeping pruned connections.
const FORMAT: u32 = 2;
/// usearch keeps one search context per concurrent caller; more callers wait for one.
const SEARCH_THREADS: usize = 16;

/// How the graph is built and searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Links per node (HNSW `M`).
    pub connectivity: usize,
    /// Candidates kept while inserting (`efConstruction`).
    pub expansion_add: usize,
    /// Candidates kept while searching (`efSearch`); searches wanting more widen it.
    pub ef_search: usize,
}

impl AnnParams {
    /// Measured on clustered 512-d data (BENCHMARKS.md): M=16 tops out near recall@10 0.9 on
    /// tight clusters at 300k-1M images however wide the search; M=32 (with pruned connections
    /// kept) stays within the 1.1 KiB per image the store allows with int8 vectors. The breadth:
    /// seven builds of the same million vectors gave recall@10 0.969-0.994 at ef 128 (graphs built
    /// on two threads differ), so 160 (0.99 on the weakest of them, about 5 % slower) keeps
    /// every build above 0.97.
    pub const DEFAULT: Self = Self { connectivity: 32, expansion_add: 128, ef_search: 160 };
}

impl Default for AnnParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    #[error("no saved approximate index")]
    Missing,
    #[error("the saved approximate index was built differently ({0})")]
    Mismatch(String),
    #[error("the saved approximate index is damaged: {0}")]
    Corrupt(String),
    #[error("approximate index: {0}")]
    Index(String),
    #[error("approximate index file: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    generation: u64,
    dim: usize,
    params: AnnParams,
    count: usize,
    blake3: String,
}

pub struct Ann {
    index: usearch::Index,
    dim: usize,
    params: AnnParams,
    /// Free usearch search contexts (a caller without one would get an error, not a wait).
    free_contexts: Mutex<usize>,
    context_freed: Condvar,
}

fn index_err(e: impl std::fmt::Display) -> AnnError {
    AnnError::Index(e.to_string())
}

/// The usearch options the store builds and loads its index with (tools reuse them to open a
/// saved index exactly as the store does).
pub fn options(dim: usize, params: &AnnParams) -> usearch::IndexOptions {
    usearch::IndexOptions {
        dimensions: dim,
        metric: usearch::MetricKind::Cos,
        quantization: usearch::ScalarKind::I8,
        connectivity: params.connectivity,
        expansion_add: params.expansion_add,
        expansion_search: params.ef_search,
        multi: false,
    }
}

/// Threads usearch must have contexts for: concurrent searches, and the rebuild's rayon pool.
fn context_count() -> usize {
    SEARCH_THREADS.max(rayon::current_num_threads())
}

impl Ann {
    pub fn new(dim: usize, params: AnnParams, capacity: usize) -> Result<Self, AnnError> {
        let index = usearch::Index::new(&options(dim, &params)).map_err(index_err)?;
        index.reserve_capacity_and_threads(capacity.max(1024), context_count()).map_err(index_err)?;
        Ok(Self::wrap(index, dim, params))
    }

    fn wrap(index: usearch::Index, dim: usize, params: AnnParams) -> Self {
        Self { index, dim, params, free_contexts: Mutex::new(SEARCH_THREADS), context_freed: Condvar::new() }
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Bytes usearch holds (graph, int8 vectors, reserved room and search contexts).
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
    }

    pub fn contains(&self, key: u64) -> bool {
        self.index.contains(key)
    }

    /// Makes room for `more` vectors; the caller holds the store's write lock (no search runs).
    pub fn reserve(&self, more: usize) -> Result<(), AnnError> {
        let needed = self.index.size() + more;
        if needed > self.index.capacity() {
            let capacity = needed.max(self.index.capacity() * 3 / 2);
            self.index.reserve_capacity_and_threads(capacity, context_count()).map_err(index_err)?;
        }
        Ok(())
    }

    /// Adds or replaces the vector under `key`. Call [`Ann::reserve`] first.
    pub fn add(&self, key: u64, vector: &[f32]) -> Result<(), AnnError> {
        if self.index.contains(key) {
            self.index.remove(key).map_err(index_err)?;
        }
        self.index.add(key, &to_int8(vector)).map_err(index_err)
    }

    pub fn remove(&self, key: u64) -> Result<(), AnnError> {
        self.index.remove(key).map(|_| ()).map_err(index_err)
    }

    /// Up to `count` keys near `query`, best first by the int8 scores, among keys `keep` accepts.
    pub fn search(&self, query: &[f32], count: usize, keep: Option<&dyn Fn(u64) -> bool>) -> Result<Vec<u64>, AnnError> {
        let _context = self.context();
        let query = to_int8(query);
        let found = match keep {
            None => self.index.search(&query, count),
            Some(keep) => self.index.filtered_search(&query, count, keep),
        };
        Ok(found.map_err(index_err)?.keys)
    }

    fn context(&self) -> ContextGuard<'_> {
        let mut free = self.free_contexts.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.context_freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        ContextGuard(self)
    }

    /// Writes the index for database generation `generation`: the usearch file first, then the
    /// sidecar with its checksum, each through a temporary file renamed into place.
    pub fn save(&self, dir: &Path, generation: u64) -> Result<(), AnnError> {
        let index_tmp = dir.join(format!("{INDEX_FILE}.tmp"));
        let path = index_tmp.to_str().ok_or_else(|| AnnError::Index("index path is not UTF-8".into()))?;
        self.index.save(path).map_err(index_err)?;
        fs_err::File::open(&index_tmp)?.sync_all()?;
        let sidecar = Sidecar {
            format: FORMAT,
            generation,
            dim: self.dim,
            params: self.params,
            count: self.index.size(),
            blake3: hash_file(&index_tmp)?,
        };
        let json = serde_json::to_vec(&sidecar).map_err(|e| AnnError::Index(e.to_string()))?;
        let sidecar_tmp = dir.join(format!("{SIDECAR_FILE}.tmp"));
        fs_err::write(&sidecar_tmp, json)?;
        fs_err::File::open(&sidecar_tmp)?.sync_all()?;
        fs_err::rename(&index_tmp, dir.join(INDEX_FILE))?;
        fs_err::rename(&sidecar_tmp, dir.join(SIDECAR_FILE))?;
        Ok(())
    }

    /// Loads the index saved in `dir` if it was built with `dim` and `params` (the search breadth
    /// may differ: it is applied here), with the database generation it reflects.
    pub fn load(dir: &Path, dim: usize, params: AnnParams) -> Result<(Self, u64), AnnError> {
        let sidecar_path = dir.join(SIDECAR_FILE);
        let index_path = dir.join(INDEX_FILE);
        if !sidecar_path.exists() || !index_path.exists() {
            return Err(AnnError::Missing);
        }
        let sidecar: Sidecar =
            serde_json::from_slice(&fs_err::read(&sidecar_path)?).map_err(|e| AnnError::Corrupt(format!("sidecar: {e}")))?;
        if sidecar.format != FORMAT {
            return Err(AnnError::Mismatch(format!("format {} instead of {FORMAT}", sidecar.format)));
        }
        let built = AnnParams { ef_search: params.ef_search, ..sidecar.params };
        if sidecar.dim != dim || built != params {
            return Err(AnnError::Mismatch(format!("dim {} with {:?}", sidecar.dim, sidecar.params)));
        }
        if hash_file(&index_path)? != sidecar.blake3 {
            return Err(AnnError::Corrupt("checksum mismatch".into()));
        }
        let index = usearch::Index::new(&options(dim, &params)).map_err(index_err)?;
        let path = index_path.to_str().ok_or_else(|| AnnError::Index("index path is not UTF-8".into()))?;
        index.load(path).map_err(|e| AnnError::Corrupt(e.to_string()))?;
        if index.size() != sidecar.count || index.dimensions() != dim {
            return Err(AnnError::Corrupt(format!("{} vectors of {} dimensions", index.size(), index.dimensions())));
        }
        index.change_expansion_search(params.ef_search);
        index.reserve_capacity_and_threads(index.size().max(1024), context_count()).map_err(index_err)?;
        Ok((Self::wrap(index, dim, params), sidecar.generation))
    }

    /// Forgets the saved index (the images it indexed are gone).
    pub fn remove_saved(dir: &Path) {
        for file in [INDEX_FILE, SIDECAR_FILE] {
            let _ = std::fs::remove_file(dir.join(file));
        }
    }

    /// The database generation the saved index reflects, if there is a readable one.
    pub fn saved_generation(dir: &Path) -> Option<u64> {
        let sidecar: Sidecar = serde_json::from_slice(&std::fs::read(dir.join(SIDECAR_FILE)).ok()?).ok()?;
        Some(sidecar.generation)
    }

    #[cfg(test)]
    pub fn index_path(dir: &Path) -> std::path::PathBuf {
        dir.join(INDEX_FILE)
    }
}

/// The int8 copy of a vector: scaled so its largest component is ±127. usearch's own cast scales
/// to unit length first, which leaves a CLIP vector's components (about ±0.04 each) a handful of
/// levels; the cosine ignores a vector's scale, so using the whole range costs nothing.
pub fn to_int8(vector: &[f32]) -> Vec<i8> {
    let largest = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
    // Zero, infinite or NaN: nothing sensible to scale (the store only holds finite unit vectors).
    if !largest.is_normal() {
        return vec![0; vector.len()];
    }
    let scale = 127.0 / largest;
    // In range by construction; `as` saturates anyway.
    vector.iter().map(|x| (x * scale).round() as i8).collect()
}

struct ContextGuard<'a>(&'a Ann);

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        *self.0.free_contexts.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.context_freed.notify_one();
    }
}

fn hash_file(path: &Path) -> Result<String, AnnError> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs_err::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| (*x).into() * (*y).into()).sum();
        let norm = |v: &[T]| v.iter().map(|x| (*x).into().powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// CLIP-like: a large shared component and small per-image differences, unit length.
    fn clip_like(seed: u32) -> Vec<f32> {
        let v: Vec<f32> = (0..512u32)
            .map(|i| {
                let noise = ((i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 1000) as f32 / 1000.0 - 0.5;
                0.03 + 0.02 * noise
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn the_int8_copy_uses_the_whole_range_and_keeps_the_cosine() {
        let (a, b) = (clip_like(1), clip_like(2));
        let (qa, qb) = (to_int8(&a), to_int8(&b));
        assert_eq!(qa.iter().map(|x| x.unsigned_abs()).max(), Some(127));
        let exact = cosine(&a, &b);
        let quantized = cosine(&qa, &qb);
        // usearch's own cast (unit length × 127, truncated) leaves these components 3-7 levels and
        // misses this cosine by 1.1e-2; the whole range keeps it within 1e-4 (3e-5 here).
        assert!((exact - quantized).abs() < 1e-3, "f32 {exact} vs int8 {quantized}");
    }

    #[test]
    fn vectors_without_a_scale_become_zeros() {
        assert!(to_int8(&[0.0; 8]).iter().all(|x| *x == 0));
        assert!(to_int8(&[f32::NAN; 8]).iter().all(|x| *x == 0));
        assert!(to_int8(&[f32::INFINITY, 1.0]).iter().all(|x| *x == 0));
    }
}
