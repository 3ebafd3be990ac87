//! Model families: the few things that differ between CLIP, SigLIP and SigLIP 2, read from the
//! checkpoint's own files rather than from a flag the user must get right.
//!
//! `transformers` keeps these facts beside the weights, and so does this module: `config.json`
//! (`model_type`, the text tower's length), `tokenizer_config.json` (`tokenizer_class`, case,
//! pad token, padding side) and, for sigmoid-head models, `score_head.json` (written by
//! `scripts/export_clip_onnx.py`: the `logit_scale` and `logit_bias` the two towers alone lose).
//! Image preprocessing needs nothing here: `preprocessor_config.json` already says it all (see
//! [`super::preprocess::PreprocessConfig`]). The rest of the crate asks a [`Family`] what to do
//! and never which family it is. Knows nothing of HTTP or storage.

use std::path::Path;

use serde_json::Value;

use super::error::LoadError;

/// Which kind of checkpoint this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyName {
    Clip,
    /// SigLIP: SentencePiece tokenizer, sigmoid head.
    Siglip,
    /// SigLIP 2 with fixed resolution: `model_type` says `siglip`, the tokenizer is Gemma's.
    Siglip2,
}

impl FamilyName {
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyName::Clip => "clip",
            FamilyName::Siglip => "siglip",
            FamilyName::Siglip2 => "siglip2",
        }
    }
}

/// Which end of a text the padding goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// How the text tower's input is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// To the longest text of a call. Right for CLIP: its causal mask and end-token pooling
    /// make padding invisible, so the batcher may group texts by length.
    Longest,
    /// Every text to this many positions: SigLIP pools the last position, so padding is part of
    /// what the model computes and a text must be padded the same way in every call.
    Fixed { length: usize, side: Side },
}

impl Padding {
    /// Where a text of `len` tokens starts in a row of `width` positions.
    pub fn offset(self, len: usize, width: usize) -> usize {
        match self {
            Padding::Fixed { side: Side::Left, .. } => width.saturating_sub(len),
            _ => 0,
        }
    }

    /// One text as the text tower reads it alone: ids padded with `pad_id` (CLIP: not at all).
    pub fn pad(self, ids: &[i64], pad_id: i64) -> Vec<i64> {
        let width = match self {
            Padding::Longest => return ids.to_vec(),
            Padding::Fixed { length, .. } => length.max(ids.len()),
        };
        let mut row = vec![pad_id; width];
        let start = self.offset(ids.len(), width);
        row[start..start + ids.len()].copy_from_slice(ids);
        row
    }
}

/// What the text side of a family needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRules {
    /// Positions of the text tower; longer texts are cut, keeping the special tokens.
    pub max_tokens: usize,
    pub padding: Padding,
    /// Lowercase before tokenizing (SigLIP's `do_lower_case`; SigLIP 2 was trained on
    /// lowercased text). Done here with Python's `str.lower` rules (final sigma included), which
    /// a `tokenizer.json` normalizer cannot express.
    pub lowercase: bool,
    /// The padding token named by `tokenizer_config.json`, if it names one.
    pub pad_token: Option<String>,
}

/// A sigmoid head: `probability = sigmoid(cos * exp(logit_scale) + logit_bias)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreHead {
    /// The raw parameter, as in the checkpoint (the scale is its exponential).
    pub logit_scale: f32,
    pub logit_bias: f32,
}

impl ScoreHead {
    /// The model's own probability that a text matches an image, from their cosine.
    pub fn probability(&self, cosine: f32) -> f32 {
        let logit = f64::from(cosine) * f64::from(self.logit_scale).exp() + f64::from(self.logit_bias);
        (1.0 / (1.0 + (-logit).exp())) as f32
    }

    /// The cosine at which the probability is `p` (0 < p < 1): the head is increasing, so
    /// "probability >= p" is "cosine >= this".
    pub fn cosine_for(&self, p: f64) -> f64 {
        ((p / (1.0 - p)).ln() - f64::from(self.logit_bias)) / f64::from(self.logit_scale).exp()
    }
}

/// The ONNX output names that hold each tower's embedding, preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputNames {
    pub text: &'static [&'static str],
    pub image: &'static [&'static str],
}

