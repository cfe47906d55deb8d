//! Training and evaluation loops over preprocessed batches, and the hyper-parameters read
//! from a package's `config.json`.

use fl_data::Batch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

use crate::classifier::Classifier;
use crate::error::ModelError;

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam (the reference, with weight decay 5e-4).
    Adam,
    /// SGD, with optional momentum.
    Sgd,
}

/// Hyper-parameters of local training, from `config.json` with defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HyperParameters {
    /// `learning_rate` (default 0.001).
    pub learning_rate: f64,
    /// `batch_size` (default 32).
    pub batch_size: usize,
    /// `epochs` (default 10).
    pub epochs: usize,
    /// `optimizer`: `adam` (default) or `sgd`.
    pub optimizer: OptimizerKind,
    /// `weight_decay` (default 5e-4 for Adam, 0 for SGD).
    pub weight_decay: f64,
    /// `momentum` for SGD (default 0).
    pub momentum: f64,
    /// `lr_step_size`: epochs between learning-rate decays (default 10; 0 disables).
    pub lr_step_size: usize,
    /// `lr_gamma`: the decay factor (default 0.1).
    pub lr_gamma: f64,
}

impl HyperParameters {
    /// Reads the hyper-parameters from `config.json`'s keys.
    pub fn from_config(raw: &Map<String, Value>) -> Result<Self, ModelError> {
        let bad = |key: &str, v: &Value, expected: &str| ModelError::Config {
            key: key.into(),
            message: format!("is {v}"),
            expected: expected.into(),
        };
        let number = |key: &str, default: f64, min: f64| -> Result<f64, ModelError> {
            match raw.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite() && *x >= min)
                    .ok_or_else(|| bad(key, v, &format!("a number >= {min}"))),
            }
        };
        let count = |key: &str, default: usize, min: u64| -> Result<usize, ModelError> {
            match raw.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n >= min)
                    .map(|n| n as usize)
                    .ok_or_else(|| bad(key, v, &format!("a whole number >= {min}"))),
            }
        };
        let optimizer = match raw.get("optimizer") {
            None => OptimizerKind::Adam,
            Some(v) => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("adam") => OptimizerKind::Adam,
                Some("sgd") => OptimizerKind::Sgd,
                _ => return Err(bad("optimizer", v, "\"adam\" or \"sgd\"")),
            },
        };
        let default_decay = match optimizer {
            OptimizerKind::Adam => 5e-4,
            OptimizerKind::Sgd => 0.0,
        };
        let learning_rate = number("learning_rate", 1e-3, 0.0)?;
        if learning_rate <= 0.0 {
            return Err(bad(
                "learning_rate",
                &raw["learning_rate"],
                "a number greater than 0",
            ));
        }
        Ok(Self {
            learning_rate,
            batch_size: count("batch_size", 32, 1)?,
            epochs: count("epochs", 10, 1)?,
            optimizer,
            weight_decay: number("weight_decay", default_decay, 0.0)?,
            momentum: number("momentum", 0.0, 0.0)?,
            lr_step_size: count("lr_step_size", 10, 0)?,
            lr_gamma: number("lr_gamma", 0.1, 0.0)?,
        })
    }

    /// Builds the optimiser over the classifier's trainable variables.
    pub fn optimizer(&self, model: &Classifier) -> Result<nn::Optimizer, ModelError> {
        let vs = model.var_store();
        let optimizer = match self.optimizer {
            OptimizerKind::Adam => nn::Adam {
                wd: self.weight_decay,
                ..Default::default()
            }
            .build(vs, self.learning_rate)?,
            OptimizerKind::Sgd => nn::Sgd {
                momentum: self.momentum,
                wd: self.weight_decay,
                ..Default::default()
            }
            .build(vs, self.learning_rate)?,
        };
        Ok(optimizer)
    }

    /// The learning rate of a 0-based epoch under the step decay.
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        match self.lr_step_size {
            0 => self.learning_rate,
            step => self.learning_rate * self.lr_gamma.powi((epoch / step) as i32),
        }
    }
}

/// Loss and accuracy over a number of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean cross-entropy loss.
    pub loss: f64,
    /// Share of samples whose top-1 prediction is right, 0..=1.
    pub accuracy: f64,
    /// Number of samples.
    pub samples: usize,
}

#[derive(Default)]
struct Totals {
    loss: f64,
    correct: i64,
    samples: usize,
}

impl Totals {
    fn add(&mut self, logits: &Tensor, labels: &Tensor, loss: &Tensor) -> Result<(), ModelError> {
        let n = labels.size()[0] as usize;
        self.loss += loss.f_double_value(&[])? * n as f64;
        self.correct += logits
            .argmax(-1, false)
            .eq_tensor(labels)
            .sum(Kind::Int64)
            .f_int64_value(&[])?;
        self.samples += n;
        Ok(())
    }

