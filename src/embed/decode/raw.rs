//! Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...), embedded through their largest
//! embedded JPEG preview: what photographers' tools show, and 10-20x cheaper than demosaicing
//! the sensor data. The reference is LibRaw's `extract_thumb` (rawpy), which also takes the
//! largest preview, shown the way the RAW's EXIF orientation says.
//!
//! Only the container is read here, never the sensor data: which maker's RAW it is, whether its
//! sensor data lies whole within the file (a cut file is refused, not shown from a leftover
//! thumbnail), and the orientation. TIFF-based RAWs (DNG, CR2, NEF, ARW, ORF, RW2, ...) through
//! the bounded TIFF reader of [`super::tiff`], RAF through its fixed header, CR3 through its
//! ISO-BMFF boxes. The preview's JPEG bytes are then found by a walk of the whole file: every
//! complete baseline or progressive 8-bit JPEG stream (SOI, marker segments, entropy-coded data,
//! EOI) is a candidate, and the one with the most pixels wins. Lossless JPEG (SOF3, the sensor
//! data of CR2 and many DNGs) is never a candidate. The winner is decoded by the same
//! libjpeg-turbo path as any JPEG, so its pixels match Pillow's.
//!
//! (Until December 2026 the containers were read by `rawler`, dnglab's RAW library. Fuzzing
//! found that a 1.3 KB file made it allocate what a TIFF entry's count claims, gigabytes, and
//! abort the process; it also panics on odd files and is LGPL. What it was used for, the
//! identification and the orientation, is the small bounded reader here.)

use image::metadata::Orientation;

use super::tiff::{tag, Tiff};
use super::RawKind;
use crate::embed::error::ImageError;

/// A RAW file's preview: where its JPEG stream is, and how to turn it.
#[derive(Debug, Clone)]
pub(crate) struct RawPreview {
    pub kind: RawKind,
    /// Byte range of the JPEG stream (SOI to EOI) inside the file.
    pub jpeg: std::ops::Range<usize>,
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
}

/// What a file's container says.
#[derive(Debug, PartialEq)]
enum Identified {
    /// Not a RAW (a text file, a plain TIFF).
    NotRaw,
    Raw(RawKind, Orientation),
    /// A RAW container whose structure or sensor data is cut off or broken.
    Damaged(RawKind, String),
}

/// Photometric interpretations only sensor data has: colour filter array, linear raw.
const CFA: u64 = 32803;
const LINEAR_RAW: u64 = 34892;

/// Makers whose cameras write TIFF-based RAWs: a TIFF of theirs with a broken structure is
/// taken for a cut RAW (a camera's plain TIFF with a whole structure still goes to the TIFF
/// decoder).
const CAMERA_MAKERS: &[&str] = &[
    "canon",
    "nikon",
    "sony",
    "fujifilm",
    "olympus",
    "om digital",
    "panasonic",
    "leica",
    "pentax",
    "ricoh",
    "samsung",
    "hasselblad",
    "phase one",
    "kodak",
    "minolta",
    "konica",
    "sigma",
    "leaf",
    "mamiya",
    "epson",
    "dji",
];

fn identify(bytes: &[u8]) -> Identified {
    if bytes.starts_with(b"FUJIFILMCCD-RAW") {
        return identify_raf(bytes);
    }
    if bytes.get(4..8) == Some(b"ftyp") {
        return identify_cr3(bytes);
    }
    let magic_kind = match bytes.get(..4) {
        Some(b"IIRO") | Some(b"IIRS") | Some(b"MMOR") => Some(RawKind::Orf),
        Some(b"IIU\0") => Some(RawKind::Rw2),
        _ => None,
    };
    let Some(tiff) = Tiff::new(bytes, 0) else {
        return match magic_kind {
            Some(kind) => Identified::Damaged(kind, "no TIFF header".into()),
            None => Identified::NotRaw,
        };
    };
    identify_tiff(&tiff, bytes, magic_kind)
}

