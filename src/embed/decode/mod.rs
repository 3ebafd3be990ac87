//! Which container an encoded picture is in, for the formats the `image` crate does not read:
//! HEIF (HEIC, AVIF) through libheif ([`heif`]) and camera RAW through its embedded JPEG preview
//! ([`raw`]). [`SourceFormat`] names every format we decode, for the index (`format` facet),
//! upload file names and the Content-Type of the original file. Knows nothing of files or HTTP.

pub mod heif;
pub mod raw;
mod tiff;
#[cfg_attr(not(feature = "heif"), allow(dead_code))]
pub(crate) mod yuv;

use image::ImageFormat;

/// The format a picture was stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    /// Everything the `image` crate decodes (JPEG, PNG, WebP, GIF, BMP, TIFF).
    Image(ImageFormat),
    /// A HEIF image coded with HEVC (iPhone photos).
    Heic,
    /// A HEIF file whose brands name neither HEVC nor AV1 (`mif1` alone).
    Heif,
    /// A HEIF image coded with AV1.
    Avif,
    /// A camera RAW file, embedded through its largest JPEG preview.
    Raw(RawKind),
}

/// The camera RAW containers we recognise (a TIFF with sensor data from another maker is
/// [`RawKind::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawKind {
    Dng,
    Cr2,
    Cr3,
    Nef,
    Arw,
    Raf,
    Orf,
    Rw2,
    Other,
}

impl SourceFormat {
    /// The lowercase name stored in the index (the `format` filter); for the `image` crate's
    /// formats the same names as before this type existed (`jpeg`, `png`, `webp`, ...).
    pub fn name(self) -> String {
        match self {
            SourceFormat::Image(f) => format!("{f:?}").to_lowercase(),
            other => other.extension().to_string(),
        }
    }

    /// The usual file extension (no dot).
    pub fn extension(self) -> &'static str {
        match self {
            SourceFormat::Image(f) => f.extensions_str().first().copied().unwrap_or("img"),
            SourceFormat::Heic => "heic",
            SourceFormat::Heif => "heif",
            SourceFormat::Avif => "avif",
            SourceFormat::Raw(kind) => match kind {
                RawKind::Dng => "dng",
                RawKind::Cr2 => "cr2",
                RawKind::Cr3 => "cr3",
                RawKind::Nef => "nef",
                RawKind::Arw => "arw",
                RawKind::Raf => "raf",
                RawKind::Orf => "orf",
                RawKind::Rw2 => "rw2",
                RawKind::Other => "raw",
            },
        }
    }

    /// The media type of the original file, for formats browsers and `mime_guess` may not
    /// agree on; `None` for the `image` crate's formats (the usual tables know them).
    pub fn media_type(self) -> Option<&'static str> {
        Some(match self {
            SourceFormat::Image(_) => return None,
            SourceFormat::Heic => "image/heic",
            SourceFormat::Heif => "image/heif",
            SourceFormat::Avif => "image/avif",
            SourceFormat::Raw(kind) => match kind {
                RawKind::Dng => "image/x-adobe-dng",
                RawKind::Cr2 => "image/x-canon-cr2",
                RawKind::Cr3 => "image/x-canon-cr3",
                RawKind::Nef => "image/x-nikon-nef",
                RawKind::Arw => "image/x-sony-arw",
                RawKind::Raf => "image/x-fuji-raf",
                RawKind::Orf => "image/x-olympus-orf",
                RawKind::Rw2 => "image/x-panasonic-rw2",
                RawKind::Other => "application/octet-stream",
            },
        })
    }

    /// The format named by a file extension or an index `format` name, for the formats this
    /// module adds (`heic`, `avif`, `dng`, ...).
    pub fn from_extension(ext: &str) -> Option<SourceFormat> {
        let ext = ext.to_ascii_lowercase();
        Some(match ext.as_str() {
            "heic" | "hif" => SourceFormat::Heic,
            "heif" => SourceFormat::Heif,
            "avif" => SourceFormat::Avif,
            "dng" => SourceFormat::Raw(RawKind::Dng),
            "cr2" => SourceFormat::Raw(RawKind::Cr2),
            "cr3" => SourceFormat::Raw(RawKind::Cr3),
            "nef" => SourceFormat::Raw(RawKind::Nef),
            "arw" => SourceFormat::Raw(RawKind::Arw),
            "raf" => SourceFormat::Raw(RawKind::Raf),
            "orf" => SourceFormat::Raw(RawKind::Orf),
            "rw2" => SourceFormat::Raw(RawKind::Rw2),
            _ => return None,
        })
    }
}

/// What the first bytes say about a file, before any decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// A HEIF still image (HEIC, AVIF or generic HEIF).
    Heif(SourceFormat),
    /// A container only RAW files use (CR3, RAF, ORF, RW2).
    Raw,
    /// A TIFF: a plain one, or a TIFF-based RAW (DNG, CR2, NEF, ARW, ...); [`raw`] decides.
    Tiff,
    /// Anything else: the `image` crate's guess decides.
    Other,
}

