//! What the engine hands a model: where it runs ([`ModelContext`]), what it is built from
//! ([`ModelInit`]), where its data is ([`DatasetDirs`]) and the task log ([`TaskLogger`]).

use std::path::PathBuf;
use std::sync::Arc;

use fl_package::ModelPackage;
use fl_package::Resolved;
use fl_torch::{HyperParameters, ModelError, Origin, TrainerOptions};
use serde_json::{Map, Value};

/// Where a logger's lines go: `(is_warning, line)`.
type Sink = Arc<dyn Fn(bool, &str) + Send + Sync>;

/// Writes lines to the task's log (`task.log`, streamed to `engine submit`).
#[derive(Clone, Default)]
pub struct TaskLogger {
    sink: Option<Sink>,
}

impl std::fmt::Debug for TaskLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLogger")
            .field("connected", &self.sink.is_some())
            .finish()
    }
}

impl TaskLogger {
    /// A logger that calls `sink(is_warning, line)`; the engine connects it to the node's
    /// lines of the task log.
    pub fn new(sink: impl Fn(bool, &str) + Send + Sync + 'static) -> Self {
        Self {
            sink: Some(Arc::new(sink)),
        }
    }

    /// An information line.
    pub fn info(&self, message: &str) {
        match &self.sink {
            Some(sink) => sink(false, message),
            None => tracing::info!("{message}"),
        }
    }

    /// A warning line.
    pub fn warn(&self, message: &str) {
        match &self.sink {
            Some(sink) => sink(true, message),
            None => tracing::warn!("{message}"),
        }
    }
}

/// What a long run reports as it goes (`engine finetune` draws progress bars from it).
pub trait ProgressSink: Send + Sync {
    /// An epoch (1-based, of `epochs`) starts over `samples` training samples.
    fn epoch_started(&self, _epoch: usize, _epochs: usize, _samples: usize) {}
    /// `samples` more training samples were taken.
    fn advance(&self, _samples: usize) {}
    /// An epoch finished.
    fn epoch_finished(&self, _summary: &crate::EpochSummary) {}
}

/// A handle on a [`ProgressSink`]; the default reports nowhere.
#[derive(Clone, Default)]
pub struct Progress {
    sink: Option<Arc<dyn ProgressSink>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("connected", &self.sink.is_some())
            .finish()
    }
}

impl Progress {
    /// Reports to `sink`.
    pub fn new(sink: impl ProgressSink + 'static) -> Self {
        Self {
            sink: Some(Arc::new(sink)),
        }
    }

    /// See [`ProgressSink::epoch_started`].
    pub fn epoch_started(&self, epoch: usize, epochs: usize, samples: usize) {
        if let Some(sink) = &self.sink {
            sink.epoch_started(epoch, epochs, samples);
        }
    }

    /// See [`ProgressSink::advance`].
    pub fn advance(&self, samples: usize) {
        if let Some(sink) = &self.sink {
            sink.advance(samples);
        }
    }

    /// See [`ProgressSink::epoch_finished`].
    pub fn epoch_finished(&self, summary: &crate::EpochSummary) {
        if let Some(sink) = &self.sink {
            sink.epoch_finished(summary);
        }
    }
}

/// Where and for what a model instance runs.
#[derive(Debug, Clone, Default)]
pub struct ModelContext {
    /// The node's id (`local` for `engine finetune`).
    pub node: String,
    /// The task's id.
    pub task: String,
    /// The task's labels by class index: the same list, in the same order, on every node.
    pub labels: Vec<String>,
    /// Whether this node is the initiator (it validates, tests and decides).
    pub is_initiator: bool,
    /// A directory of this node's own for files the model writes for the result package
    /// ([`AutoFedAvgModel::fine_tuned_files`](crate::AutoFedAvgModel::fine_tuned_files)).
    pub result_dir: PathBuf,
    /// The task log.
    pub logger: TaskLogger,
    /// Training mode (`true`) or evaluation mode; see [`AutoModel::train`](crate::AutoModel::train).
    pub training: bool,
    /// Progress of long runs (the default `train_an_epoch` advances it per batch).
    pub progress: Progress,
}

/// Everything a [`ModelFactory`](crate::ModelFactory) builds a model from.
#[derive(Debug, Clone)]
pub struct ModelInit {
    /// The model package (Model Card, `config.json`, preprocessor config, weights).
    pub package: ModelPackage,
    /// Seed, libtorch threads, decoding workers, cache and the workflow's hyper-parameter
    /// overrides.
    pub options: TrainerOptions,
    /// Where the model runs.
    pub context: ModelContext,
}

impl ModelInit {
    /// `config.json` with the run's hyper-parameter overrides (a workflow's `training`
    /// section, `engine finetune --epochs`) applied.
    pub fn config(&self) -> Map<String, Value> {
        let mut raw = self.package.config.raw.clone();
        for (_, values) in &self.options.overrides {
            raw.extend(values.to_json());
        }
        raw
    }

    /// The effective hyper-parameters (`learning_rate`, `batch_size`, `optimizer`, ...):
    /// the package's, the run's overrides, then the documented defaults.
    pub fn hyper_parameters(&self) -> Result<HyperParameters, ModelError> {
        Ok(self.settings()?.values)
    }

    /// The effective hyper-parameters with where each came from, as runs print and record
    /// them.
    pub fn settings(&self) -> Result<Resolved, ModelError> {
        let mut layers = vec![(Origin::Package, &self.package.config.hyper_parameters)];
        layers.extend(self.options.overrides.iter().map(|(o, v)| (*o, v)));
        Ok(HyperParameters::resolve(&layers)?)
    }
}

/// A node's dataset: a directory per split (the same directory may serve several). AlphaMed
/// gives a node one dataset directory; [`DatasetDirs::single`] is that case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetDirs {
    /// The directory whose training split this node trains on.
    pub train: Option<PathBuf>,
    /// The directory whose validation split this node validates on.
    pub validation: Option<PathBuf>,
    /// The directory whose test split this node tests on.
    pub test: Option<PathBuf>,
}

impl DatasetDirs {
    /// Every split from one directory.
    pub fn single(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            train: Some(dir.clone()),
            validation: Some(dir.clone()),
            test: Some(dir),
        }
    }

    /// The directories given, without repeats, in split order.
    pub fn dirs(&self) -> Vec<&PathBuf> {
        let mut out: Vec<&PathBuf> = Vec::new();
        for dir in [&self.train, &self.validation, &self.test]
            .into_iter()
            .flatten()
        {
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
        out
    }
}

/// How many samples a node's dataset has per split, as [`AutoModel::init_dataset`](crate::AutoModel::init_dataset)
/// found them. The training count is the node's FedAvg weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataSummary {
    /// Training samples.
    pub train: u64,
    /// Validation samples.
    pub validation: u64,
    /// Test samples.
    pub test: u64,
}
