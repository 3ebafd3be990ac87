//! The vector store room: one [`VectorStore`] trait, an embedded backend, and a conformance
//! suite every backend must pass. Knows nothing of HTTP or models: it stores unit vectors with
//! image metadata and answers exact top-k cosine searches.

#[cfg(test)]
pub mod conformance;
#[cfg(test)]
pub mod jobs_conformance;

/// A sample record for tests and benchmarks.
#[doc(hidden)]
pub fn conformance_record(id: &str) -> ImageRecord {
    ImageRecord {
        id: id.to_string(),
        path: format!("/photos/{id}.jpg"),
        content_hash: format!("{id:0<64}"),
        width: 640,
        height: 480,
        bytes: 12_345,
        modified: Some(1_700_000_000_000_000_000),
        format: "jpeg".into(),
        ingested_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("constant timestamp"),
        photo: PhotoMeta::default(),
        photo_read: true,
        pixel_hash: None,
    }
}
pub mod duplicates;
pub mod embedded;
pub mod export;
pub mod filter;
pub mod generations;
pub mod jobs;
pub mod matrix;
pub mod migrate;
pub mod open;
pub mod photo;
pub mod postgres;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use duplicates::{DuplicateGroup, DuplicateKind};
pub use embedded::{ann_index_options, ann_int8_copy, AnnParams, CacheOrigin, EmbeddedStore, StoreOptions};
pub use export::{exported, Exported};
pub use filter::{Filter, Near, SortBy};
pub use generations::{Building, GenerationRef, GenerationStore, Generations, ModelRef};
pub use jobs::{
    ChunkClaim, ChunkEnd, ChunkRef, DoneFile, FileFailure, FileOutcome, JobKind, JobRecord, JobRemoval, JobState, JobStore, LeaseStatus,
    Listing,
};
pub use open::{open, Backend, StoreLocation};
pub use photo::{Camera, Location, PhotoMeta, TakenAt};
pub use postgres::{PgOptions, PgStore};

/// One page of a search: the query vector, which images may match, in which order.
#[derive(Debug, Clone, Copy)]
pub struct SearchQuery<'a> {
    pub vector: &'a [f32],
    pub filter: &'a Filter,
    pub sort: SortBy,
    pub offset: usize,
    pub limit: usize,
    /// Rank every passing image exactly, never through an approximate index (to check recall).
    pub exact: bool,
}

/// A page of results and whether more follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
    /// Everything that matched (listings only; searches stop counting at the page).
    pub total: Option<usize>,
}

/// Which end of the ingestion order a listing starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Most recently ingested first, as a photo library shows it.
    #[default]
    NewestFirst,
    OldestFirst,
}

/// What we know about an indexed image. The id is derived from the content hash, so the same
/// bytes always get the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    /// Canonical path the image was ingested from.
    pub path: String,
    /// BLAKE3 of the file's bytes, hex.
    pub content_hash: String,
    /// Size after EXIF orientation.
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// File modification time (Unix nanoseconds) when ingested: with `bytes`, lets a re-index
    /// skip unchanged files without reading them.
    #[serde(default)]
    pub modified: Option<i128>,
    /// Encoding, e.g. `jpeg`.
    pub format: String,
    #[serde(with = "time::serde::rfc3339")]
    pub ingested_at: OffsetDateTime,
    /// From the file's EXIF; empty for images indexed before metadata was read (filled in by
    /// a background pass at start).
    #[serde(default)]
    pub photo: PhotoMeta,
    /// Whether `photo` has been read from the file (false for records of older versions).
    #[serde(default)]
    pub photo_read: bool,
    /// BLAKE3 of the decoded pixels (and size): equal for the same picture in other bytes
    /// (a metadata edit), so such copies count as identical.
    #[serde(default)]
    pub pixel_hash: Option<String>,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub record: ImageRecord,
    /// Cosine similarity to the query.
    pub score: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Inserted,
    Replaced,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("vector has {got} dimensions but the index holds {expected}-dimensional vectors")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("the index was built with model `{stored}` but the server runs `{current}`; use another data directory or re-index")]
    ModelMismatch { stored: String, current: String },
    #[error("index database error: {0}")]
    Database(String),
    #[error("index data is corrupt: {0}")]
    Corrupt(String),
    #[error("the index at {path} is in use by another process (a running server?)")]
    Locked { path: String },
    #[error("could not open the index at {path}: {message}")]
    Open { path: String, message: String },
    /// The store cannot be used as configured (a bad URL, credentials, a missing extension).
    #[error("{0}")]
    Setup(String),
    #[error("the index database is unavailable: {0}")]
    Unavailable(String),
    /// The disk (or quota) holding the index is full: nothing was written.
    #[error("no space left for the index: {0}")]
    StorageFull(String),
    #[error("{limit} directory jobs are already queued or running; wait for one to finish")]
    TooManyJobs { limit: usize },
}

