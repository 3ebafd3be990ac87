//! CLIP text tokenization: the model's own `tokenizer.json` (byte-level BPE with start and end
//! tokens), truncated to the text tower's 77 positions while keeping the end token.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::{EmbedError, LoadError};

/// CLIP's text tower has 77 position embeddings.
pub const MAX_TOKENS: usize = 77;

/// Token ids of one text, ready for the text tower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<i64>,
    /// The text had more tokens than the model can read; the tail was dropped.
    pub truncated: bool,
}

pub struct ClipTokenizer {
    inner: Tokenizer,
    pad_id: i64,
}

impl ClipTokenizer {
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| LoadError::File { path: path.to_path_buf(), message: e.to_string() })?;
        // Padding is the batcher's job (it pads to the longest text of each batch).
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| LoadError::File { path: path.to_path_buf(), message: e.to_string() })?;
        // CLIP pads with its end-of-text token; the attention mask hides the padding anyway.
        let pad_id = ["<|endoftext|>", "</s>", "[PAD]"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .ok_or_else(|| LoadError::File { path: path.to_path_buf(), message: "no end-of-text token in the vocabulary".into() })?;
        Ok(Self { inner, pad_id: i64::from(pad_id) })
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    pub fn encode(&self, text: &str) -> Result<TokenizedText, EmbedError> {
        let encoding = self.inner.encode(text, true).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(TokenizedText {
            ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }
}
