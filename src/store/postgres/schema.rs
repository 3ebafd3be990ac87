//! Versioned schema migrations, applied at start in one transaction under an advisory lock (so
//! replicas starting together apply them once). A database whose schema is newer than this
//! build is refused: an older binary must not write rows it does not understand.

use postgres::Client;

use super::{classify, PgError};

/// Serialises migrations between processes (an arbitrary constant: "vq-schema").
const MIGRATION_LOCK: i64 = 0x7671_2d73_6368_656d;

/// Each migration once, in order. Append only: never edit a released one.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE vq_meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );
    -- One row per image; the record as the embedded store keeps it (JSON) plus the columns that
    -- filters and orders read. The vector column is added when the model's dimension is known.
    CREATE TABLE vq_images (
        id          text PRIMARY KEY,
        path        text NOT NULL,
        record      jsonb NOT NULL,
        ingested_ns bigint NOT NULL,
        taken_ns    bigint,
        camera      text NOT NULL DEFAULT '',
        format      text NOT NULL,
        lat         double precision,
        lon         double precision,
        photo_read  boolean NOT NULL
    );
    CREATE INDEX vq_images_ingested ON vq_images (ingested_ns, id);
    CREATE INDEX vq_images_taken ON vq_images (taken_ns);
    CREATE INDEX vq_images_unread ON vq_images (id) WHERE NOT photo_read;
    -- A path names one image: its own path, or a copy of its content seen elsewhere (alias).
    CREATE TABLE vq_paths (
        path  text PRIMARY KEY,
        id    text NOT NULL REFERENCES vq_images (id) ON DELETE CASCADE,
        alias boolean NOT NULL
    );
    CREATE INDEX vq_paths_id ON vq_paths (id);
    "#,
    ),
    (2, super::jobs::MIGRATION),
];

/// Enables pgvector (or says clearly why it cannot be) and brings the schema up to date.
pub fn migrate(client: &mut Client, extra: &[(i32, &str)]) -> Result<i32, PgError> {
    ensure_pgvector(client)?;
    let mut txn = client.transaction().map_err(classify)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(classify)?;
    txn.batch_execute("CREATE TABLE IF NOT EXISTS vq_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        .map_err(classify)?;
    let current: i32 = txn.query_one("SELECT coalesce(max(version), 0) FROM vq_schema", &[]).map_err(classify)?.get(0);
    let all: Vec<(i32, &str)> = MIGRATIONS.iter().copied().chain(extra.iter().copied()).collect();
    let latest = all.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if current > latest {
        return Err(PgError::NewerSchema { found: current, known: latest });
    }
    for (version, sql) in all.iter().filter(|(v, _)| *v > current) {
        txn.batch_execute(sql).map_err(classify)?;
        txn.execute("INSERT INTO vq_schema (version) VALUES ($1)", &[version]).map_err(classify)?;
        tracing::info!(version, "applied schema migration");
    }
    txn.commit().map_err(classify)?;
    Ok(latest)
}

fn ensure_pgvector(client: &mut Client) -> Result<(), PgError> {
    let installed = client.query_opt("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[]).map_err(classify)?;
    if installed.is_some() {
        return Ok(());
    }
    let available = client.query_opt("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'", &[]).map_err(classify)?;
    if available.is_none() {
        return Err(PgError::NoPgvector(
            "the pgvector extension is not installed on this PostgreSQL server (install pgvector >= 0.7, e.g. the \
             `pgvector/pgvector` image or your distribution's postgresql-NN-pgvector package)"
                .into(),
        ));
    }
    client.batch_execute("CREATE EXTENSION IF NOT EXISTS vector").map_err(|e| {
        let e = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
        PgError::NoPgvector(format!(
            "the pgvector extension is installed but not enabled in this database, and this user may not enable it ({e}); \
             run `CREATE EXTENSION vector;` in the database as a superuser"
        ))
    })
}
