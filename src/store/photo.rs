//! What a photo says about itself (read from its EXIF at ingest): when it was taken, with which
//! camera and lens, and where. Plain data, stored with each image record and filtered on by
//! every backend.

use serde::{Deserialize, Serialize};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Metadata of one photo; every field is absent when the file does not say it (or says
/// something impossible).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhotoMeta {
    #[serde(default)]
    pub taken_at: Option<TakenAt>,
    #[serde(default)]
    pub camera: Option<Camera>,
    #[serde(default)]
    pub lens: Option<String>,
    #[serde(default)]
    pub location: Option<Location>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Camera {
    pub make: Option<String>,
    pub model: Option<String>,
}

impl Camera {
    /// "make model", lowercased: what camera filters match against.
    pub fn search_text(&self) -> String {
        let parts: Vec<&str> = [self.make.as_deref(), self.model.as_deref()].into_iter().flatten().collect();
        parts.join(" ").to_lowercase()
    }
}

/// A place in signed decimal degrees (north and east positive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn distance_km(&self, other: &Location) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0088;
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// When a photo was taken, as the camera recorded it: the local date and time, and the offset
/// from UTC when the camera recorded one (EXIF `OffsetTimeOriginal`). Shown as RFC 3339 when the
/// offset is known, and as a local time without offset otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenAt {
    pub local: PrimitiveDateTime,
    pub offset: Option<UtcOffset>,
}

const LOCAL: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
const WITH_OFFSET: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]");

impl TakenAt {
    /// The moment, for filtering and sorting. A time without an offset is read as UTC: the
    /// camera's zone is unknown, and treating every such time alike keeps the order of one
    /// camera's photos right.
    pub fn instant(&self) -> OffsetDateTime {
        self.local.assume_offset(self.offset.unwrap_or(UtcOffset::UTC))
    }

    pub fn to_text(&self) -> String {
        let formatted = match self.offset {
            Some(offset) => self.local.assume_offset(offset).format(WITH_OFFSET),
            None => self.local.format(LOCAL),
        };
        formatted.unwrap_or_default()
    }

    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(t) = OffsetDateTime::parse(text, WITH_OFFSET) {
            return Some(Self { local: PrimitiveDateTime::new(t.date(), t.time()), offset: Some(t.offset()) });
        }
        PrimitiveDateTime::parse(text, LOCAL).ok().map(|local| Self { local, offset: None })
    }
}

impl Serialize for TakenAt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for TakenAt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TakenAt::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("not a capture time: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_times_round_trip_with_and_without_offset() {
        for text in ["2019-07-14T12:30:05+02:00", "2019-07-14T12:30:05", "2001-01-01T00:00:00-05:30"] {
            let t = TakenAt::parse(text).unwrap();
            assert_eq!(t.to_text(), text);
        }
        let paris = TakenAt::parse("2019-07-14T12:30:00+02:00").unwrap();
        assert_eq!(paris.instant().unix_timestamp(), TakenAt::parse("2019-07-14T10:30:00").unwrap().instant().unix_timestamp());
    }

    #[test]
    fn great_circle_distance_paris_london() {
        let paris = Location { lat: 48.8566, lon: 2.3522 };
        let london = Location { lat: 51.5074, lon: -0.1278 };
        assert!((paris.distance_km(&london) - 343.5).abs() < 2.0);
        assert_eq!(paris.distance_km(&paris), 0.0);
    }
}
