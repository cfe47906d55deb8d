//! A model package directory as a whole: every file checked, every problem collected.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::card::{CARD_FILE, ModelCard, parse_card};
use crate::catalog::ModelCatalog;
use crate::config::{CONFIG_FILE, Entry, ModelConfig, parse_config_and_paths};
use crate::param_file::{ParamFileError, ParamFileInfo, inspect_param_file};
use crate::paths::{PathError, read_to_string_limited, resolve_inside};
use crate::preprocessor::{PREPROCESSOR_FILE, PreprocessorConfig, parse_preprocessor};
use crate::problem::{Problem, Problems};

/// The largest `README.md` read (bytes).
pub const MAX_CARD_BYTES: u64 = 1 << 20;
/// The largest `config.json` / `preprocessor_config.json` read (bytes).
pub const MAX_JSON_BYTES: u64 = 4 << 20;

/// A valid model package.
#[derive(Debug, Clone, Serialize)]
pub struct ModelPackage {
    /// The package directory, canonical.
    pub root: PathBuf,
    /// The Model Card.
    pub card: ModelCard,
    /// `config.json`.
    pub config: ModelConfig,
    /// `preprocessor_config.json`, when present.
    pub preprocessor: Option<PreprocessorConfig>,
    /// The weights file, canonical path.
    pub param_path: PathBuf,
    /// What its bytes say.
    pub param_file: ParamFileInfo,
    /// The TorchScript file of an `entry_file` package, canonical path.
    pub entry_path: Option<PathBuf>,
    /// Warnings found while checking (errors make loading fail).
    pub warnings: Problems,
}

/// Why a package cannot be opened.
#[derive(Debug, Error)]
pub enum PackageError {
    /// The package has errors; every problem found is listed.
    #[error("{} is not a valid model package:\n{problems}", dir.display())]
    Invalid {
        /// The directory.
        dir: PathBuf,
        /// Every problem, errors and warnings.
        problems: Problems,
    },
}

/// The outcome of checking a package: everything found, and the package if it is valid.
#[derive(Debug)]
pub struct Inspection {
    /// Every problem, in the order found.
    pub problems: Problems,
    /// The package, when there is no error.
    pub package: Option<ModelPackage>,
}

impl ModelPackage {
    /// Opens the package in `dir`, failing with every problem when it is not valid.
    pub fn open(dir: &Path, catalog: &ModelCatalog) -> Result<Self, PackageError> {
        let inspection = inspect_package(dir, catalog);
        inspection.package.ok_or_else(|| PackageError::Invalid {
            dir: dir.to_path_buf(),
            problems: inspection.problems,
        })
    }

    /// Class labels by index, from `config.json`, when it gives them.
    pub fn labels(&self) -> Option<&[String]> {
        self.config.labels.as_deref()
    }
}

