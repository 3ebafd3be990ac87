//! Small JPEG previews for the web page, cached on disk: one folder per image
//! (`<dir>/<id[0..2]>/<id>/<size>.jpg`) holding at most one file per size of [`SIZES`].
//!
//! Ids are content hashes, so the thumbnail of an (id, size) never goes stale: a cached file is
//! reused as long as it is a whole JPEG. Requests snap to the few [`SIZES`], so an image costs at
//! most five cached files whatever sizes clients ask for, and forgetting an image removes one
//! folder instead of scanning every thumbnail. Knows nothing of HTTP or of the decode budget
//! (the engine holds a decode permit around [`render`]).

use std::path::{Path, PathBuf};

use fast_image_resize::{images::Image as ResizeImage, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::EngineError;
use crate::embed::{preprocess, DecodeLimits, ImageError};
use crate::fsutil::{self, Existing};

/// Smallest size a client may ask for.
pub const MIN_SIZE: u32 = 32;
/// Largest size a client may ask for (and the largest rendered).
pub const MAX_SIZE: u32 = 1024;
/// The sizes actually rendered and cached (longest side, pixels). Powers of two cover the web
/// page's needs (64 for the query chip, 256 for results, 512 on high-density screens).
pub const SIZES: [u32; 5] = [64, 128, 256, 512, MAX_SIZE];
/// Changes whenever the rendering does (filter, quality, sizes), so that validators built from
/// it (the HTTP ETag) change too and clients drop their copies.
pub const RENDER_VERSION: u32 = 1;

const JPEG_QUALITY: u8 = 85;

/// The cached size a request for `requested` pixels is answered with: the smallest of [`SIZES`]
/// at least as large, capped at [`MAX_SIZE`].
pub fn snap(requested: u32) -> u32 {
    SIZES.into_iter().find(|&s| s >= requested).unwrap_or(MAX_SIZE)
}

/// The folder holding every cached size of one image. Two hex digits of fan-out keep any one
/// folder small with millions of images.
fn folder(dir: &Path, id: &str) -> PathBuf {
    let shard = id.get(..2).unwrap_or(id);
    dir.join(shard).join(id)
}

fn cached(dir: &Path, id: &str, size: u32) -> PathBuf {
    folder(dir, id).join(format!("{size}.jpg"))
}

/// The cached thumbnail of `id` at `size` (already snapped), if there is a whole one.
pub fn lookup(dir: &Path, id: &str, size: u32) -> Option<Vec<u8>> {
    let bytes = std::fs::read(cached(dir, id, size)).ok()?;
    // Writes are atomic, but a cache left by an older version (or a disk that lied about
    // fsync) may hold a cut-off file: re-render rather than serve it.
    is_whole_jpeg(&bytes).then_some(bytes)
}

/// Decodes `source`, renders the thumbnail at `size` (already snapped) and caches it. The
/// expensive part (a full decode): callers bound how many run at once.
pub fn render(dir: &Path, id: &str, source: &[u8], size: u32, limits: &DecodeLimits) -> Result<Vec<u8>, EngineError> {
    let jpeg = render_jpeg(source, size, limits)?;
    // Concurrent renders of the same thumbnail each write their own temp file and rename it
    // into place, so a reader sees one whole file or none. A failed cache write only costs a
    // re-render next time, so it is logged, not returned.
    let path = cached(dir, id, size);
    if let Err(e) = fsutil::write_atomically(&path, &jpeg, Existing::Replace) {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache a thumbnail");
    }
    Ok(jpeg)
}

/// The thumbnail of `source` at `size` (already snapped), as JPEG bytes; nothing is cached.
pub fn render_jpeg(source: &[u8], size: u32, limits: &DecodeLimits) -> Result<Vec<u8>, EngineError> {
    let decoded = preprocess::decode_reduced(source, limits, Some(size))?;
    let small = shrink(&decoded.rgb, size)?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&small)
        .map_err(|e| EngineError::Internal(format!("thumbnail encoding: {e}")))?;
    Ok(jpeg)
}

