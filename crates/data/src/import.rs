//! Importing images into a new AlphaMed dataset directory: from an ImageFolder tree
//! (`SRC/<label>/<image>`, as torchvision's `ImageFolder` reads it) or a CSV file with
//! `path` and `label` columns, every image decoded to check it, split into Train,
//! Validation and Test by seeded, label-stratified sampling.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::ImageFormat;
use thiserror::Error;

use crate::dataset::{Dataset, OpenOptions};
use crate::error::DataError;
use crate::fractions::{SPLIT_EXPECTED, SplitFractions};
use crate::import_report::{ImportReport, ImportSkipReason, SkippedFile};
use crate::report::Split;
use crate::rng::{IMPORT_SPLIT_STREAM, SplitMix64};
use crate::source::{Candidate, Scan, scan_csv, scan_image_folder};
use crate::stratify::split_counts;
use crate::verify::{ImageProblem, check_all, decode_whole};
use crate::write::{
    AnnotatedImage, IoAt, NameAllocator, OutputProblem, ProgressFn, ProgressStage, Staging,
    check_fresh_output, place_file, safe_component, write_annotation,
};

/// The `source` of every tag an import writes.
const TAG_SOURCE: &str = "import";

/// How [`import_dataset`] splits, orders and writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// The fractions of each label's images for Train, Validation and Test.
    pub split: SplitFractions,
    /// The seed of the split: the same seed and source give the same dataset.
    pub seed: u64,
    /// Hard-links images instead of copying them where the file system allows it (same
    /// device); falls back to copying otherwise.
    pub link: bool,
    /// The class names in class-index order, instead of the sorted folder names or CSV
    /// labels; images with a label not listed are skipped, listed labels without images
    /// are kept.
    pub labels: Option<Vec<String>>,
}

