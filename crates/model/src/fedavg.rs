//! [`AutoFedAvgModel`]: what a model adds to [`AutoModel`] to take part in FedAvg (AlphaMed's
//! `AutoFedAvgModel` with its scheduler hooks), with defaults built on its [`Parts`].

use std::path::{Path, PathBuf};

use fl_tensor::{Schedule, TensorSet};
use fl_torch::{
    Metrics, ModelError, check_finite, evaluate_batches, from_tensor_set, named_tensors,
    to_tensor_set, train_batches, write_safetensors,
};
use tch::nn;

use crate::auto_model::AutoModel;
use crate::loader::{DataLoader, Pass};

/// A model's working parts, borrowed together (so that a default method can run the network
/// while stepping the optimiser).
pub struct Parts<'a> {
    /// Every variable of the model (parameters and buffers) under PyTorch's names.
    pub vs: &'a nn::VarStore,
    /// The network.
    pub model: &'a dyn nn::ModuleT,
    /// The round's optimiser; [`AutoFedAvgModel::start_round`] fills it.
    pub optimizer: &'a mut Option<nn::Optimizer>,
    /// The training data, when this node trains.
    pub training: Option<&'a dyn DataLoader>,
    /// The validation data, when this node validates.
    pub validation: Option<&'a dyn DataLoader>,
    /// The test data, when this node tests.
    pub testing: Option<&'a dyn DataLoader>,
}

impl std::fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("variables", &self.vs.len())
            .field("optimizer", &self.optimizer.is_some())
            .field("training", &self.training.map(DataLoader::samples))
            .field("validation", &self.validation.map(DataLoader::samples))
            .field("testing", &self.testing.map(DataLoader::samples))
            .finish()
    }
}

/// A round as a participant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundContext {
    /// 0-based round of the run.
    pub round: u64,
    /// Local epochs in the round.
    pub merge_epochs: usize,
    /// The run's seed.
    pub seed: u64,
    /// libtorch's seed for this round, derived from `(seed, round)`.
    pub torch_seed: u64,
}

/// One local epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochContext {
    /// 0-based round of the run.
    pub round: u64,
    /// 0-based epoch within the round.
    pub epoch: usize,
    /// The run-wide epoch, `round * merge_epochs + epoch`: what keys data order,
    /// augmentation and learning-rate decay, so every epoch of every round differs and a
    /// resumed round repeats exactly.
    pub run_epoch: u64,
}

impl EpochContext {
    /// The epoch for messages: `round 2, epoch 3` (both 1-based, as the task log counts).
    pub fn describe(&self) -> String {
        format!("round {}, epoch {}", self.round + 1, self.epoch + 1)
    }

    /// Adds this epoch to the place a [`ModelError::NonFinite`] names (`batch 4` becomes
    /// `round 2, epoch 3, batch 4`); other errors are returned as they are.
    pub fn locate(&self, error: ModelError) -> ModelError {
        match error {
            ModelError::NonFinite { what, at } => ModelError::NonFinite {
                what,
                at: format!("{}, {at}", self.describe()),
            },
            other => other,
        }
    }
}

/// An extra file for the result package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFile {
    /// Its path inside `model.zip` (`/`-separated, relative, not one of the package's own
    /// `README.md`, `config.json` or weights).
    pub path_in_zip: String,
    /// The file the model wrote (under its result directory).
    pub file: PathBuf,
}

/// Evaluates `model` on one evaluation pass of `loader` (mean cross-entropy and accuracy,
/// no gradients); `None` without a loader.
pub fn evaluate_loader(
    model: &dyn nn::ModuleT,
    loader: Option<&dyn DataLoader>,
) -> Result<Option<Metrics>, ModelError> {
    loader
        .map(|loader| evaluate_batches(model, loader.batches(Pass::evaluation())))
        .transpose()
}

/// A model that takes part in FedAvg.
///
/// A round on a participant is: [`load_state_dict`](Self::load_state_dict) (the global
/// weights), [`start_round`](Self::start_round), `merge_epochs` ×
/// [`train_an_epoch`](Self::train_an_epoch), [`state_dict`](Self::state_dict). The
/// initiator, after each round: `load_state_dict`, [`run_validation`](Self::run_validation),
/// then the hooks [`best_state_dict`](Self::best_state_dict) and
/// [`is_task_finished`](Self::is_task_finished); at the end: the best state,
/// [`run_test`](Self::run_test), [`fine_tuned_files`](Self::fine_tuned_files). The engine
/// sets libtorch's thread count before each call.
pub trait AutoFedAvgModel: AutoModel {
    /// The model's variables, network, optimiser and loaders, borrowed together.
    fn parts(&mut self) -> Parts<'_>;

    /// A new optimiser over the model's trainable variables (the engine makes one per
    /// round: FedAvg's optimiser state does not survive averaging).
    fn build_optimizer(&mut self) -> Result<nn::Optimizer, ModelError>;

