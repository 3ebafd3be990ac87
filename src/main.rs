//! `visionquery`: serve the HTTP API, index a folder, or search from a terminal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use visionquery::api::{self, AppState, BodyLimits};
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
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    init_logging(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Index { dir, recursive, common } => index(dir, recursive, common).await,
            Command::Search { query, top_k, common } => search(query, top_k, common).await,
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VQ_LOG").unwrap_or_else(|_| "info,ort=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
    let app = api::router(AppState { engine, jobs, metrics }, BodyLimits { json: args.max_body_bytes, upload: args.max_upload_bytes });
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
        bail!("no image files (jpg, png, webp, gif, bmp, tiff) in {}{}", dir.display(), if recursive { "" } else { " (use --recursive for sub-folders)" });
    }
    let engine = Arc::new(load_engine(&common, ImageRoots::new(&[dir.clone()])).await?);

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
