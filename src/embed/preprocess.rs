//! Image decoding and CLIP preprocessing as pure functions, matching the reference pipeline
//! (`transformers.image_utils.load_image` then `CLIPImageProcessor`): EXIF orientation, RGB
//! conversion, bicubic resize of the shortest edge (Pillow's filter), center crop, rescale,
//! normalize. Knows nothing of files, models or HTTP.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use fast_image_resize::{images::Image as ResizeImage, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use ndarray::Array3;
use serde::Deserialize;

use super::decode::{self, heif, raw, Sniffed, SourceFormat};
use super::error::{panic_message, ImageError, LoadError};

/// Refuse work before it is done: file size and pixel count are checked before decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_pixels: 50_000_000, max_bytes: 64 * 1024 * 1024 }
    }
}

/// A decoded picture the right way up, in 8-bit RGB.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The pixels; smaller than the picture when a reduced decode was asked for.
    pub rgb: RgbImage,
    pub format: SourceFormat,
    /// The picture's full size after EXIF orientation.
    pub width: u32,
    pub height: u32,
}

impl DecodedImage {
    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
}

/// Decodes an encoded image (JPEG, PNG, WebP, GIF first frame, BMP, TIFF; HEIC/AVIF primary
/// image with the `heif` feature; a camera RAW's largest embedded JPEG preview), applies its
/// orientation and converts it to RGB as Pillow's `convert("RGB")` does (alpha dropped).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    decode_reduced(bytes, limits, None)
}

/// Like [`decode`], but a large JPEG (or a RAW's JPEG preview) may be decoded at 1/8 .. 7/8 of
/// its size (libjpeg's scaled IDCT, several times faster) as long as its short side stays at
/// least `min_short_side`.
pub fn decode_reduced(bytes: &[u8], limits: &DecodeLimits, min_short_side: Option<u32>) -> Result<DecodedImage, ImageError> {
    let byte_count = bytes.len() as u64;
    if byte_count > limits.max_bytes {
        return Err(ImageError::TooManyBytes { bytes: byte_count, limit: limits.max_bytes });
    }
    match decode::sniff(bytes) {
        Sniffed::Heif(kind) => {
            let picture = heif::decode(bytes, kind, limits)?;
            let (width, height) = picture.rgb.dimensions();
            return Ok(DecodedImage { rgb: picture.rgb, format: kind, width, height });
        }
        Sniffed::Raw => {
            let preview =
                raw::preview(bytes)?.ok_or_else(|| ImageError::Corrupt("RAW: not a RAW file (its container could not be read)".into()))?;
            return decode_raw_preview(bytes, preview, limits, min_short_side);
        }
        // A TIFF may be a TIFF-based RAW (DNG, CR2, NEF, ARW, ...): raw::preview tells. When
        // it sees a broken RAW, the file may still be a plain TIFF (a camera's, with its
        // make); if the TIFF decoder fails too, the RAW's reason is the clearer one.
        Sniffed::Tiff => match raw::preview(bytes) {
            Ok(Some(preview)) => return decode_raw_preview(bytes, preview, limits, min_short_side),
            Ok(None) => {}
            Err(raw_error) => return decode_with_image_crate(bytes, limits, min_short_side, true).map_err(|_| raw_error),
        },
        Sniffed::Other => {}
    }
    decode_with_image_crate(bytes, limits, min_short_side, true)
}

