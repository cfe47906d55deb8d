//! One named tensor as bytes: name, element type, shape and little-endian data.

use crate::dtype::DType;
use crate::float;

/// Returns the CRC-32 (IEEE, as in zlib, gzip and PNG) of `data`.
///
/// Each tensor in a message carries this checksum. CRC-32 is chosen over a cryptographic
/// hash because its job is catching corruption of one tensor in transit or on disk, not
/// forgery (the whole-model SHA-256 [`Digest`](crate::Digest) covers that): it runs at
/// several GB/s with the carry-less multiply instructions `crc32fast` uses, its crate is
/// already in the dependency tree, and any tool can check it (`zlib.crc32` in Python).
pub fn checksum(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A tensor whose name, dtype, shape and data length could not go together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// A tensor had an empty name.
    #[error("tensor name is empty")]
    EmptyName,
    /// The number of elements of a shape does not fit in memory.
    #[error("tensor `{tensor}`: shape {shape:?} of {dtype} has more bytes than fit in memory")]
    ShapeOverflow {
        /// The tensor's name.
        tensor: String,
        /// Its element type.
        dtype: DType,
        /// Its shape.
        shape: Vec<u64>,
    },
    /// The data length is not the shape's element count times the element size.
    #[error(
        "tensor `{tensor}`: {dtype} data of shape {shape:?} must be {expected} bytes, found {actual}"
    )]
    DataLength {
        /// The tensor's name.
        tensor: String,
        /// Its element type.
        dtype: DType,
        /// Its shape.
        shape: Vec<u64>,
        /// The length the shape and dtype call for.
        expected: u64,
        /// The length given.
        actual: u64,
    },
    /// A typed accessor was asked for another element type.
    #[error("tensor `{tensor}` holds {actual}, not {expected}")]
    DTypeMismatch {
        /// The tensor's name.
        tensor: String,
        /// The type asked for.
        expected: DType,
        /// The tensor's type.
        actual: DType,
    },
    /// Two tensors of one set have the same name.
    #[error("tensor `{tensor}` appears more than once")]
    DuplicateName {
        /// The repeated name.
        tensor: String,
    },
}

/// Returns the byte length of `dtype` data with `shape`, if it fits in a `usize`.
pub(crate) fn byte_len(dtype: DType, shape: &[u64]) -> Option<usize> {
    let mut bytes = dtype.size() as u64;
    for &dim in shape {
        bytes = bytes.checked_mul(dim)?;
    }
    usize::try_from(bytes).ok()
}

/// Checks that a name, dtype, shape and data length go together.
pub(crate) fn check_parts(
    name: &str,
    dtype: DType,
    shape: &[u64],
    data_len: usize,
) -> Result<(), TensorError> {
    if name.is_empty() {
        return Err(TensorError::EmptyName);
    }
    let Some(expected) = byte_len(dtype, shape) else {
        return Err(TensorError::ShapeOverflow {
            tensor: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
        });
    };
    if expected != data_len {
        return Err(TensorError::DataLength {
            tensor: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
            expected: expected as u64,
            actual: data_len as u64,
        });
    }
    Ok(())
}

/// A named tensor: element type, shape (row-major) and little-endian data.
///
/// The data length always equals the element count times the element size; a scalar has
/// the empty shape and one element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedTensor {
    name: String,
    dtype: DType,
    shape: Vec<u64>,
    data: Vec<u8>,
}

macro_rules! from_values {
    ($fn_name:ident, $ty:ty, $dtype:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $fn_name(
            name: impl Into<String>,
            shape: Vec<u64>,
            values: &[$ty],
        ) -> Result<Self, TensorError> {
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Self::new(name, $dtype, shape, data)
        }
    };
}

