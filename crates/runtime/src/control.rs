//! The distributed runtime's control protocol: what the coordinator service, the agents and
//! the `engine submit|status|logs` clients say to each other besides the task's envelopes.
//!
//! | subject | kind | from → to |
//! |---|---|---|
//! | `fedengine.agent.<node>` | core request/reply: [`Announce`] → [`AnnounceReply`] | coordinator → the agent of `<node>` |
//! | `fedengine.coordinator.ping` | core request/reply: empty → [`Pong`] | anyone → the coordinator service |
//! | `fedengine.coordinator.status` | core request/reply: empty → `Vec<`[`TaskStatus`]`>` | anyone → the coordinator service |
//! | task `clients` on the NATS transport (`fedengine.clients.from.<client>` / `.to.<client>`) | chunked, durable: [`ClientRequest`] / [`ClientMessage`] | a client ↔ the coordinator service |
//!
//! Core request/reply is used where an immediate "nobody is there" is the point (an agent or
//! the coordinator that is not running is reported within seconds); everything that may be
//! large (a submitted model package, the result files) goes through the chunked transport.
//! Task ids always contain a `-`, so they never collide with the `agent`, `coordinator` and
//! `clients` subject tokens. All messages are MessagePack with named fields.

use fl_telemetry::LogLine;
use fl_tensor::PackageFile;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::events::TaskEvent;

/// The pseudo-task on whose stream clients talk to the coordinator service.
pub const CLIENTS_TASK: &str = "clients";
/// The pseudo-task id of control connections (their reply-inbox prefix).
pub const CONTROL_TASK: &str = "control";
/// Pings to the coordinator service.
pub const PING_SUBJECT: &str = "fedengine.coordinator.ping";
/// Status queries to the coordinator service.
pub const STATUS_SUBJECT: &str = "fedengine.coordinator.status";

/// The subject on which the agent of `node` takes task announcements.
pub fn agent_subject(node: &str) -> String {
    format!("fedengine.agent.{node}")
}

/// Encodes a control message.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data structures always encode; an empty message is refused by the reader.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// Decodes a control message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("malformed control message: {e}"))
}

/// A dataset as a workflow names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataRef {
    /// A directory on the agent's machine; it must be one the agent registered.
    Path(String),
    /// A name the agent registered with `--data NAME=DIR`.
    Name(String),
}

impl From<&fl_workflow::Dataset> for DataRef {
    fn from(dataset: &fl_workflow::Dataset) -> Self {
        match dataset {
            fl_workflow::Dataset::Path(path) => DataRef::Path(path.to_string_lossy().into_owned()),
            fl_workflow::Dataset::Named { name } => DataRef::Name(name.clone()),
        }
    }
}

impl std::fmt::Display for DataRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataRef::Path(path) => write!(f, "directory {path}"),
            DataRef::Name(name) => write!(f, "dataset `{name}`"),
        }
    }
}

/// The coordinator tells an agent that its node takes part in a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announce {
    /// The task.
    pub task_id: String,
    /// The node the agent hosts.
    pub node: String,
    /// Data whose `Train` split the node trains on.
    pub train: Option<DataRef>,
    /// Data whose `Validation` split it validates on.
    pub validation: Option<DataRef>,
    /// Data whose `Test` split it tests on.
    pub test: Option<DataRef>,
    /// Whether the agent should answer with the labels of its test data (the initiator's:
    /// they are the task's labels).
    pub want_labels: bool,
}

/// An agent's answer to an [`Announce`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnounceReply {
    /// The agent takes part; it now waits for the task's setup on the task's stream.
    Accepted {
        /// The labels of its test data, when asked.
        labels: Option<Vec<String>>,
    },
    /// It does not, and why.
    Refused {
        /// Why, for the task log.
        reason: String,
    },
}

/// The coordinator service's answer to a ping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    /// The engine version of the service.
    pub version: String,
    /// Tasks running now.
    pub running: usize,
    /// Identifies this run of the service: a client that sees it change knows the service
    /// restarted (and follows its task again).
    #[serde(default)]
    pub instance: String,
}

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Running; the last round started.
    Running {
        /// The round (0 before the first).
        round: u64,
        /// The maximum number of rounds.
        max_rounds: u64,
    },
    /// Finished and packaged.
    Finished {
        /// Rounds run.
        rounds: u64,
        /// The best state's test accuracy.
        test_accuracy: Option<f64>,
    },
    /// Failed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One task as `engine status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task id.
    pub task_id: String,
    /// The workflow's name.
    pub name: String,
    /// Where it is.
    pub state: TaskState,
    /// When it was submitted (milliseconds since the Unix epoch).
    pub submitted_ms: u64,
    /// Its directory on the coordinator's machine.
    pub output: String,
}

/// What a client asks the coordinator service, on the `clients` stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientRequest {
    /// Run a workflow.
    Submit {
        /// The workflow file's text.
        workflow: String,
        /// Its path on the submitter's machine (relative paths in it resolve against its
        /// directory: the agents' dataset directories when they are on that machine).
        path: String,
        /// The model package's files.
        package: Vec<PackageFile>,
    },
    /// Follow a task to its end and get its result files (a submitter whose coordinator
    /// restarted).
    Follow {
        /// The task.
        task_id: String,
    },
    /// Send a task's log so far and, with `follow`, its events until it ends.
    Logs {
        /// The task.
        task_id: String,
        /// Keep streaming until the task ends.
        follow: bool,
    },
}

/// What the coordinator service sends a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientMessage {
    /// The submission was accepted as this task.
    Accepted {
        /// The task id.
        task_id: String,
    },
    /// The request was refused.
    Refused {
        /// Why (for a workflow: every problem found).
        reason: String,
    },
    /// Something happened in the task (log lines come as [`TaskEvent::Log`]).
    Event(TaskEvent),
    /// Log lines written before the client asked.
    History(Vec<LogLine>),
    /// The task ended.
    Ended {
        /// The task's final status.
        status: TaskStatus,
        /// `model.zip`, for the client that submitted a finished task.
        #[serde(with = "serde_bytes")]
        model_zip: Vec<u8>,
        /// `report.zip`, likewise.
        #[serde(with = "serde_bytes")]
        report_zip: Vec<u8>,
    },
    /// Nothing more follows (`engine logs` without `--follow`, or of an ended task).
    Done {
        /// The task's status.
        status: TaskStatus,
    },
}
