//! The committed NATS server configurations in `config/nats/` are exactly what the
//! generators in `fl_transport::permissions` write (after each file's own header), and
//! nats-server accepts them (`nats-server -t`). `FEDENGINE_REGENERATE=1` rewrites them.

use fl_transport::permissions::{deployment_config, server_config};

/// Checks that the committed example `config/nats/<file>` ends with `generated` (its own
/// header comes first) and that nats-server accepts it. With `FEDENGINE_REGENERATE=1` the
/// generated part is rewritten first.
fn check_committed(file: &str, generated: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/nats")
        .join(file);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let marker = "listen: ";
    if std::env::var_os("FEDENGINE_REGENERATE").is_some() {
        let header_end = committed
            .find(marker)
            .and_then(|at| committed[at..].find('\n').map(|n| at + n + 1))
            .expect("the header ends with a listen line");
        let fresh = format!("{}\n{generated}", &committed[..header_end]);
        std::fs::write(&path, fresh).expect("regenerating");
    }
    let committed = std::fs::read_to_string(&path).expect("reading");
    assert!(
        committed.ends_with(generated),
        "{} is not the generator's output; regenerate it with FEDENGINE_REGENERATE=1:\n{generated}",
        path.display()
    );
    let binary = std::env::var_os("FEDENGINE_NATS_SERVER").expect("FEDENGINE_NATS_SERVER");
    let output = std::process::Command::new(binary)
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("running nats-server -t");
    assert!(
        output.status.success(),
        "nats-server refuses {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `config/nats/fedengine-task.conf` is the generator's output for the shipped digits
/// workflow, and nats-server accepts it.
#[test]
fn the_committed_task_example_is_the_generators_output_and_loads() {
    let generated = server_config(
        "digits-fedavg-0123456789ab",
        "CHANGE-ME-coordinator",
        &[
            ("initiator", "CHANGE-ME-initiator"),
            ("site-1", "CHANGE-ME-site-1"),
            ("site-2", "CHANGE-ME-site-2"),
            ("site-3", "CHANGE-ME-site-3"),
        ],
        Some("/var/lib/nats/jetstream"),
    )
    .expect("config");
    check_committed("fedengine-task.conf", &generated);
}

/// `config/nats/fedengine-deployment.conf` (the coordinator service, the shipped workflow's
/// agents and one submitter, for every task) likewise.
#[test]
fn the_committed_deployment_example_is_the_generators_output_and_loads() {
    let generated = deployment_config(
        "CHANGE-ME-coordinator",
        &[
            ("initiator", "CHANGE-ME-initiator"),
            ("site-1", "CHANGE-ME-site-1"),
            ("site-2", "CHANGE-ME-site-2"),
            ("site-3", "CHANGE-ME-site-3"),
        ],
        &[("submitter", "CHANGE-ME-submitter")],
        Some("/var/lib/nats/jetstream"),
    )
    .expect("config");
    check_committed("fedengine-deployment.conf", &generated);
}
