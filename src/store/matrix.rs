//! The in-memory search side of the embedded store: all vectors in one contiguous row-major
//! matrix, scored by SIMD matrix-vector products over blocks of rows in parallel, then a
//! partial sort for top-k.
//!
//! (A GEMM with a one-column right-hand side was 20% slower than even a scalar loop: it copies
//! the whole matrix into packed panels per query. Scoring is memory-bound, so the win is
//! streaming each row once through vectorised dot products on every core.)

use std::collections::HashMap;

use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;

/// Rows scored per parallel task: large enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 8192;

/// Rows of vectors, each with an id and a payload `P` (what filters read, kept beside the
/// vector so a filtered search touches nothing else).
pub struct Matrix<P = ()> {
    dim: usize,
    ids: Vec<String>,
    data: Vec<f32>,
    payloads: Vec<P>,
    rows: HashMap<String, usize>,
}

impl<P: Default> Matrix<P> {
    /// Inserts or overwrites the row of `id` with a default payload.
    pub fn upsert(&mut self, id: &str, vector: &[f32]) -> bool {
        self.upsert_with(id, vector, P::default())
    }
}

impl<P> Matrix<P> {
    pub fn new(dim: usize) -> Self {
        Self { dim, ids: Vec::new(), data: Vec::new(), payloads: Vec::new(), rows: HashMap::new() }
    }

    /// Ids by row.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// All rows as one `len × dim` matrix.
    pub fn rows(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.ids.len(), self.dim), &self.data).expect("data holds whole rows: this is a bug")
    }

    /// Pairs of rows whose dot product is at least `threshold` (`a < b`), by blocked matrix
    /// products over all pairs on every core: exact, O(n²·dim).
    pub fn pairs_at_least(&self, threshold: f32) -> Vec<(usize, usize, f32)> {
        const BLOCK: usize = 128;
        let n = self.len();
        let rows = self.rows();
        (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .flat_map_iter(|block| {
                let start = block * BLOCK;
                let end = (start + BLOCK).min(n);
                let products = rows.slice(ndarray::s![start..end, ..]).dot(&rows.slice(ndarray::s![start.., ..]).t());
                let mut found = Vec::new();
                for (i, line) in products.outer_iter().enumerate() {
                    for (j, &score) in line.iter().enumerate().skip(i + 1) {
                        if score >= threshold {
                            found.push((start + i, start + j, score));
                        }
                    }
                }
                found
            })
            .collect()
    }

    /// Payloads by row.
    pub fn payloads(&self) -> &[P] {
        &self.payloads
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Inserts or overwrites the row of `id`. The caller checks the dimension.
    pub fn upsert_with(&mut self, id: &str, vector: &[f32], payload: P) -> bool {
        debug_assert_eq!(vector.len(), self.dim);
        if let Some(&row) = self.rows.get(id) {
            self.data[row * self.dim..(row + 1) * self.dim].copy_from_slice(vector);
            self.payloads[row] = payload;
            false
        } else {
            self.rows.insert(id.to_string(), self.ids.len());
            self.ids.push(id.to_string());
            self.data.extend_from_slice(vector);
            self.payloads.push(payload);
            true
        }
    }

    /// Replaces the payload of `id`; `false` when there is no such row.
    pub fn set_payload(&mut self, id: &str, payload: P) -> bool {
        match self.rows.get(id) {
            Some(&row) => {
                self.payloads[row] = payload;
                true
            }
            None => false,
        }
    }

    pub fn get(&self, id: &str) -> Option<&[f32]> {
        self.rows.get(id).map(|&row| &self.data[row * self.dim..(row + 1) * self.dim])
    }

    /// Removes `id` by moving the last row into its place (order is not meaningful here).
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(row) = self.rows.remove(id) else { return false };
        let last = self.ids.len() - 1;
        if row != last {
            let (head, tail) = self.data.split_at_mut(last * self.dim);
            head[row * self.dim..(row + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.ids.swap(row, last);
            self.payloads.swap(row, last);
            self.rows.insert(self.ids[row].clone(), row);
        }
        self.ids.pop();
        self.payloads.pop();
        self.data.truncate(last * self.dim);
        true
    }

    /// The dot product of every row with `query`, by row.
    pub fn scores(&self, query: &[f32]) -> Vec<f32> {
        let dim = self.dim;
        if self.data.is_empty() {
            return Vec::new();
        }
        let query = ArrayView1::from(query);
        self.data
            .par_chunks(dim * ROWS_PER_TASK)
            .flat_map_iter(|block| {
                let rows = ArrayView2::from_shape((block.len() / dim, dim), block).expect("blocks hold whole rows: this is a bug");
                rows.dot(&query).into_raw_vec_and_offset().0
            })
            .collect()
    }

    /// Ids and dot products of the `k` best rows, best first, ties broken by id.
    pub fn top_k(&self, query: &[f32], k: usize) -> Vec<(&str, f32)> {
        let n = self.len();
        if n == 0 || k == 0 {
            return Vec::new();
        }
        let scores = self.scores(query);
        let mut order: Vec<usize> = (0..n).collect();
        let better = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then_with(|| self.ids[*a].cmp(&self.ids[*b]));
        if k < n {
            order.select_nth_unstable_by(k - 1, better);
            order.truncate(k);
        }
        order.sort_unstable_by(better);
        order.into_iter().map(|row| (self.ids[row].as_str(), scores[row])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_keeps_the_other_rows_findable() {
        let mut m: Matrix = Matrix::new(2);
        m.upsert("a", &[1.0, 0.0]);
        m.upsert("b", &[0.0, 1.0]);
        m.upsert("c", &[0.6, 0.8]);
        assert!(m.remove("a"));
        assert!(!m.remove("a"));
        assert_eq!(m.get("c"), Some(&[0.6, 0.8][..]));
        assert_eq!(m.top_k(&[0.0, 1.0], 5), vec![("b", 1.0), ("c", 0.8)]);
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        let dim = 16;
        let mut m: Matrix = Matrix::new(dim);
        let mut seed = 7u64;
        let mut rand = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / u32::MAX as f32) - 0.25
        };
        let mut all = Vec::new();
        for i in 0..500 {
            let v: Vec<f32> = (0..dim).map(|_| rand()).collect();
            m.upsert(&format!("{i:04}"), &v);
            all.push((format!("{i:04}"), v));
        }
        let q: Vec<f32> = (0..dim).map(|_| rand()).collect();
        let mut expected: Vec<(String, f32)> = all.iter().map(|(id, v)| (id.clone(), v.iter().zip(&q).map(|(a, b)| a * b).sum())).collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let got = m.top_k(&q, 10);
        for ((gid, gs), (eid, es)) in got.iter().zip(&expected) {
            assert_eq!(gid, eid);
            assert!((gs - es).abs() < 1e-5);
        }
        assert_eq!(got.len(), 10);
    }
}
