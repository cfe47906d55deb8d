//! A classifier's weights as an [`fl_tensor::TensorSet`]: what crosses actor and process
//! boundaries in FedAvg, bit for bit.
//!
//! [`to_tensor_set`] copies each tensor's elements out as contiguous CPU little-endian bytes
//! under its dtype ([`dtype_of_kind`]); [`from_tensor_set`] builds CPU tensors from those bytes.
//! Neither converts a value, so a round trip gives back the very bits and the same
//! [`fl_tensor::Digest`] on every machine.
//!
//! [`WeightExchange`] adds `weights()` and `load_weights()` to [`Classifier`]: every variable
//! (parameters and buffers such as BatchNorm running statistics) under PyTorch's names, and a
//! strict load (every name, exact shapes, and the same dtypes) through
//! [`Classifier::restore`].

use fl_tensor::{DType, NamedTensor, TensorSet};
use tch::{Device, Kind, Tensor};

use crate::classifier::Classifier;
use crate::error::ModelError;
use crate::params::{Dtype, ParamError, tensor_from_bytes};

/// The path reported in errors about exchanged tensors (they come from no file).
const SOURCE: &str = "(tensor set)";

fn tensor_error(name: &str, reason: String) -> ModelError {
    ModelError::Params {
        path: SOURCE.into(),
        source: ParamError::Tensor {
            name: name.to_owned(),
            reason,
        },
    }
}

/// The wire dtype of a libtorch kind: Float→F32, Double→F64, Half→F16, BFloat16→BF16,
/// Int64→I64, Int→I32, Int16→I16, Int8→I8, Uint8→U8, Bool→BOOL; `None` for other kinds
/// (complex, quantised, float8).
pub fn dtype_of_kind(kind: Kind) -> Option<DType> {
    Some(match kind {
        Kind::Float => DType::F32,
        Kind::Double => DType::F64,
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::BF16,
        Kind::Int64 => DType::I64,
        Kind::Int => DType::I32,
        Kind::Int16 => DType::I16,
        Kind::Int8 => DType::I8,
        Kind::Uint8 => DType::U8,
        Kind::Bool => DType::Bool,
        _ => return None,
    })
}

/// The libtorch kind of a wire dtype (the inverse of [`dtype_of_kind`]).
pub fn kind_of_dtype(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// Copies named tensors (any device, any strides) into a [`TensorSet`]: each one's elements
/// in row-major order as little-endian bytes, its kind mapped by [`dtype_of_kind`].
///
/// Fails on a kind without a wire dtype, a repeated or empty name, or a tensor libtorch
/// cannot copy out.
pub fn to_tensor_set(tensors: &[(String, Tensor)]) -> Result<TensorSet, ModelError> {
    let mut named = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let kind = tensor.f_kind()?;
        let dtype = dtype_of_kind(kind).ok_or_else(|| {
            tensor_error(
                name,
                format!(
                    "has kind {kind:?}, which cannot be exchanged; accepted: F32, F64, F16, \
                     BF16, I64, I32, I16, I8, U8, BOOL"
                ),
            )
        })?;
        let cpu = tensor
            .detach()
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_contiguous())?;
        let shape = cpu
            .size()
            .into_iter()
            .map(|d| u64::try_from(d).map_err(|_| tensor_error(name, format!("has size {d}"))))
            .collect::<Result<Vec<u64>, _>>()?;
        let numel = cpu.numel();
        let mut data = vec![0u8; numel * dtype.size()];
        if numel > 0 {
            cpu.f_copy_data_u8(&mut data, numel)?;
        }
        // libtorch's CPU memory is native-endian; param files already refuse to build on
        // big-endian hosts, so the bytes are little-endian as they are.
        let tensor = NamedTensor::new(name.clone(), dtype, shape, data)
            .map_err(|e| tensor_error(name, e.to_string()))?;
        named.push(tensor);
    }
    TensorSet::new(named).map_err(|e| tensor_error("", e.to_string()))
}