/// CLIP's `pooler_output` is before the projection (another size, another space): never it.
const CLIP_OUTPUTS: OutputNames = OutputNames { text: &["text_embeds"], image: &["image_embeds"] };
/// SigLIP's towers end in their own head, so `pooler_output` of a plain tower export is the
/// embedding; Xenova-style exports call it `*_embeds`.
const SIGLIP_OUTPUTS: OutputNames = OutputNames { text: &["text_embeds", "pooler_output"], image: &["image_embeds", "pooler_output"] };

/// Everything family-specific about a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: FamilyName,
    pub text: TextRules,
    pub outputs: OutputNames,
    /// `None` for CLIP, and for a sigmoid-head export that lacks `score_head.json`.
    pub score_head: Option<ScoreHead>,
}

/// The name of the score-head file beside `config.json`.
pub const SCORE_HEAD_FILE: &str = "score_head.json";

impl Family {
    /// CLIP as VisionQuery always ran it: for layouts without a `config.json`.
    pub fn clip() -> Self {
        Family {
            name: FamilyName::Clip,
            text: TextRules { max_tokens: 77, padding: Padding::Longest, lowercase: false, pad_token: None },
            outputs: CLIP_OUTPUTS,
            score_head: None,
        }
    }

    /// Reads the family from the checkpoint's files; any of them may be absent.
    pub fn read(config: Option<&Path>, tokenizer_config: Option<&Path>, score_head: Option<&Path>) -> Result<Self, LoadError> {
        let config_path = config;
        let config = config.map(read_json).transpose()?;
        let tokenizer_config = tokenizer_config.map(read_json).transpose()?.unwrap_or(Value::Null);
        let model_type = config.as_ref().and_then(|c| c["model_type"].as_str()).unwrap_or("clip");
        let tokenizer_class = tokenizer_config["tokenizer_class"].as_str().unwrap_or_default();
        let name = match model_type {
            "clip" => FamilyName::Clip,
            // Fixed-resolution SigLIP 2 checkpoints say `siglip` and carry a Gemma tokenizer.
            "siglip" if tokenizer_class.starts_with("Gemma") || tokenizer_class.starts_with("Siglip2") => FamilyName::Siglip2,
            "siglip" => FamilyName::Siglip,
            other => {
                let hint = if other == "siglip2" {
                    "SigLIP 2 NaFlex (variable resolution) is not supported; use a fixed-resolution checkpoint such as google/siglip2-base-patch16-224"
                } else {
                    "supported: clip, siglip (SigLIP and fixed-resolution SigLIP 2)"
                };
                let path = config_path.unwrap_or(Path::new("config.json")).to_path_buf();
                return Err(LoadError::File { path, message: format!("model_type {other:?} is not supported; {hint}") });
            }
        };
        let positions = config.as_ref().and_then(|c| c["text_config"]["max_position_embeddings"].as_u64()).map(|n| n as usize);
        let pad_token = token_name(&tokenizer_config["pad_token"]);
        let mut family = match name {
            FamilyName::Clip => {
                let mut clip = Family::clip();
                clip.text.max_tokens = positions.unwrap_or(77);
                clip.text.pad_token = pad_token;
                clip
            }
            FamilyName::Siglip | FamilyName::Siglip2 => {
                // transformers: a `padding_side` in tokenizer_config.json wins over the class
                // default, which is left for Gemma's tokenizer classes and right otherwise.
                let side = match tokenizer_config["padding_side"].as_str() {
                    Some("left") => Side::Left,
                    Some(_) => Side::Right,
                    None if name == FamilyName::Siglip2 => Side::Left,
                    None => Side::Right,
                };
                let length = positions.unwrap_or(64);
                let lowercase = match name {
                    FamilyName::Siglip => tokenizer_config["do_lower_case"].as_bool().unwrap_or(true),
                    _ => true,
                };
                Family {
                    name,
                    text: TextRules { max_tokens: length, padding: Padding::Fixed { length, side }, lowercase, pad_token },
                    outputs: SIGLIP_OUTPUTS,
                    score_head: None,
                }
            }
        };
        if family.name != FamilyName::Clip {
            if let Some(path) = score_head {
                family.score_head = Some(read_score_head(path)?);
            }
        }
        Ok(family)
    }

