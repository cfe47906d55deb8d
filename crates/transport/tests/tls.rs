//! TLS with the NATS transport against a real nats-server: a test CA and a server certificate
//! are made with the `openssl` command; endpoints that trust the CA (`NatsOptions::tls_ca`)
//! exchange a multi-chunk message with user and password over TLS, and one that does not
//! trust it is refused within seconds.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::NatsServer;
use fl_transport::{COORDINATOR, NatsOptions, NatsTransport, Transport};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl) runs");
    assert!(
        output.status.success(),
        "openssl {args:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it; returns the CA's PEM path.
fn certificates(dir: &Path) -> std::path::PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=fedengine test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
    dir.join("ca.pem")
}

fn options(server: &NatsServer, endpoint: &str, ca: Option<&Path>) -> NatsOptions {
    let mut options = NatsOptions::new(server.url(), "tls-task", endpoint);
    options.user_password = Some(("fedengine".into(), "tls-password".into()));
    options.tls_ca = ca.map(Path::to_path_buf);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_trust_the_ca_talk_over_tls_and_others_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = certificates(dir.path());
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\nauthorization {{\n  users = [ {{ user: \"fedengine\", password: \"tls-password\" }} ]\n}}\n",
        dir.path().join("server.pem").display(),
        dir.path().join("server.key").display()
    );
    let server = NatsServer::start_with_config(&config);

    let coordinator = NatsTransport::connect(options(&server, COORDINATOR, Some(&ca)))
        .await
        .unwrap_or_else(|e| panic!("coordinator over TLS: {e}\n{}", server.log()));
    let node = NatsTransport::connect(options(&server, "site-1", Some(&ca)))
        .await
        .unwrap_or_else(|e| panic!("site-1 over TLS: {e}\n{}", server.log()));
    let mut inbox = node.open("site-1").expect("open");
    let message: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    coordinator.send("site-1", message.clone()).expect("send");
    let received = tokio::time::timeout(Duration::from_secs(60), inbox.recv())
        .await
        .expect("delivered within a minute")
        .expect("a message");
    assert!(received == message, "the message arrived changed");

    // The server demands TLS: an endpoint that does not trust its CA is refused, quickly.
    let started = Instant::now();
    let refused = NatsTransport::connect(options(&server, "site-2", None)).await;
    let error = refused
        .expect_err("a connection without the CA must fail")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.contains("connecting to NATS"), "{error}");
}
