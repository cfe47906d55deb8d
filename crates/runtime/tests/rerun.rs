//! Running a task again into the same output directory starts clean: the earlier run's
//! spooled updates, TensorBoard runs, metrics and log do not leak into the new run.

use std::path::{Path, PathBuf};

use fl_runtime::{RunOptions, run_embedded};
use fl_workflow::Workflow;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn workflow(out: &Path, seed: u64) -> Workflow {
    let r = repo();
    let text = format!(
        "version: 1\nname: rerun\nseed: {seed}\nmodel: {model}\n\
         initiator:\n  node: initiator\n  test: {init}\n\
         participants:\n  - node: site-1\n    data: {s1}\n  - node: site-2\n    data: {s2}\n\
         max_rounds: 1\noutput: {out}\n",
        model = r.join("models/digits-cnn").display(),
        init = r.join("datasets/digits/initiator").display(),
        s1 = r.join("datasets/digits/site-1").display(),
        s2 = r.join("datasets/digits/site-2").display(),
        out = out.display(),
    );
    Workflow::parse(&text, out.join("workflow.yaml")).expect("a valid workflow")
}

#[test]
fn a_second_run_in_the_same_directory_with_another_workflow_starts_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_embedded(&workflow(dir.path(), 1), RunOptions::default(), None).expect("first run");
    let second = run_embedded(&workflow(dir.path(), 2), RunOptions::default(), None)
        .expect("the second run does not trip over the first one's spool");
    assert_eq!(
        second.summary.rounds[0].participants,
        vec!["site-1", "site-2"]
    );
    let log = std::fs::read_to_string(dir.path().join("task.log")).expect("task log");
    assert_eq!(log.matches("starts (workflow digest").count(), 1, "{log}");
    assert!(!log.contains("rejected"), "{log}");
    let events = std::fs::read_dir(dir.path().join("tensorboard/site-1"))
        .expect("runs")
        .count();
    assert_eq!(events, 1, "one event file per run directory");
}
