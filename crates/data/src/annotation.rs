//! What both annotation formats (AlphaMed `annotation.json`, CVAT XML) are parsed into
//! before any file is looked at, and how annotation files are read safely.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::DataError;
use crate::report::Split;

/// Annotation files larger than this are refused before being read whole.
pub const MAX_ANNOTATION_BYTES: u64 = 256 << 20;

/// A parsed annotation file: the class names and every sample as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Annotations {
    /// Class names; the class index is the position.
    pub labels: Vec<String>,
    /// Every sample, in file order.
    pub entries: Vec<Entry>,
    /// Top-level keys that were ignored.
    pub ignored_keys: Vec<String>,
}

/// One sample as written in an annotation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its split, or the subset name as written (empty when missing) when it is not one.
    pub split: Result<Split, String>,
    /// The path as written, relative to the dataset directory.
    pub path: String,
    /// Other places the file may be, tried in order when `path` does not exist (CVAT
    /// exports put images under `images/`).
    pub alternatives: Vec<String>,
    /// Its distinct labels, in order of appearance.
    pub labels: Vec<String>,
}

impl Entry {
    /// Adds `label` unless it is already there.
    pub fn add_label(&mut self, label: &str) {
        if !self.labels.iter().any(|l| l == label) {
            self.labels.push(label.to_owned());
        }
    }
}

/// Reads a whole annotation file as UTF-8 (a BOM is dropped), refusing files over `limit`.
pub(crate) fn read_annotation_file(file: &Path, limit: u64) -> Result<String, DataError> {
    let io = |source| DataError::Io {
        file: file.to_owned(),
        source,
    };
    let handle = File::open(file).map_err(io)?;
    let size = handle.metadata().map_err(io)?.len();
    if size > limit {
        return Err(DataError::TooLarge {
            file: file.to_owned(),
            size,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // `take` guards against a file that grows after the size check.
    handle
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(DataError::TooLarge {
            file: file.to_owned(),
            size: bytes.len() as u64,
            limit,
        });
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        }),
        Err(error) => {
            let valid = error.utf8_error().valid_up_to();
            let (line, column) = line_column(error.as_bytes(), valid);
            Err(DataError::Syntax {
                file: file.to_owned(),
                line,
                column,
                message: "is not UTF-8 text".into(),
            })
        }
    }
}

/// Returns the 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &[u8], offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_lines_and_characters() {
        let text = "ab\ncé\nx".as_bytes();
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        // After "cé" (3 bytes): column 3.
        assert_eq!(line_column(text, 6), (2, 3));
        assert_eq!(line_column(text, 100), (3, 2));
    }

    #[test]
    fn reads_utf8_drops_bom_and_refuses_large_or_binary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.json");
        std::fs::write(&file, "\u{feff}{}").expect("write");
        assert_eq!(read_annotation_file(&file, 100).expect("read"), "{}");
        assert!(matches!(
            read_annotation_file(&file, 2),
            Err(DataError::TooLarge {
                size: 5,
                limit: 2,
                ..
            })
        ));
        std::fs::write(&file, b"{\n\xff}").expect("write");
        assert!(matches!(
            read_annotation_file(&file, 100),
            Err(DataError::Syntax {
                line: 2,
                column: 1,
                ..
            })
        ));
    }
}
