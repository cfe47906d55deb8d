//! Streaming, order-independent FedAvg over encoded updates.

mod accumulator;
mod rejection;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub use rejection::{AggregateError, Rejection};

use crate::codec::decode_view;
use crate::digest::Digest;
use crate::envelope::{Body, Envelope, Metrics};
use crate::set::{TensorSet, TensorSetView};
use crate::spool::UpdateSpool;
use crate::tensor::first_non_finite;
use accumulator::{Accumulator, TensorSpec};

/// How updates are weighted in the mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Weighting {
    /// By training samples: `Σ n_k w_k / Σ n_k` (FedAvg as published).
    #[default]
    Samples,
    /// Every update counts once: `Σ w_k / K` (what AlphaMed does).
    Uniform,
}

/// An update that was accepted and durably spooled.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// The sender.
    pub sender: String,
    /// Its training samples.
    pub samples: u64,
    /// Its local training metrics.
    pub metrics: Metrics,
    /// Updates accepted so far in this round, this one included.
    pub accepted: usize,
    /// Participants expected in this round.
    pub expected: usize,
}

impl Accepted {
    /// Tells whether every expected participant has now sent its update.
    pub fn is_last(&self) -> bool {
        self.accepted == self.expected
    }
}

/// An update that passed every check, borrowing its tensors from the message bytes.
struct Checked<'b> {
    sender: String,
    samples: u64,
    metrics: Metrics,
    tensors: TensorSetView<'b>,
}

/// One round of FedAvg on the coordinator.
///
/// An [`Aggregator`] checks each update as it arrives ([`Aggregator::offer`]) and writes the
/// accepted ones to an [`UpdateSpool`], keeping only names and sample counts in memory.
/// [`Aggregator::finish`] then folds the spooled updates one at a time, sorted by sender, so:
///
/// - memory is about the global model's size plus one update, whatever the number of
///   participants (an `f64` accumulator per float element, plus the update being read);
/// - the result is bit-identical whatever order the updates arrived in, on every machine
///   (floating-point sums depend on their order; the fold order is canonical);
/// - the spool is the round's crash-recovery log: a new `Aggregator` on the same directory
///   picks up the updates already accepted.
///
/// Float tensors get `w = Σ n_k w_k / Σ n_k` ([`Weighting::Samples`]) or the plain mean
/// ([`Weighting::Uniform`]), computed in `f64` as a running weighted mean (so identical
/// updates give back their exact bits) and rounded to nearest in their own dtype, with the
/// same bits on every CPU (half-precision narrowing is done in integer code).
/// Integer and bool tensors (such as BatchNorm's `num_batches_tracked` counters) are not
/// averaged: they take the element-wise maximum over the participants (a logical or for
/// bools), which for a counter is the furthest any participant got.
#[derive(Debug)]
pub struct Aggregator {
    task_id: String,
    round: u64,
    weighting: Weighting,
    expected: BTreeSet<String>,
    global_digest: Digest,
    specs: Vec<TensorSpec>,
    spool: UpdateSpool,
    /// The most training samples each sender may claim, once set.
    sample_limits: Option<BTreeMap<String, u64>>,
}

impl Aggregator {
    /// Starts a round: updates must be for `task_id` and `round`, come from one of
    /// `expected`, and have been trained from `global` (its names, dtypes, shapes and
    /// digest are kept, not its data).
    ///
    /// `spool_dir` is the round's directory, created if missing. Updates already in it (left
    /// by an earlier process of the same round) are checked again one at a time and count
    /// as accepted; one that is not valid for this round is an error.
    pub fn new(
        global: &TensorSet,
        task_id: impl Into<String>,
        round: u64,
        expected: impl IntoIterator<Item = impl Into<String>>,
        weighting: Weighting,
        spool_dir: impl AsRef<Path>,
    ) -> Result<Self, AggregateError> {
        let expected: BTreeSet<String> = expected.into_iter().map(Into::into).collect();
        if expected.is_empty() {
            return Err(AggregateError::NoParticipants { round });
        }
        for sender in &expected {
            UpdateSpool::check_sender(sender)?;
        }
        let specs = global
            .iter()
            .map(|t| TensorSpec {
                name: t.name().to_owned(),
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
            })
            .collect();
        let aggregator = Aggregator {
            task_id: task_id.into(),
            round,
            weighting,
            expected,
            global_digest: global.digest(),
            specs,
            spool: UpdateSpool::open(spool_dir)?,
            sample_limits: None,
        };
        for entry in aggregator.spool.entries() {
            let bytes = aggregator.spool.read(entry)?;
            aggregator
                .check(&bytes)
                .map_err(|rejection| AggregateError::Spooled {
                    sender: entry.sender().to_owned(),
                    rejection: Box::new(rejection),
                })?;
        }
        Ok(aggregator)
    }

