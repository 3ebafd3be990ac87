//! Ingesting one file, in two halves: `stage` (stat, hash, dedup, decode, embed) and `commit`
//! (write to the store). Single requests commit at once; directory jobs stage many files and
//! commit them together, one durable write per batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::metadata::read_photo_meta;
use super::{blocking, count_ingest, format_name, image_id, Engine, EngineError, ImageRoots, IngestOutcome, Ingested};
use crate::embed::{preprocess, ClipModel, DecodeLimits, DecodedImage, EmbedError, ImageError};
use crate::metrics;
use crate::store::{ImageRecord, PhotoMeta, VectorStore};

/// What to do when the model's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Answer at once (a live request gets 503 + Retry-After).
    Refuse,
    /// Wait for room (background jobs share the model with live requests and must not lose files).
    Wait,
}

/// How long a waiting ingest sleeps before offering its pixels to the model again.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// A file after `stage`: either nothing to write, or an embedded image to commit.
#[derive(Debug)]
pub enum Staged {
    Done(Ingested),
    /// `generation` names the index generation whose model made `vector`.
    Embedded {
        record: ImageRecord,
        vector: Vec<f32>,
        generation: String,
    },
}

/// The file-reading half of an ingest, done on a blocking thread.
enum Prepared {
    Known(Ingested),
    New { record: ImageRecord, decoded: DecodedImage },
}

impl Engine {
    /// Ingests one file named by a request (confined to the image roots).
    pub async fn ingest_path(&self, requested: &str) -> Result<Ingested, EngineError> {
        let outcome = match self.roots.resolve(requested) {
            Ok(path) => self.ingest_file(path).await,
            Err(e) => Err(e),
        };
        count_ingest(&outcome);
        outcome
    }

    /// Ingests a file already known to be under a root (canonical path), committing at once.
    #[tracing::instrument(level = "info", skip(self), fields(path = %path.display()))]
    pub async fn ingest_file(&self, path: PathBuf) -> Result<Ingested, EngineError> {
        loop {
            let staged = self.stage(path.clone(), WhenBusy::Refuse).await?;
            match self.commit_one(staged).await {
                // Embedded by the model the index just switched away from: again with the new one.
                Err(EngineError::GenerationChanged) => continue,
                outcome => return outcome,
            }
        }
    }

    /// Reads, dedups, decodes and embeds a file, without writing it to the store. The file is
    /// read and decoded once; only the embedding is retried when the model is busy.
    pub async fn stage(&self, path: PathBuf, when_busy: WhenBusy) -> Result<Staged, EngineError> {
        let generation = self.current();
        let model = generation.model()?;
        let store = generation.store.clone();
        let (limits, roots) = (self.limits, self.roots.clone());
        let prepared = {
            let _writing = self.served.writable().await;
            self.in_decode_slot(move || prepare(&path, &roots, &limits, store.as_ref())).await?
        };
        match prepared {
            Prepared::Known(ingested) => Ok(Staged::Done(ingested)),
            Prepared::New { record, decoded } => {
                let vector = self.embed_decoded(&model, decoded, when_busy).await?;
                Ok(Staged::Embedded { record, vector, generation: generation.name.clone() })
            }
        }
    }

    /// Preprocesses and embeds a decoded image.
    pub(super) async fn embed_decoded(
        &self,
        model: &Arc<ClipModel>,
        decoded: DecodedImage,
        when_busy: WhenBusy,
    ) -> Result<Vec<f32>, EngineError> {
        let prep_model = model.clone();
        let pixels = blocking(move || Ok(prep_model.pixels(&decoded)?)).await?;
        match when_busy {
            WhenBusy::Wait => self.embed_pixels_waiting(model, pixels).await,
            WhenBusy::Refuse => Ok(model.embed_pixels(pixels).await?),
        }
    }

    /// Embeds prepared pixels, waiting for room when the model's queue is full.
    pub(super) async fn embed_pixels_waiting(&self, model: &Arc<ClipModel>, pixels: ndarray::Array3<f32>) -> Result<Vec<f32>, EngineError> {
        loop {
            match model.embed_pixels(pixels.clone()).await {
                Err(EmbedError::Overloaded(_)) => tokio::time::sleep(BUSY_RETRY).await,
                outcome => return Ok(outcome?),
            }
        }
    }

    /// Writes images staged with generation `generation`'s model in one durable store write.
    /// [`EngineError::GenerationChanged`] (nothing written) when the index has switched to
    /// another model since: they must be embedded again.
    pub async fn commit(&self, generation: &str, staged: Vec<(ImageRecord, Vec<f32>)>) -> Result<(), EngineError> {
        if staged.is_empty() {
            return Ok(());
        }
        let _writing = self.served.writable().await;
        let current = self.current();
        if current.name != generation {
            return Err(EngineError::GenerationChanged);
        }
        let store = current.store.clone();
        blocking(move || Ok(store.upsert_many(&staged)?)).await?;
        metrics::index_size(current.store.count());
        Ok(())
    }

    pub(super) async fn commit_one(&self, staged: Staged) -> Result<Ingested, EngineError> {
        match staged {
            Staged::Done(ingested) => Ok(ingested),
            Staged::Embedded { record, vector, generation } => {
                self.commit(&generation, vec![(record.clone(), vector)]).await?;
                Ok(Ingested { record, outcome: IngestOutcome::Indexed })
            }
        }
    }

