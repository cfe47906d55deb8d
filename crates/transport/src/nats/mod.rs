//! The NATS transport: nodes and the coordinator on different machines, through a
//! nats-server (2.10 or newer) with JetStream enabled.
//!
//! # Identity and subjects
//!
//! A [`NatsTransport`] is made for one task and one local endpoint: a node id, or
//! [`COORDINATOR`]. Task and node ids are restricted to `[A-Za-z0-9_-]` (they become subject
//! tokens and consumer names). For task `T` and node `N`:
//!
//! | subject | published by | consumed by |
//! |---|---|---|
//! | `fedengine.T.to.N` | the coordinator only | node `N` only (durable consumer `N`) |
//! | `fedengine.T.from.N` | node `N` only | the coordinator only (durable consumer `coordinator`, filter `fedengine.T.from.>`) |
//!
//! so NATS permissions can say who may publish what: node `N` publishes on
//! `fedengine.T.from.N` and reads only its own consumer; the coordinator publishes on
//! `fedengine.T.to.*` and reads `fedengine.T.from.>`. A node's `send` accepts only
//! [`COORDINATOR`] as destination and the coordinator's only node ids (anything else is
//! [`TransportError::Unknown`]); `open` accepts only the local endpoint.
//!
//! The task's JetStream stream is `fedengine-T`, subjects `fedengine.T.>`, file storage,
//! work-queue retention (a chunk is removed once its consumer acknowledged it, so the store
//! does not grow with rounds), 2-minute duplicate window. Every endpoint creates it if missing.
//! Task ids must be unique: a stream left over from an earlier task of the same id would
//! deliver its unconsumed messages.
//!
//! # Large messages: why chunks on a JetStream stream
//!
//! Model weights reach ~50 MB; the server's `max_payload` is 1 MiB by default. Each message is
//! published as chunks of at most `max_payload − 16 KiB` bytes (the rest is headroom for
//! headers) on the destination's subject of the task's stream, with headers
//! `Fedengine-Schema: 1`, `Fedengine-Message-Id`, `Fedengine-Chunk-Index`,
//! `Fedengine-Chunk-Count`, `Fedengine-Chunk-Crc32` (the chunk's CRC-32, hex),
//! `Fedengine-Message-Size`, `Fedengine-Message-Sha256` (the whole message's), `traceparent`
//! when given ([`NatsTransport::send_traced`]), and `Nats-Msg-Id: <message id>:<index>`.
//! - *JetStream* rather than core NATS chunking: core NATS is fire-and-forget, so a chunk sent
//!   while the server or the receiver is down is lost, and a fast sender overruns a slow
//!   receiver (slow-consumer drops). JetStream stores every chunk (publish acks are awaited,
//!   failed publishes retried with backoff; `Nats-Msg-Id` makes a retry of a publish that did
//!   land a no-op), receivers that start late or restart resume from their durable consumer,
//!   and a pull consumer is flow control (a receiver fetches 16 chunks at a time).
//! - *Chunks on a stream* rather than the object store: the object store needs a bucket per
//!   task plus a separate notification message per object, its cleanup is ours, and its
//!   per-object metadata stream makes permissions per node awkward; one stream with one subject
//!   per direction and node keeps ordering, permissions and cleanup (work-queue retention) in
//!   one place. The object store would win for blobs shared by many readers (the global model
//!   broadcast to every node is now published once per node).
//!
//! The receiver (one background task per open inbox) reassembles chunks per sender subject
//! ([`chunk::Reassembler`]): in any order, duplicates dropped, each chunk's CRC-32 and the whole
//! message's SHA-256 and length verified. A message is delivered to the [`Inbox`] only whole
//! and verified, and its chunks are acknowledged only after that, so a receiver that crashes
//! mid-message gets it again (delivery is at least once across a receiver restart). A corrupt,
//! inconsistent or incomplete message (a later message from the same sender started first)
//! is logged (`tracing` error) and its chunks discarded; nothing is delivered.
//! Messages from one sender arrive in the order sent: one publisher task per transport
//! publishes every chunk of a message (up to 8 unacknowledged at a time) before the next.
//!
//! # Connection
//!
//! [`NatsOptions`]: URL, optional user and password or credentials file, optional TLS CA
//! (which also requires TLS), a connection name (default `fedengine-T-N`). Replies (API
//! responses, publish acks, pulled chunks) come to the inbox prefix `_INBOX.fedengine.T.N`,
//! so that [`permissions`] can let each endpoint read its own replies only. The client
//! reconnects forever with its default backoff; servers older than 2.10 are refused with an
//! error naming the version found (2.9 ignores consumer and stream options silently and its
//! key-value responses do not parse with async-nats 0.51).

