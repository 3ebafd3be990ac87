//! The PostgreSQL backend: images, paths and vectors in tables of a database that any number of
//! replicas share. Vectors are `halfvec` (half the memory of `vector`) under an HNSW index
//! (`halfvec_cosine_ops`); filters and orders are SQL, so a filtered search is answered by the
//! database's planner (the index with pgvector's iterative scan, or an exact scan when a filter
//! passes few rows).
//!
//! Every write is one transaction, durable when it returns. A database that cannot be reached
//! is [`StoreError::Unavailable`] (the API answers 503 with `Retry-After`); the pool reconnects
//! by itself when it is back.

mod generations;
mod jobs;
mod query;
mod schema;
#[doc(hidden)]
pub mod testing;

use std::str::FromStr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use pgvector::HalfVector;
use postgres::error::SqlState;
use postgres::{Client, NoTls, Row, Transaction};
use r2d2_postgres::PostgresConnectionManager;

use self::query::{bind_vector, conditions, order_by, Sql};
use super::filter::{Facets, Filter, SortBy};
use super::matrix::Matrix;
use super::{duplicates, DuplicateGroup, Hit, ImageRecord, Page, PhotoMeta, SearchQuery, StoreError, StoreInfo, Upserted, VectorStore};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// HNSW parameters: build-time `m` and `ef_construction`, query-time `ef_search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hnsw {
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
}

impl Hnsw {
    /// Chosen by measurement on a million clustered CLIP-like vectors (BENCHMARKS.md, "Store at
    /// scale"): pgvector's own m=16 / ef_construction=64 reach only recall@10 0.71 at its
    /// ef_search 40 and 0.89 at 400 there; the graph, not the search breadth, was the limit.
    /// m=32 / ef_construction=128 reach 0.95 at ef_search 100, for a slower build and an index
    /// about twice as large.
    pub const DEFAULT: Self = Self { m: 32, ef_construction: 128, ef_search: 100 };
}

impl Default for Hnsw {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone)]
pub struct PgOptions {
    pub url: String,
    /// Connections this process keeps at most.
    pub pool_size: u32,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout: Duration,
    /// How long start-up waits for the database to accept connections.
    pub start_timeout: Duration,
    pub hnsw: Hnsw,
    /// The schema this store's tables live in (`None`: the user's default, i.e. `public`);
    /// an index generation other than the first has its own.
    pub schema: Option<String>,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            acquire_timeout: Duration::from_secs(3),
            start_timeout: Duration::from_secs(30),
            hnsw: Hnsw::default(),
            schema: None,
        }
    }
}

/// What goes wrong talking to PostgreSQL, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("not a PostgreSQL URL ({0}); expected postgres://user:password@host:5432/database")]
    BadUrl(String),
    #[error("PostgreSQL refused the credentials of user `{user}`: {message}")]
    Auth { user: String, message: String },
    #[error("PostgreSQL is not reachable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    NoPgvector(String),
    #[error("the database's VisionQuery schema is version {found}, newer than this build knows ({known}); upgrade VisionQuery")]
    NewerSchema { found: i32, known: i32 },
    #[error("PostgreSQL error: {0}")]
    Sql(String),
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Unavailable(message) => StoreError::Unavailable(message),
            PgError::Sql(message) => StoreError::Database(message),
            other => StoreError::Setup(other.to_string()),
        }
    }
}

/// Whether an error means "the database is not there right now" (retry later) or a real error.
pub(crate) fn classify(e: postgres::Error) -> PgError {
    let Some(code) = e.code() else {
        // No SQL state: the connection itself failed or closed; say why (refused, timed out...).
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(inner) = cause {
            message = format!("{message}: {inner}");
            cause = inner.source();
        }
        return PgError::Unavailable(message);
    };
    let message = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
    if code.code().starts_with("08")
        || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW, SqlState::TOO_MANY_CONNECTIONS].contains(code)
    {
        return PgError::Unavailable(message);
    }
    if [SqlState::INVALID_PASSWORD, SqlState::INVALID_AUTHORIZATION_SPECIFICATION].contains(code) {
        return PgError::Auth { user: String::new(), message };
    }
    PgError::Sql(format!("{message} ({})", code.code()))
}

