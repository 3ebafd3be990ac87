//! The service `visionquery serve` runs, assembled from its settings: the store, the model
//! (loading in the background), the engine, the job workers and the HTTP router.
//!
//! One place builds it so that everything driving the service in-process (the binary, the fuzz
//! targets) runs the same app users run. Knows nothing of sockets or signals: the caller binds
//! the listener and decides when to stop.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::{self, AppState, BodyLimits, Security, ServingLimits};
use crate::config::{CommonArgs, ServeArgs};
use crate::embed::DecodeLimits;
use crate::engine::exclude::Exclusions;
use crate::engine::generations::{self, StartError};
use crate::engine::jobs::{self, JobManager, JobSettings};
use crate::engine::watch::{FolderWatcher, WatchError, WatchSettings};
use crate::engine::{DataDirs, Engine, EngineError, ImageRoots};
use crate::store::{self, Backend, JobStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Security(#[from] api::security::SecurityError),
    #[error("opening the index at {location}: {source}")]
    Store { location: String, source: StoreError },
    #[error("--exclude: {0}")]
    Exclude(EngineError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Generations(#[from] StartError),
}

/// The assembled service, ready to be served.
pub struct Service {
    pub router: axum::Router,
    pub store: Arc<dyn Backend>,
    pub engine: Arc<Engine>,
    /// Keeps the image roots in sync while it lives (`--watch`).
    pub watcher: Option<FolderWatcher>,
}

impl Service {
    /// Builds the service. Fails fast, before anything slow, on settings that must not serve
    /// (an exposed address without keys) and on an index that cannot be opened; the model loads
    /// in the background meanwhile (`/ready` says when it is loaded).
    ///
    /// Must be called inside a Tokio runtime (the job workers and cache saver are tasks).
    pub async fn assemble(args: &ServeArgs, metrics: PrometheusHandle) -> Result<Self, ServiceError> {
        let security = Security::from_args(&args.access, args.host)?;
        let exclusions = Exclusions::new(&args.common.exclude).map_err(ServiceError::Exclude)?;
        let store = open_store(&args.common)?;
        let start = generations::start(store.clone(), args.common.model_options(), args.reembed)?;
        let roots = ImageRoots::new(&args.common.image_roots);
        let dirs = data_dirs(&args.common);
        let job_store: Arc<dyn JobStore> = store.clone();
        jobs::import_legacy_jobs(&dirs.jobs_file, job_store.as_ref());
        let engine = Arc::new(Engine::new(start.served, roots, decode_limits(&args.common), dirs).with_exclusions(exclusions));
        engine.watch_store();
        engine.keep_saving_caches((args.index_save_secs > 0).then(|| Duration::from_secs(args.index_save_secs)));
        let job_settings = JobSettings { max_unfinished: args.max_queued_jobs, lease: Duration::from_secs(args.job_lease_secs) };
        let jobs = JobManager::start(engine.clone(), job_store, job_settings);
        jobs.follow_generations();
        remember_model_when_bound(engine.clone(), store.clone());
        if let Some(target) = start.begin {
            match jobs.reembed(target).await {
                Ok((job, build)) => {
                    tracing::info!(job = %job.record.id, generation = %build.generation, "re-embedding the index with the new model")
                }
                Err(e) => tracing::error!(error = %e, "--reembed: cannot start the re-embed"),
            }
        }
        let watcher = if args.watch {
            let settings = WatchSettings {
                roots: args.common.image_roots.clone(),
                settle: Duration::from_millis(args.watch_settle_ms),
                // The service's own files (thumbnails, uploads) when the data directory lies
                // under a root: never indexed as the user's photos.
                ignore: vec![args.common.data_dir.clone(), engine.dirs().uploads.clone()],
            };
            Some(FolderWatcher::start(engine.clone(), jobs.clone(), settings)?)
        } else {
            None
        };
        match jobs.fill_missing_photo_metadata().await {
            Ok(Some(job)) => tracing::info!(job = %job.record.id, "reading photo metadata of images indexed by an older version"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot queue the photo metadata pass"),
        }
        let limits = BodyLimits {
            json: args.max_body_bytes,
            upload: args.max_upload_bytes,
            upload_parts: usize::try_from(args.max_upload_parts).unwrap_or(usize::MAX),
        };
        let serving = ServingLimits {
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            upload_timeout: Duration::from_secs(args.upload_timeout_secs),
            max_heavy_requests: args.max_heavy_requests as usize,
        };
        let router = api::router(AppState { engine: engine.clone(), jobs, metrics, limits, serving, security });
        Ok(Self { router, store, engine, watcher })
    }
}

/// Once the served model has loaded and bound to its index, records where it is (see
/// [`generations::record_model`]).
fn remember_model_when_bound(engine: Arc<Engine>, home: Arc<dyn Backend>) {
    tokio::spawn(async move {
        let generation = engine.current();
        if generation.embedder.wait_loaded().await.is_err() || generation.model().is_err() {
            return;
        }
        let recorded = tokio::task::spawn_blocking(move || generations::record_model(home.as_ref(), &generation)).await;
        if let Ok(Err(e)) = recorded {
            tracing::warn!(error = %e, "cannot record the model's location in the index");
        }
    });
}

/// The largest image accepted, from the settings.
pub fn decode_limits(common: &CommonArgs) -> DecodeLimits {
    DecodeLimits { max_pixels: common.max_image_pixels, max_bytes: common.max_image_bytes }
}

/// The index `--store` names: PostgreSQL, or the embedded store in `--data-dir`.
pub fn open_store(common: &CommonArgs) -> Result<Arc<dyn Backend>, ServiceError> {
    let location = common.store.location(&common.data_dir);
    let store = store::open(&location).map_err(|source| ServiceError::Store { location: location.describe(), source })?;
    // Opening read the whole index (and may have rebuilt its graph): give back what that freed.
    crate::malloc::release_free_memory();
    Ok(store)
}

/// The data directory's folders, with uploads where `--uploads-dir` says.
pub fn data_dirs(common: &CommonArgs) -> DataDirs {
    let mut dirs = DataDirs::under(&common.data_dir);
    if let Some(uploads) = &common.store.uploads_dir {
        dirs.uploads = uploads.clone();
    }
    dirs
}
