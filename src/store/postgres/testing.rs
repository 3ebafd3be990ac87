//! Real databases for tests: `scripts/pg.sh` installs and starts a PostgreSQL 16 with pgvector
//! (once per machine; idempotent) and every test gets a database of its own.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::{PgOptions, PgStore};

/// The superuser URL of the test server, starting it if needed.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("VQ_TEST_PG_URL") {
            return url;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh");
        let out = Command::new(&script).arg("url").output().expect("running scripts/pg.sh");
        assert!(out.status.success(), "scripts/pg.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 url").trim().to_string()
    })
    .clone()
}

/// A fresh, empty database named `name` (dropped first if a previous run left it), as a URL.
pub fn fresh_database(name: &str) -> String {
    let server = server_url();
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("connecting to the test server");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).expect("dropping an old test database");
    admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).expect("creating a test database");
    database_url(&server, name)
}

/// `url` with its database replaced by `name`.
pub fn database_url(url: &str, name: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    format!("{base}/{name}")
}

/// The store of the database that stands for `dir` in the conformance suite: created fresh the
/// first time a directory is seen in this process, reopened after.
pub fn store_for_dir(dir: &Path) -> PgStore {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let name = format!("conf_{}", &blake3::hash(dir.display().to_string().as_bytes()).to_hex()[..16]);
    let first = SEEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone());
    let url = if first { fresh_database(&name) } else { database_url(&server_url(), &name) };
    let mut options = PgOptions::new(url);
    options.pool_size = 4;
    PgStore::connect(options).expect("connecting to a test database")
}