fn sql_err(e: postgres::Error) -> StoreError {
    classify(e).into()
}

fn pool_err(e: r2d2::Error) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {e}"))
}

/// What work inside a transaction can fail with: the database, or our own checks.
pub(crate) enum TxError {
    Sql(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        TxError::Sql(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

/// Runs blocking database work from wherever the store is called. The `postgres` client drives
/// its own small runtime, which cannot start on an async worker thread: there the work moves
/// off the runtime (`block_in_place`) first.
pub(crate) fn off_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Transactions that lose a deadlock or serialization race are retried this often.
const RETRIES: usize = 5;

fn is_retryable(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// Per-connection settings: the HNSW search breadth, and iterative index scans so a filtered or
/// long search keeps walking the graph instead of returning fewer rows than asked.
#[derive(Debug)]
struct SessionSettings {
    ef_search: u32,
}

impl r2d2::CustomizeConnection<Client, postgres::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut Client) -> Result<(), postgres::Error> {
        conn.batch_execute(&format!("SET hnsw.ef_search = {}; SET hnsw.iterative_scan = relaxed_order", self.ef_search))
    }
}

pub struct PgStore {
    /// Always `Some` until dropped (taken in `Drop` to close connections off the async runtime).
    pool: Option<Pool>,
    options: PgOptions,
    /// The vector column's dimension, once the model is bound.
    dim: RwLock<Option<usize>>,
    /// `count()` is asked often (health, metrics) and `count(*)` scans: keep it a second.
    count_cache: Mutex<Option<(Instant, usize)>>,
}

impl PgStore {
    /// Connects (waiting up to `start_timeout` for a database that is starting), checks the
    /// credentials and pgvector, and applies the schema migrations.
    pub fn connect(options: PgOptions) -> Result<Self, PgError> {
        Self::connect_with(options, &[])
    }

    /// As [`connect`](Self::connect), with migrations of other rooms (the job tables) applied
    /// in the same versioned sequence.
    pub fn connect_with(options: PgOptions, extra_migrations: &[(i32, &str)]) -> Result<Self, PgError> {
        let mut config = postgres::Config::from_str(&options.url).map_err(|e| PgError::BadUrl(e.to_string()))?;
        if config.get_dbname().is_none() && config.get_user().is_none() {
            return Err(PgError::BadUrl("no user or database given".into()));
        }
        if let Some(schema) = &options.schema {
            // Its own tables first; pgvector's types stay reachable in `public`.
            config.options(&format!("-c search_path={schema},public"));
        }
        let user = config.get_user().unwrap_or_default().to_string();
        let mut client = connect_patiently(&config, options.start_timeout).map_err(|e| match e {
            PgError::Auth { message, .. } => PgError::Auth { user: user.clone(), message },
            other => other,
        })?;
        if let Some(schema) = &options.schema {
            client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).map_err(classify)?;
        }
        schema::migrate(&mut client, extra_migrations)?;
        let dim = vector_column_dim(&mut client).map_err(classify)?;
        drop(client);
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(options.acquire_timeout)
            .connection_customizer(Box::new(SessionSettings { ef_search: options.hnsw.ef_search }))
            // A failed connection is logged by the pool; requests get our 503 instead.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        tracing::info!(location = %redact(&options.url), dim = ?dim, "connected to PostgreSQL");
        Ok(Self { pool: Some(pool), options, dim: RwLock::new(dim), count_cache: Mutex::new(None) })
    }

    /// The URL without its password, for logs and `/health`.
    pub fn location(&self) -> String {
        redact(&self.options.url)
    }

    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    fn pool(&self) -> Result<&Pool, StoreError> {
        self.pool.as_ref().ok_or_else(|| StoreError::Unavailable("the store is closing".into()))
    }

    pub(crate) fn conn(&self) -> Result<Conn, StoreError> {
        self.pool()?.get().map_err(pool_err)
    }

    /// Runs `work` in a transaction, again when it loses a deadlock or serialization race.
    pub(crate) fn in_transaction<T>(&self, mut work: impl FnMut(&mut Transaction) -> Result<T, TxError>) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let mut attempt = 0;
        loop {
            let mut txn = conn.transaction().map_err(sql_err)?;
            let result = work(&mut txn).and_then(|value| txn.commit().map(|()| value).map_err(TxError::Sql));
            match result {
                Ok(value) => return Ok(value),
                Err(TxError::Sql(e)) if is_retryable(&e) && attempt < RETRIES => attempt += 1,
                Err(TxError::Sql(e)) => return Err(sql_err(e)),
                Err(TxError::Store(e)) => return Err(e),
            }
        }
    }

