//! Decoded AVIF YCbCr planes -> 8-bit RGB, computed the way libavif (1.4) with libyuv does it.
//!
//! Why not libheif's own conversion: the reference reads AVIF with Pillow + pillow-avif-plugin,
//! i.e. libavif's `avifImageYUVToRGB` to 8-bit `AVIF_RGB_FORMAT_RGB` (RGBA when the file has
//! alpha) with the default `AVIF_CHROMA_UPSAMPLING_AUTOMATIC`. libavif hands that to libyuv's
//! fixed-point code, whose rounding, chroma upsampling and (for 10/12-bit) reduction to 8 bits
//! differ from libheif's by up to a few levels. The AV1 decoding itself is the same in both, so
//! taking libheif's YCbCr planes and redoing libavif's arithmetic gives its pixels exactly.
//!
//! What libavif does (reformat.c, reformat_libyuv.c), and what is reproduced here:
//! * Matrix (`getLibYUVConstants`): BT.601/BT.470BG/unspecified -> libyuv's `I601` (limited
//!   range) or `JPEG` (full) constants, BT.709 -> `H709`/`F709`, BT.2020 NCL -> `2020`/`V2020`,
//!   chroma-derived NCL by its colour primaries. Any other matrix: libavif's float code, which
//!   is not reproduced ([`Matrix::for_cicp`] says `None` and the caller falls back to libheif).
//! * 8-bit: `I420ToRGB24MatrixFilter` / `I422ToRGB24MatrixFilter` (bilinear) /
//!   `I444ToRGB24Matrix`.
//! * 10/12-bit to RGB (and 12-bit with alpha): libyuv has no deep RGB24 functions, so libavif
//!   first reduces every plane to 8 bits with `Convert16To8Plane` (`v >> (depth - 8)`,
//!   truncating) and then does the 8-bit conversion.
//! * 10-bit with alpha: `I010/I210AlphaToARGBMatrixFilter`, `I410AlphaToARGBMatrix`: chroma is
//!   upsampled at 10 bits, then `YuvPixel10` (`y32 = y << 6 | y >> 4`, chroma `min(c >> 2, 255)`).
//! * Chroma upsampling (libyuv `ScaleRowUp2_Linear_Any` / `ScaleRowUp2_Bilinear_Any`): centred
//!   chroma, weights 3:1 (and 9:3:3:1 in 2-D) with one rounding, edges replicated; the first row
//!   and, for even heights, the last row use the horizontal filter only.
//! * Pixel (`YuvPixel`): `y1 = (y * 0x0101 * yg >> 16) + yb`, `b = y1 + (u-128)*ub`,
//!   `g = y1 - ((u-128)*ug + (v-128)*vg)`, `r = y1 + (v-128)*vr`, each `>> 6` clamped to 0..=255.
//! * Monochrome (4:0:0): libyuv has no RGB24 function, so libavif's own `avifImageYUV8ToRGB8Mono`
//!   / `avifImageYUV16ToRGB8Mono`: `(u8)(0.5f + clamp((y - biasY) / rangeY, 0, 1) * 255)` in f32.
//!
//! Verified against Pillow + pillow-avif-plugin 1.6.0 (libavif 1.4.2, libyuv 1924) on 8/10/12-bit
//! 4:2:0/4:2:2/4:4:4/4:0:0, full and limited range, BT.601/709/2020/unspecified, odd and even
//! sizes, with and without alpha: every pixel equal.

use crate::embed::error::ImageError;

/// How the chroma planes are subsampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subsampling {
    /// 4:2:0: half width, half height.
    S420,
    /// 4:2:2: half width.
    S422,
    /// 4:4:4: full resolution.
    S444,
    /// 4:0:0: luma only.
    Mono,
}

/// One libyuv `YuvConstants` set: `(ub, ug, vg, vr, yg, yb)` from libyuv's row_common.cc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matrix {
    ub: i32,
    ug: i32,
    vg: i32,
    vr: i32,
    yg: u32,
    yb: i32,
}

