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
//! when given ([`Transport::send_traced`]; it comes out in [`Delivery::traceparent`](crate::Delivery)), and `Nats-Msg-Id: <message id>:<index>`.
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
//! message's SHA-256 and length verified. Headers are checked against limits before anything
//! is kept: the announced size against the largest message accepted
//! ([`NatsOptions::max_message`], lowered per task with [`Transport::limit_messages`]), the
//! chunk count against what that size needs, chunk sizes against the server's `max_payload`;
//! a refused message is acknowledged (`Term`: never redelivered), logged and counted
//! ([`NatsTransport::refused_messages`]). A delivered message names its sender
//! ([`Delivery::from`](crate::Delivery)) from the subject it came on, never from its bytes. A message is delivered to the [`Inbox`] only whole
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
mod connection;
mod control;
mod headers;
mod options;
pub mod permissions;
mod publisher;
mod receiver;
mod version;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::ServerInfo;
use async_nats::jetstream::{self, stream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::watch;

pub use self::control::{ControlConnection, ControlError, Request, Requests};
pub use self::headers::{HEADROOM, SCHEMA};
use self::options::valid_name;
pub use self::options::{
    DEFAULT_MAX_MESSAGE, NatsError, NatsOptions, from_subject, stream_name, to_subject,
};
use self::publisher::{Outgoing, Publisher};
use self::receiver::{Guard, OpenInbox, Receiver, Senders};
pub use self::version::{MIN_SERVER_VERSION, check_server_version, parse_version};
use crate::base::{COORDINATOR, Inbox, Transport, TransportError};

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
    /// Limits and refusals shared with the receiver task.
    guard: Arc<Guard>,
    /// The open inbox, watched by the receiver task (started by the first `open`).
    inbox: Mutex<(watch::Sender<OpenInbox>, bool)>,
}

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
        // Replies come to this endpoint's own inbox prefix, which NATS permissions can give
        // to it alone (see `permissions`).
        let client = connection::connect_client(
            &options,
            permissions::inbox_prefix(&task, &endpoint),
            format!("fedengine-{task}-{endpoint}"),
        )
        .await?;
        let info: ServerInfo = client.server_info();

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
            chunk_size = chunk_size.min(cap.max(chunk::MIN_CHUNK));
        }
        let guard = Arc::new(Guard {
            max_message: AtomicU64::new(options.max_message),
            max_chunk: max_payload,
            refused: AtomicU64::new(0),
        });

        let (outgoing, queue) = unbounded_channel();
        let (published_tx, published) = watch::channel(0);
        let publisher = Publisher::new(jetstream.clone(), chunk_size, &endpoint);
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
                guard,
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

    /// Lowers (never raises) the largest message this transport's inbox accepts, from the
    /// configured [`NatsOptions::max_message`] to what the task needs (the runtime sets it
    /// from the model's size). Chunks announcing a larger message are refused unread.
    pub fn limit_messages(&self, bytes: u64) {
        self.inner
            .guard
            .max_message
            .fetch_min(bytes, Ordering::Relaxed);
    }

    /// The largest message this transport's inbox accepts now.
    pub fn message_limit(&self) -> u64 {
        self.inner.guard.max_message.load(Ordering::Relaxed)
    }

    /// How many messages the inbox refused (not fedengine chunks, over the limits,
    /// inconsistent, corrupt or incomplete); each was acknowledged so that it is not
    /// delivered again.
    pub fn refused_messages(&self) -> u64 {
        self.inner.guard.refused.load(Ordering::Relaxed)
    }

    /// [`Transport::send`] with a W3C `traceparent` carried in the chunks' headers.
    fn publish(
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
    fn send_traced(
        &self,
        to: &str,
        bytes: Vec<u8>,
        traceparent: Option<String>,
    ) -> Result<(), TransportError> {
        self.publish(to, bytes, traceparent)
    }

    /// Lowers the limit from the configured [`NatsOptions::max_message`] to what the task
    /// needs (the runtime sets it from the model's size). Chunks announcing a larger message
    /// are refused unread.
    fn limit_messages(&self, bytes: u64) {
        self.inner
            .guard
            .max_message
            .fetch_min(bytes, Ordering::Relaxed);
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
        // Who sent a message is the endpoint whose subject it came on: only that endpoint's
        // NATS user may publish there (see `permissions`).
        let (filter, senders) = if inner.endpoint == COORDINATOR {
            (
                format!("fedengine.{}.from.>", inner.task),
                Senders::Nodes {
                    prefix: from_subject(&inner.task, ""),
                },
            )
        } else {
            let subject = to_subject(&inner.task, &inner.endpoint);
            (subject.clone(), Senders::Coordinator { subject })
        };
        let receiver_task = Receiver::new(
            inner.jetstream.clone(),
            stream_name(&inner.task),
            inner.endpoint.clone(),
            filter,
            senders,
            inner.guard.clone(),
            inbox.subscribe(),
        );
        inner.runtime.spawn(receiver_task.run());
        Ok(Inbox::new(receiver))
    }
}
