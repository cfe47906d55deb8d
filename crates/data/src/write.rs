//! Writing dataset directories: `annotation.json`, image files under safe unique names, and
//! a staging directory next to the target that is renamed into place only once everything
//! is written and reads back, so that a failure leaves nothing behind.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::alphamed::ANNOTATION_JSON;
use crate::report::Split;

/// What a long write is doing, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStage {
    /// Decoding source images to check that they are usable.
    Checking,
    /// Copying (or linking) image files into the new directory.
    Copying,
}

/// A progress callback: `(stage, done, total)`. It may be called from several threads.
pub type ProgressFn<'a> = &'a (dyn Fn(ProgressStage, u64, u64) + Sync);

/// A progress callback that reports nothing.
pub fn no_progress(_: ProgressStage, _: u64, _: u64) {}

/// An I/O failure on a path.
#[derive(Debug)]
pub(crate) struct IoAt {
    pub path: PathBuf,
    pub source: io::Error,
}

impl IoAt {
    pub fn new(path: &Path) -> impl FnOnce(io::Error) -> IoAt + '_ {
        move |source| IoAt {
            path: path.to_owned(),
            source,
        }
    }
}

/// Why an output directory cannot be written.
#[derive(Debug)]
pub(crate) enum OutputProblem {
    /// It exists and holds something.
    NotEmpty,
    /// It exists and is a file, a link or something else than a directory.
    NotDirectory,
    /// It could not be inspected or prepared.
    Io(IoAt),
}

/// Checks that `target` does not exist or is an empty directory.
pub(crate) fn check_fresh_output(target: &Path) -> Result<(), OutputProblem> {
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OutputProblem::Io(IoAt {
            path: target.to_owned(),
            source,
        })),
        Ok(meta) if !meta.is_dir() => Err(OutputProblem::NotDirectory),
        Ok(_) => {
            let mut entries = fs::read_dir(target)
                .map_err(|source| OutputProblem::Io(IoAt::new(target)(source)))?;
            if entries.next().is_some() {
                Err(OutputProblem::NotEmpty)
            } else {
                Ok(())
            }
        }
    }
}

/// A temporary directory next to the target, renamed onto it by [`Staging::commit`]; dropped
/// uncommitted, it is removed together with any parent directory it had to create.
#[derive(Debug)]
pub(crate) struct Staging {
    temp: Option<tempfile::TempDir>,
    target: PathBuf,
    created_parents: Vec<PathBuf>,
}

impl Staging {
    /// Checks that `target` is fresh and creates the staging directory beside it.
    pub fn new(target: &Path) -> Result<Staging, OutputProblem> {
        check_fresh_output(target)?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut created_parents = Vec::new();
        let mut missing = Some(parent.as_path());
        while let Some(dir) = missing {
            if dir.as_os_str().is_empty() || dir.exists() {
                break;
            }
            created_parents.push(dir.to_owned());
            missing = dir.parent();
        }
        let mut staging = Staging {
            temp: None,
            target: target.to_owned(),
            created_parents,
        };
        fs::create_dir_all(&parent)
            .map_err(|source| OutputProblem::Io(IoAt::new(&parent)(source)))?;
        let name = target
            .file_name()
            .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
        let prefix = format!(".{name}.partial-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        // A temporary directory is private (0700) by default; the dataset it becomes should
        // get the usual permissions, as `fs::create_dir` would give (umask applied).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777));
        let temp = builder
            .tempdir_in(&parent)
            .map_err(|source| OutputProblem::Io(IoAt::new(&parent)(source)))?;
        staging.temp = Some(temp);
        Ok(staging)
    }

    /// The staging directory, where everything is written.
    pub fn path(&self) -> &Path {
        self.temp.as_ref().map_or(&self.target, |t| t.path())
    }

    /// Renames the staging directory onto the target (which must still be absent or an
    /// empty directory) and returns the target.
    pub fn commit(mut self) -> Result<PathBuf, OutputProblem> {
        check_fresh_output(&self.target)?;
        let Some(temp) = self.temp.take() else {
            return Ok(self.target.clone());
        };
        let staged = temp.path().to_owned();
        if let Err(first) = fs::rename(&staged, &self.target) {
            // Some platforms do not rename onto an empty directory: remove it and retry.
            let retried = self.target.is_dir()
                && fs::remove_dir(&self.target).is_ok()
                && fs::rename(&staged, &self.target).is_ok();
            if !retried {
                self.temp = Some(temp);
                return Err(OutputProblem::Io(IoAt {
                    path: self.target.clone(),
                    source: first,
                }));
            }
        }
        // The directory now lives at the target: the temporary handle must not delete it.
        let _ = temp.keep();
        self.created_parents.clear();
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = temp.close();
        }
        // Deepest first; a directory something else wrote into meanwhile stays.
        for dir in &self.created_parents {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// One sample to write into `annotation.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnnotatedImage {
    /// The path relative to the dataset directory, `/`-separated.
    pub path: String,
    /// The class index.
    pub label: usize,
}

/// Writes `dir/annotation.json` with `labels` and the three splits (in `Split::ALL` order),
/// every tag with `source`, and syncs it to disk.
pub(crate) fn write_annotation(
    dir: &Path,
    labels: &[String],
    splits: [&[AnnotatedImage]; 3],
    source: &str,
) -> Result<(), IoAt> {
    let mut root = Map::new();
    root.insert("labels".into(), json!(labels));
    for (split, images) in Split::ALL.into_iter().zip(splits) {
        let items: Vec<Value> = images
            .iter()
            .map(|image| {
                json!({
                    "path": image.path,
                    "tags": [{"label": labels[image.label], "source": source}],
                })
            })
            .collect();
        root.insert(split.name().into(), Value::Array(items));
    }
    let file = dir.join(ANNOTATION_JSON);
    let mut text = serde_json::to_string_pretty(&Value::Object(root))
        .map_err(|e| IoAt::new(&file)(io::Error::other(e)))?;
    text.push('\n');
    let mut handle = File::create(&file).map_err(IoAt::new(&file))?;
    handle
        .write_all(text.as_bytes())
        .map_err(IoAt::new(&file))?;
    handle.sync_all().map_err(IoAt::new(&file))
}

/// Copies `from` to `to` (creating `to`'s parent), or hard-links it when `link` is set and
/// the file system allows it. Returns whether it was linked. `from` should be canonical: a
/// hard link to a symbolic link is another symbolic link, which may not resolve from `to`.
pub(crate) fn place_file(from: &Path, to: &Path, link: bool) -> Result<bool, IoAt> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(IoAt::new(parent))?;
    }
    if link && fs::hard_link(from, to).is_ok() {
        return Ok(true);
    }
    fs::copy(from, to).map_err(IoAt::new(to))?;
    Ok(false)
}

