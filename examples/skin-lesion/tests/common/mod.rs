//! What the engine's federation test helpers (`crates/cli/tests/federation`) need, for
//! `lesion-engine`: the repository, the binary, running it, reading a zip entry.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, canonical.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `lesion-engine`: the engine with LesionNet linked in.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_lesion-engine")
}

/// Runs `lesion-engine` from the repository root, without `LD_LIBRARY_PATH`.
pub fn engine(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(repo())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("lesion-engine runs")
}

/// The bytes of `name` inside the zip archive `zip`.
pub fn zip_entry(zip: &Path, name: &str) -> Vec<u8> {
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(zip).expect("zip")).expect("archive");
    let mut entry = archive.by_name(name).expect("entry");
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).expect("read");
    bytes
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
