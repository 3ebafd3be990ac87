//! `visionquery`: serve the HTTP API, index a folder, or search from a terminal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tokio::task::JoinSet;

use visionquery::api::{self, AppState};
use visionquery::config::{CommonArgs, LogFormat, ServeArgs};
use visionquery::embed::{DecodeLimits, Embedder};
use visionquery::engine::{Engine, EngineError, ImageRoots};
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
    let engine = Arc::new(Engine::new(embedder, store, roots, limits(&args.common)));
    let app = api::router(AppState { engine, metrics }, args.max_body_bytes);
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
    Ok(Engine::new(embedder, store, roots, limits(common)))
}

const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jfif"];

fn image_files(dir: &std::path::Path, recursive: bool) -> Vec<PathBuf> {
    let walker = walkdir::WalkDir::new(dir).follow_links(false).max_depth(if recursive { usize::MAX } else { 1 });
    let mut files: Vec<PathBuf> = walker
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    files.sort();
    files
}

async fn index(dir: PathBuf, recursive: bool, common: CommonArgs) -> Result<()> {
    let dir = std::fs::canonicalize(&dir).with_context(|| format!("no such folder: {}", dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let files = image_files(&dir, recursive);
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
    // Keep enough files in flight to fill model batches while others decode.
    let in_flight = common.max_batch.max(1) * 2;
    let mut tasks: JoinSet<(PathBuf, Result<bool, EngineError>)> = JoinSet::new();
    let (mut indexed, mut duplicates) = (0usize, 0usize);
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    let mut pending = files.into_iter();
    loop {
        while tasks.len() < in_flight {
            let Some(path) = pending.next() else { break };
            let engine = engine.clone();
            tasks.spawn(async move {
                let outcome = engine.ingest_file(path.clone()).await.map(|i| i.duplicate);
                (path, outcome)
            });
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (path, outcome) = joined.context("an indexing task panicked")?;
        match outcome {
            Ok(true) => duplicates += 1,
            Ok(false) => indexed += 1,
            Err(EngineError::Embed(e)) if matches!(e, visionquery::embed::EmbedError::Overloaded(_)) => {
                // Cannot happen with in_flight below the queue capacity; retry rather than lose a file.
                tokio::time::sleep(Duration::from_millis(50)).await;
                pending = std::iter::once(path).chain(pending).collect::<Vec<_>>().into_iter();
                continue;
            }
            Err(e) => {
                bar.println(format!("failed: {}: {e}", path.display()));
                failures.push((path, e.to_string()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {indexed}, already indexed {duplicates}, failed {} in {secs:.1}s ({:.1} images/s); index now holds {} images",
        failures.len(),
        (indexed + duplicates) as f64 / secs.max(1e-9),
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