/// Builds CPU tensors from a [`TensorSet`], in its (name) order, with the kinds of
/// [`kind_of_dtype`] and the exact bits of the set's data.
pub fn from_tensor_set(set: &TensorSet) -> Result<Vec<(String, Tensor)>, ModelError> {
    set.iter()
        .map(|t| {
            let shape = t
                .shape()
                .iter()
                .map(|&d| {
                    i64::try_from(d)
                        .map_err(|_| tensor_error(t.name(), format!("has dimension {d}")))
                })
                .collect::<Result<Vec<i64>, _>>()?;
            let dtype = Dtype::from_kind(kind_of_dtype(t.dtype()))
                .ok_or_else(|| tensor_error(t.name(), format!("has dtype {}", t.dtype())))?;
            let tensor =
                tensor_from_bytes(t.name(), t.data(), &shape, dtype).map_err(|source| {
                    ModelError::Params {
                        path: SOURCE.into(),
                        source,
                    }
                })?;
            Ok((t.name().to_owned(), tensor))
        })
        .collect()
}

/// Weights in and out of a [`Classifier`] as a [`TensorSet`].
pub trait WeightExchange {
    /// Every variable (parameters and buffers), under PyTorch's names, bit for bit.
    fn weights(&self) -> Result<TensorSet, ModelError>;

    /// Loads weights strictly: exactly the model's variable names, each with the variable's
    /// shape and dtype (no conversion), or nothing is changed.
    fn load_weights(&mut self, weights: &TensorSet) -> Result<(), ModelError>;
}

impl WeightExchange for Classifier {
    fn weights(&self) -> Result<TensorSet, ModelError> {
        to_tensor_set(&self.snapshot())
    }

    fn load_weights(&mut self, weights: &TensorSet) -> Result<(), ModelError> {
        // `load_strict` checks names and shapes but copies across kinds; a different dtype
        // would be a silent conversion, so it is refused here first.
        let variables = self.var_store().variables();
        for tensor in weights {
            if let Some(var) = variables.get(tensor.name()) {
                let expected = dtype_of_kind(var.kind());
                if expected != Some(tensor.dtype()) {
                    return Err(tensor_error(
                        tensor.name(),
                        format!(
                            "is {} but the model's variable is {:?}",
                            tensor.dtype(),
                            var.kind()
                        ),
                    ));
                }
            }
        }
        self.restore(&from_tensor_set(weights)?)
    }
}

/// [`WeightExchange::weights`] as a free function.
pub fn classifier_weights(model: &Classifier) -> Result<TensorSet, ModelError> {
    model.weights()
}

/// [`WeightExchange::load_weights`] as a free function.
pub fn load_classifier_weights(
    model: &mut Classifier,
    weights: &TensorSet,
) -> Result<(), ModelError> {
    model.load_weights(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_round_trips_bit_exactly() {
        let base = Tensor::from_slice(&[1.5f64, 0.0, 3.25e-8, 100.0, 7.0, 0.1]);
        let mut tensors = Vec::new();
        for kind in [
            Kind::Float,
            Kind::Double,
            Kind::Half,
            Kind::BFloat16,
            Kind::Int64,
            Kind::Int,
            Kind::Int16,
            Kind::Int8,
            Kind::Uint8,
            Kind::Bool,
        ] {
            // Transposed: not contiguous.
            let t = base.to_kind(kind).reshape([2, 3]).tr();
            tensors.push((format!("{kind:?}"), t));
        }
        tensors.push((
            "empty".into(),
            Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
        ));
        tensors.push(("scalar".into(), Tensor::from(2.5f32)));
        tensors.push((
            "negative".into(),
            Tensor::from_slice(&[-0.0f32, -1e-30, f32::MIN, -3.5]),
        ));
        let set = to_tensor_set(&tensors).expect("exchangeable");
        assert_eq!(set.len(), tensors.len());
        assert_eq!(set.get("Float").expect("present").shape(), [3, 2]);
        assert_eq!(set.get("Bool").expect("present").dtype(), DType::Bool);
        assert_eq!(set.get("scalar").expect("present").shape(), [] as [u64; 0]);
        let back = from_tensor_set(&set).expect("built");
        for (name, tensor) in &back {
            let (_, original) = tensors.iter().find(|(n, _)| n == name).expect("same names");
            assert_eq!(tensor.kind(), original.kind(), "{name}");
            assert!(tensor.equal(original), "{name}");
        }
        assert_eq!(to_tensor_set(&back).expect("again"), set);

        let complex = Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu));
        let err = to_tensor_set(&[("c".into(), complex)]).expect_err("refused");
        assert!(err.to_string().contains("cannot be exchanged"), "{err}");
    }
}