pub mod chunk;
pub mod permissions;
mod version;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{HeaderMap, ServerInfo};
use futures_util::StreamExt as _;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;

pub use self::version::{MIN_SERVER_VERSION, check_server_version, parse_version};
use crate::base::{COORDINATOR, Inbox, Transport, TransportError};
use chunk::{ChunkMeta, Outcome, Reassembler};

/// The transport's chunk format version, sent as `Fedengine-Schema`.
pub const SCHEMA: &str = "1";
/// Bytes of `max_payload` kept for headers.
pub const HEADROOM: usize = 16 * 1024;
/// Unacknowledged chunk publishes in flight per message.
const WINDOW: usize = 8;
/// Chunks a receiver fetches per pull request.
const FETCH: usize = 16;

const H_SCHEMA: &str = "Fedengine-Schema";
const H_ID: &str = "Fedengine-Message-Id";
const H_INDEX: &str = "Fedengine-Chunk-Index";
const H_COUNT: &str = "Fedengine-Chunk-Count";
const H_CRC: &str = "Fedengine-Chunk-Crc32";
const H_SIZE: &str = "Fedengine-Message-Size";
const H_SHA: &str = "Fedengine-Message-Sha256";
const H_TRACE: &str = "traceparent";

/// How to reach the server and who this transport is.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Server URL(s), e.g. `nats://127.0.0.1:4222` (comma-separated for several).
    pub url: String,
    /// The task id (a subject token).
    pub task: String,
    /// The local endpoint: a node id or [`COORDINATOR`].
    pub endpoint: String,
    /// User and password.
    pub user_password: Option<(String, String)>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// The connection's name as the server shows it; default `fedengine-<task>-<endpoint>`.
    pub connection_name: Option<String>,
    /// An upper bound on chunk size below the server's limit (tests use it to get many chunks).
    pub max_chunk: Option<usize>,
}

impl NatsOptions {
    /// Options with no authentication and no TLS.
    pub fn new(
        url: impl Into<String>,
        task: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            task: task.into(),
            endpoint: endpoint.into(),
            user_password: None,
            credentials_file: None,
            tls_ca: None,
            connection_name: None,
            max_chunk: None,
        }
    }
}

/// Why a NATS transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A task or node id that cannot be a subject token.
    #[error("`{0}` is not a valid task or node id for NATS (use letters, digits, `-` and `_`)")]
    InvalidName(String),
    /// The credentials file could not be read.
    #[error("reading NATS credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No connection.
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// The server is older than [`MIN_SERVER_VERSION`].
    #[error("{0}")]
    ServerTooOld(String),
    /// The server has no JetStream, or the task's stream could not be made.
    #[error(
        "JetStream stream `{stream}`: {message} (is the server started with JetStream, `-js`?)"
    )]
    Stream {
        /// The stream.
        stream: String,
        /// Why.
        message: String,
    },
}

/// Whether `name` can be a subject token and consumer name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Subject of messages from the coordinator to `node`.
pub fn to_subject(task: &str, node: &str) -> String {
    format!("fedengine.{task}.to.{node}")
}

/// Subject of messages from `node` to the coordinator.
pub fn from_subject(task: &str, node: &str) -> String {
    format!("fedengine.{task}.from.{node}")
}

/// The task's stream name.
pub fn stream_name(task: &str) -> String {
    format!("fedengine-{task}")
}

#[derive(Debug)]
struct Outgoing {
    subject: String,
    bytes: Vec<u8>,
    traceparent: Option<String>,
}

/// The NATS [`Transport`] (see the module docs). Cheap to clone; the publisher stops after
/// the last clone is dropped and every queued message is published.
#[derive(Clone)]
pub struct NatsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    task: String,
    endpoint: String,
    chunk_size: usize,
    runtime: tokio::runtime::Handle,
    outgoing: UnboundedSender<Outgoing>,
    enqueued: AtomicU64,
    published: watch::Receiver<u64>,
    /// The open inbox, watched by the receiver task (started by the first `open`).
    inbox: Mutex<(watch::Sender<OpenInbox>, bool)>,
}