    /// The learning rate of an epoch; `None` keeps the optimiser's.
    fn learning_rate(&self, _epoch: &EpochContext) -> Option<f64> {
        None
    }

    /// Starts a round: seeds libtorch with `round.torch_seed` and builds a fresh optimiser.
    fn start_round(&mut self, round: &RoundContext) -> Result<(), ModelError> {
        tch::manual_seed(round.torch_seed as i64);
        let optimizer = self.build_optimizer()?;
        *self.parts().optimizer = Some(optimizer);
        Ok(())
    }

    /// Trains one epoch on the training loader (mean cross-entropy, one step per batch) and
    /// returns its metrics. A loss or, after the epoch, a weight that is not finite stops
    /// training with [`ModelError::NonFinite`] naming the epoch and the batch or weight.
    fn train_an_epoch(&mut self, epoch: &EpochContext) -> Result<Metrics, ModelError> {
        let learning_rate = self.learning_rate(epoch);
        self.train();
        let progress = self.context().progress.clone();
        let parts = self.parts();
        let Some(training) = parts.training else {
            return Err(ModelError::EmptySplit {
                split: "Train",
                hint: "this node has no training data",
            });
        };
        let Some(optimizer) = parts.optimizer.as_mut() else {
            return Err(ModelError::Model(
                "no optimiser: start_round must run before train_an_epoch".into(),
            ));
        };
        if let Some(lr) = learning_rate {
            optimizer.set_lr(lr);
        }
        let batches = training
            .batches(Pass {
                epoch: epoch.run_epoch,
                training: true,
            })
            .inspect(|batch| {
                if let Ok((_, ys)) = batch {
                    progress.advance(ys.size().first().copied().unwrap_or(0) as usize);
                }
            });
        let vs = parts.vs;
        let metrics =
            train_batches(parts.model, optimizer, batches).map_err(|e| epoch.locate(e))?;
        check_finite(vs, || epoch.describe())?;
        Ok(metrics)
    }

    /// Evaluates on the validation loader; `None` without validation data.
    fn run_validation(&mut self) -> Result<Option<Metrics>, ModelError> {
        self.eval();
        let parts = self.parts();
        evaluate_loader(parts.model, parts.validation)
    }

    /// Evaluates on the test loader; `None` without test data.
    fn run_test(&mut self) -> Result<Option<Metrics>, ModelError> {
        self.eval();
        let parts = self.parts();
        evaluate_loader(parts.model, parts.testing)
    }

    /// The weights this model exchanges: every variable by default. A model may exchange a
    /// part only (a head on a frozen backbone); the names, dtypes and shapes must be the same
    /// on every node and in every round.
    fn state_dict(&mut self) -> Result<TensorSet, ModelError> {
        to_tensor_set(&named_tensors(self.parts().vs))
    }

    /// Loads exchanged weights (what [`state_dict`](Self::state_dict) returns): every
    /// tensor must name a variable of the same shape; variables not named keep their values.
    fn load_state_dict(&mut self, state: &TensorSet) -> Result<(), ModelError> {
        let tensors = from_tensor_set(state)?;
        let variables = self.parts().vs.variables();
        for (name, tensor) in &tensors {
            let Some(variable) = variables.get(name) else {
                return Err(ModelError::Model(format!(
                    "load_state_dict: the model has no variable `{name}`"
                )));
            };
            if variable.size() != tensor.size() {
                return Err(ModelError::Model(format!(
                    "load_state_dict: `{name}` has shape {:?}, the model's is {:?}",
                    tensor.size(),
                    variable.size()
                )));
            }
            let mut variable = variable.shallow_clone();
            tch::no_grad(|| variable.f_copy_(tensor))?;
        }
        Ok(())
    }

    /// Writes the whole model (every variable, exchanged or not) as safetensors: the result
    /// package's weights.
    fn save_weights(&mut self, path: &Path) -> Result<(), ModelError> {
        check_finite(self.parts().vs, || {
            format!("before writing {}", path.display())
        })?;
        write_safetensors(path, &named_tensors(self.parts().vs)).map_err(|source| {
            ModelError::Params {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Extra files for the result package, written under `result_dir` (the context's):
    /// their paths inside `model.zip` and on disk. Called on the initiator once, with the
    /// best state loaded and tested.
    fn fine_tuned_files(&mut self, _result_dir: &Path) -> Result<Vec<ResultFile>, ModelError> {
        Ok(Vec::new())
    }

    /// The round-end decision: `Some(reason)` ends the task after this round. The default is
    /// [`Schedule::default_finished`]: `max_rounds`, and validation-driven early stopping.
    /// The engine never runs more than `max_rounds`, whatever this says.
    fn is_task_finished(&self, schedule: &Schedule) -> Option<String> {
        schedule.default_finished()
    }

    /// Whether this round's state dict becomes the best state dict, the one tested at the end
    /// and packaged. The default is [`Schedule::default_best`]: a strictly better validation
    /// score (or the latest state without validation data).
    fn best_state_dict(&self, schedule: &Schedule) -> bool {
        schedule.default_best()
    }
}
