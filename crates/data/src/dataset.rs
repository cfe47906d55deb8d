//! Opening a dataset directory: find its annotation file, parse it, and check every sample
//! (label, path safety, file present, image decodes whole), reporting the unusable ones.

use std::fs;
use std::path::{Path, PathBuf};

use fl_package::{PathError, resolve_inside};

use crate::alphamed::{ANNOTATION_JSON, parse_annotation_json};
use crate::annotation::{Annotations, Entry, MAX_ANNOTATION_BYTES, read_annotation_file};
use crate::cvat::{CVAT_XML, parse_cvat_xml};
use crate::error::DataError;
use crate::report::{DatasetReport, SkipReason, Split};
use crate::verify::{ImageProblem, check_all, decode_whole};

const ACCEPTED_FILES: &str =
    "annotation.json (AlphaMed), annotations.xml or annotation.xml (CVAT for images 1.1)";

/// One usable sample: an image file and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The image file, canonical and absolute (inside the dataset directory).
    pub path: PathBuf,
    /// The class index: the label's position in [`Dataset::labels`].
    pub label: usize,
}

/// How strictly a dataset is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Refuse the dataset when any sample is unusable, instead of leaving it out and
    /// reporting it.
    pub strict: bool,
}

/// A labelled image dataset with Train, Validation and Test splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset directory, canonical.
    pub root: PathBuf,
    /// Class names; a class index is a position in this list.
    pub labels: Vec<String>,
    /// Usable training samples, in file order.
    pub train: Vec<Sample>,
    /// Usable validation samples, in file order.
    pub validation: Vec<Sample>,
    /// Usable test samples, in file order.
    pub test: Vec<Sample>,
    /// What was left out, and why.
    pub report: DatasetReport,
}

impl Dataset {
    /// Opens the dataset in `dir`, reading `annotation.json` if present, else the CVAT
    /// export `annotations.xml` (or `annotation.xml`).
    ///
    /// Unusable samples are left out and counted in [`Dataset::report`]; with
    /// [`OpenOptions::strict`] they make this an error instead, which lists every image
    /// that does not decode. Every image file is decoded whole, on a few threads, so that a
    /// truncated or corrupt file is reported here, with the decoder's reason, rather than
    /// stopping a fine-tuning run when it is first loaded.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<Dataset, DataError> {
        let root = fs::canonicalize(dir).map_err(|source| DataError::Directory {
            dir: dir.to_owned(),
            source,
        })?;
        if !root.is_dir() {
            return Err(DataError::Directory {
                dir: dir.to_owned(),
                source: std::io::Error::other("is not a directory"),
            });
        }
        let file = find_annotation_file(&root)?;
        let text = read_annotation_file(&file, MAX_ANNOTATION_BYTES)?;
        let annotations = if file.extension().is_some_and(|e| e == "json") {
            parse_annotation_json(&file, &text)?
        } else {
            parse_cvat_xml(&file, &text)?
        };
        let dataset = check_samples(root, file.clone(), annotations);
        let skipped = dataset.report.total_skipped();
        if options.strict && skipped > 0 {
            return Err(DataError::Rejected {
                file,
                skipped,
                summary: dataset.report.listing(),
            });
        }
        Ok(dataset)
    }

    /// Returns the usable samples of `split`.
    pub fn split(&self, split: Split) -> &[Sample] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    /// Returns how many usable samples the dataset has across all splits.
    pub fn len(&self) -> usize {
        self.train.len() + self.validation.len() + self.test.len()
    }

    /// Returns whether the dataset has no usable sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns how many usable samples of `split` each class has.
    pub fn class_counts(&self, split: Split) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for s in self.split(split) {
            counts[s.label] += 1;
        }
        counts
    }
}

/// Returns the annotation file of the (canonical) dataset directory `root`.
pub fn find_annotation_file(root: &Path) -> Result<PathBuf, DataError> {
    std::iter::once(ANNOTATION_JSON)
        .chain(CVAT_XML)
        .map(|name| root.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| DataError::NoAnnotationFile {
            dir: root.to_owned(),
            accepted: ACCEPTED_FILES,
        })
}

