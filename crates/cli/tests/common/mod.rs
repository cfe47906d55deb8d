//! Helpers shared by the command-line tests: the built `engine` binary, and (in `shared.rs`,
//! which author crates' tests include too) the repository, running the binary as a user runs
//! it, and reading one entry of a zip.

#![allow(dead_code)]

mod shared;

#[allow(unused_imports)] // each test binary uses some of them
pub use shared::{engine, repo, zip_entry};

/// The engine binary these tests run (an author crate's tests provide their own, and reuse
/// `shared.rs` and `federation` with it).
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_engine")
}
