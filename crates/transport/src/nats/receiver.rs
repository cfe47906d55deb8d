//! The receiver task: pulls chunks from the endpoint's durable consumer, reassembles them and
//! delivers whole, verified messages to the open inbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use super::chunk::{Limits, Outcome, Reassembler};
use super::headers::{parse_headers, traceparent};
use super::publisher::Backoff;
use crate::base::Delivery;

/// Chunks a receiver fetches per pull request.
const FETCH: usize = 16;

/// The sending end of the open inbox, if any.
pub(super) type OpenInbox = Option<UnboundedSender<Delivery>>;

/// What the receivers of one transport share with it: the limits chunks are checked against
/// and the count of messages refused.
#[derive(Debug)]
pub(super) struct Guard {
    /// The largest message accepted, in bytes (lowered by `Transport::limit_messages`).
    pub(super) max_message: AtomicU64,
    /// The largest chunk accepted: the server's `max_payload`.
    pub(super) max_chunk: usize,
    /// Messages refused: not chunks, over the limits, inconsistent, corrupt or incomplete.
    pub(super) refused: AtomicU64,
}

impl Guard {
    fn limits(&self) -> Limits {
        Limits {
            max_message: self.max_message.load(Ordering::Relaxed),
            max_chunk: self.max_chunk,
        }
    }
}

/// Who alone may publish on the subjects a receiver reads (under the shipped permissions).
pub(super) enum Senders {
    /// The coordinator's: `<prefix><node>` is published by that node.
    Nodes {
        /// `fedengine.<task>.from.`
        prefix: String,
    },
    /// A node's: its one subject is published by the coordinator.
    Coordinator {
        /// `fedengine.<task>.to.<node>`
        subject: String,
    },
}

pub(super) struct Receiver {
    jetstream: jetstream::Context,
    stream: String,
    durable: String,
    filter: String,
    senders: Senders,
    guard: Arc<Guard>,
    /// The open inbox, if any; closed when every transport clone is gone.
    inbox: watch::Receiver<OpenInbox>,
    /// A complete message whose inbox closed before it could be delivered, with its chunks.
    held: Option<(Delivery, Vec<jetstream::Message>)>,
    reassemblers: HashMap<String, Reassembler<jetstream::Message>>,
}

impl Receiver {
    /// A receiver for the durable consumer `durable` (filter `filter`) of `stream`, feeding
    /// the inbox `inbox` watches. `senders` says who published what comes on a subject.
    pub(super) fn new(
        jetstream: jetstream::Context,
        stream: String,
        durable: String,
        filter: String,
        senders: Senders,
        guard: Arc<Guard>,
        inbox: watch::Receiver<OpenInbox>,
    ) -> Self {
        Self {
            jetstream,
            stream,
            durable,
            filter,
            senders,
            guard,
            inbox,
            held: None,
            reassemblers: HashMap::new(),
        }
    }

    /// The open inbox: waits while none is open; `None` once the transport and its last
    /// inbox are gone.
    async fn inbox(&mut self) -> Option<UnboundedSender<Delivery>> {
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
    async fn deliver_held(&mut self, inbox: &UnboundedSender<Delivery>) -> bool {
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
    pub(super) async fn run(mut self) {
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
                    // Consumers of endpoints gone for a day are removed by the server; a
                    // returning endpoint's new consumer reads what is still unacknowledged.
                    inactive_threshold: Duration::from_secs(24 * 3600),
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

    /// The endpoint that alone may publish on `subject` (under the shipped permissions).
    fn sender_of(&self, subject: &str) -> Option<String> {
        match &self.senders {
            Senders::Nodes { prefix } => subject
                .strip_prefix(prefix.as_str())
                .filter(|node| super::options::valid_name(node))
                .map(str::to_owned),
            Senders::Coordinator { subject: own } => {
                (subject == own).then(|| crate::base::COORDINATOR.to_owned())
            }
        }
    }

    async fn refuse(&self, message: &jetstream::Message, error: &str) {
        self.guard.refused.fetch_add(1, Ordering::Relaxed);
        tracing::error!(subject = %message.subject, %error, "refused a message");
        ack(message, jetstream::AckKind::Term).await;
    }

    async fn handle(&mut self, inbox: &UnboundedSender<Delivery>, mut message: jetstream::Message) {
        let subject = message.subject.to_string();
        let Some(from) = self.sender_of(&subject) else {
            self.refuse(&message, "no endpoint publishes on this subject")
                .await;
            return;
        };
        let meta = match parse_headers(message.headers.as_ref()) {
            Ok(meta) => meta,
            Err(error) => {
                self.refuse(&message, &format!("not a fedengine chunk: {error}"))
                    .await;
                return;
            }
        };
        // Every chunk of a message carries its trace context; the chunk that completes a
        // message is one of them. The token keeps only what acknowledging needs.
        let traceparent = traceparent(message.headers.as_ref());
        let payload = std::mem::take(&mut message.message.payload);
        message.message.headers = None;
        let limits = self.guard.limits();
        let reassembler = self
            .reassemblers
            .entry(subject.clone())
            .or_insert_with(|| Reassembler::new(limits));
        reassembler.set_limits(limits);
        for outcome in reassembler.push(meta, &payload, message) {
            match outcome {
                Outcome::Pending => {}
                Outcome::Complete {
                    message_id,
                    message,
                    tokens,
                } => {
                    tracing::debug!(%subject, %message_id, bytes = message.len(), traceparent = traceparent.as_deref().unwrap_or("-"), "received");
                    let delivery = Delivery {
                        bytes: message,
                        traceparent: traceparent.clone(),
                        from: Some(from.clone()),
                    };
                    if let Err(returned) = inbox.send(delivery) {
                        // Closed meanwhile: kept for the next inbox opened on this transport.
                        self.held = Some((returned.0, tokens));
                        continue;
                    }
                    for token in tokens {
                        ack(&token, jetstream::AckKind::Ack).await;
                    }
                }
                Outcome::Failed { error, tokens } => {
                    self.guard.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%subject, %error, "refused a message that cannot be reassembled");
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