/// A RAW file's preview JPEG, decoded like any JPEG (its own EXIF orientation, if it has one,
/// is ignored), then turned the way the RAW's EXIF orientation says.
fn decode_raw_preview(
    bytes: &[u8],
    preview: raw::RawPreview,
    limits: &DecodeLimits,
    min_short_side: Option<u32>,
) -> Result<DecodedImage, ImageError> {
    let pixels = u64::from(preview.width) * u64::from(preview.height);
    if pixels > limits.max_pixels {
        return Err(ImageError::TooManyPixels { width: preview.width, height: preview.height, pixels, limit: limits.max_pixels });
    }
    let jpeg = bytes.get(preview.jpeg.clone()).ok_or_else(|| ImageError::Corrupt("RAW: preview outside the file".into()))?;
    let decoded = decode_with_image_crate(jpeg, limits, min_short_side, false).map_err(|e| match e {
        ImageError::Corrupt(message) => ImageError::Corrupt(format!("RAW preview: {message}")),
        other => other,
    })?;
    let orientation = preview.orientation;
    let mut image = DynamicImage::ImageRgb8(decoded.rgb);
    image.apply_orientation(orientation);
    let (width, height) = if swaps_sides(orientation) { (decoded.height, decoded.width) } else { (decoded.width, decoded.height) };
    Ok(DecodedImage { rgb: image.into_rgb8(), format: SourceFormat::Raw(preview.kind), width, height })
}

fn swaps_sides(orientation: image::metadata::Orientation) -> bool {
    matches!(
        orientation,
        image::metadata::Orientation::Rotate90
            | image::metadata::Orientation::Rotate270
            | image::metadata::Orientation::Rotate90FlipH
            | image::metadata::Orientation::Rotate270FlipH
    )
}

/// The `image` crate's formats (JPEG through libjpeg-turbo); `exif_orientation` says whether
/// the file's own EXIF orientation applies.
fn decode_with_image_crate(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_short_side: Option<u32>,
    exif_orientation: bool,
) -> Result<DecodedImage, ImageError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let format = reader.format().ok_or(ImageError::UnsupportedFormat)?;
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(ImageError::Empty);
    }
    if pixels > limits.max_pixels {
        return Err(ImageError::TooManyPixels { width, height, pixels, limit: limits.max_pixels });
    }
    if format == ImageFormat::Jpeg && !has_jpeg_end_marker(bytes) {
        // The JPEG decoder pads a cut-off scan with grey instead of failing; Pillow refuses such
        // files ("image file is truncated"), and so do we rather than index a half-grey picture.
        return Err(ImageError::Corrupt("JPEG data ends before the end-of-image marker (truncated file)".into()));
    }
    let orientation = if exif_orientation {
        decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms)
    } else {
        image::metadata::Orientation::NoTransforms
    };
    let exact_jpeg =
        if format == ImageFormat::Jpeg { decode_jpeg_like_pillow(bytes, jpeg_scale(width, height, min_short_side))? } else { None };
    let mut image = match exact_jpeg {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => DynamicImage::from_decoder(decoder).map_err(classify)?,
    };
    image.apply_orientation(orientation);
    let (width, height) = if swaps_sides(orientation) { (height, width) } else { (width, height) };
    let palette_transparency = match format {
        ImageFormat::Png => png_palette_has_transparency(bytes),
        ImageFormat::Gif => true,
        _ => false,
    };
    Ok(DecodedImage { rgb: to_rgb(image, palette_transparency), format: SourceFormat::Image(format), width, height })
}

/// The smallest libjpeg scale (n/8) that keeps the short side at `min_short_side` or more.
fn jpeg_scale(width: u32, height: u32, min_short_side: Option<u32>) -> u8 {
    let Some(min) = min_short_side else { return 8 };
    let short = u64::from(width.min(height));
    (1..8u8).find(|&n| (short * u64::from(n)).div_ceil(8) >= u64::from(min)).unwrap_or(8)
}

/// Decodes a JPEG with libjpeg-turbo's code (through mozjpeg, whose decoder is libjpeg-turbo's):
/// the same integer IDCT and fancy chroma upsampling as Pillow, so pixels match the reference
/// exactly. Other Rust decoders differ by a level on a few percent of pixels, which moves search
/// scores by up to ~3e-3. CMYK/YCCK files return `None` and take the general path.
///
/// libjpeg reports a fatal error (a bogus marker, an undefined table, an impossible frame) by
/// unwinding out of the C code, and mozjpeg asks its users to catch that: uncaught, a corrupt file
/// would end the decoding thread and answer 500 (issue 14). The unwind becomes
/// [`ImageError::Corrupt`] with libjpeg's own message.
fn decode_jpeg_like_pillow(bytes: &[u8], scale_eighths: u8) -> Result<Option<RgbImage>, ImageError> {
    // The closure owns nothing that outlives it: the half-built decompressor is dropped (and its
    // libjpeg state freed) during the unwind, so nothing broken is observed afterwards.
    catch_unwind(AssertUnwindSafe(|| libjpeg_decode(bytes, scale_eighths)))
        .unwrap_or_else(|payload| Err(ImageError::Corrupt(format!("JPEG: {}", panic_message(&*payload)))))
}

