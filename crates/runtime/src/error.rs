//! Errors of running a federated task.

use std::path::PathBuf;

use thiserror::Error;

/// Why a task could not run or finish.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The model package cannot be used.
    #[error("{}: {message}", path.display())]
    Package {
        /// The package.
        path: PathBuf,
        /// Every problem.
        message: String,
    },
    /// A node's dataset cannot be used.
    #[error("node `{node}`: {source}")]
    Data {
        /// The node.
        node: String,
        /// What is wrong.
        source: Box<fl_data::DataError>,
    },
    /// Building, training or evaluating a model failed.
    #[error("node `{node}`: {source}")]
    Model {
        /// The node.
        node: String,
        /// What failed.
        source: Box<fl_torch::ModelError>,
    },
    /// Encoding or decoding a message failed.
    #[error("message: {0}")]
    Codec(Box<fl_tensor::CodecError>),
    /// Aggregation failed.
    #[error("aggregation: {0}")]
    Aggregate(Box<fl_tensor::AggregateError>),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(String),
    /// Too few participants answered a round, even after the allowed retries.
    #[error(
        "round {round}: only {accepted} of the {quorum} updates the quorum requires arrived after {attempts} attempt(s); missing: {missing}"
    )]
    NoQuorum {
        /// The round.
        round: u64,
        /// Updates accepted in the last attempt.
        accepted: usize,
        /// The quorum.
        quorum: usize,
        /// Attempts made.
        attempts: u32,
        /// Nodes that did not deliver.
        missing: String,
    },
    /// A node did not check in within the schedule timeout.
    #[error("nodes did not check in within the schedule timeout ({timeout}): {missing}")]
    CheckIn {
        /// The timeout, as written.
        timeout: String,
        /// The nodes.
        missing: String,
    },
    /// The initiator could not evaluate.
    #[error("evaluation on `{node}` failed: {reason}")]
    Evaluation {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The task cannot be resumed, or a checkpoint not written.
    #[error("recover: {0}")]
    Recover(Box<crate::checkpoint::RecoverError>),
    /// A node's agent is not there, refused the task, or could not set the node up.
    #[error("node `{node}`: {reason}")]
    Agent {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Writing results or logs failed.
    #[error("{}: {message}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The directory belongs to another running process.
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
}
