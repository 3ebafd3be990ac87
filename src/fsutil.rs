//! Writing files the service owns (job records, uploads, thumbnails) so that a reader never sees
//! a partly written file and an acknowledged write survives a crash: a unique temp file beside the
//! target, fsync, rename, fsync of the folder. One helper, used by every place that writes.
//!
//! Temp files are dot-files (`.name.XXXXXX.tmp`), so folder scans skip them by the same rule
//! that skips other hidden files.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// What to do when the target already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it atomically (job records, caches).
    Replace,
    /// Keep it and report [`Written::AlreadyThere`] (content-addressed files: equal bytes).
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    AlreadyThere,
}

/// A temp file in `dir` that becomes `target` when persisted; dropped unpersisted, it is removed.
pub fn temp_beside(target: &Path) -> io::Result<NamedTempFile> {
    let dir = parent_of(target)?;
    fs_err::create_dir_all(dir)?;
    let stem = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tempfile::Builder::new().prefix(&format!(".{stem}.")).suffix(".tmp").tempfile_in(dir)
}

/// Makes a filled temp file durable under `target` (fsync file, rename, fsync folder).
pub fn persist(temp: NamedTempFile, target: &Path, existing: Existing) -> io::Result<Written> {
    temp.as_file().sync_all()?;
    match existing {
        Existing::Replace => {
            temp.persist(target).map_err(|e| e.error)?;
        }
        Existing::Keep => match temp.persist_noclobber(target) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Ok(Written::AlreadyThere),
            Err(e) => return Err(e.error),
        },
    }
    sync_dir(parent_of(target)?)?;
    Ok(Written::New)
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomically(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<Written> {
    if existing == Existing::Keep && path.exists() {
        return Ok(Written::AlreadyThere);
    }
    let mut temp = temp_beside(path)?;
    temp.write_all(bytes)?;
    persist(temp, path, existing)
}

/// fsync of a folder, so a rename or a new entry in it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

/// Whether a failed write ran out of space (a full disk or a quota): a condition that passes
/// once space is freed, unlike other write errors.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// True for names a folder scan must ignore: hidden files, and our own temp files.
pub fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no parent folder", path.display())))
}

/// A path's canonical form, for records that must not depend on the working directory.
pub fn canonical_dir(dir: &Path) -> io::Result<PathBuf> {
    fs_err::create_dir_all(dir)?;
    fs_err::canonicalize(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_overwrites_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.json");
        assert_eq!(write_atomically(&path, b"one", Existing::Replace).unwrap(), Written::New);
        write_atomically(&path, b"two", Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn keep_never_clobbers_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jpg");
        write_atomically(&path, b"first", Existing::Keep).unwrap();
        let mut temp = temp_beside(&path).unwrap();
        temp.write_all(b"second").unwrap();
        assert_eq!(persist(temp, &path, Existing::Keep).unwrap(), Written::AlreadyThere);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the losing temp file is removed");
    }

    #[test]
    fn concurrent_writers_get_distinct_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let a = temp_beside(&path).unwrap();
        let b = temp_beside(&path).unwrap();
        assert_ne!(a.path(), b.path());
        assert!(is_hidden(a.path().file_name().unwrap()));
    }
}