/// The mozjpeg calls themselves; any of them may unwind (see [`decode_jpeg_like_pillow`]).
fn libjpeg_decode(bytes: &[u8], scale_eighths: u8) -> Result<Option<RgbImage>, ImageError> {
    let corrupt = |e: std::io::Error| ImageError::Corrupt(format!("JPEG: {e}"));
    let mut decompress = mozjpeg::Decompress::new_mem(bytes).map_err(corrupt)?;
    if scale_eighths < 8 {
        decompress.scale(scale_eighths);
    }
    if matches!(decompress.color_space(), mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK) {
        return Ok(None);
    }
    let mut started = decompress.rgb().map_err(corrupt)?;
    let (width, height) = (started.width() as u32, started.height() as u32);
    let data = started.read_scanlines::<u8>().map_err(corrupt)?;
    started.finish().map_err(corrupt)?;
    RgbImage::from_raw(width, height, data).map(Some).ok_or_else(|| ImageError::Corrupt("JPEG: short pixel data".into()))
}

/// RGB conversion as the reference does it: alpha is dropped (Pillow's `convert("RGB")`), except
/// for palette images with a transparent colour, whose transparent pixels the reference shows
/// on white. 16-bit samples keep their high byte, as Pillow reads them.
///
/// One deliberate difference: Pillow clips 16-bit greyscale to 255 (a nearly white picture); we
/// scale it like 16-bit colour, so a 16-bit scan is found like its 8-bit twin.
fn to_rgb(image: DynamicImage, palette_transparency: bool) -> RgbImage {
    let high_byte = |v: u16| (v >> 8) as u8;
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) if palette_transparency => {
            let (w, h) = rgba.dimensions();
            RgbImage::from_fn(w, h, |x, y| {
                let [r, g, b, a] = rgba.get_pixel(x, y).0;
                let over_white = |c: u8| ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8;
                image::Rgb([over_white(r), over_white(g), over_white(b)])
            })
        }
        DynamicImage::ImageRgb16(img) => {
            RgbImage::from_fn(img.width(), img.height(), |x, y| image::Rgb(img.get_pixel(x, y).0.map(high_byte)))
        }
        DynamicImage::ImageRgba16(img) => RgbImage::from_fn(img.width(), img.height(), |x, y| {
            let [r, g, b, _] = img.get_pixel(x, y).0;
            image::Rgb([high_byte(r), high_byte(g), high_byte(b)])
        }),
        DynamicImage::ImageLuma16(img) => RgbImage::from_fn(img.width(), img.height(), |x, y| {
            let l = high_byte(img.get_pixel(x, y).0[0]);
            image::Rgb([l, l, l])
        }),
        DynamicImage::ImageLumaA16(img) => RgbImage::from_fn(img.width(), img.height(), |x, y| {
            let l = high_byte(img.get_pixel(x, y).0[0]);
            image::Rgb([l, l, l])
        }),
        other => other.to_rgb8(),
    }
}

/// Whether a PNG is palette-based (IHDR colour type 3) with a `tRNS` chunk.
fn png_palette_has_transparency(bytes: &[u8]) -> bool {
    const IHDR_COLOR_TYPE: usize = 8 + 8 + 9;
    if bytes.get(IHDR_COLOR_TYPE) != Some(&3) {
        return false;
    }
    // Walk the chunks up to the first IDAT; tRNS must come before it.
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"tRNS" => return true,
            b"IDAT" => return false,
            _ => at = at.saturating_add(12).saturating_add(len),
        }
    }
    false
}

