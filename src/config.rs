//! Every setting of the service, parsed once from flags or `VQ_*` environment variables.
//!
//! Knows nothing about how settings are used; modules receive the typed pieces they need.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};

use crate::embed::{ModelOptions, Precision};

/// Settings every subcommand takes (`serve`, `index`, `search`): the model, the index, the image
/// folders, the limits and logging. One set of flags or `VQ_*` variables then works for all of
/// them (a shell alias, an env file), even where a subcommand has no use for one: `search` reads
/// no image folders.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// CLIP model: a local directory in the Hugging Face ONNX layout, or a Hub repository id
    /// resolved through the Hugging Face cache (downloaded when online).
    #[arg(long, env = "VQ_MODEL", default_value = "Xenova/clip-vit-base-patch32")]
    pub model: String,

    /// Which weights to run: full-precision `fp32` or int8 `quantized` (`*_quantized.onnx`).
    #[arg(long, env = "VQ_PRECISION", value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,

    /// Directory holding the persistent index (the embedded store), the thumbnail cache and,
    /// unless `--uploads-dir` says otherwise, uploaded files.
    #[arg(long, env = "VQ_DATA_DIR", default_value = "./data/index")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Path to `libonnxruntime.so`; when unset, looked for next to the binary only (and in a
    /// development checkout's `.runtime/`), never in the working directory.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,

    /// Threads ONNX Runtime may use per model (0 = all cores).
    #[arg(long, env = "VQ_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Largest batch the model runs at once.
    #[arg(long, env = "VQ_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,

    /// Requests that may wait for the model per modality before new ones get 503.
    #[arg(long, env = "VQ_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,

    /// Largest image accepted, in pixels (width × height); larger ones are refused as bombs.
    #[arg(long, env = "VQ_MAX_IMAGE_PIXELS", default_value_t = 50_000_000)]
    pub max_image_pixels: u64,

    /// Largest image file accepted, in bytes.
    #[arg(long, env = "VQ_MAX_IMAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_image_bytes: u64,

    /// Directories images may be ingested from (repeat the flag, or comma-separate in the env).
    /// `index` also looks for a relative folder under them.
    #[arg(long = "image-root", env = "VQ_IMAGE_ROOTS", value_delimiter = ',', default_value = "./data/images")]
    pub image_roots: Vec<PathBuf>,

    /// Files and folders never indexed, as globs (repeat the flag, or comma-separate in the
    /// env), on top of the built-in ones: hidden names, `@eaDir`, `.thumbnails`, `.Trash-*`,
    /// `._*`, `*.part`, `*.crdownload`, `*.tmp`. A glob without `/` matches any file or folder
    /// name (`RAW`, `*.xcf`); one with `/` the whole absolute path (`/photos/private/**`).
    /// Applies to directory jobs, `index` and `--watch`.
    #[arg(long = "exclude", env = "VQ_EXCLUDE", value_delimiter = ',')]
    pub exclude: Vec<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Where the index lives: the embedded store in `--data-dir` (default), or a PostgreSQL
/// database with pgvector that several replicas share.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// `postgres://user:password@host:5432/database` to keep the index in PostgreSQL (pgvector);
    /// `DATABASE_URL` is used when this is unset. Without either, the embedded store.
    #[arg(long = "store", env = "VQ_STORE")]
    pub url: Option<String>,

    /// Where uploaded files are kept. With PostgreSQL and several replicas, a directory every
    /// replica mounts (uploads are served from there by whichever replica is asked).
    #[arg(long, env = "VQ_UPLOADS_DIR")]
    pub uploads_dir: Option<PathBuf>,

    /// Database connections this process keeps at most (PostgreSQL).
    #[arg(long, env = "VQ_PG_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pg_pool_size: u32,

    /// Candidates the embedded store's approximate index keeps while searching (HNSW efSearch): higher finds
    /// more of the true top results, slower. 160 gave recall@10 0.99 on a million clustered
    /// vectors where 128 gave 0.969-0.994 depending on the build and 256 gave 0.995 (BENCHMARKS.md
    /// "Store at scale: 1,000,000 vectors").
    #[arg(long, env = "VQ_ANN_EF_SEARCH", default_value_t = crate::store::AnnParams::DEFAULT.ef_search as u16, value_parser = clap::value_parser!(u16).range(8..=4096))]
    pub ann_ef_search: u16,

    /// HNSW graph degree, used when the vector index is first built (PostgreSQL).
    #[arg(long, env = "VQ_HNSW_M", default_value_t = crate::store::postgres::Hnsw::DEFAULT.m, value_parser = clap::value_parser!(u32).range(2..=100))]
    pub hnsw_m: u32,

    /// HNSW build-time candidate list, used when the vector index is first built (PostgreSQL).
    #[arg(long, env = "VQ_HNSW_EF_CONSTRUCTION", default_value_t = crate::store::postgres::Hnsw::DEFAULT.ef_construction, value_parser = clap::value_parser!(u32).range(4..=1000))]
    pub hnsw_ef_construction: u32,

    /// HNSW search-time candidate list: higher is more exact and slower (PostgreSQL; the
    /// recall and latency per value are in BENCHMARKS.md).
    #[arg(long, env = "VQ_HNSW_EF_SEARCH", default_value_t = crate::store::postgres::Hnsw::DEFAULT.ef_search, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub hnsw_ef_search: u32,
}

