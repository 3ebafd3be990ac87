//! Uploaded images: streamed to a unique temp file in the uploads folder while being hashed (a
//! large upload is never held in memory), decoded once to check it is an image, then stored
//! content-addressed (`uploads/<hash[..2]>/<hash>/<original name>`) and indexed.
//!
//! Concurrency: uploads of the same content in this process are serialised by content hash, so
//! two at once yield one stored file, one id and one row. Temp files are hidden dot-files that
//! dedup never mistakes for a stored file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

use super::ingest::{modified_nanos, new_record, WhenBusy};
use super::metadata::read_photo_meta;
use super::{count_ingest, image_id, Engine, EngineError, IngestOutcome, Ingested};
use crate::embed::{preprocess, DecodedImage, ImageError};
use crate::fsutil;

/// Chunks in flight between the request and the file writer.
const SINK_CHUNKS: usize = 8;

/// An upload on disk, fully received and hashed, not yet stored or indexed.
#[derive(Debug)]
pub struct Upload {
    temp: NamedTempFile,
    content_hash: String,
    bytes: u64,
}

/// Receives an upload's chunks and writes them to a temp file on a blocking thread.
pub struct UploadSink {
    chunks: mpsc::Sender<Bytes>,
    writer: tokio::task::JoinHandle<Result<Upload, EngineError>>,
}

impl UploadSink {
    /// Adds the next chunk. `false` when the writer has stopped (too large, disk error):
    /// stop sending, and `finish` says why.
    pub async fn write(&mut self, chunk: Bytes) -> bool {
        self.chunks.send(chunk).await.is_ok()
    }

    /// The upload, durable in its temp file.
    pub async fn finish(self) -> Result<Upload, EngineError> {
        drop(self.chunks);
        self.writer.await.map_err(|e| EngineError::Internal(format!("upload writer: {e}")))?
    }
}

/// Serialises work on one content hash (dedup and storing) within this process.
#[derive(Default)]
pub(super) struct HashLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl HashLocks {
    async fn lock(&self, hash: &str) -> HashGuard<'_> {
        let lock = self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(hash.to_string()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        HashGuard { locks: self, hash: hash.to_string(), _guard: guard }
    }
}

struct HashGuard<'a> {
    locks: &'a HashLocks,
    hash: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for HashGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the lock when nobody else holds or waits for it (the map and this guard).
        if map.get(&self.hash).is_some_and(|l| Arc::strong_count(l) <= 2) {
            map.remove(&self.hash);
        }
    }
}

impl Engine {
    /// A sink for one uploaded file; the temp file lives in the uploads folder so storing it is
    /// a rename, not a copy.
    pub fn upload_sink(&self) -> Result<UploadSink, EngineError> {
        let uploads = self.dirs.uploads.clone();
        let max_bytes = self.limits.max_bytes;
        let failed = |e: std::io::Error| EngineError::write(&uploads, e);
        let temp = fsutil::temp_beside(&uploads.join("upload")).map_err(failed)?;
        let (chunks, mut incoming) = mpsc::channel::<Bytes>(SINK_CHUNKS);
        let writer = tokio::task::spawn_blocking(move || {
            let mut temp = temp;
            let mut hasher = blake3::Hasher::new();
            let mut bytes = 0u64;
            while let Some(chunk) = incoming.blocking_recv() {
                bytes += chunk.len() as u64;
                if bytes > max_bytes {
                    return Err(ImageError::TooManyBytes { bytes, limit: max_bytes }.into());
                }
                hasher.update(&chunk);
                temp.write_all(&chunk).map_err(|e| EngineError::write(temp.path(), e))?;
            }
            Ok(Upload { temp, content_hash: hasher.finalize().to_hex().to_string(), bytes })
        });
        Ok(UploadSink { chunks, writer })
    }

    /// Stores a received upload content-addressed and indexes it. The file is checked to be a
    /// decodable image before it is kept; it is hashed and decoded exactly once.
    pub async fn ingest_upload(&self, filename: &str, upload: Upload) -> Result<Ingested, EngineError> {
        let outcome = self.store_and_index(filename, upload).await;
        count_ingest(&outcome);
        outcome
    }

