//! Recover mode across processes: the coordinator service killed (SIGKILL, debug-build crash
//! point) during aggregation and restarted with `--recover`, and an agent killed during
//! training and restarted with `--recover`: the task still ends with weights bit-identical
//! to the uninterrupted embedded run, and the submitter follows it to the end.

mod common;
#[path = "../../transport/tests/common/mod.rs"]
#[allow(dead_code)]
mod nats;

mod federation;

use std::time::Duration;

use federation::{embedded_reference, engine, logs, start_federation_with, text};
use nats::NatsServer;

const ROUNDS: u32 = 5;

/// Runs the shipped task with `process` armed to die at `crash_at`, restarts that process
/// with `--recover` once it died, and checks the outcome; returns the coordinator's task log.
fn kill_and_recover(process: &str, crash_at: &str) -> String {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = embedded_reference(dir.path(), Some(ROUNDS));
    let remote = reference.remote.clone();

    let mut daemons = start_federation_with(
        &server,
        dir.path(),
        false,
        &[(process, "FEDENGINE_CRASH_AT", crash_at)],
    );
    let url = server.url();
    let submitter = std::thread::spawn(move || {
        engine(&[
            "submit",
            "--quiet",
            "--nats",
            &url,
            remote.to_str().expect("utf-8"),
        ])
    });
    let victim = daemons
        .iter_mut()
        .find(|d| d.name == process)
        .expect("the process");
    assert!(
        victim.wait_exit(Duration::from_secs(120)),
        "{process} never reached {crash_at}:\n{}",
        victim.output()
    );
    assert!(
        victim.output().contains("crash point"),
        "{}",
        victim.output()
    );
    victim.restart(&["--recover"]);

    let submit = submitter.join().expect("submitter");
    assert!(
        submit.status.success(),
        "the task did not survive {process} dying at {crash_at}:\n{}\n{}",
        text(&submit),
        logs(&daemons)
    );
    reference.assert_same_weights(&format!("{process} killed at {crash_at}"));
    let coordinator_dir = dir.path().join("coordinator");
    let task_dir = std::fs::read_dir(&coordinator_dir)
        .expect("coordinator dir")
        .flatten()
        .find(|e| e.path().join("task.log").is_file())
        .expect("the task's directory")
        .path();
    std::fs::read_to_string(task_dir.join("task.log")).expect("task log")
}

#[test]
fn the_coordinator_killed_during_aggregation_resumes_the_task_after_a_restart() {
    let log = kill_and_recover("coordinator", "during-aggregation:3");
    assert!(
        log.contains("resumes after round 2 from the latest checkpoint"),
        "{log}"
    );
    // Rounds 1 and 2 were not trained again.
    assert_eq!(
        log.matches("[site-1] INFO round 1: trained").count(),
        1,
        "{log}"
    );
}

#[test]
fn an_agent_killed_during_training_rejoins_the_round_after_a_restart() {
    let log = kill_and_recover("site-2", "before-training:3");
    assert!(log.contains("`site-2` rejoined"), "{log}");
    assert!(log.contains("rejoined task"), "{log}");
}

#[test]
fn an_agent_killed_mid_transfer_of_its_update_rejoins_after_a_restart() {
    // site-1's weights messages are its updates: the second is round 2's.
    let log = kill_and_recover("site-1", "mid-transfer:2");
    assert!(log.contains("`site-1` rejoined"), "{log}");
}

#[test]
fn the_coordinator_killed_mid_transfer_of_a_broadcast_resumes_after_a_restart() {
    // The coordinator's messages of at least 16 KiB: the 4 setups (they carry the package),
    // then per round 3 broadcasts and the initiator's copies for validation and test; the
    // 10th is round 2's first broadcast.
    let log = kill_and_recover("coordinator", "mid-transfer:10");
    assert!(log.contains("resumes after round 1"), "{log}");
}
