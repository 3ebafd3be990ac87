//! Finds and initialises the ONNX Runtime shared library, once per process.
//!
//! Builds here cannot download binaries, so `ort` runs with `load-dynamic` against the
//! `libonnxruntime.so` that the PyPI wheel `onnxruntime` ships. Users should not have to set
//! variables by hand, so we probe the places our scripts and pip put it.

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
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // Next to the binary, and the repo's `.runtime/` when run from `target/{debug,release}`.
        for ancestor in exe.ancestors().skip(1).take(4) {
            dirs.push(ancestor.to_path_buf());
            dirs.push(ancestor.join(".runtime/onnxruntime/capi"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join(".runtime/onnxruntime/capi"));
    }
    dirs.push(PathBuf::from("/opt/onnxruntime/onnxruntime/capi"));
    dirs.push(PathBuf::from("/usr/local/lib"));
    dirs.push(PathBuf::from("/usr/lib"));
    if let Some(site) = python_onnxruntime_dir() {
        dirs.push(site.join("capi"));
    }
    for dir in &dirs {
        if let Some(lib) = library_in(dir) {
            return Ok(lib);
        }
    }
    let tried = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(LoadError::RuntimeNotFound { tried })
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

/// The package directory of a pip-installed `onnxruntime`, if a Python has one.
fn python_onnxruntime_dir() -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args(["-c", "import importlib.util as u; s = u.find_spec('onnxruntime'); print(s.submodule_search_locations[0] if s else '')"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}
