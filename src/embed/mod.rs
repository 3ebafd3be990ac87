//! The embedding room: text and image towers (CLIP, SigLIP, SigLIP 2) behind batching queues.
//!
//! Owns model files, the model family, the tokenizer, image preprocessing and inference threads.
//! Knows nothing of HTTP or storage: callers get unit-length vectors and typed errors.

pub mod batcher;
pub mod catalog;
pub mod decode;
pub mod error;
pub mod family;
pub mod grouping;
pub mod model_files;
pub mod onnx;
pub mod preprocess;
pub mod resample;
pub mod runtime;
pub mod tokenizer;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ndarray::Array3;
use tokio::sync::watch;

pub use batcher::{BatchQueue, Grouping, Modality};
pub use decode::{RawKind, SourceFormat};
pub use error::{EmbedError, ImageError, LoadError};
pub use family::{Family, FamilyName, ScoreHead};
pub use model_files::ModelFiles;
pub use preprocess::{DecodeLimits, DecodedImage, PreprocessConfig};
pub use tokenizer::{ClipTokenizer, TokenizedText};

use onnx::{ImageEncoder, OnnxImageEncoder, OnnxTextEncoder, TextEncoder};

/// Which weights to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Quantized,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Quantized => "quantized",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub source: String,
    pub precision: Precision,
    pub ort_library: Option<PathBuf>,
    pub threads: usize,
    pub max_batch: usize,
    pub queue_capacity: usize,
}

/// The fixed cost of one text-tower call, in token positions, against which the batcher weighs
/// the padding a longer call would add (see [`grouping::plan`]): mostly per-operator dispatch
/// and thread-pool wake-ups that do not grow with the call. Chosen by the serving benchmark on a
/// quiet machine (2026-12-01, ViT-B/32, 2 CPUs): 16 split drained batches into about nine calls
/// and made int8 queries 38 % dearer per query than one padded call; 48 keeps about two calls
/// per drain and gave both precisions their best 32-client throughput (BENCHMARKS.md).
pub const TEXT_CALL_OVERHEAD: usize = 48;

/// A text's embedding and whether the text had to be cut to fit the model.
#[derive(Debug, Clone)]
pub struct TextEmbedding {
    pub vector: Vec<f32>,
    pub truncated: bool,
}

/// A loaded model of any family (the name is historical): tokenizer, preprocessing settings and
/// the two towers' queues.
pub struct ClipModel {
    pub files: ModelFiles,
    pub precision: Precision,
    family: Family,
    tokenizer: ClipTokenizer,
    preprocess: PreprocessConfig,
    text: BatchQueue<Vec<i64>>,
    image: BatchQueue<Array3<f32>>,
    dim: usize,
    fingerprint: String,
}

impl ClipModel {
    /// Finds, loads and warms up both towers. Blocking: run it off the async runtime.
    pub fn load(options: &ModelOptions) -> Result<Self, LoadError> {
        let files = model_files::resolve(&options.source, options.precision)?;
        let env = runtime::init(options.ort_library.as_deref(), options.threads)?;
        let family = Family::read(files.config.as_deref(), files.tokenizer_config.as_deref(), files.score_head.as_deref())?;
        let tokenizer = ClipTokenizer::with_rules(&files.tokenizer, &family.text)?;
        let preprocess = PreprocessConfig::from_file(&files.preprocessor_config)?;
        let mut text_encoder = OnnxTextEncoder::load_for(env, &files.text_model, tokenizer.pad_id(), &family)?;
        let mut image_encoder = OnnxImageEncoder::load_for(env, &files.vision_model, &family)?;

        // Warm up both towers once: this proves the files are CLIP towers that agree on a
        // dimension before the service calls itself ready, and pays one-off allocation costs now.
        let bad = |path: &PathBuf, tower, message: String| LoadError::BadModel { path: path.clone(), tower, message };
        let probe_ids = tokenizer.encode("a photo").map_err(|e| bad(&files.tokenizer, "text", e.to_string()))?.ids;
        // The warm-up batches are real inference: record them so the embedding series exist
        // from start-up (dashboards and alerts need them before the first request).
        let started = std::time::Instant::now();
        let text_dim =
            text_encoder.encode(&[probe_ids]).map_err(|e| bad(&files.text_model, "text", e.to_string()))?.first().map_or(0, Vec::len);
        crate::metrics::embed_batch(Modality::Text.as_str(), 1, started.elapsed());
        let (h, w) = preprocess.output_size();
        let started = std::time::Instant::now();
        let image_dim = image_encoder
            .encode(&[Array3::zeros((3, h as usize, w as usize))])
            .map_err(|e| bad(&files.vision_model, "vision", e.to_string()))?
            .first()
            .map_or(0, Vec::len);
        crate::metrics::embed_batch(Modality::Image.as_str(), 1, started.elapsed());
        if text_dim == 0 || text_dim != image_dim {
            return Err(bad(
                &files.vision_model,
                "vision",
                format!("image embeddings have {image_dim} dimensions, text embeddings {text_dim}"),
            ));
        }
        let fingerprint = fingerprint(&files, options.precision, text_dim, &family)?;

        // CLIP texts are padded to the longest of their call, so those waiting together run in
        // calls of similar length (issue 13); a fixed-length family pads every text alike, so
        // grouping would only split calls. Pixel tensors all have one shape.
        let text_grouping = match family.text.padding {
            family::Padding::Longest => Grouping::ByLength { length: Vec::len, call_overhead: TEXT_CALL_OVERHEAD },
            family::Padding::Fixed { .. } => Grouping::Whole,
        };
        let text =
            BatchQueue::spawn(Modality::Text, options.max_batch, options.queue_capacity, text_grouping, move |batch: &[Vec<i64>]| {
                text_encoder.encode(batch)
            });
        let image = BatchQueue::spawn(
            Modality::Image,
            options.max_batch,
            options.queue_capacity,
            Grouping::Whole,
            move |batch: &[Array3<f32>]| image_encoder.encode(batch),
        );
        // Reading and optimising the graphs left large temporary buffers freed under live weights.
        crate::malloc::release_free_memory();
        Ok(Self { files, precision: options.precision, family, tokenizer, preprocess, text, image, dim: text_dim, fingerprint })
    }