/// Why an import could not be done. Nothing is written when it fails.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The source path does not exist.
    #[error("source {} does not exist; expected an ImageFolder directory (SRC/<label>/<image>) or a CSV file with `path` and `label` columns", path.display())]
    SourceMissing {
        /// The source as given.
        path: PathBuf,
    },
    /// The source folder holds nothing but hidden entries.
    #[error("source folder {} is empty{}; expected one folder per label with its images inside, as SRC/<label>/<image>", dir.display(), hidden_note(*hidden))]
    EmptyFolder {
        /// The source folder.
        dir: PathBuf,
        /// Hidden entries ignored in it.
        hidden: usize,
    },
    /// An ImageFolder source has a file where only label folders belong.
    #[error("{} is a file directly in the source folder, where a label folder is expected; ImageFolder wants SRC/<label>/<image>: move it into the folder of its label, or remove it", file.display())]
    FileWhereLabelFolderExpected {
        /// The file.
        file: PathBuf,
    },
    /// The source holds no image that decodes.
    #[error("{} holds no usable PNG or JPEG image ({detail}); expected label folders or CSV rows with images that decode", path.display())]
    NoImages {
        /// The source.
        path: PathBuf,
        /// How many files were skipped.
        skipped: usize,
        /// What was skipped, with a few examples.
        detail: String,
    },
    /// The CSV source is empty.
    #[error("{} is empty; expected a CSV file with a header row naming `path` and `label` columns, then one row per image", file.display())]
    EmptyCsv {
        /// The CSV file.
        file: PathBuf,
    },
    /// The CSV header does not name exactly one `path` and one `label` column.
    #[error("{}: header `{header}` {problem}; expected a first row naming a `path` and a `label` column, in any order, such as `path,label`", file.display())]
    CsvHeader {
        /// The CSV file.
        file: PathBuf,
        /// The header row found, cells joined by commas.
        header: String,
        /// What is wrong, e.g. "has no `label` column".
        problem: String,
    },
    /// The CSV file is not well-formed.
    #[error("{}:{line}: {problem}", file.display())]
    CsvSyntax {
        /// The CSV file.
        file: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong and what would be accepted.
        problem: String,
    },
    /// `--split` is not three non-negative fractions summing to 1.
    #[error("--split `{value}` {problem}; expected {SPLIT_EXPECTED}")]
    InvalidSplit {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The explicit label list cannot be a dataset's `labels`.
    #[error("--labels {problem}; expected distinct, non-empty class names in class-index order")]
    InvalidLabels {
        /// What is wrong with it.
        problem: String,
    },
    /// The target exists and holds something.
    #[error("target {} already exists and is not empty; expected a new directory or an empty one", target.display())]
    TargetNotEmpty {
        /// The target directory.
        target: PathBuf,
    },
    /// The target exists and is not a directory.
    #[error("target {} exists and is not a directory; expected a new directory or an empty one", target.display())]
    TargetNotDirectory {
        /// The target.
        target: PathBuf,
    },
    /// The target lies inside the source folder, whose scan would read it.
    #[error("target {} is inside the source folder {}; expected a directory outside it", target.display(), dir.display())]
    TargetInsideSource {
        /// The target.
        target: PathBuf,
        /// The source folder.
        dir: PathBuf,
    },
    /// The source could not be read.
    #[error("{}: cannot be read: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The new dataset could not be written.
    #[error("{}: cannot be written: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The written dataset does not open as it should (a bug).
    #[error("the imported dataset does not read back: {0}")]
    ReadBack(#[source] Box<DataError>),
}

fn hidden_note(hidden: usize) -> String {
    match hidden {
        0 => String::new(),
        1 => " (1 hidden entry ignored)".into(),
        n => format!(" ({n} hidden entries ignored)"),
    }
}

impl From<IoAt> for ImportError {
    fn from(e: IoAt) -> Self {
        ImportError::Write {
            path: e.path,
            source: e.source,
        }
    }
}

fn output_error(target: &Path, problem: OutputProblem) -> ImportError {
    let target = target.to_owned();
    match problem {
        OutputProblem::NotEmpty => ImportError::TargetNotEmpty { target },
        OutputProblem::NotDirectory => ImportError::TargetNotDirectory { target },
        OutputProblem::Io(e) => e.into(),
    }
}

/// Imports the images of `source` into a new AlphaMed dataset directory `target`.
///
/// `source` is an ImageFolder tree or a CSV file. ImageFolder labels are the subfolder
/// names sorted by code point (as torchvision sorts them; a folder without usable images
/// keeps its class index); every file below a label folder, at any depth, is a candidate.
/// Hidden entries (names starting with `.`, such as `.DS_Store` or `.ipynb_checkpoints`)
/// are ignored and counted in [`ImportReport::hidden`] (torchvision would make a hidden
/// folder a class). CSV labels are the distinct non-empty label cells sorted by code point.
/// [`ImportOptions::labels`] replaces either order.
///
/// Every candidate is decoded; files that do not decode as PNG or JPEG, are missing or are
/// repeats are skipped and listed in [`ImportReport::skipped`]. Each label's usable images
/// are shuffled with [`ImportOptions::seed`] and cut by [`ImportOptions::split`], so the
/// result depends on the seed and the files, never on listing or row order. Images are
/// written as `images/<class index>/<safe name>`; `annotation.json` keeps the label names
/// verbatim. Everything is written in a staging directory beside `target`, checked with
/// [`Dataset::open`] and renamed into place: on error nothing is left behind.
pub fn import_dataset(
    source: &Path,
    target: &Path,
    options: &ImportOptions,
    progress: ProgressFn<'_>,
) -> Result<ImportReport, ImportError> {
    if let Some(labels) = &options.labels {
        check_labels(labels)?;
    }
    let meta = fs::metadata(source).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ImportError::SourceMissing {
            path: source.to_owned(),
        },
        _ => ImportError::Io {
            path: source.to_owned(),
            source: e,
        },
    })?;
    // Checked early so that a bad target fails before the slow decoding.
    check_fresh_output(target).map_err(|p| output_error(target, p))?;
    let mut scan = if meta.is_dir() {
        check_target_outside(source, target)?;
        scan_image_folder(source)?
    } else {
        scan_csv(source)?
    };
    let labels = choose_labels(&mut scan, options.labels.as_deref());
    let candidates = std::mem::take(&mut scan.candidates);
    let checks = check_images(&candidates, progress);
    let mut usable = Vec::with_capacity(candidates.len());
    for (candidate, check) in candidates.into_iter().zip(checks) {
        match check {
            Ok(extension) => usable.push((candidate, extension)),
            Err(reason) => scan.skipped.push(SkippedFile {
                path: candidate.shown,
                line: candidate.line,
                reason,
            }),
        }
    }
    scan.skipped
        .sort_by(|a, b| (a.line, &a.path).cmp(&(b.line, &b.path)));
    if usable.is_empty() {
        return Err(no_images(source, &scan.skipped));
    }
    let placements = plan(usable, &labels, options);
    let linked = write_dataset(target, &labels, &placements, options.link, progress)?;
    let mut counts = [(); 3].map(|_| vec![0; labels.len()]);
    for p in &placements {
        counts[p.split as usize][p.label] += 1;
    }
    Ok(ImportReport {
        target: target.to_owned(),
        kind: scan.kind,
        labels,
        counts,
        skipped: scan.skipped,
        hidden: scan.hidden,
        linked,
    })
}