    async fn store_and_index(&self, filename: &str, upload: Upload) -> Result<Ingested, EngineError> {
        let generation = self.current();
        let model = generation.model()?;
        let _same_content = self.upload_locks.lock(&upload.content_hash).await;
        let id = image_id(&upload.content_hash);
        let store = generation.store.clone();
        let hash = upload.content_hash.clone();
        if let Some(existing) = tokio::task::spawn_blocking(move || store.get(&id))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??
            .filter(|r| r.content_hash == hash)
        {
            return Ok(Ingested { record: existing, outcome: IngestOutcome::Duplicate });
        }
        let limits = self.limits;
        let uploads = self.dirs.uploads.clone();
        let filename = filename.to_string();
        let (path, bytes, content_hash, decoded, photo) = self
            .in_decode_slot(move || {
                let Upload { temp, content_hash, bytes } = upload;
                let data =
                    fs_err::read(temp.path()).map_err(|e| EngineError::Unreadable { path: filename.clone(), message: e.to_string() })?;
                crate::metrics::image_decode("upload");
                let decoded = preprocess::decode(&data, &limits)?;
                let photo = read_photo_meta(&data);
                let path = keep_upload(&uploads, &content_hash, &filename, &decoded, temp)?;
                Ok((path, bytes, content_hash, decoded, photo))
            })
            .await?;
        let mut record = new_record(
            path.display().to_string(),
            content_hash,
            bytes,
            std::fs::metadata(&path).ok().as_ref().and_then(modified_nanos),
            &decoded,
        );
        (record.photo, record.photo_read) = (photo, true);
        let vector = self.embed_decoded(&model, decoded, WhenBusy::Refuse).await?;
        let stored = record.path.clone();
        match self.commit_one(super::ingest::Staged::Embedded { record, vector, generation: generation.name.clone() }).await {
            // The index switched models meanwhile: the kept file is indexed with the new one.
            Err(EngineError::GenerationChanged) => self.ingest_file(std::path::PathBuf::from(stored)).await,
            outcome => outcome,
        }
    }
}

/// Moves a verified upload into its content folder, or finds the copy already stored there
/// (a crash after storing but before indexing). Returns the stored file's path.
fn keep_upload(
    uploads: &Path,
    content_hash: &str,
    filename: &str,
    decoded: &DecodedImage,
    temp: NamedTempFile,
) -> Result<PathBuf, EngineError> {
    let dir = uploads.join(&content_hash[..2]).join(content_hash);
    let failed = |e: std::io::Error| EngineError::write(&dir, e);
    if let Some(stored) = stored_file(&dir) {
        return Ok(stored);
    }
    fs_err::create_dir_all(&dir).map_err(failed)?;
    let target = dir.join(upload_file_name(filename, extension(decoded)));
    fsutil::persist(temp, &target, fsutil::Existing::Keep).map_err(failed)?;
    Ok(target)
}

/// The stored file of a content folder: its visible file (temp files are dot-files).
fn stored_file(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| !fsutil::is_hidden(&e.file_name()) && e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files.into_iter().next()
}

/// A safe file name from an uploaded one: its last component, with anything unusual replaced.
fn upload_file_name(original: &str, extension: &str) -> String {
    let base = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String =
        base.chars().map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') { c } else { '_' }).take(120).collect();
    let cleaned = cleaned.trim_matches(|c| c == '.' || c == ' ');
    if cleaned.is_empty() {
        format!("upload.{extension}")
    } else {
        cleaned.to_string()
    }
}

fn extension(decoded: &DecodedImage) -> &'static str {
    decoded.format.extension()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_ignores_temp_files_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".upload.1234.tmp"), b"half written").unwrap();
        assert_eq!(stored_file(dir.path()), None);
        std::fs::write(dir.path().join("cat.jpg"), b"stored").unwrap();
        assert_eq!(stored_file(dir.path()), Some(dir.path().join("cat.jpg")));
    }

    #[test]
    fn upload_names_are_reduced_to_a_safe_last_component() {
        assert_eq!(upload_file_name("../../etc/passwd", "jpg"), "passwd");
        assert_eq!(upload_file_name("C:\\photos\\a b.png", "png"), "a b.png");
        assert_eq!(upload_file_name("...", "png"), "upload.png");
    }
}
