//! `engine submit` on the shipped FedAvg workflow, as a user runs it: accuracy, every
//! artefact present and usable (the real TensorBoard reader included), and the same seed
//! giving bit-identical weights.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{engine, repo, zip_entry};

/// The shipped workflow with its output moved to `out`.
fn shipped_workflow_into(out: &Path) -> PathBuf {
    let text = fs::read_to_string(repo().join("workflows/fedavg.yaml")).expect("workflow");
    let root = repo().display().to_string();
    let text = text
        .replace("../models/", &format!("{root}/models/"))
        .replace("../datasets/", &format!("{root}/datasets/"))
        .replace(
            "output: ../runs/digits-fedavg",
            &format!("output: {}", out.display()),
        );
    fs::create_dir_all(out).expect("out");
    let path = out.join("fedavg.yaml");
    fs::write(&path, text).expect("write workflow");
    path
}

#[test]
fn the_shipped_workflow_reaches_90_percent_with_every_artefact_and_reproducibly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let workflow = shipped_workflow_into(&first);
    let out = engine(&["submit", "--quiet", workflow.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("round  participants"),
        "a table per round: {stdout}"
    );

    // Accuracy of the kept model on the initiator's test split.
    let summary: serde_json::Value =
        serde_json::from_slice(&zip_entry(&first.join("report.zip"), "summary.json"))
            .expect("summary");
    let accuracy = summary["final_test"]["accuracy"]
        .as_f64()
        .expect("test accuracy");
    assert!(accuracy >= 0.90, "test accuracy {accuracy}");
    assert_eq!(summary["participants"].as_array().map(Vec::len), Some(3));

    // model.zip is a package that validates and predicts.
    let unpacked = dir.path().join("unpacked");
    fl_package::extract_model_zip(&first.join("model.zip"), &unpacked).expect("extract");
    let out = engine(&["model", "validate", unpacked.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card = fs::read_to_string(unpacked.join("README.md")).expect("card");
    assert!(
        card.contains("## Federated fine-tuning") && card.contains("site-2"),
        "{card}"
    );
    let image = repo().join("datasets/digits/initiator/images");
    let first_image = fs::read_dir(&image)
        .expect("images")
        .next()
        .expect("one")
        .expect("entry")
        .path();
    let out = engine(&[
        "predict",
        first.join("model.zip").to_str().expect("utf-8"),
        first_image.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // metrics.json and the task log.
    let metrics: serde_json::Value =
        serde_json::from_slice(&fs::read(first.join("metrics.json")).expect("metrics"))
            .expect("json");
    let rounds = summary["rounds_run"].as_u64().expect("rounds");
    assert_eq!(
        metrics.as_array().map(Vec::len),
        Some(4 * rounds as usize),
        "3 sites + initiator per round"
    );
    // Each training record carries how long the site trained.
    for record in metrics.as_array().expect("a list") {
        if record["node"]
            .as_str()
            .is_some_and(|n| n.starts_with("site-"))
        {
            let seconds = record["duration_seconds"].as_f64().expect("seconds");
            assert!(seconds > 0.0, "{record}");
        }
    }
    let log = fs::read_to_string(first.join("task.log")).expect("task log");
    assert!(
        log.contains("[site-1] INFO round 1: trained 1 epoch(s) on 333 samples"),
        "{log}"
    );

    // TensorBoard, read by the real reader from the unpacked report.
    let report = dir.path().join("report");
    fl_package::extract_model_zip(&first.join("report.zip"), &report).expect("extract report");
    let python =
        std::env::var("FEDENGINE_PYTHON").expect("FEDENGINE_PYTHON is set by scripts/setup");
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
out = {}
for run in ["initiator", "site-1"]:
    ea = EventAccumulator(sys.argv[1] + "/tensorboard/" + run)
    ea.Reload()
    out[run] = {tag: [e.step for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}
print(json.dumps(out))
"#;
    let out = Command::new(python)
        .args(["-c", script, report.to_str().expect("utf-8")])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let steps: Vec<u64> = (1..=rounds).collect();
    for tag in [
        "validation/accuracy",
        "validation/loss",
        "test/accuracy",
        "test/loss",
    ] {
        assert_eq!(
            tags["initiator"][tag],
            serde_json::json!(steps),
            "{tag}: {tags}"
        );
    }
    for tag in ["train/loss", "train/accuracy"] {
        assert_eq!(
            tags["site-1"][tag],
            serde_json::json!(steps),
            "{tag}: {tags}"
        );
    }

    // The same workflow and seed give bit-identical weights.
    let workflow = shipped_workflow_into(&second);
    let out = engine(&["submit", "--quiet", workflow.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        zip_entry(&first.join("model.zip"), "model.safetensors"),
        zip_entry(&second.join("model.zip"), "model.safetensors")
    );
}

#[test]
fn a_broken_workflow_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.yaml");
    fs::write(&path, "version: 1\nname: x\nmax_round: 3\n").expect("write");
    let out = engine(&["submit", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.yaml:3:1") && stderr.contains("max_rounds"),
        "{stderr}"
    );
}
