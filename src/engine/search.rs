//! Searching: one query vector built from texts and images (combined queries), then a filtered,
//! sorted, paged search in the store.
//!
//! The query vector is `normalize(Σ w·u over positives − Σ w·u over negatives)` with every `u` a
//! unit embedding (the main query is a positive of weight 1), so "beach" minus "people" finds
//! beaches without people, and scores stay cosine similarities to that one vector.

use std::path::Path;

use futures_util::future::try_join_all;

use super::{blocking, check_top_k, Engine, EngineError, MAX_QUERY_CHARS};
use crate::store::{Filter, Hit, SearchQuery, SortBy};

/// Terms accepted in one combined query (positives and negatives together).
pub const MAX_TERMS: usize = 16;
/// Deepest offset a search pages to.
pub const MAX_OFFSET: usize = 100_000;

/// One thing to search by.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Text(String),
    Image(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub term: Term,
    pub weight: f32,
}

/// A search as the API and CLI describe it.
#[derive(Debug, Clone, Default)]
pub struct SearchSpec {
    /// Pulled towards (the main query first).
    pub positive: Vec<Weighted>,
    /// Pushed away from.
    pub negative: Vec<Weighted>,
    pub filter: Filter,
    pub sort: SortBy,
    pub offset: usize,
    pub top_k: i64,
    /// Rank exactly instead of through the approximate index (to check its recall).
    pub exact: bool,
}

#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub hits: Vec<Hit>,
    /// More results follow this page.
    pub more: bool,
    /// A text was longer than the model reads and was cut.
    pub truncated: bool,
}

impl Engine {
    /// Runs a (possibly combined, filtered, sorted) search and returns one page of it.
    #[tracing::instrument(name = "engine.search", level = "info", skip(self, spec), fields(terms = spec.positive.len() + spec.negative.len()))]
    pub async fn search(&self, spec: SearchSpec) -> Result<SearchOutcome, EngineError> {
        let limit = check_top_k(spec.top_k)?;
        if spec.offset > MAX_OFFSET {
            return Err(EngineError::InvalidSearch(format!("offset must be at most {MAX_OFFSET}, got {}", spec.offset)));
        }
        let terms = spec.positive.len() + spec.negative.len();
        if spec.positive.is_empty() {
            return Err(EngineError::InvalidSearch("give a `query` or an `image_id` to search by".into()));
        }
        if terms > MAX_TERMS {
            return Err(EngineError::InvalidSearch(format!("at most {MAX_TERMS} query terms, got {terms}")));
        }
        for term in spec.positive.iter().chain(&spec.negative) {
            if !term.weight.is_finite() || term.weight <= 0.0 || term.weight > 100.0 {
                return Err(EngineError::InvalidSearch(format!("weights must be in (0, 100], got {}", term.weight)));
            }
        }
        // One generation for the whole request: the query's model and the vectors it is
        // compared with always belong together.
        let generation = self.current();
        let model = generation.model()?;
        let embed = |w: &Weighted| {
            let model = model.clone();
            let store = generation.store.clone();
            let w = w.clone();
            async move {
                let (vector, truncated) = match &w.term {
                    Term::Text(text) => {
                        check_text(text)?;
                        let e = model.embed_text(text).await?;
                        (e.vector, e.truncated)
                    }
                    Term::Image(id) => (store.vector(id)?.ok_or_else(|| EngineError::ImageNotFound(id.clone()))?, false),
                };
                Ok::<_, EngineError>((vector, w.weight, truncated))
            }
        };
        let positive = try_join_all(spec.positive.iter().map(embed)).await?;
        let negative = try_join_all(spec.negative.iter().map(embed)).await?;
        let truncated = positive.iter().chain(&negative).any(|(_, _, t)| *t);
        let vector =
            combine(&positive, &negative).ok_or_else(|| EngineError::InvalidSearch("the query terms cancel each other out".into()))?;
        let store = generation.store.clone();
        let SearchSpec { filter, sort, offset, exact, .. } = spec;
        let page =
            blocking(move || Ok(store.search_page(&SearchQuery { vector: &vector, filter: &filter, sort, offset, limit, exact })?)).await?;
        Ok(SearchOutcome { hits: page.items, more: page.more, truncated })
    }

    /// A folder filter as the store matches it: absolute, or relative to each image root.
    pub fn folder_prefixes(&self, folder: &str) -> Vec<String> {
        let trimmed = folder.trim();
        let path = Path::new(trimmed);
        let candidates: Vec<std::path::PathBuf> =
            if path.is_absolute() { vec![path.to_path_buf()] } else { self.roots.dirs().map(|root| root.join(path)).collect() };
        let mut prefixes = Vec::new();
        for candidate in candidates {
            // Records hold canonical paths; a folder that exists is matched by its canonical form.
            let canonical = std::fs::canonicalize(&candidate).unwrap_or(candidate);
            let text = canonical.display().to_string();
            if !prefixes.contains(&text) {
                prefixes.push(text);
            }
        }
        prefixes
    }
}

fn check_text(text: &str) -> Result<(), EngineError> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err(EngineError::EmptyQuery);
    }
    if chars > MAX_QUERY_CHARS {
        return Err(EngineError::QueryTooLong { chars, limit: MAX_QUERY_CHARS });
    }
    Ok(())
}

/// `normalize(Σ w·u⁺ − Σ w·u⁻)`; `None` when the terms cancel out.
fn combine(positive: &[(Vec<f32>, f32, bool)], negative: &[(Vec<f32>, f32, bool)]) -> Option<Vec<f32>> {
    let dim = positive.first()?.0.len();
    let mut sum = vec![0.0f32; dim];
    for (vectors, sign) in [(positive, 1.0f32), (negative, -1.0)] {
        for (v, weight, _) in vectors {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            for (s, x) in sum.iter_mut().zip(v) {
                *s += sign * weight * x / norm;
            }
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm > 1e-6).then(|| sum.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_vector_is_the_normalised_weighted_difference() {
        let beach = (vec![1.0, 0.0, 0.0], 1.0, false);
        let people = (vec![0.0, 2.0, 0.0], 0.5, false); // not unit: normalised first
        let v = combine(std::slice::from_ref(&beach), &[people]).unwrap();
        let expected = [1.0 / 1.25f32.sqrt(), -0.5 / 1.25f32.sqrt(), 0.0];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
        assert_eq!(combine(std::slice::from_ref(&beach), std::slice::from_ref(&beach)), None, "a term minus itself cancels out");
    }
}
