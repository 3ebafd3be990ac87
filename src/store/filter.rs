//! Filters and orders on image metadata: one typed value that every backend executes (a
//! predicate over in-memory rows here, a `WHERE` clause in a SQL backend), so the engine and the
//! API never see how. Filters are exact: a filtered search ranks every image that passes, never
//! a post-filtered top few.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{ImageRecord, Location};

/// Which images a search or listing may return. Every condition must hold; an empty list or
/// `None` places no condition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Taken at or after (inclusive). Images without a capture time never match a date bound.
    pub taken_after: Option<OffsetDateTime>,
    /// Taken at or before (inclusive).
    pub taken_before: Option<OffsetDateTime>,
    /// Any of these, each a lowercase substring of "make model".
    pub cameras: Vec<String>,
    /// Any of these absolute folder paths, matched on whole path components.
    pub folders: Vec<String>,
    /// Any of these formats (`jpeg`, `png`, ...).
    pub formats: Vec<String>,
    /// Within a great-circle distance.
    pub near: Option<Near>,
    /// Cosine floor (searches only).
    pub min_score: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub center: Location,
    pub radius_km: f64,
}

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Best score first (searches), newest ingest first (listings).
    #[default]
    Relevance,
    /// Oldest capture first; images without a capture time last.
    TakenAsc,
    /// Newest capture first; images without a capture time last.
    TakenDesc,
    IngestedAsc,
    IngestedDesc,
}

/// What filters and sorting read of an image, kept beside each vector so a filtered search
/// never reads records it will not return; of the path only its folder is kept. Owned texts as
/// [`Facets::of`] makes them, or `Facets<&str>` borrowed from a store's own compact rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Facets<Text = Arc<str>> {
    /// Unix nanoseconds (i64 reaches 2262; earlier or later times saturate).
    pub taken: Option<i64>,
    pub ingested: i64,
    pub camera: Text,
    /// The folder holding the image: its path up to the last `/`.
    pub folder: Text,
    pub format: Text,
    pub location: Option<Location>,
    /// Whether the photo metadata was read (false for records of older versions).
    pub photo_read: bool,
}

impl Facets {
    pub fn of(record: &ImageRecord) -> Self {
        let folder = record.path.rsplit_once('/').map_or("", |(folder, _)| folder);
        Self {
            taken: record.photo.taken_at.map(|t| nanos(t.instant().unix_timestamp_nanos())),
            ingested: nanos(record.ingested_at.unix_timestamp_nanos()),
            camera: record.photo.camera.as_ref().map(|c| c.search_text()).unwrap_or_default().into(),
            folder: folder.into(),
            format: record.format.as_str().into(),
            location: record.photo.location,
            photo_read: record.photo_read,
        }
    }
}