impl Matrix {
    const I601: Matrix = Matrix { ub: 128, ug: 25, vg: 52, vr: 102, yg: 18997, yb: -1160 };
    const JPEG: Matrix = Matrix { ub: 113, ug: 22, vg: 46, vr: 90, yg: 16320, yb: 32 };
    const H709: Matrix = Matrix { ub: 128, ug: 14, vg: 34, vr: 115, yg: 18997, yb: -1160 };
    const F709: Matrix = Matrix { ub: 119, ug: 12, vg: 30, vr: 101, yg: 16320, yb: 32 };
    const BT2020: Matrix = Matrix { ub: 128, ug: 12, vg: 42, vr: 107, yg: 19003, yb: -1160 };
    const V2020: Matrix = Matrix { ub: 120, ug: 11, vg: 37, vr: 94, yg: 16320, yb: 32 };

    /// libavif's `getLibYUVConstants`: the constants for CICP matrix coefficients / colour
    /// primaries and range, or `None` where libavif leaves libyuv for its own float code.
    pub(crate) fn for_cicp(matrix_coefficients: u16, color_primaries: u16, full_range: bool) -> Option<Matrix> {
        #[derive(Clone, Copy)]
        enum Kind {
            Bt601,
            Bt709,
            Bt2020,
        }
        let kind = match matrix_coefficients {
            1 => Kind::Bt709,
            2 | 5 | 6 => Kind::Bt601,
            9 => Kind::Bt2020,
            // Chroma-derived NCL: by the colour primaries.
            12 => match color_primaries {
                1 | 2 => Kind::Bt709,
                5 | 6 => Kind::Bt601,
                9 => Kind::Bt2020,
                _ => return None,
            },
            _ => return None,
        };
        Some(match (kind, full_range) {
            (Kind::Bt601, false) => Self::I601,
            (Kind::Bt601, true) => Self::JPEG,
            (Kind::Bt709, false) => Self::H709,
            (Kind::Bt709, true) => Self::F709,
            (Kind::Bt2020, false) => Self::BT2020,
            (Kind::Bt2020, true) => Self::V2020,
        })
    }

    /// libyuv's `YuvPixel` after `y32` (the luma scaled to 16 bits) and 8-bit chroma.
    #[inline]
    fn pixel(&self, y32: u32, u: u16, v: u16) -> [u8; 3] {
        self.pixel_from(self.luma(y32), u, v)
    }

    /// The luma term of `YuvPixel`: `(y32 * yg >> 16) + yb`.
    #[inline]
    fn luma(&self, y32: u32) -> i32 {
        ((y32.wrapping_mul(self.yg) >> 16) as i32) + self.yb
    }

    /// The luma term for every 8-bit sample (`y32 = y * 0x0101`), looked up per pixel.
    fn luma_table(&self) -> [i32; 256] {
        std::array::from_fn(|y| self.luma(y as u32 * 0x0101))
    }

    /// `YuvPixel` from its luma term `y1` and 8-bit chroma.
    #[inline]
    fn pixel_from(&self, y1: i32, u: u16, v: u16) -> [u8; 3] {
        let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
        let b = y1 + u * self.ub;
        let g = y1 - (u * self.ug + v * self.vg);
        let r = y1 + v * self.vr;
        [clamp8(r >> 6), clamp8(g >> 6), clamp8(b >> 6)]
    }
}

#[inline]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// One plane as libheif hands it over: rows of `stride` bytes, samples of 1 byte (8-bit) or 2
/// native-endian bytes (deeper).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

/// A decoded picture's YCbCr planes and how to read them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct YuvPicture<'a> {
    pub width: u32,
    pub height: u32,
    /// Bits per sample: 8, 10 or 12.
    pub depth: u8,
    pub full_range: bool,
    pub subsampling: Subsampling,
    /// `None` for monochrome only.
    pub matrix: Option<Matrix>,
    pub y: Plane<'a>,
    /// Cb and Cr (absent for monochrome).
    pub chroma: Option<(Plane<'a>, Plane<'a>)>,
    /// The file has an alpha plane (the reference then asks libavif for RGBA, which changes the
    /// 10-bit path; alpha itself is dropped, as `convert("RGB")` does).
    pub has_alpha: bool,
}

fn corrupt(what: &str) -> ImageError {
    ImageError::Corrupt(format!("AVIF: {what}"))
}

