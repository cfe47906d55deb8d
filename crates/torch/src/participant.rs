//! What one FedAvg participant does in a round: load the global weights, train
//! `merge_epochs` epochs on its own data, and hand back its weights with its sample count;
//! and evaluate global weights on its data.
//!
//! # Optimiser state across rounds
//!
//! The optimiser is **created afresh at the start of every round**, from the global weights,
//! and kept across the round's `merge_epochs` epochs only (FedAvg as published, and what
//! Flower and FedML clients do). Momentum buffers (SGD) and moment estimates (Adam) from the
//! previous round describe the trajectory of this node's own pre-aggregation weights; after
//! averaging they point from a model the node no longer has, and stale Adam second moments
//! also damp the first steps wrongly. A fresh optimiser also makes a round a pure function of
//! `(global weights, round, seed, data, threads)`: nothing has to be checkpointed besides the
//! global model for a resumed run (or a node that joins late, restarts or is replaced) to
//! reproduce a round bit for bit. AlphaMed keeps a local optimiser across rounds; this engine
//! does not, on purpose.
//!
//! # Epochs, data order and learning rate
//!
//! Epochs are counted across the run: epoch `e` (0-based) of round `r` is run-wide epoch
//! `r * merge_epochs + e` ([`run_epoch`]). Data order and augmentation are keyed by
//! `(seed, run-wide epoch)` (see [`fl_data::batches`]), so every epoch of every round differs
//! and a resumed round sees the same batches. The step learning-rate decay
//! (`lr_step_size`, `lr_gamma`) uses the run-wide epoch too, as a workflow's `training`
//! section documents. libtorch's own generator (Dropout, a rebuilt head) is seeded at the
//! start of each round from `(seed, round)`.
//!
//! libtorch's thread count and generator are process-wide: determinism holds when one
//! trainer trains at a time in a process (the embedded runtime must serialise them) and every
//! trainer uses the same thread count.

use std::ops::Range;
use std::sync::Arc;

use fl_data::{BatchOptions, Dataset, Preprocessor, Sample, SplitMix64, batches};
use fl_package::ModelPackage;
use fl_tensor::{Body, Digest, Split, TensorSet};
use serde_json::{Map, Value};

use crate::classifier::{Classifier, HeadChange};
use crate::error::ModelError;
use crate::exchange::WeightExchange;
use crate::finetune::DEFAULT_CACHE_BYTES;
use crate::train::{HyperParameters, Metrics, evaluate, train_epoch};
use tch::nn;

/// Stream tag of libtorch's seed per round (distinct from fl-data's shuffle and augment).
const TORCH_STREAM: u64 = 0x746f_7263_685f_7365; // "torch_se"

/// The run-wide epoch of 0-based epoch `epoch` of `round`: `round * merge_epochs + epoch`;
/// `None` on overflow.
pub fn run_epoch(round: u64, merge_epochs: usize, epoch: usize) -> Option<u64> {
    round
        .checked_mul(merge_epochs as u64)?
        .checked_add(epoch as u64)
}

/// libtorch's seed for 0-based `round` of a run seeded with `seed`.
pub fn round_seed(seed: u64, round: u64) -> u64 {
    SplitMix64::from_words(&[TORCH_STREAM, seed, round]).next_u64()
}

/// A fingerprint of a data order (a sequence of sample indices), to compare orders cheaply.
pub fn order_fingerprint(order: &[usize]) -> u64 {
    let words: Vec<u64> = order.iter().map(|&i| i as u64).collect();
    SplitMix64::from_words(&words).next_u64()
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
    /// Hyper-parameters overriding `config.json`'s, under the same keys (`learning_rate`,
    /// `batch_size`, `optimizer`, `momentum`, `weight_decay`, `lr_step_size`, `lr_gamma`);
    /// checked as `config.json`'s are. A workflow's `training` section serialises to this.
    pub overrides: Map<String, Value>,
}

impl Default for TrainerOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            threads: 1,
            workers: 2,
            cache_bytes: DEFAULT_CACHE_BYTES,
            overrides: Map::new(),
        }
    }
}

/// One local epoch of a round.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// The run-wide epoch ([`run_epoch`]) that keyed data order and augmentation.
    pub epoch: u64,
    /// The learning rate used.
    pub learning_rate: f64,
    /// Training metrics (augmented data, training mode).
    pub metrics: Metrics,
    /// [`order_fingerprint`] of the sample order the epoch saw.
    pub order: u64,
}

/// What a node sends back after a round.
#[derive(Debug, Clone)]
pub struct RoundUpdate {
    /// The trained weights: the global model's names, dtypes and shapes.
    pub weights: TensorSet,
    /// Training samples seen per epoch (the training split's size): the FedAvg weight.
    pub samples: u64,
    /// Training metrics of the last epoch.
    pub metrics: Metrics,
    /// Digest of the global weights training started from.
    pub base_digest: Digest,
    /// Every epoch of the round.
    pub epochs: Vec<EpochRecord>,
}

