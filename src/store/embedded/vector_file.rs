//! The f32 vectors again, in one flat file beside the database: row key `k` at byte
//! `HEADER + k * dim * 4`, so re-scoring a search's candidates is one `pread` of 2 KiB each
//! instead of a B-tree walk ending in a 4 KiB page per vector (redb stores one 2 KiB vector a
//! leaf page), and an exact scan reads 2 GB in order at a million images instead of a 10 GB
//! tree. The database stays the record: this file is a cache of its vectors table, rewritten
//! from it when missing or damaged, read with `pread` so it lives in the page cache and never in
//! the process's memory.
//!
//! Crash safety follows the approximate index: writes land after the database commit they
//! mirror, unsynced; [`VectorFile::sync`] flushes them and then stamps the header with the
//! database generation they reflect. After `kill -9` the next start rewrites the keys the change
//! log records after that generation, which covers every write the stamp does not.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const FILE: &str = "vectors-f32.bin";
/// The header takes one page so vectors start page-aligned.
const HEADER: u64 = 4096;
const MAGIC: [u8; 8] = *b"VQVECF32";
/// Layout version: a change makes old files stale.
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum VectorFileError {
    #[error("no vector file")]
    Missing,
    #[error("the vector file holds {0}-dimensional vectors")]
    Mismatch(usize),
    #[error("the vector file is damaged: {0}")]
    Corrupt(String),
    #[error("vector file: {0}")]
    Io(#[from] std::io::Error),
}

pub struct VectorFile {
    file: File,
    dim: usize,
}

/// The header: what the file holds and the database generation it was last synced at, with a
/// checksum so a torn header write reads as damaged rather than as a generation.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    dim: usize,
    generation: u64,
}

impl Header {
    const LEN: usize = 32;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        bytes[..8].copy_from_slice(&MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        bytes[12..16].copy_from_slice(&(self.dim as u32).to_le_bytes());
        bytes[16..24].copy_from_slice(&self.generation.to_le_bytes());
        let check = blake3::hash(&bytes[..24]);
        bytes[24..].copy_from_slice(&check.as_bytes()[..8]);
        bytes
    }

    fn decode(bytes: &[u8; Self::LEN]) -> Result<Self, VectorFileError> {
        if bytes[..8] != MAGIC || blake3::hash(&bytes[..24]).as_bytes()[..8] != bytes[24..] {
            return Err(VectorFileError::Corrupt("no valid header (never synced, or torn)".into()));
        }
        let number = |range: std::ops::Range<usize>| bytes[range].iter().rev().fold(0u64, |n, b| n << 8 | u64::from(*b));
        if number(8..12) != u64::from(FORMAT) {
            return Err(VectorFileError::Corrupt(format!("format {} instead of {FORMAT}", number(8..12))));
        }
        Ok(Header { dim: number(12..16) as usize, generation: number(16..24) })
    }
}

