//! Opening what users pass as a model: a package directory, or a `model.zip` written by an
//! earlier fine-tuning (extracted to a temporary directory that lives as long as the value).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::catalog::ModelCatalog;
use crate::package::{ModelPackage, inspect_package};
use crate::problem::Problems;
use crate::result::{ResultError, extract_model_zip};

/// A valid package, opened from a directory or extracted from a zip.
#[derive(Debug)]
pub struct OpenedPackage {
    /// The package.
    pub package: ModelPackage,
    /// Warnings found while checking it.
    pub warnings: Problems,
    _extracted: Option<tempfile::TempDir>,
}

/// Why a model could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// No temporary directory for the extracted zip.
    #[error("creating a temporary directory for {}: {source}", path.display())]
    TempDir {
        /// The zip.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The zip could not be extracted.
    #[error(transparent)]
    Extract(#[from] ResultError),
    /// The package has errors; every problem is listed.
    #[error("{} is not a valid model package:\n{problems}", path.display())]
    Invalid {
        /// What was given.
        path: PathBuf,
        /// Every problem.
        problems: Problems,
    },
}

impl OpenedPackage {
    /// Opens the package directory or `model.zip` at `path`.
    pub fn open(path: &Path, catalog: &ModelCatalog) -> Result<Self, OpenError> {
        let (dir, extracted) = if path.is_file() {
            let tmp = tempfile::tempdir().map_err(|source| OpenError::TempDir {
                path: path.to_path_buf(),
                source,
            })?;
            extract_model_zip(path, tmp.path())?;
            (tmp.path().to_path_buf(), Some(tmp))
        } else {
            (path.to_path_buf(), None)
        };
        let inspection = inspect_package(&dir, catalog);
        match inspection.package {
            Some(package) => Ok(Self {
                package,
                warnings: inspection.problems,
                _extracted: extracted,
            }),
            None => Err(OpenError::Invalid {
                path: path.to_path_buf(),
                problems: inspection.problems,
            }),
        }
    }
}
