//! Text tokenization: the model's own `tokenizer.json` (CLIP's byte-level BPE, SigLIP's
//! SentencePiece, SigLIP 2's Gemma BPE), cut to the text tower's positions while keeping the
//! special tokens, after the family's case rule (see [`super::family::TextRules`]). Padding is
//! left to the text encoder, which knows whether the family pads to a fixed length.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::{EmbedError, LoadError};
use super::family::{Family, TextRules};

/// CLIP's text tower has 77 position embeddings.
pub const MAX_TOKENS: usize = 77;

/// Token ids of one text, ready for the text tower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<i64>,
    /// The text had more tokens than the model can read; the tail was dropped.
    pub truncated: bool,
}

/// A model's tokenizer with its family's text rules (the name is historical: any family).
pub struct ClipTokenizer {
    inner: Tokenizer,
    pad_id: i64,
    lowercase: bool,
}

impl ClipTokenizer {
    /// CLIP's rules (77 positions, case kept).
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        Self::with_rules(path, &Family::clip().text)
    }

    pub fn with_rules(path: &Path, rules: &TextRules) -> Result<Self, LoadError> {
        let file_err = |message: String| LoadError::File { path: path.to_path_buf(), message };
        let mut inner = Tokenizer::from_file(path).map_err(|e| file_err(e.to_string()))?;
        // Padding is the text encoder's job (to the longest text of a call, or a fixed length).
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: rules.max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| file_err(e.to_string()))?;
        // The pad token tokenizer_config.json names, else the usual ones: CLIP pads with its
        // end-of-text token (the attention mask hides it), SigLIP with `</s>`, Gemma `<pad>`.
        let pad_id = rules
            .pad_token
            .iter()
            .map(String::as_str)
            .chain(["<|endoftext|>", "</s>", "<pad>", "[PAD]"])
            .find_map(|t| inner.token_to_id(t))
            .ok_or_else(|| file_err("no padding or end-of-text token in the vocabulary".into()))?;
        Ok(Self { inner, pad_id: i64::from(pad_id), lowercase: rules.lowercase })
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    pub fn encode(&self, text: &str) -> Result<TokenizedText, EmbedError> {
        // `str::to_lowercase` follows Python's `str.lower` (full Unicode mappings, final sigma).
        let lowered;
        let text = if self.lowercase {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let encoding = self.inner.encode(text, true).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(TokenizedText {
            ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }
}
