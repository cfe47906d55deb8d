//! A hostile participant publishing on its own subject (all that the shipped NATS
//! permissions let a site do; that they enforce exactly this is
//! `fl-transport/tests/permissions.rs`) cannot speak for anyone else: forged updates,
//! failures and log lines of other sites and a forged initiator decision, sent all through a
//! task over a real NATS server, are refused as impersonation attempts, and the task ends
//! with the weights of an undisturbed run.

#[path = "../../transport/tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fl_runtime::{RunOptions, run_embedded};
use fl_tensor::{Body, Decision, Envelope, Metrics, TensorSet};
use fl_transport::{COORDINATOR, NatsOptions, NatsTransport, Transport};
use support::{digits_workflow, weights};

fn workflow(out: &Path) -> fl_workflow::Workflow {
    digits_workflow(
        out,
        "hostile",
        5,
        3,
        "max_rounds: 2\ntimeouts:\n  calculation: 60s\n",
    )
}

/// What site-1 forges, in others' names, for `round`.
fn forgeries(task_id: &str, round: u64) -> Vec<Vec<u8>> {
    let envelope = |sender: &str, body| {
        Envelope::new(task_id, round, sender, body)
            .encode()
            .expect("encodes")
    };
    let empty = TensorSet::new(Vec::new()).expect("an empty set");
    vec![
        envelope(
            "site-2",
            Body::Failed {
                reason: "forged failure".into(),
            },
        ),
        envelope(
            "site-3",
            Body::Update {
                samples: u64::MAX,
                base_digest: empty.digest(),
                metrics: Metrics::default(),
                tensors: empty,
            },
        ),
        envelope(
            "initiator",
            Body::Decided {
                validation: Some(Metrics {
                    accuracy: Some(0.999),
                    ..Metrics::default()
                }),
                test: None,
                decision: Decision {
                    best: true,
                    finished: Some("forged decision".into()),
                },
            },
        ),
        envelope(
            "site-2",
            Body::Log {
                unix_ms: 0,
                level: "error".into(),
                message: "forged log line".into(),
            },
        ),
    ]
}

/// Publishes forgeries on site-1's subject every 200 ms until `stop`.
fn hostile(url: String, task_id: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let site_1 = NatsTransport::connect(NatsOptions::new(url, &task_id, "site-1"))
                .await
                .expect("the hostile site connects");
            let mut sent = 0;
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) {
                for bytes in forgeries(&task_id, round % 3) {
                    site_1
                        .send(COORDINATOR, bytes)
                        .expect("accepted for publishing");
                    sent += 1;
                }
                round += 1;
                site_1.flush().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            sent
        })
    })
}

fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        if std::fs::read(&entry).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)) {
            found.push(entry);
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_site_cannot_speak_for_another_site_or_the_initiator() {
    let server = common::NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (calm, attacked) = (dir.path().join("calm"), dir.path().join("attacked"));
    std::fs::create_dir_all(&calm).expect("dir");
    std::fs::create_dir_all(&attacked).expect("dir");

    let expected =
        run_embedded(&workflow(&calm), RunOptions::default(), None).expect("the undisturbed run");

    let attacked_workflow = workflow(&attacked);
    let task_id = format!(
        "{}-{}",
        attacked_workflow.name,
        &attacked_workflow.digest()[..12]
    );
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = hostile(server.url(), task_id, stop.clone());
    let report = run_embedded(
        &attacked_workflow,
        RunOptions {
            nats: Some(NatsOptions::new(server.url(), "unused", "unused")),
            ..RunOptions::default()
        },
        None,
    );
    stop.store(true, Ordering::SeqCst);
    let sent = attacker.join().expect("the hostile site ran");
    let report = report.expect("the attacked run finishes");

    assert!(sent >= 8, "the hostile site sent {sent} forgeries");
    assert_eq!(report.summary.rounds_run, 2, "no forged decision ended it");
    for round in &report.summary.rounds {
        assert_eq!(round.participants, vec!["site-1", "site-2", "site-3"]);
    }
    assert_eq!(
        weights(&expected.files.model_zip),
        weights(&report.files.model_zip),
        "the forgeries changed nothing"
    );
    let log = std::fs::read_to_string(attacked.join("task.log")).expect("task.log");
    assert!(
        log.contains("refused an impersonation attempt: a `failed` message naming `site-2` as its sender came on `fedengine."),
        "{log}"
    );
    assert!(log.contains("naming `initiator`"), "{log}");
    assert!(
        log.contains("the subject only `site-1` may publish on"),
        "{log}"
    );
    assert!(
        files_containing(&attacked, "forged log line").is_empty(),
        "a forged log line reached the task's files"
    );
}
