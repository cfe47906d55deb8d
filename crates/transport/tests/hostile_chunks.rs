//! Chunks whose headers lie, published raw on a site's own subject of a real nats-server:
//! each is refused before anything is allocated for it, acknowledged so that it is never
//! delivered again, and counted; the coordinator's memory stays put, and the site's next
//! honest message arrives, named by the subject it came on.

mod common;

use std::time::Duration;

use async_nats::HeaderMap;
use common::NatsServer;
use fl_transport::chunk::sha256_hex;
use fl_transport::{COORDINATOR, NatsOptions, NatsTransport, Transport, from_subject};

const TASK: &str = "hostile";

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Headers of one chunk as the transport writes them, with the announced size and count.
fn headers(id: &str, payload: &[u8], total_len: u64, count: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Fedengine-Schema", "1");
    h.insert("Fedengine-Message-Id", id);
    h.insert("Fedengine-Chunk-Index", "0");
    h.insert("Fedengine-Chunk-Count", count.to_string().as_str());
    h.insert(
        "Fedengine-Chunk-Crc32",
        format!("{:08x}", crc32fast::hash(payload)).as_str(),
    );
    h.insert("Fedengine-Message-Size", total_len.to_string().as_str());
    h.insert("Fedengine-Message-Sha256", sha256_hex(payload).as_str());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_that_lie_are_refused_unread_and_never_come_back() {
    let server = NatsServer::start();
    let coordinator = NatsTransport::connect(NatsOptions::new(server.url(), TASK, COORDINATOR))
        .await
        .expect("coordinator");
    coordinator.limit_messages(16 << 20);
    assert_eq!(coordinator.message_limit(), 16 << 20);
    coordinator.limit_messages(1 << 40);
    assert_eq!(coordinator.message_limit(), 16 << 20, "never raised");
    let mut inbox = coordinator.open(COORDINATOR).expect("inbox");

    let raw = async_nats::connect(server.url()).await.expect("raw client");
    let jetstream = async_nats::jetstream::new(raw);
    let subject = from_subject(TASK, "site-1");
    let payload = vec![7u8; 100];
    let lies = [
        // A 100-byte chunk announcing 2^60 bytes (it once aborted the coordinator).
        headers("huge", &payload, 1 << 60, 1),
        // 5·10^7 chunks announced for 4 KB (they once cost 804 MB and a 489 MB log line).
        headers("many", &payload, 4096, 50_000_000),
        // Over the task's limit, though possible.
        headers("over", &payload, 32 << 20, 40),
    ];
    let before = rss();
    for h in lies {
        jetstream
            .publish_with_headers(subject.clone(), h, payload.clone().into())
            .await
            .expect("published")
            .await
            .expect("stored");
    }
    jetstream
        .publish(subject.clone(), "not a chunk".into())
        .await
        .expect("published")
        .await
        .expect("stored");

    let site = NatsTransport::connect(NatsOptions::new(server.url(), TASK, "site-1"))
        .await
        .expect("site-1");
    site.send(COORDINATOR, b"honest".to_vec()).expect("send");
    let delivery = tokio::time::timeout(Duration::from_secs(60), inbox.recv_delivery())
        .await
        .expect("the honest message within 60 s")
        .expect("inbox open");
    assert_eq!(delivery.bytes, b"honest");
    assert_eq!(delivery.from.as_deref(), Some("site-1"));
    assert_eq!(coordinator.refused_messages(), 4);
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 << 20, "the coordinator grew by {grown} bytes");

    // Refused chunks were acknowledged: a new coordinator on the same consumer gets nothing.
    drop(inbox);
    drop(coordinator);
    let again = NatsTransport::connect(NatsOptions::new(server.url(), TASK, COORDINATOR))
        .await
        .expect("coordinator again");
    let mut inbox = again.open(COORDINATOR).expect("inbox");
    let next = tokio::time::timeout(Duration::from_secs(3), inbox.recv()).await;
    assert!(next.is_err(), "something came back: {next:?}");
    assert_eq!(again.refused_messages(), 0);
}