    /// What about this family decides the vector space besides the weights, for the index
    /// fingerprint: texts tokenized another way give other vectors.
    pub fn describe(&self) -> String {
        let padding = match self.text.padding {
            Padding::Longest => "longest".to_string(),
            Padding::Fixed { length, side } => format!("{}{length}", if side == Side::Left { "left" } else { "right" }),
        };
        format!("{} max{} pad-{padding} lower-{}", self.name.as_str(), self.text.max_tokens, self.text.lowercase)
    }
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let file = |message: String| LoadError::File { path: path.to_path_buf(), message };
    let text = fs_err::read_to_string(path).map_err(|e| file(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| file(e.to_string()))
}

/// A special token as `tokenizer_config.json` writes it: a string or an `AddedToken` object.
fn token_name(value: &Value) -> Option<String> {
    value.as_str().or_else(|| value["content"].as_str()).map(str::to_string)
}

fn read_score_head(path: &Path) -> Result<ScoreHead, LoadError> {
    let value = read_json(path)?;
    let number = |key: &str| {
        value[key]
            .as_f64()
            .filter(|v| v.is_finite())
            .map(|v| v as f32)
            .ok_or_else(|| LoadError::File { path: path.to_path_buf(), message: format!("`{key}` is missing or not a finite number") })
    };
    Ok(ScoreHead { logit_scale: number("logit_scale")?, logit_bias: number("logit_bias")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn no_config_is_clip_as_before() {
        assert_eq!(Family::read(None, None, None).unwrap(), Family::clip());
    }

    #[test]
    fn siglip_pads_right_to_its_positions_and_reads_the_score_head() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "config.json", r#"{"model_type":"siglip","text_config":{"max_position_embeddings":64}}"#);
        let tok = write(dir.path(), "tokenizer_config.json", r#"{"tokenizer_class":"SiglipTokenizer","pad_token":"</s>"}"#);
        let head = write(dir.path(), "score_head.json", r#"{"logit_scale":4.7,"logit_bias":-12.9}"#);
        let family = Family::read(Some(&config), Some(&tok), Some(&head)).unwrap();
        assert_eq!(family.name, FamilyName::Siglip);
        assert_eq!(family.text.padding, Padding::Fixed { length: 64, side: Side::Right });
        assert!(family.text.lowercase);
        assert_eq!(family.text.pad_token.as_deref(), Some("</s>"));
        let head = family.score_head.unwrap();
        // cos 0.1 with the published base model's head: exp(4.7) = 109.9 -> logit -1.91.
        assert!((head.probability(0.1) - 0.1290).abs() < 1e-3, "{}", head.probability(0.1));
    }

    #[test]
    fn a_gemma_tokenizer_makes_siglip2_padded_as_its_config_says() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "config.json", r#"{"model_type":"siglip"}"#);
        let tok = write(dir.path(), "tokenizer_config.json", r#"{"tokenizer_class":"GemmaTokenizer","pad_token":{"content":"<pad>"}}"#);
        let family = Family::read(Some(&config), Some(&tok), None).unwrap();
        assert_eq!(family.name, FamilyName::Siglip2);
        assert_eq!(family.text.padding, Padding::Fixed { length: 64, side: Side::Left });
        assert_eq!(family.text.pad_token.as_deref(), Some("<pad>"));
        assert!(family.score_head.is_none(), "no score_head.json: no probability");
        let tok = write(dir.path(), "tokenizer_config.json", r#"{"tokenizer_class":"GemmaTokenizerFast","padding_side":"right"}"#);
        let family = Family::read(Some(&config), Some(&tok), None).unwrap();
        assert_eq!(family.text.padding, Padding::Fixed { length: 64, side: Side::Right });
    }

    #[test]
    fn unsupported_model_types_say_what_is_supported() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "config.json", r#"{"model_type":"siglip2"}"#);
        let err = Family::read(Some(&config), None, None).unwrap_err().to_string();
        assert!(err.contains("NaFlex") && err.contains("fixed-resolution"), "{err}");
    }

    #[test]
    fn families_describe_themselves_differently() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "config.json", r#"{"model_type":"siglip"}"#);
        let siglip = Family::read(Some(&config), None, None).unwrap();
        assert_ne!(siglip.describe(), Family::clip().describe());
    }
}