    /// Checks an encoded update and, when it is valid, spools it durably.
    ///
    /// On rejection nothing is written or changed. Checks: the message decodes (schema
    /// version, checksums, dtype/shape/length consistency), is an update for this task and
    /// round, from an expected sender that has not sent one yet, with at least one sample,
    /// trained from this round's global weights, with the global model's tensor names,
    /// dtypes and shapes, and only finite float values.
    pub fn offer(&mut self, bytes: &[u8]) -> Result<Accepted, Rejection> {
        let update = self.check(bytes)?;
        if let Some(limits) = &self.sample_limits {
            let registered = limits.get(&update.sender).copied().unwrap_or(0);
            if update.samples > registered {
                return Err(Rejection::TooManySamples {
                    sender: update.sender,
                    samples: update.samples,
                    registered,
                });
            }
        }
        if self.spool.get(&update.sender).is_some() {
            return Err(Rejection::DuplicateSender {
                sender: update.sender,
            });
        }
        if let Err(source) = self.spool.write(&update.sender, update.samples, bytes) {
            return Err(Rejection::Spool {
                sender: update.sender,
                source,
            });
        }
        Ok(Accepted {
            sender: update.sender,
            samples: update.samples,
            metrics: update.metrics,
            accepted: self.spool.len(),
            expected: self.expected.len(),
        })
    }

    /// Bounds the training samples each sender's updates may claim from now on by what it
    /// registered for the task (its training set's size, sent at check-in): a sender may not
    /// weigh in with more than it has. Senders missing from `registered` may claim none.
    pub fn limit_samples(&mut self, registered: BTreeMap<String, u64>) {
        self.sample_limits = Some(registered);
    }

    /// Encodes an update received as a value (in-process transport) and offers it.
    pub fn offer_envelope(&mut self, envelope: &Envelope) -> Result<Accepted, Rejection> {
        let bytes = envelope.encode().map_err(Rejection::Undecodable)?;
        self.offer(&bytes)
    }

    /// Returns the accepted updates' senders and sample counts, sorted by sender.
    pub fn accepted(&self) -> impl ExactSizeIterator<Item = (&str, u64)> {
        self.spool.entries().map(|e| (e.sender(), e.samples()))
    }