    fn dim(&self) -> Option<usize> {
        *self.dim.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the vector column and its HNSW index for `dim` (once), or checks the existing one.
    fn ensure_vector_column(&self, txn: &mut Transaction, dim: usize) -> Result<(), StoreError> {
        match vector_column_dim(txn).map_err(sql_err)? {
            Some(existing) if existing != dim => return Err(StoreError::DimensionMismatch { expected: existing, got: dim }),
            Some(_) => {}
            None => {
                let Hnsw { m, ef_construction, .. } = self.options.hnsw;
                txn.batch_execute(&format!(
                    "ALTER TABLE vq_images ADD COLUMN embedding halfvec({dim}) NOT NULL;
                     CREATE INDEX vq_images_embedding ON vq_images USING hnsw (embedding halfvec_cosine_ops)
                       WITH (m = {m}, ef_construction = {ef_construction});"
                ))
                .map_err(sql_err)?;
            }
        }
        *self.dim.write().unwrap_or_else(|p| p.into_inner()) = Some(dim);
        Ok(())
    }

    /// The plan PostgreSQL picks for a search page (for the test that guards index use).
    #[doc(hidden)]
    pub fn explain_search(&self, q: &SearchQuery) -> Result<String, StoreError> {
        let (text, sql) = search_statement(q);
        let rows = self.conn()?.query(&format!("EXPLAIN {text}"), &sql.params()).map_err(sql_err)?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n"))
    }

    fn forget_count(&self) {
        *self.count_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Drop for PgStore {
    /// Closing a connection blocks on the client's own runtime, which cannot run on an async
    /// worker thread (a CLI command or the server dropping its engine there).
    fn drop(&mut self) {
        let pool = self.pool.take();
        off_runtime(move || drop(pool));
    }
}

/// The dimension of `vq_images.embedding`, if the column exists.
fn vector_column_dim(client: &mut impl postgres::GenericClient) -> Result<Option<usize>, postgres::Error> {
    let row = client.query_opt(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'vq_images'::regclass AND attname = 'embedding' AND NOT attisdropped",
        &[],
    )?;
    Ok(row.map(|r| r.get::<_, i32>(0)).filter(|d| *d > 0).map(|d| d as usize))
}

fn connect_patiently(config: &postgres::Config, patience: Duration) -> Result<Client, PgError> {
    let deadline = Instant::now() + patience;
    loop {
        match config.connect(NoTls).map_err(classify) {
            Ok(client) => return Ok(client),
            Err(PgError::Unavailable(message)) if Instant::now() >= deadline => {
                return Err(PgError::Unavailable(format!("{message} (waited {} s for it to start)", patience.as_secs())));
            }
            Err(PgError::Unavailable(message)) => {
                tracing::warn!(error = %message, "PostgreSQL not reachable yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "postgres (key=value settings)".into() };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (auth, host),
        None => return url.to_string(),
    };
    let user = auth.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host}")
}

fn decode_record(text: &str) -> Result<ImageRecord, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("image record: {e}")))
}

fn record_of(row: &Row, column: usize) -> Result<ImageRecord, StoreError> {
    decode_record(row.get::<_, &str>(column))
}

fn to_f32(v: &HalfVector) -> Vec<f32> {
    v.as_slice().iter().map(|h| h.to_f32()).collect()
}

/// Writes one image row (and its own path) inside `txn`; `true` when it was new.
fn write_image(txn: &mut Transaction, record: &ImageRecord, vector: &[f32]) -> Result<bool, postgres::Error> {
    // One writer per path at a time, across replicas: "a path names one image" is checked and
    // changed atomically.
    txn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&record.path])?;
    let named_before: Option<String> = txn.query_opt("SELECT id FROM vq_paths WHERE path = $1", &[&record.path])?.map(|r| r.get(0));
    if let Some(old) = named_before.filter(|old| *old != record.id) {
        let old_path: Option<String> = txn.query_opt("SELECT path FROM vq_images WHERE id = $1", &[&old])?.map(|r| r.get(0));
        if old_path.as_deref() == Some(record.path.as_str()) {
            // New content at the path: the image it showed is retired (its copies with it).
            txn.execute("DELETE FROM vq_images WHERE id = $1", &[&old])?;
        } else {
            txn.execute("DELETE FROM vq_paths WHERE path = $1 AND id = $2", &[&record.path, &old])?;
        }
    }
    let previous_path: Option<String> =
        txn.query_opt("SELECT path FROM vq_images WHERE id = $1 FOR UPDATE", &[&record.id])?.map(|r| r.get(0));
    if let Some(previous) = previous_path.filter(|p| *p != record.path) {
        txn.execute("DELETE FROM vq_paths WHERE path = $1 AND id = $2", &[&previous, &record.id])?;
    }
    let facets = Facets::of(record);
    let json = serde_json::to_string(record).unwrap_or_default();
    let (lat, lon) = facets.location.map_or((None, None), |l| (Some(l.lat), Some(l.lon)));
    let inserted: bool = txn
        .query_one(
            "INSERT INTO vq_images (id, path, record, ingested_ns, taken_ns, camera, format, lat, lon, photo_read, embedding)
             VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO UPDATE SET path = excluded.path, record = excluded.record, ingested_ns = excluded.ingested_ns,
               taken_ns = excluded.taken_ns, camera = excluded.camera, format = excluded.format, lat = excluded.lat,
               lon = excluded.lon, photo_read = excluded.photo_read, embedding = excluded.embedding
             RETURNING (xmax = 0)",
            &[
                &record.id,
                &record.path,
                &json,
                &facets.ingested,
                &facets.taken,
                &&*facets.camera,
                &&*facets.format,
                &lat,
                &lon,
                &facets.photo_read,
                &HalfVector::from_f32_slice(vector),
            ],
        )?
        .get(0);
    txn.execute(
        "INSERT INTO vq_paths (path, id, alias) VALUES ($1, $2, false) ON CONFLICT (path) DO UPDATE SET id = excluded.id, alias = false",
        &[&record.path, &record.id],
    )?;
    Ok(inserted)
}

