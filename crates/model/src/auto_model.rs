//! [`AutoModel`]: the contract every model fedengine can fine-tune fulfils (AlphaMed's
//! `AutoModel`, in Rust terms).

use std::path::{Path, PathBuf};

use fl_torch::{ModelError, Scored};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::context::{DataSummary, DatasetDirs, ModelContext};

/// A model the engine can verify data for, fine-tune and predict with.
///
/// Implementations are `Send` (the engine runs each on a thread of its own) and never panic
/// on user input: a bad image, dataset or file is an `Err` naming it.
pub trait AutoModel: Send {
    /// Where the model runs (node, task, labels, result directory, log).
    fn context(&self) -> &ModelContext;

    /// [`context`](Self::context), mutably.
    fn context_mut(&mut self) -> &mut ModelContext;

    /// The device the model's variables live on; batches are moved there.
    fn device(&self) -> Device {
        Device::Cpu
    }

    /// Switches to training mode (BatchNorm batch statistics, Dropout): what
    /// [`forward`](Self::forward) uses until [`eval`](Self::eval).
    fn train(&mut self) {
        self.context_mut().training = true;
    }

    /// Switches to evaluation mode.
    fn eval(&mut self) {
        self.context_mut().training = false;
    }

    /// The logits `[N, classes]` of a batch `[N, C, H, W]` of preprocessed images, in the
    /// current mode.
    fn forward(&mut self, batch: &Tensor) -> Result<Tensor, ModelError>;

    /// Every label with its probability, most probable first, for each sample of a batch of
    /// preprocessed images (evaluation mode, no gradients, on the model's device).
    fn predict(&mut self, batch: &Tensor) -> Result<Vec<Vec<Scored>>, ModelError> {
        let training = self.context().training;
        self.eval();
        let batch = batch.to_device(self.device());
        let logits = tch::no_grad(|| self.forward(&batch));
        self.context_mut().training = training;
        let logits = logits?.f_to_kind(Kind::Float)?.to_device(Device::Cpu);
        let probabilities = logits.f_softmax(-1, Kind::Float)?;
        let labels = self.context().labels.clone();
        let [rows, classes] = probabilities.size()[..] else {
            return Err(ModelError::Model(format!(
                "forward returned a tensor of shape {:?}; expected [samples, classes]",
                probabilities.size()
            )));
        };
        if classes as usize != labels.len() {
            return Err(ModelError::Model(format!(
                "forward returned {classes} classes; the task has {} labels",
                labels.len()
            )));
        }
        let values: Vec<f32> = Vec::<f32>::try_from(probabilities.flatten(0, -1))?;
        let raw: Vec<f32> = Vec::<f32>::try_from(logits.flatten(0, -1))?;
        if values.iter().chain(&raw).any(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                what: "the model's output".into(),
                at: "prediction".into(),
            });
        }
        Ok((0..rows as usize)
            .map(|row| {
                let mut scored: Vec<Scored> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, label)| Scored {
                        label: label.clone(),
                        probability: f64::from(values[row * labels.len() + i]),
                        logit: f64::from(raw[row * labels.len() + i]),
                    })
                    .collect();
                scored.sort_by(|a, b| b.probability.total_cmp(&a.probability));
                scored
            })
            .collect())
    }

    /// [`predict`](Self::predict) for one image file, preprocessed the model's own way.
    fn predict_file(&mut self, image: &Path) -> Result<Vec<Scored>, ModelError>;

    /// [`predict_file`](Self::predict_file) for many files, up to `batch_size` per forward
    /// pass where the model batches (the default predicts one file at a time). A file that
    /// cannot be read gets its error and does not stop the others.
    fn predict_files(
        &mut self,
        images: &[PathBuf],
        batch_size: usize,
    ) -> Vec<Result<Vec<Scored>, ModelError>> {
        let _ = batch_size;
        images.iter().map(|path| self.predict_file(path)).collect()
    }

    /// Verifies and loads the node's dataset: the sample counts, or why the data cannot be
    /// used (this is the data-verification step; the engine stops the task with the reason
    /// before any training). Never panics.
    fn init_dataset(&mut self, dataset: &DatasetDirs) -> Result<DataSummary, String>;

    /// Fine-tunes on this node alone (`engine finetune`): `job` says which node, task and
    /// data. A FedAvg model implements it with [`fine_tune_fedavg`](crate::fine_tune_fedavg).
    /// In a federated task the engine drives the per-round methods of
    /// [`AutoFedAvgModel`](crate::AutoFedAvgModel) instead, keeping rounds, transport,
    /// timeouts and checkpoints.
    fn fine_tune(&mut self, job: &FineTuneJob) -> Result<FineTuneOutcome, ModelError>;

    /// Writes a line to the task log.
    fn push_log(&self, message: &str) {
        self.context().logger.info(message);
    }
}

/// A fine-tuning run on one node (AlphaMed's `fine_tune(id, task_id, dataset_dir,
/// is_initiator, recover)`).
#[derive(Debug, Clone)]
pub struct FineTuneJob {
    /// The node's id.
    pub node: String,
    /// The task's id.
    pub task: String,
    /// The node's data.
    pub dataset: DatasetDirs,
    /// Whether this node validates and tests (always, alone).
    pub is_initiator: bool,
    /// Resume from the result directory's checkpoint instead of starting over.
    pub recover: bool,
    /// Epochs at most.
    pub epochs: usize,
    /// The run's seed (libtorch's generator; the model's own data order uses the seed it
    /// was built with).
    pub seed: u64,
    /// Validated epochs without improvement before stopping; `None`:
    /// [`LOCAL_PATIENCE`](crate::LOCAL_PATIENCE).
    pub patience: Option<u32>,
}

/// One epoch of a local run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// 1-based.
    pub epoch: usize,
    /// The learning rate used, when the model sets one.
    pub learning_rate: Option<f64>,
    /// Training metrics.
    pub train: fl_torch::Metrics,
    /// Validation metrics, when there is validation data.
    pub validation: Option<fl_torch::Metrics>,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// What a local fine-tuning run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct FineTuneOutcome {
    /// Every epoch run (including those of an interrupted run that was resumed).
    pub epochs: Vec<EpochSummary>,
    /// The epoch (1-based) whose state was kept; 0 for the initial state.
    pub best_epoch: usize,
    /// Why training stopped.
    pub stopped: String,
    /// Whether a hook ended the run before its last epoch.
    pub stopped_early: bool,
    /// Test metrics of the kept state, when there is test data.
    pub test: Option<fl_torch::Metrics>,
    /// The kept state's full weights (safetensors) under the result directory.
    pub weights: PathBuf,
    /// The model's extra result files: path inside `model.zip` → file.
    pub files: Vec<crate::ResultFile>,
}
