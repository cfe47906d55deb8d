//! Param files: reading named tensors from safetensors, PyTorch `torch.save` archives and
//! libtorch `.ot` archives, writing safetensors atomically, and loading tensors strictly into
//! a [`tch::nn::VarStore`].
//!
//! The format is recognised from the file's bytes ([`fl_package::inspect_param_file`]), never
//! from its extension. PyTorch archives are read by a small pickle machine of our own
//! (libtorch cannot rebuild the `OrderedDict` that `torch.save(model.state_dict())` writes);
//! it runs no code and accepts only the few Python names a state dict needs.

mod libtorch;
mod pickle;
mod pytorch;
mod safetensors;
mod strict;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use fl_package::{ParamFileError, ParamFormat, inspect_param_file};
use tch::{Kind, Tensor};
use thiserror::Error;

pub(crate) use libtorch::check_archive;
pub use safetensors::write_safetensors;
pub use strict::{LoadReport, ShapeMismatch, StrictMismatch, load_strict, named_tensors};

/// The Python names a PyTorch archive may refer to; anything else is refused.
pub const ALLOWED_GLOBALS: &str = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, \
     torch._utils._rebuild_parameter, torch._utils._rebuild_parameter_with_state and the \
     torch.*Storage types of the supported dtypes";

/// The keys of a checkpoint dict under which a state dict is looked for, in this order.
pub const WRAPPER_KEYS: [&str; 3] = ["state_dict", "model_state_dict", "model"];

/// Why a param file could not be read or written, or tensors could not be loaded.
#[derive(Debug, Error)]
pub enum ParamError {
    /// The file could not be opened or read.
    #[error("cannot read `{}`: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file's bytes are not a recognised, complete format.
    #[error("param file `{}` {source}; accepted: {}", .path.display(), ParamFileError::ACCEPTED)]
    Format {
        /// The file.
        path: PathBuf,
        /// What the format check found.
        source: ParamFileError,
    },
    /// A safetensors file whose header or data is inconsistent.
    #[error("safetensors file `{}` is not valid: {reason}", .path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A PyTorch archive whose zip entries or records are inconsistent.
    #[error("pytorch archive `{}` cannot be read: {reason}", .path.display())]
    Pytorch {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The pickle inside a PyTorch archive uses something this reader does not accept.
    #[error("pytorch archive `{}`: data.pkl at byte {offset}: {reason}", .path.display())]
    Pickle {
        /// The file.
        path: PathBuf,
        /// Offset of the opcode in `data.pkl`.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The pickle names a Python object outside the allowed few.
    #[error(
        "pytorch archive `{}` refers to the python object `{name}`, which is refused \
         (weight files run no code); allowed: {ALLOWED_GLOBALS}; a pickled model object can \
         be converted in PyTorch with torch.save(model.state_dict(), path)",
        .path.display()
    )]
    ForbiddenGlobal {
        /// The file.
        path: PathBuf,
        /// `module.name` of the refused object.
        name: String,
    },
    /// The archive holds something other than a dict of tensors.
    #[error(
        "pytorch archive `{}` holds {found}; accepted: a dict of named tensors \
         (torch.save(model.state_dict())), or a checkpoint dict holding one under `state_dict`, \
         `model_state_dict` or `model`",
        .path.display()
    )]
    NotStateDict {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        found: String,
    },
    /// libtorch refused an `.ot` archive.
    #[error("libtorch archive `{}` cannot be read: {message}", .path.display())]
    Libtorch {
        /// The file.
        path: PathBuf,
        /// libtorch's message.
        message: String,
    },
    /// A tensor that cannot be converted, written or built.
    #[error("tensor `{name}` {reason}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing a file failed.
    #[error("cannot write `{}`: {reason}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Tensors do not match a model's variables (see [`load_strict`]); nothing was loaded.
    #[error("{0}")]
    Strict(StrictMismatch),
}

/// The tensors of a param file and how they were found.
pub struct ParamFile {
    /// The format recognised from the file's bytes.
    pub format: ParamFormat,
    /// The named tensors, in file order (safetensors: data order; PyTorch: dict order).
    pub tensors: Vec<(String, Tensor)>,
    /// For a PyTorch checkpoint dict, the key the state dict was found under
    /// (one of [`WRAPPER_KEYS`]); `None` when the file is the state dict itself.
    pub wrapper_key: Option<String>,
}

impl fmt::Debug for ParamFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<(&str, Vec<i64>)> = self
            .tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t.size()))
            .collect();
        f.debug_struct("ParamFile")
            .field("format", &self.format)
            .field("tensors", &shapes)
            .field("wrapper_key", &self.wrapper_key)
            .finish()
    }
}