impl StoreArgs {
    /// The database URL from `--store`/`VQ_STORE`, else `DATABASE_URL`.
    pub fn database_url(&self) -> Option<String> {
        self.url.clone().filter(|u| !u.trim().is_empty()).or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()))
    }

    pub fn location(&self, data_dir: &std::path::Path) -> crate::store::StoreLocation {
        match self.database_url() {
            Some(url) => {
                let mut options = crate::store::PgOptions::new(url);
                options.pool_size = self.pg_pool_size;
                options.hnsw = crate::store::postgres::Hnsw {
                    m: self.hnsw_m,
                    ef_construction: self.hnsw_ef_construction,
                    ef_search: self.hnsw_ef_search,
                };
                crate::store::StoreLocation::Postgres(options)
            }
            None => {
                let options = crate::store::StoreOptions {
                    ann: crate::store::AnnParams { ef_search: usize::from(self.ann_ef_search), ..Default::default() },
                    ..Default::default()
                };
                crate::store::StoreLocation::Embedded { dir: data_dir.to_path_buf(), options }
            }
        }
    }
}

/// What is logged on stderr, and where traces go.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log more: `-v` info, `-vv` debug, `-vvv` trace. Without it `serve` logs info, while `index`
    /// and `search` (whose output is on stdout) log only warnings and errors. `VQ_LOG`, when set,
    /// decides instead (`tracing` filter syntax).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Log format.
    #[arg(long, env = "VQ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Export traces with OpenTelemetry (OTLP over HTTP) to this collector, e.g.
    /// `http://localhost:4318`. Off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    Fp32,
    Quantized,
}

impl CommonArgs {
    pub fn model_options(&self) -> ModelOptions {
        let threads = if self.threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { self.threads };
        ModelOptions {
            source: self.model.clone(),
            precision: match self.precision {
                PrecisionArg::Fp32 => Precision::Fp32,
                PrecisionArg::Quantized => Precision::Quantized,
            },
            ort_library: self.ort_library.clone(),
            threads,
            max_batch: self.max_batch.max(1),
            queue_capacity: self.queue_capacity.max(1),
        }
    }
}