macro_rules! to_values {
    ($fn_name:ident, $ty:ty, $dtype:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $fn_name(&self) -> Result<Vec<$ty>, TensorError> {
            self.expect_dtype($dtype)?;
            Ok(self
                .data
                .chunks_exact(size_of::<$ty>())
                .map(|c| <$ty>::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect())
        }
    };
}

impl NamedTensor {
    /// Creates a tensor from its parts, checking that the data length fits the shape.
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<u64>,
        data: Vec<u8>,
    ) -> Result<Self, TensorError> {
        let name = name.into();
        check_parts(&name, dtype, &shape, data.len())?;
        Ok(NamedTensor {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// Creates a tensor from parts known to go together.
    pub(crate) fn from_checked_parts(
        name: String,
        dtype: DType,
        shape: Vec<u64>,
        data: Vec<u8>,
    ) -> Self {
        debug_assert_eq!(check_parts(&name, dtype, &shape, data.len()), Ok(()));
        NamedTensor {
            name,
            dtype,
            shape,
            data,
        }
    }

    from_values!(
        from_f32,
        f32,
        DType::F32,
        "Creates an `F32` tensor from values."
    );
    from_values!(
        from_f64,
        f64,
        DType::F64,
        "Creates an `F64` tensor from values."
    );
    from_values!(
        from_i64,
        i64,
        DType::I64,
        "Creates an `I64` tensor from values."
    );
    from_values!(
        from_i32,
        i32,
        DType::I32,
        "Creates an `I32` tensor from values."
    );

    to_values!(
        to_f32_vec,
        f32,
        DType::F32,
        "Returns the values of an `F32` tensor."
    );
    to_values!(
        to_f64_vec,
        f64,
        DType::F64,
        "Returns the values of an `F64` tensor."
    );
    to_values!(
        to_i64_vec,
        i64,
        DType::I64,
        "Returns the values of an `I64` tensor."
    );
    to_values!(
        to_i32_vec,
        i32,
        DType::I32,
        "Returns the values of an `I32` tensor."
    );

    /// Returns the values of any tensor as `f64` (exact except `I64` beyond 2^53).
    pub fn values_f64(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.data.len() / self.dtype.size());
        for_each_f64(self.dtype, &self.data, |v| out.push(v));
        out
    }

    /// Returns the name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Returns the shape (empty for a scalar).
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// Returns the little-endian data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Returns the number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Returns the CRC-32 of the data (see [`checksum`]).
    pub fn checksum(&self) -> u32 {
        checksum(&self.data)
    }

    /// Returns a borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            name: &self.name,
            dtype: self.dtype,
            shape: self.shape.clone(),
            data: &self.data,
        }
    }

    /// Returns the parts: name, dtype, shape, data.
    pub fn into_parts(self) -> (String, DType, Vec<u64>, Vec<u8>) {
        (self.name, self.dtype, self.shape, self.data)
    }

    fn expect_dtype(&self, expected: DType) -> Result<(), TensorError> {
        if self.dtype == expected {
            Ok(())
        } else {
            Err(TensorError::DTypeMismatch {
                tensor: self.name.clone(),
                expected,
                actual: self.dtype,
            })
        }
    }
}