/// The SQL of one search page.
fn search_statement(q: &SearchQuery) -> (String, Sql) {
    let end = q.offset.saturating_add(q.limit);
    let mut sql = Sql::default();
    let v = bind_vector(&mut sql, q.vector);
    let mut conds = conditions(q.filter, &mut sql);
    if let Some(floor) = q.filter.min_score {
        let p = sql.bind(1.0 - f64::from(floor));
        conds.push(format!("(embedding <=> {v}) <= {p}"));
    }
    let where_clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    let relevance = q.sort == SortBy::Relevance;
    let text = if relevance {
        // Ordered by the distance expression alone, as the HNSW index answers it: a second
        // sort key (`, id`) makes the planner sort every row instead (immich#31299). The
        // caller breaks ties by id on the rows returned.
        let limit = sql.bind((end + 1) as i64);
        format!(
            "SELECT id, record::text, embedding <=> {v} AS distance FROM vq_images {where_clause} \
             ORDER BY embedding <=> {v} LIMIT {limit}"
        )
    } else {
        let (offset, limit) = (sql.bind(q.offset as i64), sql.bind(q.limit as i64 + 1));
        format!(
            "SELECT id, record::text, embedding <=> {v} AS distance, 1 - (embedding <=> {v}) AS score \
             FROM vq_images {where_clause} ORDER BY {} OFFSET {offset} LIMIT {limit}",
            order_by(q.sort)
        )
    };
    (text, sql)
}