    fn metrics(&self) -> Metrics {
        let n = self.samples.max(1) as f64;
        Metrics {
            loss: self.loss / n,
            accuracy: self.correct as f64 / n,
            samples: self.samples,
        }
    }
}

/// A decoded batch as libtorch tensors: images `[N, C, H, W]` (f32) and class indices `[N]`.
pub fn batch_tensors(batch: &Batch) -> (Tensor, Tensor) {
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    let xs = Tensor::from_slice(&batch.data).view(shape.as_slice());
    let ys = Tensor::from_slice(&batch.labels);
    (xs, ys)
}

/// Trains one epoch; `on_batch` is told the number of samples of each finished batch.
pub fn train_epoch(
    model: &mut Classifier,
    optimizer: &mut nn::Optimizer,
    batches: impl Iterator<Item = Result<Batch, fl_data::DataError>>,
    mut on_batch: impl FnMut(usize),
) -> Result<Metrics, ModelError> {
    let stream = batches.map(|batch| {
        let batch = batch?;
        on_batch(batch.labels.len());
        Ok(batch_tensors(&batch))
    });
    train_batches(&*model, optimizer, stream)
}

/// Trains a module on batches of images `[N, C, H, W]` (f32) and class indices `[N]`
/// (i64): mean cross-entropy, one optimiser step per batch, in training mode.
pub fn train_batches(
    model: &dyn nn::ModuleT,
    optimizer: &mut nn::Optimizer,
    batches: impl Iterator<Item = Result<(Tensor, Tensor), ModelError>>,
) -> Result<Metrics, ModelError> {
    let mut totals = Totals::default();
    for batch in batches {
        let (xs, ys) = batch?;
        let logits = model.forward_t(&xs, true);
        let loss =
            logits.f_cross_entropy_loss::<Tensor>(&ys, None, tch::Reduction::Mean, -100, 0.0)?;
        optimizer.backward_step(&loss);
        tch::no_grad(|| totals.add(&logits, &ys, &loss))?;
    }
    Ok(totals.metrics())
}

/// Evaluates the model (evaluation mode, no gradients).
pub fn evaluate(
    model: &Classifier,
    batches: impl Iterator<Item = Result<Batch, fl_data::DataError>>,
) -> Result<Metrics, ModelError> {
    evaluate_batches(model, batches.map(|batch| Ok(batch_tensors(&batch?))))
}

/// Evaluates a module on batches of images and class indices (evaluation mode, no
/// gradients): mean cross-entropy and accuracy.
pub fn evaluate_batches(
    model: &dyn nn::ModuleT,
    batches: impl Iterator<Item = Result<(Tensor, Tensor), ModelError>>,
) -> Result<Metrics, ModelError> {
    let mut totals = Totals::default();
    tch::no_grad(|| {
        for batch in batches {
            let (xs, ys) = batch?;
            let logits = model.forward_t(&xs, false);
            let loss = logits.f_cross_entropy_loss::<Tensor>(
                &ys,
                None,
                tch::Reduction::Mean,
                -100,
                0.0,
            )?;
            totals.add(&logits, &ys, &loss)?;
        }
        Ok::<_, ModelError>(())
    })?;
    Ok(totals.metrics())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hyper_parameters_have_defaults_and_reject_bad_values() {
        let raw =
            json!({"learning_rate": 0.05, "optimizer": "SGD", "lr_step_size": 5, "lr_gamma": 0.5});
        let hp = HyperParameters::from_config(raw.as_object().expect("object")).expect("valid");
        assert_eq!(hp.optimizer, OptimizerKind::Sgd);
        assert_eq!((hp.batch_size, hp.epochs, hp.weight_decay), (32, 10, 0.0));
        assert_eq!(hp.learning_rate_at(4), 0.05);
        assert_eq!(hp.learning_rate_at(5), 0.025);
        assert_eq!(hp.learning_rate_at(10), 0.0125);

        let adam = HyperParameters::from_config(&Map::new()).expect("defaults");
        assert_eq!(
            (adam.optimizer, adam.weight_decay),
            (OptimizerKind::Adam, 5e-4)
        );

        for bad in [
            json!({"optimizer": "rmsprop"}),
            json!({"batch_size": 0}),
            json!({"learning_rate": 0}),
        ] {
            let err = HyperParameters::from_config(bad.as_object().expect("object"))
                .expect_err("refused");
            assert!(err.to_string().starts_with("config.json: key `"), "{err}");
        }
    }
}
