//! Result packages: `model.zip`, a fine-tuned copy of a package that is itself a valid package
//! (new weights, labels rewritten, everything else carried over), and reading one back.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;
use zip::write::SimpleFileOptions;

use crate::card::CARD_FILE;
use crate::config::CONFIG_FILE;
use crate::package::ModelPackage;

/// The largest uncompressed size accepted when extracting a `model.zip` (bytes).
pub const MAX_EXTRACTED_BYTES: u64 = 16 << 30;

/// Why a result package cannot be written or read.
#[derive(Debug, Error)]
pub enum ResultError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The zip archive is damaged or not a zip.
    #[error("{}: not a readable zip archive: {reason}", path.display())]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What the zip reader reported.
        reason: String,
    },
    /// An entry would be written outside the destination (zip-slip) or is not a plain file.
    #[error("{}: entry `{entry}` is not a plain relative path inside the archive", path.display())]
    UnsafeEntry {
        /// The archive.
        path: PathBuf,
        /// The entry name.
        entry: String,
    },
    /// The archive expands to more than [`MAX_EXTRACTED_BYTES`].
    #[error("{}: expands to more than {limit} bytes", path.display())]
    TooLarge {
        /// The archive.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
}

/// What changes between a package and its fine-tuned result.
#[derive(Debug)]
pub struct ResultSpec<'a> {
    /// The package that was fine-tuned.
    pub source: &'a ModelPackage,
    /// The new weights file (safetensors), stored in the zip as `weights_name`.
    pub weights: &'a Path,
    /// The param file's name inside the result package.
    pub weights_name: &'a str,
    /// The labels the model now predicts, by class index.
    pub labels: &'a [String],
    /// Keys to set in `config.json` besides `param_file`, `id2label` and `label2id`.
    pub config_updates: Map<String, Value>,
    /// Markdown appended to the Model Card's body.
    pub card_appendix: Option<String>,
    /// Sets the card's `is-federated` key (the rest of the front matter is kept as written).
    pub federated: Option<bool>,
    /// Files the model added (path inside the zip, contents); one with the path of a package
    /// file replaces it.
    pub extra_files: &'a [(String, Vec<u8>)],
}

/// Sets a top-level `key: value` line of YAML front matter, replacing an existing one or
/// appending it, and leaving every other line as written.
fn set_front_matter_key(front_matter: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}:");
    let mut found = false;
    let mut out = String::with_capacity(front_matter.len() + key.len() + value.len() + 3);
    for line in front_matter.split_inclusive('\n') {
        if !found && line.starts_with(&prefix) {
            found = true;
            out.push_str(&format!("{key}: {value}\n"));
        } else {
            out.push_str(line);
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}: {value}\n"));
    }
    out
}