fn no_images(source: &Path, skipped: &[SkippedFile]) -> ImportError {
    let detail = if skipped.is_empty() {
        "no files found".to_owned()
    } else {
        let examples: Vec<String> = skipped.iter().take(3).map(ToString::to_string).collect();
        format!("{} skipped, e.g. {}", skipped.len(), examples.join("; "))
    };
    ImportError::NoImages {
        path: source.to_owned(),
        skipped: skipped.len(),
        detail,
    }
}

/// Checks an explicit label list the way `Dataset::open` checks `labels`.
fn check_labels(labels: &[String]) -> Result<(), ImportError> {
    let invalid = |problem: String| Err(ImportError::InvalidLabels { problem });
    if labels.is_empty() {
        return invalid("is empty".into());
    }
    for (i, label) in labels.iter().enumerate() {
        if label.trim().is_empty() {
            return invalid(format!("has an empty name at position {}", i + 1));
        }
        if labels[..i].contains(label) {
            return invalid(format!("repeats \"{label}\""));
        }
    }
    Ok(())
}

/// Refuses a target inside an ImageFolder source: links are resolved in the part of the
/// target that exists, `..` in the rest as creating it would.
fn check_target_outside(source: &Path, target: &Path) -> Result<(), ImportError> {
    let dir = fs::canonicalize(source).map_err(|e| ImportError::Io {
        path: source.to_owned(),
        source: e,
    })?;
    let Ok(absolute) = std::path::absolute(target) else {
        return Ok(());
    };
    let resolved = absolute
        .ancestors()
        .find_map(|a| {
            let rest = absolute.strip_prefix(a).ok()?;
            let mut resolved = fs::canonicalize(a).ok()?;
            for part in rest.components() {
                match part {
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    Component::Normal(name) => resolved.push(name),
                    _ => {}
                }
            }
            Some(resolved)
        })
        .unwrap_or(absolute);
    if resolved.starts_with(&dir) {
        return Err(ImportError::TargetInsideSource {
            target: target.to_owned(),
            dir: source.to_owned(),
        });
    }
    Ok(())
}

/// Returns the final labels, skipping candidates whose label an explicit list leaves out.
fn choose_labels(scan: &mut Scan, given: Option<&[String]>) -> Vec<String> {
    let Some(given) = given else {
        return std::mem::take(&mut scan.labels);
    };
    let (kept, dropped): (Vec<Candidate>, Vec<Candidate>) = std::mem::take(&mut scan.candidates)
        .into_iter()
        .partition(|c| given.contains(&c.label));
    scan.candidates = kept;
    for c in dropped {
        scan.skipped.push(SkippedFile {
            path: c.shown,
            line: c.line,
            reason: ImportSkipReason::LabelNotListed(c.label),
        });
    }
    given.to_vec()
}

/// Decodes every candidate on a few threads; each result is the file extension for the
/// image's format, or why it cannot be used.
fn check_images(
    candidates: &[Candidate],
    progress: ProgressFn<'_>,
) -> Vec<Result<&'static str, ImportSkipReason>> {
    let total = candidates.len() as u64;
    let done = AtomicU64::new(0);
    progress(ProgressStage::Checking, 0, total);
    let check = |c: &Candidate| {
        let result = match decode_whole(&c.path) {
            Ok(ImageFormat::Png) => Ok("png"),
            // The only other format `decode_whole` accepts.
            Ok(_) => Ok("jpg"),
            Err(ImageProblem::Unreadable(reason)) => Err(ImportSkipReason::Unreadable(reason)),
            Err(ImageProblem::NotAnImage(reason)) => Err(ImportSkipReason::NotAnImage(reason)),
        };
        progress(
            ProgressStage::Checking,
            done.fetch_add(1, Ordering::Relaxed) + 1,
            total,
        );
        result
    };
    // A panicking decoder marks its image unusable rather than aborting.
    let panicked = || Err(ImportSkipReason::NotAnImage("the decoder failed".into()));
    check_all(candidates, check, panicked)
}

/// One image of the new dataset.
#[derive(Debug)]
struct Placement {
    source: PathBuf,
    /// The path in the new dataset, `/`-separated.
    dest: String,
    label: usize,
    split: Split,
}

