//! Finds and initialises the ONNX Runtime shared library, once per process.
//!
//! Builds here cannot download binaries, so `ort` runs with `load-dynamic` against the
//! `libonnxruntime.so` that the PyPI wheel `onnxruntime` ships: given by path, or found next to
//! the binary (and in a development checkout's `.runtime/`, where our scripts put it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::LoadError;

/// The ONNX Runtime version our `ort` build speaks (C API 31 or newer works).
pub const ORT_WHEEL_VERSION: &str = "1.32.0";

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Initialises ONNX Runtime from `explicit` or the first library found, with one process-wide
/// pool of `threads` compute threads that every session shares (the text and image towers
/// running at once would otherwise put two full pools on the same cores). Later calls reuse it.
pub fn init(explicit: Option<&Path>, threads: usize) -> Result<&'static ort::environment::Environment, LoadError> {
    let mut failure = None;
    let env = ENVIRONMENT.get_or_init(|| {
        let path = match locate(explicit) {
            Ok(path) => path,
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                return Err(msg);
            }
        };
        tracing::info!(path = %path.display(), "loading ONNX Runtime");
        // The library must be loaded (init_from) before any other ONNX Runtime call.
        let built = ort::init_from(&path).map_err(|e| e.to_string()).and_then(|builder| {
            let pool = ort::environment::GlobalThreadPoolOptions::default()
                .with_intra_threads(threads.max(1))
                .and_then(|p| p.with_inter_threads(1))
                .map_err(|e| e.to_string())?;
            builder.with_name("visionquery").with_global_thread_pool(pool).build().map_err(|e| e.to_string())
        });
        built.map_err(|message| {
            let err = LoadError::Runtime { path, message };
            let msg = err.to_string();
            failure = Some(err);
            msg
        })
    });
    match (env, failure) {
        (Ok(env), _) => Ok(env),
        (Err(_), Some(first)) => Err(first),
        (Err(msg), None) => Err(LoadError::Runtime { path: PathBuf::from("(earlier attempt)"), message: msg.clone() }),
    }
}

/// Where to look for the library, in order; `explicit` (flag or `ORT_DYLIB_PATH`) wins.
fn locate(explicit: Option<&Path>) -> Result<PathBuf, LoadError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(LoadError::RuntimeNotFound { tried: format!("{} (given explicitly; no such file)", path.display()) })
        };
    }
    let dirs = std::env::current_exe().map(|exe| search_dirs(&exe)).unwrap_or_default();
    for dir in &dirs {
        if let Some(lib) = library_in(dir) {
            return Ok(lib);
        }
    }
    let tried = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(LoadError::RuntimeNotFound { tried })
}

/// The folders searched when no path is given: only where whoever installed the binary put
/// things. Never the working directory, a `PATH` lookup or Python's import path: a folder the
/// server merely runs in (or a user can write to) must not be able to plant a library that
/// the server would load and run.
fn search_dirs(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else { return Vec::new() };
    let mut dirs = vec![dir.to_path_buf(), dir.join(".runtime/onnxruntime/capi")];
    // A development build, `<repo>/target/<profile>/[deps|examples/]visionquery`: the
    // repository's `.runtime/` that `scripts/install-runtime.sh` fills.
    let repo = exe
        .ancestors()
        .skip(1)
        .take(3)
        .find(|a| a.file_name().is_some_and(|n| n == "target"))
        .and_then(Path::parent)
        .filter(|repo| repo.join("Cargo.toml").is_file());
    if let Some(repo) = repo {
        dirs.push(repo.join(".runtime/onnxruntime/capi"));
    }
    dirs
}

/// `libonnxruntime.so` or a versioned `libonnxruntime.so.X.Y.Z` in `dir`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join("libonnxruntime.so");
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.") && p.is_file()))
        .collect();
    versioned.sort();
    versioned.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_binary_looks_only_beside_itself() {
        let dirs = search_dirs(Path::new("/usr/local/bin/visionquery"));
        assert_eq!(dirs, [PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/local/bin/.runtime/onnxruntime/capi")]);
    }

    #[test]
    fn a_development_build_uses_its_checkouts_runtime_folder() {
        let repo = tempfile::tempdir().unwrap();
        let exe = repo.path().join("target/release/visionquery");
        assert!(!search_dirs(&exe).contains(&repo.path().join(".runtime/onnxruntime/capi")), "no Cargo.toml: not a checkout");
        std::fs::write(repo.path().join("Cargo.toml"), b"[package]").unwrap();
        for exe in ["target/release/visionquery", "target/debug/deps/visionquery-0123", "target/release/examples/load_vectors"] {
            assert!(search_dirs(&repo.path().join(exe)).contains(&repo.path().join(".runtime/onnxruntime/capi")), "{exe}");
        }
    }
}