/// Writes the fine-tuned package as a zip at `out`, atomically (temporary file, fsync,
/// rename), with every entry at the archive's root.
pub fn write_model_zip(spec: &ResultSpec<'_>, out: &Path) -> Result<(), ResultError> {
    let io_at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResultError::Io { path, source }
    };
    let zip_err = |reason: zip::result::ZipError| ResultError::Zip {
        path: out.to_path_buf(),
        reason: reason.to_string(),
    };
    let tmp = out.with_extension("zip.partial");
    let file = File::create(&tmp).map_err(io_at(&tmp))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);

    let package = spec.source;
    let mut config = package.config.raw.clone();
    config.insert("param_file".into(), Value::from(spec.weights_name));
    let id2label: Map<String, Value> = spec
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), Value::from(l.as_str())))
        .collect();
    let label2id: Map<String, Value> = spec
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), Value::from(i)))
        .collect();
    config.insert("id2label".into(), Value::Object(id2label));
    config.insert("label2id".into(), Value::Object(label2id));
    for (key, value) in &spec.config_updates {
        config.insert(key.clone(), value.clone());
    }
    let config_text = serde_json::to_string_pretty(&Value::Object(config))
        .map_err(|e| io_at(out)(io::Error::other(e)))?;

    let front_matter = match spec.federated {
        Some(flag) => set_front_matter_key(
            &package.card.front_matter,
            "is-federated",
            &flag.to_string(),
        ),
        None => package.card.front_matter.clone(),
    };
    let mut card = format!("---\n{front_matter}---\n{}", package.card.body);
    if let Some(appendix) = &spec.card_appendix {
        if !card.ends_with('\n') {
            card.push('\n');
        }
        card.push('\n');
        card.push_str(appendix);
    }

    zip.start_file(CARD_FILE, options).map_err(zip_err)?;
    zip.write_all(card.as_bytes()).map_err(io_at(out))?;
    zip.start_file(CONFIG_FILE, options).map_err(zip_err)?;
    zip.write_all(config_text.as_bytes()).map_err(io_at(out))?;
    zip.write_all(b"\n").map_err(io_at(out))?;

    // Every other regular file of the package, except the old weights.
    let skip: Vec<PathBuf> = vec![
        package.root.join(CARD_FILE),
        package.root.join(CONFIG_FILE),
        package.param_path.clone(),
    ];
    let mut files = Vec::new();
    collect_files(&package.root, &package.root, &mut files).map_err(io_at(&package.root))?;
    files.sort();
    for relative in files {
        let path = package.root.join(&relative);
        let name = relative.to_string_lossy().replace('\\', "/");
        if skip.contains(&path)
            || relative == Path::new(spec.weights_name)
            || spec.extra_files.iter().any(|(extra, _)| *extra == name)
        {
            continue;
        }
        zip.start_file(name, options).map_err(zip_err)?;
        let mut source = File::open(&path).map_err(io_at(&path))?;
        io::copy(&mut source, &mut zip).map_err(io_at(&path))?;
    }
    zip.start_file(spec.weights_name, options)
        .map_err(zip_err)?;
    let mut weights = File::open(spec.weights).map_err(io_at(spec.weights))?;
    io::copy(&mut weights, &mut zip).map_err(io_at(spec.weights))?;
    for (name, bytes) in spec.extra_files {
        zip.start_file(name.as_str(), options).map_err(zip_err)?;
        zip.write_all(bytes).map_err(io_at(out))?;
    }

    let writer = zip.finish().map_err(zip_err)?;
    let file = writer
        .into_inner()
        .map_err(|e| io_at(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_at(&tmp))?;
    drop(file);
    fs::rename(&tmp, out).map_err(io_at(out))?;
    Ok(())
}

/// Lists regular files under `dir` (relative to `root`), skipping hidden entries and
/// symbolic links that lead outside `root`.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(real) = fs::canonicalize(&path) else {
            continue;
        };
        if !real.starts_with(root) {
            continue;
        }
        if real.is_dir() {
            collect_files(root, &path, out)?;
        } else if real.is_file()
            && let Ok(relative) = path.strip_prefix(root)
        {
            out.push(relative.to_path_buf());
        }
    }
    Ok(())
}

