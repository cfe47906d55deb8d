//! The torch side of the pickle machine: the allowed names, what calling them means
//! (`REDUCE`), and storage records (`BINPERSID`).

use super::{Dict, Machine, Object, Res, Value};
use crate::params::{Dtype, checked_numel};

/// A Python name a pickle may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(Dtype),
}

impl Global {
    pub(super) fn resolve(module: &str, name: &str) -> Option<Self> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Self::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Self::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Self::RebuildParameter),
            ("torch._utils", "_rebuild_parameter_with_state") => {
                Some(Self::RebuildParameterWithState)
            }
            ("torch", storage) => Dtype::from_storage_name(storage).map(Self::Storage),
            _ => None,
        }
    }
}

/// Where a tensor's elements lie in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// The entry `data/<key>` of the archive.
    pub(crate) key: String,
    pub(crate) dtype: Dtype,
    /// Elements (of `dtype`) in the storage.
    pub(crate) numel: usize,
}

/// A tensor: a strided view of a storage, checked to lie inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub(crate) storage: usize,
    pub(crate) offset: i64,
    pub(crate) size: Vec<i64>,
    pub(crate) stride: Vec<i64>,
}

impl Machine<'_> {
    pub(super) fn reduce(&mut self, callable: Value, args: Value) -> Res<Value> {
        let Value::Global(global) = callable else {
            return self.fail("REDUCE calls something that is not an allowed name");
        };
        let args = match self.tuple(&args) {
            Some(args) if args.len() <= 7 => args.to_vec(),
            Some(args) => {
                return self.fail(format!("REDUCE is given {} arguments", args.len()));
            }
            None => return self.fail("REDUCE arguments are not a tuple"),
        };
        match global {
            Global::OrderedDict if args.is_empty() => {
                Ok(self.new_object(Object::Dict(Dict::default())))
            }
            Global::OrderedDict => self.fail("OrderedDict is called with arguments"),
            Global::RebuildTensorV2 => self.rebuild_tensor(&args),
            Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
                Some(Value::Tensor(t)) if (3..=4).contains(&args.len()) => Ok(Value::Tensor(*t)),
                _ => self.fail("_rebuild_parameter is not given a tensor"),
            },
            Global::Storage(d) => self.fail(format!(
                "torch.{} is called instead of being named by a storage record",
                d.storage_name()
            )),
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    /// backward_hooks[, metadata])`.
    fn rebuild_tensor(&mut self, args: &[Value]) -> Res<Value> {
        let (Some(Value::Storage(storage)), Some(Value::Int(offset)), Some(size), Some(stride)) =
            (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return self
                .fail("_rebuild_tensor_v2 is not given (storage, offset, size, stride, ...)");
        };
        if !(6..=7).contains(&args.len()) {
            return self.fail(format!(
                "_rebuild_tensor_v2 is given {} arguments, not 6 or 7",
                args.len()
            ));
        }
        let (Some(size), Some(stride)) = (self.ints(size), self.ints(stride)) else {
            return self
                .fail("_rebuild_tensor_v2's size or stride is not a tuple of at most 64 integers");
        };
        let (storage, offset) = (*storage, *offset);
        if size.len() != stride.len() {
            return self.fail(format!(
                "a tensor has {} sizes but {} strides",
                size.len(),
                stride.len()
            ));
        }
        if offset < 0 || size.iter().chain(&stride).any(|&v| v < 0) {
            return self.fail("a tensor has a negative size, stride or offset");
        }
        if checked_numel(&size).is_none() {
            return self.fail(format!("a tensor has an impossible size {size:?}"));
        }
        // The last element touched, which must lie inside the storage.
        let numel = self.out.storages[storage].numel;
        if !size.contains(&0) {
            let last = size.iter().zip(&stride).try_fold(offset, |acc, (&n, &s)| {
                acc.checked_add((n - 1).checked_mul(s)?)
            });
            match last {
                Some(last) if usize::try_from(last).is_ok_and(|l| l < numel) => {}
                _ => {
                    return self.fail(format!(
                        "a tensor of size {size:?}, stride {stride:?} and offset {offset} \
                         reaches past the {numel} elements of storage `{}`",
                        self.out.storages[storage].key
                    ));
                }
            }
        }
        self.out.tensors.push(TensorRef {
            storage,
            offset,
            size,
            stride,
        });
        Ok(Value::Tensor(self.out.tensors.len() - 1))
    }

    /// `('storage', torch.<Type>Storage, key, location, numel)`.
    pub(super) fn persistent_load(&mut self, pid: Value) -> Res<Value> {
        let record = match self.tuple(&pid) {
            Some(items) if items.len() == 5 => items.to_vec(),
            _ => Vec::new(),
        };
        let [
            Value::Str(tag),
            Value::Global(Global::Storage(dtype)),
            Value::Str(key),
            _location,
            Value::Int(numel),
        ] = record.as_slice()
        else {
            return self.fail(
                "a persistent record is not ('storage', torch.<Type>Storage, key, location, \
                 numel)",
            );
        };
        let Ok(numel) = usize::try_from(*numel) else {
            return self.fail("a storage has a negative size");
        };
        if &**tag != "storage" {
            return self.fail(format!(
                "a persistent record is tagged `{tag}`, not `storage`"
            ));
        }
        if let Some(&i) = self.storage_index.get(key) {
            let known = &self.out.storages[i];
            if known.dtype != *dtype || known.numel != numel {
                return self.fail(format!(
                    "storage `{key}` is described twice with different types or sizes"
                ));
            }
            return Ok(Value::Storage(i));
        }
        let i = self.out.storages.len();
        self.storage_index.insert(key.clone(), i);
        self.out.storages.push(StorageRef {
            key: key.to_string(),
            dtype: *dtype,
            numel,
        });
        Ok(Value::Storage(i))
    }
}
