//! Fidelity of the SigLIP and SigLIP 2 families to the Hugging Face `transformers` reference
//! (fixtures made by `scripts/make_siglip_fixtures.py`): the same bars as CLIP's
//! (`tests/fidelity.rs`) — identical token ids (multilingual text included), pixels within one
//! level, embeddings cos >= 0.9999 for every encoding of a picture, scores and the sigmoid
//! head's probabilities within 2e-3 — for each family, through the loading code the server uses.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use ndarray::Array3;
use visionquery::embed::family::{Family, FamilyName, Padding, Side};
use visionquery::embed::onnx::{ImageEncoder, OnnxImageEncoder, OnnxTextEncoder, TextEncoder};
use visionquery::embed::preprocess::{self, DecodeLimits, PreprocessConfig};
use visionquery::embed::{ClipModel, ClipTokenizer, ModelOptions, Precision};

const FAMILIES: [&str; 2] = ["siglip", "siglip2"];

fn model_dir(family: &str) -> PathBuf {
    fixtures().join(format!("tiny-{family}"))
}

fn reference(family: &str, file: &str) -> serde_json::Value {
    read_json(&format!("reference-{family}/{file}"))
}

fn family_of(family: &str) -> Family {
    let dir = model_dir(family);
    Family::read(Some(&dir.join("config.json")), Some(&dir.join("tokenizer_config.json")), Some(&dir.join("score_head.json"))).unwrap()
}

fn tokenizer(family: &str) -> ClipTokenizer {
    ClipTokenizer::with_rules(&model_dir(family).join("tokenizer.json"), &family_of(family).text).unwrap()
}

fn preprocess_config(family: &str) -> PreprocessConfig {
    PreprocessConfig::from_file(&model_dir(family).join("preprocessor_config.json")).unwrap()
}

fn image_encoder(family: &str, file: &str) -> OnnxImageEncoder {
    OnnxImageEncoder::load_for(ort_env(), &model_dir(family).join("onnx").join(file), &family_of(family)).unwrap()
}

fn text_encoder(family: &str, file: &str) -> OnnxTextEncoder {
    OnnxTextEncoder::load_for(ort_env(), &model_dir(family).join("onnx").join(file), tokenizer(family).pad_id(), &family_of(family))
        .unwrap()
}