/// Unix nanoseconds as stored (saturating at the years 1677 and 2262).
pub fn nanos(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

impl Filter {
    /// True when the filter places no condition on metadata (a score floor may remain).
    pub fn is_empty(&self) -> bool {
        Filter { min_score: None, ..self.clone() } == Filter::default()
    }

    pub fn matches<Text: AsRef<str>>(&self, f: &Facets<Text>) -> bool {
        let taken_ok = match (self.taken_after, self.taken_before) {
            (None, None) => true,
            (after, before) => f.taken.map(i128::from).is_some_and(|t| {
                after.is_none_or(|a| t >= a.unix_timestamp_nanos()) && before.is_none_or(|b| t <= b.unix_timestamp_nanos())
            }),
        };
        taken_ok
            && (self.cameras.is_empty() || self.cameras.iter().any(|c| f.camera.as_ref().contains(c.as_str())))
            && (self.folders.is_empty() || self.folders.iter().any(|folder| folder_within(f.folder.as_ref(), folder)))
            && (self.formats.is_empty() || self.formats.iter().any(|x| x == f.format.as_ref()))
            && self.near.is_none_or(|near| f.location.is_some_and(|l| l.distance_km(&near.center) <= near.radius_km))
    }

    pub fn matches_record(&self, record: &ImageRecord) -> bool {
        self.matches(&Facets::of(record))
    }
}

#[cfg(test)]
/// `path` lies in `folder` (whole components: `/a/b` holds `/a/b/c.jpg`, not `/a/bc.jpg`).
fn in_folder(path: &str, folder: &str) -> bool {
    let folder = folder.trim_end_matches('/');
    path.strip_prefix(folder).is_some_and(|rest| rest.starts_with('/'))
}

/// An image directly in `image_folder` lies in `folder` (whole components), the same answer as
/// [`in_folder`] on its path: a file name holds no `/`, so only the folder part can match.
fn folder_within(image_folder: &str, folder: &str) -> bool {
    let folder = folder.trim_end_matches('/');
    image_folder.strip_prefix(folder).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// An image that passed a filter, with what it sorts by.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub row: usize,
    pub id: &'a str,
    pub score: f32,
    pub taken: Option<i64>,
    pub ingested: i64,
}

/// The page `offset..offset + limit` of `candidates` in `sort` order, and whether more follow.
/// Ties fall back to score, then id, so the same query pages through the same order.
pub fn page<'a>(mut candidates: Vec<Candidate<'a>>, sort: SortBy, offset: usize, limit: usize) -> (Vec<Candidate<'a>>, bool) {
    use std::cmp::Ordering;
    let by_score = |a: &Candidate, b: &Candidate| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(b.id));
    // Undated images go last in both date orders.
    let by_taken = |a: &Candidate, b: &Candidate, newest: bool| match (a.taken, b.taken) {
        (Some(x), Some(y)) if newest => y.cmp(&x),
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    let compare = |a: &Candidate, b: &Candidate| -> Ordering {
        match sort {
            SortBy::Relevance => by_score(a, b),
            SortBy::TakenAsc => by_taken(a, b, false).then_with(|| by_score(a, b)),
            SortBy::TakenDesc => by_taken(a, b, true).then_with(|| by_score(a, b)),
            SortBy::IngestedAsc => a.ingested.cmp(&b.ingested).then_with(|| a.id.cmp(b.id)),
            SortBy::IngestedDesc => b.ingested.cmp(&a.ingested).then_with(|| b.id.cmp(a.id)),
        }
    };
    let end = offset.saturating_add(limit);
    let more = candidates.len() > end;
    if end == 0 || offset >= candidates.len() {
        return (Vec::new(), more);
    }
    if end < candidates.len() {
        candidates.select_nth_unstable_by(end - 1, compare);
        candidates.truncate(end);
    }
    candidates.sort_unstable_by(compare);
    (candidates.split_off(offset), more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance_record, Camera, TakenAt};

    #[test]
    fn folders_match_whole_components() {
        assert!(in_folder("/photos/holiday/2019/a.jpg", "/photos/holiday"));
        assert!(in_folder("/photos/holiday/a.jpg", "/photos/holiday/"));
        assert!(!in_folder("/photos/holidays/a.jpg", "/photos/holiday"));
        assert!(!in_folder("/photos/holiday", "/photos/holiday"));
        for (path, folder) in [
            ("/photos/holiday/2019/a.jpg", "/photos/holiday"),
            ("/photos/holiday/a.jpg", "/photos/holiday/"),
            ("/photos/holidays/a.jpg", "/photos/holiday"),
            ("/photos/holiday", "/photos/holiday"),
            ("/a.jpg", "/"),
            ("/photos/a.jpg", "/photos/a.jpg"),
        ] {
            let mut r = conformance_record("a");
            r.path = path.into();
            assert_eq!(folder_within(&Facets::of(&r).folder, folder), in_folder(path, folder), "{path} in {folder}");
        }
    }

    #[test]
    fn a_date_bound_never_matches_an_undated_image() {
        let mut r = conformance_record("a");
        let filter = Filter { taken_after: Some(OffsetDateTime::UNIX_EPOCH), ..Filter::default() };
        assert!(!filter.matches_record(&r));
        r.photo.taken_at = TakenAt::parse("2019-07-14T12:00:00");
        assert!(filter.matches_record(&r));
        r.photo.camera = Some(Camera { make: Some("Canon".into()), model: Some("EOS 5D".into()) });
        assert!(Filter { cameras: vec!["iphone".into(), "canon eos".into()], ..Filter::default() }.matches_record(&r));
        assert!(!Filter { cameras: vec!["nikon".into()], ..Filter::default() }.matches_record(&r));
    }
}