    /// Returns the expected participants that have not sent an accepted update yet.
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        self.expected
            .iter()
            .filter(|s| self.spool.get(s).is_none())
            .map(String::as_str)
    }

    /// Tells whether every expected participant has sent an accepted update.
    pub fn is_complete(&self) -> bool {
        self.spool.len() == self.expected.len()
    }

    /// Returns the total training samples of the accepted updates.
    pub fn total_samples(&self) -> u128 {
        self.spool.entries().map(|e| u128::from(e.samples())).sum()
    }

    /// Returns the task.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Returns the round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Returns the digest of the global weights updates must start from.
    pub fn global_digest(&self) -> Digest {
        self.global_digest
    }

    /// Returns the spool holding the accepted updates.
    pub fn spool(&self) -> &UpdateSpool {
        &self.spool
    }

    /// Aggregates the accepted updates into the next global weights.
    ///
    /// Updates are read back one at a time in sender order and checked again (a file damaged
    /// since it was accepted is an error, not silently averaged). It can be called again;
    /// it does not change the spool. Callers that need every participant check
    /// [`is_complete`](Self::is_complete) first.
    pub fn finish(&self) -> Result<TensorSet, AggregateError> {
        if self.spool.is_empty() {
            return Err(AggregateError::NoUpdates { round: self.round });
        }
        let mut accumulator = Accumulator::new(&self.specs);
        for entry in self.spool.entries() {
            let bytes = self.spool.read(entry)?;
            let spooled = |rejection| AggregateError::Spooled {
                sender: entry.sender().to_owned(),
                rejection: Box::new(rejection),
            };
            let update = self.check(&bytes).map_err(spooled)?;
            if update.sender != entry.sender() {
                return Err(spooled(Rejection::UnknownSender {
                    sender: update.sender,
                }));
            }
            let weight = match self.weighting {
                Weighting::Samples => update.samples,
                Weighting::Uniform => 1,
            };
            accumulator.fold(&self.specs, &update.tensors, weight);
        }
        Ok(accumulator.finish(&self.specs))
    }

    /// Makes every check of [`offer`](Self::offer) except the duplicate one.
    fn check<'b>(&self, bytes: &'b [u8]) -> Result<Checked<'b>, Rejection> {
        let envelope = decode_view(bytes)?;
        let sender = envelope.sender;
        let Body::Update {
            samples,
            base_digest,
            metrics,
            tensors,
        } = envelope.body
        else {
            return Err(Rejection::NotAnUpdate {
                sender,
                kind: envelope.body.kind(),
            });
        };
        if envelope.task_id != self.task_id {
            return Err(Rejection::WrongTask {
                sender,
                expected: self.task_id.clone(),
                found: envelope.task_id,
            });
        }
        if envelope.round != self.round {
            return Err(Rejection::WrongRound {
                sender,
                expected: self.round,
                found: envelope.round,
            });
        }
        if !self.expected.contains(&sender) {
            return Err(Rejection::UnknownSender { sender });
        }
        if samples == 0 {
            return Err(Rejection::NoSamples { sender });
        }
        if base_digest != self.global_digest {
            return Err(Rejection::BaseDigest {
                sender,
                expected: self.global_digest,
                found: base_digest,
            });
        }
        self.check_layout(&sender, &tensors)?;
        for tensor in tensors.iter() {
            if let Some((index, value)) = first_non_finite(tensor.dtype(), tensor.data()) {
                return Err(Rejection::NonFinite {
                    sender,
                    tensor: tensor.name().to_owned(),
                    index,
                    value,
                });
            }
        }
        Ok(Checked {
            sender,
            samples,
            metrics,
            tensors,
        })
    }

    /// Checks that the update has exactly the global model's names, dtypes and shapes.
    fn check_layout(&self, sender: &str, tensors: &TensorSetView<'_>) -> Result<(), Rejection> {
        // Both lists are sorted by name: walk them together.
        let mut specs = self.specs.iter().peekable();
        let mut found = tensors.iter().peekable();
        loop {
            match (specs.peek(), found.peek()) {
                (None, None) => return Ok(()),
                (Some(spec), Some(tensor)) if spec.name == tensor.name() => {
                    if spec.dtype != tensor.dtype() {
                        return Err(Rejection::DTypeMismatch {
                            sender: sender.to_owned(),
                            tensor: spec.name.clone(),
                            expected: spec.dtype,
                            found: tensor.dtype(),
                        });
                    }
                    if spec.shape != tensor.shape() {
                        return Err(Rejection::ShapeMismatch {
                            sender: sender.to_owned(),
                            tensor: spec.name.clone(),
                            expected: spec.shape.clone(),
                            found: tensor.shape().to_vec(),
                        });
                    }
                    specs.next();
                    found.next();
                }
                (Some(spec), Some(tensor)) if spec.name.as_str() < tensor.name() => {
                    return Err(Rejection::MissingTensor {
                        sender: sender.to_owned(),
                        tensor: spec.name.clone(),
                    });
                }
                (Some(spec), None) => {
                    return Err(Rejection::MissingTensor {
                        sender: sender.to_owned(),
                        tensor: spec.name.clone(),
                    });
                }
                (_, Some(tensor)) => {
                    return Err(Rejection::UnexpectedTensor {
                        sender: sender.to_owned(),
                        tensor: tensor.name().to_owned(),
                    });
                }
            }
        }
    }
}
