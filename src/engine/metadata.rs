//! Reads what a photo says about itself (capture time, camera, lens, GPS position) from the
//! EXIF in its bytes, at ingest. Owns the rules for turning EXIF values into a `PhotoMeta`:
//! which tags count, and which values are refused as impossible. Knows nothing of pixels
//! (it never decodes the image), of the store, or of HTTP.
//!
//! Never fails: a file without EXIF, or with EXIF that is damaged or lies, gives a `PhotoMeta`
//! whose unreadable fields are absent. A photo must never be refused for its metadata.

use std::io::Cursor;

use exif::{Exif, Field, In, Reader, Tag, Value};
use time::macros::format_description;
use time::{PrimitiveDateTime, UtcOffset};

use crate::store::{Camera, Location, PhotoMeta, TakenAt};

/// Reads the metadata of a JPEG, TIFF, PNG (`eXIf`), WebP or HEIF file from its bytes.
///
/// Never fails: what cannot be read is absent.
pub fn read_photo_meta(bytes: &[u8]) -> PhotoMeta {
    let Some(exif) = read_exif(bytes) else {
        return PhotoMeta::default();
    };
    PhotoMeta { taken_at: taken_at(&exif), camera: camera(&exif), lens: text(&exif, Tag::LensModel), location: location(&exif) }
}

/// The parsed EXIF, keeping whatever was read before a damaged part (a truncated segment, an
/// IFD that points back at itself): a good IFD0 is still worth its camera and date.
fn read_exif(bytes: &[u8]) -> Option<Exif> {
    let mut reader = Reader::new();
    reader.continue_on_error(true);
    // The crate bounds every count and offset by the data it has and refuses IFDs it has seen
    // (no loops), and the mutation test below found no panic, so no catch_unwind here.
    match reader.read_from_container(&mut Cursor::new(jpeg_headers(bytes))) {
        Ok(exif) => Some(exif),
        Err(e) => e.distill_partial_result(|_ignored_errors| {}).ok(),
    }
}

/// A JPEG up to its first scan: where the Exif segment must be. The crate, finding no Exif
/// segment, would otherwise go on through the compressed data to the end of the file, which
/// costs time in proportion to the photo (a copy of every byte) for files that have no EXIF.
/// Anything that is not a well-formed JPEG header is passed whole, for the crate to judge.
fn jpeg_headers(bytes: &[u8]) -> &[u8] {
    const SOI: [u8; 2] = [0xFF, 0xD8];
    const SOS: u8 = 0xDA;
    const EOI: u8 = 0xD9;
    if !bytes.starts_with(&SOI) {
        return bytes;
    }
    let mut at = SOI.len();
    while at + 1 < bytes.len() {
        if bytes[at] != 0xFF {
            return bytes;
        }
        let code = bytes[at + 1];
        match code {
            // Fill bytes before a marker.
            0xFF => at += 1,
            SOS | EOI => return &bytes[..at],
            // Markers without a length: TEM and the restart markers.
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let Some(len) = bytes.get(at + 2..at + 4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                    return bytes;
                };
                at += 2 + len;
            }
        }
    }
    bytes
}

/// `DateTimeOriginal`, with `OffsetTimeOriginal` when that parses. Deliberately nothing else:
/// `DateTime` is when the file was last edited and `DateTimeDigitized` when it was scanned,
/// and a wrong capture time presented as right is worse than none.
fn taken_at(exif: &Exif) -> Option<TakenAt> {
    let local = parse_exif_date_time(&text(exif, Tag::DateTimeOriginal)?)?;
    let offset = text(exif, Tag::OffsetTimeOriginal).and_then(|t| parse_exif_offset(&t));
    Some(TakenAt { local, offset })
}

