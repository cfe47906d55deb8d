//! LesionNet across processes: `lesion-engine coordinator` and one `lesion-engine agent` per
//! node against a real nats-server, as a deployment runs an author's model. The task must end
//! as the embedded one does: the same weights bit for bit, LesionNet's rule ending it, and
//! its label report (written on the initiator's agent) in `model.zip`.

mod common;
#[path = "../../../crates/cli/tests/federation/mod.rs"]
mod federation;
#[path = "../../../crates/transport/tests/common/mod.rs"]
#[allow(dead_code)]
mod nats;

use common::{engine, lesion_workflow, zip_entry};
use federation::{logs, start_federation, text};
use nats::NatsServer;

#[test]
fn lesion_net_runs_on_a_coordinator_and_agents_as_it_does_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded_out = dir.path().join("embedded");
    let embedded = lesion_workflow(dir.path(), "embedded.yaml", &embedded_out);
    let run = engine(&["submit", "--quiet", embedded.to_str().expect("utf-8")]);
    assert!(run.status.success(), "embedded run:\n{}", text(&run));

    let server = NatsServer::start();
    let daemons = start_federation(&server, dir.path(), false);
    let remote_out = dir.path().join("remote");
    let remote = lesion_workflow(dir.path(), "remote.yaml", &remote_out);
    let url = server.url();
    let submit = engine(&["submit", "--nats", &url, remote.to_str().expect("utf-8")]);
    assert!(
        submit.status.success(),
        "distributed run:\n{}\n{}",
        text(&submit),
        logs(&daemons)
    );

    let weights = |out: &std::path::Path| zip_entry(&out.join("model.zip"), "model.safetensors");
    assert!(
        weights(&remote_out) == weights(&embedded_out),
        "the distributed run's weights differ from the embedded run's"
    );
    let report =
        |out: &std::path::Path| zip_entry(&out.join("model.zip"), skin_lesion::LABEL_REPORT);
    assert_eq!(
        report(&remote_out),
        report(&embedded_out),
        "the label report travelled from the initiator's agent"
    );
    let stopped = text(&submit);
    assert!(
        stopped.contains("early stopping after round") && stopped.contains("LesionNet rule:"),
        "{stopped}"
    );
}
