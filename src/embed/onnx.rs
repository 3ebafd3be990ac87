//! The ONNX Runtime backend: one session per tower, run on the batching worker's thread.
//!
//! The towers are behind the [`TextEncoder`] and [`ImageEncoder`] traits so another backend
//! (candle, a GPU provider) can stand in without the rest of the crate noticing.

use std::path::Path;

use ndarray::{Array2, Array3, Array4, ArrayViewD, Axis};
use ort::environment::Environment;
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;

use super::error::{EmbedError, LoadError};
use super::family::Family;
use super::family::Padding;

/// Embeds batches of token id sequences.
pub trait TextEncoder: Send {
    fn encode(&mut self, batch: &[Vec<i64>]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Embeds batches of `[3, H, W]` pixel tensors.
pub trait ImageEncoder: Send {
    fn encode(&mut self, batch: &[Array3<f32>]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Sessions run on the environment's shared thread pool (see `runtime::init`).
fn open(env: &Environment, path: &Path, tower: &'static str) -> Result<Session, LoadError> {
    let session_err = |message: String| LoadError::Session { path: path.to_path_buf(), message };
    Session::builder(env)
        .map_err(|e| session_err(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| session_err(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| {
            let message = e.to_string();
            if message.contains("No such file") || message.contains("Load model") {
                LoadError::BadModel { path: path.to_path_buf(), tower, message }
            } else {
                session_err(message)
            }
        })
}

fn has_input(session: &Session, name: &str) -> bool {
    session.inputs().iter().any(|i| i.name() == name)
}

/// The first of `names` the graph outputs.
fn pick_output(session: &Session, path: &Path, tower: &'static str, names: &[&'static str]) -> Result<&'static str, LoadError> {
    if let Some(name) = names.iter().find(|n| session.outputs().iter().any(|o| o.name() == **n)) {
        return Ok(name);
    }
    let found: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let wanted = names.join("` or `");
    Err(LoadError::BadModel { path: path.to_path_buf(), tower, message: format!("no `{wanted}` output (has {found:?})") })
}

fn rows(view: ArrayViewD<'_, f32>, expected: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let view = view
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| EmbedError::Inference(format!("embedding output is not [batch, dim]: {e}")))?;
    if view.nrows() != expected {
        return Err(EmbedError::Inference(format!("model returned {} rows for {expected} inputs", view.nrows())));
    }
    Ok(view.axis_iter(Axis(0)).map(|r| r.to_vec()).collect())
}

pub struct OnnxTextEncoder {
    session: Session,
    pad_id: i64,
    padding: Padding,
    wants_attention_mask: bool,
    output: &'static str,
}

impl OnnxTextEncoder {
    /// A CLIP text tower: texts padded to the longest of each call.
    pub fn load(env: &Environment, path: &Path, pad_id: i64) -> Result<Self, LoadError> {
        Self::load_for(env, path, pad_id, &Family::clip())
    }

    /// A text tower padded and read as its family says.
    pub fn load_for(env: &Environment, path: &Path, pad_id: i64, family: &Family) -> Result<Self, LoadError> {
        let padding = family.text.padding;
        let session = open(env, path, "text")?;
        if !has_input(&session, "input_ids") {
            return Err(LoadError::BadModel { path: path.to_path_buf(), tower: "text", message: "no `input_ids` input".into() });
        }
        let output = pick_output(&session, path, "text", family.outputs.text)?;
        let wants_attention_mask = has_input(&session, "attention_mask");
        Ok(Self { session, pad_id, padding, wants_attention_mask, output })
    }
}

impl TextEncoder for OnnxTextEncoder {
    fn encode(&mut self, batch: &[Vec<i64>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        // CLIP: pad to the longest text of the batch; its causal attention and end-token pooling
        // make the padding invisible, which the batching-equivalence tests pin down. SigLIP:
        // every text to the fixed length on the family's side, since the last position (maybe
        // padding) is what the model pools.
        let width = match self.padding {
            Padding::Longest => longest,
            Padding::Fixed { length, .. } => {
                if longest > length {
                    return Err(EmbedError::Inference(format!("a text has {longest} tokens, over the model's {length}")));
                }
                length
            }
        };
        let mut ids = Array2::<i64>::from_elem((batch.len(), width), self.pad_id);
        let mut mask = Array2::<i64>::zeros((batch.len(), width));
        for (row, seq) in batch.iter().enumerate() {
            let start = self.padding.offset(seq.len(), width);
            for (col, &id) in seq.iter().enumerate() {
                ids[[row, start + col]] = id;
                mask[[row, start + col]] = 1;
            }
        }
        let infer = |e: ort::Error| EmbedError::Inference(e.to_string());
        let ids_tensor = TensorRef::from_array_view(&ids).map_err(infer)?;
        let outputs = if self.wants_attention_mask {
            let mask_tensor = TensorRef::from_array_view(&mask).map_err(infer)?;
            self.session.run(ort::inputs!["input_ids" => ids_tensor, "attention_mask" => mask_tensor]).map_err(infer)?
        } else {
            self.session.run(ort::inputs!["input_ids" => ids_tensor]).map_err(infer)?
        };
        rows(outputs[self.output].try_extract_array::<f32>().map_err(infer)?, batch.len())
    }
}

pub struct OnnxImageEncoder {
    session: Session,
    output: &'static str,
}

impl OnnxImageEncoder {
    /// A CLIP image tower.
    pub fn load(env: &Environment, path: &Path) -> Result<Self, LoadError> {
        Self::load_for(env, path, &Family::clip())
    }

    pub fn load_for(env: &Environment, path: &Path, family: &Family) -> Result<Self, LoadError> {
        let session = open(env, path, "vision")?;
        if !has_input(&session, "pixel_values") {
            return Err(LoadError::BadModel { path: path.to_path_buf(), tower: "vision", message: "no `pixel_values` input".into() });
        }
        let output = pick_output(&session, path, "vision", family.outputs.image)?;
        Ok(Self { session, output })
    }
}

impl ImageEncoder for OnnxImageEncoder {
    fn encode(&mut self, batch: &[Array3<f32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let Some(first) = batch.first() else { return Ok(Vec::new()) };
        let (c, h, w) = first.dim();
        let mut pixels = Array4::<f32>::zeros((batch.len(), c, h, w));
        for (mut slot, tensor) in pixels.axis_iter_mut(Axis(0)).zip(batch) {
            if tensor.dim() != (c, h, w) {
                return Err(EmbedError::Inference("pixel tensors of one batch differ in shape".into()));
            }
            slot.assign(tensor);
        }
        let infer = |e: ort::Error| EmbedError::Inference(e.to_string());
        let input = TensorRef::from_array_view(&pixels).map_err(infer)?;
        let outputs = self.session.run(ort::inputs!["pixel_values" => input]).map_err(infer)?;
        rows(outputs[self.output].try_extract_array::<f32>().map_err(infer)?, batch.len())
    }
}