/// A cut-off JPEG has no EOI marker (FF D9) near its end. Some writers append padding or
/// metadata after EOI, so look in the last few KiB rather than at the last two bytes only.
fn has_jpeg_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn classify(err: image::ImageError) -> ImageError {
    match err {
        image::ImageError::Unsupported(_) => ImageError::UnsupportedFormat,
        image::ImageError::Limits(e) => ImageError::Corrupt(format!("decoder limit: {e}")),
        other => ImageError::Corrupt(other.to_string()),
    }
}

/// The settings of a Hugging Face `preprocessor_config.json` that CLIP uses.
#[derive(Debug, Clone, Deserialize)]
pub struct PreprocessConfig {
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default)]
    pub size: SizeSpec,
    /// Pillow resample id: 0 nearest, 1 Lanczos, 2 bilinear, 3 bicubic, 4 box, 5 Hamming.
    #[serde(default = "bicubic")]
    pub resample: u8,
    #[serde(default = "yes")]
    pub do_center_crop: bool,
    #[serde(default)]
    pub crop_size: CropSize,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "one_over_255")]
    pub rescale_factor: f64,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    #[serde(default = "clip_mean")]
    pub image_mean: [f32; 3],
    #[serde(default = "clip_std")]
    pub image_std: [f32; 3],
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    ShortestEdge { shortest_edge: u32 },
    Exact { height: u32, width: u32 },
    Square(u32),
}

impl Default for SizeSpec {
    fn default() -> Self {
        SizeSpec::ShortestEdge { shortest_edge: 224 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CropSize {
    Exact { height: u32, width: u32 },
    Square(u32),
}

impl Default for CropSize {
    fn default() -> Self {
        CropSize::Exact { height: 224, width: 224 }
    }
}

fn yes() -> bool {
    true
}
fn bicubic() -> u8 {
    3
}
fn one_over_255() -> f64 {
    1.0 / 255.0
}
// The published CLIP values, kept digit for digit as in `preprocessor_config.json`.
#[allow(clippy::excessive_precision)]
fn clip_mean() -> [f32; 3] {
    [0.481_454_66, 0.457_827_5, 0.408_210_73]
}
#[allow(clippy::excessive_precision)]
fn clip_std() -> [f32; 3] {
    [0.268_629_54, 0.261_302_58, 0.275_777_11]
}

impl PreprocessConfig {
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = fs_err::read_to_string(path).map_err(|e| LoadError::File { path: path.to_path_buf(), message: e.to_string() })?;
        Self::from_json(&text).map_err(|e| LoadError::File { path: path.to_path_buf(), message: e.to_string() })
    }

    /// A processor config that does not say `do_center_crop` gets its class's default, as in
    /// `transformers`: CLIP's processor crops; SigLIP's has no crop (it resizes straight to the
    /// square `size`), nor does the base image processor.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        if let Some(map) = value.as_object_mut() {
            let class = map.get("image_processor_type").and_then(|v| v.as_str()).map(str::to_string);
            if class.is_some_and(|c| !c.starts_with("CLIP")) {
                map.entry("do_center_crop").or_insert(serde_json::Value::Bool(false));
            }
        }
        serde_json::from_value(value)
    }

    /// The (height, width) of the tensor this config produces.
    pub fn output_size(&self) -> (u32, u32) {
        match (self.do_center_crop, &self.crop_size, &self.size) {
            (true, CropSize::Exact { height, width }, _) => (*height, *width),
            (true, CropSize::Square(s), _) => (*s, *s),
            (false, _, SizeSpec::Exact { height, width }) => (*height, *width),
            (false, _, SizeSpec::Square(s)) => (*s, *s),
            (false, _, SizeSpec::ShortestEdge { shortest_edge }) => (*shortest_edge, *shortest_edge),
        }
    }

