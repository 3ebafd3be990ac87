//! Choosing and opening a backend: the one place that knows which backends exist.

use std::path::PathBuf;
use std::sync::Arc;

use super::{EmbeddedStore, JobStore, PgOptions, PgStore, StoreError, VectorStore};

/// A store that keeps both images and jobs: what the service runs on.
pub trait Backend: VectorStore + JobStore {}

impl<T: VectorStore + JobStore> Backend for T {}

#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded store in this directory.
    Embedded(PathBuf),
    Postgres(PgOptions),
}

impl StoreLocation {
    /// Where the store is, for messages (never with a password).
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Embedded(dir) => dir.display().to_string(),
            StoreLocation::Postgres(options) => super::postgres::redact(&options.url),
        }
    }
}

pub fn open(location: &StoreLocation) -> Result<Arc<dyn Backend>, StoreError> {
    Ok(match location {
        StoreLocation::Embedded(dir) => Arc::new(EmbeddedStore::open(dir)?),
        StoreLocation::Postgres(options) => {
            if !options.url.starts_with("postgres://") && !options.url.starts_with("postgresql://") {
                return Err(StoreError::Open {
                    path: "--store".into(),
                    message:
                        "expected a postgres://user:password@host:5432/database URL (omit --store for the embedded index in --data-dir)"
                            .into(),
                });
            }
            Arc::new(super::postgres::off_runtime(|| PgStore::connect(options.clone()))?)
        }
    })
}
