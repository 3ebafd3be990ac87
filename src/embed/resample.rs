//! Pillow's convolution resize, re-done exactly: `Image.resize` with a bicubic, bilinear,
//! box, Hamming or Lanczos filter on 8-bit images (`libImaging/Resample.c`), which is what the
//! `transformers` image processors run.
//!
//! Same kernel support, same window bounds, same weights rounded to 22-bit fixed point, the
//! same choice of which pass runs first, each pass clipped to 8 bits: so the output is
//! Pillow's to the level (checked against Pillow 13.0 on the fixtures). `fast_image_resize` is
//! not: the code before this module ran its passes horizontal first, while Pillow runs the
//! vertical one first when the height shrinks more than twice as much as the width (portrait
//! pictures squashed to SigLIP's square; up to 10 levels off on the fixtures), and even in
//! Pillow's order its 16-bit weights leave up to 2 levels.
//!
//! Speed comes from the layout, not from approximation: integer sums are exact in any order,
//! so the horizontal pass multiplies fixed-length blocks of 8 RGB pixels against weights
//! padded with zeros (AVX2 picked at run time, a portable loop otherwise), and
//! [`resize_window`] computes only the pixels a centre crop keeps. Pure functions, no image
//! I/O, single-threaded: the engine already decodes and preprocesses one image per core.

use image::RgbImage;