/// A TIFF-based RAW is told from a plain TIFF by its own magic (ORF, RW2), CR2's header mark,
/// DNG's version tag, or an IFD holding sensor data (CFA or linear raw); its kind by the
/// maker.
fn identify_tiff(tiff: &Tiff, bytes: &[u8], magic_kind: Option<RawKind>) -> Identified {
    let (ifds, broken) = tiff.walk();
    let Some(ifd0) = ifds.first() else {
        let reason = broken.first().map(|b| b.0.clone()).unwrap_or_default();
        return match magic_kind {
            Some(kind) => Identified::Damaged(kind, reason),
            None => Identified::NotRaw,
        };
    };
    let make = tiff.find(ifd0, tag::MAKE).and_then(|e| tiff.text(&e)).map(|m| String::from_utf8_lossy(m).trim().to_lowercase());
    let make = make.unwrap_or_default();
    let has_sensor_data = ifds
        .iter()
        .any(|ifd| tiff.find(ifd, tag::PHOTOMETRIC).and_then(|e| tiff.first_number(&e)).is_some_and(|p| p == CFA || p == LINEAR_RAW));
    let kind = if let Some(kind) = magic_kind {
        kind
    } else if bytes.get(8..10) == Some(b"CR") {
        RawKind::Cr2
    } else if tiff.find(ifd0, tag::DNG_VERSION).is_some() {
        RawKind::Dng
    } else if make.starts_with("nikon") {
        RawKind::Nef
    } else if make.starts_with("sony") {
        RawKind::Arw
    } else {
        RawKind::Other
    };
    let is_raw = magic_kind.is_some() || matches!(kind, RawKind::Cr2 | RawKind::Dng) || has_sensor_data;
    // Image data running past the end means a cut file. An IFD that cannot be read only counts
    // when no sensor data was found: cameras leave the odd bogus pointer in files that are fine.
    let damage =
        ifds.iter().find_map(|ifd| tiff.data_past_end(ifd)).or_else(|| broken.first().filter(|_| !has_sensor_data).map(|b| b.0.clone()));
    let camera = CAMERA_MAKERS.iter().any(|m| make.starts_with(m));
    match (is_raw, damage) {
        (true, None) => Identified::Raw(kind, orientation_of(tiff, ifd0)),
        (true, Some(reason)) => Identified::Damaged(kind, reason),
        // A camera maker's TIFF whose structure is cut: most likely a RAW cut before its
        // sensor data's IFD.
        (false, Some(reason)) if camera => Identified::Damaged(kind, reason),
        (false, _) => Identified::NotRaw,
    }
}

fn orientation_of(tiff: &Tiff, ifd: &super::tiff::Ifd) -> Orientation {
    tiff.find(ifd, tag::ORIENTATION)
        .and_then(|e| tiff.first_number(&e))
        .and_then(|o| u8::try_from(o).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// RAF: a fixed big-endian header names the embedded JPEG (offset 84, length 88) and the
/// sensor data (offset 100, length 104); the orientation is the JPEG's own EXIF's.
fn identify_raf(bytes: &[u8]) -> Identified {
    let be32 = |at: usize| bytes.get(at..at + 4).map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    let (Some(jpeg_at), Some(jpeg_len), Some(cfa_at), Some(cfa_len)) = (be32(84), be32(88), be32(100), be32(104)) else {
        return Identified::Damaged(RawKind::Raf, "the RAF header is cut off".into());
    };
    let len = bytes.len() as u64;
    for (what, at, size) in [("JPEG", jpeg_at, jpeg_len), ("sensor data", cfa_at, cfa_len)] {
        if at.saturating_add(size) > len {
            return Identified::Damaged(RawKind::Raf, format!("its {what} ends at byte {}, past the file's end ({len})", at + size));
        }
    }
    let jpeg = &bytes[jpeg_at as usize..(jpeg_at + jpeg_len) as usize];
    Identified::Raw(RawKind::Raf, jpeg_exif_orientation(jpeg).unwrap_or(Orientation::NoTransforms))
}

/// The Orientation in a JPEG's EXIF (APP1 `Exif\0\0` + TIFF), from the marker segments before
/// the image data.
fn jpeg_exif_orientation(jpeg: &[u8]) -> Option<Orientation> {
    let mut pos = 2;
    while jpeg.get(pos) == Some(&0xFF) {
        let marker = *jpeg.get(pos + 1)?;
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(pos + 2)?, *jpeg.get(pos + 3)?]));
        let segment = jpeg.get(pos + 4..pos + 2 + len)?;
        if marker == 0xE1 && segment.starts_with(b"Exif\0\0") {
            let tiff = Tiff::new(segment, 6)?;
            return Some(orientation_of(&tiff, &tiff.ifd(tiff.first_ifd).ok()?));
        }
        pos += 2 + len;
    }
    None
}

/// Canon's UUID box inside `moov` that holds CMT1 (a TIFF with IFD0) and the other metadata.
const CANON_CR3_UUID: [u8; 16] = [0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0, 0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48];

