//! A model registered by this crate (not by the engine) runs federated tasks through
//! `engine submit` — here `author-engine`, the engine's command line with this crate linked.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use author_model_tests::HEAD;
use common::{package, repo};

/// A FedAvg workflow over the shipped digit shards, results under `dir/run`.
fn workflow(dir: &Path, package: &Path, max_rounds: u32) -> PathBuf {
    let data = repo().join("datasets/digits");
    let path = dir.join("workflow.yaml");
    fs::write(
        &path,
        format!(
            "version: 1\nname: head-only\nseed: 3\nmodel: {package}\ninitiator:\n  node: initiator\n  validation: {d}/initiator\n  test: {d}/initiator\nparticipants:\n  - node: site-1\n    data: {d}/site-1\n  - node: site-2\n    data: {d}/site-2\nmax_rounds: {max_rounds}\noutput: {out}\n",
            package = package.display(),
            d = data.display(),
            out = dir.join("run").display(),
        ),
    )
    .expect("workflow");
    path
}

fn submit(workflow: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_author-engine"))
        .args(["submit", "--quiet"])
        .arg(workflow)
        .output()
        .expect("author-engine runs")
}

fn tensors(path: &Path) -> Vec<(String, tch::Tensor)> {
    fl_torch::read_params(path).expect("safetensors")
}

fn same(a: &tch::Tensor, b: &tch::Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn a_model_registered_outside_the_engine_runs_a_federated_task_exchanging_only_its_head_and_choosing_its_best_state()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = package(dir.path(), r#", "keep_first_state": true"#);
    let output = submit(&workflow(dir.path(), &package, 3));
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let run = dir.path().join("run");
    let log = fs::read_to_string(run.join("task.log")).expect("task log");
    for round in 1..=3 {
        assert!(
            log.contains(&format!("round {round}: 2 update(s) aggregated")),
            "round {round} missing:\n{log}"
        );
    }
    // The model's `best_state_dict` hook chose the state that was tested and packaged.
    assert!(log.contains("best round 1 kept"), "{log}");

    // Only the head travelled: the global model checkpointed is the head.
    let global = tensors(&run.join("checkpoint/latest/global.safetensors"));
    assert!(!global.is_empty());
    assert!(
        global.iter().all(|(name, _)| name.starts_with(HEAD)),
        "exchanged: {:?}",
        global.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );

    // The result package holds the whole model: the package's frozen backbone, bit for bit,
    // under the trained head.
    let unpacked = dir.path().join("unpacked");
    let mut zip = zip::ZipArchive::new(fs::File::open(run.join("model.zip")).expect("model.zip"))
        .expect("zip");
    zip.extract(&unpacked).expect("extract");
    let initial = tensors(&package.join("model.safetensors"));
    let result = tensors(&unpacked.join("model.safetensors"));
    assert_eq!(result.len(), initial.len(), "every variable is packaged");
    for ((name, before), (result_name, after)) in initial.iter().zip(&result) {
        assert_eq!(name, result_name);
        if name.starts_with(HEAD) {
            assert!(!same(before, after), "`{name}` was trained");
        } else {
            assert!(
                same(before, after),
                "`{name}` is frozen and must not change"
            );
        }
    }
}

#[test]
fn a_dataset_the_model_refuses_stops_the_task_before_training() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = package(dir.path(), r#", "min_train_samples": 100000"#);
    let output = submit(&workflow(dir.path(), &package, 3));
    assert!(!output.status.success(), "the task must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HeadOnly needs at least 100000 training images"),
        "{stderr}"
    );
    let run = dir.path().join("run");
    let log = fs::read_to_string(run.join("task.log")).expect("task log");
    assert!(
        log.contains("the dataset was refused: HeadOnly needs at least 100000 training images (config.json `min_train_samples`); this node has"),
        "{log}"
    );
    assert!(!log.contains("trained"), "nothing may train:\n{log}");
    assert!(!run.join("model.zip").exists());
    assert!(!run.join("checkpoint").exists());
}