/// The sending end of the open inbox, if any.
type OpenInbox = Option<UnboundedSender<Vec<u8>>>;

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("task", &self.inner.task)
            .field("endpoint", &self.inner.endpoint)
            .field("chunk_size", &self.inner.chunk_size)
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// Connects, checks the server version, creates the task's stream if missing and starts
    /// the publisher on the current tokio runtime (which must outlive the transport; `send`
    /// and `open` may then be called from any thread).
    pub async fn connect(options: NatsOptions) -> Result<Self, NatsError> {
        for name in [&options.task, &options.endpoint] {
            if !valid_name(name) {
                return Err(NatsError::InvalidName(name.clone()));
            }
        }
        let task = options.task.clone();
        let endpoint = options.endpoint.clone();
        let mut connect = async_nats::ConnectOptions::new()
            .name(
                options
                    .connection_name
                    .clone()
                    .unwrap_or_else(|| format!("fedengine-{task}-{endpoint}")),
            )
            .max_reconnects(None)
            // Replies come to this endpoint's own inbox prefix, which NATS permissions can
            // give to it alone (see `permissions`).
            .custom_inbox_prefix(permissions::inbox_prefix(&task, &endpoint))
            .event_callback({
                let endpoint = endpoint.clone();
                move |event| {
                    let endpoint = endpoint.clone();
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                tracing::info!(%endpoint, "NATS connected");
                            }
                            async_nats::Event::Disconnected => {
                                tracing::warn!(%endpoint, "NATS disconnected; reconnecting");
                            }
                            other => tracing::warn!(%endpoint, "NATS: {other}"),
                        }
                    }
                }
            });
        if let Some((user, password)) = &options.user_password {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &options.credentials_file {
            connect =
                connect
                    .credentials_file(path)
                    .await
                    .map_err(|source| NatsError::Credentials {
                        path: path.clone(),
                        source,
                    })?;
        }
        if let Some(ca) = &options.tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = connect
            .connect(options.url.as_str())
            .await
            .map_err(|source| NatsError::Connect {
                url: options.url.clone(),
                source,
            })?;
        let info: ServerInfo = client.server_info();
        check_server_version(&info.version).map_err(NatsError::ServerTooOld)?;

        let jetstream = jetstream::new(client.clone());
        let name = stream_name(&task);
        jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("fedengine.{task}.>")],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::Stream {
                stream: name,
                message: e.to_string(),
            })?;

        let max_payload = if info.max_payload == 0 {
            1024 * 1024
        } else {
            info.max_payload
        };
        let mut chunk_size = max_payload.saturating_sub(HEADROOM).max(1024);
        if let Some(cap) = options.max_chunk {
            chunk_size = chunk_size.min(cap.max(1));
        }

        let (outgoing, queue) = unbounded_channel();
        let (published_tx, published) = watch::channel(0);
        let publisher = Publisher {
            jetstream: jetstream.clone(),
            chunk_size,
            id_prefix: format!(
                "{endpoint}-{:x}-{:x}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
                std::process::id()
            ),
            sequence: 0,
        };
        let runtime = tokio::runtime::Handle::current();
        runtime.spawn(publisher.run(queue, published_tx));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                jetstream,
                task,
                endpoint,
                chunk_size,
                runtime,
                outgoing,
                enqueued: AtomicU64::new(0),
                published,
                inbox: Mutex::new((watch::channel(None).0, false)),
            }),
        })
    }

    /// The connected server's version.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// The largest chunk this transport publishes.
    pub fn chunk_size(&self) -> usize {
        self.inner.chunk_size
    }

    /// [`Transport::send`] with a W3C `traceparent` carried in the chunks' headers.
    pub fn send_traced(
        &self,
        to: &str,
        bytes: Vec<u8>,
        traceparent: Option<String>,
    ) -> Result<(), TransportError> {
        let inner = &self.inner;
        let subject = if inner.endpoint == COORDINATOR {
            if to == COORDINATOR || !valid_name(to) {
                return Err(TransportError::Unknown(to.to_owned()));
            }
            to_subject(&inner.task, to)
        } else {
            if to != COORDINATOR {
                return Err(TransportError::Unknown(to.to_owned()));
            }
            from_subject(&inner.task, &inner.endpoint)
        };
        inner.enqueued.fetch_add(1, Ordering::SeqCst);
        inner
            .outgoing
            .send(Outgoing {
                subject,
                bytes,
                traceparent,
            })
            .map_err(|_| {
                inner.enqueued.fetch_sub(1, Ordering::SeqCst);
                TransportError::Unknown(to.to_owned())
            })
    }

    /// Waits until every message sent before this call is stored by the server (its chunks'
    /// publishes acknowledged). Waits across reconnects; wrap it in a timeout.
    pub async fn flush(&self) {
        let target = self.inner.enqueued.load(Ordering::SeqCst);
        let mut published = self.inner.published.clone();
        let _ = published.wait_for(|p| *p >= target).await;
    }
}

