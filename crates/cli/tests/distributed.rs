//! The distributed runtime as users run it: a real nats-server on a free port, `engine
//! coordinator` and one `engine agent` per node as separate OS processes, `engine submit
//! --nats` following the task. The shipped `workflows/fedavg.yaml` task must end with the
//! same weights, bit for bit, as the embedded run; a server restart mid-task must not change
//! them; missing coordinators, agents and wrong credentials must fail fast and say why.

mod common;
#[path = "../../transport/tests/common/mod.rs"]
#[allow(dead_code)]
mod nats;

mod federation;

use std::time::{Duration, Instant};

use federation::{
    Daemon, embedded_reference, engine, logs, shipped_workflow, start_federation, task_id, text,
};
use fl_transport::permissions::deployment_config;
use nats::NatsServer;

#[test]
fn coordinator_and_agents_as_processes_give_the_embedded_weights_bit_for_bit() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = embedded_reference(dir.path(), None);
    let remote = &reference.remote;

    let daemons = start_federation(&server, dir.path(), false);
    let url = server.url();
    let submit = engine(&["submit", "--nats", &url, remote.to_str().expect("utf-8")]);
    assert!(
        submit.status.success(),
        "distributed run:\n{}\n{}",
        text(&submit),
        logs(&daemons)
    );
    reference.assert_same_weights("separate processes over NATS, the same seed");

    // The submitter saw the agents' log lines; the coordinator keeps the whole task log.
    let task = task_id(&submit);
    let stdout = String::from_utf8_lossy(&submit.stdout).into_owned();
    for needle in [
        "[site-1] INFO joined task",
        "[site-3] INFO round 1: trained",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
    let status = engine(&["status", "--nats", &url, &task]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("finished, 20 round(s)"),
        "{}",
        text(&status)
    );
    let log = engine(&["logs", "--nats", &url, &task]);
    assert!(log.status.success(), "{}", text(&log));
    let log_text = String::from_utf8_lossy(&log.stdout);
    assert!(
        log_text.contains("[site-2] INFO round 20: trained")
            && log_text.contains("[coordinator] INFO best round"),
        "{}",
        text(&log)
    );
    // Each agent keeps its own copy of its lines, and nobody else's.
    let site_log =
        std::fs::read_to_string(dir.path().join(format!("agent-site-1/{task}/task.log")))
            .expect("the agent's task log");
    assert!(site_log.contains("[site-1]") && !site_log.contains("[site-2]"));
}

#[test]
fn a_nats_server_restart_mid_task_changes_nothing() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = embedded_reference(dir.path(), Some(8));
    let remote = reference.remote.clone();

    let daemons = start_federation(&server, dir.path(), false);
    let url = server.url();
    let submitter = {
        std::thread::spawn(move || {
            engine(&[
                "submit",
                "--quiet",
                "--nats",
                &url,
                remote.to_str().expect("utf-8"),
            ])
        })
    };
    // Wait until round 3 is under way, then take the server away for two seconds.
    let coordinator_dir = dir.path().join("coordinator");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started = std::fs::read_dir(&coordinator_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|task| {
                std::fs::read_to_string(task.path().join("task.log"))
                    .is_ok_and(|log| log.contains("round 3: trained"))
            });
        if started {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "round 3 never started:\n{}",
            logs(&daemons)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();

    let submit = submitter.join().expect("submitter");
    assert!(
        submit.status.success(),
        "distributed run with a restart:\n{}\n{}",
        text(&submit),
        logs(&daemons)
    );
    reference.assert_same_weights("a nats-server restart mid-task");
    assert!(
        logs(&daemons).contains("reconnecting"),
        "the processes saw the outage:\n{}",
        logs(&daemons)
    );
}

