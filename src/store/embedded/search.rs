//! One page of a search in the embedded store. Relevance order with no filter, or a filter most
//! images pass, takes candidates from the approximate index and re-scores them with the f32
//! vectors; everything else (selective filters, date and ingest orders, `exact` queries) scores
//! the passing images with the f32 vectors, so those results stay exact. Vectors are read from
//! the flat vector file (the database when there is none): memory holds only the int8 copies in
//! the index.

use redb::{ReadOnlyTable, ReadableTable};

use super::super::filter::{self, Candidate, SortBy};
use super::super::{SearchQuery, StoreError};
use super::ann::Ann;
use super::rows::Rows;
use super::vector_file::{VectorFile, VectorFileError};
use super::{ann_err, db_err, decode_vector_into};

/// Candidates re-scored beyond the page: the walk is the same however many it returns, and with
/// the index's int8 cast its order is nearly exact, so re-scoring the top 20 for a page of 10 finds
/// what the top 50 did (recall@10 0.9517 both, 200k images, ef 128; BENCHMARKS.md) with 30 fewer
/// vectors read. Deeper pages re-score twice their depth.
const RESCORE_EXTRA: usize = 10;
/// A filter passing at least this share of the images is applied inside the graph walk; below
/// it, the passing images are scored exactly (the walk would visit mostly rejected nodes).
const ANN_MIN_SHARE: f64 = 0.1;
/// Pages ending deeper than this are served exactly.
const ANN_MAX_DEPTH: usize = 2000;

/// Rows of the vector file read in one `pread` when the keys wanted fall this close together
/// (1 MiB at 512 dimensions): an exact scan reads the file in order, a few candidates one each.
const RUN_ROWS: u64 = 512;

/// Where a search reads f32 vectors: the flat file when the store has a sound one, else the
/// database's table (the record either way).
pub struct Vectors<'a> {
    pub file: Option<&'a VectorFile>,
    pub table: &'a ReadOnlyTable<&'static str, &'static [u8]>,
}

/// The page as (id, cosine) and whether more follow. `ann` is `None` when the search must be exact.
pub fn page(rows: &Rows, ann: Option<&Ann>, vectors: &Vectors, query: &SearchQuery) -> Result<(Vec<(String, f32)>, bool), StoreError> {
    let end = query.offset.saturating_add(query.limit);
    let everything = query.filter.is_empty();
    if let Some(ann) = ann.filter(|_| query.sort == SortBy::Relevance && end > 0 && end <= ANN_MAX_DEPTH) {
        let passing = if everything { rows.len() } else { rows.iter().filter(|(_, s)| query.filter.matches(&s.facets)).count() };
        if passing as f64 >= ANN_MIN_SHARE * rows.len() as f64 {
            return approximate(rows, ann, vectors, query, end);
        }
    }
    exact(rows, vectors, query, end)
}

fn approximate(
    rows: &Rows,
    ann: &Ann,
    vectors: &Vectors,
    query: &SearchQuery,
    end: usize,
) -> Result<(Vec<(String, f32)>, bool), StoreError> {
    let want = end + RESCORE_EXTRA.max(end);
    let keep = |key: u64| rows.slot(key).is_some_and(|s| query.filter.matches(&s.facets));
    let filter: Option<&dyn Fn(u64) -> bool> = if query.filter.is_empty() { None } else { Some(&keep) };
    let keys = ann.search(query.vector, want, filter).map_err(ann_err)?;
    let scored = exact_scores(rows, vectors, &keys, query.vector)?;
    let floor = query.filter.min_score.unwrap_or(f32::NEG_INFINITY);
    let candidates =
        scored.into_iter().filter(|&(_, score)| score >= floor).filter_map(|(key, score)| candidate(rows, key, score)).collect();
    Ok(finish(filter::page(candidates, query.sort, query.offset, query.limit)))
}

fn exact(rows: &Rows, vectors: &Vectors, query: &SearchQuery, end: usize) -> Result<(Vec<(String, f32)>, bool), StoreError> {
    let passing: Vec<Candidate> =
        rows.iter().filter(|(_, slot)| query.filter.matches(&slot.facets)).filter_map(|(key, _)| candidate(rows, key, 0.0)).collect();
    let total = passing.len();
    let scored_all = |cands: Vec<Candidate>| -> Result<Vec<Candidate>, StoreError> {
        let keys: Vec<u64> = cands.iter().map(|c| c.row as u64).collect();
        let floor = query.filter.min_score.unwrap_or(f32::NEG_INFINITY);
        Ok(exact_scores(rows, vectors, &keys, query.vector)?
            .into_iter()
            .filter(|&(_, score)| score >= floor)
            .filter_map(|(key, score)| candidate(rows, key, score))
            .collect())
    };
    match query.sort {
        // A score floor needs every score; so does relevance.
        _ if query.filter.min_score.is_some() => Ok(finish(filter::page(scored_all(passing)?, query.sort, query.offset, query.limit))),
        SortBy::Relevance => Ok(finish(filter::page(scored_all(passing)?, query.sort, query.offset, query.limit))),
        SortBy::IngestedAsc | SortBy::IngestedDesc => {
            // The order ignores scores: page first, then score the page.
            let (page, more) = filter::page(passing, query.sort, query.offset, query.limit);
            let keys: Vec<u64> = page.iter().map(|c| c.row as u64).collect();
            let scores: std::collections::HashMap<u64, f32> = exact_scores(rows, vectors, &keys, query.vector)?.into_iter().collect();
            Ok((page.into_iter().filter_map(|c| Some((c.id.to_string(), *scores.get(&(c.row as u64))?))).collect(), more))
        }
        SortBy::TakenAsc | SortBy::TakenDesc => {
            // Scores only break ties of capture time: score the images up to the capture time
            // the page ends on (all undated ones when the page reaches them).
            let newest = query.sort == SortBy::TakenDesc;
            let rank = |c: &Candidate| match c.taken {
                Some(t) => (false, if newest { -i128::from(t) } else { i128::from(t) }),
                None => (true, 0),
            };
            let mut head = passing;
            if end > 0 && end < head.len() {
                head.select_nth_unstable_by_key(end - 1, rank);
                let boundary = rank(&head[end - 1]);
                head.retain(|c| rank(c) <= boundary);
            }
            let (page, _) = filter::page(scored_all(head)?, query.sort, query.offset, query.limit);
            Ok((finish((page, false)).0, total > end))
        }
    }
}

