//! Pillow's convolution resize, re-done exactly: `Image.resize` with a bicubic, bilinear,
//! box, Hamming or Lanczos filter on 8-bit images (`libImaging/Resample.c`), which is what the
//! `transformers` image processors run.
//!
//! Same kernel support, same window bounds, same weights rounded to 22-bit fixed point, the
//! same choice of which pass runs first, each pass clipped to 8 bits: so the output is
//! Pillow's to the level (checked against Pillow 13.0 on the fixtures). `fast_image_resize` rounds its weights differently and can
//! be several levels off where a strong edge meets a non-integer scale (seen on SigLIP's square
//! resize, up to 6 levels); pure functions, no image I/O.

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

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a whole axis.
fn coefficients(in_size: u32, out_size: u32, filter: Filter) -> Coefficients {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut starts = Vec::with_capacity(out_size as usize);
    let mut weights = Vec::with_capacity(out_size as usize);
    for xx in 0..out_size {
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

/// Resizes as Pillow's `Image.resize((width, height), filter)` does an RGB image.
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (need_horizontal, need_vertical) = (width != src.width(), height != src.height());
    // Pillow (`ImagingResampleInner`, since 10.x): when the height shrinks more than twice as
    // much as the width, the vertical pass runs first. Each pass rounds to 8 bits, so the order
    // shows in the output.
    let height_drop = i64::from(src.height()) - i64::from(height);
    let width_drop = i64::from(src.width()) - i64::from(width);
    let horizontal_first = !(height_drop > 0 && height_drop > width_drop * 2);
    match (need_horizontal, need_vertical) {
        (false, false) => src.clone(),
        (true, false) => horizontal_pass(src, width, filter),
        (false, true) => vertical_pass(src, height, filter),
        (true, true) if horizontal_first => vertical_pass(&horizontal_pass(src, width, filter), height, filter),
        (true, true) => horizontal_pass(&vertical_pass(src, height, filter), width, filter),
    }
}

fn horizontal_pass(src: &RgbImage, width: u32, filter: Filter) -> RgbImage {
    let c = coefficients(src.width(), width, filter);
    let in_row = src.width() as usize * 3;
    let raw = src.as_raw();
    let mut out = Vec::with_capacity(width as usize * src.height() as usize * 3);
    for row in raw.chunks_exact(in_row) {
        for (&start, weights) in c.starts.iter().zip(&c.weights) {
            let window = &row[start * 3..(start + weights.len()) * 3];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (px, &w) in window.chunks_exact(3).zip(weights) {
                r += i32::from(px[0]) * w;
                g += i32::from(px[1]) * w;
                b += i32::from(px[2]) * w;
            }
            out.extend([clip8(r), clip8(g), clip8(b)]);
        }
    }
    RgbImage::from_raw(width, src.height(), out).expect("resample: buffer size matches the image: this is a bug")
}

fn vertical_pass(src: &RgbImage, height: u32, filter: Filter) -> RgbImage {
    let c = coefficients(src.height(), height, filter);
    let row_len = src.width() as usize * 3;
    let raw = src.as_raw();
    let mut out = vec![0u8; row_len * height as usize];
    let mut sums = vec![0i32; row_len];
    for ((start, weights), out_row) in c.starts.iter().zip(&c.weights).zip(out.chunks_exact_mut(row_len)) {
        sums.iter_mut().for_each(|s| *s = HALF);
        for (i, &w) in weights.iter().enumerate() {
            let in_row = &raw[(start + i) * row_len..(start + i + 1) * row_len];
            for (s, &v) in sums.iter_mut().zip(in_row) {
                *s += i32::from(v) * w;
            }
        }
        for (o, &s) in out_row.iter_mut().zip(&sums) {
            *o = clip8(s);
        }
    }
    RgbImage::from_raw(src.width(), height, out).expect("resample: buffer size matches the image: this is a bug")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for filter in [Filter::Bicubic, Filter::Bilinear, Filter::Lanczos, Filter::Box, Filter::Hamming] {
            for (from, to) in [(320, 224), (240, 224), (640, 298), (100, 300)] {
                let c = coefficients(from, to, filter);
                for w in &c.weights {
                    let total: i64 = w.iter().map(|&v| i64::from(v)).sum();
                    assert!((total - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{filter:?} {from}->{to}: {total}");
                }
            }
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

    /// `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo test --lib resample::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn resize_cost_against_fast_image_resize() {
        use fast_image_resize::{images::Image as RI, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
        for (w, h, ow, oh) in [(640, 480, 298, 224), (4032, 3024, 298, 224), (4032, 3024, 224, 224), (1024, 768, 256, 256)] {
            let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + y) as u8, (x ^ y) as u8, (y * 3) as u8]));
            let t = std::time::Instant::now();
            for _ in 0..5 {
                std::hint::black_box(resize(&img, ow, oh, Filter::Bicubic));
            }
            let ours = t.elapsed().as_secs_f64() / 5.0 * 1e3;
            let t = std::time::Instant::now();
            for _ in 0..5 {
                let mut dst = RI::new(ow, oh, PixelType::U8x3);
                Resizer::new()
                    .resize(&img, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom)))
                    .unwrap();
                std::hint::black_box(dst);
            }
            let fir = t.elapsed().as_secs_f64() / 5.0 * 1e3;
            println!("{w}x{h} -> {ow}x{oh}: ours {ours:.1} ms, fast_image_resize {fir:.1} ms");
        }
    }
}
