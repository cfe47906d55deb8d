//! A model-sized message over the NATS transport against a real nats-server (see `common`):
//! a ~214 MB state dict (GPT-2-small-shaped: token and position embeddings and the first two
//! of its twelve blocks, f32, deterministic pseudo-random values) goes from the coordinator
//! to a node as `Body::GlobalWeights`, and an update of the same shapes comes back, both with
//! the server's default `max_payload` (1 MiB), so each is split into ~200 chunks. What
//! arrives must be the same bytes, decode, and carry the digest that was sent.

mod common;

use std::time::{Duration, Instant};

use common::NatsServer;
use fl_tensor::{Body, DType, Digest, Envelope, Metrics, NamedTensor, TensorSet};
use fl_transport::{COORDINATOR, Inbox, NatsOptions, NatsTransport, Transport};

const WAIT: Duration = Duration::from_secs(120);
const MIB: usize = 1024 * 1024;
const TASK: &str = "large";
const NODE: &str = "site-1";

/// GPT-2 small's embeddings and its first two blocks: (name, shape).
fn shapes() -> Vec<(String, Vec<u64>)> {
    let (vocab, positions, width) = (50_257, 1_024, 768);
    let mut shapes = vec![
        ("wte.weight".to_owned(), vec![vocab, width]),
        ("wpe.weight".to_owned(), vec![positions, width]),
    ];
    for block in 0..2 {
        let h = |name: &str| format!("h.{block}.{name}");
        shapes.extend([
            (h("ln_1.weight"), vec![width]),
            (h("ln_1.bias"), vec![width]),
            (h("attn.c_attn.weight"), vec![width, 3 * width]),
            (h("attn.c_attn.bias"), vec![3 * width]),
            (h("attn.c_proj.weight"), vec![width, width]),
            (h("attn.c_proj.bias"), vec![width]),
            (h("ln_2.weight"), vec![width]),
            (h("ln_2.bias"), vec![width]),
            (h("mlp.c_fc.weight"), vec![width, 4 * width]),
            (h("mlp.c_fc.bias"), vec![4 * width]),
            (h("mlp.c_proj.weight"), vec![4 * width, width]),
            (h("mlp.c_proj.bias"), vec![width]),
        ]);
    }
    shapes
}

/// The state dict of [`shapes`] with f32 values in [-0.05, 0.05) from a xorshift generator
/// seeded by `seed` and the tensor's position.
fn state_dict(seed: u32) -> TensorSet {
    let tensors = shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let count: u64 = shape.iter().product();
            let count = usize::try_from(count).expect("tensor fits in memory");
            let mut x =
                (seed.wrapping_mul(0x9e37_79b9) ^ (i as u32 + 1).wrapping_mul(0x85eb_ca6b)) | 1;
            let mut data = Vec::with_capacity(count * 4);
            for _ in 0..count {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let value = (x >> 8) as f32 / (1u32 << 24) as f32 * 0.1 - 0.05;
                data.extend_from_slice(&value.to_le_bytes());
            }
            NamedTensor::new(name, DType::F32, shape, data).expect("data fits the shape")
        })
        .collect();
    TensorSet::new(tensors).expect("distinct tensor names")
}

async fn connect(server: &NatsServer, endpoint: &str) -> NatsTransport {
    NatsTransport::connect(NatsOptions::new(server.url(), TASK, endpoint))
        .await
        .unwrap_or_else(|e| panic!("connecting {endpoint}: {e}"))
}

