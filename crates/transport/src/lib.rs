//! How fedengine's nodes and coordinator exchange messages.
//!
//! One [`Transport`] trait — hand encoded envelope bytes to a named endpoint, open an
//! endpoint's [`Inbox`] — and its implementations: [`InProcess`], the embedded default (every
//! node in one process), and NATS for nodes on other machines. Every transport carries the
//! same bytes (MessagePack envelopes from `fl-tensor`), so the runtime does not care which it
//! runs on.

mod base;
#[doc(hidden)]
pub mod crash;
mod in_process;
mod nats;

pub use base::{COORDINATOR, Delivery, Inbox, Transport, TransportError};
pub use in_process::InProcess;
pub use nats::chunk;
pub use nats::permissions;
pub use nats::{
    ControlConnection, ControlError, DEFAULT_MAX_MESSAGE, HEADROOM, MIN_SERVER_VERSION, NatsError,
    NatsOptions, NatsTransport, Request, Requests, SCHEMA, check_server_version, from_subject,
    parse_version, stream_name, to_subject,
};