    /// Size after resizing, as `transformers.image_transforms.get_resize_output_image_size` computes
    /// it: the short side becomes `shortest_edge` and the long side is scaled and truncated.
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        match self.size {
            SizeSpec::ShortestEdge { shortest_edge } => {
                let (short, long) = if width <= height { (width, height) } else { (height, width) };
                let new_long = (f64::from(shortest_edge) * f64::from(long) / f64::from(short)) as u32;
                if width <= height {
                    (shortest_edge, new_long.max(1))
                } else {
                    (new_long.max(1), shortest_edge)
                }
            }
            SizeSpec::Exact { height, width } => (width, height),
            SizeSpec::Square(s) => (s, s),
        }
    }

    fn filter(&self) -> ResizeAlg {
        let filter = match self.resample {
            0 => return ResizeAlg::Nearest,
            1 => FilterType::Lanczos3,
            2 => FilterType::Bilinear,
            4 => FilterType::Box,
            5 => FilterType::Hamming,
            // Pillow's bicubic is the a = -0.5 kernel, i.e. Catmull-Rom.
            _ => FilterType::CatmullRom,
        };
        ResizeAlg::Convolution(filter)
    }
}

/// Turns an RGB image into the model's input tensor `[3, H, W]` (channels first, normalised).
pub fn pixel_tensor(rgb: &RgbImage, config: &PreprocessConfig) -> Result<Array3<f32>, ImageError> {
    let (width, height) = if config.do_resize { config.resized_size(rgb.width(), rgb.height()) } else { rgb.dimensions() };
    let (out_h, out_w) = if config.do_center_crop { config.output_size() } else { (height, width) };
    // transformers' center_crop: top-left at floor((size - crop) / 2); it pads with zeros when the
    // image is smaller than the crop, which a resize to the shortest edge never leaves.
    let mut top = (i64::from(height) - i64::from(out_h)).div_euclid(2);
    let mut left = (i64::from(width) - i64::from(out_w)).div_euclid(2);
    let crop_inside = top >= 0 && left >= 0 && top + i64::from(out_h) <= i64::from(height) && left + i64::from(out_w) <= i64::from(width);
    let resized = match super::resample::Filter::from_pillow(config.resample) {
        // Convolution filters are Pillow's own arithmetic (see `resample`): fast_image_resize
        // was up to 10 levels off (pass order) and 2 in Pillow's order (its weight rounding).
        // Only the pixels the crop keeps are computed (a quarter less work for a 4:3 photo).
        Some(filter) if config.do_resize && crop_inside => {
            let window = super::resample::Window { x: left as u32, y: top as u32, width: out_w, height: out_h };
            (top, left) = (0, 0);
            super::resample::resize_window(rgb, width, height, filter, window)
        }
        Some(filter) if config.do_resize => super::resample::resize(rgb, width, height, filter),
        None if config.do_resize => resize_rgb(rgb, width, height, config.filter())?,
        _ => rgb.clone(),
    };

    let scale = if config.do_rescale { config.rescale_factor as f32 } else { 1.0 };
    let (mean, std) = if config.do_normalize { (config.image_mean, config.image_std) } else { ([0.0; 3], [1.0; 3]) };
    let mut tensor = Array3::<f32>::zeros((3, out_h as usize, out_w as usize));
    for y in 0..out_h as i64 {
        let sy = y + top;
        for x in 0..out_w as i64 {
            let sx = x + left;
            let inside = sy >= 0 && sx >= 0 && sy < i64::from(resized.height()) && sx < i64::from(resized.width());
            let pixel = if inside { resized.get_pixel(sx as u32, sy as u32).0 } else { [0, 0, 0] };
            for c in 0..3 {
                tensor[[c, y as usize, x as usize]] = (f32::from(pixel[c]) * scale - mean[c]) / std[c];
            }
        }
    }
    Ok(tensor)
}

fn resize_rgb(rgb: &RgbImage, width: u32, height: u32, alg: ResizeAlg) -> Result<RgbImage, ImageError> {
    // Pillow filters rows first and rounds to 8 bits before filtering columns; fast_image_resize
    // does columns first for 8-bit images. Bicubic overshoot is clipped between the passes, so
    // the order shows near saturated pixels (up to ~20 levels): run one pass at a time, in
    // Pillow's order.
    let horizontal = resize_pass(rgb, width, rgb.height(), alg)?;
    resize_pass(&horizontal, width, height, alg)
}

