//! MessagePack encoding and checked decoding of [`Envelope`]s.
//!
//! Each tensor is written as a map `{name, dtype, shape, crc32, data}` with `data` a
//! MessagePack `bin` holding the raw little-endian bytes: never an array of numbers, never
//! pickle. Decoding refuses another schema version, trailing bytes, an unknown dtype, data
//! whose length does not fit dtype and shape, a checksum mismatch, a repeated tensor name
//! and global weights whose digest is not their tensors' digest, each with its own
//! [`CodecError`]. It never panics on hostile input (a test mutates valid messages at
//! random).

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize, Serializer};

use crate::digest::Digest;
use crate::dtype::DType;
use crate::envelope::{Body, Envelope, SCHEMA_VERSION};
use crate::set::{TensorSet, TensorSetView};
use crate::tensor::{TensorError, TensorView, checksum};

/// Why bytes could not be decoded into an [`Envelope`] (or an envelope not encoded).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Not a MessagePack envelope of this schema (truncated, wrong types, missing fields,
    /// unknown message kind).
    #[error("malformed message: {reason}")]
    Malformed {
        /// What the MessagePack reader found wrong.
        reason: String,
    },
    /// Bytes follow a complete envelope.
    #[error("malformed message: unexpected bytes after the end of the envelope")]
    TrailingBytes,
    /// The envelope is of a schema version this crate does not read.
    #[error("{}", schema_message(*.found, *.supported))]
    SchemaVersion {
        /// The version in the message.
        found: u32,
        /// The version this crate reads ([`SCHEMA_VERSION`]).
        supported: u32,
    },
    /// A tensor's dtype is not a known name.
    #[error(
        "tensor `{tensor}`: unknown dtype `{dtype}` (accepted: F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)"
    )]
    UnknownDType {
        /// The tensor's name.
        tensor: String,
        /// The dtype given.
        dtype: String,
    },
    /// A tensor's name, shape and data length do not go together, or a name repeats.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A tensor's data does not have the CRC-32 the message gives for it.
    #[error(
        "tensor `{tensor}`: checksum mismatch: message says crc32 {expected:08x}, data has {actual:08x}"
    )]
    Checksum {
        /// The tensor's name.
        tensor: String,
        /// The checksum in the message.
        expected: u32,
        /// The checksum of the data received.
        actual: u32,
    },
    /// Global weights whose declared digest is not the digest of their tensors.
    #[error("global weights: message says digest {declared}, tensors hash to {computed}")]
    DigestMismatch {
        /// The digest in the message.
        declared: Digest,
        /// The digest of the tensors received.
        computed: Digest,
    },
    /// The envelope could not be serialized.
    #[error("cannot encode message: {reason}")]
    Encode {
        /// The serializer's error.
        reason: String,
    },
}

fn schema_message(found: u32, supported: u32) -> String {
    if found > supported {
        format!(
            "message has schema version {found}, newer than version {supported} that this engine reads: upgrade the engine"
        )
    } else {
        format!("message has schema version {found}; this engine reads only version {supported}")
    }
}

/// A tensor as written: the field order is the wire order.
#[derive(Serialize)]
struct WireTensorRef<'a> {
    name: &'a str,
    dtype: &'static str,
    shape: &'a [u64],
    crc32: u32,
    data: &'a serde_bytes::Bytes,
}

/// A tensor as read, borrowing name and data from the input.
#[derive(Deserialize)]
struct WireTensor<'a> {
    name: &'a str,
    dtype: &'a str,
    shape: Vec<u64>,
    crc32: u32,
    #[serde(borrow, with = "serde_bytes")]
    data: &'a [u8],
}

/// A tensor record to write.
struct Wire<'t>(TensorView<'t>);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireTensorRef {
            name: self.0.name(),
            dtype: self.0.dtype().name(),
            shape: self.0.shape(),
            crc32: checksum(self.0.data()),
            data: serde_bytes::Bytes::new(self.0.data()),
        }
        .serialize(serializer)
    }
}

