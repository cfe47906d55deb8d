//! Named tensors as bytes, the messages that carry them, and FedAvg over them.
//!
//! This is the byte-level layer every other fedengine crate shares: weights cross actor and
//! process boundaries as [`NamedTensor`]s (name, [`DType`], shape, little-endian data),
//! never as framework tensors, so it depends on neither libtorch nor an actor system.
//!
//! - [`TensorSet`]: a model's tensors sorted by name, with its SHA-256 [`Digest`].
//! - [`Envelope`]: a versioned MessagePack message ([`SCHEMA_VERSION`], task, round, sender,
//!   [`Body`]) whose tensors travel as raw `bin` with a CRC-32 each; decoding checks
//!   everything and never panics ([`CodecError`]).
//! - [`Aggregator`]: streaming FedAvg that checks each update ([`Rejection`]), spools it to
//!   disk ([`UpdateSpool`]) and folds the updates in sender order, so memory stays about one
//!   model and the result does not depend on arrival order.
//!
//! ```
//! use fl_tensor::{Aggregator, Body, Envelope, Metrics, NamedTensor, TensorSet, Weighting};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let global = TensorSet::new(vec![NamedTensor::from_f32("fc.bias", vec![2], &[0.0, 0.0])?])?;
//! let dir = tempfile::tempdir()?;
//! let mut round = Aggregator::new(&global, "task-1", 0, ["a", "b"], Weighting::Samples, dir.path())?;
//!
//! for (node, samples, bias) in [("a", 10, [1.0, 2.0]), ("b", 30, [5.0, 6.0])] {
//!     let trained = TensorSet::new(vec![NamedTensor::from_f32("fc.bias", vec![2], &bias)?])?;
//!     let body = Body::Update {
//!         samples,
//!         base_digest: global.digest(),
//!         metrics: Metrics::default(),
//!         tensors: trained,
//!     };
//!     let bytes = Envelope::new("task-1", 0, node, body).encode()?; // what travels
//!     round.offer(&bytes)?;
//! }
//!
//! let next = round.finish()?;
//! assert_eq!(next.get("fc.bias").unwrap().to_f32_vec()?, [4.0, 5.0]);
//! let broadcast = Envelope::new("task-1", 1, "coordinator", Body::global_weights(next));
//! assert_eq!(Envelope::decode(&broadcast.encode()?)?, broadcast);
//! # Ok(())
//! # }
//! ```

mod aggregate;
mod codec;
mod digest;
mod dtype;
mod envelope;
mod float;
mod schedule;
mod set;
mod spool;
mod tensor;

pub use aggregate::{Accepted, AggregateError, Aggregator, Rejection, Weighting};
pub use codec::{CodecError, decode_view};
pub use digest::{Digest, DigestParseError};
pub use dtype::{DType, UnknownDType};
pub use envelope::{Body, Envelope, Metrics, PackageFile, SCHEMA_VERSION};
pub use schedule::{Decision, RoundRecord, Schedule, StopMetric};
pub use set::{TensorSet, TensorSetView};
pub use spool::{SpoolEntry, SpoolError, UpdateSpool};
pub use tensor::{NamedTensor, TensorError, TensorView, checksum};
