//! The whole-model SHA-256 digest that identifies a set of weights.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::tensor::TensorView;

/// The domain tag that starts the hashed stream; a new layout gets a new tag.
const DOMAIN: &[u8] = b"fedengine.tensorset.v1\0";

/// A SHA-256 digest of a [`TensorSet`](crate::TensorSet): names, dtypes, shapes and data.
///
/// The coordinator broadcasts it with the global weights; participants name it as the base of
/// their update, so an update trained from other weights is refused. SHA-256 rather than a
/// faster non-cryptographic hash because the digest identifies the model: two sets with the
/// same digest must be the same weights, even when someone tries to make them collide. It is
/// also easy to recompute anywhere (`hashlib.sha256`). The hashed stream is, in tensor-name
/// order (byte-wise), with every integer a little-endian `u64`:
///
/// ```text
/// "fedengine.tensorset.v1\0"  tensor count
/// per tensor: name length, name (UTF-8), dtype name length, dtype name ("F32"),
///             dimension count, each dimension, data length, data (little-endian)
/// ```
///
/// Shown as 64 lowercase hex digits; MessagePack carries it as a 32-byte `bin`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps 32 digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// Returns the 32 digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Returns the digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Hashes tensors given in canonical (sorted, unique name) order.
    pub(crate) fn of_sorted<'a>(tensors: impl ExactSizeIterator<Item = TensorView<'a>>) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        hasher.update((tensors.len() as u64).to_le_bytes());
        let field = |hasher: &mut Sha256, bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        for tensor in tensors {
            field(&mut hasher, tensor.name().as_bytes());
            field(&mut hasher, tensor.dtype().name().as_bytes());
            hasher.update((tensor.shape().len() as u64).to_le_bytes());
            for dim in tensor.shape() {
                hasher.update(dim.to_le_bytes());
            }
            field(&mut hasher, tensor.data());
        }
        Digest(hasher.finalize().into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A digest written other than as 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("digest `{text}` is not 64 hex digits")]
pub struct DigestParseError {
    /// The text that was given.
    pub text: String,
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || DigestParseError {
            text: text.to_owned(),
        };
        let hex = text.as_bytes();
        if hex.len() != 64 {
            return Err(error());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| error())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| error())?;
        }
        Ok(Digest(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            serde::de::Error::custom(format!("digest must be 32 bytes, found {}", bytes.len()))
        })?;
        Ok(Digest(bytes))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let digest = Digest::from_bytes(std::array::from_fn(|i| (i * 7) as u8));
        let hex = digest.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("00070e15"));
        assert_eq!(hex.parse::<Digest>().unwrap(), digest);
        assert!("abc".parse::<Digest>().is_err());
        assert!(hex.replace('0', "g").parse::<Digest>().is_err());
        assert!(format!("{digest:?}").contains(&hex));
    }
}
