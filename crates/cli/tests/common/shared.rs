//! Helpers for tests that run an engine binary as a user does: the repository, the binary
//! (`super::binary()`, each test crate's own) run from the repository root with no
//! `LD_LIBRARY_PATH`, and reading one entry of a zip. Shared by `crates/cli/tests` and author
//! crates' tests (`examples/skin-lesion/tests`), which include this file by path.

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

/// Runs the built `engine` from the repository root; it must find libtorch by itself
/// (rpath), not through the test runner's `LD_LIBRARY_PATH`.
pub fn engine(args: &[&str]) -> Output {
    Command::new(super::binary())
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
