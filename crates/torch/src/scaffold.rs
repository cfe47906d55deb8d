//! The weights of a new package (`engine model new`): a built-in model initialised from a
//! seed, or torchvision weights with a new classifier head for the package's labels.

use std::path::Path;

use tch::{Device, Tensor, nn};

use crate::error::ModelError;
use crate::params::{load_strict, named_tensors, read_params};
use crate::registry::{BuiltinModel, ModelSpec};

/// Where a new package's weights came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewWeights {
    /// libtorch's default initialisation, seeded.
    Initialised {
        /// The seed.
        seed: i64,
    },
    /// A pretrained file, with a new classifier head (seeded) for the package's labels.
    Pretrained {
        /// Variables loaded: the file's, and the new head's.
        loaded: usize,
        /// The seed of the new head.
        seed: i64,
    },
}

/// Builds `model` for `spec` and returns its weights (every variable, in the store's
/// order): initialised from `seed`, or loaded from `pretrained` (torchvision `.pt`,
/// `.safetensors`, libtorch `.ot`) strictly by name and shape, except the classifier head,
/// which is new: a file missing a tensor, holding an unexpected one or one of another shape
/// (say, grey `in_channels` for RGB weights) is refused with every difference named.
pub fn new_model_weights(
    model: &BuiltinModel,
    spec: ModelSpec,
    pretrained: Option<&Path>,
    seed: i64,
) -> Result<(Vec<(String, Tensor)>, NewWeights), ModelError> {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = model.instantiate(&vs, spec);
    let Some(path) = pretrained else {
        return Ok((named_tensors(&vs), NewWeights::Initialised { seed }));
    };
    let params_err = |source| ModelError::Params {
        path: path.to_owned(),
        source,
    };
    let tensors = read_params(path).map_err(params_err)?;
    // The file's head (if any) is for its own classes: a new one is made for the package's.
    let prefix = format!("{}.", model.head);
    let merged: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(name, _)| !name.starts_with(&prefix))
        .chain(
            named_tensors(&vs)
                .into_iter()
                .filter(|(name, _)| name.starts_with(&prefix)),
        )
        .collect();
    let report = load_strict(&mut vs, &merged).map_err(params_err)?;
    Ok((
        named_tensors(&vs),
        NewWeights::Pretrained {
            loaded: report.loaded,
            seed,
        },
    ))
}
