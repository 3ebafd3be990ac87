//! Confines ingestion to the configured image roots: a request may name a file under a root
//! (absolute, or relative to a root); `..` tricks and symlinks that lead outside are refused.

use std::path::{Component, Path, PathBuf};

use super::EngineError;

#[derive(Debug, Clone)]
pub struct ImageRoots {
    /// Each root as configured (made absolute) and as the filesystem resolves it.
    roots: Vec<(PathBuf, PathBuf)>,
}

impl ImageRoots {
    /// Roots that do not exist yet are kept (they may be mounted later) but logged.
    pub fn new(dirs: &[PathBuf]) -> Self {
        let cwd = std::env::current_dir().unwrap_or_default();
        let roots = dirs
            .iter()
            .map(|dir| {
                let absolute = normalize(&cwd.join(dir));
                let canonical = std::fs::canonicalize(&absolute).unwrap_or_else(|_| {
                    tracing::warn!(root = %absolute.display(), "image root does not exist (yet)");
                    absolute.clone()
                });
                (absolute, canonical)
            })
            .collect();
        Self { roots }
    }

    /// Adds a directory the service itself owns (uploads): served and ingested like a root.
    pub fn with_internal_root(mut self, dir: &Path) -> Self {
        let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.roots.push((normalize(dir), canonical));
        self
    }

    /// The canonical path of an existing directory under a root.
    pub fn resolve_dir(&self, requested: &str) -> Result<PathBuf, EngineError> {
        match self.resolve_any(requested)? {
            path if path.is_dir() => Ok(path),
            _ => Err(EngineError::InvalidPath(format!("{requested} is not a folder"))),
        }
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|(_, canonical)| canonical.as_path())
    }

    /// The canonical path of an existing regular file under a root.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, EngineError> {
        match self.resolve_any(requested)? {
            path if path.is_file() => Ok(path),
            _ => Err(EngineError::InvalidPath(format!("{requested} is not a regular file"))),
        }
    }

    /// The canonical path of anything that exists under a root.
    fn resolve_any(&self, requested: &str) -> Result<PathBuf, EngineError> {
        if requested.trim().is_empty() {
            return Err(EngineError::InvalidPath("path is empty".into()));
        }
        if requested.contains('\0') {
            return Err(EngineError::InvalidPath("path contains a NUL byte".into()));
        }
        let requested_path = Path::new(requested);
        let candidates: Vec<PathBuf> = if requested_path.is_absolute() {
            vec![normalize(requested_path)]
        } else {
            self.roots.iter().map(|(absolute, _)| normalize(&absolute.join(requested_path))).collect()
        };
        // Refuse lexically outside paths before touching the filesystem, so the answer does not
        // reveal whether a file exists outside the roots.
        let inside: Vec<PathBuf> = candidates.into_iter().filter(|p| self.contains(p)).collect();
        if inside.is_empty() {
            return Err(EngineError::PathOutsideRoots(requested.to_string()));
        }
        let mut last_error = None;
        for candidate in inside {
            match std::fs::canonicalize(&candidate) {
                Ok(canonical) => {
                    if !self.contains(&canonical) {
                        return Err(EngineError::PathOutsideRoots(requested.to_string()));
                    }
                    return Ok(canonical);
                }
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(EngineError::Unreadable { path: requested.to_string(), message: e.to_string() })
            }
            _ => Err(EngineError::FileNotFound(requested.to_string())),
        }
    }

    /// Opens a regular file under a root through that root's directory handle, never letting a
    /// symlink or `..` lead out of the root (cap-std: `openat2` with `RESOLVE_BENEATH` where the
    /// kernel has it, checked component by component where not). A path is checked and then
    /// read later; whoever can write inside a root could swap a folder for a symlink in between,
    /// so every read goes through the handle this returns, not the path.
    pub fn open(&self, path: &Path) -> std::io::Result<std::fs::File> {
        let (root, relative) = self
            .roots
            .iter()
            .find_map(|(absolute, canonical)| {
                let under = |root: &PathBuf| path.strip_prefix(root).ok().map(|relative| (root.clone(), relative.to_path_buf()));
                under(canonical).or_else(|| under(absolute))
            })
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::PermissionDenied, "outside the image roots"))?;
        let dir = cap_std::fs::Dir::open_ambient_dir(&root, cap_std::ambient_authority())?;
        let file = dir.open(&relative)?.into_std();
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok(file)
    }

    /// Whether an absolute, normalised path lies under one of the roots.
    pub fn contains(&self, path: &Path) -> bool {
        self.roots.iter().any(|(absolute, canonical)| path.starts_with(canonical) || path.starts_with(absolute))
    }
}

/// Resolves `.` and `..` without touching the filesystem (`..` at `/` stays at `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, ImageRoots) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("images");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/cat.jpg"), b"x").unwrap();
        std::fs::write(tmp.path().join("secret.jpg"), b"x").unwrap();
        let roots = ImageRoots::new(&[root]);
        (tmp, roots)
    }

    #[test]
    fn files_under_a_root_resolve_by_absolute_or_relative_path() {
        let (tmp, roots) = setup();
        let abs = tmp.path().join("images/sub/cat.jpg");
        let expected = std::fs::canonicalize(&abs).unwrap();
        assert_eq!(roots.resolve(abs.to_str().unwrap()).unwrap(), expected);
        assert_eq!(roots.resolve("sub/cat.jpg").unwrap(), expected);
        assert_eq!(roots.resolve("sub/../sub/./cat.jpg").unwrap(), expected);
    }

    #[test]
    fn dot_dot_escapes_are_refused_without_revealing_existence() {
        let (tmp, roots) = setup();
        let escape = format!("{}/images/../secret.jpg", tmp.path().display());
        assert!(matches!(roots.resolve(&escape), Err(EngineError::PathOutsideRoots(_))));
        assert!(matches!(roots.resolve("../secret.jpg"), Err(EngineError::PathOutsideRoots(_))));
        assert!(matches!(roots.resolve("../does-not-exist.jpg"), Err(EngineError::PathOutsideRoots(_))));
        assert!(matches!(roots.resolve("/etc/passwd"), Err(EngineError::PathOutsideRoots(_))));
    }

    #[test]
    fn symlinks_leading_outside_are_refused() {
        let (tmp, roots) = setup();
        std::os::unix::fs::symlink(tmp.path().join("secret.jpg"), tmp.path().join("images/link.jpg")).unwrap();
        assert!(matches!(roots.resolve("link.jpg"), Err(EngineError::PathOutsideRoots(_))));
    }

    #[test]
    fn missing_files_directories_and_empty_paths_are_told_apart() {
        let (_tmp, roots) = setup();
        assert!(matches!(roots.resolve("sub/nope.jpg"), Err(EngineError::FileNotFound(_))));
        assert!(matches!(roots.resolve("sub"), Err(EngineError::InvalidPath(_))));
        assert!(matches!(roots.resolve("  "), Err(EngineError::InvalidPath(_))));
    }
}