/// Reads one row of a plane as `u16` samples into `out` (`out.len()` samples).
fn read_row(plane: &Plane<'_>, row: usize, deep: bool, out: &mut [u16]) -> Result<(), ImageError> {
    let bytes = if deep { 2 } else { 1 };
    let start = row.checked_mul(plane.stride).ok_or_else(|| corrupt("plane too large"))?;
    let line = plane.data.get(start..start + out.len() * bytes).ok_or_else(|| corrupt("short YCbCr plane"))?;
    if deep {
        for (o, s) in out.iter_mut().zip(line.chunks_exact(2)) {
            *o = u16::from_ne_bytes([s[0], s[1]]);
        }
    } else {
        for (o, &s) in out.iter_mut().zip(line) {
            *o = u16::from(s);
        }
    }
    Ok(())
}

/// libyuv `ScaleRowUp2_Linear_Any_C`: a half-width row to `out.len()` samples.
fn upsample_linear(src: &[u16], out: &mut [u16]) {
    let w = out.len();
    if w == 0 {
        return;
    }
    out[0] = src[0];
    let n = ((w - 1) & !1) / 2;
    for x in 0..n {
        let (a, b) = (u32::from(src[x]), u32::from(src[x + 1]));
        out[2 * x + 1] = ((3 * a + b + 2) >> 2) as u16;
        out[2 * x + 2] = ((a + 3 * b + 2) >> 2) as u16;
    }
    out[w - 1] = src[(w - 1) / 2];
}

/// One output row of libyuv `ScaleRowUp2_Bilinear_Any_C`: `near` is the chroma row weighted 3,
/// `far` the one weighted 1 (vertically).
fn upsample_bilinear(near: &[u16], far: &[u16], out: &mut [u16]) {
    let w = out.len();
    if w == 0 {
        return;
    }
    let (n0, f0) = (u32::from(near[0]), u32::from(far[0]));
    out[0] = ((3 * n0 + f0 + 2) >> 2) as u16;
    let pairs = ((w - 1) & !1) / 2;
    for x in 0..pairs {
        let (n0, n1) = (u32::from(near[x]), u32::from(near[x + 1]));
        let (f0, f1) = (u32::from(far[x]), u32::from(far[x + 1]));
        out[2 * x + 1] = ((9 * n0 + 3 * n1 + 3 * f0 + f1 + 8) >> 4) as u16;
        out[2 * x + 2] = ((3 * n0 + 9 * n1 + f0 + 3 * f1 + 8) >> 4) as u16;
    }
    let m = (w - 1) / 2;
    let (nm, fm) = (u32::from(near[m]), u32::from(far[m]));
    out[w - 1] = ((3 * nm + fm + 2) >> 2) as u16;
}

/// The chroma rows a conversion is working between, read (and reduced) once each: two slots,
/// by the row's parity, since the rows in use are always neighbours.
struct ChromaRows<'p, 'r> {
    plane: Plane<'p>,
    deep: bool,
    reduce: &'r dyn Fn(u16) -> u16,
    slots: [(Option<usize>, Vec<u16>); 2],
}

impl<'p, 'r> ChromaRows<'p, 'r> {
    fn new(plane: Plane<'p>, width: usize, deep: bool, reduce: &'r dyn Fn(u16) -> u16) -> Self {
        ChromaRows { plane, deep, reduce, slots: [(None, vec![0; width]), (None, vec![0; width])] }
    }

    fn load(&mut self, row: usize) -> Result<(), ImageError> {
        let slot = &mut self.slots[row % 2];
        if slot.0 != Some(row) {
            read_row(&self.plane, row, self.deep, &mut slot.1)?;
            for s in slot.1.iter_mut() {
                *s = (self.reduce)(*s);
            }
            slot.0 = Some(row);
        }
        Ok(())
    }

    fn get(&mut self, row: usize) -> Result<&[u16], ImageError> {
        self.load(row)?;
        Ok(&self.slots[row % 2].1)
    }

    /// Two neighbouring rows (`a` and `b` differ by one).
    fn pair(&mut self, a: usize, b: usize) -> Result<(&[u16], &[u16]), ImageError> {
        self.load(a)?;
        self.load(b)?;
        let [even, odd] = &self.slots;
        Ok(if a.is_multiple_of(2) { (&even.1, &odd.1) } else { (&odd.1, &even.1) })
    }
}

