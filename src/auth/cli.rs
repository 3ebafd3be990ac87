//! `visionquery keys add|list|remove`: manage the key file the server reads with `--api-keys`.
//! A new key is printed once, as the last line of the output; only its hash is stored.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{check_name, generate_key, AuthError, KeyEntry, KeyFile, KeyHash, Scope};

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,

    /// The key file (`name scope hash` per line), created by the first `keys add`.
    #[arg(long = "api-keys", env = "VQ_API_KEYS_FILE", global = true)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it once (last line of the output).
    Add {
        /// A name for the key (shown in logs and metrics): letters, digits, `.`, `_`, `-`.
        name: String,
        /// What the key may do: read (search, view), write (also ingest, upload, delete), admin.
        #[arg(long, value_parser = parse_scope)]
        scope: Scope,
    },
    /// List the keys' names and scopes (never the keys or their hashes).
    List,
    /// Remove a key: a running server refuses it within a couple of seconds.
    Remove { name: String },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse().map_err(|e: AuthError| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("no key file: pass --api-keys FILE or set VQ_API_KEYS_FILE")]
    NoFile,
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Runs the command and returns what to print on stdout.
pub fn run(args: &KeysArgs) -> Result<String, KeysError> {
    let path = args.file.as_deref().ok_or(KeysError::NoFile)?;
    let mut file = KeyFile::read(path)?;
    match &args.action {
        KeysAction::Add { name, scope } => {
            check_name(name)?;
            if file.entries.iter().any(|e| &e.name == name) {
                return Err(AuthError::Duplicate(name.clone()).into());
            }
            let key = generate_key()?;
            file.entries.push(KeyEntry { name: name.clone(), scope: *scope, hash: KeyHash::of(&key) });
            file.write(path)?;
            Ok(format!(
                "added key `{name}` ({scope}) to {}\nthis is the only time the key is shown; send it as `Authorization: Bearer <key>`:\n{key}\n",
                path.display()
            ))
        }
        KeysAction::List => {
            let mut out = String::new();
            for e in &file.entries {
                out.push_str(&format!("{}\t{}\n", e.name, e.scope));
            }
            Ok(out)
        }
        KeysAction::Remove { name } => {
            let before = file.entries.len();
            file.entries.retain(|e| &e.name != name);
            if file.entries.len() == before {
                return Err(AuthError::NoSuchKey(name.clone()).into());
            }
            file.write(path)?;
            Ok(format!("removed key `{name}` from {}\n", path.display()))
        }
    }
}