    /// Runs file reading and decoding on a blocking thread, at most one per core at a time, so
    /// N concurrent requests never cost N full-size decodes at once.
    pub(super) async fn in_decode_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        // The permit moves into the blocking task: if the caller goes away mid-decode, the decode
        // still holds its slot until it really ends.
        let permit = self.decode_permit().await?;
        blocking(move || {
            let _decoding = permit;
            work()
        })
        .await
    }
}

pub(super) fn modified_nanos(meta: &std::fs::Metadata) -> Option<i128> {
    let modified = meta.modified().ok()?;
    Some(OffsetDateTime::from(modified).unix_timestamp_nanos())
}

/// The record a newly decoded file gets.
pub(super) fn new_record(path: String, content_hash: String, bytes: u64, modified: Option<i128>, decoded: &DecodedImage) -> ImageRecord {
    ImageRecord {
        id: image_id(&content_hash),
        path,
        content_hash,
        width: decoded.width(),
        height: decoded.height(),
        bytes,
        modified,
        format: format_name(decoded.format),
        ingested_at: OffsetDateTime::now_utc(),
        photo: PhotoMeta::default(),
        photo_read: false,
        pixel_hash: Some(pixel_hash(decoded)),
    }
}

/// Same pixels, same hash, whatever bytes encoded them.
fn pixel_hash(decoded: &DecodedImage) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&decoded.rgb.width().to_le_bytes());
    hasher.update(&decoded.rgb.height().to_le_bytes());
    hasher.update(decoded.rgb.as_raw());
    hasher.finalize().to_hex()[..32].to_string()
}

fn prepare(path: &Path, roots: &ImageRoots, limits: &DecodeLimits, store: &dyn VectorStore) -> Result<Prepared, EngineError> {
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| EngineError::Unreadable { path: shown.clone(), message: e.to_string() };
    // Opened once beneath its root; the size, the bytes and the hash all come from this handle.
    let file = roots.open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    let size = meta.len();
    let modified = modified_nanos(&meta);
    let previous = store.find_by_path(&shown)?;
    if let Some(previous) = &previous {
        if previous.bytes == size && previous.modified.is_some() && previous.modified == modified {
            return Ok(Prepared::Known(Ingested { record: previous.clone(), outcome: IngestOutcome::Unchanged }));
        }
    }
    if size > limits.max_bytes {
        return Err(ImageError::TooManyBytes { bytes: size, limit: limits.max_bytes }.into());
    }
    let bytes = read_at_most(&file, limits.max_bytes).map_err(unreadable)?;
    if bytes.len() as u64 > limits.max_bytes {
        // It grew after its size was read.
        return Err(ImageError::TooManyBytes { bytes: bytes.len() as u64, limit: limits.max_bytes }.into());
    }
    let content_hash = blake3::hash(&bytes).to_hex().to_string();
    let id = image_id(&content_hash);
    if let Some(existing) = store.get(&id)?.filter(|r| r.content_hash == content_hash) {
        if existing.path != shown && !Path::new(&existing.path).exists() {
            // Known content whose recorded file is gone (moved or renamed): it lives here now.
            // Writing it at this path also retires whatever this path showed before.
            if let Some(vector) = store.vector(&id)? {
                let moved = ImageRecord { path: shown, modified, ..existing };
                store.upsert(&moved, &vector)?;
                return Ok(Prepared::Known(Ingested { record: moved, outcome: IngestOutcome::Duplicate }));
            }
        }
        if existing.path == shown && (existing.bytes != size || existing.modified != modified) {
            // The same bytes at the same path with a new date (a copy that did not keep dates,
            // `touch`): remember the date, or the quick check above never matches again and
            // every later job reads and hashes the file anew.
            if let Some(vector) = store.vector(&id)? {
                let refreshed = ImageRecord { bytes: size, modified, ..existing };
                store.upsert(&refreshed, &vector)?;
                return Ok(Prepared::Known(Ingested { record: refreshed, outcome: IngestOutcome::Duplicate }));
            }
        }
        // The same picture is indexed under another path that still shows it. Whatever this
        // path showed before is no longer here, so it must not stay searchable under this path.
        if let Some(stale) = previous.filter(|p| p.id != id && p.path == shown) {
            store.delete(&stale.id)?;
        }
        if existing.path != shown {
            // Remembered for duplicate finding: this content lives at several paths.
            store.add_alias(&id, &shown)?;
        }
        return Ok(Prepared::Known(Ingested { record: existing, outcome: IngestOutcome::Duplicate }));
    }
    metrics::image_decode("ingest");
    let decoded = preprocess::decode(&bytes, limits)?;
    let mut record = new_record(shown, content_hash, size, modified, &decoded);
    record.photo = read_photo_meta(&bytes);
    record.photo_read = true;
    Ok(Prepared::New { record, decoded })
}

/// Reads a file from its handle, stopping one byte past `limit` (a file that grows while it is
/// read is not read without end).
pub(super) fn read_at_most(file: &std::fs::File, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let expected = file.metadata().map(|m| m.len().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}
