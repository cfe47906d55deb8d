//! What the engine's test helpers (`crates/cli/tests/common/shared.rs`, `federation`) need
//! for `lesion-engine`: its binary; plus the shipped LesionNet workflow made runnable.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "../../../../crates/cli/tests/common/shared.rs"]
mod shared;

#[allow(unused_imports)] // each test binary uses some of them
pub use shared::{engine, repo, zip_entry};

/// `lesion-engine`: the engine with LesionNet linked in.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_lesion-engine")
}

/// The shipped LesionNet workflow with absolute paths and its output in `out`, written to
/// `dir/file`.
pub fn lesion_workflow(dir: &Path, file: &str, out: &Path) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(here.join("workflow.yaml")).expect("workflow");
    let text = shipped
        .replace(
            "model: package",
            &format!("model: {}", here.join("package").display()),
        )
        .replace(
            "../../datasets",
            &repo().join("datasets").display().to_string(),
        )
        .replace("../../runs/lesion-fedavg", &out.display().to_string());
    assert_ne!(text, shipped);
    let path = dir.join(file);
    std::fs::write(&path, text).expect("workflow written");
    path
}