    /// What kind of model this is (read from its files).
    pub fn family(&self) -> &Family {
        &self.family
    }

    /// The model's calibrated probability that a text matches an image with this cosine, for
    /// sigmoid-head models whose layout keeps the head (`score_head.json`); else `None`.
    pub fn probability(&self, cosine: f32) -> Option<f32> {
        self.family.score_head.map(|head| head.probability(cosine))
    }

    /// Embedding dimension shared by both towers.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Identifies the weights, so an index built with other weights is not searched by mistake.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn tokenize(&self, text: &str) -> Result<TokenizedText, EmbedError> {
        self.tokenizer.encode(text)
    }

    /// The model input for a decoded image (pure CPU work; run it off the async runtime).
    pub fn pixels(&self, image: &DecodedImage) -> Result<Array3<f32>, ImageError> {
        preprocess::pixel_tensor(&image.rgb, &self.preprocess)
    }

    /// Unit-length text embedding.
    #[tracing::instrument(level = "info", skip_all)]
    pub async fn embed_text(&self, text: &str) -> Result<TextEmbedding, EmbedError> {
        let tokens = self.tokenize(text)?;
        let vector = normalized(self.text.embed(tokens.ids).await?);
        Ok(TextEmbedding { vector, truncated: tokens.truncated })
    }

    /// Unit-length image embedding of a preprocessed pixel tensor.
    #[tracing::instrument(level = "info", skip_all)]
    pub async fn embed_pixels(&self, pixels: Array3<f32>) -> Result<Vec<f32>, EmbedError> {
        Ok(normalized(self.image.embed(pixels).await?))
    }

    pub fn queue_depths(&self) -> (usize, usize) {
        (self.text.depth(), self.image.depth())
    }

    /// The tower whose inference thread has stopped, if one has: the model cannot serve then.
    /// Panics in model calls are caught, so this only happens on a bug outside them.
    pub fn stopped_tower(&self) -> Option<Modality> {
        if !self.text.is_running() {
            Some(Modality::Text)
        } else if !self.image.is_running() {
            Some(Modality::Image)
        } else {
            None
        }
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Size plus a hash of the head and tail of each ONNX file: cheap even for large models, and
/// different for any two checkpoints in practice. Other families also hash what turns text and
/// pixels into model input (family rules, tokenizer, preprocessing), and start with their name,
/// so an index is never searched in another family's space; CLIP's stays as it always was, so
/// existing indexes keep working.
fn fingerprint(files: &ModelFiles, precision: Precision, dim: usize, family: &Family) -> Result<String, LoadError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut hasher = blake3::Hasher::new();
    for path in [&files.vision_model, &files.text_model] {
        let io = |e: std::io::Error| LoadError::File { path: path.clone(), message: e.to_string() };
        let mut file = fs_err::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        hasher.update(&len.to_le_bytes());
        let mut buf = vec![0u8; 1 << 16];
        let n = file.read(&mut buf).map_err(io)?;
        hasher.update(&buf[..n]);
        file.seek(SeekFrom::Start(len.saturating_sub(1 << 16))).map_err(io)?;
        let n = file.read(&mut buf).map_err(io)?;
        hasher.update(&buf[..n]);
    }
    if family.name != FamilyName::Clip {
        hasher.update(family.describe().as_bytes());
        for path in [&files.tokenizer, &files.preprocessor_config] {
            let bytes = fs_err::read(path).map_err(|e| LoadError::File { path: path.clone(), message: e.to_string() })?;
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
    }
    Ok(format!("{}-{}-{dim}-{}", family.name.as_str(), precision.as_str(), &hasher.finalize().to_hex()[..16]))
}

/// Where the model is in its life; shown by `/health` and `/ready`.
#[derive(Debug, Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ClipModel>),
    Failed(String),
}