/// Converts the picture to 8-bit RGB as libavif + libyuv do (see the module doc).
pub(crate) fn to_rgb8(picture: &YuvPicture<'_>) -> Result<image::RgbImage, ImageError> {
    let (w, h) = (picture.width as usize, picture.height as usize);
    if w == 0 || h == 0 {
        return Err(ImageError::Empty);
    }
    if !matches!(picture.depth, 8 | 10 | 12) {
        return Err(corrupt(&format!("unsupported bit depth {}", picture.depth)));
    }
    let deep = picture.depth > 8;
    if picture.y.width < w || picture.y.height < h {
        return Err(corrupt("luma plane smaller than the picture"));
    }
    let mut rgb = vec![0u8; w.checked_mul(h).and_then(|n| n.checked_mul(3)).ok_or_else(|| corrupt("picture too large"))?];
    let mut y_row = vec![0u16; w];

    let Some((cb, cr)) = picture.chroma.filter(|_| picture.subsampling != Subsampling::Mono) else {
        return mono(picture, w, h, rgb, y_row);
    };
    let matrix = picture.matrix.ok_or_else(|| corrupt("no YCbCr matrix"))?;
    let (shift_x, shift_y) = match picture.subsampling {
        Subsampling::S420 => (1, 1),
        Subsampling::S422 => (1, 0),
        _ => (0, 0),
    };
    let (cw, ch) = ((w + shift_x) >> shift_x, (h + shift_y) >> shift_y);
    for plane in [&cb, &cr] {
        if plane.width < cw || plane.height < ch {
            return Err(corrupt("chroma plane smaller than the picture"));
        }
    }
    // libavif keeps 10 bits through libyuv only for 10-bit pictures with alpha (RGBA output);
    // otherwise a deep picture is first cut to 8 bits (`Convert16To8Plane`: truncation).
    let ten_bit_path = picture.depth == 10 && picture.has_alpha;
    let cut = if deep && !ten_bit_path { u32::from(picture.depth) - 8 } else { 0 };
    let reduce = |v: u16| -> u16 { (u32::from(v) >> cut).min(if ten_bit_path { u32::from(u16::MAX) } else { 255 }) as u16 };

    // Chroma rows as read (a 4:2:0 output row needs two, each read once for the two output
    // rows between them), and upsampled to full width.
    let mut u_rows = ChromaRows::new(cb, cw, deep, &reduce);
    let mut v_rows = ChromaRows::new(cr, cw, deep, &reduce);
    let mut u_row = vec![0u16; w];
    let mut v_row = vec![0u16; w];
    let luma = matrix.luma_table();
    for row in 0..h {
        read_row(&picture.y, row, deep, &mut y_row)?;
        // Which chroma row(s) this output row comes from.
        let (near, far) = match picture.subsampling {
            Subsampling::S420 if row == 0 || (row == h - 1 && h % 2 == 0) => (row / 2, None),
            Subsampling::S420 => {
                let above = (row - 1) / 2;
                if row % 2 == 1 {
                    (above, Some(above + 1))
                } else {
                    (above + 1, Some(above))
                }
            }
            _ => (row, None),
        };
        for (rows, full) in [(&mut u_rows, &mut u_row), (&mut v_rows, &mut v_row)] {
            match (picture.subsampling, far) {
                (Subsampling::S444, _) => full.copy_from_slice(&rows.get(near)?[..w]),
                (_, None) => upsample_linear(rows.get(near)?, full),
                (_, Some(far)) => {
                    let (near, far) = rows.pair(near, far)?;
                    upsample_bilinear(near, far, full);
                }
            }
        }
        let out = &mut rgb[row * w * 3..(row + 1) * w * 3];
        if ten_bit_path {
            for (((px, &y), &u), &v) in out.chunks_exact_mut(3).zip(&y_row).zip(&u_row).zip(&v_row) {
                // libyuv YuvPixel10.
                let y = u32::from(y);
                let c = |c: u16| (c >> 2).min(255);
                px.copy_from_slice(&matrix.pixel((y << 6) | (y >> 4), c(u), c(v)));
            }
        } else {
            for (((px, &y), &u), &v) in out.chunks_exact_mut(3).zip(&y_row).zip(&u_row).zip(&v_row) {
                let y1 = luma[usize::from(reduce(y)).min(255)];
                px.copy_from_slice(&matrix.pixel_from(y1, u, v));
            }
        }
    }
    image::RgbImage::from_raw(picture.width, picture.height, rgb).ok_or(ImageError::Empty)
}

