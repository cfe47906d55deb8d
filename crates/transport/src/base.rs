//! The [`Transport`] trait: delivery of encoded envelopes between named endpoints.

use tokio::sync::mpsc::UnboundedReceiver;

/// The coordinator's address on a transport.
pub const COORDINATOR: &str = "coordinator";

/// Why a message could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nobody listens at this address.
    #[error("no endpoint `{0}` on the transport")]
    Unknown(String),
    /// The address is taken.
    #[error("endpoint `{0}` is already open")]
    Taken(String),
}

/// Delivery of encoded envelopes between named endpoints.
pub trait Transport: Send + Sync + 'static {
    /// Hands `bytes` to the endpoint `to` with a W3C trace context (`traceparent`) that
    /// travels with the message (in the NATS headers) and comes out in
    /// [`Delivery::traceparent`]. Delivery is asynchronous; an `Ok` means accepted for
    /// delivery, not received.
    fn send_traced(
        &self,
        to: &str,
        bytes: Vec<u8>,
        traceparent: Option<String>,
    ) -> Result<(), TransportError>;
    /// Opens the endpoint `name` and returns its inbox.
    fn open(&self, name: &str) -> Result<Inbox, TransportError>;
    /// [`Transport::send_traced`] without a trace context.
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.send_traced(to, bytes, None)
    }
    /// Lowers the largest message this endpoint's inbox accepts to `bytes` (never raises
    /// it). Transports that carry bytes from other machines refuse larger messages before
    /// reading them; in process there is nothing to refuse.
    fn limit_messages(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// One received message with the trace context it was sent with and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub bytes: Vec<u8>,
    /// The sender's W3C `traceparent`, when it gave one.
    pub traceparent: Option<String>,
    /// The sending endpoint as the transport knows it, not as the message says: on NATS, the
    /// node whose subject the message came on (only that node's user may publish there), or
    /// [`COORDINATOR`] for what a node receives. `None` in process, where every endpoint is
    /// the engine's own code in one process.
    pub from: Option<String>,
}

/// Messages addressed to one endpoint, in the order they were sent.
#[derive(Debug)]
pub struct Inbox(UnboundedReceiver<Delivery>);

impl Inbox {
    /// Wraps the receiving end of a channel that an implementation feeds.
    pub fn new(receiver: UnboundedReceiver<Delivery>) -> Self {
        Self(receiver)
    }
}

impl Inbox {
    /// Waits for the next message; `None` once the transport is gone.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.0.recv().await.map(|d| d.bytes)
    }

    /// Waits for the next message with its trace context.
    pub async fn recv_delivery(&mut self) -> Option<Delivery> {
        self.0.recv().await
    }
}
