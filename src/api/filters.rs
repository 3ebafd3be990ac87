//! Turning the wire form of filters (JSON in `POST /search`, query parameters in `GET /images`)
//! into the store's typed [`Filter`], with errors that name the field at fault.

use axum::http::StatusCode;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};

use super::dto::{NearFilter, SearchFilters};
use super::error::ApiError;
use crate::embed::ScoreHead;
use crate::engine::Engine;
use crate::store::{Filter, Location, Near};

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter", format!("filters.{field}: {why}"))
}

/// Which end of a day a date-only bound means.
#[derive(Clone, Copy)]
enum Bound {
    StartOfDay,
    EndOfDay,
}

/// A date (`2019-01-01`, the whole day in UTC) or an RFC 3339 time.
fn parse_time(field: &str, text: &str, bound: Bound) -> Result<OffsetDateTime, ApiError> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date = Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map_err(|_| invalid(field, format!("`{text}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time")))?;
    let time = match bound {
        Bound::StartOfDay => Time::MIDNIGHT,
        Bound::EndOfDay => Time::from_hms_nano(23, 59, 59, 999_999_999).expect("a valid time of day: this is a bug"),
    };
    Ok(date.with_time(time).assume_utc())
}

fn near(near: NearFilter) -> Result<Near, ApiError> {
    if !(-90.0..=90.0).contains(&near.lat) {
        return Err(invalid("near.lat", format!("latitude must be between -90 and 90, got {}", near.lat)));
    }
    if !(-180.0..=180.0).contains(&near.lon) {
        return Err(invalid("near.lon", format!("longitude must be between -180 and 180, got {}", near.lon)));
    }
    if !near.radius_km.is_finite() || near.radius_km <= 0.0 {
        return Err(invalid("near.radius_km", format!("radius must be a positive number of kilometres, got {}", near.radius_km)));
    }
    Ok(Near { center: Location { lat: near.lat, lon: near.lon }, radius_km: near.radius_km })
}

fn strings(field: &str, values: Vec<String>) -> Result<Vec<String>, ApiError> {
    let values: Vec<String> = values.into_iter().map(|v| v.trim().to_lowercase()).collect();
    if values.iter().any(String::is_empty) {
        return Err(invalid(field, "empty string"));
    }
    Ok(values)
}

/// The store filter for the request's filters.
pub fn to_filter(engine: &Engine, filters: SearchFilters) -> Result<Filter, ApiError> {
    let taken_after = filters.taken_after.as_deref().map(|t| parse_time("taken_after", t, Bound::StartOfDay)).transpose()?;
    let taken_before = filters.taken_before.as_deref().map(|t| parse_time("taken_before", t, Bound::EndOfDay)).transpose()?;
    if let (Some(after), Some(before)) = (taken_after, taken_before) {
        if after > before {
            return Err(invalid("taken_before", "is before taken_after"));
        }
    }
    if let Some(score) = filters.min_score {
        if !(-1.0..=1.0).contains(&score) {
            return Err(invalid("min_score", format!("a cosine similarity is between -1 and 1, got {score}")));
        }
    }
    let folders = match filters.folder {
        Some(folder) if folder.trim().is_empty() => return Err(invalid("folder", "empty string")),
        Some(folder) => engine.folder_prefixes(&folder),
        None => Vec::new(),
    };
    Ok(Filter {
        taken_after,
        taken_before,
        cameras: strings("camera", filters.camera.map(|c| c.into_vec()).unwrap_or_default())?,
        folders,
        formats: strings("format", filters.format.map(|c| c.into_vec()).unwrap_or_default())?,
        near: filters.near.map(near).transpose()?,
        // Checked above at full precision: a bound just past 1 would round to 1 as an f32.
        min_score: filters.min_score.map(|score| score as f32),
    })
}

/// `min_probability`: the cosine at which the model's sigmoid head reaches `p`, as a score floor
/// (the head is increasing, so the two floors select the same images).
pub fn add_min_probability(filter: &mut Filter, p: f64, head: Option<&ScoreHead>, single_text: bool) -> Result<(), ApiError> {
    if !(p > 0.0 && p < 1.0) {
        return Err(invalid("min_probability", format!("a probability strictly between 0 and 1, got {p}")));
    }
    if !single_text {
        return Err(invalid("min_probability", "only for a single text `query` (no image, no positive or negative terms)"));
    }
    let Some(head) = head else {
        return Err(invalid(
            "min_probability",
            "this model has no calibrated score head (a SigLIP export with score_head.json); use min_score",
        ));
    };
    let floor = head.cosine_for(p) as f32;
    filter.min_score = Some(filter.min_score.map_or(floor, |s| s.max(floor)));
    Ok(())
}

/// `lat,lon,radius_km` from a query parameter.
pub fn parse_near_param(text: &str) -> Result<NearFilter, ApiError> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("near", "expected lat,lon,radius_km"))?;
    match parts.as_slice() {
        [lat, lon, radius_km] => Ok(NearFilter { lat: *lat, lon: *lon, radius_km: *radius_km }),
        _ => Err(invalid("near", "expected lat,lon,radius_km")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_bound_whole_days_and_times_are_exact() {
        let start = parse_time("taken_after", "2019-01-01", Bound::StartOfDay).unwrap();
        let end = parse_time("taken_before", "2019-12-31", Bound::EndOfDay).unwrap();
        assert_eq!(start.unix_timestamp(), 1_546_300_800);
        assert_eq!(end.unix_timestamp(), 1_577_836_799);
        let exact = parse_time("taken_before", "2019-12-31T23:59:59+01:00", Bound::EndOfDay).unwrap();
        assert_eq!(exact.unix_timestamp(), 1_577_833_199);
        let err = parse_time("taken_after", "31/12/2019", Bound::StartOfDay).unwrap_err();
        assert!(err.message.contains("filters.taken_after"), "{}", err.message);
    }

    #[test]
    fn impossible_places_are_refused_naming_the_field() {
        assert!(near(NearFilter { lat: 91.0, lon: 0.0, radius_km: 1.0 }).unwrap_err().message.contains("near.lat"));
        assert!(near(NearFilter { lat: 0.0, lon: 0.0, radius_km: -1.0 }).unwrap_err().message.contains("near.radius_km"));
        assert!(parse_near_param("1,2").is_err());
        assert_eq!(parse_near_param("48.85, 2.35, 5").unwrap().radius_km, 5.0);
    }
}