fn our_pixels(family: &str, name: &str) -> Array3<f32> {
    let decoded = preprocess::decode_reduced(&std::fs::read(image_path(name)).unwrap(), &DecodeLimits::default(), None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    preprocess::pixel_tensor(&decoded.rgb, &preprocess_config(family)).unwrap()
}

fn reference_pixels(family: &str) -> Vec<(String, Array3<f32>)> {
    reference_pixel_tensors(&format!("reference-{family}/pixels.safetensors"))
}

#[test]
fn the_family_is_read_from_the_checkpoint_files() {
    let siglip = family_of("siglip");
    assert_eq!(siglip.name, FamilyName::Siglip);
    assert_eq!(siglip.text.padding, Padding::Fixed { length: 64, side: Side::Right });
    let siglip2 = family_of("siglip2");
    assert_eq!(siglip2.name, FamilyName::Siglip2, "config says siglip, the tokenizer is Gemma's");
    assert_eq!(siglip2.text.padding, Padding::Fixed { length: 64, side: Side::Left }, "GemmaTokenizer's default side");
    assert!(siglip2.text.lowercase);
    for family in [siglip, siglip2] {
        let head = family.score_head.expect("score_head.json");
        assert_eq!((head.logit_scale, head.logit_bias), (2.5, -1.5));
    }
}

#[test]
fn token_ids_are_identical_to_the_reference_tokenizer() {
    for family in FAMILIES {
        let tokenizer = tokenizer(family);
        let padding = family_of(family).text.padding;
        let cases = reference(family, "tokens.json");
        let cases = cases.as_array().unwrap();
        assert!(cases.len() > 200);
        let mut multilingual = 0;
        for case in cases {
            let text = case["text"].as_str().unwrap();
            multilingual += usize::from(!text.is_ascii());
            let expected: Vec<i64> = case["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            let got = tokenizer.encode(text).unwrap();
            assert!(got.ids.len() <= 64, "{family}: {text:?} has {} tokens", got.ids.len());
            // The reference is the processor's output, padded to 64: padding is part of the input.
            assert_eq!(padding.pad(&got.ids, tokenizer.pad_id()), expected, "{family}: token ids differ for {text:?}");
        }
        assert!(multilingual >= 12, "{family}: only {multilingual} non-ASCII texts");
    }
}

#[test]
fn long_texts_are_cut_to_the_fixed_length_and_reported() {
    for family in FAMILIES {
        let tokenizer = tokenizer(family);
        assert!(!tokenizer.encode("a photo of a cat").unwrap().truncated);
        let long = tokenizer.encode(&"a very long caption ".repeat(40)).unwrap();
        assert!(long.truncated && long.ids.len() == 64, "{family}: {} tokens", long.ids.len());
    }
    // SigLIP keeps its end token when cutting (the slow tokenizer adds it after truncation).
    let ids = tokenizer("siglip").encode(&"a very long caption ".repeat(40)).unwrap().ids;
    assert_eq!(ids.last(), Some(&1));
}

#[test]
fn pixel_tensors_match_the_reference_processor() {
    for family in FAMILIES {
        for (name, expected) in reference_pixels(family) {
            let ours = our_pixels(family, &name);
            assert_eq!(ours.shape(), expected.shape(), "{family} {name}");
            let diffs: Vec<f32> = ours.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).collect();
            let max = diffs.iter().cloned().fold(0.0f32, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            println!("{family} {name}: max |diff| {max:.4}, mean {mean:.6}");
            // One 8-bit level is 1/255/0.5 ≈ 0.0078 after SigLIP's normalisation. The resize is
            // Pillow's own arithmetic (`embed::resample`), so in practice they are identical.
            assert!(max <= 0.008 && mean <= 0.0002, "{family} {name}: pixels differ from the reference (max {max}, mean {mean})");
        }
    }
}

#[test]
fn same_pixels_give_the_reference_image_embedding() {
    for family in FAMILIES {
        let mut encoder = image_encoder(family, "vision_model.onnx");
        let pixels = reference_pixels(family);
        for case in reference(family, "image_embeds_from_pixels.json").as_array().unwrap() {
            let name = case["file"].as_str().unwrap();
            let (_, tensor) = pixels.iter().find(|(n, _)| n == name).unwrap();
            let ours = encoder.encode(std::slice::from_ref(tensor)).unwrap().remove(0);
            let cos = cosine(&ours, &floats(&case["embedding"]));
            assert!(cos >= 0.9999, "{family} {name}: cos {cos}");
        }
    }
}

#[test]
fn every_encoding_of_a_picture_embeds_like_the_reference() {
    for family in FAMILIES {
        let mut encoder = image_encoder(family, "vision_model.onnx");
        let mut failures = Vec::new();
        let mut worst = 1.0f32;
        let cases = reference(family, "images.json");
        for case in cases.as_array().unwrap() {
            let name = case["file"].as_str().unwrap();
            let ours = encoder.encode(&[our_pixels(family, name)]).unwrap().remove(0);
            let cos = cosine(&ours, &floats(&case["embedding"]));
            worst = worst.min(cos);
            if cos < 0.9999 {
                failures.push(format!("{name}: cos {cos}"));
            }
        }
        println!("{family}: {} pictures, lowest cos {worst:.6}", cases.as_array().unwrap().len());
        assert!(failures.is_empty(), "{family}: embeddings differ from the reference: {failures:?}");
    }
}

#[test]
fn text_embeddings_match_the_reference() {
    for family in FAMILIES {
        let tokenizer = tokenizer(family);
        let mut encoder = text_encoder(family, "text_model.onnx");
        for case in reference(family, "texts.json").as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ours = encoder.encode(&[tokenizer.encode(text).unwrap().ids]).unwrap().remove(0);
            let cos = cosine(&ours, &floats(&case["embedding"]));
            assert!(cos >= 0.9999, "{family} {text:?}: cos {cos}");
        }
    }
}

#[test]
fn batched_results_are_identical_to_one_by_one() {
    for family in FAMILIES {
        let tokenizer = tokenizer(family);
        let mut text = text_encoder(family, "text_model.onnx");
        let texts = ["a dog", "two people riding horses on a beach at sunset", "un chat noir sur le canapé", "一只猫"];
        let ids: Vec<Vec<i64>> = texts.iter().map(|t| tokenizer.encode(t).unwrap().ids).collect();
        let batched = text.encode(&ids).unwrap();
        for (i, single_ids) in ids.iter().enumerate() {
            let single = text.encode(std::slice::from_ref(single_ids)).unwrap().remove(0);
            let max = single.iter().zip(&batched[i]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(max < 1e-4, "{family} text {i}: batch differs by {max}");
        }
        let mut vision = image_encoder(family, "vision_model.onnx");
        let pixels: Vec<Array3<f32>> = ["baseline.jpg", "rgb.png", "wide_320x40.jpg"].iter().map(|n| our_pixels(family, n)).collect();
        let batched = vision.encode(&pixels).unwrap();
        for (i, p) in pixels.iter().enumerate() {
            let single = vision.encode(std::slice::from_ref(p)).unwrap().remove(0);
            let max = single.iter().zip(&batched[i]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(max < 1e-4, "{family} image {i}: batch differs by {max}");
        }
    }
}

#[test]
fn quantized_towers_stay_close_to_fp32() {
    for family in FAMILIES {
        let pixels = our_pixels(family, "baseline.jpg");
        let a = image_encoder(family, "vision_model.onnx").encode(std::slice::from_ref(&pixels)).unwrap().remove(0);
        let b = image_encoder(family, "vision_model_quantized.onnx").encode(&[pixels]).unwrap().remove(0);
        let cos = cosine(&a, &b);
        assert!(cos > 0.99 && cos < 0.999_999, "{family} quantized image tower: cos {cos}");
        let ids = tokenizer(family).encode("a cat sitting on a laptop").unwrap().ids;
        let a = text_encoder(family, "text_model.onnx").encode(std::slice::from_ref(&ids)).unwrap().remove(0);
        let b = text_encoder(family, "text_model_quantized.onnx").encode(&[ids]).unwrap().remove(0);
        let cos = cosine(&a, &b);
        assert!(cos > 0.99, "{family} quantized text tower: cos {cos}");
    }
}

fn load(family: &str, precision: Precision) -> Arc<ClipModel> {
    let options = ModelOptions {
        source: model_dir(family).to_string_lossy().into_owned(),
        precision,
        ort_library: None,
        threads: 1,
        max_batch: 8,
        queue_capacity: 64,
    };
    let _ = ort_env();
    Arc::new(ClipModel::load(&options).unwrap_or_else(|e| panic!("{family}: {e}")))
}

/// Through `ClipModel` (what the engine calls): cosine scores and the sigmoid head's
/// probabilities within 2e-3 of `transformers`' on every text x picture pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_and_probabilities_match_the_reference() {
    for family in FAMILIES {
        let model = load(family, Precision::Fp32);
        assert_eq!(model.family().name.as_str(), family);
        let search = reference(family, "search.json");
        let mut images = Vec::new();
        for name in search["images"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            let decoded = preprocess::decode(&std::fs::read(image_path(name)).unwrap(), &DecodeLimits::default()).unwrap();
            images.push(model.embed_pixels(model.pixels(&decoded).unwrap()).await.unwrap());
        }
        let (mut worst_score, mut worst_probability) = (0.0f32, 0.0f32);
        for (t, text) in search["texts"].as_array().unwrap().iter().enumerate() {
            let vector = model.embed_text(text.as_str().unwrap()).await.unwrap().vector;
            for (i, image) in images.iter().enumerate() {
                let score: f32 = vector.iter().zip(image).map(|(a, b)| a * b).sum();
                let expected = search["scores"][t][i].as_f64().unwrap() as f32;
                let probability = model.probability(score).expect("score head");
                let expected_probability = search["probabilities"][t][i].as_f64().unwrap() as f32;
                worst_score = worst_score.max((score - expected).abs());
                worst_probability = worst_probability.max((probability - expected_probability).abs());
            }
        }
        println!("{family}: max |score diff| {worst_score:.2e}, max |probability diff| {worst_probability:.2e}");
        assert!(worst_score <= 2e-3 && worst_probability <= 2e-3, "{family}: {worst_score} {worst_probability}");
    }
}

#[test]
fn fingerprints_differ_by_family_and_precision() {
    let clip = {
        let options = ModelOptions {
            source: tiny_model().to_string_lossy().into_owned(),
            precision: Precision::Fp32,
            ort_library: None,
            threads: 1,
            max_batch: 1,
            queue_capacity: 4,
        };
        let _ = ort_env();
        ClipModel::load(&options).unwrap()
    };
    assert!(clip.fingerprint().starts_with("clip-fp32-"), "CLIP's fingerprint keeps its form: {}", clip.fingerprint());
    assert!(clip.probability(0.3).is_none(), "CLIP has no calibrated head");
    let siglip = load("siglip", Precision::Fp32);
    let siglip2 = load("siglip2", Precision::Fp32);
    let siglip_int8 = load("siglip", Precision::Quantized);
    assert!(siglip.fingerprint().starts_with("siglip-fp32-64-"), "{}", siglip.fingerprint());
    assert!(siglip2.fingerprint().starts_with("siglip2-fp32-64-"), "{}", siglip2.fingerprint());
    assert_ne!(siglip.fingerprint(), siglip_int8.fingerprint());
}

/// Through the HTTP API, as tests/api.rs does for CLIP: every text against every ingested
/// reference photo, scores within 2e-3 of `transformers`' cosines, best first.
#[test]
fn api_search_scores_like_the_reference() {
    use common::server::Server;
    use serde_json::{json, Value};
    for family in FAMILIES {
        let server = Server::start_with(&model_dir(family), &[]);
        server.wait_ready();
        let search = reference(family, "search.json");
        let names: Vec<&str> = search["images"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        let ids: Vec<String> = names
            .iter()
            .map(|name| {
                let path = server.add_image(&image_path(name), name.strip_prefix("shared:").unwrap());
                server.ingest(&path)["id"].as_str().unwrap().to_string()
            })
            .collect();
        let mut worst = 0.0f64;
        for (t, text) in search["texts"].as_array().unwrap().iter().enumerate() {
            let body: Value = server.post_json("/search", &json!({ "query": text, "top_k": names.len() })).json().unwrap();
            let results = body["results"].as_array().unwrap();
            assert_eq!(results.len(), names.len(), "{family}: {body}");
            let mut previous = f64::INFINITY;
            for result in results {
                let column = ids.iter().position(|id| id == result["id"].as_str().unwrap()).expect("an ingested image");
                let got = result["score"].as_f64().unwrap();
                worst = worst.max((got - search["scores"][t][column].as_f64().unwrap()).abs());
                assert!(got <= previous + 1e-6, "results are best first");
                previous = got;
            }
        }
        println!("{family}: max |API score - reference| {worst:.2e}");
        assert!(worst <= 2e-3, "{family}: {worst}");
    }
}

/// `probability` in results for a single text query on a model with a score head, equal to the
/// reference's sigmoid head within 2e-3; `min_probability` keeps exactly the results at or above
/// it; CLIP (no head) answers 422 for `min_probability` and gives no `probability`.
#[test]
fn api_probability_and_min_probability() {
    use common::server::Server;
    use serde_json::{json, Value};
    let server = Server::start_with(&model_dir("siglip"), &[]);
    server.wait_ready();
    let search = reference("siglip", "search.json");
    let names: Vec<&str> = search["images"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let ids: Vec<String> = names
        .iter()
        .map(|name| {
            let path = server.add_image(&image_path(name), name.strip_prefix("shared:").unwrap());
            server.ingest(&path)["id"].as_str().unwrap().to_string()
        })
        .collect();
    let text = search["texts"][0].as_str().unwrap();
    let body: Value = server.post_json("/search", &json!({ "query": text, "top_k": names.len() })).json().unwrap();
    let mut probabilities = Vec::new();
    for result in body["results"].as_array().unwrap() {
        let column = ids.iter().position(|id| id == result["id"].as_str().unwrap()).unwrap();
        let got = result["probability"].as_f64().expect("probability for a text query");
        let expected = search["probabilities"][0][column].as_f64().unwrap();
        assert!((got - expected).abs() <= 2e-3, "probability {got}, reference {expected}");
        probabilities.push(got);
    }
    // A floor between two results keeps exactly those above it.
    probabilities.sort_by(|a, b| b.total_cmp(a));
    let floor = (probabilities[4] + probabilities[5]) / 2.0;
    let body: Value = server
        .post_json("/search", &json!({ "query": text, "top_k": names.len(), "filters": { "min_probability": floor } }))
        .json()
        .unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 5, "{body}");
    // Not for image queries; not outside (0, 1).
    let by_image = server.post_json("/search", &json!({ "image_id": ids[0], "filters": { "min_probability": 0.5 } }));
    assert_eq!(by_image.status(), 422);
    let body: Value = server.post_json("/search", &json!({ "image_id": ids[0] })).json().unwrap();
    assert!(body["results"][0].get("probability").is_none(), "{body}");
    assert_eq!(server.post_json("/search", &json!({ "query": "a cat", "filters": { "min_probability": 1.0 } })).status(), 422);
    drop(server);

    let clip = Server::start();
    clip.wait_ready();
    let response = clip.post_json("/search", &json!({ "query": "a cat", "filters": { "min_probability": 0.5 } }));
    assert_eq!(response.status(), 422);
}