/// Sends `bytes` from `from` to `to` and waits for them in `inbox`; returns what arrived and
/// how long it took from the send to the receipt.
async fn transfer(
    from: &NatsTransport,
    to: &str,
    inbox: &mut Inbox,
    bytes: Vec<u8>,
) -> (Vec<u8>, Duration) {
    let len = bytes.len();
    let started = Instant::now();
    from.send(to, bytes).expect("send");
    let received = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("{to}: nothing within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{to}: inbox closed"));
    let elapsed = started.elapsed();
    let chunks = len.div_ceil(from.chunk_size());
    eprintln!(
        "{} -> {to}: {:.1} MB in {chunks} chunks of at most {} bytes, {elapsed:.2?}, {:.1} MB/s",
        if to == COORDINATOR { NODE } else { COORDINATOR },
        len as f64 / 1e6,
        from.chunk_size(),
        len as f64 / 1e6 / elapsed.as_secs_f64()
    );
    (received, elapsed)
}

/// Checks that `received` is `sent` byte for byte (without printing 200 MB on failure).
fn assert_same_bytes(received: &[u8], sent: &[u8]) {
    assert_eq!(received.len(), sent.len(), "received length");
    if let Some(at) = received.iter().zip(sent).position(|(r, s)| r != s) {
        panic!("received bytes differ from the sent ones first at offset {at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_state_dict_crosses_nats_both_ways_in_default_size_chunks() {
    let server = NatsServer::start();
    let coordinator = connect(&server, COORDINATOR).await;
    let node = connect(&server, NODE).await;
    for transport in [&coordinator, &node] {
        assert!(
            transport.chunk_size() < MIB,
            "chunk size {} is not below the default max_payload",
            transport.chunk_size()
        );
    }
    let mut to_node = node.open(NODE).expect("open node");
    let mut to_coordinator = coordinator.open(COORDINATOR).expect("open coordinator");

    // Coordinator -> node: the global weights.
    let global = state_dict(1);
    assert!(global.byte_size() >= 200_000_000, "{}", global.byte_size());
    let global_digest = global.digest();
    let sent = Envelope::new(TASK, 3, COORDINATOR, Body::global_weights(global))
        .encode()
        .expect("encode global weights");
    assert!(sent.len().div_ceil(coordinator.chunk_size()) > 200);
    let (received, _) = transfer(&coordinator, NODE, &mut to_node, sent.clone()).await;
    assert_same_bytes(&received, &sent);
    drop(sent);
    let decoded = Envelope::decode(&received).expect("decode global weights");
    drop(received);
    assert_eq!(
        (
            decoded.task_id.as_str(),
            decoded.round,
            decoded.sender.as_str()
        ),
        (TASK, 3, COORDINATOR)
    );
    let Body::GlobalWeights { digest, tensors } = decoded.body else {
        panic!("expected global weights, got {}", decoded.body.kind());
    };
    assert_eq!(
        digest, global_digest,
        "the envelope's digest is the sent one"
    );
    assert_eq!(tensors.digest(), global_digest, "the decoded set's digest");
    assert_eq!(tensors.len(), shapes().len());
    drop(tensors);

    // Node -> coordinator: an update of the same shapes, trained from those weights.
    let trained = state_dict(2);
    let trained_digest: Digest = trained.digest();
    assert_ne!(trained_digest, global_digest);
    let body = Body::Update {
        samples: 60_000,
        base_digest: global_digest,
        metrics: Metrics::default(),
        tensors: trained,
    };
    let sent = Envelope::new(TASK, 3, NODE, body)
        .encode()
        .expect("encode update");
    let (received, _) = transfer(&node, COORDINATOR, &mut to_coordinator, sent.clone()).await;
    assert_same_bytes(&received, &sent);
    drop(sent);
    let decoded = Envelope::decode(&received).expect("decode update");
    drop(received);
    assert_eq!(decoded.sender, NODE);
    let Body::Update {
        samples,
        base_digest,
        tensors,
        ..
    } = decoded.body
    else {
        panic!("expected an update, got {}", decoded.body.kind());
    };
    assert_eq!((samples, base_digest), (60_000, global_digest));
    assert_eq!(
        tensors.digest(),
        trained_digest,
        "the decoded update's digest"
    );

    for transport in [&coordinator, &node] {
        tokio::time::timeout(WAIT, transport.flush())
            .await
            .expect("every publish acknowledged");
    }
}
