//! Training and evaluation loops over preprocessed batches, and the optimiser that a
//! package's hyper-parameters (`fl_package::HyperParameters`) name.

use fl_data::Batch;
use fl_package::{HyperParameters, Optimizer};
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

use crate::classifier::Classifier;
use crate::error::ModelError;
use crate::guard::catch_forward;

/// Builds the optimiser the hyper-parameters name over a variable store's trainable
/// variables, with their base learning rate (the schedule sets each epoch's).
pub fn build_optimizer(
    hp: &HyperParameters,
    vs: &nn::VarStore,
) -> Result<nn::Optimizer, ModelError> {
    let optimizer = match hp.optimizer {
        Optimizer::Adam => nn::Adam {
            wd: hp.weight_decay,
            ..Default::default()
        }
        .build(vs, hp.learning_rate)?,
        Optimizer::Sgd => nn::Sgd {
            momentum: hp.momentum,
            wd: hp.weight_decay,
            ..Default::default()
        }
        .build(vs, hp.learning_rate)?,
    };
    Ok(optimizer)
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
        let n = labels.size().first().copied().unwrap_or(0) as usize;
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
///
/// A batch the network refuses is an error naming its shape ([`ModelError::Forward`]), and a
/// loss that is not finite stops training before the optimiser steps, naming the batch
/// (1-based) as [`ModelError::NonFinite`]; check the weights themselves with
/// [`check_finite`] after the epoch.
pub fn train_batches(
    model: &dyn nn::ModuleT,
    optimizer: &mut nn::Optimizer,
    batches: impl Iterator<Item = Result<(Tensor, Tensor), ModelError>>,
) -> Result<Metrics, ModelError> {
    let mut totals = Totals::default();
    for (index, batch) in batches.enumerate() {
        let (xs, ys) = batch?;
        let logits = forward_checked(model, &xs, true)?;
        let loss =
            logits.f_cross_entropy_loss::<Tensor>(&ys, None, tch::Reduction::Mean, -100, 0.0)?;
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            return Err(ModelError::NonFinite {
                what: format!("the loss ({value})"),
                at: format!("batch {}", index + 1),
            });
        }
        optimizer.backward_step(&loss);
        tch::no_grad(|| totals.add(&logits, &ys, &loss))?;
    }
    Ok(totals.metrics())
}

/// Runs `model` on `xs`, turning a refused batch (a panic in tch's layers) into
/// [`ModelError::Forward`].
fn forward_checked(
    model: &dyn nn::ModuleT,
    xs: &Tensor,
    train: bool,
) -> Result<Tensor, ModelError> {
    catch_forward(|| model.forward_t(xs, train)).map_err(|message| ModelError::Forward {
        shape: xs.size(),
        message,
    })
}

/// The first variable of `vs` (by name) holding a value that is not finite (NaN or
/// infinite), if any; integer variables are always finite.
pub fn first_non_finite(vs: &nn::VarStore) -> Option<String> {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables.into_iter().find_map(|(name, tensor)| {
        let float = matches!(
            tensor.kind(),
            Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
        );
        let finite = || {
            tch::no_grad(|| tensor.f_isfinite().and_then(|t| t.f_all()))
                .and_then(|t| t.f_int64_value(&[]))
                .is_ok_and(|all| all != 0)
        };
        (float && !finite()).then_some(name)
    })
}

/// Fails with [`ModelError::NonFinite`] naming the first variable of `vs` that is not finite,
/// and `at` (when the check ran: `after epoch 3`).
pub fn check_finite(vs: &nn::VarStore, at: impl FnOnce() -> String) -> Result<(), ModelError> {
    match first_non_finite(vs) {
        None => Ok(()),
        Some(name) => Err(ModelError::NonFinite {
            what: format!("the weight `{name}`"),
            at: at(),
        }),
    }
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
            let logits = forward_checked(model, &xs, false)?;
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