/// Which backend a store is and where it lives (never with a password), for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    pub backend: &'static str,
    pub location: String,
}

/// A persistent collection of image vectors. Writes are durable when they return.
pub trait VectorStore: Send + Sync {
    fn describe(&self) -> StoreInfo;
    /// Whether the store can be reached now (a database backend asks its server).
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Saves what is kept in memory to start faster next time (at shutdown).
    fn save_caches(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Ties the store to one model; a store built with another model refuses it.
    fn bind_model(&self, fingerprint: &str, dim: usize) -> Result<(), StoreError>;
    /// Adds or replaces the image with `record.id`. A path names one image: when `record.path`
    /// named another image before, that image is removed in the same write.
    fn upsert(&self, record: &ImageRecord, vector: &[f32]) -> Result<Upserted, StoreError> {
        Ok(self.upsert_many(&[(record.clone(), vector.to_vec())])?.remove(0))
    }
    /// Adds or replaces many images in one durable write (one transaction, one sync).
    fn upsert_many(&self, items: &[(ImageRecord, Vec<f32>)]) -> Result<Vec<Upserted>, StoreError>;
    fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError>;
    /// The image last ingested from `path`, if any.
    fn find_by_path(&self, path: &str) -> Result<Option<ImageRecord>, StoreError>;
    fn vector(&self, id: &str) -> Result<Option<Vec<f32>>, StoreError>;
    /// Removes the image; `false` when it was not there.
    fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// The `k` most similar images, best first (ties by id).
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, StoreError> {
        let query = SearchQuery { vector: query, filter: &Filter::default(), sort: SortBy::Relevance, offset: 0, limit: k, exact: false };
        Ok(self.search_page(&query)?.items)
    }
    /// A page of the images that pass `query.filter` (and its score floor), in `query.sort`
    /// order. Exact: every passing image is ranked, however few pass.
    fn search_page(&self, query: &SearchQuery) -> Result<Page<Hit>, StoreError>;
    /// Images in ingestion order (ties by id), for listing.
    fn list(&self, offset: usize, limit: usize, order: ListOrder) -> Result<Vec<ImageRecord>, StoreError> {
        let sort = match order {
            ListOrder::NewestFirst => SortBy::IngestedDesc,
            ListOrder::OldestFirst => SortBy::IngestedAsc,
        };
        Ok(self.list_page(&Filter::default(), sort, offset, limit)?.items)
    }
    /// A page of the images that pass `filter`, in `sort` order (relevance means newest ingest
    /// first here), with the number that pass.
    fn list_page(&self, filter: &Filter, sort: SortBy, offset: usize, limit: usize) -> Result<Page<ImageRecord>, StoreError>;
    /// Sets an image's photo metadata (read later than its embedding); `false` if it is gone.
    fn set_photo(&self, id: &str, photo: &PhotoMeta) -> Result<bool, StoreError>;
    /// Images whose photo metadata has not been read yet (indexed by older versions).
    fn unread_photo_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Records that the same content as image `id` was also seen at `path`.
    fn add_alias(&self, id: &str, path: &str) -> Result<(), StoreError>;
    /// The other paths where image `id`'s content was seen ([`VectorStore::add_alias`]), as
    /// recorded (the files may be gone since).
    fn aliases(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// Identical pictures (several paths, or the same pixels) and similar ones (cosine at or
    /// above `threshold`), grouped as [`duplicates::group`] does.
    fn duplicates(&self, threshold: f32) -> Result<Vec<DuplicateGroup>, StoreError>;
    fn count(&self) -> usize;
    /// The model fingerprint and dimension the store is bound to, if any.
    fn bound_model(&self) -> Result<Option<(String, usize)>, StoreError>;
    /// Up to `limit` images with their vectors, in id order, after `after` (keyset paging, for
    /// copying a whole index between backends).
    fn export_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(ImageRecord, Vec<f32>)>, StoreError>;
}
