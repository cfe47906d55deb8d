//! The publisher task: publishes each queued message as chunks on the task's JetStream
//! stream, awaiting publish acks and retrying with backoff.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

use super::chunk::{self, ChunkMeta};
use super::headers::headers;

/// Unacknowledged chunk publishes in flight per message.
const WINDOW: usize = 8;

#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) subject: String,
    pub(super) bytes: Vec<u8>,
    pub(super) traceparent: Option<String>,
}

/// Exponential backoff for retries: 100 ms doubling to 5 s.
#[derive(Debug)]
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Self(Duration::from_millis(100))
    }
    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

pub(super) struct Publisher {
    jetstream: jetstream::Context,
    chunk_size: usize,
    id_prefix: String,
    sequence: u64,
}

impl Publisher {
    /// A publisher for `endpoint` whose message ids are unique to this process and start.
    pub(super) fn new(jetstream: jetstream::Context, chunk_size: usize, endpoint: &str) -> Self {
        Self {
            jetstream,
            chunk_size,
            id_prefix: format!(
                "{endpoint}-{:x}-{:x}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
                std::process::id()
            ),
            sequence: 0,
        }
    }

    pub(super) async fn run(
        mut self,
        mut queue: UnboundedReceiver<Outgoing>,
        published: watch::Sender<u64>,
    ) {
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
            if meta.index as usize == (parts.len() - 1) / 2 {
                crash_mid_transfer(message.bytes.len());
            }
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

/// Messages at least this large count for the `mid-transfer` crash point (weights, not log
/// lines or control messages).
#[cfg(debug_assertions)]
const MID_TRANSFER_MIN_BYTES: usize = 16 * 1024;

/// The `mid-transfer` crash point of the recovery tests (debug builds only): with
/// `FEDENGINE_CRASH_AT=mid-transfer:N` the process kills itself (SIGKILL) once half the chunks
/// of its N-th message of at least 16 KiB are handed to the server (N = 1 without `:N`), so
/// the receiver may have part of it, or all of a one-chunk message, or nothing.
#[cfg(debug_assertions)]
fn crash_mid_transfer(bytes: usize) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LARGE: AtomicU64 = AtomicU64::new(0);
    if bytes < MID_TRANSFER_MIN_BYTES {
        return;
    }
    let count = LARGE.fetch_add(1, Ordering::SeqCst) + 1;
    let Some((point, at)) = crate::crash::armed() else {
        return;
    };
    let wanted = match at {
        _ if point != "mid-transfer" => None,
        Some(n) => n.parse::<u64>().ok(),
        None => Some(1),
    };
    if wanted == Some(count) {
        crate::crash::kill_now(&format!("`mid-transfer` in message {count}"));
    }
}

/// Release builds have no crash points.
#[cfg(not(debug_assertions))]
#[inline(always)]
fn crash_mid_transfer(_bytes: usize) {}
