//! Errors of building, training and evaluating models.

use std::path::PathBuf;

use thiserror::Error;

use crate::params::ParamError;

/// Why a model cannot be built, trained or evaluated.
#[derive(Debug, Error)]
pub enum ModelError {
    /// `entry_module` / `entry_class` name no built-in model.
    #[error(
        "no model is registered as `{module}.{class}` (registered: {known}); a model crate registers it and is linked into the engine binary (docs/AUTHORING.md)"
    )]
    UnknownModel {
        /// `entry_module`.
        module: String,
        /// `entry_class`.
        class: String,
        /// The known `module.class` names.
        known: String,
    },
    /// A `config.json` value the model needs is unusable.
    #[error("config.json: key `{key}`: {message} (accepted: {expected})")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
        /// What would be accepted.
        expected: String,
    },
    /// The task's labels cannot meet the package's classifier head under the `head` rule.
    #[error(transparent)]
    Labels(fl_package::LabelError),
    /// The package's and the run's hyper-parameters are invalid together (each source is
    /// named).
    #[error("hyper-parameters: {0}")]
    HyperParameters(#[from] fl_package::ResolveError),
    /// The weights file cannot be used.
    #[error("{}: {source}", path.display())]
    Params {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        source: ParamError,
    },
    /// Reading or preprocessing data failed.
    #[error(transparent)]
    Data(#[from] fl_data::DataError),
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Tensor(#[from] tch::TchError),
    /// Writing results failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model implementation (an author's crate) reported a failure in its own words.
    #[error("{0}")]
    Model(String),
    /// The network refused a batch (libtorch's message: an image too small for its
    /// convolutions, the wrong channel count).
    #[error("the model could not run on a batch of shape {shape:?}: {message}")]
    Forward {
        /// The batch's shape, `[N, C, H, W]`.
        shape: Vec<i64>,
        /// libtorch's message.
        message: String,
    },
    /// Training produced a loss or a weight that is not finite: the run stops, and nothing
    /// non-finite is kept, sent or written.
    #[error(
        "training diverged: {what} is not finite ({at}); lower the learning rate, or check the data and the weights it started from"
    )]
    NonFinite {
        /// The loss, or the tensor by name (`the weight `bn1.running_var``).
        what: String,
        /// Where: the epoch and batch, or the step (`after epoch 3`, `in the update`).
        at: String,
    },
    /// A dataset split the task needs is empty.
    #[error("the dataset's {split} split is empty; {hint}")]
    EmptySplit {
        /// The split.
        split: &'static str,
        /// What to do.
        hint: &'static str,
    },
}
