//! `visionquery`: serve the HTTP API, index a folder, or search from a terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use visionquery::api;
use visionquery::api::dto::{DuplicateGroupInfo, DuplicatesResponse, SearchResponse, SearchResult};
use visionquery::config::{CommonArgs, LogArgs, LogFormat, ServeArgs};
use visionquery::embed::Embedder;
use visionquery::engine::eval;
use visionquery::engine::exclude::Exclusions;
use visionquery::engine::pipeline::{self, FileResult};
use visionquery::engine::{Engine, ImageRoots, SearchSpec, Term, Weighted};
use visionquery::service::{self, Service};
use visionquery::store::{self, PgOptions, StoreLocation};

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
        /// Folder of images: absolute, relative to the current folder, or relative to an
        /// `--image-root`.
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
        /// Print one JSON object for scripts instead of the table: the HTTP API's search
        /// response plus the query, `{"query", "results": [{"id", "path", "score"}], "truncated"}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Copy an index between the embedded store and PostgreSQL (either way) without
    /// re-embedding: ids, metadata and vectors. Resumable: run it again after an interruption.
    Migrate {
        /// The index to copy: a data directory (embedded store) or a postgres:// URL.
        #[arg(long)]
        from: String,
        /// Where to copy it: a data directory or a postgres:// URL (created if new).
        #[arg(long)]
        to: String,
        /// Images per write.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch: u32,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Show the index generations (the current one and its model, the one kept for a rollback,
    /// a re-embed in progress), or roll back to the previous one with `--rollback`. Re-embedding
    /// runs in the server: `serve --model NEW --reembed`, or `POST /reindex`.
    Reindex {
        /// Make the generation before the last switch current again (the current one becomes
        /// the previous). Servers sharing a PostgreSQL index follow within a second; with the
        /// embedded index, stop the server first (or use `POST /reindex/rollback` on it).
        #[arg(long)]
        rollback: bool,
        /// Print the HTTP API's `GET /reindex` response as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// List identical copies and similar pictures in the index.
    Duplicates {
        /// Cosine similarity at or above which two pictures count as similar (0.5 to 1).
        #[arg(long, default_value_t = 0.95)]
        threshold: f32,
        /// Print the HTTP API's `GET /duplicates` response as JSON instead of the listing.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Measure retrieval quality on captioned photos: text->image and image->text recall@1/5/10,
    /// median rank and mean reciprocal rank, with the model `--model` names. Reads the files
    /// only; the index is not touched.
    Eval {
        /// Captions file: one `image<TAB>caption` per line (Flickr8k/Flickr30k/COCO-style TSV;
        /// `photo.jpg#0` token suffixes and a header line are accepted).
        #[arg(long)]
        captions: PathBuf,
        /// Folder the captions' image names are relative to.
        #[arg(long)]
        images: PathBuf,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the embeddings that were ranked to this JSON file, to check the figures
        /// with another implementation.
        #[arg(long, value_name = "FILE")]
        dump_embeddings: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// List the model families VisionQuery reads and Hub repositories known to work, with their
    /// embedding size and input resolution.
    Models {
        /// Print one JSON object (`{"families": [...], "models": [...]}`) instead of the tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Manage API keys (the file `serve --api-keys` reads): add, list, remove.
    Keys {
        #[command(flatten)]
        keys: visionquery::auth::cli::KeysArgs,
        #[command(flatten)]
        log: LogArgs,
    },
}

impl Command {
    fn log(&self) -> &LogArgs {
        match self {
            Command::Migrate { log, .. } | Command::Keys { log, .. } | Command::Models { log, .. } => log,
            Command::Serve(args) => &args.common.log,
            Command::Index { common, .. }
            | Command::Search { common, .. }
            | Command::Duplicates { common, .. }
            | Command::Reindex { common, .. }
            | Command::Eval { common, .. } => &common.log,
        }
    }
}

fn main() -> std::process::ExitCode {
    visionquery::malloc::limit_arenas();
    // One line per error, its causes after colons, in clap's own `error:` style; never a
    // backtrace, which is for bugs, not for a missing folder.
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // A service's log is its record of what happened; a terminal command's output is on stdout,
    // so it only speaks up on stderr for warnings and errors unless asked to.
    let quiet = !matches!(cli.command, Command::Serve(_));
    let tracer = init_telemetry(cli.command.log(), quiet)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Index { dir, recursive, common } => index(dir, recursive, common).await,
            Command::Search { query, top_k, json, common } => search(query, top_k, json, common).await,
            Command::Duplicates { threshold, json, common } => duplicates(threshold, json, common).await,
            Command::Reindex { rollback, json, common } => tokio::task::spawn_blocking(move || reindex(rollback, json, &common)).await?,
            Command::Eval { captions, images, json, dump_embeddings, common } => {
                eval(&captions, &images, json, dump_embeddings.as_deref(), common).await
            }
            Command::Migrate { from, to, batch, .. } => tokio::task::spawn_blocking(move || migrate(&from, &to, batch as usize)).await?,
            Command::Keys { keys, .. } => visionquery::auth::cli::run(&keys).map(|out| print!("{out}")).map_err(Into::into),
            Command::Models { json, .. } => models(json),
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

/// `visionquery models`: the families and the known repositories.
fn models(json: bool) -> Result<()> {
    use visionquery::embed::catalog::{FAMILIES, KNOWN_MODELS};
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::json!({ "families": FAMILIES, "models": KNOWN_MODELS }))?;
        return Ok(());
    }
    writeln!(out, "Families (read from each model's own files):")?;
    for f in FAMILIES {
        writeln!(out, "  {:<8} {}", f.family, f.detected_by)?;
        writeln!(out, "  {:<8} text: {}", "", f.text)?;
        writeln!(out, "  {:<8} image: {}", "", f.image)?;
        writeln!(out, "  {:<8} probability: {}", "", f.probability)?;
    }
    writeln!(out, "\nKnown models (--model REPO):")?;
    writeln!(out, "  {:<34} {:<8} {:>5} {:>10}  note", "repository", "family", "dim", "resolution")?;
    for m in KNOWN_MODELS {
        writeln!(out, "  {:<34} {:<8} {:>5} {:>10}  {}", m.repo, m.family, m.dim, m.resolution, m.note)?;
    }
    Ok(())
}

/// The log filter when `VQ_LOG` is not set: `quiet` commands start at warnings, the others at
/// info, and each `-v` goes one level further.
fn default_log_filter(verbose: u8, quiet: bool) -> &'static str {
    match verbose.saturating_add(u8::from(!quiet)) {
        0 => "warn",
        // ONNX Runtime's own info lines are about graph optimisation, rarely what one is after.
        1 => "info,ort=warn",
        2 => "debug,ort=info",
        _ => "trace",
    }
}

/// Logs to stderr (text or JSON), plus OpenTelemetry trace export when an OTLP endpoint is set.
fn init_telemetry(log: &LogArgs, quiet: bool) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let otlp_endpoint = log.otlp_endpoint.as_deref();
    let filter = tracing_subscriber::EnvFilter::try_from_env("VQ_LOG").unwrap_or_else(|_| default_log_filter(log.verbose, quiet).into());
    // Colour codes only for a person at a terminal, not in files, pipes or container logs.
    let ansi = std::io::stderr().is_terminal();
    let logs = match log.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).boxed(),
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

async fn serve(args: ServeArgs) -> Result<()> {
    let metrics = visionquery::metrics::install();
    // The watcher (`--watch`) follows the roots for as long as it is kept.
    let Service { router: app, engine, watcher: _watcher, .. } = Service::assemble(&args, metrics).await?;
    let addr = std::net::SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, roots = ?args.common.image_roots, data_dir = %args.common.data_dir.display(), "VisionQuery listening");
    match visionquery::embed::decode::heif::libheif_version() {
        Some(version) => tracing::info!(libheif = %version, "HEIC/HEIF/AVIF decoding built in"),
        None => tracing::info!("HEIC/HEIF/AVIF support not built in (build with --features heif; see README, Formats)"),
    }
    let connections = api::serve::ConnectionLimits {
        header_timeout: std::time::Duration::from_secs(args.header_timeout_secs),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
    };
    api::serve::serve(listener, app, connections, shutdown_signal()).await;
    // So the next start loads the approximate index instead of rebuilding it.
    if let Err(e) = engine.save_caches() {
        tracing::warn!(error = %e, "cannot save the approximate index; it will be rebuilt at the next start");
    }
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

/// `visionquery reindex`: shows the generations, or rolls back to the previous one.
fn reindex(rollback: bool, json: bool, common: &CommonArgs) -> Result<()> {
    use visionquery::engine::generations::{read_pointer, replace_pointer};
    let home = service::open_store(common)?;
    let mut pointer = read_pointer(home.as_ref())?;
    if rollback {
        if let Some(building) = &pointer.building {
            anyhow::bail!(
                "a re-embed is building generation {} (job {}); cancel that job first",
                building.generation.name,
                building.job_id
            );
        }
        let Some(previous) = pointer.previous.clone() else { anyhow::bail!("there is no previous index generation to roll back to") };
        let rolled = visionquery::store::Generations { current: previous, previous: Some(pointer.current.clone()), ..pointer.clone() };
        if !replace_pointer(home.as_ref(), &pointer, &rolled)? {
            anyhow::bail!("the index generations changed meanwhile (a server switched them?); try again");
        }
        pointer = read_pointer(home.as_ref())?;
    }
    let info = visionquery::api::dto::GenerationsInfo::from(pointer);
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let describe = |g: &visionquery::api::dto::GenerationInfo| {
        if g.model.is_empty() {
            format!("{} (model not recorded)", g.name)
        } else {
            format!("{} ({}, {})", g.name, g.model, g.precision)
        }
    };
    println!("current:  {}", describe(&info.current));
    println!("previous: {}", info.previous.as_ref().map_or_else(|| "none".into(), describe));
    if let Some(r) = &info.reembed {
        println!("building: {} ({}, {}), job {}", r.generation, r.model, r.precision, r.job_id);
    }
    if rollback && !info.current.model.is_empty() {
        println!("rolled back: serve with --model {} --precision {}", info.current.model, info.current.precision);
    }
    Ok(())
}

/// Loads the model on a blocking thread (it takes seconds for real checkpoints).
async fn load_engine(common: &CommonArgs, roots: ImageRoots) -> Result<Engine> {
    let store = service::open_store(common)?;
    let options = common.model_options();
    let embedder = tokio::task::spawn_blocking(move || Embedder::load_now(options)).await?.context("loading the model")?;
    let exclusions = Exclusions::new(&common.exclude)?;
    let served = visionquery::engine::generations::serve_loaded(store, embedder)?;
    Ok(Engine::new(served, roots, service::decode_limits(common), service::data_dirs(common)).with_exclusions(exclusions))
}

/// The folder to index: as given (absolute, or relative to the current folder), else relative to
/// an image root, the way the web page's folder form reads "photos/2024". Unlike the server, the
/// command does not confine itself to the roots: whoever runs it can read the folder anyway.
fn find_folder(dir: &Path, roots: &[PathBuf]) -> Result<PathBuf> {
    let mut tried = vec![dir.to_path_buf()];
    if dir.is_relative() {
        tried.extend(roots.iter().map(|root| root.join(dir)));
    }
    match tried.iter().find_map(|candidate| std::fs::canonicalize(candidate).ok()) {
        Some(found) if found.is_dir() => Ok(found),
        Some(found) => bail!("{} is not a folder", found.display()),
        None if tried.len() == 1 => bail!("no such folder: {}", dir.display()),
        None => {
            let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            bail!("no such folder: {} (looked for {})", dir.display(), tried.join(", "))
        }
    }
}

async fn index(dir: PathBuf, recursive: bool, common: CommonArgs) -> Result<()> {
    let dir = find_folder(&dir, &common.image_roots)?;
    let walk = pipeline::walk_images(&dir, recursive, &Exclusions::new(&common.exclude)?)?;
    let files = walk.files;
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
    // Folders that could not be read count as failures, as in the server's jobs.
    let mut failures: Vec<(PathBuf, String)> = walk.errors.into_iter().map(|(path, why)| (PathBuf::from(path), why)).collect();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    // The same pipeline as the server's directory jobs: enough files in flight to fill model
    // batches while others are read and decoded.
    let window = common.max_batch.max(1) * 2;
    pipeline::ingest_files(engine.clone(), files, window, &cancel, |path, result| {
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

/// What `search --json` prints: the HTTP API's search response, so scripts parse one shape,
/// plus the query it answers.
#[derive(serde::Serialize)]
struct JsonSearch<'a> {
    query: &'a str,
    #[serde(flatten)]
    response: SearchResponse,
}

async fn search(query: String, top_k: i64, json: bool, common: CommonArgs) -> Result<()> {
    let engine = load_engine(&common, ImageRoots::new(&[])).await?;
    let term = Weighted { term: Term::Text(query.clone()), weight: 1.0 };
    let found = engine.search(SearchSpec { positive: vec![term], top_k, ..SearchSpec::default() }).await?;
    let empty_index = found.hits.is_empty();
    let hint = format!("no images indexed in {} yet; run `visionquery index <DIR>` first", common.data_dir.display());
    if json {
        let response = SearchResponse {
            results: found.hits.into_iter().map(SearchResult::from).collect(),
            truncated: found.truncated,
            more: found.more,
        };
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &JsonSearch { query: &query, response }).context("writing the results")?;
        writeln!(out).context("writing the results")?;
        if empty_index {
            eprintln!("{hint}");
        }
        return Ok(());
    }
    if empty_index {
        println!("{hint}");
        return Ok(());
    }
    if found.truncated {
        eprintln!("note: the query is longer than the model's 77 tokens; only its start was used");
    }
    println!("{:>4}  {:>7}  {:<16}  path", "rank", "score", "id");
    for (rank, hit) in found.hits.iter().enumerate() {
        println!("{:>4}  {:>7.4}  {:<16}  {}", rank + 1, hit.score, hit.record.id, hit.record.path);
    }
    Ok(())
}

async fn duplicates(threshold: f32, json: bool, common: CommonArgs) -> Result<()> {
    let engine = load_engine(&common, ImageRoots::new(&[])).await?;
    let started = Instant::now();
    let groups = engine.duplicates(threshold).await?;
    let response = DuplicatesResponse { threshold, groups: groups.into_iter().map(DuplicateGroupInfo::from).collect() };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &response).context("writing the groups")?;
        writeln!(out).context("writing the groups")?;
        return Ok(());
    }
    for group in &response.groups {
        writeln!(out, "{} ({} images, min score {:.4})", group.kind, group.images.len(), group.min_score)?;
        for image in &group.images {
            writeln!(out, "  {}  {}", image.id, image.path)?;
        }
    }
    let (identical, similar) = response.groups.iter().fold((0, 0), |(i, s), g| if g.kind == "identical" { (i + 1, s) } else { (i, s + 1) });
    eprintln!(
        "{identical} groups of identical copies, {similar} of similar pictures (threshold {threshold}) among {} images in {:.1}s",
        engine.image_count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn eval(captions_file: &Path, images: &Path, json: bool, dump: Option<&Path>, common: CommonArgs) -> Result<()> {
    let text = fs_err::read_to_string(captions_file).context("reading the captions")?;
    let captions = eval::parse_captions(&text, captions_file)?;
    let options = common.model_options();
    let embedder = tokio::task::spawn_blocking(move || Embedder::load_now(options)).await?.context("loading the model")?;
    let model = embedder.model()?;
    let started = Instant::now();
    let (embeddings, skipped) = eval::embed_captioned(model, images, captions, service::decode_limits(&common)).await?;
    let report = eval::evaluate(&embeddings);
    if let Some(dump) = dump {
        let file = std::io::BufWriter::new(fs_err::File::create(dump)?);
        serde_json::to_writer(file, &embeddings).context("writing the embeddings")?;
    }
    for (name, why) in skipped.images.iter().take(10) {
        eprintln!("skipped {name}: {why}");
    }
    if skipped.captions > 0 {
        eprintln!("{} captions skipped: their image is missing from {} or could not be read", skipped.captions, images.display());
    }
    eprintln!("{} images, {} captions embedded in {:.1}s", report.images, report.captions, started.elapsed().as_secs_f64());
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &report).context("writing the report")?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>9} {:>12} {:>7} {:>8}",
        "direction", "recall@1", "recall@5", "recall@10", "median rank", "MRR", "queries"
    )?;
    for (name, s) in [("text->image", &report.text_to_image), ("image->text", &report.image_to_text)] {
        writeln!(
            out,
            "{name:<12} {:>9.3} {:>9.3} {:>9.3} {:>12.1} {:>7.3} {:>8}",
            s.recall_at_1, s.recall_at_5, s.recall_at_10, s.median_rank, s.mrr, s.queries
        )?;
    }
    Ok(())
}

