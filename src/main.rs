//! `visionquery`: serve the HTTP API, index a folder, or search from a terminal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use visionquery::api::{self, AppState, BodyLimits, ServingLimits};
use visionquery::config::{CommonArgs, LogFormat, ServeArgs};
use visionquery::embed::{DecodeLimits, Embedder};
use visionquery::engine::jobs::{self, FileResult, JobManager};
use visionquery::engine::{DataDirs, Engine, ImageRoots};
use visionquery::store::{EmbeddedStore, VectorStore};

#[derive(Debug, Parser)]
#[command(name = "visionquery", version, about = "Find your images by describing them (CLIP semantic search)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve(ServeArgs),
    /// Embed the images of a folder into the index `serve` uses.
    Index {
        /// Folder of images.
        dir: PathBuf,
        /// Descend into sub-folders.
        #[arg(long, short)]
        recursive: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Search the index and print a ranked table.
    Search {
        /// What to look for, e.g. "a dog on a beach".
        query: String,
        /// Number of results.
        #[arg(short = 'k', long = "top-k", default_value_t = 10)]
        top_k: i64,
        #[command(flatten)]
        common: CommonArgs,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (log_format, otlp) = match &cli.command {
        Command::Serve(args) => (args.log_format, args.otlp_endpoint.clone()),
        _ => (LogFormat::Text, None),
    };
    let tracer = init_telemetry(log_format, otlp.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Index { dir, recursive, common } => index(dir, recursive, common).await,
            Command::Search { query, top_k, common } => search(query, top_k, common).await,
        }
    });
    if let Some(provider) = tracer {
        // Flush the spans still in the batch before exiting.
        if let Err(e) = provider.shutdown() {
            eprintln!("OpenTelemetry shutdown: {e}");
        }
    }
    outcome
}

/// Logs to stderr (text or JSON), plus OpenTelemetry trace export when an OTLP endpoint is set.
fn init_telemetry(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_env("VQ_LOG").unwrap_or_else(|_| "info,ort=warn".into());
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    let provider = match otlp_endpoint {
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .build()
                .with_context(|| format!("setting up OTLP export to {url}"))?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("visionquery").build();
            Some(opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
        None => None,
    };
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer().with_tracer(p.tracer("visionquery")).with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    tracing_subscriber::registry().with(logs.with_filter(filter)).with(traces).init();
    if let Some(endpoint) = otlp_endpoint {
        tracing::info!(endpoint, "exporting traces with OpenTelemetry");
    }
    Ok(provider)
}

fn limits(common: &CommonArgs) -> DecodeLimits {
    DecodeLimits { max_pixels: common.max_image_pixels, max_bytes: common.max_image_bytes }
}

fn open_store(common: &CommonArgs) -> Result<Arc<dyn VectorStore>> {
    let store = EmbeddedStore::open(&common.data_dir).with_context(|| format!("opening the index in {}", common.data_dir.display()))?;
    Ok(Arc::new(store))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let metrics = visionquery::metrics::install();
    let store = open_store(&args.common)?;
    let embedder = Embedder::load_in_background(args.common.model_options());
    let roots = ImageRoots::new(&args.image_roots);
    let dirs = DataDirs::under(&args.common.data_dir);
    let engine = Arc::new(Engine::new(embedder, store, roots, limits(&args.common), dirs));
    let jobs = JobManager::start(engine.clone());
    let limits = BodyLimits { json: args.max_body_bytes, upload: args.max_upload_bytes };
    let serving = ServingLimits {
        request_timeout: std::time::Duration::from_secs(args.request_timeout_secs),
        upload_timeout: std::time::Duration::from_secs(args.upload_timeout_secs),
        max_heavy_requests: args.max_heavy_requests as usize,
    };
    let app = api::router(AppState { engine, jobs, metrics, limits, serving });
    let addr = std::net::SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, roots = ?args.image_roots, data_dir = %args.common.data_dir.display(), "VisionQuery listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serving HTTP")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}

/// Loads the model on a blocking thread (it takes seconds for real checkpoints).
async fn load_engine(common: &CommonArgs, roots: ImageRoots) -> Result<Engine> {
    let store = open_store(common)?;
    let options = common.model_options();
    let embedder = tokio::task::spawn_blocking(move || Embedder::load_now(options)).await?.context("loading the model")?;
    Ok(Engine::new(embedder, store, roots, limits(common), DataDirs::under(&common.data_dir)))
}

async fn index(dir: PathBuf, recursive: bool, common: CommonArgs) -> Result<()> {
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("no such folder: {}", dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let files = jobs::image_files(&dir, recursive);
    if files.is_empty() {
        bail!(
            "no image files (jpg, png, webp, gif, bmp, tiff) in {}{}",
            dir.display(),
            if recursive { "" } else { " (use --recursive for sub-folders)" }
        );
    }
    let engine = Arc::new(load_engine(&common, ImageRoots::new(std::slice::from_ref(&dir))).await?);

    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (mut indexed, mut skipped) = (0usize, 0usize);
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    // The same pipeline as the server's directory jobs: enough files in flight to fill model
    // batches while others are read and decoded.
    let window = common.max_batch.max(1) * 2;
    jobs::ingest_files(engine.clone(), &files, 0..files.len(), window, &cancel, |_, path, result| {
        match result {
            FileResult::Indexed => indexed += 1,
            FileResult::Skipped => skipped += 1,
            FileResult::Failed(why) => {
                bar.println(format!("failed: {}: {why}", path.display()));
                failures.push((path.to_path_buf(), why));
            }
        }
        bar.inc(1);
    })
    .await;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {indexed}, already indexed {skipped}, failed {} in {secs:.1}s ({:.1} images/s); index now holds {} images",
        failures.len(),
        (indexed + skipped + failures.len()) as f64 / secs.max(1e-9),
        engine.image_count()
    );
    if !failures.is_empty() {
        println!("\nfailures:");
        for (path, why) in &failures {
            println!("  {}: {why}", path.display());
        }
    }
    Ok(())
}

async fn search(query: String, top_k: i64, common: CommonArgs) -> Result<()> {
    let engine = load_engine(&common, ImageRoots::new(&[])).await?;
    let found = engine.search_text(&query, top_k).await?;
    if found.hits.is_empty() {
        println!("no images indexed in {} yet; run `visionquery index <DIR>` first", common.data_dir.display());
        return Ok(());
    }
    if found.truncated {
        eprintln!("note: the query is longer than the model's 77 tokens; only its start was used");
    }
    println!("{:>4}  {:>7}  path", "rank", "score");
    for (rank, hit) in found.hits.iter().enumerate() {
        println!("{:>4}  {:>7.4}  {}", rank + 1, hit.score, hit.record.path);
    }
    Ok(())
}