/// CR3 (ISO-BMFF with the `crx ` brand): every top-level box must lie whole within the file
/// (the sensor data is `mdat`); the orientation is CMT1's IFD0's.
fn identify_cr3(bytes: &[u8]) -> Identified {
    let boxes = match bmff_boxes(bytes, 0..bytes.len()) {
        Ok(boxes) => boxes,
        Err(reason) => return Identified::Damaged(RawKind::Cr3, reason),
    };
    if !boxes.iter().any(|b| &b.kind == b"mdat") {
        return Identified::Damaged(RawKind::Cr3, "no sensor data (mdat box)".into());
    }
    let cmt1 = boxes
        .iter()
        .filter(|b| &b.kind == b"moov")
        .filter_map(|moov| bmff_boxes(bytes, moov.body.clone()).ok())
        .flatten()
        .filter(|b| &b.kind == b"uuid" && bytes.get(b.body.start..b.body.start + 16) == Some(&CANON_CR3_UUID[..]))
        .filter_map(|canon| bmff_boxes(bytes, canon.body.start + 16..canon.body.end).ok())
        .flatten()
        .find(|b| &b.kind == b"CMT1");
    let orientation = cmt1
        .and_then(|b| Tiff::new(&bytes[..b.body.end], b.body.start))
        .and_then(|tiff| Some(orientation_of(&tiff, &tiff.ifd(tiff.first_ifd).ok()?)))
        .unwrap_or(Orientation::NoTransforms);
    Identified::Raw(RawKind::Cr3, orientation)
}

struct BmffBox {
    kind: [u8; 4],
    body: std::ops::Range<usize>,
}

/// The boxes that fill `range`, each whole within it (a box past the end is an error: the file
/// is cut off). At most 256, which no CR3 level comes near.
fn bmff_boxes(bytes: &[u8], range: std::ops::Range<usize>) -> Result<Vec<BmffBox>, String> {
    let mut boxes = Vec::new();
    let mut at = range.start;
    while at < range.end && boxes.len() < 256 {
        let header =
            bytes.get(at..at + 8).filter(|_| at + 8 <= range.end).ok_or_else(|| format!("a box header at byte {at} is cut off"))?;
        let size32 = u64::from(u32::from_be_bytes([header[0], header[1], header[2], header[3]]));
        let kind = [header[4], header[5], header[6], header[7]];
        let (size, header_len) = match size32 {
            0 => ((range.end - at) as u64, 8),
            1 => {
                let large = bytes.get(at + 8..at + 16).ok_or_else(|| format!("a box header at byte {at} is cut off"))?;
                (u64::from_be_bytes(large.try_into().map_err(|_| "box size".to_string())?), 16)
            }
            size => (size, 8),
        };
        let end = (at as u64).saturating_add(size);
        if size < header_len || end > range.end as u64 {
            return Err(format!(
                "the {} box at byte {at} ends at byte {end}, past its container's end ({})",
                String::from_utf8_lossy(&kind),
                range.end
            ));
        }
        boxes.push(BmffBox { kind, body: at + header_len as usize..end as usize });
        at = end as usize;
    }
    Ok(boxes)
}

