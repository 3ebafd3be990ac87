//! What `visionquery models` lists: the model families and the Hugging Face Hub repositories
//! known to publish the layout VisionQuery loads (split towers, `tokenizer.json`,
//! `preprocessor_config.json`), with their embedding size and input resolution. Plain data; the
//! family of a model actually loaded is always read from its own files ([`super::family`]).

use super::family::FamilyName;

/// One family, as a user choosing a model needs to know it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FamilyInfo {
    pub family: &'static str,
    /// How VisionQuery recognises it in a checkpoint.
    pub detected_by: &'static str,
    pub text: &'static str,
    pub image: &'static str,
    /// Whether results can carry a calibrated `probability`.
    pub probability: &'static str,
}

/// A Hub repository that works as `--model REPO`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct KnownModel {
    pub repo: &'static str,
    pub family: &'static str,
    /// Embedding dimensions.
    pub dim: usize,
    /// Input resolution (square), pixels.
    pub resolution: u32,
    pub note: &'static str,
}

pub const FAMILIES: [FamilyInfo; 3] = [
    FamilyInfo {
        family: "clip",
        detected_by: "config.json model_type \"clip\" (or no config.json)",
        text: "byte-level BPE, case kept, 77 tokens, padded per batch",
        image: "resize the short side, centre crop, CLIP mean/std",
        probability: "no (cosine only)",
    },
    FamilyInfo {
        family: "siglip",
        detected_by: "model_type \"siglip\" with a SentencePiece tokenizer (SiglipTokenizer)",
        text: "SentencePiece, lowercased, punctuation removed, padded to 64 with </s>",
        image: "resize straight to the square size, no crop, mean/std 0.5",
        probability: "yes, with score_head.json (written by scripts/export_clip_onnx.py)",
    },
    FamilyInfo {
        family: "siglip2",
        detected_by: "model_type \"siglip\" with a Gemma tokenizer (fixed-resolution SigLIP 2)",
        text: "Gemma BPE (multilingual), lowercased, padded to 64 on the tokenizer's side",
        image: "resize straight to the square size, no crop, mean/std 0.5",
        probability: "yes, with score_head.json (written by scripts/export_clip_onnx.py)",
    },
];

/// Repositories whose published file list has the split-tower layout. Sizes are the models'
/// own (config.json `projection_dim` / `hidden_size`, `image_size`).
pub const KNOWN_MODELS: [KnownModel; 6] = [
    KnownModel { repo: "Xenova/clip-vit-base-patch32", family: "clip", dim: 512, resolution: 224, note: "the default; tested" },
    KnownModel { repo: "Xenova/clip-vit-base-patch16", family: "clip", dim: 512, resolution: 224, note: "" },
    KnownModel { repo: "Xenova/clip-vit-large-patch14", family: "clip", dim: 768, resolution: 224, note: "" },
    KnownModel {
        repo: "Xenova/siglip-base-patch16-224",
        family: "siglip",
        dim: 768,
        resolution: 224,
        note: "towers output pooler_output; no score_head.json (export it for probability)",
    },
    KnownModel {
        repo: "Xenova/siglip-base-patch16-512",
        family: "siglip",
        dim: 768,
        resolution: 512,
        note: "towers output pooler_output; no score_head.json (export it for probability)",
    },
    KnownModel {
        repo: "google/siglip2-base-patch16-256",
        family: "siglip2",
        dim: 768,
        resolution: 256,
        note: "PyTorch only: export it with scripts/export_clip_onnx.py --checkpoint",
    },
];

/// The family name as `visionquery models` prints it.
pub fn family_name(name: FamilyName) -> &'static str {
    name.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_model_names_a_listed_family() {
        for model in KNOWN_MODELS {
            assert!(FAMILIES.iter().any(|f| f.family == model.family), "{}", model.repo);
        }
        for name in [FamilyName::Clip, FamilyName::Siglip, FamilyName::Siglip2] {
            assert!(FAMILIES.iter().any(|f| f.family == family_name(name)));
        }
    }
}