impl Transport for NatsTransport {
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.send_traced(to, bytes, None)
    }

    fn open(&self, name: &str) -> Result<Inbox, TransportError> {
        let inner = &self.inner;
        if name != inner.endpoint {
            return Err(TransportError::Unknown(name.to_owned()));
        }
        let mut slot = inner
            .inbox
            .lock()
            .map_err(|_| TransportError::Taken(name.to_owned()))?;
        let (inbox, started) = &mut *slot;
        if inbox.borrow().as_ref().is_some_and(|s| !s.is_closed()) {
            return Err(TransportError::Taken(name.to_owned()));
        }
        let (sender, receiver) = unbounded_channel();
        inbox.send_replace(Some(sender));
        if std::mem::replace(started, true) {
            // The receiver task lives on (and keeps its place in the consumer): a message it
            // pulled while no inbox was open goes to this one.
            return Ok(Inbox::new(receiver));
        }
        let filter = if inner.endpoint == COORDINATOR {
            format!("fedengine.{}.from.>", inner.task)
        } else {
            to_subject(&inner.task, &inner.endpoint)
        };
        let receiver_task = Receiver {
            jetstream: inner.jetstream.clone(),
            stream: stream_name(&inner.task),
            durable: inner.endpoint.clone(),
            filter,
            inbox: inbox.subscribe(),
            held: None,
            reassemblers: HashMap::new(),
        };
        inner.runtime.spawn(receiver_task.run());
        Ok(Inbox::new(receiver))
    }
}

/// Exponential backoff for retries: 100 ms doubling to 5 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

struct Publisher {
    jetstream: jetstream::Context,
    chunk_size: usize,
    id_prefix: String,
    sequence: u64,
}

impl Publisher {
    async fn run(mut self, mut queue: UnboundedReceiver<Outgoing>, published: watch::Sender<u64>) {
        while let Some(message) = queue.recv().await {
            self.sequence += 1;
            let id = format!("{}-{}", self.id_prefix, self.sequence);
            self.publish(&id, &message).await;
            published.send_modify(|p| *p += 1);
        }
    }

    /// Publishes every chunk of `message` until each publish is acknowledged.
    async fn publish(&self, id: &str, message: &Outgoing) {
        let parts = chunk::split(id, &message.bytes, self.chunk_size);
        let mut in_flight = VecDeque::new();
        for (meta, range) in &parts {
            if in_flight.len() >= WINDOW
                && let Some((meta, range, ack)) = in_flight.pop_front()
            {
                self.settle(message, meta, range, ack).await;
            }
            let ack = self.try_publish(message, meta, range.clone()).await;
            in_flight.push_back((meta, range.clone(), ack));
        }
        while let Some((meta, range, ack)) = in_flight.pop_front() {
            self.settle(message, meta, range, ack).await;
        }
        tracing::debug!(id, subject = %message.subject, chunks = parts.len(), bytes = message.bytes.len(), "published");
    }

    async fn try_publish(
        &self,
        message: &Outgoing,
        meta: &ChunkMeta,
        range: std::ops::Range<usize>,
    ) -> Option<jetstream::context::PublishAckFuture> {
        let payload = message.bytes[range].to_vec();
        match self
            .jetstream
            .publish_with_headers(
                message.subject.clone(),
                headers(meta, message.traceparent.as_deref()),
                payload.into(),
            )
            .await
        {
            Ok(ack) => Some(ack),
            Err(error) => {
                tracing::warn!(id = %meta.message_id, chunk = meta.index, %error, "publish failed; retrying");
                None
            }
        }
    }

