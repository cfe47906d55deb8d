//! The libtorch (tch) side of fedengine: model implementations built into the engine and
//! the registry that `config.json` selects them from.
//!
//! Every other crate stays free of libtorch; tensors leave this crate as bytes.

mod classifier;
mod error;
mod exchange;
mod guard;
mod jit_module;
mod models;
mod params;
mod participant;
mod predict;
mod registry;
mod scaffold;
pub mod torchscript;
mod train;

pub use classifier::Classifier;
pub use error::ModelError;
pub use exchange::{
    WeightExchange, classifier_weights, dtype_of_kind, from_tensor_set, kind_of_dtype,
    load_classifier_weights, to_tensor_set,
};
/// The hyper-parameters of training, specified in `fl_package` (re-exported here for model
/// authors, who build optimisers from them with [`build_optimizer`]).
pub use fl_package::{
    HeadPlan, HeadRule, HyperParameterValues, HyperParameters, LabelPlan, LrSchedule, Optimizer,
    Origin,
};
pub use guard::catch_forward;
pub use models::{ResNetDepth, resnet, small_cnn};
pub use params::{
    ALLOWED_GLOBALS, LoadReport, ParamError, ParamFile, ShapeMismatch, StrictMismatch,
    WRAPPER_KEYS, load_strict, named_tensors, read_param_file, read_params, write_safetensors,
};
pub use participant::{DEFAULT_CACHE_BYTES, NodeData, TrainerOptions, round_seed, run_epoch};
pub use predict::{Prediction, Scored, predict};
pub use registry::{
    BUILTIN_MODULE, BuildFn, BuiltinModel, ModelSpec, builtin_catalog, builtin_models, find_builtin,
};
pub use scaffold::{NewWeights, new_model_weights};
pub use train::{
    Metrics, batch_tensors, build_optimizer, check_finite, evaluate, evaluate_batches,
    first_non_finite, train_batches, train_epoch,
};
