//! Which files and folders under the image roots are never indexed: one policy, read by the
//! folder walks of directory jobs and `visionquery index` and by the folder watcher alike.
//!
//! Built-in: hidden files and folders (`.*`, which also covers AppleDouble `._*` files,
//! `.thumbnails` and `.Trash-*`), Synology's `@eaDir`, and partial downloads (`*.part`,
//! `*.crdownload`, `*.tmp`). Users add globs with `--exclude`. A glob without `/` is matched
//! against every file and folder name below the root (`RAW` excludes every folder named so);
//! a glob with `/` against the whole absolute path (`/photos/private/**`).
//!
//! Knows nothing of where paths come from.

use std::ffi::OsStr;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::EngineError;

/// Names excluded whatever the settings say (besides these, every hidden name).
pub const DEFAULT_EXCLUDES: [&str; 8] = [".*", "._*", "@eaDir", ".thumbnails", ".Trash-*", "*.part", "*.crdownload", "*.tmp"];

/// The compiled exclusion globs.
#[derive(Debug, Clone)]
pub struct Exclusions {
    /// Matched against single file or folder names.
    names: GlobSet,
    /// Matched against whole absolute paths.
    paths: GlobSet,
    /// The user's globs as given (for logs).
    extra: Vec<String>,
}

impl Default for Exclusions {
    fn default() -> Self {
        Self::new(&[]).expect("the built-in exclusion globs compile: this is a bug")
    }
}

impl Exclusions {
    /// The built-in exclusions plus `extra` globs; an invalid glob is an error naming it.
    pub fn new(extra: &[String]) -> Result<Self, EngineError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for glob in DEFAULT_EXCLUDES {
            names.add(Glob::new(glob).map_err(|e| EngineError::InvalidPath(format!("exclusion glob {glob}: {e}")))?);
        }
        let mut kept = Vec::new();
        for glob in extra.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
            // `literal_separator`: `*` stays within one path component, as in a shell.
            let compiled = GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| EngineError::InvalidPath(format!("exclusion glob {glob:?}: {e}")))?;
            if glob.contains('/') {
                paths.add(compiled);
            } else {
                names.add(compiled);
            }
            kept.push(glob.to_string());
        }
        let build = |set: GlobSetBuilder| set.build().map_err(|e| EngineError::InvalidPath(format!("exclusion globs: {e}")));
        Ok(Self { names: build(names)?, paths: build(paths)?, extra: kept })
    }

    /// The globs added by the settings.
    pub fn extra(&self) -> &[String] {
        &self.extra
    }

    /// Whether a single file or folder name is excluded (for walks, entry by entry).
    pub fn excludes_name(&self, name: &OsStr) -> bool {
        self.names.is_match(Path::new(name))
    }

    /// Whether an entry met in a walk is excluded: by its name, or by its whole path.
    pub fn excludes_entry(&self, path: &Path) -> bool {
        path.file_name().is_some_and(|name| self.excludes_name(name)) || self.paths.is_match(path)
    }

    /// Whether `path`, below `root`, is excluded: any of its names below the root matches, or
    /// the whole path does. A path outside `root` is judged by its names and path alone.
    pub fn excludes(&self, root: &Path, path: &Path) -> bool {
        let below = path.strip_prefix(root).unwrap_or(path);
        below.components().any(|c| match c {
            std::path::Component::Normal(name) => self.excludes_name(name),
            _ => false,
        }) || self.paths.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_users_expect_are_excluded_by_default() {
        let ex = Exclusions::default();
        let root = Path::new("/photos");
        for excluded in [
            "/photos/.hidden.jpg",
            "/photos/._IMG_1.jpg",
            "/photos/@eaDir/IMG_1.jpg/SYNOPHOTO_THUMB_XL.jpg",
            "/photos/.thumbnails/normal/a.png",
            "/photos/.Trash-1000/files/a.jpg",
            "/photos/a/download.jpg.part",
            "/photos/a/b.jpg.crdownload",
            "/photos/a/c.tmp",
            "/photos/.git/x.jpg",
        ] {
            assert!(ex.excludes(root, Path::new(excluded)), "{excluded}");
        }
        for kept in ["/photos/a.jpg", "/photos/2024/summer/b.JPG", "/photos/eaDir/c.jpg", "/photos/a.tmp.jpg"] {
            assert!(!ex.excludes(root, Path::new(kept)), "{kept}");
        }
        // A hidden folder above the root (a user's ~/.local/share) does not hide the root.
        assert!(!ex.excludes(Path::new("/home/u/.local/photos"), Path::new("/home/u/.local/photos/a.jpg")));
    }

    #[test]
    fn user_globs_match_names_or_whole_paths() {
        let ex = Exclusions::new(&["RAW".into(), "*.xcf".into(), "/photos/private/**".into(), " ".into()]).unwrap();
        let root = Path::new("/photos");
        assert!(ex.excludes(root, Path::new("/photos/2024/RAW/a.jpg")));
        assert!(ex.excludes(root, Path::new("/photos/a.xcf")));
        assert!(ex.excludes(root, Path::new("/photos/private/deep/a.jpg")));
        assert!(!ex.excludes(root, Path::new("/photos/public/a.jpg")));
        assert!(!ex.excludes(root, Path::new("/photos/RAWS/a.jpg")), "whole names only");
        assert_eq!(ex.extra(), ["RAW", "*.xcf", "/photos/private/**"]);
        assert!(Exclusions::new(&["a[".into()]).is_err(), "an invalid glob is refused");
    }
}
