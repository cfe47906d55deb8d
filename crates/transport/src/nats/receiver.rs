//! The receiver task: pulls chunks from the endpoint's durable consumer, reassembles them and
//! delivers whole, verified messages to the open inbox.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;
use tokio::sync::mpsc::UnboundedSender;

use super::headers::TRACEPARENT;
use crate::base::Delivery;
use tokio::sync::watch;

use super::chunk::{Outcome, Reassembler};
use super::headers::parse_headers;
use super::publisher::Backoff;

/// Chunks a receiver fetches per pull request.
const FETCH: usize = 16;

/// The sending end of the open inbox, if any.
pub(super) type OpenInbox = Option<UnboundedSender<Delivery>>;

pub(super) struct Receiver {
    jetstream: jetstream::Context,
    stream: String,
    durable: String,
    filter: String,
    /// The open inbox, if any; closed when every transport clone is gone.
    inbox: watch::Receiver<OpenInbox>,
    /// A complete message whose inbox closed before it could be delivered, with its chunks.
    held: Option<(Delivery, Vec<jetstream::Message>)>,
    reassemblers: HashMap<String, Reassembler<jetstream::Message>>,
}

impl Receiver {
    /// A receiver for the durable consumer `durable` (filter `filter`) of `stream`, feeding
    /// the inbox `inbox` watches.
    pub(super) fn new(
        jetstream: jetstream::Context,
        stream: String,
        durable: String,
        filter: String,
        inbox: watch::Receiver<OpenInbox>,
    ) -> Self {
        Self {
            jetstream,
            stream,
            durable,
            filter,
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

    async fn handle(&mut self, inbox: &UnboundedSender<Delivery>, message: jetstream::Message) {
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
                    // The trace context travels in every chunk's headers; the first one's is
                    // the message's.
                    let traceparent = tokens
                        .first()
                        .and_then(|chunk| chunk.headers.as_ref())
                        .and_then(|h| h.get(TRACEPARENT))
                        .map(|v| v.as_str().to_owned());
                    tracing::debug!(%subject, %message_id, bytes = message.len(), traceparent = traceparent.as_deref().unwrap_or("-"), "received");
                    let delivery = Delivery {
                        bytes: message,
                        traceparent,
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
