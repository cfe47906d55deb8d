//! Paths inside a package: every file a package names must stay inside its directory,
//! and files are size-checked before they are read whole.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// Why a path named by a package cannot be used.
#[derive(Debug, Error)]
pub enum PathError {
    /// The path is empty.
    #[error("the path is empty")]
    Empty,
    /// The path is absolute.
    #[error("`{path}` is an absolute path")]
    Absolute {
        /// The path as written.
        path: String,
    },
    /// The path climbs out with `..`.
    #[error("`{path}` leaves the package directory through `..`")]
    ParentComponent {
        /// The path as written.
        path: String,
    },
    /// A symbolic link on the way leads outside the package directory.
    #[error("`{path}` is a symbolic link that leads outside the package directory, to {}", target.display())]
    SymlinkOutside {
        /// The path as written.
        path: String,
        /// Where the link leads.
        target: PathBuf,
    },
    /// The file does not exist.
    #[error("`{path}` does not exist")]
    NotFound {
        /// The path as written.
        path: String,
    },
    /// The path exists but is not a regular file.
    #[error("`{path}` is not a regular file")]
    NotAFile {
        /// The path as written.
        path: String,
    },
    /// The file is larger than what is read whole.
    #[error("`{path}` is {size} bytes, larger than the {limit} bytes accepted for this file")]
    TooLarge {
        /// The path as written.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file could not be read.
    #[error("`{path}` cannot be read: {source}")]
    Io {
        /// The path as written.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// Resolves `relative`, as written in a package file, to an existing regular file inside
/// `root`.
///
/// `root` must already be canonical ([`fs::canonicalize`]). Absolute paths, `..` components
/// and symbolic links that resolve outside `root` are refused.
pub fn resolve_inside(root: &Path, relative: &str) -> Result<PathBuf, PathError> {
    let path = || relative.to_owned();
    if relative.trim().is_empty() {
        return Err(PathError::Empty);
    }
    let candidate = Path::new(relative);
    // `C:\x` or `\\server\x` are not absolute on Unix but are never meant relatively.
    if candidate.is_absolute() || relative.starts_with('\\') || relative.get(1..2) == Some(":") {
        return Err(PathError::Absolute { path: path() });
    }
    for component in candidate.components() {
        match component {
            Component::ParentDir => return Err(PathError::ParentComponent { path: path() }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute { path: path() });
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    let joined = root.join(candidate);
    if fs::symlink_metadata(&joined).is_err() {
        return Err(PathError::NotFound { path: path() });
    }
    let real = match fs::canonicalize(&joined) {
        Ok(real) => real,
        // A dangling link, or a link loop.
        Err(_) => {
            let target = fs::read_link(&joined).unwrap_or_default();
            return Err(if target.is_absolute() && !target.starts_with(root) {
                PathError::SymlinkOutside {
                    path: path(),
                    target,
                }
            } else {
                PathError::NotFound { path: path() }
            });
        }
    };
    if !real.starts_with(root) {
        return Err(PathError::SymlinkOutside {
            path: path(),
            target: real,
        });
    }
    if !real.is_file() {
        return Err(PathError::NotAFile { path: path() });
    }
    Ok(real)
}

/// Reads a whole text file after checking its size against `limit`.
pub fn read_to_string_limited(path: &Path, shown: &str, limit: u64) -> Result<String, PathError> {
    let io = |source| PathError::Io {
        path: shown.to_owned(),
        source,
    };
    let size = fs::metadata(path).map_err(io)?.len();
    if size > limit {
        return Err(PathError::TooLarge {
            path: shown.to_owned(),
            size,
            limit,
        });
    }
    fs::read_to_string(path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_files_and_refuses_every_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        fs::create_dir(root.join("weights")).expect("mkdir");
        fs::write(root.join("weights/w.safetensors"), b"x").expect("write");

        let ok = resolve_inside(&root, "./weights/w.safetensors").expect("inside");
        assert_eq!(ok, root.join("weights/w.safetensors"));

        assert!(matches!(resolve_inside(&root, ""), Err(PathError::Empty)));
        assert!(matches!(
            resolve_inside(&root, "/etc/passwd"),
            Err(PathError::Absolute { .. })
        ));
        assert!(matches!(
            resolve_inside(&root, "weights/../../x"),
            Err(PathError::ParentComponent { .. })
        ));
        assert!(matches!(
            resolve_inside(&root, "nope.pt"),
            Err(PathError::NotFound { .. })
        ));
        assert!(matches!(
            resolve_inside(&root, "weights"),
            Err(PathError::NotAFile { .. })
        ));

        let outside = tempfile::NamedTempFile::new().expect("outside file");
        std::os::unix::fs::symlink(outside.path(), root.join("link.pt")).expect("symlink");
        assert!(matches!(
            resolve_inside(&root, "link.pt"),
            Err(PathError::SymlinkOutside { .. })
        ));
        // A link that stays inside is fine.
        std::os::unix::fs::symlink("weights/w.safetensors", root.join("inner.safetensors"))
            .expect("symlink");
        assert!(resolve_inside(&root, "inner.safetensors").is_ok());
    }

    #[test]
    fn refuses_to_read_files_over_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("big.json");
        fs::write(&file, vec![b' '; 100]).expect("write");
        assert!(matches!(
            read_to_string_limited(&file, "big.json", 99),
            Err(PathError::TooLarge {
                size: 100,
                limit: 99,
                ..
            })
        ));
        assert_eq!(
            read_to_string_limited(&file, "big.json", 100)
                .expect("read")
                .len(),
            100
        );
    }
}
