//! Helpers shared by the integration tests: fixture locations and small vector maths.
#![allow(dead_code)]

pub mod jpeg;
pub mod server;

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

pub fn tiny_model() -> PathBuf {
    fixtures().join("tiny-clip")
}

/// Real photos committed with the tests (a COCO subset; sources and licences in its SOURCES.md),
/// so a clone of the repository alone passes. Reference names say `shared:<file>` because the
/// reference scores were recorded on the shared COCO set these files come from.
pub fn shared_photos() -> PathBuf {
    fixtures().join("photos")
}

/// The committed real photos (JPEG), in name order.
#[allow(dead_code)]
pub fn committed_photos() -> Vec<PathBuf> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(shared_photos())
        .expect("committed photos")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    photos
}

/// A reference file name (`shared:<name>` or a name under `tests/fixtures/images`) as a path.
pub fn image_path(name: &str) -> PathBuf {
    match name.strip_prefix("shared:") {
        Some(shared) => shared_photos().join(shared),
        None => fixtures().join("images").join(name),
    }
}

pub fn read_json(relative: &str) -> serde_json::Value {
    let path = fixtures().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `[3, H, W]` pixel tensors of a reference `.safetensors` file (relative to the fixtures),
/// sorted by name.
pub fn reference_pixel_tensors(relative: &str) -> Vec<(String, ndarray::Array3<f32>)> {
    let bytes = std::fs::read(fixtures().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, ndarray::Array3<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let shape = view.shape();
            (name, ndarray::Array3::from_shape_vec((shape[0], shape[1], shape[2]), data).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn floats(value: &serde_json::Value) -> Vec<f32> {
    value.as_array().expect("array of numbers").iter().map(|v| v.as_f64().expect("number") as f32).collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

pub fn ort_env() -> &'static ort::environment::Environment {
    visionquery::embed::runtime::init(None, 2).expect("ONNX Runtime: run scripts/install-runtime.sh (the test script does)")
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// A large PNG (PNG has no reduced decode, so every thumbnail of it costs a full decode).
pub fn big_png(width: u32, height: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let pixels: Vec<u8> = (0..height).flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, (x ^ y) as u8])).collect();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Default,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
    .unwrap();
    png
}

/// A field of a process's `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in bytes.
pub fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in /proc status"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Resets a process's peak resident memory to its current one (Linux `clear_refs`), and
/// returns the current one.
pub fn reset_peak(pid: u32) -> u64 {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting VmHWM");
    memory(pid, "VmRSS:")
}
