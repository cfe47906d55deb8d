//! What an import did: the labels, how many images of each went to each split, and every
//! file that was skipped, with the reason.

use std::fmt;
use std::path::PathBuf;

use crate::report::Split;
use crate::table::write_table;

/// How many skipped files a report's text lists before summarising the rest.
const MAX_LISTED_SKIPS: usize = 20;

/// What kind of source was imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A folder with one subfolder of images per label, as torchvision's `ImageFolder`.
    ImageFolder,
    /// A CSV file with `path` and `label` columns.
    Csv,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::ImageFolder => "ImageFolder",
            SourceKind::Csv => "CSV",
        })
    }
}

/// Why a file (or a CSV row) was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSkipReason {
    /// It is not a PNG or JPEG image that decodes; the decoder's message.
    NotAnImage(String),
    /// It could not be read; the I/O error.
    Unreadable(String),
    /// (CSV) No file exists at the path.
    NotFound,
    /// (CSV) The path names a directory or something else than a file.
    NotAFile,
    /// The same file was already imported (through another CSV row or a link); where.
    Duplicate {
        /// The earlier occurrence: a CSV line or a path.
        first: String,
    },
    /// The label is empty or only white space (a CSV cell, or a label folder's name).
    EmptyLabel,
    /// (CSV) The path cell is empty.
    EmptyPath,
    /// The label is not in the explicit label list of the options.
    LabelNotListed(String),
    /// (CSV) The row has too few cells to reach the `path` and `label` columns.
    ShortRow {
        /// Cells in the row.
        cells: usize,
        /// Cells the header has.
        expected: usize,
    },
    /// A label folder whose name is not valid UTF-8, so it cannot be a label.
    LabelNotText,
    /// A folder reached a second time through a symbolic link; not walked again.
    AlreadyVisited,
}

impl fmt::Display for ImportSkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnImage(detail) => write!(f, "not a usable PNG or JPEG image ({detail})"),
            Self::Unreadable(detail) => write!(f, "cannot be read ({detail})"),
            Self::NotFound => f.write_str("no such file"),
            Self::NotAFile => f.write_str("not a file"),
            Self::Duplicate { first } => write!(f, "the same file as {first}"),
            Self::EmptyLabel => f.write_str("empty label"),
            Self::EmptyPath => f.write_str("empty path"),
            Self::LabelNotListed(label) => {
                write!(f, "label \"{label}\" is not in the given labels")
            }
            Self::ShortRow { cells, expected } => {
                write!(f, "row has {cells} cells, the header {expected}")
            }
            Self::LabelNotText => f.write_str("folder name is not UTF-8 text"),
            Self::AlreadyVisited => f.write_str("folder already imported through a link"),
        }
    }
}

/// A file or CSV row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file as found in the folder, or as written in the CSV (resolved against its
    /// directory); empty for a CSV row too short to have a path.
    pub path: PathBuf,
    /// (CSV) The 1-based line of the row.
    pub line: Option<usize>,
    /// Why it was skipped.
    pub reason: ImportSkipReason,
}

impl fmt::Display for SkippedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.path.as_os_str().is_empty() {
            write!(f, "{}: ", self.path.display())?;
        }
        write!(f, "{}", self.reason)
    }
}

/// What [`import_dataset`](crate::import_dataset) wrote and left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The new dataset directory.
    pub target: PathBuf,
    /// What kind of source was read.
    pub kind: SourceKind,
    /// Class names as written in `annotation.json`; a class index is a position.
    pub labels: Vec<String>,
    /// Images per split (in [`Split::ALL`] order) and label.
    pub counts: [Vec<usize>; 3],
    /// Files that were not imported, by CSV line, then by path.
    pub skipped: Vec<SkippedFile>,
    /// Hidden entries (names starting with `.`) of an ImageFolder tree that were ignored.
    pub hidden: usize,
    /// How many images were hard-linked rather than copied.
    pub linked: usize,
}

impl ImportReport {
    /// Returns how many images of `split` were imported.
    pub fn split_total(&self, split: Split) -> usize {
        self.counts[split as usize].iter().sum()
    }

    /// Returns how many images were imported in all.
    pub fn total(&self) -> usize {
        Split::ALL.into_iter().map(|s| self.split_total(s)).sum()
    }

    /// Returns how many images of `label` (a class index) were imported in all splits.
    pub fn label_total(&self, label: usize) -> usize {
        self.counts.iter().map(|c| c[label]).sum()
    }
}

/// A summary line, a table (rows labels, columns splits), the skipped files and the
/// number of hidden entries ignored.
impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported {} images in {} labels from {} into {}",
            self.total(),
            self.labels.len(),
            self.kind,
            self.target.display()
        )?;
        let mut header = vec!["label".to_owned()];
        header.extend(Split::ALL.iter().map(|s| s.name().to_owned()));
        header.push("total".into());
        let rows: Vec<Vec<String>> = self
            .labels
            .iter()
            .enumerate()
            .map(|(l, name)| {
                let mut row = vec![name.clone()];
                row.extend(self.counts.iter().map(|c| c[l].to_string()));
                row.push(self.label_total(l).to_string());
                row
            })
            .collect();
        let mut totals = vec!["total".to_owned()];
        totals.extend(Split::ALL.iter().map(|&s| self.split_total(s).to_string()));
        totals.push(self.total().to_string());
        write_table(f, &header, &rows, &totals)?;
        if !self.skipped.is_empty() {
            let noun = if self.skipped.len() == 1 {
                "file"
            } else {
                "files"
            };
            writeln!(f, "skipped {} {noun}:", self.skipped.len())?;
            for skip in self.skipped.iter().take(MAX_LISTED_SKIPS) {
                writeln!(f, "  {skip}")?;
            }
            if self.skipped.len() > MAX_LISTED_SKIPS {
                writeln!(
                    f,
                    "  ... and {} more",
                    self.skipped.len() - MAX_LISTED_SKIPS
                )?;
            }
        }
        if self.hidden > 0 {
            writeln!(
                f,
                "ignored {} hidden entries (names starting with \".\")",
                self.hidden
            )?;
        }
        Ok(())
    }
}