    /// Awaits a chunk's publish ack; on failure re-publishes it (same `Nats-Msg-Id`) with
    /// backoff until the server acknowledges it.
    async fn settle(
        &self,
        message: &Outgoing,
        meta: &ChunkMeta,
        range: std::ops::Range<usize>,
        mut ack: Option<jetstream::context::PublishAckFuture>,
    ) {
        let mut backoff = Backoff::new();
        loop {
            if let Some(pending) = ack.take() {
                match pending.await {
                    Ok(_) => return,
                    Err(error) => {
                        tracing::warn!(id = %meta.message_id, chunk = meta.index, %error, "publish not acknowledged; retrying");
                    }
                }
                backoff.wait().await;
            }
            ack = self.try_publish(message, meta, range.clone()).await;
            if ack.is_none() {
                backoff.wait().await;
            }
        }
    }
}

/// The headers of one chunk.
fn headers(meta: &ChunkMeta, traceparent: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(H_SCHEMA, SCHEMA);
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{}:{}", meta.message_id, meta.index),
    );
    h.insert(H_ID, meta.message_id.as_str());
    h.insert(H_INDEX, meta.index.to_string());
    h.insert(H_COUNT, meta.count.to_string());
    h.insert(H_CRC, format!("{:08x}", meta.crc32));
    h.insert(H_SIZE, meta.total_len.to_string());
    h.insert(H_SHA, meta.sha256.as_str());
    if let Some(t) = traceparent {
        h.insert(H_TRACE, t);
    }
    h
}

/// Reads a chunk's [`ChunkMeta`] from its headers.
fn parse_headers(h: Option<&HeaderMap>) -> Result<ChunkMeta, String> {
    let h = h.ok_or("no headers")?;
    let get = |name: &str| {
        h.get(name)
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| format!("no {name} header"))
    };
    let schema = get(H_SCHEMA)?;
    if schema != SCHEMA {
        return Err(format!(
            "{H_SCHEMA} {schema} is not {SCHEMA}: the sender runs another engine version (upgrade the older one)"
        ));
    }
    let number = |name: &str| -> Result<u64, String> {
        get(name)?
            .parse()
            .map_err(|_| format!("{name} is not a number"))
    };
    let index = u32::try_from(number(H_INDEX)?).map_err(|_| "chunk index too large")?;
    let count = u32::try_from(number(H_COUNT)?).map_err(|_| "chunk count too large")?;
    let crc32 = u32::from_str_radix(&get(H_CRC)?, 16).map_err(|_| format!("bad {H_CRC}"))?;
    Ok(ChunkMeta {
        message_id: get(H_ID)?,
        index,
        count,
        crc32,
        total_len: number(H_SIZE)?,
        sha256: get(H_SHA)?,
    })
}

struct Receiver {
    jetstream: jetstream::Context,
    stream: String,
    durable: String,
    filter: String,
    /// The open inbox, if any; closed when every transport clone is gone.
    inbox: watch::Receiver<OpenInbox>,
    /// A complete message whose inbox closed before it could be delivered, with its chunks.
    held: Option<(Vec<u8>, Vec<jetstream::Message>)>,
    reassemblers: HashMap<String, Reassembler<jetstream::Message>>,
}

impl Receiver {
    /// The open inbox: waits while none is open; `None` once the transport and its last
    /// inbox are gone.
    async fn inbox(&mut self) -> Option<UnboundedSender<Vec<u8>>> {
        loop {
            if let Some(inbox) = self.inbox.borrow_and_update().as_ref()
                && !inbox.is_closed()
            {
                return Some(inbox.clone());
            }
            self.inbox.changed().await.ok()?;
        }
    }

    /// Delivers the held message, if any; `false` when the inbox closed again.
    async fn deliver_held(&mut self, inbox: &UnboundedSender<Vec<u8>>) -> bool {
        if let Some((message, tokens)) = self.held.take() {
            if let Err(returned) = inbox.send(message) {
                self.held = Some((returned.0, tokens));
                return false;
            }
            for token in tokens {
                ack(&token, jetstream::AckKind::Ack).await;
            }
        }
        true
    }

