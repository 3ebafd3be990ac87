//! Compares the watched roots with the index: the files that are new or changed since they
//! were indexed (by size and modification time, the check ingest itself makes), and the indexed
//! images whose file is gone. Run at start (what changed while the server was down) and after
//! the kernel's event queue overflowed (events were lost). Blocking: walks and stats.
//!
//! Decides nothing: the watcher hands the files to a job and forgets the gone ones.

use std::path::{Path, PathBuf};

use super::super::exclude::Exclusions;
use super::super::pipeline::walk_images;
use super::super::EngineError;
use crate::store::{FileFailure, Filter, SortBy, VectorStore};

/// Indexed records read per page when looking for gone files.
const PAGE: usize = 1000;

/// How the roots differ from the index.
#[derive(Debug, Default)]
pub struct Drift {
    /// Files to check and index (new, or changed since they were indexed), sorted.
    pub changed: Vec<String>,
    /// Entries that could not be read (a folder without permission, a name that is not UTF-8).
    pub failures: Vec<FileFailure>,
    /// Indexed paths whose file is no longer there.
    pub gone: Vec<PathBuf>,
    /// Image files found under the roots.
    pub checked: usize,
}

/// Walks `roots` with the exclusion policy (and without the `ignore` folders: the service's
/// own files) and compares them with `store`.
pub fn compare(roots: &[PathBuf], exclusions: &Exclusions, ignore: &[PathBuf], store: &dyn VectorStore) -> Result<Drift, EngineError> {
    let mut drift = Drift::default();
    for root in roots {
        let walk = match walk_images(root, true, exclusions) {
            Ok(walk) => walk,
            Err(e) => {
                // A root that is not mounted now: report it, and keep its images (the files
                // were not seen deleted; they come back with the mount).
                drift.failures.push(FileFailure { path: root.display().to_string(), error: e.to_string() });
                continue;
            }
        };
        drift.failures.extend(walk.errors.into_iter().map(|(path, error)| FileFailure { path, error }));
        let files: Vec<PathBuf> = walk.files.into_iter().filter(|f| !ignore.iter().any(|i| f.starts_with(i))).collect();
        let found = files.len();
        for file in files {
            drift.checked += 1;
            let Some(path) = file.to_str() else {
                drift.failures.push(FileFailure { path: file.display().to_string(), error: "file name is not valid UTF-8".into() });
                continue;
            };
            if !unchanged(path, &file, store)? {
                drift.changed.push(path.to_string());
            }
        }
        let gone = gone_below(root, store)?;
        if found == 0 && !gone.is_empty() {
            // An empty root whose images are all gone is most likely a drive that is not
            // mounted (its mount point left empty): its images are kept, not dropped.
            tracing::warn!(root = %root.display(), images = gone.len(),
                "the image root is empty: not mounted? Its images are kept in the index (delete them through the API if they are really gone)");
            drift.failures.push(FileFailure {
                path: root.display().to_string(),
                error: "the folder is empty (not mounted?); its indexed images were kept".into(),
            });
            continue;
        }
        drift.gone.extend(gone);
    }
    drift.changed.sort();
    drift.changed.dedup();
    Ok(drift)
}

/// Indexed at this path with this size and modification time (so not worth reading).
fn unchanged(path: &str, file: &Path, store: &dyn VectorStore) -> Result<bool, EngineError> {
    let Some(record) = store.find_by_path(path)? else { return Ok(false) };
    let Ok(meta) = std::fs::metadata(file) else { return Ok(false) };
    let modified = super::super::ingest::modified_nanos(&meta);
    Ok(record.path == path && record.bytes == meta.len() && record.modified.is_some() && record.modified == modified)
}

/// Indexed images under `folder` whose file is gone.
pub fn gone_below(folder: &Path, store: &dyn VectorStore) -> Result<Vec<PathBuf>, EngineError> {
    let filter = Filter { folders: vec![folder.display().to_string()], ..Filter::default() };
    let mut gone = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.list_page(&filter, SortBy::IngestedAsc, offset, PAGE)?;
        let (read, more) = (page.items.len(), page.more);
        offset += read;
        gone.extend(page.items.into_iter().map(|r| PathBuf::from(r.path)).filter(|p| !p.exists()));
        if !more || read == 0 {
            return Ok(gone);
        }
    }
}
