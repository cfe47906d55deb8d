//! Helpers shared by the `load_*` tests: a directory with what the base workflow names, the
//! base workflow itself, and loading a workflow text from a file.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

use fl_workflow::{Workflow, WorkflowErrors};
use tempfile::TempDir;

/// A directory with what the base workflow names: a model package directory and datasets.
pub fn fixture() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["model", "data/hub", "data/a", "data/b"] {
        fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    fs::write(dir.path().join("model.zip"), b"PK").expect("write");
    fs::write(dir.path().join("nats.creds"), b"creds").expect("write");
    dir
}

/// A valid workflow; each line is numbered in a comment so that positions can be read off.
pub const BASE: &str = "\
version: 1
name: demo
model: model
initiator:
  node: hub
  validation: data/hub
  test: data/hub
participants:
  - node: a
    data: data/a
  - node: b
    data: data/b
";

pub fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, text).expect("write workflow");
    path
}

pub fn load(dir: &TempDir, text: &str) -> Result<Workflow, WorkflowErrors> {
    Workflow::load(write(dir, "task.yaml", text))
}

/// `(key, line, column)` of every problem, in order.
pub fn located(errors: &WorkflowErrors) -> Vec<(String, u64, u64)> {
    errors
        .iter()
        .map(|e| {
            let p = e
                .position
                .expect("every problem of a parsed file has a position");
            (e.key.clone().unwrap_or_default(), p.line, p.column)
        })
        .collect()
}
