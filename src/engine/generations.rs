//! The index generations the engine serves: the current one (a model and the store of vectors it
//! made) answers every search, and during a re-embed a next one (another model, its own store)
//! is filled beside it, then becomes current in one pointer write.
//!
//! A request takes the current generation once ([`Engine::current`]) and uses its model and its
//! store together, so no search ever compares one model's query with another model's vectors.
//! Writes go through a gate: while a finished build takes in the last changes and becomes
//! current, writes wait (never fail) so that nothing acknowledged is left behind in the old one.
//!
//! The pointer ([`Generations`]) is kept by the home store ([`GenerationStore`]), so replicas
//! sharing a database follow it: each polls it and loads what it names.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{OwnedRwLockReadGuard, RwLock as AsyncRwLock};

use super::EngineError;
use crate::embed::{ClipModel, Embedder, ModelOptions, Precision};
use crate::store::generations::MAIN;
use crate::store::{Backend, Building, GenerationRef, Generations, ModelRef, StoreError, VectorStore};

/// How often the pointer is read again (replicas following another's switch).
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How long a switch waits after announcing itself, so every replica (reading the pointer every
/// [`FOLLOW_EVERY`]) has closed its write gate before the last changes are taken in.
pub const SWITCH_SETTLE: Duration = Duration::from_millis(2500);
/// A switch announced longer ago than this was left by a process that died: another takes over.
pub const SWITCH_ABANDONED: Duration = Duration::from_secs(30);

/// One index generation: a model and the store of the vectors it made.
pub struct Generation {
    pub name: String,
    pub model_ref: ModelRef,
    pub embedder: Embedder,
    pub store: Arc<dyn VectorStore>,
    /// The fingerprint bound to the store in this process.
    bound: Mutex<Option<String>>,
}

impl Generation {
    pub fn new(name: &str, options: ModelOptions, store: Arc<dyn VectorStore>) -> Self {
        Self::with_embedder(name, Embedder::load_in_background(options), store)
    }

    /// A generation being built beside the served one: its model's state stays out of
    /// `/metrics` until it is served ([`Served::set_current`]), and its threads run at
    /// background priority, with one thread less than `options` says (at least one), so queries
    /// keep a core. The switch serves a copy loaded at normal priority with every thread.
    pub fn beside(name: &str, options: ModelOptions, store: Arc<dyn VectorStore>) -> Self {
        let options = ModelOptions { threads: options.threads.saturating_sub(1).max(1), ..options };
        Self::with_embedder(name, Embedder::load_in_background_beside(options), store)
    }

    /// A generation about to be served instead of the current one (a rollback, or another
    /// replica's switch): normal priority, its state out of `/metrics` until it is served.
    pub fn replacing(name: &str, options: ModelOptions, store: Arc<dyn VectorStore>) -> Self {
        Self::with_embedder(name, Embedder::load_in_background_unreported(options), store)
    }

    fn with_embedder(name: &str, embedder: Embedder, store: Arc<dyn VectorStore>) -> Self {
        let model_ref = model_ref(&embedder.options);
        Self { name: name.to_string(), model_ref, embedder, store, bound: Mutex::new(None) }
    }

    /// A generation whose model is already loaded (the CLI).
    pub fn loaded(name: &str, embedder: Embedder, store: Arc<dyn VectorStore>) -> Self {
        let model_ref = model_ref(&embedder.options);
        Self { name: name.to_string(), model_ref, embedder, store, bound: Mutex::new(None) }
    }

    /// The loaded model, bound to this generation's store (first use records it; another
    /// model is refused with `model_mismatch`).
    pub fn model(&self) -> Result<Arc<ClipModel>, EngineError> {
        let model = self.embedder.model()?;
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        if bound.as_deref() != Some(model.fingerprint()) {
            self.store.bind_model(model.fingerprint(), model.dim())?;
            *bound = Some(model.fingerprint().to_string());
        }
        Ok(model)
    }
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation").field("name", &self.name).field("model", &self.model_ref).finish()
    }
}

/// How the settings name a model in the pointer.
pub fn model_ref(options: &ModelOptions) -> ModelRef {
    ModelRef { source: options.source.clone(), precision: options.precision.as_str().to_string() }
}

/// The settings that load `model` again: the served model's, with its source and precision.
pub fn model_options(model: &ModelRef, like: &ModelOptions) -> ModelOptions {
    let precision = if model.precision == Precision::Quantized.as_str() { Precision::Quantized } else { Precision::Fp32 };
    ModelOptions { source: model.source.clone(), precision, ..like.clone() }
}

