//! Fidelity to the Hugging Face `transformers` reference (fixtures made by
//! `scripts/make_fixtures.py` with torch): identical token ids, matching pixel tensors, and
//! embeddings that agree with the reference for every encoding of a picture.

mod common;

use common::*;
use ndarray::Array3;
use visionquery::embed::onnx::{ImageEncoder, OnnxImageEncoder, OnnxTextEncoder, TextEncoder};
use visionquery::embed::preprocess::{self, DecodeLimits, PreprocessConfig};
use visionquery::embed::ClipTokenizer;

fn tokenizer() -> ClipTokenizer {
    ClipTokenizer::from_file(&tiny_model().join("tokenizer.json")).unwrap()
}

fn preprocess_config() -> PreprocessConfig {
    PreprocessConfig::from_file(&tiny_model().join("preprocessor_config.json")).unwrap()
}

fn image_encoder(file: &str) -> OnnxImageEncoder {
    OnnxImageEncoder::load(ort_env(), &tiny_model().join("onnx").join(file)).unwrap()
}

fn text_encoder(file: &str) -> OnnxTextEncoder {
    OnnxTextEncoder::load(ort_env(), &tiny_model().join("onnx").join(file), tokenizer().pad_id()).unwrap()
}

fn our_pixels(name: &str) -> Array3<f32> {
    let decoded = preprocess::decode_reduced(&std::fs::read(image_path(name)).unwrap(), &DecodeLimits::default(), None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    preprocess::pixel_tensor(&decoded.rgb, &preprocess_config()).unwrap()
}

fn reference_pixels() -> Vec<(String, Array3<f32>)> {
    reference_pixel_tensors("reference/pixels.safetensors")
}

#[test]
fn token_ids_are_identical_to_the_reference_tokenizer() {
    let tokenizer = tokenizer();
    let cases = read_json("reference/tokens.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() > 300);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<i64> = case["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let got = tokenizer.encode(text).unwrap();
        assert_eq!(got.ids, expected, "token ids differ for {text:?}");
        assert!(got.ids.len() <= 77);
        assert_eq!(*got.ids.last().unwrap(), 49407, "the end token survives truncation for {text:?}");
    }
}

#[test]
fn long_texts_are_reported_as_truncated() {
    let tokenizer = tokenizer();
    assert!(!tokenizer.encode("a photo of a cat").unwrap().truncated);
    assert!(tokenizer.encode(&"a very long caption ".repeat(40)).unwrap().truncated);
}

#[test]
fn pixel_tensors_match_the_reference_processor() {
    for (name, expected) in reference_pixels() {
        let ours = our_pixels(&name);
        assert_eq!(ours.shape(), expected.shape(), "{name}");
        let diffs: Vec<f32> = ours.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).collect();
        let max = diffs.iter().cloned().fold(0.0f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        // One 8-bit level is 1/255/std ≈ 0.015 after normalisation. JPEGs decode exactly as in
        // libjpeg-turbo and the resize follows Pillow's passes, so at most a rare rounding step
        // of one level remains.
        let (max_allowed, mean_allowed) = (0.016, 0.0002);
        println!("{name}: max |diff| {max:.4}, mean {mean:.5}");
        if std::env::var("VQ_DEBUG_PIXELS").is_ok() {
            let mut idx: Vec<usize> = (0..diffs.len()).collect();
            idx.sort_by(|a, b| diffs[*b].total_cmp(&diffs[*a]));
            for &i in idx.iter().take(12) {
                let (c, y, x) = (i / (224 * 224), (i / 224) % 224, i % 224);
                println!("  c{c} y{y} x{x}: ours {} ref {}", ours[[c, y, x]], expected[[c, y, x]]);
            }
        }
        assert!(max <= max_allowed && mean <= mean_allowed, "{name}: pixels differ from the reference (max {max}, mean {mean})");
    }
}

#[test]
fn same_pixels_give_the_reference_image_embedding() {
    let mut encoder = image_encoder("vision_model.onnx");
    let expected = read_json("reference/image_embeds_from_pixels.json");
    let pixels = reference_pixels();
    for case in expected.as_array().unwrap() {
        let name = case["file"].as_str().unwrap();
        let (_, tensor) = pixels.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no pixels for {name}"));
        let ours = encoder.encode(std::slice::from_ref(tensor)).unwrap().remove(0);
        let cos = cosine(&ours, &floats(&case["embedding"]));
        assert!(cos >= 0.9999, "{name}: cos {cos}");
    }
}

/// The one place we knowingly differ from the reference: Pillow clips 16-bit greyscale to 255
/// (an almost white picture); we keep the high byte, so it embeds like its 8-bit twin.
const SIXTEEN_BIT_GREY: &str = "grey16.png";

#[test]
fn every_encoding_of_a_picture_embeds_like_the_reference() {
    let mut encoder = image_encoder("vision_model.onnx");
    let cases = read_json("reference/images.json");
    let cases = cases.as_array().unwrap();
    // For the 16-bit greyscale file the target is the reference's embedding of its 8-bit twin.
    let reference: Vec<(String, Vec<f32>, u64, u64)> = cases
        .iter()
        .map(|c| {
            let name = c["file"].as_str().unwrap().to_string();
            let key = if name == SIXTEEN_BIT_GREY { "embedding_high_byte" } else { "embedding" };
            (name, floats(&c[key]), c["width"].as_u64().unwrap(), c["height"].as_u64().unwrap())
        })
        .collect();
    let mut failures = Vec::new();
    for (name, expected, width, height) in &reference {
        let decoded = preprocess::decode_reduced(&std::fs::read(image_path(name)).unwrap(), &DecodeLimits::default(), None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((u64::from(decoded.width()), u64::from(decoded.height())), (*width, *height), "{name}: size after EXIF orientation");
        let pixels = preprocess::pixel_tensor(&decoded.rgb, &preprocess_config()).unwrap();
        let ours = encoder.encode(&[pixels]).unwrap().remove(0);
        let target = expected;
        let cos = cosine(&ours, target);
        // The test can fail: the best match among the other pictures must be clearly worse.
        let nearest_other =
            reference.iter().filter(|r| &r.0 != name && cosine(&r.1, target) < 0.999).map(|r| cosine(&ours, &r.1)).fold(f32::MIN, f32::max);
        println!("{name:32} cos {cos:.6} (nearest other picture {nearest_other:.4})");
        // The bar is 0.999; exact decoding and resizing give far better, so hold it.
        if cos < 0.9999 {
            failures.push(format!("{name}: cos {cos}"));
        }
    }
    assert!(failures.is_empty(), "embeddings differ from the reference: {failures:?}");
}

#[test]
fn text_embeddings_match_the_reference() {
    let tokenizer = tokenizer();
    let mut encoder = text_encoder("text_model.onnx");
    for case in read_json("reference/texts.json").as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tokenizer.encode(text).unwrap().ids;
        let ours = encoder.encode(&[ids]).unwrap().remove(0);
        let cos = cosine(&ours, &floats(&case["embedding"]));
        assert!(cos >= 0.9999, "{text:?}: cos {cos}");
    }
}

#[test]
fn batched_results_are_identical_to_one_by_one() {
    let tokenizer = tokenizer();
    let mut text = text_encoder("text_model.onnx");
    let texts = ["a dog", "two people riding horses on a beach at sunset", "a red double decker bus"];
    let ids: Vec<Vec<i64>> = texts.iter().map(|t| tokenizer.encode(t).unwrap().ids).collect();
    let batched = text.encode(&ids).unwrap();
    for (i, single_ids) in ids.iter().enumerate() {
        let single = text.encode(std::slice::from_ref(single_ids)).unwrap().remove(0);
        let max = single.iter().zip(&batched[i]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max < 1e-4, "text {i}: padded batch differs by {max}");
    }

    let mut vision = image_encoder("vision_model.onnx");
    let pixels: Vec<Array3<f32>> = ["baseline.jpg", "rgb.png", "webp_lossy.webp"].iter().map(|n| our_pixels(n)).collect();
    let batched = vision.encode(&pixels).unwrap();
    for (i, p) in pixels.iter().enumerate() {
        let single = vision.encode(std::slice::from_ref(p)).unwrap().remove(0);
        let max = single.iter().zip(&batched[i]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max < 1e-4, "image {i}: batch differs by {max}");
    }
}

#[test]
fn quantized_towers_stay_close_to_fp32() {
    let mut fp32 = image_encoder("vision_model.onnx");
    let mut int8 = image_encoder("vision_model_quantized.onnx");
    let pixels = our_pixels("baseline.jpg");
    let a = fp32.encode(std::slice::from_ref(&pixels)).unwrap().remove(0);
    let b = int8.encode(&[pixels]).unwrap().remove(0);
    let cos = cosine(&a, &b);
    assert!(cos > 0.99 && cos < 0.999_999, "quantized image tower: cos {cos} (must be close but not the same graph)");

    let tokenizer = tokenizer();
    let ids = tokenizer.encode("a cat sitting on a laptop").unwrap().ids;
    let a = text_encoder("text_model.onnx").encode(std::slice::from_ref(&ids)).unwrap().remove(0);
    let b = text_encoder("text_model_quantized.onnx").encode(&[ids]).unwrap().remove(0);
    let cos = cosine(&a, &b);
    assert!(cos > 0.95, "quantized text tower: cos {cos}");
}

#[test]
fn truncated_and_corrupt_files_are_refused() {
    let bytes = std::fs::read(image_path("baseline.jpg")).unwrap();
    let limits = DecodeLimits::default();
    let cut = &bytes[..bytes.len() / 2];
    assert!(matches!(preprocess::decode(cut, &limits), Err(visionquery::embed::ImageError::Corrupt(_))), "truncated JPEG");
    let png = std::fs::read(image_path("rgb.png")).unwrap();
    assert!(preprocess::decode(&png[..png.len() / 2], &limits).is_err(), "truncated PNG");
    let mut garbled = bytes.clone();
    for b in garbled.iter_mut().skip(600).take(4000) {
        *b = 0xFF;
    }
    // A garbled scan either fails or decodes; it must never panic.
    let _ = preprocess::decode(&garbled, &limits);
}