/// A sample whose label and path are fine, waiting for its image check.
struct Candidate {
    split: Split,
    label: usize,
    path: PathBuf,
    shown: String,
}

fn check_samples(root: PathBuf, file: PathBuf, annotations: Annotations) -> Dataset {
    let mut report = DatasetReport::new(file);
    report.ignored_keys = annotations.ignored_keys;
    let labels = annotations.labels;
    let mut candidates = Vec::with_capacity(annotations.entries.len());
    // The first listing of a file wins; later ones (within a split or in another split, where
    // they would leak training data into validation or test) are left out and reported.
    let mut listed: std::collections::HashMap<PathBuf, Split> = std::collections::HashMap::new();
    for entry in annotations.entries {
        match check_entry(&root, &labels, &entry) {
            Ok((split, _, path)) if listed.contains_key(&path) => {
                let first = listed[&path];
                report.skip(
                    Some(split),
                    SkipReason::Duplicate,
                    format!("{} (first listed in {})", entry.path, first.name()),
                );
            }
            Ok((split, label, path)) => {
                listed.insert(path.clone(), split);
                candidates.push(Candidate {
                    split,
                    label,
                    path,
                    shown: entry.path,
                });
            }
            Err((split, reason, example)) => report.skip(split, reason, example),
        }
    }

    // A decoder that panics marks only its own image.
    let panicked = || Err(ImageProblem::NotAnImage("the decoder failed".into()));
    let decoded = check_all(&candidates, |c| decode_whole(&c.path).map(drop), panicked);
    let mut dataset = Dataset {
        root,
        labels,
        train: Vec::new(),
        validation: Vec::new(),
        test: Vec::new(),
        report,
    };
    for (c, decoded) in candidates.into_iter().zip(decoded) {
        if let Err(problem) = decoded {
            let reason = problem.to_string();
            dataset.report.skip_undecodable(c.split, &c.shown, &reason);
            continue;
        }
        let sample = Sample {
            path: c.path,
            label: c.label,
        };
        match c.split {
            Split::Train => dataset.train.push(sample),
            Split::Validation => dataset.validation.push(sample),
            Split::Test => dataset.test.push(sample),
        }
    }
    dataset
}

type Skip = (Option<Split>, SkipReason, String);

/// Checks everything about an entry except its image.
fn check_entry(
    root: &Path,
    labels: &[String],
    entry: &Entry,
) -> Result<(Split, usize, PathBuf), Skip> {
    let shown = &entry.path;
    let split = match &entry.split {
        Ok(split) => *split,
        Err(subset) if subset.trim().is_empty() => {
            return Err((
                None,
                SkipReason::UnknownSubset,
                format!("{shown} (no subset)"),
            ));
        }
        Err(subset) => {
            return Err((
                None,
                SkipReason::UnknownSubset,
                format!("{shown} (subset \"{subset}\")"),
            ));
        }
    };
    let skip = |reason, example: String| Err((Some(split), reason, example));
    let label = match entry.labels.as_slice() {
        [] => return skip(SkipReason::Unlabeled, shown.clone()),
        [one] => one,
        many => {
            return skip(
                SkipReason::MultiLabeled,
                format!("{shown} ({})", many.join(", ")),
            );
        }
    };
    let Some(class) = labels.iter().position(|l| l == label) else {
        return skip(SkipReason::UnknownLabel, format!("{shown} (\"{label}\")"));
    };
    let mut result = resolve_inside(root, shown);
    for alternative in &entry.alternatives {
        if !matches!(result, Err(PathError::NotFound { .. })) {
            break;
        }
        if let Ok(path) = resolve_inside(root, alternative) {
            result = Ok(path);
        }
    }
    match result {
        Ok(path) => Ok((split, class, path)),
        Err(
            PathError::Absolute { .. }
            | PathError::ParentComponent { .. }
            | PathError::SymlinkOutside { .. },
        ) => skip(SkipReason::PathEscapes, shown.clone()),
        Err(_) => skip(SkipReason::MissingFile, shown.clone()),
    }
}
