//! Recover mode, embedded: `engine submit` killed (SIGKILL, through the debug build's crash
//! points) at each named point, then `engine submit --recover`, must end with weights
//! bit-identical to an uninterrupted run; a damaged latest checkpoint falls back to the
//! previous one; a changed workflow is refused naming what changed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{repo, zip_entry};

const ROUNDS: u32 = 5;

fn workflow(dir: &Path, name: &str, out: &Path, extra: &str) -> PathBuf {
    let root = repo();
    let text = std::fs::read_to_string(root.join("workflows/fedavg.yaml"))
        .expect("workflow")
        .replace("../models/", &format!("{}/models/", root.display()))
        .replace("../datasets/", &format!("{}/datasets/", root.display()))
        .replace(
            "output: ../runs/digits-fedavg",
            &format!("output: {}", out.display()),
        )
        .replace("max_rounds: 20", &format!("max_rounds: {ROUNDS}"));
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}{extra}")).expect("write");
    path
}

fn submit(workflow: &Path, crash_at: Option<&str>, recover: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    command
        .arg("submit")
        .arg("--quiet")
        .arg(workflow)
        .current_dir(repo())
        .env_remove("LD_LIBRARY_PATH")
        .env_remove(fl_runtime::faults::CRASH_AT);
    if recover {
        command.arg("--recover");
    }
    if let Some(point) = crash_at {
        command.env(fl_runtime::faults::CRASH_AT, point);
    }
    command.output().expect("engine runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn weights(out: &Path) -> Vec<u8> {
    zip_entry(&out.join("model.zip"), "model.safetensors")
}

#[test]
fn a_task_killed_at_any_crash_point_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference_out = dir.path().join("reference");
    let reference = workflow(dir.path(), "reference.yaml", &reference_out, "");
    let run = submit(&reference, None, false);
    assert!(run.status.success(), "{}", text(&run));
    let expected = weights(&reference_out);

    for point in [
        "before-training:3",
        "after-training:2",
        "during-aggregation:4",
        "after-checkpoint:3",
        "during-packaging",
    ] {
        let name = point.replace(':', "-");
        let out = dir.path().join(&name);
        let file = workflow(dir.path(), &format!("{name}.yaml"), &out, "");
        let crashed = submit(&file, Some(point), false);
        assert!(
            !crashed.status.success(),
            "{point}: the run should have been killed\n{}",
            text(&crashed)
        );
        assert!(
            String::from_utf8_lossy(&crashed.stderr).contains("crash point"),
            "{point}: {}",
            text(&crashed)
        );
        assert!(!out.join("model.zip").exists(), "{point}: no result yet");

        let resumed = submit(&file, None, true);
        assert!(resumed.status.success(), "{point}: {}", text(&resumed));
        assert_eq!(
            weights(&out),
            expected,
            "{point}: the resumed run's weights differ from the uninterrupted run's"
        );
        let log = std::fs::read_to_string(out.join("task.log")).expect("task log");
        assert!(
            log.contains("resumes after round"),
            "{point}: the task log shows the resume:\n{log}"
        );
        // Nothing done is redone: round 1 trained once across both runs.
        assert_eq!(
            log.matches("[site-1] INFO round 1: trained").count(),
            1,
            "{point}: {log}"
        );
    }
}

#[test]
fn a_truncated_latest_checkpoint_falls_back_and_a_changed_workflow_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference_out = dir.path().join("reference");
    let reference = workflow(dir.path(), "reference.yaml", &reference_out, "");
    let run = submit(&reference, None, false);
    assert!(run.status.success(), "{}", text(&run));
    let expected = weights(&reference_out);

    let out = dir.path().join("truncated");
    let file = workflow(dir.path(), "truncated.yaml", &out, "");
    let crashed = submit(&file, Some("after-checkpoint:3"), false);
    assert!(!crashed.status.success(), "{}", text(&crashed));
    let latest = out.join("checkpoint/latest/global.safetensors");
    let bytes = std::fs::read(&latest).expect("latest checkpoint");
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).expect("truncate");

    // A changed workflow is refused, naming the change, and nothing is touched.
    let changed = workflow(
        dir.path(),
        "truncated.yaml",
        &out,
        "training:\n  learning_rate: 0.01\n",
    );
    let refused = submit(&changed, None, true);
    assert!(!refused.status.success(), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the workflow changed") && stderr.contains("learning_rate"),
        "{}",
        text(&refused)
    );

    let file = workflow(dir.path(), "truncated.yaml", &out, "");
    let resumed = submit(&file, None, true);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(weights(&out), expected);
    let log = std::fs::read_to_string(out.join("task.log")).expect("task log");
    assert!(
        log.contains("resumes after round 2 from the previous checkpoint"),
        "{log}"
    );
}