/// The generations loaded in this process and the gate writes pass.
pub struct Served {
    pub home: Arc<dyn Backend>,
    current: RwLock<Arc<Generation>>,
    next: RwLock<Option<Arc<Generation>>>,
    /// Writes hold it shared; a switch holds it alone while it takes in the last changes.
    gate: Arc<AsyncRwLock<()>>,
    /// Held by the switch here, or by the follower while another replica switches.
    closed: Mutex<Option<tokio::sync::OwnedRwLockWriteGuard<()>>>,
    /// This process is switching (so the follower leaves the gate to it).
    switching_here: AtomicBool,
    /// Held while this process changes which generations it serves (a build begun, finished,
    /// abandoned or rolled back, or the pointer followed), so those never overlap here.
    pub changing: tokio::sync::Mutex<()>,
    /// The generation a switch or rollback left behind: its store stays open for a rollback
    /// (a store is opened once per process).
    previous: Mutex<Option<(String, Arc<dyn VectorStore>)>>,
    /// The serving model's settings: threads, batch sizes and the like for every model loaded.
    pub options: ModelOptions,
}

impl Served {
    pub fn new(home: Arc<dyn Backend>, current: Generation, options: ModelOptions) -> Self {
        Self {
            home,
            current: RwLock::new(Arc::new(current)),
            next: RwLock::new(None),
            gate: Arc::new(AsyncRwLock::new(())),
            closed: Mutex::new(None),
            switching_here: AtomicBool::new(false),
            changing: tokio::sync::Mutex::new(()),
            previous: Mutex::new(None),
            options,
        }
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn next(&self) -> Option<Arc<Generation>> {
        self.next.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_current(&self, generation: Arc<Generation>) {
        generation.embedder.report_state();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = generation;
    }

    pub fn set_next(&self, generation: Option<Arc<Generation>>) {
        *self.next.write().unwrap_or_else(|p| p.into_inner()) = generation;
    }

    /// Waits until writes may go on, and holds them open while the guard lives.
    pub async fn writable(&self) -> OwnedRwLockReadGuard<()> {
        self.gate.clone().read_owned().await
    }

    /// Stops writes (waiting for those under way) until [`Served::open_writes`].
    pub async fn close_writes(&self) {
        if self.closed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return;
        }
        let guard = self.gate.clone().write_owned().await;
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if closed.is_none() {
            *closed = Some(guard);
        }
    }

    pub fn open_writes(&self) {
        self.closed.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Marks this process as the one switching (or not).
    pub fn set_switching_here(&self, switching: bool) {
        self.switching_here.store(switching, Ordering::SeqCst);
    }

    pub fn switching_here(&self) -> bool {
        self.switching_here.load(Ordering::SeqCst)
    }

    /// Keeps the store of a generation just replaced, for a rollback to it.
    pub fn keep_previous(&self, generation: Arc<Generation>) {
        *self.previous.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation.name.clone(), generation.store.clone()));
    }

    /// The kept store of generation `name`, if it is the one kept.
    pub fn previous_store(&self, name: &str) -> Option<Arc<dyn VectorStore>> {
        let kept = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        kept.as_ref().filter(|(kept, _)| kept == name).map(|(_, store)| store.clone())
    }

    /// The pointer, or the one an index that never changed generation implicitly has.
    pub fn pointer(&self) -> Result<Generations, StoreError> {
        read_pointer(self.home.as_ref())
    }

    /// The settings that load generation `named`'s model.
    pub fn options_for(&self, named: &GenerationRef) -> ModelOptions {
        match &named.model {
            Some(model) => model_options(model, &self.options),
            None => self.options.clone(),
        }
    }
}

/// The pointer `home` keeps, or the one an index that never changed generation implicitly has.
pub fn read_pointer(home: &dyn Backend) -> Result<Generations, StoreError> {
    Ok(home.generations()?.unwrap_or_else(|| Generations::initial(None)))
}

/// Replaces the pointer read as `read` with `next`; `false` when someone else wrote first.
pub fn replace_pointer(home: &dyn Backend, read: &Generations, next: &Generations) -> Result<bool, StoreError> {
    let expected = (read.serial > 0).then_some(read.serial);
    home.replace_generations(expected, next)
}

/// The store of generation `name`: the home store for [`MAIN`], else its own.
pub fn open_store(home: &Arc<dyn Backend>, name: &str) -> Result<Arc<dyn VectorStore>, StoreError> {
    if name == MAIN {
        let store: Arc<dyn VectorStore> = home.clone();
        return Ok(store);
    }
    home.open_generation(name)
}