#[test]
fn missing_coordinator_missing_agent_and_wrong_credentials_fail_fast_and_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = shipped_workflow(dir.path(), "remote.yaml", &dir.path().join("out"), Some(2));
    let workflow = workflow.to_str().expect("utf-8");

    // No coordinator on the server.
    let server = NatsServer::start();
    let started = Instant::now();
    let submit = engine(&["submit", "--nats", &server.url(), workflow]);
    assert!(!submit.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&submit.stderr);
    assert!(
        stderr.contains("no coordinator answers") && stderr.contains("engine coordinator --nats"),
        "{}",
        text(&submit)
    );

    // A coordinator, but no agent for the nodes: the task fails naming the first node.
    let _coordinator = Daemon::start(
        "coordinator",
        &[
            "coordinator",
            "--nats",
            &server.url(),
            "--work-dir",
            dir.path().join("coordinator").to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    let started = Instant::now();
    let submit = engine(&["submit", "--nats", &server.url(), workflow]);
    assert!(!submit.status.success(), "{}", text(&submit));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&submit.stderr);
    assert!(
        stderr.contains("no agent serves node `initiator`")
            && stderr.contains("engine agent --nats"),
        "{}",
        text(&submit)
    );

    // Nothing listens at all.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let submit = engine(&["status", "--nats", &format!("nats://127.0.0.1:{closed}")]);
    assert!(!submit.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        String::from_utf8_lossy(&submit.stderr).contains("check the URL"),
        "{}",
        text(&submit)
    );

    // A server with users: a wrong password is refused, and the message says what to check.
    let config = fl_transport_config();
    let secured = NatsServer::start_with_config(&config);
    let started = Instant::now();
    let submit = engine(&[
        "submit",
        "--nats",
        &secured.url(),
        "--user",
        "coordinator",
        "--password",
        "wrong",
        workflow,
    ]);
    assert!(!submit.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&submit.stderr);
    assert!(
        stderr.contains("refused user `coordinator`") && stderr.contains("--password"),
        "{}",
        text(&submit)
    );
}

/// Every process logs in as its own user under the shipped deployment permissions (each
/// node reads only what is addressed to it and publishes only its own updates): the task
/// runs as without them, and the server saw no permission violation.
#[test]
fn the_task_runs_with_a_user_per_process_under_the_deployment_permissions() {
    let users = [
        ("initiator", "pw-initiator"),
        ("site-1", "pw-site-1"),
        ("site-2", "pw-site-2"),
        ("site-3", "pw-site-3"),
    ];
    let config = deployment_config("pw-coordinator", &users, &[("alice", "pw-alice")], None)
        .expect("configuration");
    let server = NatsServer::start_with_config(&config);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let workflow = shipped_workflow(dir.path(), "remote.yaml", &out, Some(3));
    let daemons = start_federation(&server, dir.path(), true);
    let submit = engine(&[
        "submit",
        "--quiet",
        "--nats",
        &server.url(),
        "--user",
        "alice",
        "--password",
        "pw-alice",
        workflow.to_str().expect("utf-8"),
    ]);
    assert!(
        submit.status.success(),
        "{}\n{}\n{}",
        text(&submit),
        logs(&daemons),
        server.log()
    );
    assert!(out.join("model.zip").is_file());
    let status = engine(&[
        "status",
        "--nats",
        &server.url(),
        "--user",
        "alice",
        "--password",
        "pw-alice",
    ]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        !server.log().to_lowercase().contains("violation"),
        "a process hit a permissions violation:\n{}",
        server.log()
    );
    // A node's credentials are not a client's: site-1 cannot submit.
    let refused = engine(&[
        "submit",
        "--nats",
        &server.url(),
        "--user",
        "site-1",
        "--password",
        "pw-site-1",
        workflow.to_str().expect("utf-8"),
    ]);
    assert!(!refused.status.success(), "{}", text(&refused));
}

/// A server configuration with one user and password (`coordinator` / `right-password`).
fn fl_transport_config() -> String {
    "jetstream {}\nauthorization {\n  users = [\n    { user: \"coordinator\", password: \"right-password\" }\n  ]\n}\n"
        .to_owned()
}
