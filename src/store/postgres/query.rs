//! A [`Filter`] and a [`SortBy`] as SQL: the `WHERE` conditions with their parameters, and the
//! `ORDER BY` that matches `filter::page` (the embedded backend's order), so both backends page
//! the same way.

use pgvector::HalfVector;
use postgres::types::ToSql;

use crate::store::filter::{nanos, Filter, SortBy};

/// SQL text with numbered parameters, built up piece by piece.
#[derive(Default)]
pub struct Sql {
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    /// Adds a parameter and returns its placeholder (`$n`).
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// The conditions of `filter` (metadata only; the score floor is added by the caller, which
/// knows the query vector's placeholder). Empty when the filter places none.
pub fn conditions(filter: &Filter, sql: &mut Sql) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(after) = filter.taken_after {
        let p = sql.bind(nanos(after.unix_timestamp_nanos()));
        out.push(format!("taken_ns >= {p}"));
    }
    if let Some(before) = filter.taken_before {
        let p = sql.bind(nanos(before.unix_timestamp_nanos()));
        out.push(format!("taken_ns <= {p}"));
    }
    if filter.taken_after.is_some() || filter.taken_before.is_some() {
        out.push("taken_ns IS NOT NULL".into());
    }
    if !filter.cameras.is_empty() {
        let p = sql.bind(filter.cameras.clone());
        out.push(format!("EXISTS (SELECT 1 FROM unnest({p}::text[]) AS c(part) WHERE strpos(camera, c.part) > 0)"));
    }
    if !filter.folders.is_empty() {
        // Whole components: `/a/b` holds `/a/b/c.jpg`, not `/a/bc.jpg`.
        let prefixes: Vec<String> = filter.folders.iter().map(|f| format!("{}/", f.trim_end_matches('/'))).collect();
        let p = sql.bind(prefixes);
        out.push(format!("EXISTS (SELECT 1 FROM unnest({p}::text[]) AS f(prefix) WHERE left(path, length(f.prefix)) = f.prefix)"));
    }
    if !filter.formats.is_empty() {
        let p = sql.bind(filter.formats.clone());
        out.push(format!("format = ANY({p}::text[])"));
    }
    if let Some(near) = filter.near {
        let (lat, lon, radius) = (sql.bind(near.center.lat), sql.bind(near.center.lon), sql.bind(near.radius_km));
        // Haversine, as `Location::distance_km` computes it.
        out.push(format!(
            "lat IS NOT NULL AND 2 * 6371.0088 * asin(least(1.0, sqrt(\
               power(sin(radians(lat - {lat}::float8) / 2), 2) \
               + cos(radians({lat}::float8)) * cos(radians(lat)) * power(sin(radians(lon - {lon}::float8) / 2), 2)))) <= {radius}::float8"
        ));
    }
    out
}

/// The query vector as a parameter.
pub fn bind_vector(sql: &mut Sql, vector: &[f32]) -> String {
    let p = sql.bind(HalfVector::from_f32_slice(vector));
    format!("{p}::halfvec")
}

/// `ORDER BY` for a listing or a non-relevance search (`score` is a column alias, or `0`).
pub fn order_by(sort: SortBy) -> &'static str {
    match sort {
        SortBy::Relevance => "score DESC, id",
        SortBy::TakenAsc => "taken_ns ASC NULLS LAST, score DESC, id",
        SortBy::TakenDesc => "taken_ns DESC NULLS LAST, score DESC, id",
        SortBy::IngestedAsc => "ingested_ns ASC, id ASC",
        SortBy::IngestedDesc => "ingested_ns DESC, id DESC",
    }
}