/// A `--from`/`--to` of `migrate`: a postgres:// URL or a data directory.
fn migrate_end(spec: &str) -> StoreLocation {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        StoreLocation::Postgres(PgOptions::new(spec))
    } else {
        StoreLocation::embedded(spec)
    }
}

fn migrate(from: &str, to: &str, batch: usize) -> Result<()> {
    let (from, to) = (migrate_end(from), migrate_end(to));
    let source = store::open(&from).with_context(|| format!("opening the source index at {}", from.describe()))?;
    let destination = store::open(&to).with_context(|| format!("opening the destination at {}", to.describe()))?;
    // The cursor lives beside an embedded end (or in the temp folder between two databases),
    // named after both ends so two different copies never share one.
    let key = blake3::hash(format!("{}\n{}", from.describe(), to.describe()).as_bytes()).to_hex()[..16].to_string();
    let cursor_dir = match (&to, &from) {
        (StoreLocation::Embedded { dir, .. }, _) | (_, StoreLocation::Embedded { dir, .. }) => dir.clone(),
        _ => std::env::temp_dir(),
    };
    let cursor = cursor_dir.join(format!("migrate-{key}.cursor"));
    let total = source.count() as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if cursor.exists() {
        bar.println("resuming an interrupted copy");
    }
    let started = Instant::now();
    let copied = store::migrate::copy_index(source.as_ref(), destination.as_ref(), &cursor, batch, |n| bar.set_position(n as u64))
        .context("copying the index")?;
    bar.finish_and_clear();
    println!(
        "copied {} images{} in {:.1}s from {} to {}; the destination holds {} images",
        copied.images,
        if copied.resumed { " (resumed)" } else { "" },
        started.elapsed().as_secs_f64(),
        from.describe(),
        to.describe(),
        copied.destination_count
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::default_log_filter;

    #[test]
    fn terminal_commands_are_quiet_until_asked_and_serve_logs_info() {
        assert_eq!(default_log_filter(0, true), "warn");
        assert_eq!(default_log_filter(1, true), "info,ort=warn");
        assert_eq!(default_log_filter(2, true), "debug,ort=info");
        assert_eq!(default_log_filter(0, false), "info,ort=warn");
        assert_eq!(default_log_filter(1, false), "debug,ort=info");
        assert_eq!(default_log_filter(u8::MAX, false), "trace");
    }
}