/// Hands out unique relative file names, case-insensitively (so that they stay distinct on
/// case-insensitive file systems), adding `-2`, `-3`, ... to the stem on a collision.
#[derive(Debug, Default)]
pub(crate) struct NameAllocator {
    taken: HashSet<String>,
}

impl NameAllocator {
    /// Returns a free name `dir/stem.ext` (`dir` `/`-separated, `ext` may be empty).
    pub fn allocate(&mut self, dir: &str, stem: &str, ext: &str) -> String {
        let dot = if ext.is_empty() { "" } else { "." };
        let mut n = 1usize;
        loop {
            let name = if n == 1 {
                format!("{dir}/{stem}{dot}{ext}")
            } else {
                format!("{dir}/{stem}-{n}{dot}{ext}")
            };
            if self.taken.insert(name.to_lowercase()) {
                return name;
            }
            n += 1;
        }
    }
}

/// The longest stem kept by [`safe_component`].
const MAX_STEM_CHARS: usize = 64;

/// Returns `name` reduced to a safe file-name component: ASCII letters, digits, `-`, `_`
/// and inner `.`, everything else replaced by `_`, no leading dot, at most 64 characters;
/// `fallback` when nothing is left.
pub(crate) fn safe_component(name: &str, fallback: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_STEM_CHARS)
        .collect();
    let safe = mapped.trim_matches('.');
    if safe.is_empty() || safe.chars().all(|c| c == '_') {
        fallback.to_owned()
    } else {
        safe.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_unique_and_case_insensitive() {
        assert_eq!(safe_component("scan 01", "image"), "scan_01");
        assert_eq!(safe_component("..hidden", "image"), "hidden");
        assert_eq!(safe_component("猫", "image"), "image");
        assert_eq!(safe_component("a/../b", "image"), "a_.._b");
        assert_eq!(safe_component("", "image"), "image");
        assert_eq!(
            safe_component(&"x".repeat(100), "image").len(),
            MAX_STEM_CHARS
        );

        let mut names = NameAllocator::default();
        assert_eq!(names.allocate("images/0", "a", "png"), "images/0/a.png");
        assert_eq!(names.allocate("images/0", "A", "png"), "images/0/A-2.png");
        assert_eq!(names.allocate("images/0", "a", "png"), "images/0/a-3.png");
        assert_eq!(names.allocate("images/1", "a", "png"), "images/1/a.png");
        assert_eq!(names.allocate("images/1", "a", ""), "images/1/a");
    }

    #[test]
    fn staging_is_renamed_into_place_or_leaves_nothing() {
        let parent = tempfile::tempdir().expect("tempdir");
        let target = parent.path().join("new/deeper/out");
        {
            let staging = Staging::new(&target).expect("staging");
            fs::write(staging.path().join("x"), "1").expect("write");
            // Dropped without commit.
        }
        assert!(
            !parent.path().join("new").exists(),
            "created parents removed"
        );

        let staging = Staging::new(&target).expect("staging");
        fs::write(staging.path().join("x"), "1").expect("write");
        assert_eq!(staging.commit().expect("commit"), target);
        assert_eq!(fs::read_to_string(target.join("x")).expect("read"), "1");
        let leftovers: Vec<_> = fs::read_dir(target.parent().expect("parent"))
            .expect("list")
            .collect();
        assert_eq!(leftovers.len(), 1, "no staging directory left behind");

        assert!(matches!(
            check_fresh_output(&target),
            Err(OutputProblem::NotEmpty)
        ));
        assert!(matches!(
            check_fresh_output(&target.join("x")),
            Err(OutputProblem::NotDirectory)
        ));
        let empty = parent.path().join("empty");
        fs::create_dir(&empty).expect("mkdir");
        let staging = Staging::new(&empty).expect("an empty directory is fine");
        fs::write(staging.path().join("y"), "2").expect("write");
        staging.commit().expect("commit onto an empty directory");
        assert!(empty.join("y").is_file());

        #[cfg(unix)]
        {
            // The committed directory gets the permissions of a plainly created one.
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode();
            let plain = parent.path().join("plain");
            fs::create_dir(&plain).expect("mkdir");
            assert_eq!(mode(&target), mode(&plain));
        }
    }
}
