//! Generations on PostgreSQL: the pointer is a `vq_meta` row of the home schema (replaced under
//! a row lock, so replicas agree on every switch), and each generation but [`MAIN`] is a schema
//! of its own, `vq_gen_<name>`, holding the same tables (`search_path` picks it per connection).

use std::sync::Arc;

use super::{off_runtime, sql_err, PgStore};
use crate::store::generations::{check_name, GenerationStore, Generations, MAIN};
use crate::store::{StoreError, VectorStore};

/// The schema of generation `name` (checked to be letters, digits and `_`).
pub fn schema_of(name: &str) -> String {
    format!("vq_gen_{name}")
}

impl GenerationStore for PgStore {
    fn generations(&self) -> Result<Option<Generations>, StoreError> {
        off_runtime(|| {
            let row = self.conn()?.query_opt("SELECT value FROM vq_meta WHERE key = 'generations'", &[]).map_err(sql_err)?;
            row.map(|r| parse(&r.get::<_, String>(0))).transpose()
        })
    }

    fn replace_generations(&self, expected: Option<u64>, next: &Generations) -> Result<bool, StoreError> {
        let written = Generations { serial: expected.map_or(1, |s| s + 1), ..next.clone() };
        let json = serde_json::to_string(&written).map_err(|e| StoreError::Database(e.to_string()))?;
        off_runtime(|| {
            self.in_transaction(|txn| {
                let stored = txn.query_opt("SELECT value FROM vq_meta WHERE key = 'generations' FOR UPDATE", &[]).map_err(sql_err)?;
                let stored_serial = stored.map(|r| parse(&r.get::<_, String>(0))).transpose()?.map(|g| g.serial);
                if stored_serial != expected {
                    return Ok(false);
                }
                // Two first writers: the primary key lets one in.
                let changed = txn
                    .execute(
                        "INSERT INTO vq_meta (key, value) VALUES ('generations', $1)
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value WHERE $2",
                        &[&json, &expected.is_some()],
                    )
                    .map_err(sql_err)?;
                Ok(changed == 1)
            })
        })
    }

    fn open_generation(&self, name: &str) -> Result<Arc<dyn VectorStore>, StoreError> {
        check_name(name)?;
        let options = super::PgOptions { schema: Some(schema_of(name)), ..self.options().clone() };
        Ok(Arc::new(off_runtime(|| PgStore::connect(options))?))
    }

    fn drop_generation(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        off_runtime(|| {
            if name != MAIN {
                return self.conn()?.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema_of(name))).map_err(sql_err);
            }
            self.in_transaction(|txn| {
                txn.batch_execute(
                    "TRUNCATE vq_images CASCADE;
                     DELETE FROM vq_meta WHERE key = 'model';
                     ALTER TABLE vq_images DROP COLUMN IF EXISTS embedding;",
                )
                .map_err(sql_err)?;
                Ok(())
            })?;
            *self.dim.write().unwrap_or_else(|p| p.into_inner()) = None;
            self.forget_count();
            Ok(())
        })
    }
}

fn parse(json: &str) -> Result<Generations, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("generations pointer: {e}")))
}