/// What a re-embed reports about itself, for `/health` and `/reindex`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildInfo {
    pub generation: String,
    pub model: String,
    pub precision: String,
    pub job_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

impl From<&Building> for BuildInfo {
    fn from(b: &Building) -> Self {
        Self {
            generation: b.generation.name.clone(),
            model: b.generation.model.as_ref().map_or_else(String::new, |m| m.source.clone()),
            precision: b.generation.model.as_ref().map_or_else(String::new, |m| m.precision.clone()),
            job_id: b.job_id.clone(),
            started_at: b.started_at,
        }
    }
}

/// What a start found in the pointer: the generations to serve, and a re-embed to begin.
pub struct Start {
    pub served: Served,
    /// `--reembed` asked for a model the index is not embedded with yet: begin building it.
    pub begin: Option<ModelOptions>,
}

/// Decides at start what is served: the pointer's current generation (with the `--model` of the
/// settings, refused with `model_mismatch` if it is another, unless `reembed`), and the
/// generation a build interrupted by a stop or a crash was filling (resumed by its job).
pub fn start(home: Arc<dyn Backend>, options: ModelOptions, reembed: bool) -> Result<Start, StartError> {
    let pointer = home.generations()?;
    let wanted = model_ref(&options);
    let Some(pointer) = pointer else {
        // An index from before generations were recorded: which model made it is not known.
        if reembed && home.count() > 0 && home.bound_model()?.is_some() {
            return Err(StartError::UnknownModel);
        }
        let store: Arc<dyn VectorStore> = home.clone();
        let current = Generation::new(MAIN, options.clone(), store);
        return Ok(Start { served: Served::new(home, current, options), begin: None });
    };
    let mut pointer = pointer;
    if pointer.switching.is_some() && home.describe().backend == "embedded" {
        // Only this process ever uses an embedded index: the switch it announced died with it.
        // The build is complete; the follower finishes the switch.
        let cleared = Generations { switching: None, ..pointer.clone() };
        if replace_pointer(home.as_ref(), &pointer, &cleared)? {
            pointer = read_pointer(home.as_ref())?;
        }
    }
    let recorded = pointer.current.model.clone();
    let store = open_store(&home, &pointer.current.name)?;
    let changing = reembed && recorded.as_ref() != Some(&wanted);
    if changing && recorded.is_none() && store.count() > 0 {
        return Err(StartError::UnknownModel);
    }
    // While a build runs, or one is asked for, the current generation keeps its own model.
    let current_options = match &recorded {
        Some(model) if pointer.building.is_some() || changing => model_options(model, &options),
        _ => options.clone(),
    };
    let served = Served::new(home.clone(), Generation::new(&pointer.current.name, current_options, store), options.clone());
    if let Some(building) = &pointer.building {
        let store = open_store(&home, &building.generation.name)?;
        let next_options = served.options_for(&building.generation);
        served.set_next(Some(Arc::new(Generation::beside(&building.generation.name, next_options, store))));
        if changing && building.generation.model.as_ref() != Some(&wanted) {
            tracing::warn!(building = %building.generation.name, job = %building.job_id, "a re-embed to another model is in progress; it continues (cancel its job to start this one)");
        }
        return Ok(Start { served, begin: None });
    }
    Ok(Start { served, begin: changing.then_some(options) })
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "--reembed: this index was made by an earlier version that did not record where its model is. Start once without \
         --reembed and with the --model that built it (VisionQuery records it then), then again with the new --model and --reembed"
    )]
    UnknownModel,
}

/// Records in the pointer where the served generation's model is, once it has bound to its
/// store (so that a later re-embed can keep serving it, and a rollback can load it).
pub fn record_model(home: &dyn Backend, generation: &Generation) -> Result<(), StoreError> {
    let pointer = home.generations()?;
    let read = pointer.clone().unwrap_or_else(|| Generations::initial(None));
    if read.current.name != generation.name || read.current.model.as_ref() == Some(&generation.model_ref) || read.building.is_some() {
        return Ok(());
    }
    let mut next = read.clone();
    next.current.model = Some(generation.model_ref.clone());
    let expected = pointer.map(|p| p.serial);
    home.replace_generations(expected, &next).map(|_| ())
}

/// The current generation with an already loaded model (the CLI's `index` and `search`).
pub fn serve_loaded(home: Arc<dyn Backend>, embedder: Embedder) -> Result<Served, StoreError> {
    let pointer = read_pointer(home.as_ref())?;
    let store = open_store(&home, &pointer.current.name)?;
    let options = (*embedder.options).clone();
    Ok(Served::new(home, Generation::loaded(&pointer.current.name, embedder, store), options))
}
