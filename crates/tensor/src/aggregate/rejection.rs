//! Why an update was refused, and why a round could not be aggregated.

use crate::codec::CodecError;
use crate::digest::Digest;
use crate::dtype::DType;
use crate::spool::SpoolError;

/// Why [`Aggregator::offer`](crate::Aggregator::offer) refused an update. Nothing of the
/// update was kept; the caller logs the rejection (its text names the sender, the tensor
/// and what was expected) and carries on with the round.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The bytes are not a valid message (see [`CodecError`]); a checksum mismatch has its
    /// own variant.
    #[error("undecodable update: {0}")]
    Undecodable(CodecError),
    /// A tensor's data does not match its CRC-32: corrupted in transit or on disk.
    #[error(
        "update rejected: tensor `{tensor}`: checksum mismatch: message says crc32 {expected:08x}, data has {actual:08x}"
    )]
    Checksum {
        /// The tensor's name.
        tensor: String,
        /// The checksum in the message.
        expected: u32,
        /// The checksum of the data received.
        actual: u32,
    },
    /// The message is not an update.
    #[error("update rejected: `{sender}` sent a `{kind}` message, not an update")]
    NotAnUpdate {
        /// The sender named in the message.
        sender: String,
        /// The message's kind.
        kind: &'static str,
    },
    /// The update belongs to another task.
    #[error(
        "update rejected: `{sender}` sent an update for task `{found}`, expected task `{expected}`"
    )]
    WrongTask {
        /// The sender.
        sender: String,
        /// This aggregator's task.
        expected: String,
        /// The update's task.
        found: String,
    },
    /// The update belongs to another round (typically a late one).
    #[error(
        "update rejected: `{sender}` sent an update for round {found}, expected round {expected}"
    )]
    WrongRound {
        /// The sender.
        sender: String,
        /// This aggregator's round.
        expected: u64,
        /// The update's round.
        found: u64,
    },
    /// The sender is not a participant of this round.
    #[error("update rejected: `{sender}` is not a participant of this round")]
    UnknownSender {
        /// The sender.
        sender: String,
    },
    /// The sender's update for this round was already accepted; the first one stands.
    #[error("update rejected: `{sender}` already sent an update for this round")]
    DuplicateSender {
        /// The sender.
        sender: String,
    },
    /// The update claims no training samples.
    #[error("update rejected: `{sender}` reports 0 training samples (must be at least 1)")]
    NoSamples {
        /// The sender.
        sender: String,
    },
    /// The update claims more training samples than its sender registered for the task.
    #[error(
        "update rejected: `{sender}` reports {samples} training samples, more than the {registered} it checked in with"
    )]
    TooManySamples {
        /// The sender.
        sender: String,
        /// The samples the update claims.
        samples: u64,
        /// The samples the sender registered.
        registered: u64,
    },
    /// The update was trained from other weights than this round's global weights.
    #[error(
        "update rejected: `{sender}` trained from weights {found}, expected this round's global weights {expected}"
    )]
    BaseDigest {
        /// The sender.
        sender: String,
        /// This round's global digest.
        expected: Digest,
        /// The base digest the update names.
        found: Digest,
    },
    /// A tensor of the global model is missing from the update.
    #[error("update rejected: `{sender}` has no tensor `{tensor}`")]
    MissingTensor {
        /// The sender.
        sender: String,
        /// The missing tensor.
        tensor: String,
    },
    /// The update has a tensor the global model does not have.
    #[error(
        "update rejected: `{sender}` has tensor `{tensor}`, which the global model does not have"
    )]
    UnexpectedTensor {
        /// The sender.
        sender: String,
        /// The extra tensor.
        tensor: String,
    },
    /// A tensor has another element type than in the global model.
    #[error("update rejected: `{sender}`: tensor `{tensor}` is {found}, expected {expected}")]
    DTypeMismatch {
        /// The sender.
        sender: String,
        /// The tensor.
        tensor: String,
        /// The global model's dtype.
        expected: DType,
        /// The update's dtype.
        found: DType,
    },
    /// A tensor has another shape than in the global model.
    #[error(
        "update rejected: `{sender}`: tensor `{tensor}` has shape {found:?}, expected {expected:?}"
    )]
    ShapeMismatch {
        /// The sender.
        sender: String,
        /// The tensor.
        tensor: String,
        /// The global model's shape.
        expected: Vec<u64>,
        /// The update's shape.
        found: Vec<u64>,
    },
    /// A floating-point value is NaN or infinite (diverged training).
    #[error(
        "update rejected: `{sender}`: tensor `{tensor}` has {value} at element {index} (values must be finite)"
    )]
    NonFinite {
        /// The sender.
        sender: String,
        /// The tensor.
        tensor: String,
        /// The flat (row-major) index of the first such element.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// The update could not be stored; not the sender's fault (the round may retry it).
    #[error("update from `{sender}` could not be stored: {source}")]
    Spool {
        /// The sender.
        sender: String,
        /// What failed.
        source: SpoolError,
    },
}

impl Rejection {
    /// Returns the sender named in the message, when it could be read.
    pub fn sender(&self) -> Option<&str> {
        match self {
            Rejection::Undecodable(_) | Rejection::Checksum { .. } => None,
            Rejection::NotAnUpdate { sender, .. }
            | Rejection::WrongTask { sender, .. }
            | Rejection::WrongRound { sender, .. }
            | Rejection::UnknownSender { sender }
            | Rejection::DuplicateSender { sender }
            | Rejection::NoSamples { sender }
            | Rejection::TooManySamples { sender, .. }
            | Rejection::BaseDigest { sender, .. }
            | Rejection::MissingTensor { sender, .. }
            | Rejection::UnexpectedTensor { sender, .. }
            | Rejection::DTypeMismatch { sender, .. }
            | Rejection::ShapeMismatch { sender, .. }
            | Rejection::NonFinite { sender, .. }
            | Rejection::Spool { sender, .. } => Some(sender),
        }
    }
}

impl From<CodecError> for Rejection {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Checksum {
                tensor,
                expected,
                actual,
            } => Rejection::Checksum {
                tensor,
                expected,
                actual,
            },
            other => Rejection::Undecodable(other),
        }
    }
}

/// Why an [`Aggregator`](crate::Aggregator) could not be created or finish its round.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// No participant was named for the round.
    #[error("round {round}: no participant is expected")]
    NoParticipants {
        /// The round.
        round: u64,
    },
    /// `finish` was called before any update was accepted.
    #[error("round {round}: no update was accepted, nothing to aggregate")]
    NoUpdates {
        /// The round.
        round: u64,
    },
    /// The spool directory could not be used.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// An update found in the spool (left by an earlier process, or damaged since it was
    /// accepted) is not valid for this round.
    #[error("spooled update of `{sender}` is not valid for this round: {rejection}")]
    Spooled {
        /// The spooled update's sender.
        sender: String,
        /// What is wrong with it.
        rejection: Box<Rejection>,
    },
}
