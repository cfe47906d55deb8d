//! Paths of a workflow resolve against the directory of the workflow file.

use std::path::{Component, Path, PathBuf};

/// The directory relative paths of the workflow file `file` resolve against: its parent,
/// absolute and with symbolic links resolved when it exists.
pub(crate) fn base_dir(file: &Path) -> PathBuf {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::canonicalize(parent)
        .or_else(|_| std::path::absolute(parent))
        .unwrap_or_else(|_| parent.to_path_buf())
}

/// Resolves `path` against `base` and removes `.` and `..` components lexically
/// (`/w/workflows/../models/m` is `/w/models/m`), so that equal paths print and hash equally.
pub(crate) fn resolve(base: &Path, path: &str) -> PathBuf {
    normalise(&base.join(path))
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `..` of the root is the root; a leading `..` of a relative path stays.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths_lexically() {
        let base = Path::new("/w/workflows");
        assert_eq!(resolve(base, "../models/m"), Path::new("/w/models/m"));
        assert_eq!(
            resolve(base, "./data/./a/"),
            Path::new("/w/workflows/data/a")
        );
        assert_eq!(resolve(base, "/abs/x"), Path::new("/abs/x"));
        assert_eq!(resolve(base, "../../../../x"), Path::new("/x"));
        assert_eq!(resolve(Path::new("rel"), "../../x"), Path::new("../x"));
        assert_eq!(resolve(Path::new("rel"), ".."), Path::new("."));
    }
}