impl RoundUpdate {
    /// The [`Body::Update`] that carries this update.
    pub fn into_body(self) -> Body {
        Body::Update {
            samples: self.samples,
            base_digest: self.base_digest,
            metrics: self.metrics.into(),
            tensors: self.weights,
        }
    }

    /// The run-wide epochs of the round.
    pub fn run_epochs(&self) -> Range<u64> {
        match (self.epochs.first(), self.epochs.last()) {
            (Some(first), Some(last)) => first.epoch..last.epoch + 1,
            _ => 0..0,
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

/// A FedAvg participant: its model, data and hyper-parameters.
pub struct LocalTrainer {
    model: Classifier,
    optimizer: Option<nn::Optimizer>,
    head_change: HeadChange,
    hp: HyperParameters,
    preprocessor: Arc<Preprocessor>,
    train: Arc<[Sample]>,
    validation: Arc<[Sample]>,
    test: Arc<[Sample]>,
    seed: u64,
    threads: usize,
    workers: usize,
}

impl std::fmt::Debug for LocalTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrainer")
            .field("model", &self.model)
            .field("hp", &self.hp)
            .field("train", &self.train.len())
            .field("validation", &self.validation.len())
            .field("test", &self.test.len())
            .finish_non_exhaustive()
    }
}

impl LocalTrainer {
    /// Builds the package's model for the task's `labels` (the same list, in the same order,
    /// on every node; the head is rebuilt from the seed when they are not the package's),
    /// with `data` whose sample labels index `labels` (see [`NodeData::from_dataset`]).
    ///
    /// Hyper-parameters are `config.json`'s with `options.overrides` applied; `epochs` is not
    /// used (a round runs `merge_epochs`). The decoded-image cache is on when
    /// `options.cache_bytes > 0` and lasts as long as the trainer, across rounds.
    pub fn new(
        package: &ModelPackage,
        data: NodeData,
        labels: &[String],
        options: &TrainerOptions,
    ) -> Result<Self, ModelError> {
        let threads = options.threads.max(1);
        tch::set_num_threads(threads as i32);
        let mut raw = package.config.raw.clone();
        raw.extend(options.overrides.clone());
        let hp = HyperParameters::from_config(&raw)?;
        let (model, head_change) =
            Classifier::from_package(package, Some(labels), options.seed as i64)?;
        let preprocessor = Arc::new(
            Preprocessor::new(package.preprocessor.as_ref(), model.spec.in_channels as u32)
                .with_cache(options.cache_bytes),
        );
        preprocessor.validate()?;
        let mut trainer = Self {
            model,
            optimizer: None,
            head_change,
            hp,
            preprocessor,
            train: Arc::from(Vec::new()),
            validation: Arc::from(Vec::new()),
            test: Arc::from(Vec::new()),
            seed: options.seed,
            threads,
            workers: options.workers,
        };
        trainer.set_data(data)?;
        Ok(trainer)
    }

    /// Replaces the node's data; sample labels index the task's labels.
    pub fn set_data(&mut self, data: NodeData) -> Result<(), ModelError> {
        let labels = self.model.labels.len();
        for (split, samples) in [
            (Split::Train, &data.train),
            (Split::Validation, &data.validation),
            (Split::Test, &data.test),
        ] {
            if let Some(s) = samples.iter().find(|s| s.label >= labels) {
                return Err(ModelError::Config {
                    key: "id2label".into(),
                    message: format!(
                        "the task has {} labels but {split:?} sample `{}` has class index {}",
                        labels,
                        s.path.display(),
                        s.label
                    ),
                    expected: "samples labelled with indices into the task's labels".into(),
                });
            }
        }
        self.train = data.train.into();
        self.validation = data.validation.into();
        self.test = data.test.into();
        Ok(())
    }

    /// Starts round `round` (0-based) of a run: fixes libtorch's thread count, seeds its
    /// generator from `(seed, round)` and creates a fresh optimiser (see the module
    /// documentation).
    pub fn start_round(&mut self, round: u64) -> Result<(), ModelError> {
        tch::set_num_threads(self.threads as i32);
        tch::manual_seed(round_seed(self.seed, round) as i64);
        self.optimizer = Some(self.hp.optimizer(&self.model)?);
        Ok(())
    }

