//! Copying a whole index from one backend to another (embedded <-> PostgreSQL) without
//! re-embedding: ids, records (with their photo metadata) and vectors, in id order, in batches.
//! Resumable: after every batch the last id copied is written to a cursor file, and a copy that
//! was interrupted starts after it. Upserts are idempotent, so a batch copied twice is harmless.

use std::path::{Path, PathBuf};

use super::{StoreError, VectorStore};
use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the source index is empty (bound to no model): nothing to copy")]
    EmptySource,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cursor file {path}: {source}")]
    Cursor { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Images copied by this run.
    pub images: usize,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
    /// Images the destination holds at the end.
    pub destination_count: usize,
}

/// Copies every image of `from` into `to`, `batch` at a time; `progress` hears the number
/// copied so far by this run after each batch.
pub fn copy_index(
    from: &dyn VectorStore,
    to: &dyn VectorStore,
    cursor_file: &Path,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Copied, MigrateError> {
    let (model, dim) = from.bound_model()?.ok_or(MigrateError::EmptySource)?;
    // The destination must hold the same vector space: a store bound to another model refuses.
    to.bind_model(&model, dim)?;
    let cursor_err = |source| MigrateError::Cursor { path: cursor_file.to_path_buf(), source };
    let mut after = match std::fs::read_to_string(cursor_file) {
        Ok(text) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(cursor_err(e)),
    };
    let resumed = after.is_some();
    let mut copied = 0;
    loop {
        let page = from.export_after(after.as_deref(), batch.max(1))?;
        let Some((last, _)) = page.last() else { break };
        let last = last.id.clone();
        to.upsert_many(&page)?;
        copied += page.len();
        fsutil::write_atomically(cursor_file, last.as_bytes(), fsutil::Existing::Replace).map_err(cursor_err)?;
        after = Some(last);
        progress(copied);
    }
    match std::fs::remove_file(cursor_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(cursor_err(e)),
    }
    Ok(Copied { images: copied, resumed, destination_count: to.count() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance_record, EmbeddedStore};

    fn filled(dir: &Path, n: usize) -> EmbeddedStore {
        let store = EmbeddedStore::open(dir).unwrap();
        store.bind_model("model-m", 2).unwrap();
        for i in 0..n {
            let a = i as f32 / 7.0;
            store.upsert(&conformance_record(&format!("id{i:03}")), &[a.cos(), a.sin()]).unwrap();
        }
        store
    }

    #[test]
    fn an_interrupted_copy_resumes_after_the_last_batch_and_misses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let from = filled(&dir.path().join("from"), 95);
        let to = EmbeddedStore::open(&dir.path().join("to")).unwrap();
        let cursor = dir.path().join("cursor");
        // Interrupted: the process "dies" just after the third batch was written.
        let interrupted =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| copy_index(&from, &to, &cursor, 10, |n| assert!(n < 30, "killed"))));
        assert!(interrupted.is_err());
        assert_eq!(std::fs::read_to_string(&cursor).unwrap(), "id029", "the cursor names the last image written");
        let done = copy_index(&from, &to, &cursor, 10, |_| {}).unwrap();
        assert!(done.resumed);
        assert_eq!(done.images, 65, "starts after the cursor");
        assert_eq!(done.destination_count, 95);
        assert!(!cursor.exists(), "a finished copy leaves no cursor");
        for i in 0..95 {
            let id = format!("id{i:03}");
            assert_eq!(to.get(&id).unwrap(), from.get(&id).unwrap());
            assert_eq!(to.vector(&id).unwrap(), from.vector(&id).unwrap());
        }
    }

    #[test]
    fn a_destination_bound_to_another_model_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let from = filled(&dir.path().join("from"), 3);
        let to = EmbeddedStore::open(&dir.path().join("to")).unwrap();
        to.bind_model("other-model", 2).unwrap();
        let err = copy_index(&from, &to, &dir.path().join("cursor"), 10, |_| {}).unwrap_err();
        assert!(matches!(err, MigrateError::Store(StoreError::ModelMismatch { .. })), "{err}");
        assert_eq!(to.count(), 0);
        let empty = EmbeddedStore::open(&dir.path().join("empty")).unwrap();
        assert!(matches!(copy_index(&empty, &to, &dir.path().join("c2"), 10, |_| {}), Err(MigrateError::EmptySource)));
    }
}