impl ModelState {
    pub fn name(&self) -> &'static str {
        match self {
            ModelState::Loading => "loading",
            ModelState::Ready(_) => "ready",
            ModelState::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Debug for ClipModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipModel").field("source", &self.files.source).field("family", &self.family.name).field("dim", &self.dim).finish()
    }
}

/// Shared handle to the model, which may still be loading.
#[derive(Clone)]
pub struct Embedder {
    state: Arc<RwLock<ModelState>>,
    changes: watch::Sender<&'static str>,
    pub options: Arc<ModelOptions>,
    /// Whether this model's state is the one `/metrics` shows (the served model's, not that of
    /// a model loading for a re-embed beside it).
    reported: Arc<std::sync::atomic::AtomicBool>,
}

impl Embedder {
    /// Starts loading on a background thread and returns at once.
    pub fn load_in_background(options: ModelOptions) -> Self {
        Self::start_loading(options, true, false)
    }

    /// A model that will replace the served one (a rollback, or a switch another replica made):
    /// its state kept out of `/metrics` until [`Embedder::report_state`].
    pub fn load_in_background_unreported(options: ModelOptions) -> Self {
        Self::start_loading(options, false, false)
    }

    /// A model loading beside the served one (for a re-embed): its state kept out of `/metrics`
    /// until [`Embedder::report_state`], and its threads (created from the loader thread, so
    /// they inherit its priority) lowered, so the served model's searches go first.
    pub fn load_in_background_beside(options: ModelOptions) -> Self {
        Self::start_loading(options, false, true)
    }

    /// From now on this model's state is the one `/metrics` shows.
    pub fn report_state(&self) {
        self.reported.store(true, std::sync::atomic::Ordering::SeqCst);
        crate::metrics::model_state(self.state.read().unwrap_or_else(|p| p.into_inner()).name());
    }

    fn start_loading(options: ModelOptions, reported: bool, lowered: bool) -> Self {
        let embedder = Self::loading(options, reported);
        let handle = embedder.clone();
        std::thread::Builder::new()
            .name("model-loader".into())
            .spawn(move || {
                if lowered {
                    crate::background::lower_this_thread();
                }
                handle.finish_loading()
            })
            .expect("spawning the model loader thread: this is a bug or the OS is out of threads");
        embedder
    }

    /// Loads on this thread; for the CLI.
    pub fn load_now(options: ModelOptions) -> Result<Self, LoadError> {
        let model = ClipModel::load(&options)?;
        let embedder = Self::loading(options, true);
        embedder.set(ModelState::Ready(Arc::new(model)));
        Ok(embedder)
    }

    fn loading(options: ModelOptions, reported: bool) -> Self {
        if reported {
            crate::metrics::model_state("loading");
        }
        Self {
            state: Arc::new(RwLock::new(ModelState::Loading)),
            changes: watch::channel("loading").0,
            options: Arc::new(options),
            reported: Arc::new(std::sync::atomic::AtomicBool::new(reported)),
        }
    }

    fn finish_loading(&self) {
        let started = std::time::Instant::now();
        match ClipModel::load(&self.options) {
            Ok(model) => {
                tracing::info!(source = %model.files.source, family = model.family().name.as_str(), dim = model.dim(), precision = model.precision.as_str(), seconds = started.elapsed().as_secs_f64(), "model ready");
                self.set(ModelState::Ready(Arc::new(model)));
            }
            Err(err) => {
                tracing::error!(error = %err, "model failed to load");
                self.set(ModelState::Failed(err.to_string()));
            }
        }
    }

    fn set(&self, state: ModelState) {
        let name = state.name();
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
        if self.reported.load(std::sync::atomic::Ordering::SeqCst) {
            crate::metrics::model_state(name);
        }
        self.changes.send_replace(name);
    }

    /// The current state. A loaded model whose inference thread has stopped is `Failed`, so
    /// `/ready` stops saying 200 while every embedding would fail (issue 14).
    pub fn state(&self) -> ModelState {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let ModelState::Ready(model) = &state {
            if let Some(tower) = model.stopped_tower() {
                let message = format!("the {} embedding thread stopped; restart the service", tower.as_str());
                tracing::error!(error = %message, "model no longer serving");
                let failed = ModelState::Failed(message);
                self.set(failed.clone());
                return failed;
            }
        }
        state
    }

    /// The model if loaded, else why not.
    pub fn model(&self) -> Result<Arc<ClipModel>, EmbedError> {
        match self.state() {
            ModelState::Ready(model) => Ok(model),
            ModelState::Loading => Err(EmbedError::NotReady),
            ModelState::Failed(msg) => Err(EmbedError::LoadFailed(msg)),
        }
    }

    /// Waits until loading has finished one way or the other.
    pub async fn wait_loaded(&self) -> Result<Arc<ClipModel>, EmbedError> {
        let mut changes = self.changes.subscribe();
        loop {
            match self.model() {
                Err(EmbedError::NotReady) => {
                    if changes.changed().await.is_err() {
                        return Err(EmbedError::WorkerGone);
                    }
                }
                other => return other,
            }
        }
    }
}