/// Settings only `visionquery serve` has: the HTTP listener and request sizes.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on.
    #[arg(long, env = "VQ_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on.
    #[arg(long, env = "VQ_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Largest JSON request body, in bytes.
    #[arg(long, env = "VQ_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Keep every image root in sync while the server runs (inotify): new and changed files
    /// are indexed, moved ones keep their id, deleted ones leave the index. At start, a
    /// reconcile pass catches what changed while the server was down.
    #[arg(long, env = "VQ_WATCH")]
    pub watch: bool,

    /// When the index was embedded with another model than `--model`: build a new index
    /// generation with `--model` in the background (a job shows its progress) while searches
    /// are answered from the current one with its own model, then switch to it. Without it, a
    /// different model is refused (`model_mismatch`). `visionquery reindex --rollback` (or
    /// `POST /reindex/rollback`) goes back to the generation before.
    #[arg(long, env = "VQ_REEMBED")]
    pub reembed: bool,

    /// Milliseconds a watched file must stay quiet (no more writes, renames or deletes) after it
    /// was closed before it is indexed; a file still open for writing waits for its close.
    #[arg(long, env = "VQ_WATCH_SETTLE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub watch_settle_ms: u64,

    /// Directory jobs that may be queued or running at once; more are refused with 429.
    #[arg(long, env = "VQ_MAX_QUEUED_JOBS", default_value_t = 32)]
    pub max_queued_jobs: usize,

    /// Seconds a job chunk stays claimed without a progress write: when the process working it
    /// dies, another replica takes it over after this long (a restarted server at once).
    #[arg(long, env = "VQ_JOB_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..))]
    pub job_lease_secs: u64,

    /// Seconds between saves of the embedded store's approximate index while serving (only when
    /// images changed; 0 = at shutdown only). After `kill -9` or a power cut, the next start
    /// replays the changes since the last save instead of rebuilding the index.
    #[arg(long, env = "VQ_INDEX_SAVE_SECS", default_value_t = 300)]
    pub index_save_secs: u64,

    /// Largest multipart upload (all files of one request), in bytes.
    #[arg(long, env = "VQ_MAX_UPLOAD_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Parts (files) one multipart upload may carry; a request with more is refused (413) at the
    /// first part over the limit.
    #[arg(long, env = "VQ_MAX_UPLOAD_PARTS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_parts: u64,

    /// Seconds a client has to send a request's headers (also how long an idle kept-alive
    /// connection stays open); a client that is slower is disconnected.
    #[arg(long, env = "VQ_HEADER_TIMEOUT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,

    /// Client connections open at once; further clients wait until one closes.
    #[arg(long, env = "VQ_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Seconds a request may take before it is answered 503 `timeout` (uploads excepted).
    #[arg(long, env = "VQ_REQUEST_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,

    /// Seconds an upload (`/ingest/upload`, `/search/image`) may take, receiving its body
    /// included: up to the upload limit over a slow link. Also the deadline of `/duplicates`,
    /// which compares every pair of images.
    #[arg(long, env = "VQ_UPLOAD_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub upload_timeout_secs: u64,

    /// Heavy requests (uploads, search by image, duplicates) served at once; more are answered
    /// 503 with `Retry-After` at once. Default: 2 × cores + 2.
    #[arg(long, env = "VQ_MAX_HEAVY_REQUESTS", default_value_t = default_max_heavy_requests(), value_parser = clap::value_parser!(u32).range(1..))]
    pub max_heavy_requests: u32,

    #[command(flatten)]
    pub access: AccessArgs,
}

/// Enough heavy requests to keep every core decoding while as many more receive their bodies,
/// few enough that their bodies and decodes fit in memory.
fn default_max_heavy_requests() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(2 * cores + 2).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Who may call the API, how often, and from which pages (see README, "Access control").
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Key file (`name scope hash` per line, written by `visionquery keys add`). With keys
    /// (this file or `VQ_API_KEY`), every API route but /health, /ready, /metrics, the docs and
    /// the web page needs `Authorization: Bearer <key>`. The bootstrap admin key is read from the
    /// environment variable `VQ_API_KEY` only (never a flag: flags show in `ps`).
    #[arg(long = "api-keys", env = "VQ_API_KEYS_FILE")]
    pub api_keys: Option<PathBuf>,

    /// Serve without keys on a non-loopback address, on purpose (refused otherwise).
    #[arg(long, env = "VQ_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// Put /metrics behind a `read` key (open by default, for Prometheus).
    #[arg(long, env = "VQ_METRICS_NEED_KEY")]
    pub metrics_need_key: bool,

    /// Requests per second each key (or each client address, without a key) may make, with
    /// bursts of as many; more are answered 429 with `Retry-After`. Off when unset.
    #[arg(long, env = "VQ_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,

    /// Origins other web pages may call the API from (CORS), e.g. `https://photos.example`;
    /// repeat or comma-separate. Off when unset: only the page served here can.
    #[arg(long = "cors-origin", env = "VQ_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Host names (the `Host` header, port ignored) the server answers to; others get 421, which
    /// defeats DNS rebinding. Default: localhost, 127.0.0.1, ::1 and the --host address. `*`
    /// accepts any (reasonable when every route needs a key).
    #[arg(long = "allowed-hosts", env = "VQ_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
}

impl AccessArgs {
    /// The bootstrap admin key: the environment variable `VQ_API_KEY` only, never a flag (the
    /// arguments of a process are visible to every user of the machine).
    pub fn bootstrap_key(&self) -> Option<String> {
        std::env::var("VQ_API_KEY").ok().filter(|k| !k.trim().is_empty()).map(|k| k.trim().to_string())
    }
}
