//! HEIF stills (HEIC with HEVC, AVIF with AV1) through libheif, behind the `heif` cargo feature.
//!
//! Matches the reference (Pillow with `pillow-heif`, which wraps libheif too): the primary image
//! only (a burst, a sequence or a Live Photo gives its still), the container's `irot`/`imir`/
//! `clap` transforms applied by libheif, and the EXIF Orientation tag ignored, since
//! pillow-heif resets it to 1 (the HEIF rule: the container's transforms already say how to
//! show the picture). 10- and 12-bit images are reduced to 8 bits by libheif
//! (`convert_hdr_to_8bit`), as pillow-heif asks. Alpha is dropped, as `convert("RGB")` does.
//!
//! AVIF is the exception for colour: its reference reads it with libavif (pillow-avif-plugin),
//! so libheif gives the YCbCr planes (AV1 decoding and the container transforms are the same)
//! and [`super::yuv`] turns them into RGB with libavif + libyuv's arithmetic.
//!
//! The pixel limit is checked on the primary image's declared size (a grid's output size)
//! before anything is decoded. libheif reports bad input as error codes, and the Rust wrapper's
//! panics are caught, so a broken file is a per-file [`ImageError`]; a crash inside the C/C++
//! code itself cannot be caught here (the fuzz target feeds it broken files).

use super::SourceFormat;
use crate::embed::error::ImageError;
use crate::embed::preprocess::DecodeLimits;

/// The decoded primary image, the right way up, in 8-bit RGB.
pub(crate) struct HeifPicture {
    pub rgb: image::RgbImage,
}

/// The libheif version this build links (`None` without the `heif` feature).
pub fn libheif_version() -> Option<String> {
    imp::version()
}

/// Decodes the primary image of a HEIF file of the given kind (for messages).
pub(crate) fn decode(bytes: &[u8], kind: SourceFormat, limits: &DecodeLimits) -> Result<HeifPicture, ImageError> {
    imp::decode(bytes, kind, limits)
}

fn kind_name(kind: SourceFormat) -> &'static str {
    match kind {
        SourceFormat::Avif => "AVIF",
        SourceFormat::Heif => "HEIF",
        _ => "HEIC",
    }
}

#[cfg(not(feature = "heif"))]
mod imp {
    use super::*;

    pub fn version() -> Option<String> {
        None
    }

    pub fn decode(_bytes: &[u8], kind: SourceFormat, _limits: &DecodeLimits) -> Result<HeifPicture, ImageError> {
        Err(ImageError::NotBuiltIn(kind_name(kind)))
    }
}

#[cfg(feature = "heif")]
mod imp {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::LazyLock;

    use libheif_rs::{
        Chroma, ChromaDownsamplingAlgorithm, ChromaUpsamplingAlgorithm, ColorConversionOptions, ColorSpace, DecodingOptions, HeifContext,
        Image, LibHeif, RgbChroma,
    };

    use super::*;
    use crate::embed::decode::yuv::{self, Matrix, Subsampling, YuvPicture};
    use crate::embed::error::panic_message;

    /// libheif's global state (plugins, decoders), set up once for the process.
    static LIBHEIF: LazyLock<LibHeif> = LazyLock::new(LibHeif::new);

    pub fn version() -> Option<String> {
        let [major, minor, patch] = LIBHEIF.version();
        Some(format!("{major}.{minor}.{patch}"))
    }