impl VectorFile {
    /// Opens the file in `dir` holding `dim`-dimensional vectors, with the database generation it
    /// was last synced at.
    pub fn open(dir: &Path, dim: usize) -> Result<(Self, u64), VectorFileError> {
        let path = dir.join(FILE);
        let file = match File::options().read(true).write(true).open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(VectorFileError::Missing),
            other => other?,
        };
        let mut bytes = [0u8; Header::LEN];
        file.read_exact_at(&mut bytes, 0).map_err(|_| VectorFileError::Corrupt("shorter than its header".into()))?;
        let header = Header::decode(&bytes)?;
        if header.dim != dim {
            return Err(VectorFileError::Mismatch(header.dim));
        }
        Ok((Self { file, dim }, header.generation))
    }

    /// Fails when the file is too short to hold a vector for every key below `keys`.
    pub fn check_covers(&self, keys: u64) -> Result<(), VectorFileError> {
        let (needed, length) = (self.offset(keys), self.file.metadata()?.len());
        if length < needed {
            return Err(VectorFileError::Corrupt(format!("{length} bytes where {keys} vectors need {needed}")));
        }
        Ok(())
    }

    /// A new, empty file in `dir` (replacing any), valid once [`VectorFile::sync`] stamps it.
    pub fn create(dir: &Path, dim: usize) -> Result<Self, VectorFileError> {
        let file = File::options().read(true).write(true).create(true).truncate(true).open(dir.join(FILE))?;
        file.set_len(HEADER)?;
        Ok(Self { file, dim })
    }

    /// Forgets the file (the images it held are gone).
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(FILE));
    }

    fn row_bytes(&self) -> u64 {
        self.dim as u64 * 4
    }

    fn offset(&self, key: u64) -> u64 {
        HEADER + key * self.row_bytes()
    }

    /// Writes the vector under `key` (not yet durable: see [`VectorFile::sync`]).
    pub fn write(&self, key: u64, vector: &[f32]) -> Result<(), VectorFileError> {
        if vector.len() != self.dim {
            return Err(VectorFileError::Mismatch(vector.len()));
        }
        Ok(self.file.write_all_at(&super::encode_vector(vector), self.offset(key))?)
    }

    /// Reads the vectors of keys `first..first + out.len() / (dim * 4)` into `out`, as bytes
    /// (little-endian f32).
    pub fn read_run(&self, first: u64, out: &mut [u8]) -> Result<(), VectorFileError> {
        if !(out.len() as u64).is_multiple_of(self.row_bytes()) {
            return Err(VectorFileError::Mismatch(out.len() / 4));
        }
        Ok(self.file.read_exact_at(out, self.offset(first))?)
    }

    /// Makes every write so far durable, then records that the file reflects database
    /// generation `generation`.
    pub fn sync(&self, generation: u64) -> Result<(), VectorFileError> {
        self.file.sync_data()?;
        self.file.write_all_at(&Header { dim: self.dim, generation }.encode(), 0)?;
        Ok(self.file.sync_data()?)
    }

    #[cfg(test)]
    pub fn path(dir: &Path) -> std::path::PathBuf {
        dir.join(FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(seed: u32, dim: usize) -> Vec<f32> {
        (0..dim as u32).map(|i| ((i * 31 + seed * 17) % 97) as f32 / 97.0 - 0.5).collect()
    }

    #[test]
    fn vectors_read_back_as_written_only_after_a_sync_stamps_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let file = VectorFile::create(dir.path(), 8).unwrap();
        for key in [0u64, 3, 1, 2] {
            file.write(key, &vector(key as u32, 8)).unwrap();
        }
        // Written but never synced: not trusted.
        assert!(matches!(VectorFile::open(dir.path(), 8), Err(VectorFileError::Corrupt(_))));
        file.sync(41).unwrap();
        drop(file);
        let (file, generation) = VectorFile::open(dir.path(), 8).unwrap();
        assert_eq!(generation, 41);
        file.check_covers(4).unwrap();
        let mut run = vec![0u8; 4 * 8 * 4];
        file.read_run(0, &mut run).unwrap();
        for (key, bytes) in run.chunks_exact(32).enumerate() {
            assert_eq!(super::super::decode_vector(bytes, 8), Some(vector(key as u32, 8)));
        }
        assert!(matches!(file.check_covers(5), Err(VectorFileError::Corrupt(m)) if m.contains("5 vectors")));
        assert!(matches!(VectorFile::open(dir.path(), 16), Err(VectorFileError::Mismatch(8))));
    }

    #[test]
    fn a_torn_header_or_a_missing_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(VectorFile::open(dir.path(), 8), Err(VectorFileError::Missing)));
        let file = VectorFile::create(dir.path(), 8).unwrap();
        file.write(0, &vector(0, 8)).unwrap();
        file.sync(7).unwrap();
        drop(file);
        let path = VectorFile::path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[17] ^= 0x01; // the generation changed without its checksum
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(VectorFile::open(dir.path(), 8), Err(VectorFileError::Corrupt(_))));
    }
}
