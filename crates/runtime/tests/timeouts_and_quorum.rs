//! A participant that never answers: left out after the calculation timeout while the quorum
//! holds, and a clear failure after the bounded retries when it does not.

use std::path::Path;
use std::sync::mpsc;

use fl_runtime::{InProcess, RunOptions, RuntimeError, TaskEvent, run_embedded};
use support::digits_workflow;

#[allow(dead_code)]
mod support;

fn workflow(out: &Path, quorum: u32) -> fl_workflow::Workflow {
    let extra = format!(
        "max_rounds: 2\nquorum: {quorum}\nround_retries: 1\n\
         timeouts:\n  schedule: 30s\n  calculation: 2s\n"
    );
    digits_workflow(out, "stall", 3, 3, &extra)
}

#[test]
fn an_unreachable_participant_is_dropped_and_the_quorum_carries_the_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = InProcess::new();
    transport.make_unreachable("site-3");
    let (sender, receiver) = mpsc::channel();
    let report = run_embedded(
        &workflow(dir.path(), 2),
        RunOptions {
            transport: Some(transport),
            ..RunOptions::default()
        },
        Some(sender),
    )
    .expect("the task finishes with the two other participants");
    assert_eq!(report.summary.rounds_run, 2);
    for round in &report.summary.rounds {
        assert_eq!(round.participants, vec!["site-1", "site-2"]);
        assert_eq!(round.dropped, vec!["site-3"]);
    }
    let site3 = report
        .summary
        .participants
        .iter()
        .find(|p| p.node == "site-3")
        .expect("listed");
    assert_eq!(site3.rounds_contributed, 0);
    let events: Vec<TaskEvent> = receiver.try_iter().collect();
    let epochs: Vec<(u64, u32, u32)> = events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::EpochFinished {
                round,
                node,
                epoch,
                epochs,
                loss,
            } if node == "site-1" => {
                assert!(loss.is_some_and(f64::is_finite));
                Some((*round, *epoch, *epochs))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        epochs,
        vec![(1, 1, 1), (2, 1, 1)],
        "one progress report per local epoch"
    );
    let dropped: Vec<(u64, String)> = events
        .into_iter()
        .filter_map(|e| match e {
            TaskEvent::Dropped {
                round,
                node,
                reason,
            } => {
                assert!(reason.contains("calculation timeout (2s)"), "{reason}");
                Some((round, node))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        vec![(1, "site-3".to_owned()), (2, "site-3".to_owned())]
    );
    let log = std::fs::read_to_string(dir.path().join("task.log")).expect("task log");
    assert!(
        log.contains("`site-3` left out: no update within the calculation timeout"),
        "{log}"
    );
    assert!(report.files.model_zip.is_file());
}

#[test]
fn without_the_quorum_the_task_fails_after_the_bounded_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = InProcess::new();
    transport.make_unreachable("site-2");
    let started = std::time::Instant::now();
    let error = run_embedded(
        &workflow(dir.path(), 3),
        RunOptions {
            transport: Some(transport),
            ..RunOptions::default()
        },
        None,
    )
    .expect_err("three updates are required and only two can come");
    match &error {
        RuntimeError::NoQuorum {
            round,
            accepted,
            quorum,
            attempts,
            missing,
        } => {
            assert_eq!((*round, *accepted, *quorum, *attempts), (1, 2, 3, 2));
            assert_eq!(missing, "site-2");
        }
        other => panic!("expected NoQuorum, got {other}"),
    }
    assert!(
        error
            .to_string()
            .contains("after 2 attempt(s); missing: site-2"),
        "{error}"
    );
    // Two attempts of a 2 s calculation timeout: bounded, not stuck.
    assert!(started.elapsed().as_secs() < 30);
    assert!(!dir.path().join("model.zip").exists());
}
