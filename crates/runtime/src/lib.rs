//! The FedAvg runtime: a declared workflow run end to end.
//!
//! Each node (the initiator and every participant) hosts Dataset, Trainer and Validator
//! actors behind a node actor that talks to the coordinator through a [`Transport`]; the
//! coordinator drives rounds (check-in, broadcast, local training, streaming aggregation,
//! validation, test, early stopping) and the Packager writes the results. Everything crosses
//! the transport as MessagePack envelopes (`fl-tensor`), so the in-process transport used by
//! default and the NATS transport carry the same bytes.

mod aggregator;
mod coordinator;
mod error;
pub mod events;
pub mod node;
pub mod packager;
mod recorder;
pub mod results;
mod stopping;
mod task;

pub use error::RuntimeError;
pub use events::TaskEvent;
pub use fl_transport::{COORDINATOR, InProcess, Inbox, Transport, TransportError};
pub use task::{RunOptions, TaskReport, run_embedded};
