//! Small JPEG previews for the web page, made once per image and size and cached on disk
//! (ids are content hashes, so a cached thumbnail never goes stale).

use std::path::{Path, PathBuf};

use fast_image_resize::{images::Image as ResizeImage, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::EngineError;
use crate::embed::{preprocess, DecodeLimits, ImageError};

pub const MIN_SIZE: u32 = 32;
pub const MAX_SIZE: u32 = 1024;

fn cached(dir: &Path, id: &str, size: u32) -> PathBuf {
    dir.join(format!("{id}-{size}.jpg"))
}

pub fn get_or_make(dir: &Path, id: &str, source: &Path, size: u32, limits: &DecodeLimits) -> Result<Vec<u8>, EngineError> {
    let path = cached(dir, id, size);
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    let decoded = preprocess::decode_file(source, limits, Some(size))?;
    let small = shrink(&decoded.rgb, size)?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&small)
        .map_err(|e| EngineError::Internal(format!("thumbnail encoding: {e}")))?;
    // A failed cache write only costs a re-render next time.
    if std::fs::create_dir_all(dir).is_ok() {
        let tmp = dir.join(format!(".{id}-{size}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, &jpeg).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
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

/// Drops every cached size of an image.
pub fn forget(dir: &Path, id: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!("{id}-");
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
