//! Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...), embedded through their largest
//! embedded JPEG preview: what photographers' tools show, and 10-20x cheaper than demosaicing
//! the sensor data. The reference is LibRaw's `extract_thumb` (rawpy), which also takes the
//! largest preview, shown the way the RAW's EXIF orientation says.
//!
//! The containers are read by `rawler` (dnglab's RAW library, which knows these formats and
//! their quirks): it decides whether a file is a RAW at all (a plain TIFF is not) and which
//! container it is, and reads the EXIF orientation. rawler hands previews out only as decoded
//! images (through the `image` crate's JPEG decoder, which differs from libjpeg-turbo by a level
//! on some pixels, and from the reference's scores by ~3e-3), so the preview's JPEG bytes are
//! found here instead: every complete baseline or progressive 8-bit JPEG stream in the file
//! (SOI, marker segments, entropy-coded data, EOI) is a candidate, and the one with the most
//! pixels wins. Lossless JPEG (SOF3, the sensor data of CR2 and many DNGs) is never a candidate.
//! The winner is decoded by the same libjpeg-turbo path as any JPEG, so its pixels match Pillow's.
//!
//! rawler is panic-prone on odd files (`unimplemented!`, indexing), so every call into it runs
//! under `catch_unwind`; nothing here is unsafe.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

use image::metadata::Orientation;
use rawler::decoders::{FormatHint, RawDecodeParams};
use rawler::rawsource::RawSource;
use rawler::RawLoader;

use super::RawKind;
use crate::embed::error::{panic_message, ImageError};

/// rawler's camera database, parsed once.
static LOADER: LazyLock<RawLoader> = LazyLock::new(RawLoader::new);

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

/// What rawler makes of a file.
enum Identified {
    /// No RAW rawler knows (a text file, most plain TIFFs).
    NotRaw,
    Raw(RawKind, Orientation),
    /// A container rawler recognises whose sensor data it cannot find (cut off, or a TIFF that
    /// only carries a camera's make).
    Damaged(RawKind, String),
}

fn kind_of(hint: FormatHint) -> RawKind {
    match hint {
        FormatHint::DNG => RawKind::Dng,
        FormatHint::CR2 => RawKind::Cr2,
        FormatHint::CR3 => RawKind::Cr3,
        FormatHint::NEF => RawKind::Nef,
        FormatHint::ARW => RawKind::Arw,
        FormatHint::RAF => RawKind::Raf,
        FormatHint::ORF => RawKind::Orf,
        FormatHint::RW2 => RawKind::Rw2,
        _ => RawKind::Other,
    }
}

/// rawler picks a decoder for any TIFF by its camera make, so a TIFF written by a Canon scanner
/// or a camera's TIFF mode would pass for a CR2: a file is a RAW only when rawler also finds its
/// sensor data (a "dummy" read: the raw image's place and size, no pixels decoded). A panic
/// inside rawler counts as "not a RAW it can read".
fn identify(bytes: &[u8]) -> Identified {
    let found = catch_unwind(AssertUnwindSafe(|| {
        let source = RawSource::new_from_slice(bytes);
        let Ok(decoder) = LOADER.get_decoder(&source) else { return Identified::NotRaw };
        let kind = kind_of(decoder.format_hint());
        if let Err(e) = decoder.raw_image(&source, &RawDecodeParams::default(), true) {
            return Identified::Damaged(kind, e.to_string());
        }
        if kind == RawKind::Rw2 {
            if let Some(reason) = rw2_strips_cut_off(&source, bytes.len()) {
                return Identified::Damaged(kind, reason);
            }
        }
        // A camera missing from rawler's database still has a preview worth showing; its
        // orientation is then unknown and the preview is taken as stored.
        let orientation = decoder
            .raw_metadata(&source, &RawDecodeParams::default())
            .ok()
            .and_then(|m| m.exif.orientation)
            .and_then(|o| u8::try_from(o).ok())
            .and_then(Orientation::from_exif)
            .unwrap_or(Orientation::NoTransforms);
        Identified::Raw(kind, orientation)
    }));
    found.unwrap_or_else(|payload| {
        tracing::debug!(panic = %panic_message(&*payload), "rawler panicked on a file; not taken for a RAW");
        Identified::NotRaw
    })
}

/// rawler reads Panasonic sensor data "until the end of the file, padded" (its RW2 decoder
/// never looks at StripByteCounts), so its dummy read takes an RW2 cut off in the middle of its
/// sensor data for whole, where the other makers' decoders refuse such a file. The strips IFD0
/// declares must lie inside the file; `Some(reason)` when one runs past its end. (Files with
/// only Panasonic's RawDataOffset and no StripByteCounts are not checked: nothing says how long
/// their data is.)
fn rw2_strips_cut_off(source: &RawSource, len: usize) -> Option<String> {
    use rawler::formats::tiff::reader::TiffReader;
    use rawler::formats::tiff::GenericTiffReader;
    use rawler::tags::TiffCommonTag;

    let tiff = GenericTiffReader::new(&mut source.reader(), 0, 0, None, &[]).ok()?;
    let ifd = tiff.root_ifd();
    let offsets = &ifd.get_entry(TiffCommonTag::StripOffsets)?.value;
    let counts = &ifd.get_entry(TiffCommonTag::StripByteCounts)?.value;
    (0..offsets.count().min(counts.count())).find_map(|i| {
        let end = offsets.force_u64(i).saturating_add(counts.force_u64(i));
        (end > len as u64).then(|| format!("strip {i} of the sensor data ends at byte {end}, past the file's end ({len})"))
    })
}

/// Finds the largest embedded JPEG preview of a RAW file; `Ok(None)` when rawler does not take
/// the file for a RAW at all. A container rawler knows but cannot read is
/// [`ImageError::Corrupt`] (the caller may still try it as a plain TIFF).
pub(crate) fn preview(bytes: &[u8]) -> Result<Option<RawPreview>, ImageError> {
    let (kind, orientation) = match identify(bytes) {
        Identified::NotRaw => return Ok(None),
        Identified::Damaged(kind, reason) => {
            let name = super::SourceFormat::Raw(kind).extension().to_uppercase();
            return Err(ImageError::Corrupt(format!("RAW ({name}): sensor data not found, the file may be cut off: {reason}")));
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
