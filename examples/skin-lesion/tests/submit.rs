//! The example author crate end to end: `lesion-engine submit` on the shipped workflow runs
//! LesionNet federatedly, its own rule ends the task, and its label report is packaged.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

#[test]
fn lesion_net_runs_through_engine_submit_and_its_own_rule_stops_the_task() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    // The shipped workflow, with absolute paths and the results in a temporary directory.
    let shipped = fs::read_to_string(here.join("workflow.yaml")).expect("workflow");
    let workflow = shipped
        .replace(
            "model: package",
            &format!("model: {}", here.join("package").display()),
        )
        .replace(
            "../../datasets",
            &here.join("../../datasets").display().to_string(),
        )
        .replace("../../runs/lesion-fedavg", &out.display().to_string());
    assert_ne!(workflow, shipped);
    let path = dir.path().join("workflow.yaml");
    fs::write(&path, workflow).expect("write workflow");

    let output = Command::new(env!("CARGO_BIN_EXE_lesion-engine"))
        .args(["submit", "--quiet"])
        .arg(&path)
        .output()
        .expect("lesion-engine runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // LesionNet's rule, not max_rounds or patience, ended the task.
    let log = fs::read_to_string(out.join("task.log")).expect("task log");
    // What the model pushed to the log is there, under its node.
    assert!(
        log.lines().any(|l| l.contains("[site-1]")
            && l.contains("LesionNet: 333 training, 0 validation, 0 test images at 16x16")),
        "{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("early stopping after round"))
        .unwrap_or_else(|| panic!("no early stop:\n{log}"));
    assert!(
        line.contains("LesionNet rule: validation accuracy")
            && line.contains("reached the target 80.0%"),
        "{line}"
    );
    let round: u32 = line
        .split("early stopping after round ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect("round number");
    assert!(round < 20, "stopped at round {round} of at most 20");
    assert!(!log.contains(&format!("round {}: 3 update(s)", round + 1)));

    // The extra result file is in model.zip, with every label and its description.
    let mut zip = zip::ZipArchive::new(fs::File::open(out.join("model.zip")).expect("model.zip"))
        .expect("zip");
    let mut report = String::new();
    zip.by_name(skin_lesion::LABEL_REPORT)
        .expect("labels.md is packaged")
        .read_to_string(&mut report)
        .expect("utf-8");
    for label in 0..10 {
        assert!(
            report.contains(&format!(
                "| {label} | {label} | class {label} (stands in for:"
            )),
            "label {label}:\n{report}"
        );
    }
    assert!(
        report.contains("% of "),
        "per-label test accuracy:\n{report}"
    );
}

#[test]
fn lesion_net_fine_tunes_locally_and_predicts_with_its_result() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("local");
    let engine = env!("CARGO_BIN_EXE_lesion-engine");
    let central = here.join("../../datasets/digits/central");
    let output = Command::new(engine)
        .arg("finetune")
        .arg(here.join("package"))
        .arg("--data")
        .arg(&central)
        .arg("--out")
        .arg(&out)
        .args(["--epochs", "6"])
        .output()
        .expect("lesion-engine runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every epoch was validated and LesionNet's hooks decided when to stop; each epoch was
    // reported as it finished, and tabulated at the end.
    assert!(stdout.contains("epoch  train loss"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("epoch 1: train loss"), "{stderr}");
    let metrics: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("metrics.json")).expect("metrics"))
            .expect("json");
    let epochs = metrics["epochs"].as_array().expect("epochs").len();
    assert!((1..=6).contains(&epochs), "{metrics}");
    assert!(
        metrics["epochs"][0]["validation"]["accuracy"].is_number(),
        "{metrics}"
    );
    if epochs < 6 {
        assert_eq!(metrics["stopped_early"], true, "{metrics}");
        let reason = metrics["stopped"].as_str().expect("reason");
        assert!(reason.starts_with("LesionNet rule:"), "{reason}");
        assert!(
            stdout.contains("stopped early: LesionNet rule:"),
            "{stdout}"
        );
    }

    let zip_path = out.join("model.zip");
    let mut zip = zip::ZipArchive::new(fs::File::open(&zip_path).expect("model.zip")).expect("zip");
    assert!(zip.by_name(skin_lesion::LABEL_REPORT).is_ok());

    // The result is a package the same engine predicts with, through LesionNet's own
    // preprocessing: every label with a probability, most probable first.
    let image = central.join("images/0000.png");
    let output = Command::new(engine)
        .arg("predict")
        .arg(&zip_path)
        .arg(&image)
        .args(["--json", "--top-k", "10"])
        .output()
        .expect("predict runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let scored = rows[0]["predictions"].as_array().expect("predictions");
    assert_eq!(scored.len(), 10);
    let total: f64 = scored
        .iter()
        .filter_map(|s| s["probability"].as_f64())
        .sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
    assert!(scored[0]["probability"].as_f64() >= scored[1]["probability"].as_f64());
}

#[test]
fn lesion_engine_lists_lesion_net_beside_the_built_in_models_and_validates_its_package() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = Command::new(env!("CARGO_BIN_EXE_lesion-engine"))
        .args(["model", "list"])
        .output()
        .expect("lesion-engine runs");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("acme.dermatology.LesionNet"), "{listed}");
    assert!(listed.contains("fedengine.vision.SmallCnn"), "{listed}");

    let validate = Command::new(env!("CARGO_BIN_EXE_lesion-engine"))
        .args(["model", "validate"])
        .arg(here.join("package"))
        .output()
        .expect("lesion-engine runs");
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stdout)
    );
}