fn candidate(rows: &Rows, key: u64, score: f32) -> Option<Candidate<'_>> {
    let slot = rows.slot(key)?;
    Some(Candidate { row: key as usize, id: slot.id, score, taken: slot.facets.taken, ingested: slot.facets.ingested })
}

fn finish((page, more): (Vec<Candidate>, bool)) -> (Vec<(String, f32)>, bool) {
    (page.into_iter().map(|c| (c.id.to_string(), c.score)).collect(), more)
}

/// Exact cosines of `keys` with `query`, keys without a vector left out.
fn exact_scores(rows: &Rows, vectors: &Vectors, keys: &[u64], query: &[f32]) -> Result<Vec<(u64, f32)>, StoreError> {
    if let Some(file) = vectors.file {
        match scores_from_file(rows, file, keys, query) {
            Ok(scores) => return Ok(scores),
            // The database holds the same vectors: a failing cache costs speed, not answers.
            Err(e) => tracing::warn!(error = %e, "reading the vector file failed; scoring from the database"),
        }
    }
    scores_from_table(rows, vectors.table, keys, query)
}

/// Scores from the vector file: keys in order, neighbours read together.
fn scores_from_file(rows: &Rows, file: &VectorFile, keys: &[u64], query: &[f32]) -> Result<Vec<(u64, f32)>, VectorFileError> {
    let row = query.len() * 4;
    let mut sorted: Vec<u64> = keys.iter().copied().filter(|&key| rows.slot(key).is_some()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let (mut out, mut buffer, mut floats) = (Vec::with_capacity(sorted.len()), Vec::new(), Vec::with_capacity(query.len()));
    let mut rest = sorted.as_slice();
    while let Some(&first) = rest.first() {
        let run = rest.partition_point(|&key| key < first + RUN_ROWS);
        buffer.resize((rest[run - 1] - first + 1) as usize * row, 0);
        file.read_run(first, &mut buffer)?;
        for &key in &rest[..run] {
            let bytes = &buffer[(key - first) as usize * row..][..row];
            decode_vector_into(bytes, &mut floats);
            out.push((key, dot(&floats, query)));
        }
        rest = &rest[run..];
    }
    Ok(out)
}

/// Scores from the database: one lookup each for a few keys, one pass over the table for many.
fn scores_from_table(
    rows: &Rows,
    table: &ReadOnlyTable<&'static str, &'static [u8]>,
    keys: &[u64],
    query: &[f32],
) -> Result<Vec<(u64, f32)>, StoreError> {
    let mut buffer = Vec::with_capacity(query.len());
    let mut score = |bytes: &[u8]| -> Option<f32> {
        if bytes.len() != query.len() * 4 {
            return None;
        }
        decode_vector_into(bytes, &mut buffer);
        Some(dot(&buffer, query))
    };
    let mut out = Vec::with_capacity(keys.len());
    if keys.len() > 1000 && keys.len() * 8 >= rows.len() {
        let mut wanted = vec![false; keys.iter().map(|&k| k as usize + 1).max().unwrap_or(0)];
        for &key in keys {
            wanted[key as usize] = true;
        }
        for entry in table.iter().map_err(db_err)? {
            let (id, bytes) = entry.map_err(db_err)?;
            let Some(key) = rows.key(id.value()).filter(|&k| wanted.get(k as usize).copied().unwrap_or(false)) else { continue };
            let s = score(bytes.value()).ok_or_else(|| StoreError::Corrupt(format!("vector of {} has the wrong length", id.value())))?;
            out.push((key, s));
        }
    } else {
        for &key in keys {
            let Some(slot) = rows.slot(key) else { continue };
            if let Some(bytes) = table.get(slot.id).map_err(db_err)? {
                let s = score(bytes.value()).ok_or_else(|| StoreError::Corrupt(format!("vector of {} has the wrong length", slot.id)))?;
                out.push((key, s));
            }
        }
    }
    Ok(out)
}

/// Dot product in eight lanes, so it vectorises without reassociation flags.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
