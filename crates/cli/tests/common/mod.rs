//! Helpers shared by the command-line tests: the repository, the built `engine` binary run as
//! a user runs it (no `LD_LIBRARY_PATH`), and reading one entry of a zip.

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

/// The engine binary these tests run (author crates reuse the federation helpers with
/// their own binary, through a `common` module of theirs with the same functions).
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_engine")
}

/// Runs the built `engine` from the repository root; it must find libtorch by itself
/// (rpath), not through the test runner's `LD_LIBRARY_PATH`.
pub fn engine(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(repo())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("engine runs")
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