/// Checks every file of the package in `dir` and reports all problems together.
pub fn inspect_package(dir: &Path, catalog: &ModelCatalog) -> Inspection {
    let mut problems = Problems::default();
    let shown = dir.display().to_string();
    let root = match fs::canonicalize(dir) {
        Ok(root) if root.is_dir() => root,
        Ok(_) => {
            problems.push(
                Problem::error(shown, "is not a directory").expected("a model package directory"),
            );
            return Inspection {
                problems,
                package: None,
            };
        }
        Err(e) => {
            problems.push(
                Problem::error(shown, format!("cannot be opened: {e}"))
                    .expected("a model package directory"),
            );
            return Inspection {
                problems,
                package: None,
            };
        }
    };

    let card = read(&root, CARD_FILE, MAX_CARD_BYTES, &mut problems)
        .and_then(|text| parse_card(&text, &mut problems));
    let parsed = read(&root, CONFIG_FILE, MAX_JSON_BYTES, &mut problems)
        .map(|text| parse_config_and_paths(&text, catalog, &mut problems))
        .unwrap_or_default();
    let preprocessor = if fs::symlink_metadata(root.join(PREPROCESSOR_FILE)).is_ok() {
        read(&root, PREPROCESSOR_FILE, MAX_JSON_BYTES, &mut problems)
            .and_then(|text| parse_preprocessor(&text, &mut problems))
    } else {
        None
    };
    let preprocessor_ok = !problems
        .iter()
        .any(|p| p.is_error() && p.file == PREPROCESSOR_FILE);

    // Files named by config.json must exist inside the package; checked even when other
    // keys have errors, so that every problem is reported at once.
    let param = parsed.param_file.as_deref().and_then(|param_file| {
        locate(&root, "param_file", param_file, &mut problems).and_then(|path| {
            match inspect_param_file(&path) {
                Ok(info) => {
                    if let Some(mismatch) = &info.extension_mismatch {
                        problems.push(
                            Problem::warning(CONFIG_FILE, format!("`{param_file}`: {mismatch}"))
                                .key("param_file")
                                .expected("a file name whose extension matches its format"),
                        );
                    }
                    Some((path, info))
                }
                Err(error) => {
                    let hint = match error {
                        ParamFileError::LegacyPickle => {
                            "re-save it with a current PyTorch: torch.save(torch.load(f, weights_only=True), f), \
                             or as safetensors"
                                .to_owned()
                        }
                        _ => ParamFileError::ACCEPTED.to_owned(),
                    };
                    problems.push(
                        Problem::error(CONFIG_FILE, format!("the param file `{param_file}` {error}"))
                            .key("param_file")
                            .expected(hint),
                    );
                    None
                }
            }
        })
    });
    let entry_path = parsed
        .entry_file
        .as_deref()
        .and_then(|path| locate(&root, "entry_file", path, &mut problems));
    if let (Some(entry), Some((param_path, _))) = (&entry_path, &param)
        && entry == param_path
    {
        // The engine loads the module from `entry_file` and its weights from `param_file`:
        // the module archive is not a weights file it can read strictly.
        problems.push(
            Problem::error(
                CONFIG_FILE,
                format!(
                    "`param_file` names the entry file `{}` itself",
                    parsed.param_file.as_deref().unwrap_or_default()
                ),
            )
            .key("param_file")
            .expected(
                "a separate weights file with the module's parameters and buffers: safetensors, \
                 or torch.save(model.state_dict())",
            ),
        );
    }

    let package = match (card, parsed.config, param) {
        (Some(card), Some(config), Some((param_path, param_file)))
            if !problems.has_errors() && preprocessor_ok =>
        {
            let entry_ok = !matches!(config.entry, Entry::File { .. }) || entry_path.is_some();
            entry_ok.then(|| ModelPackage {
                root,
                card,
                config,
                preprocessor,
                param_path,
                param_file,
                entry_path,
                warnings: problems.clone(),
            })
        }
        _ => None,
    };
    Inspection { problems, package }
}

/// Reads one of the package's own files, reporting why it cannot be read.
fn read(root: &Path, name: &str, limit: u64, problems: &mut Problems) -> Option<String> {
    let path = match resolve_inside(root, name) {
        Ok(path) => path,
        Err(PathError::NotFound { .. }) => {
            let expected = match name {
                CARD_FILE => "a Model Card: YAML front matter between `---` lines, then Markdown",
                _ => "a JSON object with entry_module or entry_file, entry_class and param_file",
            };
            problems.push(Problem::error(name, "is missing from the package").expected(expected));
            return None;
        }
        Err(error) => {
            problems.push(
                Problem::error(name, error.to_string())
                    .expected("a regular file inside the package"),
            );
            return None;
        }
    };
    match read_to_string_limited(&path, name, limit) {
        Ok(text) => Some(text),
        Err(error) => {
            problems.push(Problem::error(name, error.to_string()));
            None
        }
    }
}

/// Resolves a path named by `config.json` under `key`, reporting why it cannot be used.
fn locate(root: &Path, key: &str, relative: &str, problems: &mut Problems) -> Option<PathBuf> {
    resolve_inside(root, relative)
        .map_err(|error| {
            problems.push(
                Problem::error(CONFIG_FILE, error.to_string())
                    .key(key)
                    .expected("a relative path to a file inside the package directory"),
            );
        })
        .ok()
}
