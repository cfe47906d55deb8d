//! The libtorch (tch) side of fedengine: model implementations built into the engine and
//! the registry that `config.json` selects them from.
//!
//! Every other crate stays free of libtorch; tensors leave this crate as bytes.

mod models;
mod registry;

pub use models::{ResNetDepth, resnet, small_cnn};
pub use registry::{
    BUILTIN_MODULE, BuildFn, BuiltinModel, ModelSpec, builtin_catalog, builtin_models, find_builtin,
};