/// EXIF's "YYYY:MM:DD HH:MM:SS". Impossible dates ("0000:00:00 00:00:00" from cameras whose
/// clock was never set, month 13, hour 24) are refused, not clamped.
fn parse_exif_date_time(text: &str) -> Option<PrimitiveDateTime> {
    let format = format_description!("[year]:[month]:[day] [hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text, format).ok()
}

/// EXIF's "+HH:MM" / "-HH:MM". Real zones lie within -12:00 and +14:00; anything beyond ±18:00
/// (the widest offset ISO 8601 tools accept) or with minutes of 60 and more is noise.
fn parse_exif_offset(text: &str) -> Option<UtcOffset> {
    let format = format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    let offset = UtcOffset::parse(text, format).ok()?;
    (offset.whole_minutes().abs() <= 18 * 60).then_some(offset)
}

/// Make and model exactly as recorded (many models repeat the make: both are kept); absent
/// when the file names neither.
fn camera(exif: &Exif) -> Option<Camera> {
    let make = text(exif, Tag::Make);
    let model = text(exif, Tag::Model);
    (make.is_some() || model.is_some()).then_some(Camera { make, model })
}

/// A text tag of the primary image, trimmed of the spaces and NULs that fixed-width writers pad
/// with; absent when empty or not text. EXIF says ASCII, but cameras write Latin-1 and UTF-8 too:
/// a replacement character is better than losing the field.
fn text(exif: &Exif, tag: Tag) -> Option<String> {
    let Value::Ascii(strings) = &field(exif, tag)?.value else {
        return None;
    };
    // The crate splits the value at NULs; the first non-blank piece is the value.
    strings
        .iter()
        .map(|s| String::from_utf8_lossy(s).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string())
        .find(|s| !s.is_empty())
}

fn field(exif: &Exif, tag: Tag) -> Option<&Field> {
    exif.get_field(tag, In::PRIMARY)
}

/// Latitude and longitude as signed decimal degrees; absent unless both are readable.
fn location(exif: &Exif) -> Option<Location> {
    let lat = signed_degrees(exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, 'N', 'S', 90.0)?;
    let lon = signed_degrees(exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, 'E', 'W', 180.0)?;
    Some(Location { lat, lon })
}

/// One coordinate from its degrees/minutes/seconds rationals and its hemisphere letter. A
/// missing or unknown hemisphere gives nothing rather than a guess: a photo placed in the wrong
/// hemisphere is worse than one without a place.
fn signed_degrees(exif: &Exif, value_tag: Tag, ref_tag: Tag, positive: char, negative: char, limit: f64) -> Option<f64> {
    let sign = match text(exif, ref_tag)?.chars().next()?.to_ascii_uppercase() {
        c if c == positive => 1.0,
        c if c == negative => -1.0,
        _ => return None,
    };
    let Value::Rational(parts) = &field(exif, value_tag)?.value else {
        return None;
    };
    let degrees = dms_to_degrees(parts.iter().map(|r| (r.num, r.denom)))?;
    Some(sign * degrees).filter(|d| d.abs() <= limit)
}

/// Degrees, minutes and seconds (1 to 3 rationals; some writers put it all in the degrees)
/// as decimal degrees. A zero denominator means the position was not known.
fn dms_to_degrees(parts: impl ExactSizeIterator<Item = (u32, u32)>) -> Option<f64> {
    if !(1..=3).contains(&parts.len()) {
        return None;
    }
    let mut degrees = 0.0;
    for ((num, denom), scale) in parts.zip([1.0, 60.0, 3600.0]) {
        if denom == 0 {
            return None;
        }
        degrees += f64::from(num) / f64::from(denom) / scale;
    }
    degrees.is_finite().then_some(degrees)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/exif");

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{FIXTURES}/{name}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    fn camera(make: Option<&str>, model: Option<&str>) -> Option<Camera> {
        Some(Camera { make: make.map(str::to_string), model: model.map(str::to_string) })
    }

    fn taken(local: PrimitiveDateTime, offset: Option<UtcOffset>) -> Option<TakenAt> {
        Some(TakenAt { local, offset })
    }

    fn near(a: Option<Location>, b: Option<Location>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a.lat - b.lat).abs() < 1e-4 && (a.lon - b.lon).abs() < 1e-4,
            (None, None) => true,
            _ => false,
        }
    }

    /// What each fixture says, as written by scripts/make_exif_fixtures.py and read back by
    /// exiftool there; typed here by hand, not computed by the code under test.
    fn expected() -> Vec<(&'static str, PhotoMeta)> {
        let plus_two = UtcOffset::from_hms(2, 0, 0).ok();
        let paris = PhotoMeta {
            taken_at: taken(datetime!(2019-07-14 12:30:05), plus_two),
            camera: camera(Some("Canon"), Some("Canon EOS 5D Mark IV")),
            lens: Some("EF24-70mm f/2.8L II USM".into()),
            location: Some(Location { lat: 48.8566, lon: 2.3522 }),
        };
        vec![
            ("full.jpg", paris.clone()),
            ("full.png", paris.clone()),
            ("full.webp", paris.clone()),
            ("full.heic", paris.clone()),
            ("full.tif", paris.clone()),
            // The IFD0 next-IFD offset points at IFD0 itself: the loop is cut, the fields kept.
            ("ifd_loop.jpg", paris),
            (
                "no_offset.jpg",
                PhotoMeta {
                    taken_at: taken(datetime!(2021-12-31 23:59:58), None),
                    camera: camera(Some("FUJIFILM"), Some("X-T3")),
                    ..PhotoMeta::default()
                },
            ),
            ("south_west.jpg", PhotoMeta { location: Some(Location { lat: -22.9083, lon: -43.1964 }), ..PhotoMeta::default() }),
            ("no_exif.jpg", PhotoMeta::default()),
            // DateTime and DateTimeDigitized are valid in this file, and must not stand in.
            ("zero_date.jpg", PhotoMeta { camera: camera(Some("Kodak"), Some("EasyShare C713")), ..PhotoMeta::default() }),
            ("bad_offset.jpg", PhotoMeta { taken_at: taken(datetime!(2018-03-04 05:06:07), None), ..PhotoMeta::default() }),
            // Latitude 95 N: no location.
            ("gps_out_of_range.jpg", PhotoMeta::default()),
            // DateTime is valid here but DateTimeOriginal absent: no date.
            ("gps_zero_denominator.jpg", PhotoMeta { camera: camera(Some("Apple"), Some("iPhone 12")), ..PhotoMeta::default() }),
            (
                "padded_camera.jpg",
                PhotoMeta {
                    camera: camera(Some("NIKON CORPORATION"), Some("NIKON D750")),
                    lens: Some("24.0-120.0 mm f/4.0".into()),
                    ..PhotoMeta::default()
                },
            ),
            // IFD0's values lie past the end of the cut segment: nothing is readable.
            ("truncated_segment.jpg", PhotoMeta::default()),
        ]
    }

    #[test]
    fn every_fixture_reads_as_expected() {
        for (name, want) in expected() {
            let got = read_photo_meta(&fixture(name));
            assert_eq!(got.taken_at, want.taken_at, "{name}: taken_at");
            assert_eq!(got.camera, want.camera, "{name}: camera");
            assert_eq!(got.lens, want.lens, "{name}: lens");
            assert!(near(got.location, want.location), "{name}: location {:?}, expected {:?}", got.location, want.location);
        }
    }

    #[test]
    fn every_fixture_is_tested() {
        let listed: Vec<&str> = expected().into_iter().map(|(name, _)| name).collect();
        for entry in std::fs::read_dir(FIXTURES).expect("fixture folder") {
            let name = entry.expect("fixture entry").file_name().to_string_lossy().into_owned();
            if name != "README.md" {
                assert!(listed.contains(&name.as_str()), "{name} has no expected values");
            }
        }
    }

    #[test]
    fn jpeg_headers_stop_at_the_first_scan() {
        // SOI, APP0 (length 4: two bytes of data), fill byte, SOS, scan data.
        let jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xff\xda\x00\x02\x12\xff\x00\xff\xd9";
        assert_eq!(jpeg_headers(jpeg), &jpeg[..8 + 1]);
        let photo = fixture("full.jpg");
        let headers = jpeg_headers(&photo);
        assert!(headers.len() < photo.len() && headers.len() > 400, "{} of {} bytes", headers.len(), photo.len());
        // Not JPEG, or a header that breaks off: passed whole.
        for bytes in [&b"\x89PNG"[..], b"\xff\xd8\xff\xe1\x00", b"\xff\xd8\x00\x00"] {
            assert_eq!(jpeg_headers(bytes), bytes);
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        for text in [
            "0000:00:00 00:00:00",
            "2019:13:01 10:00:00",
            "2019:02:30 10:00:00",
            "2019:07:14 24:00:00",
            "",
            "    :  :     :  :  ",
            "                   ",
            "2019-07-14 12:30:05",
            "2019:07:14",
        ] {
            assert_eq!(parse_exif_date_time(text), None, "{text:?}");
        }
        assert_eq!(parse_exif_date_time("2019:07:14 12:30:05"), Some(datetime!(2019-07-14 12:30:05)));
    }

    #[test]
    fn offsets_apply_only_when_they_parse() {
        assert_eq!(parse_exif_offset("+02:00"), UtcOffset::from_hms(2, 0, 0).ok());
        assert_eq!(parse_exif_offset("-05:30"), UtcOffset::from_hms(-5, -30, 0).ok());
        for text in ["+25:99", "+01:60", "02:00", "+2:00", "", "      ", "   :  ", "+19:00", "-18:30", "Z"] {
            assert_eq!(parse_exif_offset(text), None, "{text:?}");
        }
    }

    #[test]
    fn degrees_minutes_seconds() {
        let paris = dms_to_degrees([(48, 1), (51, 1), (2376, 100)].into_iter()).expect("valid");
        assert!((paris - 48.8566).abs() < 1e-4);
        assert_eq!(dms_to_degrees([(4885, 100)].into_iter()), Some(48.85));
        assert_eq!(dms_to_degrees([(48, 1), (51, 0), (0, 1)].into_iter()), None);
        assert_eq!(dms_to_degrees([(0, 0)].into_iter()), None);
        assert_eq!(dms_to_degrees(std::iter::empty::<(u32, u32)>()), None);
        assert_eq!(dms_to_degrees([(1, 1); 4].into_iter()), None);
    }

    #[test]
    fn bytes_that_are_not_an_image_give_nothing() {
        for bytes in [
            &b""[..],
            b"\xff\xd8",
            b"\xff\xd8\xff\xe1\xff\xff",
            b"II*\0\xff\xff\xff\xff",
            b"MM\0*",
            b"\x89PNG\r\n\x1a\n",
            b"RIFF\0\0\0\0WEBP",
            b"not an image at all",
        ] {
            assert_eq!(read_photo_meta(bytes), PhotoMeta::default(), "{bytes:?}");
        }
    }

    /// Cuts every fixture at every length through its metadata and flips bytes in it at random
    /// (a fixed seed, so a failure repeats): reading must neither panic nor hang.
    #[test]
    fn damaged_files_never_panic() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            // xorshift64: reproducible without a dependency.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (name, _) in expected() {
            let bytes = fixture(name);
            // Every length and every byte: the EXIF of some containers sits after the pixels.
            let window = bytes.len();
            for len in 0..window {
                read_photo_meta(&bytes[..len]);
            }
            for _ in 0..3000 {
                let mut damaged = bytes.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % window as u64) as usize;
                    damaged[at] = next() as u8;
                }
                read_photo_meta(&damaged);
            }
        }
    }
}
