//! Element types of tensors, named as safetensors names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The element type of a tensor.
///
/// Names (`F32`, `BF16`, `BOOL`, ...) are the ones safetensors uses, so a header written by
/// PyTorch, safetensors or this crate means the same thing. Data is always little-endian;
/// `Bool` is one byte per element (0 or 1), as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DType {
    /// IEEE 754 binary32.
    #[serde(rename = "F32")]
    F32,
    /// IEEE 754 binary64.
    #[serde(rename = "F64")]
    F64,
    /// IEEE 754 binary16 (half precision).
    #[serde(rename = "F16")]
    F16,
    /// bfloat16: the upper half of a binary32.
    #[serde(rename = "BF16")]
    BF16,
    /// Signed 64-bit integer.
    #[serde(rename = "I64")]
    I64,
    /// Signed 32-bit integer.
    #[serde(rename = "I32")]
    I32,
    /// Signed 16-bit integer.
    #[serde(rename = "I16")]
    I16,
    /// Signed 8-bit integer.
    #[serde(rename = "I8")]
    I8,
    /// Unsigned 8-bit integer.
    #[serde(rename = "U8")]
    U8,
    /// Boolean, one byte per element.
    #[serde(rename = "BOOL")]
    Bool,
}

impl DType {
    /// Every element type, in declaration order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// Returns the size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Returns the safetensors name (`F32`, `BF16`, `BOOL`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }

    /// Returns the type with this safetensors name, if there is one (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|dtype| dtype.name() == name)
    }

    /// Tells whether this is a floating-point type (averaged by FedAvg).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dtype name that is not one of [`DType::ALL`]'s names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{name}` (accepted: F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)")]
pub struct UnknownDType {
    /// The name that was given.
    pub name: String,
}

impl FromStr for DType {
    type Err = UnknownDType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        DType::from_name(name).ok_or_else(|| UnknownDType {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_and_parsing_agree() {
        let sizes: Vec<usize> = DType::ALL.iter().map(|d| d.size()).collect();
        assert_eq!(sizes, [4, 8, 2, 2, 8, 4, 2, 1, 1, 1]);
        for dtype in DType::ALL {
            assert_eq!(dtype.name().parse::<DType>(), Ok(dtype));
            assert_eq!(dtype.to_string(), dtype.name());
        }
        assert_eq!(DType::Bool.name(), "BOOL");
        assert!("f32".parse::<DType>().is_err(), "names are case-sensitive");
        let floats: Vec<DType> = DType::ALL.into_iter().filter(|d| d.is_float()).collect();
        assert_eq!(floats, [DType::F32, DType::F64, DType::F16, DType::BF16]);
    }
}
