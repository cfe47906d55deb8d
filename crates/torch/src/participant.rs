//! What a FedAvg participant's model is built from ([`TrainerOptions`], [`NodeData`]) and
//! the run-wide numbering its rounds follow ([`run_epoch`], [`round_seed`]).
//!
//! The engine runs participants through the authoring API (`fl_model::engine`), which
//! documents the round: a fresh optimiser per round, data order and augmentation keyed by
//! `(seed, run-wide epoch)`, libtorch's generator seeded from `(seed, round)`.

use fl_data::{Dataset, Sample, SplitMix64};
use fl_package::{HyperParameterValues, Origin};

use crate::error::ModelError;
use crate::train::Metrics;

/// Stream tag of libtorch's seed per round (distinct from fl-data's shuffle and augment).
const TORCH_STREAM: u64 = 0x746f_7263_685f_7365; // "torch_se"

/// The run-wide epoch of 0-based epoch `epoch` of `round`: `round * merge_epochs + epoch`;
/// `None` on overflow.
pub fn run_epoch(round: u64, merge_epochs: usize, epoch: usize) -> Option<u64> {
    round
        .checked_mul(merge_epochs as u64)?
        .checked_add(epoch as u64)
}

/// Memory for decoded images kept between epochs, by default: 512 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 512 << 20;

/// libtorch's seed for 0-based `round` of a run seeded with `seed`.
pub fn round_seed(seed: u64, round: u64) -> u64 {
    SplitMix64::from_words(&[TORCH_STREAM, seed, round]).next_u64()
}

/// One node's data, its labels as indices into the task's labels.
#[derive(Debug, Clone, Default)]
pub struct NodeData {
    /// Training samples.
    pub train: Vec<Sample>,
    /// Validation samples.
    pub validation: Vec<Sample>,
    /// Test samples.
    pub test: Vec<Sample>,
}

impl NodeData {
    /// Takes a dataset's splits, re-indexing its labels into `task_labels` by name (a node's
    /// dataset may list its labels in another order, or fewer of them). A sample whose label
    /// is not one of the task's is an error.
    pub fn from_dataset(dataset: &Dataset, task_labels: &[String]) -> Result<Self, ModelError> {
        let mapping: Vec<Option<usize>> = dataset
            .labels
            .iter()
            .map(|l| task_labels.iter().position(|t| t == l))
            .collect();
        let remap = |samples: &[Sample]| -> Result<Vec<Sample>, ModelError> {
            samples
                .iter()
                .map(|s| match mapping.get(s.label).copied().flatten() {
                    Some(label) => Ok(Sample {
                        path: s.path.clone(),
                        label,
                    }),
                    None => Err(ModelError::Data(fl_data::DataError::Malformed {
                        file: dataset.report.file.clone(),
                        key: "labels".into(),
                        problem: format!(
                            "has `{}`, which `{}` uses and the task does not have",
                            dataset.labels.get(s.label).map_or("?", String::as_str),
                            s.path.display()
                        ),
                        expected: format!("the task's labels: {}", task_labels.join(", ")),
                    })),
                })
                .collect()
        };
        Ok(Self {
            train: remap(&dataset.train)?,
            validation: remap(&dataset.validation)?,
            test: remap(&dataset.test)?,
        })
    }
}

/// How a node trains, beyond the package's `config.json`.
#[derive(Debug, Clone)]
pub struct TrainerOptions {
    /// The run's seed: libtorch's generator per round, data order and augmentation.
    pub seed: u64,
    /// libtorch intra-op threads (part of the reproducibility contract).
    pub threads: usize,
    /// Image decoding threads.
    pub workers: usize,
    /// Memory for decoded images kept between epochs and rounds (0: decode every epoch).
    pub cache_bytes: usize,
    /// Hyper-parameters layered over the package's `config.json`, in order, each with where
    /// it came from: a workflow's `training` section, `engine finetune --epochs`.
    pub overrides: Vec<(Origin, HyperParameterValues)>,
}

impl Default for TrainerOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            threads: 1,
            workers: 2,
            cache_bytes: DEFAULT_CACHE_BYTES,
            overrides: Vec::new(),
        }
    }
}

impl From<Metrics> for fl_tensor::Metrics {
    fn from(m: Metrics) -> Self {
        fl_tensor::Metrics {
            loss: Some(m.loss),
            accuracy: Some(m.accuracy),
            extra: Default::default(),
        }
    }
}