impl VectorStore for PgStore {
    fn describe(&self) -> StoreInfo {
        off_runtime(|| StoreInfo { backend: "postgres", location: self.location() })
    }

    fn ping(&self) -> Result<(), StoreError> {
        off_runtime(|| self.conn()?.batch_execute("SELECT 1").map_err(sql_err))
    }

    fn bind_model(&self, fingerprint: &str, dim: usize) -> Result<(), StoreError> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            let mut txn = conn.transaction().map_err(sql_err)?;
            // Replicas starting together bind once.
            txn.execute("SELECT pg_advisory_xact_lock(hashtextextended('vq-bind-model', 0))", &[]).map_err(sql_err)?;
            let stored: Option<String> =
                txn.query_opt("SELECT value FROM vq_meta WHERE key = 'model'", &[]).map_err(sql_err)?.map(|r| r.get(0));
            match stored {
                Some(stored) if stored != fingerprint => {
                    return Err(StoreError::ModelMismatch { stored, current: fingerprint.to_string() });
                }
                Some(_) => self.ensure_vector_column(&mut txn, dim)?,
                None => {
                    self.ensure_vector_column(&mut txn, dim)?;
                    txn.execute("INSERT INTO vq_meta (key, value) VALUES ('model', $1)", &[&fingerprint]).map_err(sql_err)?;
                }
            }
            txn.commit().map_err(sql_err)
        })
    }

    fn upsert_many(&self, items: &[(ImageRecord, Vec<f32>)]) -> Result<Vec<Upserted>, StoreError> {
        off_runtime(|| {
            let Some((_, first)) = items.first() else { return Ok(Vec::new()) };
            let dim = first.len();
            if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != dim) {
                return Err(StoreError::DimensionMismatch { expected: dim, got: v.len() });
            }
            match self.dim() {
                Some(expected) if expected != dim => return Err(StoreError::DimensionMismatch { expected, got: dim }),
                Some(_) => {}
                None => self.in_transaction(|txn| Ok(self.ensure_vector_column(txn, dim)?))?,
            }
            // Path locks in one order, so two replicas' batches cannot deadlock on them.
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|&a, &b| items[a].0.path.cmp(&items[b].0.path));
            let inserted = self.in_transaction(|txn| {
                let mut inserted = vec![false; items.len()];
                for &i in &order {
                    let (record, vector) = &items[i];
                    inserted[i] = write_image(txn, record, vector)?;
                }
                Ok(inserted)
            })?;
            self.forget_count();
            Ok(inserted.into_iter().map(|new| if new { Upserted::Inserted } else { Upserted::Replaced }).collect())
        })
    }

    fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        off_runtime(|| {
            let row = self.conn()?.query_opt("SELECT record::text FROM vq_images WHERE id = $1", &[&id]).map_err(sql_err)?;
            row.map(|r| record_of(&r, 0)).transpose()
        })
    }

    fn find_by_path(&self, path: &str) -> Result<Option<ImageRecord>, StoreError> {
        off_runtime(|| {
            let row = self
                .conn()?
                .query_opt(
                    "SELECT i.record::text FROM vq_paths p JOIN vq_images i ON i.id = p.id WHERE p.path = $1 AND i.path = $1",
                    &[&path],
                )
                .map_err(sql_err)?;
            row.map(|r| record_of(&r, 0)).transpose()
        })
    }

    fn vector(&self, id: &str) -> Result<Option<Vec<f32>>, StoreError> {
        off_runtime(|| {
            if self.dim().is_none() {
                return Ok(None);
            }
            let row = self.conn()?.query_opt("SELECT embedding FROM vq_images WHERE id = $1", &[&id]).map_err(sql_err)?;
            Ok(row.map(|r| to_f32(&r.get::<_, HalfVector>(0))))
        })
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        off_runtime(|| {
            let n = self.conn()?.execute("DELETE FROM vq_images WHERE id = $1", &[&id]).map_err(sql_err)?;
            self.forget_count();
            Ok(n > 0)
        })
    }

    fn search_page(&self, q: &SearchQuery) -> Result<Page<Hit>, StoreError> {
        off_runtime(|| {
            let empty = Page { items: Vec::new(), more: false, total: None };
            let Some(dim) = self.dim() else { return Ok(empty) };
            if dim != q.vector.len() {
                return Err(StoreError::DimensionMismatch { expected: dim, got: q.vector.len() });
            }
            let end = q.offset.saturating_add(q.limit);
            if end == 0 {
                return Ok(empty);
            }
            let (text, sql) = search_statement(q);
            let relevance = q.sort == SortBy::Relevance;
            let mut conn = self.conn()?;
            let rows = if q.exact {
                // Exact on request (to check recall): the planner may not use the HNSW index.
                let mut txn = conn.transaction().map_err(sql_err)?;
                txn.batch_execute("SET LOCAL enable_indexscan = off").map_err(sql_err)?;
                let rows = txn.query(&text, &sql.params()).map_err(sql_err)?;
                txn.commit().map_err(sql_err)?;
                rows
            } else {
                conn.query(&text, &sql.params()).map_err(sql_err)?
            };
            let mut hits = Vec::with_capacity(rows.len());
            for row in &rows {
                let distance: f64 = row.get(2);
                hits.push(Hit { record: record_of(row, 1)?, score: (1.0 - distance) as f32 });
            }
            if relevance {
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.record.id.cmp(&b.record.id)));
                let more = hits.len() > end;
                hits.truncate(end);
                let items = hits.split_off(q.offset.min(hits.len()));
                return Ok(Page { items, more, total: None });
            }
            let more = hits.len() > q.limit;
            hits.truncate(q.limit);
            Ok(Page { items: hits, more, total: None })
        })
    }

    fn list_page(&self, filter: &Filter, sort: SortBy, offset: usize, limit: usize) -> Result<Page<ImageRecord>, StoreError> {
        off_runtime(|| {
            let sort = if sort == SortBy::Relevance { SortBy::IngestedDesc } else { sort };
            let mut sql = Sql::default();
            let conds = conditions(filter, &mut sql);
            let where_clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
            let mut conn = self.conn()?;
            let total: i64 =
                conn.query_one(&format!("SELECT count(*) FROM vq_images {where_clause}"), &sql.params()).map_err(sql_err)?.get(0);
            let (off, lim) = (sql.bind(offset as i64), sql.bind(limit as i64));
            let text = format!(
                "SELECT record::text, 0 AS score, id FROM vq_images {where_clause} ORDER BY {} OFFSET {off} LIMIT {lim}",
                order_by(sort)
            );
            let rows = conn.query(&text, &sql.params()).map_err(sql_err)?;
            let items = rows.iter().map(|r| record_of(r, 0)).collect::<Result<Vec<_>, _>>()?;
            let total = total as usize;
            Ok(Page { more: offset.saturating_add(items.len()) < total, items, total: Some(total) })
        })
    }

    fn set_photo(&self, id: &str, photo: &PhotoMeta) -> Result<bool, StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                let Some(row) = txn.query_opt("SELECT record::text FROM vq_images WHERE id = $1 FOR UPDATE", &[&id])? else {
                    return Ok(None);
                };
                Ok(Some(row.get::<_, String>(0)))
            })?
            .map_or(Ok(false), |text| {
                let mut record = decode_record(&text)?;
                record.photo = photo.clone();
                record.photo_read = true;
                let facets = Facets::of(&record);
                let json = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let (lat, lon) = facets.location.map_or((None, None), |l| (Some(l.lat), Some(l.lon)));
                let n = self
                    .conn()?
                    .execute(
                        "UPDATE vq_images SET record = $2::text::jsonb, taken_ns = $3, camera = $4, lat = $5, lon = $6, photo_read = true
                         WHERE id = $1",
                        &[&id, &json, &facets.taken, &&*facets.camera, &lat, &lon],
                    )
                    .map_err(sql_err)?;
                Ok(n > 0)
            })
        })
    }

    fn unread_photo_ids(&self) -> Result<Vec<String>, StoreError> {
        off_runtime(|| {
            let rows = self.conn()?.query("SELECT id FROM vq_images WHERE NOT photo_read ORDER BY id", &[]).map_err(sql_err)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn add_alias(&self, id: &str, path: &str) -> Result<(), StoreError> {
        off_runtime(|| {
            self.in_transaction(|txn| {
                txn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&path])?;
                let own: Option<String> = txn.query_opt("SELECT path FROM vq_images WHERE id = $1", &[&id])?.map(|r| r.get(0));
                match own {
                    Some(own) if own != path => {
                        txn.execute(
                            "INSERT INTO vq_paths (path, id, alias) VALUES ($1, $2, true)
                             ON CONFLICT (path) DO UPDATE SET id = excluded.id, alias = true",
                            &[&path, &id],
                        )?;
                    }
                    _ => {}
                }
                Ok(())
            })
        })
    }

    fn aliases(&self, id: &str) -> Result<Vec<String>, StoreError> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            let rows = conn.query("SELECT path FROM vq_paths WHERE id = $1 AND alias ORDER BY path", &[&id]).map_err(sql_err)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn duplicates(&self, threshold: f32) -> Result<Vec<DuplicateGroup>, StoreError> {
        off_runtime(|| {
            let Some(dim) = self.dim() else { return Ok(Vec::new()) };
            let mut conn = self.conn()?;
            // One snapshot for the vectors, the records and the copies.
            let mut txn = conn
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()
                .map_err(sql_err)?;
            let rows = txn
                .query(
                    "SELECT i.id, i.record::text, i.embedding,
                            coalesce(array_agg(p.path ORDER BY p.path) FILTER (WHERE p.alias), '{}')
                     FROM vq_images i LEFT JOIN vq_paths p ON p.id = i.id GROUP BY i.id ORDER BY i.id",
                    &[],
                )
                .map_err(sql_err)?;
            txn.commit().map_err(sql_err)?;
            let mut matrix: Matrix<()> = Matrix::new(dim);
            let mut known = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: &str = row.get(0);
                matrix.upsert(id, &to_f32(&row.get::<_, HalfVector>(2)));
                let aliases: Vec<String> = row.get(3);
                // Only copies that are still there are duplicates now.
                let aliases = aliases.into_iter().filter(|p| std::path::Path::new(p).is_file()).collect();
                known.push(duplicates::Known { record: record_of(row, 1)?, aliases });
            }
            Ok(duplicates::group(&known, &matrix.pairs_at_least(threshold)))
        })
    }

    fn bound_model(&self) -> Result<Option<(String, usize)>, StoreError> {
        off_runtime(|| {
            let row = self.conn()?.query_opt("SELECT value FROM vq_meta WHERE key = 'model'", &[]).map_err(sql_err)?;
            Ok(row.map(|r| r.get::<_, String>(0)).zip(self.dim()))
        })
    }

    fn export_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(ImageRecord, Vec<f32>)>, StoreError> {
        off_runtime(|| {
            if self.dim().is_none() {
                return Ok(Vec::new());
            }
            let rows = self
                .conn()?
                .query(
                    "SELECT record::text, embedding FROM vq_images WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2",
                    &[&after, &(limit as i64)],
                )
                .map_err(sql_err)?;
            rows.iter().map(|r| Ok((record_of(r, 0)?, to_f32(&r.get::<_, HalfVector>(1))))).collect()
        })
    }

    fn count(&self) -> usize {
        off_runtime(|| {
            let mut cache = self.count_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, n)) = *cache {
                if at.elapsed() < Duration::from_secs(1) {
                    return n;
                }
            }
            let counted =
                self.conn().ok().and_then(|mut c| c.query_one("SELECT count(*) FROM vq_images", &[]).ok()).map(|r| r.get::<_, i64>(0));
            match counted {
                Some(n) => {
                    *cache = Some((Instant::now(), n as usize));
                    n as usize
                }
                // Unreachable: the last known count (the health endpoint says the store is down).
                None => cache.map_or(0, |(_, n)| n),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(|dir| Box::new(testing::store_for_dir(dir)));
    }

    /// Immich shipped `ORDER BY distance, id`, which silently turned every search into a
    /// sequential scan and a sort (immich#31299). Once the table is big enough for the planner to
    /// prefer the index, the searches we issue must be index scans.
    #[test]
    fn searches_use_the_hnsw_index_once_the_table_is_big() {
        use crate::store::{conformance_record, Filter};
        let store = PgStore::connect(PgOptions::new(testing::fresh_database("explain_search"))).unwrap();
        let dim = 64;
        store.bind_model("explain-test", dim).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let mut unit = || {
            let v: Vec<f32> = (0..dim).map(|_| next()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        for batch in 0..20 {
            let items: Vec<_> = (0..500).map(|i| (conformance_record(&format!("img{batch:02}-{i:03}")), unit())).collect();
            store.upsert_many(&items).unwrap();
        }
        store.conn().unwrap().batch_execute("ANALYZE vq_images").unwrap();
        let query = unit();
        let jpeg = Filter { formats: vec!["jpeg".into()], ..Filter::default() };
        for (filter, what) in [(Filter::default(), "a plain search"), (jpeg, "a filter most images pass")] {
            let q = SearchQuery { vector: &query, filter: &filter, sort: SortBy::Relevance, offset: 0, limit: 10, exact: false };
            let plan = store.explain_search(&q).unwrap();
            assert!(plan.contains("Index Scan using vq_images_embedding"), "{what} must use the HNSW index:\n{plan}");
            assert!(!plan.contains("Seq Scan"), "{what} must not scan the table:\n{plan}");
        }
        // The check can fail: the Immich query shape is planned as a scan and a sort.
        let mut conn = store.conn().unwrap();
        let v = HalfVector::from_f32_slice(&query);
        let rows = conn.query("EXPLAIN SELECT id FROM vq_images ORDER BY embedding <=> $1, id LIMIT 10", &[&v]).unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(!plan.join("\n").contains("Index Scan using vq_images_embedding"), "{plan:?}");
    }

    #[test]
    fn an_index_moves_to_postgres_and_back_without_re_embedding() {
        use crate::store::migrate::copy_index;
        use crate::store::{conformance_record, EmbeddedStore};
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(&dir.path().join("a")).unwrap();
        embedded.bind_model("model-m", 8).unwrap();
        for i in 0..120 {
            let mut r = conformance_record(&format!("id{i:03}"));
            r.photo.lens = Some(format!("lens {i}"));
            let v: Vec<f32> = (0..8).map(|d| ((i * 8 + d) as f32 * 0.37).sin()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            embedded.upsert(&r, &v.iter().map(|x| x / n).collect::<Vec<_>>()).unwrap();
        }
        let pg = PgStore::connect(PgOptions::new(testing::fresh_database("migrate_round_trip"))).unwrap();
        let copied = copy_index(&embedded, &pg, &dir.path().join("cursor"), 50, |_| {}).unwrap();
        assert_eq!((copied.images, copied.destination_count), (120, 120));
        let back = EmbeddedStore::open(&dir.path().join("b")).unwrap();
        copy_index(&pg, &back, &dir.path().join("cursor"), 50, |_| {}).unwrap();
        assert_eq!(back.bound_model().unwrap(), Some(("model-m".into(), 8)));
        for i in 0..120 {
            let id = format!("id{i:03}");
            assert_eq!(back.get(&id).unwrap(), embedded.get(&id).unwrap(), "records and metadata survive both ways");
            let (a, b) = (embedded.vector(&id).unwrap().unwrap(), back.vector(&id).unwrap().unwrap());
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cos: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>() / (norm(&a) * norm(&b));
            assert!(cos > 0.9999, "vector of {id} kept to half precision (cos {cos})");
        }
        let q = embedded.vector("id007").unwrap().unwrap();
        let ids = |hits: Vec<Hit>| hits.into_iter().map(|h| h.record.id).collect::<Vec<_>>();
        assert_eq!(ids(pg.search(&q, 5).unwrap()), ids(embedded.search(&q, 5).unwrap()), "the same answers in PostgreSQL");
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(redact("postgres://vq:secret@db:5432/vq"), "postgres://vq@db:5432/vq");
        assert_eq!(redact("postgres://db/vq"), "postgres://db/vq");
    }
}
