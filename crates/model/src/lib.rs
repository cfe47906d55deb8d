//! The model authoring API: what a model author implements so that fedengine fine-tunes
//! their model federatedly and packages it, without engine changes.
//!
//! - [`AutoModel`]: a model that predicts, verifies and loads its dataset
//!   ([`AutoModel::init_dataset`]), fine-tunes on one node, and writes to the task log.
//! - [`AutoFedAvgModel`]: what FedAvg needs besides: its [`Parts`] (variables, network,
//!   optimiser, training / validation / testing [`DataLoader`]s), the exchanged
//!   [`state_dict`](AutoFedAvgModel::state_dict) (the whole model or a part of it), one local
//!   epoch, validation and test, extra result files, and the scheduler hooks
//!   ([`is_task_finished`](AutoFedAvgModel::is_task_finished),
//!   [`best_state_dict`](AutoFedAvgModel::best_state_dict)). Every method but a handful has a
//!   default built on [`Parts`].
//! - [`register_model!`]: registers a factory under a package's `entry_module` /
//!   `entry_class`, from any crate linked into the engine binary ([`ModelFactory`],
//!   collected with `inventory`); [`build_model`] is how the engine finds it.
//!
//! The engine keeps rounds, transport, timeouts, checkpoints and packaging; the functions in
//! [`engine`] are the calls it makes on a model. The built-in models
//! (`fedengine.vision`: SmallCnn, ResNet18, ResNet34, ResNet50, and TorchScript packages) are
//! [`VisionClassifier`]s registered the same way an author's model is.
//!
//! docs/AUTHORING.md is the author's guide; `examples/skin-lesion` is a complete author
//! crate.

mod auto_model;
mod context;
pub mod engine;
mod fedavg;
mod loader;
mod local;
mod registry;
mod vision;

pub use auto_model::{AutoModel, EpochSummary, FineTuneJob, FineTuneOutcome};
pub use context::{
    DataSummary, DatasetDirs, ModelContext, ModelInit, Progress, ProgressSink, TaskLogger,
};
pub use fedavg::{AutoFedAvgModel, EpochContext, Parts, ResultFile, RoundContext, evaluate_loader};
pub use loader::{DataLoader, Pass, SampleLoader, image_batch, open_dataset, summary};
pub use local::{LOCAL_PATIENCE, fine_tune_fedavg};
pub use registry::{ModelFactory, build_model, catalog, find_model, registered_models};
pub use vision::VisionClassifier;

/// The author's guide (docs/AUTHORING.md); its Rust samples are this crate's doc tests.
#[doc = include_str!("../../../docs/AUTHORING.md")]
pub mod guide {}

pub use fl_tensor::{
    Decision, Metrics as ReportedMetrics, RoundRecord, Schedule, StopMetric, TensorSet,
};
pub use fl_torch::{Metrics, ModelError, Scored};
/// Re-exported for [`register_model!`]; authors need not depend on it.
#[doc(hidden)]
pub use inventory;
