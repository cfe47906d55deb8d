//! Finding the images to import: an ImageFolder tree (`SRC/<label>/<image>`, images
//! possibly in subfolders of the label folder) or a CSV file with `path` and `label`
//! columns, turned into labelled candidate files and the entries skipped on the way.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::csv::{CsvRecord, parse_csv};
use crate::import::ImportError;
use crate::import_report::{ImportSkipReason, SkippedFile, SourceKind};

/// A file to import, before its image is checked.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Its label as found (folder name or CSV cell).
    pub label: String,
    /// The file as found, for reports.
    pub shown: PathBuf,
    /// The file, canonical (links resolved), to read, copy or link.
    pub path: PathBuf,
    /// A name to derive the new file name from: the path below the label folder, or the
    /// path as written in the CSV, without extension.
    pub hint: String,
    /// (CSV) The row's line.
    pub line: Option<usize>,
}

/// What a source holds.
#[derive(Debug)]
pub(crate) struct Scan {
    pub kind: SourceKind,
    /// Labels in their default order: folder names, or distinct CSV labels, sorted.
    pub labels: Vec<String>,
    /// Files to check, in source order.
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<SkippedFile>,
    /// Hidden entries ignored (ImageFolder only).
    pub hidden: usize,
    /// Canonical file → where it was first seen, to skip repeats.
    seen: HashMap<PathBuf, String>,
}

impl Scan {
    fn new(kind: SourceKind) -> Self {
        Scan {
            kind,
            labels: Vec::new(),
            candidates: Vec::new(),
            skipped: Vec::new(),
            hidden: 0,
            seen: HashMap::new(),
        }
    }

    fn skip(&mut self, path: PathBuf, line: Option<usize>, reason: ImportSkipReason) {
        self.skipped.push(SkippedFile { path, line, reason });
    }

    /// Adds `candidate` unless its file was seen already.
    fn add(&mut self, candidate: Candidate) {
        let here = match candidate.line {
            Some(line) => format!("line {line}"),
            None => candidate.shown.display().to_string(),
        };
        if let Some(first) = self.seen.get(&candidate.path) {
            let reason = ImportSkipReason::Duplicate {
                first: first.clone(),
            };
            self.skip(candidate.shown, candidate.line, reason);
            return;
        }
        self.seen.insert(candidate.path.clone(), here);
        self.candidates.push(candidate);
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Returns whether a file name marks a hidden entry.
fn is_hidden(name: &OsString) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Returns the entries of `dir` sorted by name (byte order, which for UTF-8 names is the
/// code point order Python's `sorted` gives torchvision).
fn sorted_entries(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        entries.push((entry.file_name(), entry.path()));
    }
    entries.sort();
    Ok(entries)
}

/// Turns `a/b/c.png` into `a_b_c`-like hints (the extension dropped, separators kept as
/// `/` for `safe_component` to replace).
fn name_hint(relative: &Path) -> String {
    let stem = relative.with_extension("");
    let parts: Vec<String> = stem
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// Scans an ImageFolder tree: each non-hidden subfolder of `root` is a label, in sorted
/// order; every non-hidden file below it, at any depth, is a candidate of that label.
pub(crate) fn scan_image_folder(root: &Path) -> Result<Scan, ImportError> {
    let entries = sorted_entries(root).map_err(io_error(root))?;
    let mut scan = Scan::new(SourceKind::ImageFolder);
    let mut visited = HashSet::new();
    visited.insert(fs::canonicalize(root).map_err(io_error(root))?);
    for (name, path) in entries {
        if is_hidden(&name) {
            scan.hidden += 1;
            continue;
        }
        // Links are followed, as torchvision does.
        let meta = fs::metadata(&path).map_err(io_error(&path))?;
        if !meta.is_dir() {
            return Err(ImportError::FileWhereLabelFolderExpected { file: path });
        }
        let Some(label) = name.to_str() else {
            scan.skip(path, None, ImportSkipReason::LabelNotText);
            continue;
        };
        if label.trim().is_empty() {
            scan.skip(path, None, ImportSkipReason::EmptyLabel);
            continue;
        }
        scan.labels.push(label.to_owned());
        walk_label(&path, &path, label, &mut visited, &mut scan);
    }
    if scan.labels.is_empty() && scan.skipped.is_empty() {
        return Err(ImportError::EmptyFolder {
            dir: root.to_owned(),
            hidden: scan.hidden,
        });
    }
    Ok(scan)
}

/// Adds every file below `dir` (a label folder or one of its subfolders) to `scan`.
fn walk_label(
    label_dir: &Path,
    dir: &Path,
    label: &str,
    visited: &mut HashSet<PathBuf>,
    scan: &mut Scan,
) {
    let unreadable = |e: io::Error| ImportSkipReason::Unreadable(e.to_string());
    let canonical = match fs::canonicalize(dir) {
        Ok(c) => c,
        Err(e) => return scan.skip(dir.to_owned(), None, unreadable(e)),
    };
    if !visited.insert(canonical) {
        return scan.skip(dir.to_owned(), None, ImportSkipReason::AlreadyVisited);
    }
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(e) => return scan.skip(dir.to_owned(), None, unreadable(e)),
    };
    for (name, path) in entries {
        if is_hidden(&name) {
            scan.hidden += 1;
            continue;
        }
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                scan.skip(path, None, unreadable(e));
                continue;
            }
        };
        if meta.is_dir() {
            walk_label(label_dir, &path, label, visited, scan);
            continue;
        }
        let canonical = match fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) => {
                scan.skip(path, None, unreadable(e));
                continue;
            }
        };
        let relative = path.strip_prefix(label_dir).unwrap_or(&path);
        let candidate = Candidate {
            label: label.to_owned(),
            hint: name_hint(relative),
            shown: path.clone(),
            path: canonical,
            line: None,
        };
        scan.add(candidate);
    }
}

