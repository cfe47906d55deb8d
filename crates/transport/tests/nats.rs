//! The NATS transport against a real nats-server (see `common`).

mod common;

use std::time::{Duration, Instant};

use common::NatsServer;
use fl_transport::{COORDINATOR, Inbox, NatsOptions, NatsTransport, Transport, TransportError};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

async fn connect(server: &NatsServer, task: &str, endpoint: &str) -> NatsTransport {
    NatsTransport::connect(NatsOptions::new(server.url(), task, endpoint))
        .await
        .unwrap_or_else(|e| panic!("connecting {endpoint}: {e}"))
}

async fn next(inbox: &mut Inbox, who: &str) -> Vec<u8> {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("{who}: nothing within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{who}: inbox closed"))
}

/// `len` pseudo-random bytes, different for each `tag`, starting with `tag`.
fn payload(tag: u8, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(tag);
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    if let Some(first) = bytes.first_mut() {
        *first = tag;
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_two_nodes_exchange_small_and_large_messages_in_order() {
    let server = NatsServer::start();
    let coordinator = connect(&server, "exchange", COORDINATOR).await;
    let a = connect(&server, "exchange", "site-a").await;
    let b = connect(&server, "exchange", "site-b").await;
    assert!(coordinator.server_version().starts_with("2."));
    assert!(coordinator.chunk_size() < MIB);
    let mut to_coordinator = coordinator.open(COORDINATOR).expect("open coordinator");
    let mut to_a = a.open("site-a").expect("open a");
    let mut to_b = b.open("site-b").expect("open b");

    // Each sequence: small, 5 MiB, empty-ish (1 byte), exactly one chunk, small.
    let chunk = coordinator.chunk_size();
    let sequence = |base: u8| {
        vec![
            payload(base, 100),
            payload(base + 1, 5 * MIB),
            payload(base + 2, 1),
            payload(base + 3, chunk),
            payload(base + 4, 3),
        ]
    };
    let (down_a, down_b, up_a, up_b) = (sequence(10), sequence(20), sequence(30), sequence(40));
    let started = Instant::now();
    for i in 0..5 {
        coordinator.send("site-a", down_a[i].clone()).expect("send");
        coordinator.send("site-b", down_b[i].clone()).expect("send");
        a.send(COORDINATOR, up_a[i].clone()).expect("send");
        b.send(COORDINATOR, up_b[i].clone()).expect("send");
    }
    coordinator
        .send("site-a", Vec::new())
        .expect("empty message");
    for (i, expected) in down_a.iter().enumerate() {
        assert!(
            next(&mut to_a, "a").await == *expected,
            "a: message {i} differs"
        );
    }
    assert_eq!(next(&mut to_a, "a").await, Vec::<u8>::new());
    for (i, expected) in down_b.iter().enumerate() {
        assert!(
            next(&mut to_b, "b").await == *expected,
            "b: message {i} differs"
        );
    }
    // The coordinator gets both nodes' messages interleaved, each node's in order.
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let message = next(&mut to_coordinator, "coordinator").await;
        match message.first() {
            Some(30..=34) => from_a.push(message),
            Some(40..=44) => from_b.push(message),
            other => panic!("unexpected message starting with {other:?}"),
        }
    }
    assert!(from_a == up_a, "messages from a differ or are out of order");
    assert!(from_b == up_b, "messages from b differ or are out of order");
    let elapsed = started.elapsed();
    eprintln!(
        "4 x (5 MiB + 4 small) messages through nats-server {} in {elapsed:.2?}",
        coordinator.server_version()
    );
    tokio::time::timeout(WAIT, coordinator.flush())
        .await
        .expect("flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_starts_late_gets_what_was_sent_before() {
    let server = NatsServer::start();
    let coordinator = connect(&server, "late", COORDINATOR).await;
    let first = payload(1, 2 * MIB + 17);
    coordinator.send("site-late", first.clone()).expect("send");
    coordinator.send("site-late", payload(2, 10)).expect("send");
    tokio::time::timeout(WAIT, coordinator.flush())
        .await
        .expect("stored");
    let node = connect(&server, "late", "site-late").await;
    let mut inbox = node.open("site-late").expect("open");
    assert!(next(&mut inbox, "late node").await == first);
    assert_eq!(next(&mut inbox, "late node").await, payload(2, 10));

    // A reopened inbox resumes after what was acknowledged (nothing is delivered twice here).
    drop(inbox);
    coordinator.send("site-late", payload(3, 10)).expect("send");
    let mut inbox = node.open("site-late").expect("reopen after drop");
    assert_eq!(next(&mut inbox, "late node").await, payload(3, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_the_server_is_down_arrive_after_a_restart() {
    let mut server = NatsServer::start();
    let coordinator = connect(&server, "restart", COORDINATOR).await;
    let node = connect(&server, "restart", "site-1").await;
    let mut to_coordinator = coordinator.open(COORDINATOR).expect("open");
    let mut to_node = node.open("site-1").expect("open");
    coordinator.send("site-1", payload(1, 10)).expect("send");
    assert_eq!(next(&mut to_node, "node").await, payload(1, 10));

    server.stop();
    let down = Instant::now();
    let big = payload(2, 3 * MIB + 5);
    coordinator
        .send("site-1", big.clone())
        .expect("send while down");
    coordinator
        .send("site-1", payload(3, 10))
        .expect("send while down");
    node.send(COORDINATOR, payload(4, 10))
        .expect("send while down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart();

    assert!(
        next(&mut to_node, "node").await == big,
        "large message differs"
    );
    assert_eq!(next(&mut to_node, "node").await, payload(3, 10));
    assert_eq!(
        next(&mut to_coordinator, "coordinator").await,
        payload(4, 10)
    );
    eprintln!(
        "messages sent during a 2 s outage arrived {:.2?} after the restart",
        down.elapsed().saturating_sub(Duration::from_secs(2))
    );
    // Nothing more: retried publishes were de-duplicated.
    coordinator.send("site-1", payload(5, 10)).expect("send");
    assert_eq!(next(&mut to_node, "node").await, payload(5, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_send_and_open_only_what_their_role_allows() {
    let server = NatsServer::start();
    let coordinator = connect(&server, "roles", COORDINATOR).await;
    let node = connect(&server, "roles", "site-1").await;
    assert!(matches!(
        node.send("site-2", vec![1]),
        Err(TransportError::Unknown(_))
    ));
    assert!(matches!(
        coordinator.send(COORDINATOR, vec![1]),
        Err(TransportError::Unknown(_))
    ));
    assert!(matches!(
        coordinator.send("bad.name", vec![1]),
        Err(TransportError::Unknown(_))
    ));
    assert!(matches!(
        node.open(COORDINATOR),
        Err(TransportError::Unknown(_))
    ));
    let _inbox = node.open("site-1").expect("own endpoint");
    assert!(matches!(node.open("site-1"), Err(TransportError::Taken(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_ids_and_unreachable_servers_clearly() {
    let error = NatsTransport::connect(NatsOptions::new("nats://127.0.0.1:1", "t.1", "site"))
        .await
        .expect_err("a dot in a task id");
    assert!(error.to_string().contains("`t.1`"), "{error}");
    let error = NatsTransport::connect(NatsOptions::new("nats://127.0.0.1:1", "t", "site"))
        .await
        .expect_err("nothing listens on port 1");
    assert!(error.to_string().contains("nats://127.0.0.1:1"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunks_are_never_delivered() {
    let server = NatsServer::start();
    let coordinator = connect(&server, "corrupt", COORDINATOR).await;
    let node = connect(&server, "corrupt", "site-1").await;
    let mut inbox = node.open("site-1").expect("open");

    // A one-chunk message whose bytes do not match its CRC-32, published straight into the
    // node's subject, then a message whose chunk 1 of 2 never comes.
    let raw = async_nats::connect(server.url()).await.expect("raw client");
    let jetstream = async_nats::jetstream::new(raw);
    let good = payload(1, 100);
    let chunk = |id: &str, index: u32, count: u32, crc: u32| {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Fedengine-Schema", "1");
        h.insert("Nats-Msg-Id", format!("{id}:{index}"));
        h.insert("Fedengine-Message-Id", id);
        h.insert("Fedengine-Chunk-Index", index.to_string());
        h.insert("Fedengine-Chunk-Count", count.to_string());
        h.insert("Fedengine-Chunk-Crc32", format!("{crc:08x}"));
        h.insert("Fedengine-Message-Size", good.len().to_string());
        h.insert(
            "Fedengine-Message-Sha256",
            fl_transport::chunk::sha256_hex(&good),
        );
        h
    };
    let mut flipped = good.clone();
    flipped[50] ^= 1;
    let subject = fl_transport::to_subject("corrupt", "site-1");
    let half = good[..50].to_vec();
    for (headers, bytes) in [
        (chunk("bad-1", 0, 1, crc32fast::hash(&good)), flipped),
        (chunk("bad-2", 0, 2, crc32fast::hash(&half)), half.clone()),
    ] {
        jetstream
            .publish_with_headers(subject.clone(), headers, bytes.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    // What the node gets first is the next good message: the flipped byte was refused, and
    // the incomplete message was abandoned when the good one started.
    coordinator.send("site-1", good.clone()).expect("send");
    assert!(next(&mut inbox, "node").await == good);
    coordinator.send("site-1", payload(2, 10)).expect("send");
    assert_eq!(next(&mut inbox, "node").await, payload(2, 10));
}

/// Runs against an older nats-server when one is installed (Debian's 2.9 at
/// `/usr/sbin/nats-server`, or `FEDENGINE_NATS_SERVER_OLD`); otherwise says so and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_servers_older_than_2_10() {
    let binary = std::env::var_os("FEDENGINE_NATS_SERVER_OLD")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/sbin/nats-server".into());
    let found = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            text.rsplit('v').next().map(str::to_owned)
        })
        .filter(|v| {
            fl_transport::parse_version(v).is_some_and(|v| v < fl_transport::MIN_SERVER_VERSION)
        });
    let Some(found) = found else {
        eprintln!(
            "no nats-server older than 2.10 at {}; skipped",
            binary.display()
        );
        return;
    };
    let server = NatsServer::start_binary(binary);
    let error = NatsTransport::connect(NatsOptions::new(server.url(), "old", COORDINATOR))
        .await
        .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains(&found) && message.contains("2.10.0"),
        "{message}"
    );
    eprintln!("{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_travels_with_each_message() {
    let server = NatsServer::start();
    let coordinator = connect(&server, "traced", COORDINATOR).await;
    let node = connect(&server, "traced", "site-a").await;
    let mut inbox = node.open("site-a").expect("open");
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned();
    // A multi-chunk message and a small one with trace context, one without.
    coordinator
        .send_traced("site-a", payload(1, 3 * MIB), Some(parent.clone()))
        .expect("send");
    coordinator
        .send_traced("site-a", payload(2, 10), Some(parent.clone()))
        .expect("send");
    coordinator.send("site-a", payload(3, 10)).expect("send");
    for (tag, expected) in [(1, Some(&parent)), (2, Some(&parent)), (3, None)] {
        let delivery = tokio::time::timeout(WAIT, inbox.recv_delivery())
            .await
            .expect("in time")
            .expect("a message");
        assert_eq!(delivery.bytes.first(), Some(&tag));
        assert_eq!(delivery.traceparent.as_ref(), expected, "message {tag}");
    }
}