/// Finds the largest embedded JPEG preview of a RAW file; `Ok(None)` when the file is not a RAW
/// at all. A RAW whose container is cut off or broken is [`ImageError::Corrupt`] (the caller
/// may still try it as a plain TIFF).
pub(crate) fn preview(bytes: &[u8]) -> Result<Option<RawPreview>, ImageError> {
    let (kind, orientation) = match identify(bytes) {
        Identified::NotRaw => return Ok(None),
        Identified::Damaged(kind, reason) => {
            let name = super::SourceFormat::Raw(kind).extension().to_uppercase();
            return Err(ImageError::Corrupt(format!("RAW ({name}) cut off or broken: {reason}")));
        }
        Identified::Raw(kind, orientation) => (kind, orientation),
    };
    let best = largest_jpeg(bytes).ok_or(ImageError::NoPreview)?;
    Ok(Some(RawPreview { kind, jpeg: best.range, width: best.width, height: best.height, orientation }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JpegStream {
    pub range: std::ops::Range<usize>,
    pub width: u32,
    pub height: u32,
}

/// The complete 8-bit baseline/progressive JPEG stream with the most pixels, if any.
pub(crate) fn largest_jpeg(bytes: &[u8]) -> Option<JpegStream> {
    let mut best: Option<JpegStream> = None;
    let mut at = 0;
    while let Some(offset) = find_soi(&bytes[at..]) {
        let start = at + offset;
        match parse_jpeg(bytes, start) {
            Some(stream) => {
                at = stream.range.end;
                let pixels = |s: &JpegStream| u64::from(s.width) * u64::from(s.height);
                if best.as_ref().is_none_or(|b| pixels(&stream) > pixels(b)) {
                    best = Some(stream);
                }
            }
            None => at = start + 2,
        }
    }
    best
}

/// Offset of the next `FF D8 FF` (start of image followed by a marker).
fn find_soi(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(p) = bytes.get(at..)?.iter().position(|&b| b == 0xFF) {
        let i = at + p;
        if bytes.get(i + 1) == Some(&0xD8) && bytes.get(i + 2) == Some(&0xFF) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// Walks one JPEG stream from its SOI: marker segments, entropy-coded data after each SOS, up
/// to EOI. `None` unless it is complete and its frame is 8-bit baseline/extended/progressive
/// Huffman with 1 or 3 components.
fn parse_jpeg(bytes: &[u8], start: usize) -> Option<JpegStream> {
    let be16 = |i: usize| -> Option<usize> { Some(usize::from(*bytes.get(i)?) << 8 | usize::from(*bytes.get(i + 1)?)) };
    let mut frame: Option<(u32, u32)> = None;
    let mut pos = start + 2;
    loop {
        if *bytes.get(pos)? != 0xFF {
            return None;
        }
        // Fill bytes (FF FF ...) may precede a marker.
        while *bytes.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        let marker = *bytes.get(pos + 1)?;
        pos += 2;
        match marker {
            0xD9 => {
                let (width, height) = frame?;
                return Some(JpegStream { range: start..pos, width, height });
            }
            0xD8 | 0x00 => return None,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = be16(pos)?;
        if len < 2 {
            return None;
        }
        let segment = bytes.get(pos + 2..pos + len)?;
        match marker {
            0xC0..=0xC2 => {
                let [precision, h0, h1, w0, w1, components, ..] = *segment else { return None };
                let (height, width) = (u32::from(h0) << 8 | u32::from(h1), u32::from(w0) << 8 | u32::from(w1));
                if precision != 8 || !matches!(components, 1 | 3) || width == 0 || height == 0 || frame.is_some() {
                    return None;
                }
                frame = Some((width, height));
            }
            // Lossless, hierarchical and arithmetic-coded frames: not a preview we decode.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            _ => {}
        }
        pos += len;
        if marker == 0xDA {
            frame?;
            // Entropy-coded data runs to the next marker that is neither a stuffed 00 nor a
            // restart marker.
            loop {
                let p = bytes.get(pos..)?.iter().position(|&b| b == 0xFF)?;
                pos += p;
                match *bytes.get(pos + 1)? {
                    0x00 | 0xD0..=0xD7 | 0xFF => pos += 1,
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&img).unwrap();
        out
    }

    use crate::embed::decode::tiff::tests::little_tiff;

    /// A JPEG with an EXIF Orientation of `orientation` in APP1.
    fn jpeg_with_orientation(orientation: u16) -> Vec<u8> {
        let jpeg = tiny_jpeg(24, 16);
        let exif = little_tiff(&[(tag::ORIENTATION, 3, 1, u32::from(orientation))], &[]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&exif);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn raf(jpeg: &[u8], sensor: &[u8]) -> Vec<u8> {
        let mut b = b"FUJIFILMCCD-RAW 0201FF383501".to_vec();
        b.resize(108, 0);
        let jpeg_at = 108u32;
        let sensor_at = jpeg_at + jpeg.len() as u32;
        b[84..88].copy_from_slice(&jpeg_at.to_be_bytes());
        b[88..92].copy_from_slice(&(jpeg.len() as u32).to_be_bytes());
        b[100..104].copy_from_slice(&sensor_at.to_be_bytes());
        b[104..108].copy_from_slice(&(sensor.len() as u32).to_be_bytes());
        b.extend_from_slice(jpeg);
        b.extend_from_slice(sensor);
        b
    }

    #[test]
    fn a_raf_is_read_from_its_header_and_turned_by_its_jpegs_exif() {
        let file = raf(&jpeg_with_orientation(6), &[7; 300]);
        assert_eq!(identify(&file), Identified::Raw(RawKind::Raf, Orientation::Rotate90));
        let found = preview(&file).unwrap().unwrap();
        assert_eq!((found.width, found.height, found.jpeg.start), (24, 16, 108));
        // Cut inside the sensor data: refused, although the JPEG is whole.
        assert!(matches!(identify(&file[..file.len() - 10]), Identified::Damaged(RawKind::Raf, _)));
        assert!(matches!(preview(&file[..file.len() - 10]), Err(ImageError::Corrupt(m)) if m.contains("RAF")));
    }

    fn bmff(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn cr3(orientation: u16, jpeg: &[u8]) -> Vec<u8> {
        let cmt1 = little_tiff(&[(tag::ORIENTATION, 3, 1, u32::from(orientation))], &[]);
        let mut canon = CANON_CR3_UUID.to_vec();
        canon.extend(bmff(b"CMT1", &cmt1));
        let mut file = bmff(b"ftyp", b"crx \0\0\0\x01crx isom");
        file.extend(bmff(b"moov", &bmff(b"uuid", &canon)));
        file.extend(bmff(b"mdat", &[jpeg, &[3; 200][..]].concat()));
        file
    }

    #[test]
    fn a_cr3_is_read_from_its_boxes_and_turned_by_cmt1() {
        let file = cr3(8, &tiny_jpeg(40, 30));
        assert_eq!(super::super::sniff(&file), super::super::Sniffed::Raw);
        assert_eq!(identify(&file), Identified::Raw(RawKind::Cr3, Orientation::Rotate270));
        assert_eq!(preview(&file).unwrap().unwrap().width, 40);
        assert!(matches!(identify(&file[..file.len() - 1]), Identified::Damaged(RawKind::Cr3, m) if m.contains("mdat")));
    }

    #[test]
    fn a_plain_tiff_from_a_camera_maker_is_not_a_raw_but_a_cut_one_is() {
        // Make "NIKON" (ASCII at 100), RGB photometric, one whole strip.
        let mut tail = vec![0u8; 100 - 62];
        tail.extend_from_slice(b"NIKON\0");
        tail.resize(200, 9);
        let entries =
            [(tag::MAKE, 2, 6, 100), (tag::PHOTOMETRIC, 3, 1, 2), (tag::STRIP_OFFSETS, 4, 1, 120), (tag::STRIP_BYTE_COUNTS, 4, 1, 60)];
        let file = little_tiff(&entries, &tail);
        assert_eq!(file.len(), 262);
        assert_eq!(identify(&file), Identified::NotRaw);
        // The same with colour-filter-array sensor data is a NEF.
        let nef = little_tiff(&[entries[0], (tag::PHOTOMETRIC, 3, 1, 32803), entries[2], entries[3]], &tail);
        assert_eq!(identify(&nef), Identified::Raw(RawKind::Nef, Orientation::NoTransforms));
        assert!(matches!(identify(&nef[..170]), Identified::Damaged(RawKind::Nef, _)));
        // A bogus SubIFD pointer beside whole sensor data is a quirk, not damage.
        let quirky =
            little_tiff(&[entries[0], (tag::PHOTOMETRIC, 3, 1, 32803), entries[2], entries[3], (tag::SUB_IFDS, 4, 1, 99_999)], &tail[12..]);
        assert_eq!(identify(&quirky), Identified::Raw(RawKind::Nef, Orientation::NoTransforms));
        // The camera TIFF cut inside its strip: a camera maker's broken file is taken for a cut RAW.
        assert!(matches!(identify(&file[..170]), Identified::Damaged(_, _)));
        assert_eq!(identify(b"II*\0\x08\0\0\0 this is text pretending to be a CR2"), Identified::NotRaw);
    }

    #[test]
    fn the_largest_complete_jpeg_wins() {
        let small = tiny_jpeg(16, 8);
        let large = tiny_jpeg(64, 48);
        let mut file = b"II*\0 some container bytes \xFF\xD8 not a jpeg ".to_vec();
        let small_at = file.len();
        file.extend_from_slice(&small);
        file.extend_from_slice(b"\0\0\xFF\xD8\xFF\xC3\0\x0b lossless junk");
        let large_at = file.len();
        file.extend_from_slice(&large);
        file.extend_from_slice(b"trailing");
        let best = largest_jpeg(&file).unwrap();
        assert_eq!(best, JpegStream { range: large_at..large_at + large.len(), width: 64, height: 48 });
        // Cut the large one short: the small one is all that is left.
        let cut = &file[..large_at + large.len() / 2];
        assert_eq!(largest_jpeg(cut).unwrap().range, small_at..small_at + small.len());
        assert_eq!(largest_jpeg(b"hello, I am a text file"), None);
    }
}
