//! A model registered from outside the engine crates: `tests.authoring.HeadOnly`, a small
//! convolutional backbone that stays frozen (the package's weights) under a linear `head`,
//! the only part it trains and exchanges. Its data check refuses a node with fewer training
//! images than `config.json`'s `min_train_samples`, and with `keep_first_state` its
//! `best_state_dict` hook keeps the first round's state whatever the validation says.
//!
//! It uses the authoring API's defaults wherever it can (training, validation and test loops
//! over its [`Parts`], the scheduler hooks), so the tests of this crate exercise them.

use std::path::Path;
use std::sync::Arc;

use fl_data::Preprocessor;
use fl_model::{
    AutoFedAvgModel, AutoModel, DataSummary, DatasetDirs, FineTuneJob, FineTuneOutcome,
    ModelContext, ModelError, ModelInit, Parts, SampleLoader, Schedule, Scored, TensorSet,
    fine_tune_fedavg, image_batch, open_dataset, summary,
};
use fl_torch::{named_tensors, read_params, to_tensor_set};
use serde_json::Value;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Tensor};

/// `entry_module`.
pub const MODULE: &str = "tests.authoring";
/// `entry_class`.
pub const CLASS: &str = "HeadOnly";
/// The exchanged part's parameter prefix.
pub const HEAD: &str = "head.";

fl_model::register_model!(
    MODULE,
    CLASS,
    "test model: frozen backbone, exchanged head",
    |init| Ok(Box::new(HeadOnly::new(init)?))
);

/// The network: `backbone` (conv 3x3, 1 → 8, ReLU, 2x2 average pool) and `head` (linear).
#[derive(Debug)]
pub struct Net {
    backbone: nn::Conv2D,
    head: nn::Linear,
}

impl Net {
    /// Builds the variables under `p`.
    pub fn new(p: &nn::Path, classes: i64) -> Self {
        Self {
            backbone: nn::conv2d(
                p / "backbone",
                1,
                8,
                3,
                nn::ConvConfig {
                    padding: 1,
                    ..Default::default()
                },
            ),
            head: nn::linear(p / "head", 8 * 2 * 2, classes, Default::default()),
        }
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.backbone)
            .relu()
            .adaptive_avg_pool2d([2, 2])
            .flatten(1, -1)
            .apply(&self.head)
    }
}

/// Writes initial weights for a package (seeded).
pub fn write_initial_weights(path: &Path, classes: i64, seed: i64) -> Result<(), ModelError> {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = Net::new(&vs.root(), classes);
    fl_torch::write_safetensors(path, &named_tensors(&vs)).map_err(|source| ModelError::Params {
        path: path.to_path_buf(),
        source,
    })
}

/// The model.
pub struct HeadOnly {
    context: ModelContext,
    vs: nn::VarStore,
    net: Net,
    optimizer: Option<nn::Optimizer>,
    training: Option<SampleLoader>,
    validation: Option<SampleLoader>,
    testing: Option<SampleLoader>,
    preprocessor: Arc<Preprocessor>,
    learning_rate: f64,
    batch_size: usize,
    seed: u64,
    min_train: u64,
    keep_first_state: bool,
}

impl std::fmt::Debug for HeadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadOnly")
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

impl HeadOnly {
    /// Loads the package's weights (all of them: the task's labels must be the package's)
    /// and freezes the backbone.
    pub fn new(init: ModelInit) -> Result<Self, ModelError> {
        let hp = init.hyper_parameters()?;
        let config = init.config();
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), init.context.labels.len() as i64);
        let tensors =
            read_params(&init.package.param_path).map_err(|source| ModelError::Params {
                path: init.package.param_path.clone(),
                source,
            })?;
        fl_torch::load_strict(&mut vs, &tensors).map_err(|source| ModelError::Params {
            path: init.package.param_path.clone(),
            source,
        })?;
        for (name, variable) in vs.variables() {
            if !name.starts_with(HEAD) {
                let _ = variable.set_requires_grad(false);
            }
        }
        Ok(Self {
            context: init.context,
            vs,
            net,
            optimizer: None,
            training: None,
            validation: None,
            testing: None,
            preprocessor: Arc::new(Preprocessor::new(init.package.preprocessor.as_ref(), 1)),
            learning_rate: hp.learning_rate,
            batch_size: hp.batch_size,
            seed: init.options.seed,
            min_train: config
                .get("min_train_samples")
                .and_then(Value::as_u64)
                .unwrap_or(1),
            keep_first_state: config
                .get("keep_first_state")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    fn loader(&self, samples: Vec<fl_data::Sample>) -> Option<SampleLoader> {
        (!samples.is_empty()).then(|| {
            SampleLoader::new(
                samples,
                self.preprocessor.clone(),
                self.batch_size,
                self.seed,
                0,
            )
        })
    }
}

impl AutoModel for HeadOnly {
    fn context(&self) -> &ModelContext {
        &self.context
    }

    fn context_mut(&mut self) -> &mut ModelContext {
        &mut self.context
    }

    fn forward(&mut self, batch: &Tensor) -> Result<Tensor, ModelError> {
        Ok(self.net.forward_t(batch, self.context.training))
    }

    fn predict_file(&mut self, image: &Path) -> Result<Vec<Scored>, ModelError> {
        let image = self.preprocessor.load(image, None)?;
        Ok(self
            .predict(&image_batch(&image))?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    fn init_dataset(&mut self, dataset: &DatasetDirs) -> Result<DataSummary, String> {
        let data = open_dataset(dataset, &self.context.labels, &self.context.logger)?;
        if dataset.train.is_some() && (data.train.len() as u64) < self.min_train {
            return Err(format!(
                "HeadOnly needs at least {} training images (config.json `min_train_samples`); \
                 this node has {}",
                self.min_train,
                data.train.len()
            ));
        }
        let counts = summary(&data);
        self.training = self.loader(data.train);
        self.validation = self.loader(data.validation);
        self.testing = self.loader(data.test);
        Ok(counts)
    }

    fn fine_tune(&mut self, job: &FineTuneJob) -> Result<FineTuneOutcome, ModelError> {
        fine_tune_fedavg(self, job)
    }
}

impl AutoFedAvgModel for HeadOnly {
    fn parts(&mut self) -> Parts<'_> {
        Parts {
            vs: &self.vs,
            model: &self.net,
            optimizer: &mut self.optimizer,
            training: self.training.as_ref().map(|l| l as _),
            validation: self.validation.as_ref().map(|l| l as _),
            testing: self.testing.as_ref().map(|l| l as _),
        }
    }

    fn build_optimizer(&mut self) -> Result<nn::Optimizer, ModelError> {
        Ok(nn::Sgd::default().build(&self.vs, self.learning_rate)?)
    }

    /// With `keep_first_state` (config.json), the first round's state is the one kept.
    fn best_state_dict(&self, schedule: &Schedule) -> bool {
        if self.keep_first_state {
            schedule.round == 1
        } else {
            schedule.default_best()
        }
    }

    /// Only the head travels.
    fn state_dict(&mut self) -> Result<TensorSet, ModelError> {
        let head: Vec<(String, Tensor)> = named_tensors(&self.vs)
            .into_iter()
            .filter(|(name, _)| name.starts_with(HEAD))
            .collect();
        to_tensor_set(&head)
    }
}
