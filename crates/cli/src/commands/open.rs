//! Opening the MODEL argument: a package directory or a `model.zip`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fl_package::{ModelPackage, extract_model_zip, inspect_package};

/// A package opened from a directory or extracted from a zip (kept alive with it).
pub struct OpenedPackage {
    /// The package.
    pub package: ModelPackage,
    _extracted: Option<tempfile::TempDir>,
}

/// Opens a package directory or a `model.zip`; on errors, lists every problem.
pub fn open_package(path: &Path) -> Result<OpenedPackage> {
    let (dir, extracted) = if path.is_file() {
        let tmp = tempfile::tempdir().context("creating a temporary directory")?;
        extract_model_zip(path, tmp.path())?;
        (tmp.path().to_path_buf(), Some(tmp))
    } else {
        (path.to_path_buf(), None)
    };
    let inspection = inspect_package(&dir, &fl_torch::builtin_catalog());
    for warning in &inspection.problems {
        tracing::warn!("{}: {warning}", path.display());
    }
    match inspection.package {
        Some(package) => Ok(OpenedPackage {
            package,
            _extracted: extracted,
        }),
        None => bail!(
            "{} is not a valid model package:\n{}",
            path.display(),
            inspection.problems
        ),
    }
}