/// Names and splits the usable images: names in sorted order (so they do not depend on the
/// seed), then each label's images shuffled and cut by the split counts.
fn plan(
    usable: Vec<(Candidate, &'static str)>,
    labels: &[String],
    options: &ImportOptions,
) -> Vec<Placement> {
    let mut by_label: Vec<Vec<(Candidate, &str)>> = vec![Vec::new(); labels.len()];
    for (candidate, extension) in usable {
        let label = labels.iter().position(|l| *l == candidate.label);
        debug_assert!(label.is_some(), "candidates carry chosen labels only");
        if let Some(label) = label {
            by_label[label].push((candidate, extension));
        }
    }
    let sizes: Vec<usize> = by_label.iter().map(Vec::len).collect();
    let counts = split_counts(&sizes, options.split.as_array());
    let mut names = NameAllocator::default();
    let mut placements = Vec::with_capacity(sizes.iter().sum());
    for (label, mut group) in by_label.into_iter().enumerate() {
        group.sort_by(|a, b| a.0.shown.cmp(&b.0.shown));
        let dir = format!("images/{label}");
        let mut order: Vec<usize> = (0..group.len()).collect();
        SplitMix64::from_words(&[IMPORT_SPLIT_STREAM, options.seed, label as u64])
            .shuffle(&mut order);
        let mut split_of = vec![Split::Test; group.len()];
        let [train, validation, _] = counts[label];
        for (rank, &i) in order.iter().enumerate() {
            if rank < train {
                split_of[i] = Split::Train;
            } else if rank < train + validation {
                split_of[i] = Split::Validation;
            }
        }
        for ((candidate, extension), split) in group.into_iter().zip(split_of) {
            let stem = safe_component(&candidate.hint, "image");
            placements.push(Placement {
                dest: names.allocate(&dir, &stem, extension),
                source: candidate.path,
                label,
                split,
            });
        }
    }
    placements
}

/// Writes the images and `annotation.json` into a staging directory, reads it back and
/// renames it onto `target`. Returns how many images were hard-linked.
fn write_dataset(
    target: &Path,
    labels: &[String],
    placements: &[Placement],
    link: bool,
    progress: ProgressFn<'_>,
) -> Result<usize, ImportError> {
    let staging = Staging::new(target).map_err(|p| output_error(target, p))?;
    let total = placements.len() as u64;
    progress(ProgressStage::Copying, 0, total);
    let mut linked = 0;
    for (i, p) in placements.iter().enumerate() {
        if place_file(&p.source, &staging.path().join(&p.dest), link)? {
            linked += 1;
        }
        progress(ProgressStage::Copying, i as u64 + 1, total);
    }
    let mut splits: [Vec<AnnotatedImage>; 3] = Default::default();
    for p in placements {
        splits[p.split as usize].push(AnnotatedImage {
            path: p.dest.clone(),
            label: p.label,
        });
    }
    let [train, validation, test] = &splits;
    write_annotation(
        staging.path(),
        labels,
        [train, validation, test],
        TAG_SOURCE,
    )?;
    let check = Dataset::open(staging.path(), &OpenOptions { strict: true })
        .map_err(|e| ImportError::ReadBack(Box::new(e)))?;
    debug_assert_eq!(check.len(), placements.len());
    staging.commit().map_err(|p| output_error(target, p))?;
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_labels_must_be_distinct_and_named() {
        let labels = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert!(check_labels(&labels(&["b", "a", "Mélanome"])).is_ok());
        let problem = |names: &[&str]| {
            check_labels(&labels(names))
                .expect_err("invalid")
                .to_string()
        };
        assert!(problem(&[]).starts_with("--labels is empty"));
        assert!(problem(&["a", " "]).starts_with("--labels has an empty name at position 2"));
        assert!(problem(&["a", "b", "a"]).starts_with("--labels repeats \"a\""));
    }

    #[test]
    fn targets_inside_the_source_are_found_through_dots_and_links() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("a")).expect("mkdir");
        assert!(check_target_outside(&src, &tmp.path().join("out")).is_ok());
        assert!(check_target_outside(&src, &tmp.path().join("src2/out")).is_ok());
        assert!(check_target_outside(&src, &src.join("a/new/out")).is_err());
        let dotted = tmp.path().join("x/../src/out");
        assert!(check_target_outside(&src, &dotted).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&src, tmp.path().join("alias")).expect("link");
            let aliased = tmp.path().join("alias/out");
            assert!(matches!(
                check_target_outside(&src, &aliased),
                Err(ImportError::TargetInsideSource { .. })
            ));
        }
    }
}
