//! The running FedAvg state: a weighted mean for float tensors, a maximum for the others.

use crate::dtype::DType;
use crate::float;
use crate::set::{TensorSet, TensorSetView};
use crate::tensor::{NamedTensor, for_each_f64};

/// Name, dtype and shape of one tensor of the global model.
#[derive(Clone, Debug)]
pub(crate) struct TensorSpec {
    pub(crate) name: String,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<u64>,
}

enum Slot {
    /// The running weighted mean of a float tensor, in `f64`.
    Mean(Vec<f64>),
    /// The running element-wise maximum of an integer or bool tensor, in its own bytes.
    Max(Vec<u8>),
}

/// Folds updates one at a time; memory is one `f64` per float element plus the integer
/// tensors' bytes, whatever the number of updates.
///
/// Float tensors keep a running weighted mean, `m += (n_k / N_k) (x_k - m)` with `N_k` the
/// weights folded so far: in exact arithmetic this is `Σ n_k x_k / Σ n_k`, the step is
/// skipped where `x_k == m` so identical updates give back their exact bits (zeros' signs
/// included), and the mean never leaves the range of the values. The caller folds in a
/// canonical order, so the rounding is the same whatever order updates arrived in.
pub(crate) struct Accumulator {
    slots: Vec<Slot>,
    total_weight: u128,
}

impl Accumulator {
    /// Creates an empty accumulator for tensors laid out as `specs` (sorted by name).
    pub(crate) fn new(specs: &[TensorSpec]) -> Self {
        let slots = specs
            .iter()
            .map(|spec| {
                if spec.dtype.is_float() {
                    let numel: u64 = spec.shape.iter().product();
                    Slot::Mean(vec![0.0; numel as usize])
                } else {
                    Slot::Max(Vec::new())
                }
            })
            .collect();
        Accumulator {
            slots,
            total_weight: 0,
        }
    }

    /// Folds one update whose tensors match the specs (checked by the caller) with a
    /// positive weight.
    pub(crate) fn fold(&mut self, specs: &[TensorSpec], tensors: &TensorSetView<'_>, weight: u64) {
        debug_assert!(weight > 0);
        debug_assert_eq!(tensors.len(), specs.len());
        let first = self.total_weight == 0;
        self.total_weight += u128::from(weight);
        let step = weight as f64 / self.total_weight as f64;
        for ((slot, spec), tensor) in self.slots.iter_mut().zip(specs).zip(tensors.iter()) {
            debug_assert_eq!(spec.name, tensor.name());
            match slot {
                Slot::Mean(mean) => {
                    let mut cells = mean.iter_mut();
                    if first {
                        for_each_f64(spec.dtype, tensor.data(), |x| {
                            if let Some(m) = cells.next() {
                                *m = x;
                            }
                        });
                    } else {
                        for_each_f64(spec.dtype, tensor.data(), |x| {
                            if let Some(m) = cells.next() {
                                let delta = x - *m;
                                if delta != 0.0 {
                                    *m += step * delta;
                                }
                            }
                        });
                    }
                }
                Slot::Max(max) if first => max.extend_from_slice(tensor.data()),
                Slot::Max(max) => max_in_place(spec.dtype, max, tensor.data()),
            }
        }
    }

    /// Returns the aggregated tensors, float ones rounded (to nearest) to their dtype.
    pub(crate) fn finish(self, specs: &[TensorSpec]) -> TensorSet {
        let tensors = self
            .slots
            .into_iter()
            .zip(specs)
            .map(|(slot, spec)| {
                let data = match slot {
                    Slot::Mean(mean) => narrow(spec.dtype, &mean),
                    Slot::Max(max) => max,
                };
                // Same names, dtypes and shapes as the global set, sizes as folded.
                NamedTensor::from_checked_parts(
                    spec.name.clone(),
                    spec.dtype,
                    spec.shape.clone(),
                    data,
                )
            })
            .collect();
        TensorSet::from_sorted_unique(tensors)
    }
}

/// Writes `f64` means as little-endian values of a float dtype.
fn narrow(dtype: DType, mean: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mean.len() * dtype.size());
    for &m in mean {
        match dtype {
            DType::F32 => out.extend_from_slice(&(m as f32).to_le_bytes()),
            DType::F64 => out.extend_from_slice(&m.to_le_bytes()),
            DType::F16 => out.extend_from_slice(&float::f64_to_f16_bits(m).to_le_bytes()),
            DType::BF16 => out.extend_from_slice(&float::f64_to_bf16_bits(m).to_le_bytes()),
            _ => unreachable!("only float tensors are averaged"),
        }
    }
    out
}

/// Replaces each element of `max` by the larger of it and the same element of `data`.
fn max_in_place(dtype: DType, max: &mut [u8], data: &[u8]) {
    macro_rules! max_of {
        ($ty:ty) => {{
            const N: usize = size_of::<$ty>();
            for (m, x) in max.chunks_exact_mut(N).zip(data.chunks_exact(N)) {
                let mut a = [0u8; N];
                let mut b = [0u8; N];
                a.copy_from_slice(m);
                b.copy_from_slice(x);
                if <$ty>::from_le_bytes(b) > <$ty>::from_le_bytes(a) {
                    m.copy_from_slice(x);
                }
            }
        }};
    }
    match dtype {
        DType::I64 => max_of!(i64),
        DType::I32 => max_of!(i32),
        DType::I16 => max_of!(i16),
        DType::I8 => max_of!(i8),
        // Bools are 0 or 1 bytes: their maximum is a logical or.
        DType::U8 | DType::Bool => max_of!(u8),
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => {
            unreachable!("float tensors are averaged")
        }
    }
}
