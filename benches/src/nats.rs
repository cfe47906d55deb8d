//! NATS throughput: a ~214 MB state dict (GPT-2-small-shaped) from the coordinator to a node
//! over `NatsTransport` (JetStream chunks, checksums, reassembly, decoding and digest check),
//! against a plain core-NATS publish loop of the same bytes in chunks of the same size, both
//! through one nats-server on loopback that the benchmark starts (with JetStream) and stops.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fl_tensor::{Body, DType, Digest, Envelope, NamedTensor, TensorSet, decode_view};
use fl_transport::{COORDINATOR, Inbox, NatsOptions, NatsTransport, Transport};
use futures_util::StreamExt as _;

use crate::report::{Summary, machine, today};

/// How long one transfer may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(300);
const TASK: &str = "bench";
const NODE: &str = "site-1";
/// The baseline's subject (outside the task's stream, so plain core NATS).
const BASELINE_SUBJECT: &str = "bench.baseline";

/// Runs the NATS benchmark and returns the BENCHMARKS.md section.
pub fn run(root: &Path, repeats: usize) -> Result<String> {
    let server = NatsServer::start(&server_binary(root)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let measured = runtime.block_on(measure(&server.url(), repeats.max(1)));
    drop(runtime);
    drop(server);
    let Measured {
        engine,
        baseline,
        bytes,
        chunk_size,
        version,
    } = measured?;
    let ratios: Vec<f64> = engine.iter().zip(&baseline).map(|(e, b)| e / b).collect();
    Ok(format!(
        "## NATS transport ({:.0} MB state dict)\n\n\
         Command: `./scripts/bench` · date: {} · machine: {} · nats-server {version} on \
         loopback · {} repeats, median (min–max).\n\n\
         A GPT-2-small-shaped state dict (token and position embeddings and the first 2 of its \
         12 blocks, f32), encoded as `Body::GlobalWeights`: {:.1} MB, sent from the coordinator \
         to a node with the server's default `max_payload` (1 MiB), so in {} chunks of at most \
         {chunk_size} bytes. *Engine*: timed from `NatsTransport::send` until the node's inbox \
         holds the whole message and it is decoded (`decode_view`) with its digest checked; on \
         the way: JetStream storage \
         (file store) and publish acknowledgements (8 in flight), CRC-32 per chunk, SHA-256 of \
         the message on both sides, pulled delivery (16 chunks a pull) with acknowledgements, \
         reassembly. *Baseline*, measured in the same run, interleaved, on the same server: \
         plain core-NATS publishes (async-nats `Client::publish`) of the same bytes in chunks \
         of the same size to a subject with one subscriber on another connection, then \
         `flush`, timed until the subscriber has received every byte; no storage, no \
         acknowledgements, no checks, and lost if the subscriber or the server is down or \
         slow. The server and both ends share the machine's cores.\n\n\
         | | MB/s |\n|---|---|\n\
         | engine (`NatsTransport`, JetStream) | {} |\n\
         | baseline (core NATS publish loop) | {} |\n\
         | **ratio (engine / baseline)** | **{}** |\n",
        bytes as f64 / 1e6,
        today(),
        machine(),
        engine.len(),
        bytes as f64 / 1e6,
        bytes.div_ceil(chunk_size),
        Summary::of(&engine).show(1),
        Summary::of(&baseline).show(1),
        Summary::of(&ratios).show(3),
    ))
}

/// MB/s per repeat of each side, and what was sent.
#[derive(Debug)]
struct Measured {
    engine: Vec<f64>,
    baseline: Vec<f64>,
    bytes: usize,
    chunk_size: usize,
    version: String,
}

async fn measure(url: &str, repeats: usize) -> Result<Measured> {
    let global = state_dict(1)?;
    let digest = global.digest();
    let bytes = Envelope::new(TASK, 0, COORDINATOR, Body::global_weights(global)).encode()?;

    let coordinator = NatsTransport::connect(NatsOptions::new(url, TASK, COORDINATOR)).await?;
    let node = NatsTransport::connect(NatsOptions::new(url, TASK, NODE)).await?;
    let mut inbox = node.open(NODE)?;
    let chunk_size = coordinator.chunk_size();
    let publisher = async_nats::connect(url).await?;
    let subscriber = async_nats::connect(url).await?;
    let mut subscription = subscriber.subscribe(BASELINE_SUBJECT).await?;
    subscriber.flush().await?;

    // Warm-up, untimed: the node's consumer exists and the subscription is registered.
    let small = Envelope::new(
        TASK,
        0,
        COORDINATOR,
        Body::global_weights(state_dict_of(&[0.5; 4])?),
    )
    .encode()?;
    engine_transfer(&coordinator, &mut inbox, small.clone(), &small).await?;
    subscription =
        baseline_transfer(&publisher, subscription, &small, chunk_size, small.len()).await?;

    let mb = bytes.len() as f64 / 1e6;
    let (mut engine, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let copy = bytes.clone();
        let started = Instant::now();
        let received = engine_transfer(&coordinator, &mut inbox, copy, &bytes).await?;
        check_digest(&received, &digest)?;
        engine.push(mb / started.elapsed().as_secs_f64());
        drop(received);

        let started = Instant::now();
        subscription =
            baseline_transfer(&publisher, subscription, &bytes, chunk_size, bytes.len()).await?;
        baseline.push(mb / started.elapsed().as_secs_f64());
    }
    Ok(Measured {
        engine,
        baseline,
        bytes: bytes.len(),
        chunk_size,
        version: coordinator.server_version(),
    })
}

/// Sends `bytes` to the node and returns what its inbox got (checked to be `expected`'s
/// length).
async fn engine_transfer(
    coordinator: &NatsTransport,
    inbox: &mut Inbox,
    bytes: Vec<u8>,
    expected: &[u8],
) -> Result<Vec<u8>> {
    coordinator.send(NODE, bytes)?;
    let received = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .with_context(|| format!("the node received nothing within {WAIT:?}"))?
        .context("the node's inbox closed")?;
    if received.len() != expected.len() {
        bail!(
            "the node received {} bytes, {} were sent",
            received.len(),
            expected.len()
        );
    }
    Ok(received)
}

/// Decodes the global weights and checks their digest against the one sent.
fn check_digest(received: &[u8], sent: &Digest) -> Result<()> {
    let envelope = decode_view(received).context("decoding the received global weights")?;
    match envelope.body {
        // `decode_view` has checked that the tensors' digest is the declared one.
        Body::GlobalWeights { digest, .. } if digest == *sent => Ok(()),
        Body::GlobalWeights { digest, .. } => {
            bail!("received global weights with digest {digest}, sent {sent}")
        }
        other => bail!("received {} instead of global weights", other.kind()),
    }
}

/// Publishes `bytes` in `chunk_size` pieces on the baseline subject, flushes, and waits until
/// `subscription` has received `len` bytes; returns the subscription for the next round.
async fn baseline_transfer(
    publisher: &async_nats::Client,
    mut subscription: async_nats::Subscriber,
    bytes: &[u8],
    chunk_size: usize,
    len: usize,
) -> Result<async_nats::Subscriber> {
    let receiving = tokio::spawn(async move {
        let mut received = Vec::with_capacity(len);
        while received.len() < len {
            match subscription.next().await {
                Some(message) => received.extend_from_slice(&message.payload),
                None => break,
            }
        }
        (subscription, received.len())
    });
    for chunk in bytes.chunks(chunk_size) {
        publisher
            .publish(BASELINE_SUBJECT, chunk.to_vec().into())
            .await?;
    }
    publisher.flush().await?;
    let (subscription, received) = tokio::time::timeout(WAIT, receiving)
        .await
        .with_context(|| format!("the baseline subscriber did not get everything in {WAIT:?}"))?
        .context("the baseline subscriber failed")?;
    if received != len {
        bail!("the baseline subscriber received {received} bytes of {len}");
    }
    Ok(subscription)
}

/// GPT-2 small's embeddings and its first two blocks: (name, shape); 214 MB of f32.
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

/// The state dict of [`shapes`] with pseudo-random values derived from `seed`.
fn state_dict(seed: u32) -> Result<TensorSet> {
    let shapes = shapes();
    let mut tensors = Vec::with_capacity(shapes.len());
    for (i, (name, shape)) in shapes.into_iter().enumerate() {
        let count = usize::try_from(shape.iter().product::<u64>())?;
        let mut x = (seed.wrapping_mul(0x9e37_79b9) ^ (i as u32 + 1).wrapping_mul(0x85eb_ca6b)) | 1;
        let mut data = Vec::with_capacity(count * 4);
        for _ in 0..count {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let value = (x >> 8) as f32 / (1u32 << 24) as f32 * 0.1 - 0.05;
            data.extend_from_slice(&value.to_le_bytes());
        }
        tensors.push(NamedTensor::new(name, DType::F32, shape, data)?);
    }
    Ok(TensorSet::new(tensors)?)
}

/// A small state dict of the given f32 tensors (for the warm-up).
fn state_dict_of(values: &[f32]) -> Result<TensorSet> {
    Ok(TensorSet::new(vec![NamedTensor::from_f32(
        "warmup",
        vec![values.len() as u64],
        values,
    )?])?)
}

/// The nats-server binary: `$FEDENGINE_NATS_SERVER` (set for cargo by `.cargo/config.toml`),
/// else `.venv/bin/nats-server` under the repository root (both written by `scripts/setup`).
pub(crate) fn server_binary(root: &Path) -> Result<PathBuf> {
    let binary = std::env::var_os("FEDENGINE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/nats-server"));
    if !binary.is_file() {
        bail!(
            "no nats-server at {} (run scripts/setup, or set FEDENGINE_NATS_SERVER)",
            binary.display()
        );
    }
    Ok(binary)
}

/// A nats-server with JetStream on a free loopback port and a temporary store; killed on drop.
#[derive(Debug)]
pub(crate) struct NatsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    pub(crate) fn start(binary: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let dir = tempfile::tempdir()?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path().join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("nats-server exited with {status}:\n{}", server.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server does not accept connections on port {port} after 20 s:\n{}",
                    server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