/// Reads the named tensors of a param file (safetensors, PyTorch `torch.save` archive or
/// libtorch `.ot`), in file order, on the CPU.
pub fn read_params(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>, ParamError> {
    read_param_file(path).map(|file| file.tensors)
}

/// Like [`read_params`], also telling the format and, for a checkpoint dict, which key held
/// the state dict.
pub fn read_param_file(path: impl AsRef<Path>) -> Result<ParamFile, ParamError> {
    let path = path.as_ref();
    let info = inspect_param_file(path).map_err(|source| match source {
        ParamFileError::Io(source) => ParamError::Io {
            path: path.to_path_buf(),
            source,
        },
        source => ParamError::Format {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let (tensors, wrapper_key) = match info.format {
        ParamFormat::Safetensors => (safetensors::read(path)?, None),
        ParamFormat::PytorchZip => pytorch::read(path)?,
        ParamFormat::LibtorchArchive => (libtorch::read(path)?, None),
    };
    Ok(ParamFile {
        format: info.format,
        tensors,
        wrapper_key,
    })
}

/// The element types param files may hold (safetensors' names; PyTorch storage classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

/// The accepted dtypes, for messages.
pub(crate) const ACCEPTED_DTYPES: &str = "F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL";

impl Dtype {
    const ALL: [Dtype; 10] = [
        Self::F64,
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::I64,
        Self::I32,
        Self::I16,
        Self::I8,
        Self::U8,
        Self::Bool,
    ];

    pub(crate) fn safetensors_name(self) -> &'static str {
        match self {
            Self::F64 => "F64",
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I64 => "I64",
            Self::I32 => "I32",
            Self::I16 => "I16",
            Self::I8 => "I8",
            Self::U8 => "U8",
            Self::Bool => "BOOL",
        }
    }

    /// The PyTorch storage class (`torch.<name>`) of this dtype.
    pub(crate) fn storage_name(self) -> &'static str {
        match self {
            Self::F64 => "DoubleStorage",
            Self::F32 => "FloatStorage",
            Self::F16 => "HalfStorage",
            Self::BF16 => "BFloat16Storage",
            Self::I64 => "LongStorage",
            Self::I32 => "IntStorage",
            Self::I16 => "ShortStorage",
            Self::I8 => "CharStorage",
            Self::U8 => "ByteStorage",
            Self::Bool => "BoolStorage",
        }
    }

    pub(crate) fn from_safetensors_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.safetensors_name() == name)
    }

    pub(crate) fn from_storage_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.storage_name() == name)
    }

    pub(crate) fn kind(self) -> Kind {
        match self {
            Self::F64 => Kind::Double,
            Self::F32 => Kind::Float,
            Self::F16 => Kind::Half,
            Self::BF16 => Kind::BFloat16,
            Self::I64 => Kind::Int64,
            Self::I32 => Kind::Int,
            Self::I16 => Kind::Int16,
            Self::I8 => Kind::Int8,
            Self::U8 => Kind::Uint8,
            Self::Bool => Kind::Bool,
        }
    }

    pub(crate) fn from_kind(kind: Kind) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.kind() == kind)
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// The number of elements of `shape`, or `None` when a dimension is negative or the product
/// overflows.
pub(crate) fn checked_numel(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Builds a CPU tensor from little-endian bytes, checking that they are exactly what `shape`
/// and `dtype` need (libtorch copies without checking) and that booleans are 0 or 1.
pub(crate) fn tensor_from_bytes(
    name: &str,
    bytes: &[u8],
    shape: &[i64],
    dtype: Dtype,
) -> Result<Tensor, ParamError> {
    let bad = |reason: String| ParamError::Tensor {
        name: name.to_string(),
        reason,
    };
    let needed = checked_numel(shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| bad(format!("has an impossible shape {shape:?}")))?;
    if bytes.len() != needed {
        return Err(bad(format!(
            "has {} bytes of data but its shape {shape:?} of {} needs {needed}",
            bytes.len(),
            dtype.safetensors_name()
        )));
    }
    if dtype == Dtype::Bool && bytes.iter().any(|&b| b > 1) {
        return Err(bad("is boolean but holds bytes other than 0 and 1".into()));
    }
    Tensor::f_from_data_size(bytes, shape, dtype.kind())
        .map_err(|e| bad(format!("cannot be built: {e}")))
}

#[cfg(target_endian = "big")]
compile_error!("param files are little-endian; big-endian hosts are not supported");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::from_safetensors_name(d.safetensors_name()), Some(d));
            assert_eq!(Dtype::from_storage_name(d.storage_name()), Some(d));
            assert_eq!(Dtype::from_kind(d.kind()), Some(d));
            assert_eq!(d.size(), d.kind().elt_size_in_bytes());
        }
        assert_eq!(Dtype::from_safetensors_name("F8_E4M3"), None);
        assert_eq!(Dtype::from_kind(Kind::ComplexFloat), None);
    }

    #[test]
    fn tensor_from_bytes_checks_lengths_and_bools() {
        let t = tensor_from_bytes("t", &[1, 0, 1], &[3], Dtype::Bool).expect("valid");
        assert_eq!(t.kind(), Kind::Bool);
        let short = tensor_from_bytes("w", &[0; 7], &[2], Dtype::F32).expect_err("short");
        assert!(
            short.to_string().contains("tensor `w` has 7 bytes"),
            "{short}"
        );
        let bools = tensor_from_bytes("b", &[2], &[1], Dtype::Bool).expect_err("bad bool");
        assert!(bools.to_string().contains("other than 0 and 1"), "{bools}");
        let huge = tensor_from_bytes("h", &[], &[i64::MAX, 4], Dtype::F32).expect_err("huge");
        assert!(huge.to_string().contains("impossible shape"), "{huge}");
        assert_eq!(checked_numel(&[]), Some(1));
        assert_eq!(checked_numel(&[3, -1]), None);
    }
}