fn resize_pass(rgb: &RgbImage, width: u32, height: u32, alg: ResizeAlg) -> Result<RgbImage, ImageError> {
    if (width, height) == rgb.dimensions() {
        return Ok(rgb.clone());
    }
    let mut dst = ResizeImage::new(width, height, PixelType::U8x3);
    Resizer::new()
        .resize(rgb, &mut dst, &ResizeOptions::new().resize_alg(alg))
        .map_err(|e| ImageError::Corrupt(format!("resize failed: {e}")))?;
    RgbImage::from_raw(width, height, dst.into_vec()).ok_or(ImageError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> PreprocessConfig {
        serde_json::from_str(r#"{"crop_size":{"height":224,"width":224},"size":{"shortest_edge":224},"resample":3}"#).unwrap()
    }

    #[test]
    fn siglip_resizes_to_the_square_without_a_crop() {
        let c = PreprocessConfig::from_json(
            r#"{"image_processor_type":"SiglipImageProcessor","size":{"height":256,"width":256},"image_mean":[0.5,0.5,0.5],"image_std":[0.5,0.5,0.5],"resample":2}"#,
        )
        .unwrap();
        assert!(!c.do_center_crop);
        assert_eq!(c.resized_size(640, 80), (256, 256));
        assert_eq!(c.output_size(), (256, 256));
        let t = pixel_tensor(&RgbImage::from_pixel(640, 80, image::Rgb([255, 0, 128])), &c).unwrap();
        assert_eq!(t.shape(), &[3, 256, 256]);
        assert!((t[[0, 0, 0]] - 1.0).abs() < 1e-6 && (t[[1, 255, 255]] + 1.0).abs() < 1e-6, "mean/std 0.5 maps 0..255 to -1..1");
        // A CLIP config without the key keeps cropping, as before.
        let clip = PreprocessConfig::from_json(r#"{"image_processor_type":"CLIPImageProcessor"}"#).unwrap();
        assert!(clip.do_center_crop);
    }

    #[test]
    fn shortest_edge_resize_truncates_the_long_side_like_transformers() {
        let c = clip();
        assert_eq!(c.resized_size(640, 480), (298, 224)); // 224*640/480 = 298.67
        assert_eq!(c.resized_size(480, 640), (224, 298));
        assert_eq!(c.resized_size(320, 40), (1792, 224));
        assert_eq!(c.resized_size(224, 224), (224, 224));
    }

    #[test]
    #[allow(clippy::excessive_precision)]
    fn tensor_has_model_shape_and_normalised_values() {
        let img = RgbImage::from_pixel(300, 200, image::Rgb([255, 0, 128]));
        let t = pixel_tensor(&img, &clip()).unwrap();
        assert_eq!(t.shape(), &[3, 224, 224]);
        let expect_r = (1.0 - 0.481_454_66) / 0.268_629_54;
        assert!((t[[0, 100, 100]] - expect_r).abs() < 1e-5);
        let expect_g = (0.0 - 0.457_827_5) / 0.261_302_58;
        assert!((t[[1, 0, 0]] - expect_g).abs() < 1e-5);
    }

    #[test]
    fn garbage_is_not_an_image() {
        let err = decode(b"definitely not an image", &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, ImageError::UnsupportedFormat), "{err}");
    }

    #[test]
    fn oversized_dimensions_are_refused_before_decoding() {
        // A PNG header claiming 100000 x 100000 pixels: the decoder must not try to allocate it.
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png).write_image(&[0u8; 3 * 4], 2, 2, image::ExtendedColorType::Rgb8).unwrap();
        // Patch IHDR width/height (bytes 16..24) and its CRC.
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode(&png, &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, ImageError::TooManyPixels { .. }), "{err}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    use image::ImageEncoder;
}
