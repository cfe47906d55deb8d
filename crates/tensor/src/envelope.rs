//! The messages that cross actor and process boundaries: a versioned envelope and its body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::schedule::{Decision, Schedule};
use crate::set::TensorSet;

/// The envelope layout this crate writes and reads. A message with another version is
/// refused with [`CodecError::SchemaVersion`](crate::CodecError::SchemaVersion).
///
/// Version 2 replaced per-split evaluation (`Evaluate`, `Metrics`) with the initiator's
/// round-end decision and final test ([`Body::Decide`], [`Body::Decided`], [`Body::Finish`],
/// [`Body::Finished`]).
pub const SCHEMA_VERSION: u32 = 2;

/// One message: who sent what, for which task and round.
///
/// Encoded as a MessagePack map with named fields (`rmp_serde::to_vec_named`), tensor data
/// as raw little-endian `bin`, each tensor with its CRC-32. `T` is [`TensorSet`] for owned
/// messages and [`TensorSetView`](crate::TensorSetView) for ones decoded without copying.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T = TensorSet> {
    /// The layout version, [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u32,
    /// The task this message belongs to.
    pub task_id: String,
    /// The FedAvg round (0 is the first).
    pub round: u64,
    /// The node that sent it.
    pub sender: String,
    /// What it says.
    pub body: Body<T>,
}

impl<T> Envelope<T> {
    /// Creates an envelope of the current [`SCHEMA_VERSION`].
    pub fn new(
        task_id: impl Into<String>,
        round: u64,
        sender: impl Into<String>,
        body: Body<T>,
    ) -> Self {
        Envelope {
            schema_version: SCHEMA_VERSION,
            task_id: task_id.into(),
            round,
            sender: sender.into(),
            body,
        }
    }

    /// Converts the tensors of the body, keeping everything else.
    pub(crate) fn try_map_tensors<U, E>(
        self,
        f: impl FnOnce(T) -> Result<U, E>,
    ) -> Result<Envelope<U>, E> {
        Ok(Envelope {
            schema_version: self.schema_version,
            task_id: self.task_id,
            round: self.round,
            sender: self.sender,
            body: self.body.try_map_tensors(f)?,
        })
    }
}

/// What a message says. New kinds of message are new variants; a reader that meets a
/// variant it does not know refuses the message as malformed.
///
/// Variants are encoded as a one-entry map from the snake_case variant name to a map of
/// the fields, e.g. `{"update": {"samples": 120, ...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body<T = TensorSet> {
    /// The coordinator's weights for a round, broadcast to participants.
    GlobalWeights {
        /// `tensors.digest()`, checked on decoding.
        digest: Digest,
        /// The weights.
        tensors: T,
    },
    /// A participant's weights after local training from the global weights.
    Update {
        /// Training samples behind these weights (the FedAvg weight); must be positive.
        samples: u64,
        /// Digest of the global weights training started from.
        base_digest: Digest,
        /// Local training metrics.
        metrics: Metrics,
        /// The trained weights: same names, dtypes and shapes as the global weights.
        tensors: T,
    },
    /// A node checks in: it is ready, with this many samples per split.
    Hello {
        /// Training samples.
        train: u64,
        /// Validation samples.
        validation: u64,
        /// Test samples.
        test: u64,
    },
    /// The coordinator asks a node to train `merge_epochs` epochs from the global weights
    /// with this digest (sent before in [`Body::GlobalWeights`]).
    Train {
        /// The global weights to start from.
        digest: Digest,
        /// Local epochs.
        merge_epochs: u32,
    },
    /// The coordinator asks the initiator to validate the round's global weights (with this
    /// digest, sent before), to decide on the best state and the end of the task, and, when
    /// `test`, to test them too.
    Decide {
        /// The round's global weights.
        digest: Digest,
        /// The task so far (the initiator fills in this round's validation metrics).
        schedule: Schedule,
        /// Test the weights as well (the workflow's `log_rounds`).
        test: bool,
    },
    /// The initiator's answer to [`Body::Decide`].
    Decided {
        /// The validation metrics, when the initiator has validation data.
        validation: Option<Metrics>,
        /// The test metrics, when asked and the initiator has test data.
        test: Option<Metrics>,
        /// The model's decision.
        decision: Decision,
    },
    /// The coordinator asks the initiator to test the best weights (with this digest) and to
    /// write the model's extra result files.
    Finish {
        /// The best weights.
        digest: Digest,
    },
    /// The initiator's answer to [`Body::Finish`].
    Finished {
        /// The test metrics, when the initiator has test data.
        test: Option<Metrics>,
        /// The model's extra files for the result package (`path` is inside `model.zip`).
        files: Vec<PackageFile>,
    },
    /// A node finished one local epoch of a round (progress only).
    Progress {
        /// 1-based local epoch.
        epoch: u32,
        /// Local epochs in the round.
        epochs: u32,
        /// The epoch's training loss.
        loss: Option<f64>,
    },
    /// A node could not do what it was asked.
    Failed {
        /// Why, for the task log.
        reason: String,
    },
    /// The task is over; the node may stop.
    Stop {
        /// Why.
        reason: String,
    },
    /// The coordinator hands a node on another machine (an agent) what it needs for the
    /// task: the model package's files, the task's labels and the training options. Sent
    /// once, before anything else.
    Setup {
        /// The package's files (model card, configs, weights), each at most once.
        files: Vec<PackageFile>,
        /// The task's labels, in class-index order.
        labels: Vec<String>,
        /// The training options as JSON (seed, threads, hyper-parameter overrides).
        options: String,
    },
    /// A line of a remote node's task log, for the coordinator's `task.log`.
    Log {
        /// When it was written: milliseconds since the Unix epoch.
        unix_ms: u64,
        /// `debug`, `info`, `warn` or `error`.
        level: String,
        /// The text.
        message: String,
    },
}

