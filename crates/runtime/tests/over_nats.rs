//! The same task over a real NATS server (every node with its own connection and identity,
//! every message chunked through JetStream) ends with bit-identical weights to the
//! in-process run.

#[path = "../../transport/tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use fl_runtime::{RunOptions, run_embedded};
use fl_transport::NatsOptions;
use fl_workflow::Workflow;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn workflow(out: &Path) -> Workflow {
    let r = repo();
    let text = format!(
        "version: 1\nname: over-nats\nseed: 11\nmodel: {model}\n\
         initiator:\n  node: initiator\n  validation: {init}\n  test: {init}\n\
         participants:\n  - node: site-1\n    data: {s1}\n  - node: site-2\n    data: {s2}\n  - node: site-3\n    data: {s3}\n\
         max_rounds: 3\ntimeouts:\n  calculation: 60s\noutput: {out}\n",
        model = r.join("models/digits-cnn").display(),
        init = r.join("datasets/digits/initiator").display(),
        s1 = r.join("datasets/digits/site-1").display(),
        s2 = r.join("datasets/digits/site-2").display(),
        s3 = r.join("datasets/digits/site-3").display(),
        out = out.display(),
    );
    Workflow::parse(&text, out.join("workflow.yaml")).expect("a valid workflow")
}

fn weights(model_zip: &Path) -> Vec<u8> {
    let file = std::fs::File::open(model_zip).expect("model.zip");
    let mut archive = zip::ZipArchive::new(file).expect("zip");
    let mut entry = archive.by_name("model.safetensors").expect("weights");
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).expect("read");
    bytes
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
