//! What a running task reports as it goes, for progress bars, the console and tests.

use fl_telemetry::LogLine;
use serde::{Deserialize, Serialize};

use crate::results::RoundSummary;

/// One thing that happened in a task. Serializable: `engine submit --nats` receives them
/// from the coordinator service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TaskEvent {
    /// A node checked in with its sample counts.
    CheckedIn {
        /// The node.
        node: String,
        /// Training samples.
        train: u64,
    },
    /// A round (or a retry of it) started, asking these nodes to train.
    RoundStarted {
        /// 1-based round.
        round: u64,
        /// 1-based attempt.
        attempt: u32,
        /// The training nodes asked.
        nodes: Vec<String>,
        /// The maximum number of rounds.
        max_rounds: u64,
    },
    /// A node finished a local epoch.
    EpochFinished {
        /// The round.
        round: u64,
        /// The node.
        node: String,
        /// 1-based local epoch.
        epoch: u32,
        /// Local epochs in the round.
        epochs: u32,
        /// The epoch's training loss.
        loss: Option<f64>,
    },
    /// An update was accepted into the round.
    UpdateAccepted {
        /// The round.
        round: u64,
        /// The node.
        node: String,
        /// Its sample count.
        samples: u64,
        /// Its training loss.
        loss: Option<f64>,
        /// Seconds the node spent training (as it reports).
        train_seconds: Option<f64>,
    },
    /// An update was rejected (and left out).
    UpdateRejected {
        /// The round.
        round: u64,
        /// The node, when known.
        node: String,
        /// Why.
        reason: String,
    },
    /// A node was left out of a round (timeout or failure).
    Dropped {
        /// The round.
        round: u64,
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// A round is done.
    RoundFinished(RoundSummary),
    /// A line of the task log.
    Log(LogLine),
}