/// A tensor borrowed from a decoded message or a [`NamedTensor`], with the same invariants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorView<'a> {
    name: &'a str,
    dtype: DType,
    shape: Vec<u64>,
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Creates a view, checking that the data length fits the shape.
    pub fn new(
        name: &'a str,
        dtype: DType,
        shape: Vec<u64>,
        data: &'a [u8],
    ) -> Result<Self, TensorError> {
        check_parts(name, dtype, &shape, data.len())?;
        Ok(TensorView {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// Returns the name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Returns the element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Returns the shape (empty for a scalar).
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// Returns the little-endian data.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Returns the number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Copies the view into an owned tensor.
    pub fn to_tensor(&self) -> NamedTensor {
        NamedTensor {
            name: self.name.to_owned(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            data: self.data.to_vec(),
        }
    }
}

/// Calls `f` with every element of `data` as `f64`, in order.
pub(crate) fn for_each_f64(dtype: DType, data: &[u8], mut f: impl FnMut(f64)) {
    macro_rules! each {
        ($n:literal, $conv:expr) => {
            for chunk in data.chunks_exact($n) {
                let mut bytes = [0u8; $n];
                bytes.copy_from_slice(chunk);
                f($conv(bytes));
            }
        };
    }
    match dtype {
        DType::F32 => each!(4, |b| f64::from(f32::from_le_bytes(b))),
        DType::F64 => each!(8, f64::from_le_bytes),
        DType::F16 => each!(2, |b| f64::from(float::f16_bits_to_f32(
            u16::from_le_bytes(b)
        ))),
        DType::BF16 => each!(2, |b| f64::from(float::bf16_bits_to_f32(
            u16::from_le_bytes(b)
        ))),
        DType::I64 => each!(8, |b| i64::from_le_bytes(b) as f64),
        DType::I32 => each!(4, |b| f64::from(i32::from_le_bytes(b))),
        DType::I16 => each!(2, |b| f64::from(i16::from_le_bytes(b))),
        DType::I8 => each!(1, |b: [u8; 1]| f64::from(b[0] as i8)),
        DType::U8 | DType::Bool => each!(1, |b: [u8; 1]| f64::from(b[0])),
    }
}

/// Returns the index and value of the first NaN or infinite element of float data.
pub(crate) fn first_non_finite(dtype: DType, data: &[u8]) -> Option<(usize, f64)> {
    if !dtype.is_float() {
        return None;
    }
    // Scan the exponent bits first (cheap, no conversion); convert only the culprit.
    let size = dtype.size();
    let position = data.chunks_exact(size).position(|c| match dtype {
        DType::F32 => {
            let bits = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            bits & 0x7f80_0000 == 0x7f80_0000
        }
        DType::F64 => {
            let bits = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            bits & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000
        }
        DType::F16 => u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00,
        DType::BF16 => u16::from_le_bytes([c[0], c[1]]) & 0x7f80 == 0x7f80,
        _ => false,
    })?;
    let chunk = &data[position * size..(position + 1) * size];
    let mut value = f64::NAN;
    for_each_f64(dtype, chunk, |v| value = v);
    Some((position, value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn constructors_check_lengths_and_accessors_read_back() {
        let t = NamedTensor::from_f32("w", vec![2, 2], &[1.0, -2.5, 0.0, 3.0]).unwrap();
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(t.shape(), [2, 2]);
        assert_eq!(t.numel(), 4);
        assert_eq!(&t.data()[4..8], (-2.5f32).to_le_bytes());
        assert_eq!(t.to_f32_vec().unwrap(), [1.0, -2.5, 0.0, 3.0]);
        assert_eq!(t.values_f64(), [1.0, -2.5, 0.0, 3.0]);
        assert!(matches!(
            t.to_i64_vec(),
            Err(TensorError::DTypeMismatch {
                expected: DType::I64,
                actual: DType::F32,
                ..
            })
        ));
        let scalar = NamedTensor::from_i64("n", vec![], &[7]).unwrap();
        assert_eq!(scalar.to_i64_vec().unwrap(), [7]);
        assert_eq!(scalar.numel(), 1);
        let d = NamedTensor::from_f64("d", vec![3], &[0.5, 1.5, -1.0]).unwrap();
        assert_eq!(d.to_f64_vec().unwrap(), [0.5, 1.5, -1.0]);
        assert_eq!(d.view().to_tensor(), d);

        let err = NamedTensor::from_f32("w", vec![3], &[1.0, 2.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor `w`: F32 data of shape [3] must be 12 bytes, found 8"
        );
        assert_eq!(
            NamedTensor::new("", DType::U8, vec![], vec![1]),
            Err(TensorError::EmptyName)
        );
        assert!(matches!(
            NamedTensor::new("big", DType::F64, vec![u64::MAX, 2], vec![]),
            Err(TensorError::ShapeOverflow { .. })
        ));
    }

    #[test]
    fn checksum_is_zlib_crc32_and_non_finite_values_are_found() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the standard check value.
        assert_eq!(checksum(b"123456789"), 0xcbf4_3926);
        let t = NamedTensor::from_f32("w", vec![3], &[1.0, f32::INFINITY, f32::NAN]).unwrap();
        assert_eq!(
            first_non_finite(t.dtype(), t.data()),
            Some((1, f64::INFINITY))
        );
        let half_nan = [0x00, 0x3c, 0x01, 0x7c]; // F16: 1.0, NaN
        let (index, value) = first_non_finite(DType::F16, &half_nan).unwrap();
        assert_eq!(index, 1);
        assert!(value.is_nan());
        assert_eq!(
            first_non_finite(DType::BF16, &[0x80, 0xff]).map(|p| p.1),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(first_non_finite(DType::F32, &1.0f32.to_le_bytes()), None);
        assert_eq!(first_non_finite(DType::U8, &[0xff]), None);
    }
}