    /// Trains run-wide epoch `epoch` on the training split with the round's optimiser
    /// ([`start_round`](Self::start_round) first), at the step-decayed learning rate.
    pub fn train_epoch_at(&mut self, epoch: u64) -> Result<EpochRecord, ModelError> {
        let learning_rate = self
            .hp
            .learning_rate_at(usize::try_from(epoch).unwrap_or(usize::MAX));
        let options = self.batch_options(epoch, true);
        let Some(optimizer) = self.optimizer.as_mut() else {
            return Err(ModelError::Model(
                "no optimiser: start_round must run before train_epoch_at".into(),
            ));
        };
        optimizer.set_lr(learning_rate);
        let mut order = Vec::with_capacity(self.train.len());
        let stream = batches(self.train.clone(), self.preprocessor.clone(), options).inspect(|b| {
            if let Ok(b) = b {
                order.extend_from_slice(&b.indices);
            }
        });
        let metrics = train_epoch(&mut self.model, optimizer, stream, |_| {})?;
        Ok(EpochRecord {
            epoch,
            learning_rate,
            metrics,
            order: order_fingerprint(&order),
        })
    }

    /// The hyper-parameters in use.
    pub fn hyper_parameters(&self) -> &HyperParameters {
        &self.hp
    }

    /// What happened to the package's head for the task's labels.
    pub fn head_change(&self) -> &HeadChange {
        &self.head_change
    }

    /// The task's labels.
    pub fn labels(&self) -> &[String] {
        &self.model.labels
    }

    /// The number of samples of a split.
    pub fn samples(&self, split: Split) -> usize {
        self.split(split).len()
    }

    /// The model's current weights: the package's (with the head for the task's labels)
    /// before any round, else those of the last round trained or evaluated.
    pub fn weights(&self) -> Result<TensorSet, ModelError> {
        self.model.weights()
    }

    /// The sample order of a run-wide epoch of training (what [`EpochRecord::order`]
    /// fingerprints).
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        fl_data::epoch_order(self.train.len(), true, self.seed, epoch)
    }

    /// Loads `global`, trains `merge_epochs` epochs on the training split with a fresh
    /// optimiser, and returns the weights (see the module documentation for epochs,
    /// learning rate and optimiser state).
    pub fn train_round(
        &mut self,
        global: &TensorSet,
        round: u64,
        merge_epochs: usize,
    ) -> Result<RoundUpdate, ModelError> {
        self.train_round_observed(global, round, merge_epochs, &mut |_| {})
    }

    /// [`train_round`](Self::train_round), calling `on_epoch` after each local epoch (for
    /// progress reports; it does not change the result).
    pub fn train_round_observed(
        &mut self,
        global: &TensorSet,
        round: u64,
        merge_epochs: usize,
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> Result<RoundUpdate, ModelError> {
        if self.train.is_empty() {
            return Err(ModelError::EmptySplit {
                split: "Train",
                hint: "a FedAvg participant needs training samples",
            });
        }
        let Some(last_epoch) = merge_epochs
            .checked_sub(1)
            .and_then(|e| run_epoch(round, merge_epochs, e))
        else {
            return Err(ModelError::Config {
                key: "merge_epochs".into(),
                message: format!("is {merge_epochs} in round {round}"),
                expected: "at least 1, with round * merge_epochs below 2^64".into(),
            });
        };
        self.model.load_weights(global)?;
        self.start_round(round)?;
        let mut epochs = Vec::with_capacity(merge_epochs);
        for epoch in last_epoch + 1 - merge_epochs as u64..=last_epoch {
            let record = self.train_epoch_at(epoch)?;
            on_epoch(&record);
            epochs.push(record);
        }
        let metrics = epochs.last().map(|e| e.metrics).unwrap_or(Metrics {
            loss: 0.0,
            accuracy: 0.0,
            samples: 0,
        });
        Ok(RoundUpdate {
            weights: self.model.weights()?,
            samples: self.train.len() as u64,
            metrics,
            base_digest: global.digest(),
            epochs,
        })
    }

    /// Loads `global` and evaluates it on a split (evaluation mode, in file order, no
    /// augmentation). An empty split is an error.
    pub fn evaluate(&mut self, global: &TensorSet, split: Split) -> Result<Metrics, ModelError> {
        let samples = self.split(split).clone();
        if samples.is_empty() {
            return Err(ModelError::EmptySplit {
                split: match split {
                    Split::Train => "Train",
                    Split::Validation => "Validation",
                    Split::Test => "Test",
                },
                hint: "there is nothing to evaluate on this node",
            });
        }
        tch::set_num_threads(self.threads as i32);
        self.model.load_weights(global)?;
        evaluate(
            &self.model,
            batches(
                samples,
                self.preprocessor.clone(),
                self.batch_options(0, false),
            ),
        )
    }

    fn split(&self, split: Split) -> &Arc<[Sample]> {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    fn batch_options(&self, epoch: u64, training: bool) -> BatchOptions {
        BatchOptions {
            batch_size: self.hp.batch_size,
            shuffle: training,
            augment: training,
            seed: self.seed,
            epoch,
            workers: self.workers,
            prefetch: self.workers.max(1) * 2,
        }
    }
}
