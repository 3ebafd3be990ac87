//! Does libjpeg's reduced-size decode (1/8 .. 7/8 scale, several times faster on large photos)
//! keep the fidelity bar (image cos >= 0.999 and search scores within 2e-3 of a full decode)?
//! Re-encodes shared photos as large JPEGs, embeds them fully decoded and reduced-decoded with
//! the fixture model, and prints the worst cases per photo size and kept short side.
//!
//! `cargo run --release --example reduced_decode_fidelity` (run from the repo; uses
//! tests/fixtures/tiny-clip and ../shared/data/photos).

use std::path::PathBuf;
use std::time::Instant;

use visionquery::embed::onnx::{ImageEncoder, OnnxImageEncoder, OnnxTextEncoder, TextEncoder};
use visionquery::embed::preprocess::{self, DecodeLimits, PreprocessConfig};
use visionquery::embed::{runtime, ClipTokenizer};

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn main() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = repo.join("tests/fixtures/tiny-clip");
    let photos = std::env::var_os("VQ_SHARED").map(PathBuf::from).unwrap_or_else(|| repo.join("../shared")).join("data/photos/images");
    let env = runtime::init(None, 2)?;
    let tokenizer = ClipTokenizer::from_file(&model.join("tokenizer.json"))?;
    let mut text = OnnxTextEncoder::load(env, &model.join("onnx/text_model.onnx"), tokenizer.pad_id())?;
    let mut vision = OnnxImageEncoder::load(env, &model.join("onnx/vision_model.onnx"))?;
    let config = PreprocessConfig::from_file(&model.join("preprocessor_config.json"))?;
    let captions: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo.join("tests/fixtures/reference/texts.json"))?)?;
    let texts: Vec<Vec<f32>> = captions
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .map(|t| Ok(unit(&text.encode(&[tokenizer.encode(t)?.ids])?[0])))
        .collect::<anyhow::Result<_>>()?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&photos)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let names: Vec<PathBuf> = names.into_iter().step_by(20).take(10).collect();

    println!("| long side px | kept short side | worst image cos | worst score change | full decode ms | reduced decode ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for long in [1200u32, 2400, 4000] {
        let jpegs: Vec<Vec<u8>> = names
            .iter()
            .map(|p| {
                let img = image::open(p)?;
                let s = long as f32 / img.width().max(img.height()) as f32;
                let big = img
                    .resize_exact(
                        (img.width() as f32 * s) as u32,
                        (img.height() as f32 * s) as u32,
                        image::imageops::FilterType::CatmullRom,
                    )
                    .to_rgb8();
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&big)?;
                Ok(out)
            })
            .collect::<anyhow::Result<_>>()?;
        for factor in [1.0f32, 2.0, 3.0] {
            let keep = (config.output_size().0 as f32 * factor) as u32;
            let (mut worst_cos, mut worst_score, mut t_full, mut t_reduced) = (1f32, 0f32, 0f64, 0f64);
            for jpeg in &jpegs {
                let t = Instant::now();
                let full = preprocess::decode(jpeg, &DecodeLimits::default())?;
                t_full += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let reduced = preprocess::decode_reduced(jpeg, &DecodeLimits::default(), Some(keep))?;
                t_reduced += t.elapsed().as_secs_f64();
                let a = unit(&vision.encode(&[preprocess::pixel_tensor(&full.rgb, &config)?])?[0]);
                let b = unit(&vision.encode(&[preprocess::pixel_tensor(&reduced.rgb, &config)?])?[0]);
                worst_cos = worst_cos.min(dot(&a, &b));
                for t in &texts {
                    worst_score = worst_score.max((dot(t, &a) - dot(t, &b)).abs());
                }
            }
            let n = jpegs.len() as f64;
            println!("| {long} | {keep} | {worst_cos:.4} | {worst_score:.4} | {:.1} | {:.1} |", t_full / n * 1e3, t_reduced / n * 1e3);
        }
    }
    Ok(())
}