    /// Feeds the open inbox until the transport and its inbox are gone, pulling only while an
    /// inbox is open, and re-creating the consumer's message stream after errors (with
    /// backoff).
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        loop {
            let Some(inbox) = self.inbox().await else {
                return;
            };
            let messages = match self.messages().await {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(durable = %self.durable, %error, "cannot open the JetStream consumer; retrying");
                    backoff.wait().await;
                    continue;
                }
            };
            drop(inbox);
            let mut messages = std::pin::pin!(messages);
            let mut errors = 0;
            loop {
                let Some(inbox) = self.inbox().await else {
                    return;
                };
                if !self.deliver_held(&inbox).await {
                    continue;
                }
                let next = tokio::select! {
                    () = inbox.closed() => continue,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        errors = 0;
                        backoff = Backoff::new();
                        self.handle(&inbox, message).await;
                    }
                    Some(Err(error)) => {
                        errors += 1;
                        tracing::warn!(durable = %self.durable, %error, "JetStream consumer error");
                        if errors >= 5 {
                            break;
                        }
                    }
                    None => break,
                }
            }
            backoff.wait().await;
        }
    }

    async fn messages(&self) -> Result<consumer::pull::Stream, String> {
        let stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let consumer = stream
            .get_or_create_consumer(
                &self.durable,
                consumer::pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subject: self.filter.clone(),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(120),
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        consumer
            .stream()
            .max_messages_per_batch(FETCH)
            .heartbeat(Duration::from_secs(15))
            .messages()
            .await
            .map_err(|e| e.to_string())
    }

    async fn handle(&mut self, inbox: &UnboundedSender<Vec<u8>>, message: jetstream::Message) {
        let meta = match parse_headers(message.headers.as_ref()) {
            Ok(meta) => meta,
            Err(error) => {
                tracing::error!(subject = %message.subject, %error, "discarding a message that is not a fedengine chunk");
                ack(&message, jetstream::AckKind::Term).await;
                return;
            }
        };
        let reassembler = self
            .reassemblers
            .entry(message.subject.to_string())
            .or_default();
        let payload = message.payload.clone();
        let subject = message.subject.to_string();
        for outcome in reassembler.push(meta, &payload, message) {
            match outcome {
                Outcome::Pending => {}
                Outcome::Complete {
                    message_id,
                    message,
                    tokens,
                } => {
                    tracing::debug!(%subject, %message_id, bytes = message.len(), "received");
                    if let Err(returned) = inbox.send(message) {
                        // Closed meanwhile: kept for the next inbox opened on this transport.
                        self.held = Some((returned.0, tokens));
                        continue;
                    }
                    for token in tokens {
                        ack(&token, jetstream::AckKind::Ack).await;
                    }
                }
                Outcome::Failed { error, tokens } => {
                    tracing::error!(%subject, %error, "discarding a message that cannot be reassembled");
                    for token in tokens {
                        ack(&token, jetstream::AckKind::Term).await;
                    }
                }
                Outcome::Stale(token) => ack(&token, jetstream::AckKind::Ack).await,
            }
        }
    }
}

async fn ack(message: &jetstream::Message, kind: jetstream::AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // Not fatal: the chunk is redelivered after `ack_wait` and dropped as stale.
        tracing::warn!(subject = %message.subject, %error, "acknowledging a chunk failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_are_checked() {
        let (meta, _) = chunk::split("node-1-abc-7", b"hello world", 4).remove(1);
        let h = headers(
            &meta,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(parse_headers(Some(&h)), Ok(meta));
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some("node-1-abc-7:1")
        );
        let mut newer = h;
        newer.insert(H_SCHEMA, "2");
        assert!(parse_headers(Some(&newer)).is_err_and(|e| e.contains("Fedengine-Schema 2")));
        assert!(parse_headers(None).is_err());
    }

    #[test]
    fn subjects_and_names() {
        assert_eq!(to_subject("t1", "site-1"), "fedengine.t1.to.site-1");
        assert_eq!(from_subject("t1", "site-1"), "fedengine.t1.from.site-1");
        assert_eq!(stream_name("t1"), "fedengine-t1");
        assert!(valid_name("site_1-A"));
        for bad in ["", "a.b", "a*", ">", "a b", "ü"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
