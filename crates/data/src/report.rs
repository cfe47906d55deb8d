//! What opening a dataset left out, and why: every unusable sample is counted by split and
//! reason, with a few example paths, so that nothing is dropped silently.

use std::fmt;
use std::path::PathBuf;

/// How many example paths are kept per split and reason.
pub const MAX_EXAMPLES: usize = 3;

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Training samples.
    Train,
    /// Validation samples (early stopping, model selection).
    Validation,
    /// Held-out test samples.
    Test,
}

impl Split {
    /// The three splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// Returns the name used in `annotation.json` and CVAT subsets: `Train`, `Validation`
    /// or `Test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "Train",
            Split::Validation => "Validation",
            Split::Test => "Test",
        }
    }

    /// Returns the split a name stands for, case-insensitively; `Training`, `Val`,
    /// `Valid` and `Testing` are understood too.
    pub fn from_name(name: &str) -> Option<Split> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "validation" | "val" | "valid" => Some(Split::Validation),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a sample was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// It has no label.
    Unlabeled,
    /// It has more than one distinct label (the engine does single-label classification).
    MultiLabeled,
    /// Its label is not in the dataset's `labels`.
    UnknownLabel,
    /// Its file does not exist or is not a regular file.
    MissingFile,
    /// Its file is not a PNG or JPEG image that decodes whole (not an image, cut off,
    /// corrupt, or unreadable).
    Undecodable,
    /// Its path is absolute, climbs out with `..`, or is a symbolic link leading outside
    /// the dataset directory.
    PathEscapes,
    /// (CVAT) its `subset` is missing or is not Train, Validation or Test.
    UnknownSubset,
    /// Its file is already listed (in this split or an earlier one): a second copy would
    /// count twice, or leak between training and test data.
    Duplicate,
}

impl SkipReason {
    /// Returns what the reason means, as it reads after a count of samples.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Unlabeled => "without a label",
            SkipReason::MultiLabeled => "with more than one label",
            SkipReason::UnknownLabel => "with a label not in `labels`",
            SkipReason::MissingFile => "whose file does not exist",
            SkipReason::Undecodable => "whose file is not a PNG or JPEG image that decodes",
            SkipReason::PathEscapes => "whose path leads outside the dataset directory",
            SkipReason::UnknownSubset => {
                "with a missing or unknown subset (accepted: Train, Validation, Test)"
            }
            SkipReason::Duplicate => "whose file is listed more than once",
        }
    }
}

/// The samples of one split left out for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipEntry {
    /// The split, or `None` for samples whose subset is unknown.
    pub split: Option<Split>,
    /// Why they were left out.
    pub reason: SkipReason,
    /// How many.
    pub count: usize,
    /// Up to [`MAX_EXAMPLES`] of them, as written in the annotation file (with details).
    pub examples: Vec<String>,
}

/// An image file that does not decode, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecodableImage {
    /// The split that lists it.
    pub split: Split,
    /// Its path as written in the annotation file.
    pub path: String,
    /// What the decoder reported, e.g. that the data ends early.
    pub reason: String,
}

/// What opening a dataset left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetReport {
    /// The annotation file that was read.
    pub file: PathBuf,
    /// One entry per (split, reason) that occurred, in order of first occurrence.
    pub entries: Vec<SkipEntry>,
    /// Every image left out because it does not decode (the entries keep only a few
    /// examples), in file order.
    pub undecodable: Vec<UndecodableImage>,
    /// Top-level keys of `annotation.json` that mean nothing to the engine and were ignored.
    pub ignored_keys: Vec<String>,
}