/// Scans a CSV file whose header names a `path` and a `label` column (in any order, names
/// compared case-insensitively without surrounding white space; other columns ignored).
/// Relative paths are resolved against the CSV file's directory. Labels are the distinct
/// non-empty label cells, sorted.
pub(crate) fn scan_csv(file: &Path) -> Result<Scan, ImportError> {
    let records = read_csv(file)?;
    let Some(header) = records.first().map(|r| r.fields.as_slice()) else {
        return Err(ImportError::EmptyCsv {
            file: file.to_owned(),
        });
    };
    let path_column = find_column(file, header, "path")?;
    let label_column = find_column(file, header, "label")?;
    let base = file.parent().unwrap_or(Path::new(""));
    let mut scan = Scan::new(SourceKind::Csv);
    let mut labels = BTreeSet::new();
    for record in records.iter().skip(1) {
        let line = Some(record.line);
        let (Some(cell), Some(label)) = (
            record.fields.get(path_column),
            record.fields.get(label_column),
        ) else {
            let reason = ImportSkipReason::ShortRow {
                cells: record.fields.len(),
                expected: header.len(),
            };
            scan.skip(PathBuf::new(), line, reason);
            continue;
        };
        let written = Path::new(cell);
        let shown = base.join(written);
        if cell.is_empty() {
            scan.skip(shown, line, ImportSkipReason::EmptyPath);
            continue;
        }
        if label.trim().is_empty() {
            scan.skip(shown, line, ImportSkipReason::EmptyLabel);
            continue;
        }
        labels.insert(label.clone());
        let path = match existing_file(&shown) {
            Ok(path) => path,
            Err(reason) => {
                scan.skip(shown, line, reason);
                continue;
            }
        };
        let hint = if written.is_absolute() {
            name_hint(Path::new(written.file_name().unwrap_or_default()))
        } else {
            name_hint(written)
        };
        let label = label.clone();
        scan.add(Candidate {
            label,
            shown,
            path,
            hint,
            line,
        });
    }
    scan.labels = labels.into_iter().collect();
    Ok(scan)
}

/// Reads and parses a CSV file, which must be UTF-8.
fn read_csv(file: &Path) -> Result<Vec<CsvRecord>, ImportError> {
    let bytes = fs::read(file).map_err(io_error(file))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ImportError::CsvSyntax {
            file: file.to_owned(),
            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
            problem: "is not UTF-8 text; expected a CSV file saved as UTF-8".into(),
        }
    })?;
    parse_csv(&text).map_err(|e| ImportError::CsvSyntax {
        file: file.to_owned(),
        line: e.line,
        problem: e.problem,
    })
}

/// Returns the canonical path of the regular file at `path`, or why there is none.
fn existing_file(path: &Path) -> Result<PathBuf, ImportSkipReason> {
    let canonical = fs::canonicalize(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ImportSkipReason::NotFound,
        _ => ImportSkipReason::Unreadable(e.to_string()),
    })?;
    if canonical.is_file() {
        Ok(canonical)
    } else {
        Err(ImportSkipReason::NotAFile)
    }
}

/// Returns the index of the one header cell named `name`.
fn find_column(file: &Path, header: &[String], name: &'static str) -> Result<usize, ImportError> {
    let matching: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, cell)| cell.trim().eq_ignore_ascii_case(name))
        .map(|(i, _)| i)
        .collect();
    let problem = match matching.as_slice() {
        [one] => return Ok(*one),
        [] => format!("has no `{name}` column"),
        many => format!("has {} `{name}` columns", many.len()),
    };
    Err(ImportError::CsvHeader {
        file: file.to_owned(),
        header: header.join(","),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_drop_extensions_and_keep_subfolders() {
        assert_eq!(name_hint(Path::new("p1/scan.01.png")), "p1/scan.01");
        assert_eq!(name_hint(Path::new("a.png")), "a");
        assert_eq!(name_hint(Path::new("./x/../y.jpg")), "x/y");
        assert!(is_hidden(&OsString::from(".DS_Store")));
        assert!(!is_hidden(&OsString::from("a.b")));
    }
}
