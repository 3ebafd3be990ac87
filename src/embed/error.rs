//! Errors of the embedding room. Callers map them to user-facing answers; nothing here knows HTTP.

use std::path::PathBuf;

/// Why an image could not be turned into a pixel tensor.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("not a supported image format (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF, camera RAW)")]
    UnsupportedFormat,
    /// A format this build leaves out (HEIC/HEIF/AVIF without the `heif` cargo feature).
    #[error("{0} support not built in: this VisionQuery was built without the `heif` feature (see README, Formats)")]
    NotBuiltIn(&'static str),
    #[error("RAW file has no usable embedded JPEG preview")]
    NoPreview,
    #[error("image is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, pixels: u64, limit: u64 },
    #[error("image file is {bytes} bytes, over the limit of {limit} bytes")]
    TooManyBytes { bytes: u64, limit: u64 },
    #[error("image has no pixels")]
    Empty,
}

/// Why a model could not be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("ONNX Runtime library not found; looked in: {tried}. Put libonnxruntime.so next to the binary, or set ORT_DYLIB_PATH (or --ort-library) to its path: `pip install onnxruntime==1.32.0` ships it in onnxruntime/capi/")]
    RuntimeNotFound { tried: String },
    #[error("could not load ONNX Runtime from {path}: {message}")]
    Runtime { path: PathBuf, message: String },
    #[error("model {source_name} is missing {missing:?}; {hint}")]
    MissingFiles { source_name: String, missing: Vec<String>, hint: String },
    #[error("could not read {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("model {path} is not a usable {tower} tower: {message}")]
    BadModel { path: PathBuf, tower: &'static str, message: String },
    #[error("ONNX Runtime refused {path}: {message}")]
    Session { path: PathBuf, message: String },
}

/// Why an embedding request failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("the model is still loading")]
    NotReady,
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    #[error("the {0} embedding queue is full; retry shortly")]
    Overloaded(&'static str),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the embedding worker stopped")]
    WorkerGone,
}

/// The message of a caught panic (`panic!` with a string, or a libjpeg error unwound by mozjpeg).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".into())
}
