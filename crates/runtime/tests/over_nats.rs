//! The same task over a real NATS server (every node with its own connection and identity,
//! every message chunked through JetStream) ends with bit-identical weights to the
//! in-process run.

#[path = "../../transport/tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod support;

use std::path::Path;

use fl_runtime::{RunOptions, run_embedded};
use fl_transport::NatsOptions;
use support::{digits_workflow, weights};

fn workflow(out: &Path) -> fl_workflow::Workflow {
    digits_workflow(
        out,
        "over-nats",
        11,
        3,
        "max_rounds: 3\ntimeouts:\n  calculation: 60s\n",
    )
}

#[test]
fn a_task_over_nats_gives_the_in_process_weights_bit_for_bit() {
    let server = common::NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (local, remote) = (dir.path().join("in-process"), dir.path().join("nats"));
    std::fs::create_dir_all(&local).expect("dir");
    std::fs::create_dir_all(&remote).expect("dir");

    let expected =
        run_embedded(&workflow(&local), RunOptions::default(), None).expect("in-process run");
    let over_nats = run_embedded(
        &workflow(&remote),
        RunOptions {
            nats: Some(NatsOptions::new(server.url(), "unused", "unused")),
            ..RunOptions::default()
        },
        None,
    )
    .expect("the run over NATS finishes");

    assert_eq!(over_nats.summary.rounds_run, 3);
    for round in &over_nats.summary.rounds {
        assert_eq!(round.participants, vec!["site-1", "site-2", "site-3"]);
    }
    assert_eq!(
        weights(&expected.files.model_zip),
        weights(&over_nats.files.model_zip),
        "the same seed gives the same weights whichever transport carries them"
    );
    assert_eq!(expected.summary.final_test, over_nats.summary.final_test);
}
