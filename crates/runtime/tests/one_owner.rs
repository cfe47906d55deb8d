//! Two tasks given one output directory: the second is refused, naming the first, before it
//! changes anything, and the first finishes with its own log, checkpoints and results.

use std::path::Path;
use std::time::{Duration, Instant};

use fl_runtime::{LOCK_FILE, RunOptions, RuntimeError, run_embedded};
use support::digits_workflow;

#[allow(dead_code)]
mod support;

fn workflow(out: &Path, name: &str) -> fl_workflow::Workflow {
    digits_workflow(out, name, 3, 2, "max_rounds: 3\n")
}

#[test]
fn a_second_task_in_the_same_output_directory_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_path_buf();
    let first = {
        let workflow = workflow(&out, "first");
        std::thread::spawn(move || run_embedded(&workflow, RunOptions::default(), None))
    };
    let log = out.join("task.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("round 1")) {
        assert!(
            Instant::now() < deadline,
            "the first task did not start a round"
        );
        assert!(!first.is_finished(), "the first task ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = std::fs::read_to_string(&log).expect("task.log");

    let second = run_embedded(&workflow(&out, "second"), RunOptions::default(), None);
    let Err(RuntimeError::Locked(error)) = second else {
        panic!("the second task was not refused: {second:?}");
    };
    let message = error.to_string();
    assert!(
        message.contains("is in use by the task `first-"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );

    let report = first
        .join()
        .expect("the first task's thread")
        .expect("the first task finishes");
    assert_eq!(report.summary.rounds_run, 3);
    let after = std::fs::read_to_string(&log).expect("task.log");
    assert!(
        after.starts_with(&before),
        "the first task's log was replaced"
    );
    assert!(
        !after.contains("second-"),
        "the second task wrote into the log"
    );
    assert!(out.join(LOCK_FILE).exists());
    assert!(report.files.model_zip.exists());
}