impl DatasetReport {
    /// Returns a report for `file` with nothing skipped.
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            ..Self::default()
        }
    }

    /// Counts one left-out sample, keeping it as an example while there are few.
    pub fn skip(&mut self, split: Option<Split>, reason: SkipReason, example: impl Into<String>) {
        let index = match self
            .entries
            .iter()
            .position(|e| e.split == split && e.reason == reason)
        {
            Some(index) => index,
            None => {
                self.entries.push(SkipEntry {
                    split,
                    reason,
                    count: 0,
                    examples: Vec::new(),
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        entry.count += 1;
        if entry.examples.len() < MAX_EXAMPLES {
            entry.examples.push(example.into());
        }
    }

    /// Counts one sample left out because its image does not decode, keeping its path and
    /// the decoder's reason.
    pub fn skip_undecodable(&mut self, split: Split, path: &str, reason: &str) {
        self.skip(
            Some(split),
            SkipReason::Undecodable,
            format!("{path} ({reason})"),
        );
        self.undecodable.push(UndecodableImage {
            split,
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// Returns the report followed by every image that does not decode, one per line with
    /// the decoder's reason, as strict mode's error shows it.
    pub fn listing(&self) -> String {
        let mut text = self.to_string();
        if !self.undecodable.is_empty() {
            text.push_str("\nimages that do not decode:");
            for image in &self.undecodable {
                let UndecodableImage {
                    split,
                    path,
                    reason,
                } = image;
                text.push_str(&format!("\n  {path} ({split}): {reason}"));
            }
        }
        text
    }

    /// Returns how many samples were left out in all.
    pub fn total_skipped(&self) -> usize {
        self.entries.iter().map(|e| e.count).sum()
    }

    /// Returns how many samples of `split` were left out for `reason`.
    pub fn count(&self, split: Split, reason: SkipReason) -> usize {
        self.count_in(Some(split), reason)
    }

    /// Returns how many samples were left out for `reason` in `split` (`None`: samples
    /// that belong to no known split).
    pub fn count_in(&self, split: Option<Split>, reason: SkipReason) -> usize {
        self.entries
            .iter()
            .filter(|e| e.split == split && e.reason == reason)
            .map(|e| e.count)
            .sum()
    }

    /// Returns whether nothing was left out and no key was ignored.
    pub fn is_clean(&self) -> bool {
        self.entries.is_empty() && self.ignored_keys.is_empty()
    }
}

/// One line per (split, reason): `Train: 3 samples without a label, e.g. a.png, b.png`.
impl fmt::Display for DatasetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.entries {
            if !first {
                writeln!(f)?;
            }
            first = false;
            let split = e.split.map_or("no split", Split::name);
            let noun = if e.count == 1 { "sample" } else { "samples" };
            write!(f, "{split}: {} {noun} {}", e.count, e.reason.describe())?;
            if !e.examples.is_empty() {
                write!(f, ", e.g. {}", e.examples.join(", "))?;
            }
        }
        if !self.ignored_keys.is_empty() {
            if !first {
                writeln!(f)?;
            }
            write!(
                f,
                "ignored keys (not Train, Validation, Test or labels): {}",
                self.ignored_keys.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_split_and_reason_keeping_few_examples() {
        let mut r = DatasetReport::new("a/annotation.json".into());
        assert!(r.is_clean());
        for i in 0..5 {
            r.skip(
                Some(Split::Train),
                SkipReason::Unlabeled,
                format!("x{i}.png"),
            );
        }
        r.skip(Some(Split::Test), SkipReason::Unlabeled, "t.png");
        r.skip(None, SkipReason::UnknownSubset, "u.png (subset `foo`)");
        assert_eq!(r.total_skipped(), 7);
        assert_eq!(r.count(Split::Train, SkipReason::Unlabeled), 5);
        assert_eq!(r.count(Split::Test, SkipReason::Unlabeled), 1);
        assert_eq!(r.count(Split::Validation, SkipReason::Unlabeled), 0);
        assert_eq!(r.count_in(None, SkipReason::UnknownSubset), 1);
        assert_eq!(r.entries[0].examples.len(), MAX_EXAMPLES);
        let text = r.to_string();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("Train: 5 samples without a label, e.g. x0.png, x1.png, x2.png"));
        assert!(text.contains("no split: 1 sample with a missing or unknown subset"));
    }

    #[test]
    fn split_names_are_case_insensitive_with_aliases() {
        assert_eq!(Split::from_name("train"), Some(Split::Train));
        assert_eq!(Split::from_name("VALIDATION"), Some(Split::Validation));
        assert_eq!(Split::from_name("val"), Some(Split::Validation));
        assert_eq!(Split::from_name(" Test "), Some(Split::Test));
        assert_eq!(Split::from_name("default"), None);
        assert_eq!(Split::from_name(""), None);
    }
}