/// Extracts a `model.zip` into `dest` (created if needed), refusing entries that would land
/// outside it, and returns `dest`.
pub fn extract_model_zip(archive: &Path, dest: &Path) -> Result<PathBuf, ResultError> {
    let io_at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResultError::Io { path, source }
    };
    let zip_err = |reason: zip::result::ZipError| ResultError::Zip {
        path: archive.to_path_buf(),
        reason: reason.to_string(),
    };
    let file = File::open(archive).map_err(io_at(archive))?;
    let mut zip = zip::ZipArchive::new(file).map_err(zip_err)?;
    fs::create_dir_all(dest).map_err(io_at(dest))?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err)?;
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let Some(relative) = entry.enclosed_name() else {
            return Err(ResultError::UnsafeEntry {
                path: archive.to_path_buf(),
                entry: name,
            });
        };
        if entry.is_dir() {
            fs::create_dir_all(dest.join(&relative)).map_err(io_at(dest))?;
            continue;
        }
        if !entry.is_file() {
            return Err(ResultError::UnsafeEntry {
                path: archive.to_path_buf(),
                entry: name,
            });
        }
        total = total.saturating_add(entry.size());
        if total > MAX_EXTRACTED_BYTES {
            return Err(ResultError::TooLarge {
                path: archive.to_path_buf(),
                limit: MAX_EXTRACTED_BYTES,
            });
        }
        let target = dest.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let mut out = File::create(&target).map_err(io_at(&target))?;
        io::copy(&mut entry, &mut out).map_err(io_at(&target))?;
    }
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelCatalog, inspect_package};

    fn example_package(dir: &Path) -> ModelPackage {
        fs::write(
            dir.join("README.md"),
            "---\nname: m\ntasks: [image-classification]\nlicense: MIT\nauthor: a\n---\n# M\n",
        )
        .expect("card");
        fs::write(
            dir.join("config.json"),
            r#"{"entry_module": "m", "entry_class": "C", "param_file": "old.safetensors", "id2label": {"0": "x"}, "epochs": 3}"#,
        )
        .expect("config");
        let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 4]);
        fs::write(dir.join("old.safetensors"), &bytes).expect("weights");
        fs::write(dir.join("new.safetensors"), &bytes).expect("weights");
        fs::create_dir(dir.join("docs")).expect("docs");
        fs::write(dir.join("docs/labels.txt"), "x\n").expect("extra");
        let mut catalog = ModelCatalog::new();
        catalog.register("m", "C");
        inspect_package(dir, &catalog).package.expect("valid")
    }

    #[test]
    fn a_result_zip_is_a_valid_package_with_new_labels_and_weights() {
        let src = tempfile::tempdir().expect("tempdir");
        let package = example_package(src.path());
        let out = tempfile::tempdir().expect("tempdir");
        let zip_path = out.path().join("model.zip");
        let labels = ["cat".to_owned(), "dog".to_owned()];
        write_model_zip(
            &ResultSpec {
                source: &package,
                weights: &src.path().join("new.safetensors"),
                weights_name: "model.safetensors",
                labels: &labels,
                config_updates: Map::from_iter([("epochs".to_owned(), Value::from(5))]),
                card_appendix: Some("## Fine-tuning\n\nDone.\n".into()),
                federated: Some(true),
                extra_files: &[
                    ("docs/labels.txt".to_owned(), b"replaced\n".to_vec()),
                    ("notes/classes.md".to_owned(), b"# cat, dog\n".to_vec()),
                ],
            },
            &zip_path,
        )
        .expect("written");
        assert!(!out.path().join("model.zip.partial").exists());

        let unpacked = extract_model_zip(&zip_path, &out.path().join("unpacked")).expect("extract");
        let mut catalog = ModelCatalog::new();
        catalog.register("m", "C");
        let inspection = inspect_package(&unpacked, &catalog);
        let result = inspection.package.expect("the result is a valid package");
        assert_eq!(result.labels(), Some(&labels[..]));
        assert_eq!(result.config.param_file, "model.safetensors");
        assert_eq!(result.config.raw["epochs"], 5);
        assert!(result.card.body.ends_with("## Fine-tuning\n\nDone.\n"));
        assert!(result.card.is_federated, "is-federated is set");
        assert_eq!(
            result.card.front_matter,
            format!("{}is-federated: true\n", package.card.front_matter)
        );
        assert_eq!(
            fs::read(unpacked.join("docs/labels.txt")).expect("kept"),
            b"replaced\n",
            "an extra file replaces the package's file of the same path"
        );
        assert_eq!(
            fs::read(unpacked.join("notes/classes.md")).expect("added"),
            b"# cat, dog\n"
        );
        assert!(!unpacked.join("old.safetensors").exists());
    }

    #[test]
    fn front_matter_keys_are_replaced_or_appended_and_nothing_else_changes() {
        let fm = "name: a\nis-federated: false # old\ntags:\n  - is-federated: x\n";
        assert_eq!(
            set_front_matter_key(fm, "is-federated", "true"),
            "name: a\nis-federated: true\ntags:\n  - is-federated: x\n"
        );
        assert_eq!(
            set_front_matter_key("name: a", "is-federated", "true"),
            "name: a\nis-federated: true\n"
        );
    }

    #[test]
    fn zip_slip_entries_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("evil.zip");
        {
            let mut zip = zip::ZipWriter::new(File::create(&path).expect("create"));
            zip.start_file("../escape.txt", SimpleFileOptions::default())
                .expect("entry");
            zip.write_all(b"x").expect("write");
            zip.finish().expect("finish");
        }
        let err = extract_model_zip(&path, &dir.path().join("out")).expect_err("refused");
        assert!(matches!(err, ResultError::UnsafeEntry { .. }), "{err}");
        assert!(!dir.path().join("escape.txt").exists());
    }
}