    pub fn decode(bytes: &[u8], kind: SourceFormat, limits: &DecodeLimits) -> Result<HeifPicture, ImageError> {
        let name = kind_name(kind);
        catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, name, limits)))
            .unwrap_or_else(|payload| Err(ImageError::Corrupt(format!("{name}: {}", panic_message(&*payload)))))
    }

    fn decode_inner(bytes: &[u8], name: &str, limits: &DecodeLimits) -> Result<HeifPicture, ImageError> {
        let corrupt = |e: libheif_rs::HeifError| ImageError::Corrupt(format!("{name}: {e}"));
        let mut context = HeifContext::read_from_bytes(bytes).map_err(corrupt)?;
        // One file is decoded on one thread, like every other format: the engine's decode
        // budget counts files, and a grid's tiles must not take the cores of other decodes.
        context.set_max_decoding_threads(1);
        let handle = context.primary_image_handle().map_err(corrupt)?;
        let (width, height) = (handle.width(), handle.height());
        let pixels = u64::from(width) * u64::from(height);
        if pixels == 0 {
            return Err(ImageError::Empty);
        }
        if pixels > limits.max_pixels {
            return Err(ImageError::TooManyPixels { width, height, pixels, limit: limits.max_pixels });
        }
        let avif = name == "AVIF";
        if avif {
            // The reference reads AVIF with libavif (pillow-avif-plugin), whose YUV->RGB
            // conversion is libyuv's fixed point, not libheif's: take libheif's YCbCr planes
            // (the AV1 decoding is the same) and convert them as libavif does (see `yuv`).
            if let Some(picture) = avif_the_libavif_way(&handle, name)? {
                return Ok(picture);
            }
        }
        let mut options = decoding_options(name)?;
        let deep = handle.luma_bits_per_pixel() > 8;
        if avif {
            // Only for what `avif_the_libavif_way` leaves to libheif (matrices libyuv has no
            // constants for): libavif upsamples 4:2:0 chroma bilinearly (libheif's default is
            // nearest neighbour, as pillow-heif uses for HEIC).
            options.set_color_conversion_options(ColorConversionOptions {
                preferred_chroma_downsampling_algorithm: ChromaDownsamplingAlgorithm::Average,
                preferred_chroma_upsampling_algorithm: ChromaUpsamplingAlgorithm::Bilinear,
                only_use_preferred_chroma_algorithm: true,
            });
        }
        if avif && deep {
            // libavif's float conversion (what it uses for these matrices) rounds deep samples to
            // 8 bits; libheif's own reduction truncates. Take the deep RGB and round here.
            options.set_convert_hdr_to_8bit(false);
            let image = LIBHEIF.decode(&handle, ColorSpace::Rgb(RgbChroma::HdrRgbLe), Some(options)).map_err(corrupt)?;
            return rounded_to_8_bits(&image, handle.luma_bits_per_pixel(), name);
        }
        // pillow-heif asks libheif for 8-bit RGB (convert_hdr_to_8bit), so HEIC does the same.
        options.set_convert_hdr_to_8bit(true);
        let image = LIBHEIF.decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), Some(options)).map_err(corrupt)?;
        let planes = image.planes();
        let plane = planes.interleaved.ok_or_else(|| ImageError::Corrupt(format!("{name}: no interleaved RGB plane")))?;
        if plane.bits_per_pixel != 24 && plane.storage_bits_per_pixel != 24 {
            return Err(ImageError::Corrupt(format!("{name}: unexpected {} bits per pixel", plane.storage_bits_per_pixel)));
        }
        let (w, h, stride) = (plane.width as usize, plane.height as usize, plane.stride);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            let start = row * stride;
            let line = plane.data.get(start..start + w * 3).ok_or_else(|| ImageError::Corrupt(format!("{name}: short pixel plane")))?;
            rgb.extend_from_slice(line);
        }
        let rgb = image::RgbImage::from_raw(plane.width, plane.height, rgb).ok_or(ImageError::Empty)?;
        Ok(HeifPicture { rgb })
    }

    /// One thread for libheif and for the codec: dav1d would otherwise start a thread per core
    /// for every AVIF.
    fn decoding_options(name: &str) -> Result<DecodingOptions, ImageError> {
        let mut options = DecodingOptions::new().ok_or_else(|| ImageError::Corrupt(format!("{name}: libheif has no decoding options")))?;
        options.set_num_library_threads(1);
        options.set_num_codec_threads(1);
        Ok(options)
    }

    /// The primary image's YCbCr planes from libheif (its `irot`/`imir`/`clap` applied), turned
    /// into RGB as libavif + libyuv do ([`yuv`]). `None` when the picture is not YCbCr with a
    /// matrix libyuv has constants for (libavif then uses its own float code, which is not
    /// reproduced: the caller falls back to libheif's conversion, a level or so away).
    fn avif_the_libavif_way(handle: &libheif_rs::ImageHandle, name: &str) -> Result<Option<HeifPicture>, ImageError> {
        let corrupt = |e: libheif_rs::HeifError| ImageError::Corrupt(format!("{name}: {e}"));
        let mut options = decoding_options(name)?;
        options.set_convert_hdr_to_8bit(false);
        let image = LIBHEIF.decode(handle, ColorSpace::Undefined, Some(options)).map_err(corrupt)?;
        let subsampling = match image.color_space() {
            Some(ColorSpace::YCbCr(Chroma::C420)) => Subsampling::S420,
            Some(ColorSpace::YCbCr(Chroma::C422)) => Subsampling::S422,
            Some(ColorSpace::YCbCr(Chroma::C444)) => Subsampling::S444,
            Some(ColorSpace::Monochrome) => Subsampling::Mono,
            _ => return Ok(None),
        };
        // The decoded image carries the CICP libheif converts with (the `colr` box's, else the
        // AV1 sequence header's), as libavif's does.
        let Some(nclx) = image.color_profile_nclx().or_else(|| handle.color_profile_nclx()) else {
            return Ok(None);
        };
        let (matrix_coefficients, primaries) = (nclx.matrix_coefficients() as u16, nclx.color_primaries() as u16);
        let full_range = nclx.full_range_flag() != 0;
        let matrix = Matrix::for_cicp(matrix_coefficients, primaries, full_range);
        // Monochrome never uses the matrix, but libavif refuses the matrices it cannot handle at
        // all (identity, YCgCo, constant luminance, ICtCp, reserved): leave those to libheif.
        let mono_ok = !matches!(matrix_coefficients, 0 | 3 | 8 | 10 | 11 | 13..);
        if (subsampling == Subsampling::Mono && !mono_ok) || (subsampling != Subsampling::Mono && matrix.is_none()) {
            return Ok(None);
        }
        let planes = image.planes();
        let Some(y) = planes.y else {
            return Ok(None);
        };
        let depth = y.bits_per_pixel;
        if !matches!(depth, 8 | 10 | 12) || y.storage_bits_per_pixel != if depth > 8 { 16 } else { 8 } {
            return Ok(None);
        }
        fn plane<'a>(p: &libheif_rs::Plane<&'a [u8]>) -> yuv::Plane<'a> {
            yuv::Plane { data: p.data, stride: p.stride, width: p.width as usize, height: p.height as usize }
        }
        let chroma = match (subsampling, &planes.cb, &planes.cr) {
            (Subsampling::Mono, _, _) => None,
            (_, Some(cb), Some(cr)) if cb.bits_per_pixel == depth && cr.bits_per_pixel == depth => Some((plane(cb), plane(cr))),
            _ => return Err(ImageError::Corrupt(format!("{name}: YCbCr picture without usable chroma planes"))),
        };
        let picture = YuvPicture {
            width: image.width(),
            height: image.height(),
            depth,
            full_range,
            subsampling,
            matrix,
            y: plane(&y),
            chroma,
            has_alpha: handle.has_alpha_channel(),
        };
        Ok(Some(HeifPicture { rgb: yuv::to_rgb8(&picture)? }))
    }

    /// Interleaved little-endian 16-bit RGB holding `bits`-bit samples, rounded to 8 bits.
    fn rounded_to_8_bits(image: &Image, bits: u8, name: &str) -> Result<HeifPicture, ImageError> {
        let planes = image.planes();
        let plane = planes.interleaved.ok_or_else(|| ImageError::Corrupt(format!("{name}: no interleaved RGB plane")))?;
        let bits = u32::from(bits).clamp(9, 16);
        let max = (1u32 << bits) - 1;
        let (w, h, stride) = (plane.width as usize, plane.height as usize, plane.stride);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            let start = row * stride;
            let line = plane.data.get(start..start + w * 6).ok_or_else(|| ImageError::Corrupt(format!("{name}: short pixel plane")))?;
            rgb.extend(line.chunks_exact(2).map(|s| {
                let v = u32::from(u16::from_le_bytes([s[0], s[1]])).min(max);
                ((v * 255 + max / 2) / max) as u8
            }));
        }
        let rgb = image::RgbImage::from_raw(plane.width, plane.height, rgb).ok_or(ImageError::Empty)?;
        Ok(HeifPicture { rgb })
    }
}
