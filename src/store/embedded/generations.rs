//! Generations on the embedded backend: the pointer is a `meta` entry of the home database
//! (written in one transaction), and each generation but [`MAIN`] is a store of its own in
//! `generations/<name>/` beside the home database.

use std::sync::Arc;

use redb::ReadableTable;

use super::{ann::Ann, db_err, vector_file::VectorFile, EmbeddedStore, State, ALIASES, IMAGES, KEYS, META, ORDER, PATHS, VECTORS};
use crate::store::generations::{check_name, GenerationStore, Generations, MAIN};
use crate::store::{StoreError, VectorStore};

/// Meta entry holding the pointer (JSON).
const POINTER: &str = "generations";
/// Folder of the generations beside the home database.
const FOLDER: &str = "generations";

impl GenerationStore for EmbeddedStore {
    fn generations(&self) -> Result<Option<Generations>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let stored = meta.get(POINTER).map_err(db_err)?.map(|v| v.value().to_string());
        stored.map(|json| parse(&json)).transpose()
    }

    fn replace_generations(&self, expected: Option<u64>, next: &Generations) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let stored = meta.get(POINTER).map_err(db_err)?.map(|v| v.value().to_string());
            let stored_serial = stored.map(|json| parse(&json)).transpose()?.map(|g| g.serial);
            if stored_serial != expected {
                return Ok(false);
            }
            let written = Generations { serial: expected.map_or(1, |s| s + 1), ..next.clone() };
            let json = serde_json::to_string(&written).map_err(|e| StoreError::Database(e.to_string()))?;
            meta.insert(POINTER, json.as_str()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(true)
    }

    fn open_generation(&self, name: &str) -> Result<Arc<dyn VectorStore>, StoreError> {
        check_name(name)?;
        Ok(Arc::new(EmbeddedStore::open_with(&self.dir.join(FOLDER).join(name), self.options)?))
    }

    fn drop_generation(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        if name == MAIN {
            return self.clear_images();
        }
        match std::fs::remove_dir_all(self.dir.join(FOLDER).join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Database(format!("removing generation {name}: {e}"))),
            _ => Ok(()),
        }
    }
}

impl EmbeddedStore {
    /// Empties the store of images (and its model binding) in one transaction; jobs and the
    /// pointer stay. The saved approximate index and vector file go with them.
    fn clear_images(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db()?.begin_write().map_err(db_err)?;
        {
            txn.open_table(IMAGES).map_err(db_err)?.retain(|_, _| false).map_err(db_err)?;
            txn.open_table(VECTORS).map_err(db_err)?.retain(|_, _| false).map_err(db_err)?;
            txn.open_table(PATHS).map_err(db_err)?.retain(|_, _| false).map_err(db_err)?;
            txn.open_table(ORDER).map_err(db_err)?.retain(|_, _| false).map_err(db_err)?;
            txn.open_table(ALIASES).map_err(db_err)?.retain(|_, _| false).map_err(db_err)?;
            txn.open_table(KEYS).map_err(db_err)?.retain(|_, _| false).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            meta.remove("model").map_err(db_err)?;
            meta.remove("dim").map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ann::remove_saved(&self.dir);
        VectorFile::remove(&self.dir);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = State::default();
        Ok(())
    }
}

fn parse(json: &str) -> Result<Generations, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("generations pointer: {e}")))
}