/// Pillow's `PRECISION_BITS`: weights are integers scaled by 2^22.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A Pillow resampling filter (`Image.Resampling`), by its id in `preprocessor_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Filter {
    /// Pillow ids 1..5; `None` for 0 (nearest, not a convolution) and unknown ids.
    pub fn from_pillow(id: u8) -> Option<Self> {
        match id {
            1 => Some(Filter::Lanczos),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            4 => Some(Filter::Box),
            5 => Some(Filter::Hamming),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Filter::Bicubic => {
                // a = -0.5, as Pillow.
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if -3.0 < x && x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// For each output position: the first input position and the fixed-point weights from there.
struct Coefficients {
    starts: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the output positions `outputs` of
/// an axis (all of them for a plain resize; the crop window's when only that is kept).
fn coefficients(in_size: u32, out_size: u32, outputs: std::ops::Range<u32>, filter: Filter) -> Coefficients {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut starts = Vec::with_capacity(outputs.len());
    let mut weights = Vec::with_capacity(outputs.len());
    for xx in outputs {
        let center = (f64::from(xx) + 0.5) * scale;
        // C's (int) cast truncates toward zero; both bounds are then clamped.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
        let ss = 1.0 / filterscale;
        let taps: Vec<f64> = (xmin..xmax.max(xmin)).map(|x| filter.weight((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = taps.iter().sum();
        let fixed = taps
            .iter()
            .map(|w| {
                let w = if total != 0.0 { w / total } else { *w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        starts.push(xmin as usize);
        weights.push(fixed);
    }
    Coefficients { starts, weights }
}

/// Pillow's `clip8`: drop the fraction (rounding was added up front) and clamp to a byte.
/// Sums are `i32`, as Pillow's: the weights of a window add up to 2^22, so a sum stays within
/// about 255 * 2^22 * (1 + the negative lobes) < 2^31.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Part of the resized image to compute: the rest is thrown away by the caller (CLIP's centre
/// crop), so its pixels need not be computed. The kept pixels are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Resizes as Pillow's `Image.resize((width, height), filter)` does an RGB image.
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_window(src, width, height, filter, Window { x: 0, y: 0, width, height })
}

/// [`resize`], then the `window` cut out of the result, without computing the pixels outside it.
/// A window that does not fit in `width` x `height` is clamped into it.
pub fn resize_window(src: &RgbImage, width: u32, height: u32, filter: Filter, window: Window) -> RgbImage {
    let x = window.x.min(width);
    let y = window.y.min(height);
    let cols = x..x + window.width.min(width - x);
    let rows = y..y + window.height.min(height - y);
    let (need_horizontal, need_vertical) = (width != src.width(), height != src.height());
    // Pillow (`ImagingResampleInner`, since 10.x): when the height shrinks more than twice as
    // much as the width, the vertical pass runs first. Each pass rounds to 8 bits, so the order
    // shows in the output. The order follows the full sizes, not the window.
    let height_drop = i64::from(src.height()) - i64::from(height);
    let width_drop = i64::from(src.width()) - i64::from(width);
    let horizontal_first = !(height_drop > 0 && height_drop > width_drop * 2);
    let resized = match (need_horizontal, need_vertical) {
        (false, false) => None,
        (true, false) => Some(horizontal_pass(src, width, cols.clone(), filter)),
        (false, true) => Some(vertical_pass(src, height, rows.clone(), filter)),
        (true, true) if horizontal_first => {
            Some(vertical_pass(&horizontal_pass(src, width, cols.clone(), filter), height, rows.clone(), filter))
        }
        (true, true) => Some(horizontal_pass(&vertical_pass(src, height, rows.clone(), filter), width, cols.clone(), filter)),
    };
    // An axis that was not resized still has all of its pixels: cut the window out of it.
    let (cx, cy) = (if need_horizontal { 0 } else { cols.start }, if need_vertical { 0 } else { rows.start });
    let (cw, ch) = (cols.len() as u32, rows.len() as u32);
    match resized {
        Some(img) if (cx, cy, cw, ch) == (0, 0, img.width(), img.height()) => img,
        Some(img) => image::imageops::crop_imm(&img, cx, cy, cw, ch).to_image(),
        None => image::imageops::crop_imm(src, cx, cy, cw, ch).to_image(),
    }
}

/// Input values summed per step of the horizontal kernel: 8 RGB pixels, a whole number of
/// SIMD vectors of `i32` (3 x 8 lanes with AVX2) that also cycles through R, G, B evenly.
const LANES: usize = 24;

/// Horizontal weights laid out for [`horizontal_rows`]: every window padded with zero weights
/// to the same multiple of 8 taps, each weight repeated for R, G and B, and windows that would
/// then run past the right edge moved left (with their weights moved right to match), so the
/// kernel is a fixed-length multiply-add with no edge cases and no bounds checks inside.
struct Horizontal {
    /// Byte offset of each window in its row.
    starts: Vec<usize>,
    /// Values (3 per tap) in every window.
    values: usize,
    weights: Vec<i32>,
}

impl Horizontal {
    /// `None` when the padded window is wider than the input row (tiny inputs).
    fn new(c: &Coefficients, in_width: usize) -> Option<Self> {
        let taps = c.weights.iter().map(Vec::len).max().unwrap_or(0).div_ceil(LANES / 3).max(1) * (LANES / 3);
        if taps > in_width {
            return None;
        }
        let mut starts = Vec::with_capacity(c.starts.len());
        let mut weights = vec![0i32; c.starts.len() * taps * 3];
        for ((&start, w), out) in c.starts.iter().zip(&c.weights).zip(weights.chunks_exact_mut(taps * 3)) {
            let moved = start.min(in_width - taps);
            for (i, &v) in w.iter().enumerate() {
                out[(start - moved + i) * 3..][..3].fill(v);
            }
            starts.push(moved * 3);
        }
        Some(Self { starts, values: taps * 3, weights })
    }
}

/// The horizontal pass over whole rows; `out` holds `h.starts.len()` RGB pixels per input row.
#[inline(always)]
fn horizontal_rows_generic(src: &[u8], in_row: usize, h: &Horizontal, out: &mut [u8]) {
    let out_len = h.starts.len() * 3;
    for (row, out_row) in src.chunks_exact(in_row).zip(out.chunks_exact_mut(out_len)) {
        for ((&start, weights), px) in h.starts.iter().zip(h.weights.chunks_exact(h.values)).zip(out_row.chunks_exact_mut(3)) {
            let window = &row[start..start + h.values];
            let mut acc = [0i32; LANES];
            for (v, w) in window.chunks_exact(LANES).zip(weights.chunks_exact(LANES)) {
                for l in 0..LANES {
                    acc[l] += i32::from(v[l]) * w[l];
                }
            }
            // Integer sums are exact in any order: lane l holds channel l % 3.
            let mut sum = [HALF; 3];
            for (l, a) in acc.iter().enumerate() {
                sum[l % 3] += a;
            }
            px.copy_from_slice(&sum.map(clip8));
        }
    }
}

/// The same loop with AVX2 written out: LLVM left part of the generic one in 4-lane registers.
/// Each block is 24 bytes widened to three 8 x `i32` vectors and multiplied by its 24 weights.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn horizontal_rows_avx2(src: &[u8], in_row: usize, h: &Horizontal, out: &mut [u8]) {
    use std::arch::x86_64::{__m128i, __m256i, _mm256_add_epi32, _mm256_cvtepu8_epi32, _mm256_loadu_si256};
    use std::arch::x86_64::{_mm256_mullo_epi32, _mm256_setzero_si256, _mm256_storeu_si256, _mm_loadl_epi64};
    let out_len = h.starts.len() * 3;
    for (row, out_row) in src.chunks_exact(in_row).zip(out.chunks_exact_mut(out_len)) {
        for ((&start, weights), px) in h.starts.iter().zip(h.weights.chunks_exact(h.values)).zip(out_row.chunks_exact_mut(3)) {
            let window = &row[start..start + h.values];
            let mut acc = [_mm256_setzero_si256(); 3];
            for (v, w) in window.chunks_exact(LANES).zip(weights.chunks_exact(LANES)) {
                for (k, a) in acc.iter_mut().enumerate() {
                    // SAFETY: `v` holds 24 bytes and `w` 24 weights (`chunks_exact`): the 8 bytes
                    // and 8 weights read from offset 8k (k < 3) are inside them.
                    let (pixels, weights) = unsafe {
                        (
                            _mm256_cvtepu8_epi32(_mm_loadl_epi64(v.as_ptr().add(8 * k).cast::<__m128i>())),
                            _mm256_loadu_si256(w.as_ptr().add(8 * k).cast::<__m256i>()),
                        )
                    };
                    *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(pixels, weights));
                }
            }
            let mut lanes = [0i32; LANES];
            for (k, a) in acc.iter().enumerate() {
                // SAFETY: `lanes` has room for 8 `i32` at offset 8k, k < 3.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().add(8 * k).cast::<__m256i>(), *a) };
            }
            // Integer sums are exact in any order: lane l holds channel l % 3.
            let mut sum = [HALF; 3];
            for (l, a) in lanes.iter().enumerate() {
                sum[l % 3] += a;
            }
            px.copy_from_slice(&sum.map(clip8));
        }
    }
}

fn horizontal_rows(src: &[u8], in_row: usize, h: &Horizontal, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { horizontal_rows_avx2(src, in_row, h, out) };
    }
    horizontal_rows_generic(src, in_row, h, out)
}

/// The horizontal pass for output columns `cols` of a resize to `width`.
fn horizontal_pass(src: &RgbImage, width: u32, cols: std::ops::Range<u32>, filter: Filter) -> RgbImage {
    let out_width = cols.len() as u32;
    let c = coefficients(src.width(), width, cols, filter);
    let in_row = src.width() as usize * 3;
    let mut out = vec![0u8; out_width as usize * src.height() as usize * 3];
    match Horizontal::new(&c, src.width() as usize) {
        Some(h) => horizontal_rows(src.as_raw(), in_row, &h, &mut out),
        None => {
            // Rows narrower than a padded window: pad each row with black, which the zero
            // weights past its end never use.
            let taps = c.weights.iter().map(Vec::len).max().unwrap_or(0).div_ceil(LANES / 3).max(1) * (LANES / 3);
            let h = Horizontal::new(&c, taps).expect("resample: a window fits its own width: this is a bug");
            let mut padded = vec![0u8; taps * 3];
            for (row, out_row) in src.as_raw().chunks_exact(in_row).zip(out.chunks_exact_mut(out_width as usize * 3)) {
                padded[..in_row].copy_from_slice(row);
                horizontal_rows(&padded, taps * 3, &h, out_row);
            }
        }
    }
    RgbImage::from_raw(out_width, src.height(), out).expect("resample: buffer size matches the image: this is a bug")
}

#[inline(always)]
fn vertical_rows_generic(src: &[u8], row_len: usize, c: &Coefficients, out: &mut [u8]) {
    let mut sums = vec![HALF; row_len];
    for ((start, weights), out_row) in c.starts.iter().zip(&c.weights).zip(out.chunks_exact_mut(row_len)) {
        sums.fill(HALF);
        for (i, &w) in weights.iter().enumerate() {
            let in_row = &src[(start + i) * row_len..][..row_len];
            for (s, &v) in sums.iter_mut().zip(in_row) {
                *s += i32::from(v) * w;
            }
        }
        for (o, &s) in out_row.iter_mut().zip(&sums) {
            *o = clip8(s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_rows_avx2(src: &[u8], row_len: usize, c: &Coefficients, out: &mut [u8]) {
    vertical_rows_generic(src, row_len, c, out)
}

/// The vertical pass for output rows `rows` of a resize to `height`.
fn vertical_pass(src: &RgbImage, height: u32, rows: std::ops::Range<u32>, filter: Filter) -> RgbImage {
    let out_height = rows.len() as u32;
    let c = coefficients(src.height(), height, rows, filter);
    let row_len = src.width() as usize * 3;
    let mut out = vec![0u8; row_len * out_height as usize];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { vertical_rows_avx2(src.as_raw(), row_len, &c, &mut out) };
        return RgbImage::from_raw(src.width(), out_height, out).expect("resample: buffer size matches the image: this is a bug");
    }
    vertical_rows_generic(src.as_raw(), row_len, &c, &mut out);
    RgbImage::from_raw(src.width(), out_height, out).expect("resample: buffer size matches the image: this is a bug")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for filter in [Filter::Bicubic, Filter::Bilinear, Filter::Lanczos, Filter::Box, Filter::Hamming] {
            for (from, to) in [(320, 224), (240, 224), (640, 298), (100, 300)] {
                let c = coefficients(from, to, 0..to, filter);
                for w in &c.weights {
                    let total: i64 = w.iter().map(|&v| i64::from(v)).sum();
                    assert!((total - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{filter:?} {from}->{to}: {total}");
                }
            }
        }
    }

    /// The straightforward form of Pillow's loops (the first version of this module): the fast
    /// kernels must give the same bytes.
    fn reference(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
        let horizontal = |img: &RgbImage| {
            let c = coefficients(img.width(), width, 0..width, filter);
            RgbImage::from_fn(width, img.height(), |x, y| {
                let mut sum = [HALF; 3];
                for (i, &w) in c.weights[x as usize].iter().enumerate() {
                    let p = img.get_pixel((c.starts[x as usize] + i) as u32, y).0;
                    (0..3).for_each(|k| sum[k] += i32::from(p[k]) * w);
                }
                image::Rgb(sum.map(clip8))
            })
        };
        let vertical = |img: &RgbImage| {
            let c = coefficients(img.height(), height, 0..height, filter);
            RgbImage::from_fn(img.width(), height, |x, y| {
                let mut sum = [HALF; 3];
                for (i, &w) in c.weights[y as usize].iter().enumerate() {
                    let p = img.get_pixel(x, (c.starts[y as usize] + i) as u32).0;
                    (0..3).for_each(|k| sum[k] += i32::from(p[k]) * w);
                }
                image::Rgb(sum.map(clip8))
            })
        };
        let height_drop = i64::from(src.height()) - i64::from(height);
        let width_drop = i64::from(src.width()) - i64::from(width);
        let (h, v) = (width != src.width(), height != src.height());
        match (h, v) {
            (false, false) => src.clone(),
            (true, false) => horizontal(src),
            (false, true) => vertical(src),
            _ if !(height_drop > 0 && height_drop > width_drop * 2) => vertical(&horizontal(src)),
            _ => horizontal(&vertical(src)),
        }
    }

    /// Hard edges and saturated colours, where each pass clips and any rounding slip shows.
    fn test_image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let stripe = if (x / 3 + y / 5) % 2 == 0 { 255 } else { 0 };
            image::Rgb([stripe, ((x * 31 + y * 17) ^ (x * y)) as u8, (x * 255 / w) as u8])
        })
    }

    #[test]
    fn fast_kernels_equal_the_plain_loops_and_windows_equal_crops() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(n)) as u32
        };
        let filters = [Filter::Bicubic, Filter::Bilinear, Filter::Lanczos, Filter::Box, Filter::Hamming];
        let mut cases = vec![(640, 480, 298, 224), (480, 640, 224, 224), (320, 40, 256, 256), (20, 15, 224, 224), (3, 700, 9, 5)];
        for _ in 0..60 {
            cases.push((1 + next(500), 1 + next(500), 1 + next(300), 1 + next(300)));
        }
        for (i, &(w, h, ow, oh)) in cases.iter().enumerate() {
            let img = test_image(w, h);
            let filter = filters[i % filters.len()];
            let expected = reference(&img, ow, oh, filter);
            assert_eq!(resize(&img, ow, oh, filter).as_raw(), expected.as_raw(), "{w}x{h} -> {ow}x{oh} {filter:?}");
            let (x, y) = (next(ow), next(oh));
            let window = Window { x, y, width: 1 + next(ow - x), height: 1 + next(oh - y) };
            let cut = image::imageops::crop_imm(&expected, x, y, window.width, window.height).to_image();
            assert_eq!(resize_window(&img, ow, oh, filter, window).as_raw(), cut.as_raw(), "{w}x{h} -> {ow}x{oh} {window:?}");
        }
    }

    /// The portable kernel, which machines without AVX2 run, gives the same bytes as the AVX2 one.
    #[test]
    fn portable_horizontal_kernel_equals_the_dispatched_one() {
        for (w, h, ow) in [(640, 7, 298), (4000, 3, 224), (37, 5, 300), (300, 4, 299)] {
            let img = test_image(w, h);
            let c = coefficients(w, ow, 0..ow, Filter::Bicubic);
            let kernel = Horizontal::new(&c, w as usize).expect("windows fit these widths");
            let (mut portable, mut dispatched) = (vec![0u8; (ow * h * 3) as usize], vec![0u8; (ow * h * 3) as usize]);
            horizontal_rows_generic(img.as_raw(), w as usize * 3, &kernel, &mut portable);
            horizontal_rows(img.as_raw(), w as usize * 3, &kernel, &mut dispatched);
            assert_eq!(portable, dispatched, "{w}x{h} -> {ow}");
        }
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let img = RgbImage::from_pixel(97, 53, image::Rgb([10, 128, 250]));
        let out = resize(&img, 31, 77, Filter::Bicubic);
        assert!(out.pixels().all(|p| p.0 == [10, 128, 250]));
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release --lib resample::timing -- --ignored --nocapture`: single-thread
    /// medians for a photo resized the CLIP way (shortest edge 224, centre crop) and the SigLIP way
    /// (straight to 224x224), this module against fast_image_resize run one pass at a time (the
    /// code before it). Interleaved, so a busy machine slows both alike.
    #[test]
    #[ignore]
    fn resize_cost_against_fast_image_resize() {
        use fast_image_resize::{images::Image as RI, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
        let fir_pass = |img: &RgbImage, w: u32, h: u32| {
            let mut dst = RI::new(w, h, PixelType::U8x3);
            let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
            Resizer::new().resize(img, &mut dst, &options).unwrap();
            RgbImage::from_raw(w, h, dst.into_vec()).unwrap()
        };
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (w, h) in [(640, 480), (4000, 3000)] {
            let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + y) as u8, (x ^ y) as u8, (y * 3) as u8]));
            for (kind, ow, oh) in [("CLIP", w * 224 / h, 224), ("SigLIP", 224, 224)] {
                let window = Window { x: (ow - 224) / 2, y: 0, width: 224, height: 224 };
                let (mut ours, mut fir) = (Vec::new(), Vec::new());
                for _ in 0..15 {
                    let t = std::time::Instant::now();
                    std::hint::black_box(resize_window(&img, ow, oh, Filter::Bicubic, window));
                    ours.push(t.elapsed().as_secs_f64() * 1e3);
                    let t = std::time::Instant::now();
                    let horizontal = fir_pass(&img, ow, h);
                    let full = fir_pass(&horizontal, ow, oh);
                    std::hint::black_box(image::imageops::crop_imm(&full, window.x, 0, 224, 224).to_image());
                    fir.push(t.elapsed().as_secs_f64() * 1e3);
                }
                println!("{w}x{h} {kind} -> {ow}x{oh}: ours {:.2} ms, fast_image_resize {:.2} ms", median(ours), median(fir));
            }
        }
    }
}