fn shrink(rgb: &RgbImage, size: u32) -> Result<RgbImage, EngineError> {
    let (w, h) = rgb.dimensions();
    let scale = f64::from(size) / f64::from(w.max(h));
    if scale >= 1.0 {
        return Ok(rgb.clone());
    }
    let (tw, th) = (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
    let mut dst = ResizeImage::new(tw, th, PixelType::U8x3);
    Resizer::new()
        .resize(rgb, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)))
        .map_err(|e| EngineError::Image(ImageError::Corrupt(format!("thumbnail resize: {e}"))))?;
    RgbImage::from_raw(tw, th, dst.into_vec()).ok_or_else(|| EngineError::Internal("thumbnail buffer".into()))
}

/// A JPEG we wrote starts with SOI and ends with EOI; anything else was cut off.
fn is_whole_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9])
}

/// Drops every cached size of an image: one folder, no scan.
///
/// A render of this id still in flight may write its file afterwards; that file stays valid
/// (the id is a content hash) and is reused if the same content is indexed again.
pub fn forget(dir: &Path, id: &str) {
    let folder = folder(dir, id);
    match std::fs::remove_dir_all(&folder) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(folder = %folder.display(), error = %e, "cannot remove cached thumbnails"),
    }
    // The shard folder goes too once empty; failing because it is not is the normal case.
    if let Some(shard) = folder.parent() {
        let _ = std::fs::remove_dir(shard);
    }
}

/// Removes thumbnails cached by versions before the per-image folders: they lie flat in
/// `dir` (`<id>-<size>.jpg`, up to 993 per image, plus temp files) and nothing reads them any
/// more. Only files directly in `dir` go; the shard folders are left alone.
pub fn remove_flat_legacy_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).filter(|e| std::fs::remove_file(e.path()).is_ok()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_snap_up_to_the_next_cached_size() {
        assert_eq!(snap(MIN_SIZE), 64);
        assert_eq!(snap(64), 64);
        assert_eq!(snap(65), 128);
        assert_eq!(snap(300), 512);
        assert_eq!(snap(1000), 1024);
        assert_eq!(snap(MAX_SIZE), MAX_SIZE);
        assert_eq!(snap(5000), MAX_SIZE);
        let distinct: std::collections::BTreeSet<u32> = (MIN_SIZE..=MAX_SIZE).map(snap).collect();
        assert_eq!(distinct.len(), SIZES.len());
    }

    #[test]
    fn a_cut_off_cache_file_is_not_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let path = cached(dir.path(), "abcdef0123456789", 64);
        fsutil::write_atomically(&path, &[0xFF, 0xD8, 1, 2, 3], Existing::Replace).unwrap();
        assert!(lookup(dir.path(), "abcdef0123456789", 64).is_none());
        fsutil::write_atomically(&path, &[0xFF, 0xD8, 1, 0xFF, 0xD9], Existing::Replace).unwrap();
        assert!(lookup(dir.path(), "abcdef0123456789", 64).is_some());
    }

    #[test]
    fn flat_files_of_the_old_layout_are_removed_and_folders_kept() {
        let dir = tempfile::tempdir().unwrap();
        let kept = cached(dir.path(), "ab00000000000001", 64);
        fsutil::write_atomically(&kept, b"x", Existing::Replace).unwrap();
        for old in ["ab00000000000001-64.jpg", "ab00000000000001-65.jpg", ".ab00000000000001-66.123.tmp"] {
            std::fs::write(dir.path().join(old), b"x").unwrap();
        }
        assert_eq!(remove_flat_legacy_files(dir.path()), 3);
        assert!(kept.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn forget_removes_the_image_folder_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        for (id, size) in [("ab00000000000001", 64), ("ab00000000000001", 256), ("ab00000000000002", 64)] {
            fsutil::write_atomically(&cached(dir.path(), id, size), b"x", Existing::Replace).unwrap();
        }
        forget(dir.path(), "ab00000000000001");
        assert!(!folder(dir.path(), "ab00000000000001").exists());
        assert!(cached(dir.path(), "ab00000000000002", 64).exists());
        forget(dir.path(), "ab00000000000002");
        assert!(!dir.path().join("ab").exists(), "an empty shard folder goes too");
        forget(dir.path(), "never-cached");
    }
}