fn serialize_tensors<'t, S: Serializer>(
    tensors: impl Iterator<Item = TensorView<'t>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(tensors.map(Wire))
}

impl Serialize for TensorSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_tensors(self.iter().map(|t| t.view()), serializer)
    }
}

impl Serialize for TensorSetView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_tensors(self.iter().cloned(), serializer)
    }
}

impl<T: Serialize> Envelope<T> {
    /// Encodes the envelope as MessagePack with named fields.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(self).map_err(|e| CodecError::Encode {
            reason: e.to_string(),
        })
    }
}

impl Envelope {
    /// Decodes and checks a message, copying its tensors (see [`decode_view`]).
    pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
        decode_view(bytes)?.try_map_tensors(|view| Ok(view.to_tensor_set()))
    }
}

/// Decodes and checks a message without copying tensor data: the tensors borrow `bytes`.
///
/// Refused, each with its own [`CodecError`]: bytes that are not one complete envelope
/// (truncated, trailing bytes, wrong types, tensor data not a `bin`, unknown message kind),
/// a schema version other than [`SCHEMA_VERSION`] (reported as such even when the rest does
/// not parse), an unknown dtype, data whose length is not what dtype and shape call for, a
/// CRC-32 mismatch, an empty or repeated tensor name, and global weights whose digest is not
/// their tensors' digest. Tensors may come in any order; they are sorted by name. Hostile
/// input gives an error, never a panic. Use [`Envelope::decode`] for an owned message.
pub fn decode_view(bytes: &[u8]) -> Result<Envelope<TensorSetView<'_>>, CodecError> {
    let wire: Envelope<Vec<WireTensor<'_>>> = match parse_whole(bytes) {
        Ok(wire) => wire,
        Err(error) => {
            // A newer layout may not parse as this one: say so rather than "malformed".
            check_version(header_version(bytes))?;
            return Err(error);
        }
    };
    check_version(Some(wire.schema_version))?;
    let envelope = wire.try_map_tensors(check_tensors)?;
    if let Body::GlobalWeights { digest, tensors } = &envelope.body {
        let computed = tensors.digest();
        if computed != *digest {
            return Err(CodecError::DigestMismatch {
                declared: *digest,
                computed,
            });
        }
    }
    Ok(envelope)
}

fn check_version(found: Option<u32>) -> Result<(), CodecError> {
    match found {
        Some(found) if found != SCHEMA_VERSION => Err(CodecError::SchemaVersion {
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

/// Returns the schema version of a message that may not parse as a whole.
fn header_version(bytes: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Header {
        schema_version: u32,
    }
    rmp_serde::from_slice::<Header>(bytes)
        .ok()
        .map(|h| h.schema_version)
}

/// Parses one MessagePack value that must span all of `bytes`.
fn parse_whole<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    let value = T::deserialize(&mut deserializer).map_err(|e| CodecError::Malformed {
        reason: e.to_string(),
    })?;
    // The reader has no public position: reading once more must hit the end of input.
    match IgnoredAny::deserialize(&mut deserializer) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(value)
        }
        _ => Err(CodecError::TrailingBytes),
    }
}

fn check_tensors(wire: Vec<WireTensor<'_>>) -> Result<TensorSetView<'_>, CodecError> {
    let mut views = Vec::with_capacity(wire.len());
    for tensor in wire {
        let Some(dtype) = DType::from_name(tensor.dtype) else {
            return Err(CodecError::UnknownDType {
                tensor: tensor.name.to_owned(),
                dtype: tensor.dtype.to_owned(),
            });
        };
        let view = TensorView::new(tensor.name, dtype, tensor.shape, tensor.data)?;
        let actual = checksum(tensor.data);
        if actual != tensor.crc32 {
            return Err(CodecError::Checksum {
                tensor: tensor.name.to_owned(),
                expected: tensor.crc32,
                actual,
            });
        }
        views.push(view);
    }
    Ok(TensorSetView::new(views)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
