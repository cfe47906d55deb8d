//! The FedAvg runtime: a declared workflow run end to end.
//!
//! Each node (the initiator and every participant) hosts Dataset, Trainer and Validator
//! actors behind a node actor that talks to the coordinator through a [`Transport`]; the
//! coordinator drives rounds (check-in, broadcast, local training, streaming aggregation,
//! validation, test, early stopping) and the Packager writes the results. Everything crosses
//! the transport as MessagePack envelopes (`fl-tensor`), so the in-process transport used by
//! default and the NATS transport carry the same bytes.
//!
//! Distributed, the same task runs in three kinds of process: the coordinator service
//! ([`run_coordinator`]), one agent per node next to its data ([`run_agent`]), and clients
//! that submit and follow tasks ([`Client`]); see [`control`] for what they say to each other.

mod agent;
mod aggregator;
mod checkpoint;
mod client;
pub mod control;
mod coordinator;
mod error;
pub mod events;
pub mod faults;
mod lock;
pub mod node;
pub mod packager;
mod preflight;
mod recorder;
mod remote;
pub mod results;
mod round;
mod service;
pub mod settings;
mod task;
pub mod trace;
pub mod workers;

pub use agent::{AgentOptions, run_agent};
pub use checkpoint::RecoverError;
pub use client::{Client, ClientError, Submitted};
pub use error::RuntimeError;
pub use events::TaskEvent;
pub use fl_transport::{COORDINATOR, InProcess, Inbox, NatsOptions, Transport, TransportError};
pub use lock::{LOCK_FILE, LockError};
pub use preflight::{NodeCheck, Preflight, preflight};
pub use service::{FromClient, ServiceOptions, run_coordinator};
pub use task::{RunOptions, TaskReport, run_embedded};