/// libavif's `avifImageYUV8ToRGB8Mono` / `avifImageYUV16ToRGB8Mono` (f32 arithmetic).
fn mono(picture: &YuvPicture<'_>, w: usize, h: usize, mut rgb: Vec<u8>, mut y_row: Vec<u16>) -> Result<image::RgbImage, ImageError> {
    let depth = u32::from(picture.depth);
    let max = (1u32 << depth) - 1;
    let (bias, range) =
        if picture.full_range { (0.0f32, max as f32) } else { ((16u32 << (depth - 8)) as f32, (219u32 << (depth - 8)) as f32) };
    let table: Vec<u8> = (0..=max)
        .map(|cp| {
            let y = ((cp as f32 - bias) / range).clamp(0.0, 1.0);
            (0.5f32 + y * 255.0f32) as u8
        })
        .collect();
    for row in 0..h {
        read_row(&picture.y, row, picture.depth > 8, &mut y_row)?;
        let out = &mut rgb[row * w * 3..(row + 1) * w * 3];
        for (px, &y) in out.chunks_exact_mut(3).zip(&y_row) {
            let v = table[u32::from(y).min(max) as usize];
            px.copy_from_slice(&[v, v, v]);
        }
    }
    image::RgbImage::from_raw(picture.width, picture.height, rgb).ok_or(ImageError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(data: &[u8], width: usize, height: usize) -> Plane<'_> {
        Plane { data, stride: width, width, height }
    }

    /// Values worked out by hand from libyuv's C reference (`YuvPixel`, JPEG constants).
    #[test]
    fn libyuv_pixel_values() {
        let m = Matrix::for_cicp(6, 1, true).unwrap();
        assert_eq!(m, Matrix::JPEG);
        // Grey: y1 = (128 * 257 * 16320 >> 16) + 32 = 8223; 8223 >> 6 = 128.
        assert_eq!(m.pixel(128 * 0x0101, 128, 128), [128, 128, 128]);
        // White and black stay at the ends.
        assert_eq!(m.pixel(255 * 0x0101, 128, 128), [255, 255, 255]);
        assert_eq!(m.pixel(0, 128, 128), [0, 0, 0]);
        // y=100, u=90, v=200: y1 = (100 * 257 * 16320 >> 16) + 32 = 6431;
        // r = (6431 + 72*90) >> 6 = 201, g = (6431 - (-38*22 + 72*46)) >> 6 = 61,
        // b = (6431 - 38*113) >> 6 = 33.
        assert_eq!(m.pixel(100 * 0x0101, 90, 200), [201, 61, 33]);
        // Limited-range BT.709: y=16 is black, y=235 white.
        let h = Matrix::for_cicp(1, 1, false).unwrap();
        assert_eq!(h.pixel(16 * 0x0101, 128, 128), [0, 0, 0]);
        assert_eq!(h.pixel(235 * 0x0101, 128, 128), [255, 255, 255]);
        // Matrices libyuv has no constants for.
        assert_eq!(Matrix::for_cicp(0, 1, true), None);
        assert_eq!(Matrix::for_cicp(8, 1, true), None);
        assert_eq!(Matrix::for_cicp(12, 22, true), None);
        assert_eq!(Matrix::for_cicp(12, 9, false), Some(Matrix::BT2020));
    }

    #[test]
    fn chroma_upsampling_is_libyuvs() {
        // Width 5 from 3 chroma samples: first copied, pairs 3:1 rounded, last replicated.
        let mut out = [0u16; 5];
        upsample_linear(&[0, 100, 201], &mut out);
        assert_eq!(out, [0, 25, 75, 125, 201]);
        let mut out = [0u16; 4];
        upsample_linear(&[10, 20], &mut out);
        assert_eq!(out, [10, 13, 18, 20]);
        // 2-D: 9:3:3:1 / 16 with rounding; edges 3:1 vertically.
        let mut out = [0u16; 4];
        upsample_bilinear(&[0, 160], &[16, 0], &mut out);
        assert_eq!(out, [4, (3 * 160 + 3 * 16 + 8) / 16, (9 * 160 + 16 + 8) / 16, (3 * 160 + 2) / 4]);
    }

    #[test]
    fn a_420_picture_with_odd_size() {
        // 3x3 luma, 2x2 chroma, full-range BT.601.
        let y = [128u8; 9];
        let u = [128u8, 128, 128, 228];
        let v = [128u8; 4];
        let picture = YuvPicture {
            width: 3,
            height: 3,
            depth: 8,
            full_range: true,
            subsampling: Subsampling::S420,
            matrix: Matrix::for_cicp(6, 1, true),
            y: plane(&y, 3, 3),
            chroma: Some((plane(&u, 2, 2), plane(&v, 2, 2))),
            has_alpha: false,
        };
        let rgb = to_rgb8(&picture).unwrap();
        // Row 0 uses chroma row 0 only: neutral.
        assert_eq!(rgb.get_pixel(2, 0).0, [128, 128, 128]);
        // Row 2 (odd height: bilinear, chroma row 1 near): the last column's u is
        // (3*228 + 128 + 2) >> 2 = 203, so b = (8223 + 75 * 113) >> 6 = 260 -> 255.
        assert_eq!(rgb.get_pixel(2, 2).0[2], 255);
        // The top-left pixel stays neutral.
        assert_eq!(rgb.get_pixel(0, 0).0, [128, 128, 128]);
    }

    #[test]
    fn deep_samples_are_cut_to_8_bits_first_unless_10_bit_with_alpha() {
        // One 10-bit 4:4:4 pixel: y = 513 (>> 2 = 128), u = v = 512.
        let y = 513u16.to_ne_bytes();
        let c = 512u16.to_ne_bytes();
        let mut picture = YuvPicture {
            width: 1,
            height: 1,
            depth: 10,
            full_range: true,
            subsampling: Subsampling::S444,
            matrix: Matrix::for_cicp(6, 1, true),
            y: Plane { data: &y, stride: 2, width: 1, height: 1 },
            chroma: Some((Plane { data: &c, stride: 2, width: 1, height: 1 }, Plane { data: &c, stride: 2, width: 1, height: 1 })),
            has_alpha: false,
        };
        assert_eq!(to_rgb8(&picture).unwrap().get_pixel(0, 0).0, [128, 128, 128]);
        // YuvPixel10: y32 = 513 << 6 | 513 >> 4 = 32864; (32864 * 16320 >> 16) + 32 = 8215 -> 128.
        picture.has_alpha = true;
        assert_eq!(to_rgb8(&picture).unwrap().get_pixel(0, 0).0, [128, 128, 128]);
        let y = 1023u16.to_ne_bytes();
        picture.y = Plane { data: &y, stride: 2, width: 1, height: 1 };
        assert_eq!(to_rgb8(&picture).unwrap().get_pixel(0, 0).0, [255, 255, 255]);
    }

    #[test]
    fn monochrome_uses_libavifs_float_path() {
        let y = [0u8, 16, 17, 126, 235, 255];
        let picture = YuvPicture {
            width: 6,
            height: 1,
            depth: 8,
            full_range: false,
            subsampling: Subsampling::Mono,
            matrix: None,
            y: plane(&y, 6, 1),
            chroma: None,
            has_alpha: false,
        };
        let rgb = to_rgb8(&picture).unwrap();
        // (y - 16) / 219 * 255 + 0.5, truncated: 17 -> 1.66 -> 1; 126 -> 128.57 -> 128.
        let grey: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(grey, [0, 0, 1, 128, 255, 255]);
    }

    #[test]
    fn short_planes_are_errors_not_panics() {
        let y = [0u8; 5];
        let picture = YuvPicture {
            width: 3,
            height: 2,
            depth: 8,
            full_range: true,
            subsampling: Subsampling::Mono,
            matrix: None,
            y: plane(&y, 3, 2),
            chroma: None,
            has_alpha: false,
        };
        assert!(matches!(to_rgb8(&picture), Err(ImageError::Corrupt(_))));
    }
}
