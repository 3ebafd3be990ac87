//! API keys: scopes, the key file (`name scope hash` per line), generating keys and checking
//! a presented key against the stored hashes in constant time.
//!
//! Knows nothing about HTTP: the `api` room decides which route needs which scope and turns
//! a refusal into a status code. The `keys` subcommand lives in [`cli`].

pub mod cli;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use subtle::ConstantTimeEq;

/// The name under which the `VQ_API_KEY` bootstrap key appears in logs and metrics.
pub const BOOTSTRAP_NAME: &str = "bootstrap";

/// What a key may do. Ordered: each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Search, images, thumbnails, files, jobs list/get, duplicates.
    Read,
    /// Ingest, upload, delete, create and cancel jobs; implies read.
    Write,
    /// Everything.
    Admin,
}

impl Scope {
    /// Whether a caller with this scope may use a route that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(AuthError::BadScope(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown scope `{0}` (expected read, write or admin)")]
    BadScope(String),
    #[error("{file}:{line}: {why}")]
    BadLine { file: PathBuf, line: usize, why: String },
    #[error("invalid key name `{0}`: use 1 to 64 letters, digits, `.`, `_` or `-`")]
    BadName(String),
    #[error("a key named `{0}` already exists")]
    Duplicate(String),
    #[error("no key named `{0}`")]
    NoSuchKey(String),
    #[error("VQ_API_KEY is too short: use at least 16 characters (e.g. `openssl rand -hex 32`)")]
    WeakBootstrap,
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
}

/// The stored form of a key. Keys are 32 random bytes, so a fast hash is enough: a slow KDF
/// (argon2, scrypt) protects low-entropy passwords from guessing, but 2^256 candidates cannot be
/// enumerated at any speed. BLAKE3 is already a dependency and has no known preimage attack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(*blake3::hash(key.as_bytes()).as_bytes())
    }

    fn to_field(self) -> String {
        format!("blake3:{}", blake3::Hash::from_bytes(self.0).to_hex())
    }

    fn from_field(field: &str) -> Result<Self, String> {
        let hex = field.strip_prefix("blake3:").ok_or("the hash must start with `blake3:`")?;
        blake3::Hash::from_hex(hex).map(|h| Self(*h.as_bytes())).map_err(|e| format!("bad hash: {e}"))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// One line of the key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub name: String,
    pub scope: Scope,
    pub hash: KeyHash,
}

/// A fresh key: `vq_` and 64 hex digits (32 bytes from the operating system's generator).
pub fn generate_key() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!("vq_{}", blake3::Hash::from_bytes(bytes).to_hex()))
}

pub fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadName(name.to_string()))
    }
}

/// The key file: `name scope hash` per line; blank lines and `#` comments are skipped.
#[derive(Debug, Default, Clone)]
pub struct KeyFile {
    pub entries: Vec<KeyEntry>,
}

impl KeyFile {
    /// Reads the file; a missing file is an empty one (so `keys add` can create it).
    pub fn read(path: &Path) -> Result<Self, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(AuthError::Read { path: path.to_path_buf(), source }),
        }
    }

    /// Reads a file that must exist (the server's `--api-keys`: a typo must not mean "no keys").
    pub fn read_existing(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read { path: path.to_path_buf(), source })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, AuthError> {
        let mut entries: Vec<KeyEntry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| AuthError::BadLine { file: path.to_path_buf(), line: i + 1, why };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scope, hash] = fields[..] else {
                return Err(bad("expected `name scope hash`".into()));
            };
            check_name(name).map_err(|e| bad(e.to_string()))?;
            let scope = scope.parse::<Scope>().map_err(|e| bad(e.to_string()))?;
            let hash = KeyHash::from_field(hash).map_err(bad)?;
            if entries.iter().any(|e| e.name == name) {
                return Err(bad(format!("the name `{name}` appears twice")));
            }
            entries.push(KeyEntry { name: name.to_string(), scope, hash });
        }
        Ok(Self { entries })
    }

    pub fn render(&self) -> String {
        let mut out = String::from("# VisionQuery API keys: name scope hash (only hashes are stored; see `visionquery keys`)\n");
        for e in &self.entries {
            out.push_str(&format!("{} {} {}\n", e.name, e.scope, e.hash.to_field()));
        }
        out
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), AuthError> {
        let err = |source| AuthError::Write { path: path.to_path_buf(), source };
        let mut temp = crate::fsutil::temp_beside(path).map_err(err)?;
        std::io::Write::write_all(&mut temp, self.render().as_bytes()).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
        crate::fsutil::persist(temp, path, crate::fsutil::Existing::Replace).map_err(err)?;
        Ok(())
    }
}

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub scope: Scope,
}

/// Every key the server accepts: the key file's entries plus the bootstrap key.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    entries: Vec<KeyEntry>,
}

impl Keyring {
    pub fn new(file: KeyFile, bootstrap: Option<&str>) -> Result<Self, AuthError> {
        let mut entries = file.entries;
        if let Some(key) = bootstrap {
            // A short bootstrap key would be guessable (it is chosen by a person, not by us).
            if key.len() < 16 {
                return Err(AuthError::WeakBootstrap);
            }
            entries.push(KeyEntry { name: BOOTSTRAP_NAME.to_string(), scope: Scope::Admin, hash: KeyHash::of(key) });
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The owner of `key`, if any. Compares the key's hash with every entry without stopping
    /// early, each comparison in constant time, so the time taken says nothing about which
    /// entry (or how much of one) matched.
    pub fn identify(&self, key: &str) -> Option<Identity> {
        let presented = KeyHash::of(key);
        let mut found: Option<&KeyEntry> = None;
        for entry in &self.entries {
            if bool::from(entry.hash.0.ct_eq(&presented.0)) {
                found = Some(entry);
            }
        }
        found.map(|e| Identity { name: e.name.clone(), scope: e.scope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered_write_implies_read() {
        assert!(Scope::Write.allows(Scope::Read));
        assert!(Scope::Admin.allows(Scope::Write));
        assert!(!Scope::Read.allows(Scope::Write));
        assert!(!Scope::Write.allows(Scope::Admin));
        assert!("superuser".parse::<Scope>().is_err());
    }

    #[test]
    fn key_file_round_trips_and_identifies_keys() {
        let key = generate_key().unwrap();
        assert!(key.starts_with("vq_") && key.len() == 67);
        let file = KeyFile { entries: vec![KeyEntry { name: "ci".into(), scope: Scope::Write, hash: KeyHash::of(&key) }] };
        let text = file.render();
        assert!(!text.contains(&key), "only the hash is stored");
        let parsed = KeyFile::parse(Path::new("keys"), &text).unwrap();
        assert_eq!(parsed.entries, file.entries);
        let ring = Keyring::new(parsed, Some("a-bootstrap-key-of-enough-length")).unwrap();
        assert_eq!(ring.identify(&key), Some(Identity { name: "ci".into(), scope: Scope::Write }));
        assert_eq!(ring.identify("a-bootstrap-key-of-enough-length").map(|i| i.scope), Some(Scope::Admin));
        assert_eq!(ring.identify("vq_wrong"), None);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let err = KeyFile::parse(Path::new("k"), "# c\n\nalice read\n").unwrap_err().to_string();
        assert!(err.starts_with("k:3:"), "{err}");
        let err = KeyFile::parse(Path::new("k"), "alice root blake3:00\n").unwrap_err().to_string();
        assert!(err.contains("unknown scope"), "{err}");
        assert!(Keyring::new(KeyFile::default(), Some("short")).is_err());
    }
}
