//! Choosing and opening a backend: the one place that knows which backends exist.

use std::path::PathBuf;
use std::sync::Arc;

use super::{EmbeddedStore, GenerationStore, JobStore, PgOptions, PgStore, StoreError, StoreOptions, VectorStore};

/// A store that keeps images, jobs and the index generations: what the service runs on.
pub trait Backend: VectorStore + JobStore + GenerationStore {}

impl<T: VectorStore + JobStore + GenerationStore> Backend for T {}

#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded store in this directory.
    Embedded {
        dir: PathBuf,
        options: StoreOptions,
    },
    Postgres(PgOptions),
}

impl StoreLocation {
    /// The embedded store in `dir` with default settings.
    pub fn embedded(dir: impl Into<PathBuf>) -> Self {
        StoreLocation::Embedded { dir: dir.into(), options: StoreOptions::default() }
    }

    /// Where the store is, for messages (never with a password).
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Embedded { dir, .. } => dir.display().to_string(),
            StoreLocation::Postgres(options) => super::postgres::redact(&options.url),
        }
    }
}

pub fn open(location: &StoreLocation) -> Result<Arc<dyn Backend>, StoreError> {
    Ok(match location {
        StoreLocation::Embedded { dir, options } => Arc::new(EmbeddedStore::open_with(dir, *options)?),
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