/// One file of a model package in a [`Body::Setup`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageFile {
    /// The path inside the package, `/`-separated and relative.
    pub path: String,
    /// The contents.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl<T> Body<T> {
    /// Returns the variant's name as encoded (`global_weights`, `update`, `metrics`).
    pub fn kind(&self) -> &'static str {
        match self {
            Body::GlobalWeights { .. } => "global_weights",
            Body::Update { .. } => "update",
            Body::Hello { .. } => "hello",
            Body::Train { .. } => "train",
            Body::Decide { .. } => "decide",
            Body::Decided { .. } => "decided",
            Body::Finish { .. } => "finish",
            Body::Finished { .. } => "finished",
            Body::Progress { .. } => "progress",
            Body::Failed { .. } => "failed",
            Body::Stop { .. } => "stop",
            Body::Setup { .. } => "setup",
            Body::Log { .. } => "log",
        }
    }

    /// Returns the tensors the body carries, if any.
    pub fn tensors(&self) -> Option<&T> {
        match self {
            Body::GlobalWeights { tensors, .. } | Body::Update { tensors, .. } => Some(tensors),
            _ => None,
        }
    }

    fn try_map_tensors<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Body<U>, E> {
        Ok(match self {
            Body::GlobalWeights { digest, tensors } => Body::GlobalWeights {
                digest,
                tensors: f(tensors)?,
            },
            Body::Update {
                samples,
                base_digest,
                metrics,
                tensors,
            } => Body::Update {
                samples,
                base_digest,
                metrics,
                tensors: f(tensors)?,
            },
            Body::Hello {
                train,
                validation,
                test,
            } => Body::Hello {
                train,
                validation,
                test,
            },
            Body::Train {
                digest,
                merge_epochs,
            } => Body::Train {
                digest,
                merge_epochs,
            },
            Body::Decide {
                digest,
                schedule,
                test,
            } => Body::Decide {
                digest,
                schedule,
                test,
            },
            Body::Decided {
                validation,
                test,
                decision,
            } => Body::Decided {
                validation,
                test,
                decision,
            },
            Body::Finish { digest } => Body::Finish { digest },
            Body::Finished { test, files } => Body::Finished { test, files },
            Body::Progress {
                epoch,
                epochs,
                loss,
            } => Body::Progress {
                epoch,
                epochs,
                loss,
            },
            Body::Failed { reason } => Body::Failed { reason },
            Body::Stop { reason } => Body::Stop { reason },
            Body::Setup {
                files,
                labels,
                options,
            } => Body::Setup {
                files,
                labels,
                options,
            },
            Body::Log {
                unix_ms,
                level,
                message,
            } => Body::Log {
                unix_ms,
                level,
                message,
            },
        })
    }
}

impl Body {
    /// Creates a [`Body::GlobalWeights`] with the tensors' digest.
    pub fn global_weights(tensors: TensorSet) -> Self {
        Body::GlobalWeights {
            digest: tensors.digest(),
            tensors,
        }
    }
}

/// Loss and accuracy, plus any other named value; each may be absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Mean loss.
    pub loss: Option<f64>,
    /// Accuracy in `[0, 1]`.
    pub accuracy: Option<f64>,
    /// Other values by name (e.g. `auc`).
    pub extra: BTreeMap<String, f64>,
}
