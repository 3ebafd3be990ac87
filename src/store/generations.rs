//! Index generations: a whole index (images, vectors, paths) bound to one model, so that a model
//! change builds a new index beside the one being served and switches to it in one write.
//!
//! The pointer ([`Generations`]) lives in the home store (the one that also keeps jobs) and says
//! which generation is current, which one a switch left behind (kept for a rollback), and which
//! one is being built. Generation [`MAIN`] is the home store itself (every index before
//! generations existed); the others are stores beside it ([`GenerationStore::open_generation`]).
//!
//! Knows nothing of models beyond the strings that name them: loading one is `engine`'s job.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{StoreError, VectorStore};

/// The generation that is the home store itself.
pub const MAIN: &str = "main";

/// The model a generation is bound to, as the settings name it (to load it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// `--model`: a directory in the Hugging Face ONNX layout.
    pub source: String,
    /// `fp32` or `quantized`.
    pub precision: String,
}

/// One generation, as the pointer names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRef {
    /// [`MAIN`], or `g1`, `g2`, ... (letters, digits and `_` only: it names a folder or a schema).
    pub name: String,
    /// `None` for an index made before the model's location was recorded.
    pub model: Option<ModelRef>,
}

/// A generation being built by a re-embed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Building {
    pub generation: GenerationRef,
    /// The job that fills it (its progress is the re-embed's progress).
    pub job_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// Which generation is served, which is kept for a rollback, which is being built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generations {
    pub current: GenerationRef,
    pub previous: Option<GenerationRef>,
    pub building: Option<Building>,
    /// Set while a finished build takes in the last changes and becomes current: writes pause
    /// on every replica meanwhile. A switch announced long ago was abandoned (its process died).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub switching: Option<OffsetDateTime>,
    /// Incremented by every write, so that concurrent writers (replicas) notice each other.
    pub serial: u64,
    /// The last number given to a generation (names are never reused).
    pub last_number: u64,
}

impl Generations {
    /// The pointer of an index that has only ever had its first generation.
    pub fn initial(model: Option<ModelRef>) -> Self {
        Self {
            current: GenerationRef { name: MAIN.into(), model },
            previous: None,
            building: None,
            switching: None,
            serial: 0,
            last_number: 0,
        }
    }

    /// The next generation's name.
    pub fn next_name(&self) -> String {
        format!("g{}", self.last_number + 1)
    }
}

/// Whether `name` can name a generation (a folder name and a PostgreSQL schema suffix).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Where generations live: implemented by every backend's home store.
pub trait GenerationStore: Send + Sync {
    /// The pointer, or `None` for an index that never had a second generation.
    fn generations(&self) -> Result<Option<Generations>, StoreError>;
    /// Writes `next` (with its serial one above `expected`'s) if the stored pointer is still the
    /// one with serial `expected` (`None`: no pointer yet); `false` when another writer won.
    fn replace_generations(&self, expected: Option<u64>, next: &Generations) -> Result<bool, StoreError>;
    /// Opens (creating if need be) the store of generation `name` ([`MAIN`] is the home store,
    /// which the caller already has). Each generation is opened once per process.
    fn open_generation(&self, name: &str) -> Result<Arc<dyn VectorStore>, StoreError>;
    /// Removes generation `name` and everything in it; for [`MAIN`], empties the home store's
    /// images (its jobs and pointer stay).
    fn drop_generation(&self, name: &str) -> Result<(), StoreError>;
}

/// Refuses a name that could escape its folder or schema.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!("`{name}` is not a generation name")))
    }
}

/// Behaviour every backend's generations must show; `open` gives a fresh home store.
#[cfg(test)]
pub mod conformance {
    use super::*;
    use crate::store::{conformance_record, Backend};

    pub fn run_all(open: &dyn Fn() -> Arc<dyn Backend>) {
        the_pointer_is_replaced_only_by_who_read_it_last(open());
        a_generation_is_a_store_of_its_own_until_dropped(open());
        dropping_main_empties_the_home_index_but_keeps_the_pointer(open());
    }

    fn the_pointer_is_replaced_only_by_who_read_it_last(home: Arc<dyn Backend>) {
        assert_eq!(home.generations().unwrap(), None, "a new index has no pointer");
        let model = ModelRef { source: "/models/a".into(), precision: "fp32".into() };
        let first = Generations::initial(Some(model));
        assert!(home.replace_generations(None, &first).unwrap());
        assert!(!home.replace_generations(None, &first).unwrap(), "a second first writer loses");
        let stored = home.generations().unwrap().expect("stored");
        assert_eq!(stored.serial, 1);
        assert_eq!(stored.current, first.current);
        let next = Generations { last_number: 1, ..stored.clone() };
        assert!(home.replace_generations(Some(1), &next).unwrap());
        assert!(!home.replace_generations(Some(1), &next).unwrap(), "a writer with a stale read loses");
        assert_eq!(home.generations().unwrap().expect("stored").serial, 2);
        assert_eq!(home.generations().unwrap().expect("stored").last_number, 1);
    }

    fn a_generation_is_a_store_of_its_own_until_dropped(home: Arc<dyn Backend>) {
        home.bind_model("model-a", 3).unwrap();
        home.upsert(&conformance_record("a"), &[1.0, 0.0, 0.0]).unwrap();
        let g1 = home.open_generation("g1").unwrap();
        assert_eq!(g1.count(), 0, "a new generation starts empty");
        g1.bind_model("model-b", 2).expect("another model and dimension in its own generation");
        g1.upsert(&conformance_record("b"), &[0.0, 1.0]).unwrap();
        assert_eq!((home.count(), g1.count()), (1, 1));
        assert!(home.get("b").unwrap().is_none() && g1.get("a").unwrap().is_none());
        drop(g1);
        let again = home.open_generation("g1").unwrap();
        assert_eq!(again.get("b").unwrap().map(|r| r.id), Some("b".into()), "a generation survives reopening");
        drop(again);
        home.drop_generation("g1").unwrap();
        assert_eq!(home.open_generation("g1").unwrap().count(), 0, "a dropped generation is gone");
        assert!(home.open_generation("../escape").is_err(), "names are checked");
    }

    fn dropping_main_empties_the_home_index_but_keeps_the_pointer(home: Arc<dyn Backend>) {
        home.bind_model("model-a", 3).unwrap();
        home.upsert(&conformance_record("a"), &[1.0, 0.0, 0.0]).unwrap();
        assert!(home.replace_generations(None, &Generations::initial(None)).unwrap());
        home.drop_generation(MAIN).unwrap();
        assert_eq!(home.count(), 0);
        assert_eq!(home.bound_model().unwrap(), None, "no model binding is left");
        home.bind_model("model-c", 2).expect("another model may use it again");
        assert!(home.generations().unwrap().is_some(), "the pointer stays");
    }
}
