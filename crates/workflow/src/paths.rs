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

/// Makes `path` absolute against the current directory, `.` and `..` removed lexically.
pub(crate) fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    std::path::absolute(path).map(|p| normalise(&p))
}

/// Returns how to write `path` (absolute, or relative to the current directory) in a workflow
/// file in directory `dir`, so that it resolves back to the same place: relative to `dir` when
/// the two share more than the root, else absolute. `dir` is resolved as the checker resolves
/// a workflow file's directory ([`base_dir`]), symbolic links included.
pub(crate) fn relative_to(path: &Path, dir: &Path) -> PathBuf {
    let Ok(target) = absolute(path) else {
        return path.to_path_buf();
    };
    let base = std::fs::canonicalize(dir)
        .or_else(|_| absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf());
    let base = normalise(&base);
    let common = target
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    // Sharing only the root (or a Windows prefix) makes a relative path no shorter and
    // fragile: the absolute one it is.
    let shared_root = base
        .components()
        .take(common)
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    if shared_root == 0 {
        return target;
    }
    let mut relative = PathBuf::new();
    for _ in base.components().skip(common) {
        relative.push("..");
    }
    for component in target.components().skip(common) {
        relative.push(component.as_os_str());
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
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

    #[test]
    fn writes_paths_relative_to_a_directory_when_they_share_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical");
        let file_dir = base.join("workflows");
        let cases = [
            (base.join("models/m"), "../models/m"),
            (base.join("workflows/data/a"), "data/a"),
            (base.join("workflows"), "."),
            (base.join("x/../workflows/y"), "y"),
        ];
        for (target, written) in cases {
            let relative = relative_to(&target, &file_dir);
            assert_eq!(relative, Path::new(written), "{}", target.display());
            assert_eq!(
                resolve(&file_dir, relative.to_str().expect("UTF-8")),
                normalise(&target)
            );
        }
        // Nothing shared but the root: absolute.
        let elsewhere = Path::new("/definitely-not-shared/x");
        assert_eq!(relative_to(elsewhere, &file_dir), elsewhere);
        // Relative input is relative to the current directory.
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            resolve(
                &cwd,
                relative_to(Path::new("a/b"), &cwd).to_str().expect("UTF-8")
            ),
            cwd.join("a/b")
        );
    }
}