/// Looks at the magic bytes (and, for ISO-BMFF, the `ftyp` brands).
pub(crate) fn sniff(bytes: &[u8]) -> Sniffed {
    if bytes.get(4..8) == Some(b"ftyp") {
        return sniff_ftyp(bytes);
    }
    if bytes.starts_with(b"FUJIFILMCCD-RAW") {
        return Sniffed::Raw;
    }
    match bytes.get(..4) {
        // Olympus ORF and Panasonic RW2 are TIFF with their own magic numbers.
        Some(b"IIRO") | Some(b"IIRS") | Some(b"MMOR") | Some(b"IIU\0") => Sniffed::Raw,
        Some(b"II*\0") | Some(b"MM\0*") => Sniffed::Tiff,
        _ => Sniffed::Other,
    }
}

fn sniff_ftyp(bytes: &[u8]) -> Sniffed {
    let size = bytes.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).unwrap_or(0);
    // The major brand, then the compatible brands (after the 4-byte minor version).
    let end = size.clamp(16, 256).min(bytes.len());
    let mut brands: Vec<&[u8]> = Vec::new();
    if let Some(major) = bytes.get(8..12) {
        brands.push(major);
    }
    let mut at = 16;
    while at + 4 <= end {
        brands.push(&bytes[at..at + 4]);
        at += 4;
    }
    let has = |names: &[&[u8; 4]]| brands.iter().any(|b| names.iter().any(|n| *b == &n[..]));
    if has(&[b"crx "]) {
        return Sniffed::Raw;
    }
    // The major brand wins over compatible ones (an AVIF may list `mif1` and `miaf`).
    let major = brands.first().copied().unwrap_or_default();
    let heic: &[&[u8; 4]] = &[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"];
    let avif: &[&[u8; 4]] = &[b"avif", b"avis"];
    if avif.iter().any(|n| major == &n[..]) {
        return Sniffed::Heif(SourceFormat::Avif);
    }
    if heic.iter().any(|n| major == &n[..]) {
        return Sniffed::Heif(SourceFormat::Heic);
    }
    if has(avif) {
        return Sniffed::Heif(SourceFormat::Avif);
    }
    if has(heic) {
        return Sniffed::Heif(SourceFormat::Heic);
    }
    if has(&[b"mif1", b"msf1", b"miaf"]) {
        return Sniffed::Heif(SourceFormat::Heif);
    }
    Sniffed::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut b = (size as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0; 4]);
        for c in compatible {
            b.extend_from_slice(*c);
        }
        b.extend_from_slice(&[0; 32]);
        b
    }

    #[test]
    fn heif_brands_are_told_apart() {
        assert_eq!(sniff(&ftyp(b"heic", &[b"mif1", b"heic"])), Sniffed::Heif(SourceFormat::Heic));
        assert_eq!(sniff(&ftyp(b"avif", &[b"mif1", b"miaf"])), Sniffed::Heif(SourceFormat::Avif));
        assert_eq!(sniff(&ftyp(b"mif1", &[b"mif1", b"avif"])), Sniffed::Heif(SourceFormat::Avif));
        assert_eq!(sniff(&ftyp(b"mif1", &[b"mif1"])), Sniffed::Heif(SourceFormat::Heif));
        assert_eq!(sniff(&ftyp(b"crx ", &[b"crx ", b"isom"])), Sniffed::Raw);
        assert_eq!(sniff(&ftyp(b"isom", &[b"mp41"])), Sniffed::Other);
    }

    #[test]
    fn raw_and_tiff_magic() {
        assert_eq!(sniff(b"FUJIFILMCCD-RAW 0201"), Sniffed::Raw);
        assert_eq!(sniff(b"IIRO\x08\0\0\0"), Sniffed::Raw);
        assert_eq!(sniff(b"IIU\0\x08\0\0\0"), Sniffed::Raw);
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), Sniffed::Tiff);
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0"), Sniffed::Other);
        assert_eq!(sniff(b""), Sniffed::Other);
    }

    #[test]
    fn names_stay_what_the_index_already_holds() {
        assert_eq!(SourceFormat::Image(ImageFormat::Jpeg).name(), "jpeg");
        assert_eq!(SourceFormat::Image(ImageFormat::Jpeg).extension(), "jpg");
        assert_eq!(SourceFormat::Image(ImageFormat::WebP).name(), "webp");
        assert_eq!(SourceFormat::Heic.name(), "heic");
        assert_eq!(SourceFormat::Raw(RawKind::Cr3).media_type(), Some("image/x-canon-cr3"));
        assert_eq!(SourceFormat::from_extension("DNG"), Some(SourceFormat::Raw(RawKind::Dng)));
    }
}
