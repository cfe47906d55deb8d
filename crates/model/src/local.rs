//! Fine-tuning on one node alone ([`fine_tune_fedavg`]): the local counterpart of a
//! federated task, driven through the same [`AutoFedAvgModel`] methods and hooks.

use std::fs;
use std::path::Path;

use fl_tensor::{RoundRecord, Schedule, StopMetric};
use fl_torch::{
    ModelError, from_tensor_set, read_params, round_seed, to_tensor_set, write_safetensors,
};
use serde_json::{Value, json};

use crate::auto_model::{FineTuneJob, FineTuneOutcome};
use crate::engine::reported;
use crate::fedavg::{AutoFedAvgModel, EpochContext, RoundContext};

/// Epochs without a better validation accuracy before a local run stops.
pub const LOCAL_PATIENCE: u32 = 5;

const CHECKPOINT: &str = "checkpoint.json";
const CHECKPOINT_BEST: &str = "checkpoint-best.safetensors";
const CHECKPOINT_LAST: &str = "checkpoint-last.safetensors";
/// The kept state's weights in the result directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Fine-tunes `model` on the job's data: each epoch is a "round" of one epoch (one
/// optimiser for the whole run), validated, then [`AutoFedAvgModel::best_state_dict`] and
/// [`AutoFedAvgModel::is_task_finished`] decide, with `max_rounds = job.epochs` and
/// validation accuracy with patience [`LOCAL_PATIENCE`]. The kept state is tested, saved as
/// `model.safetensors` in the context's result directory, and the model's
/// [`fine_tuned_files`](AutoFedAvgModel::fine_tuned_files) are written there.
///
/// After every epoch the exchanged weights (latest and best) and the history are
/// checkpointed in the result directory; with `job.recover` a run continues after the last
/// checkpointed epoch (with a fresh optimiser: its state is not checkpointed).
pub fn fine_tune_fedavg<M: AutoFedAvgModel + ?Sized>(
    model: &mut M,
    job: &FineTuneJob,
) -> Result<FineTuneOutcome, ModelError> {
    let dir = model.context().result_dir.clone();
    fs::create_dir_all(&dir).map_err(|source| ModelError::Io {
        path: dir.clone(),
        source,
    })?;
    let summary = model
        .init_dataset(&job.dataset)
        .map_err(|reason| ModelError::Model(format!("the dataset was refused: {reason}")))?;
    if summary.train == 0 {
        return Err(ModelError::EmptySplit {
            split: "Train",
            hint: "fine-tuning needs training samples",
        });
    }
    let mut schedule = Schedule {
        round: 0,
        max_rounds: job.epochs as u64,
        metric: StopMetric::ValidationAccuracy,
        patience: (summary.validation > 0).then_some(LOCAL_PATIENCE),
        history: Vec::new(),
        best_round: 0,
    };
    let mut best = model.state_dict()?;
    if job.recover && dir.join(CHECKPOINT).is_file() {
        let (restored, last, kept) = read_checkpoint(&dir)?;
        schedule = Schedule {
            // This run's limit, not the interrupted one's.
            max_rounds: job.epochs as u64,
            ..restored
        };
        model.load_state_dict(&last)?;
        best = kept;
        model.push_log(&format!(
            "resuming after epoch {} of {}",
            schedule.round, job.epochs
        ));
    }
    let mut stopped = format!("max_rounds ({}) reached", job.epochs);
    let first = schedule.round;
    let mut finished = first >= job.epochs as u64;
    if !finished {
        model.start_round(&RoundContext {
            round: first,
            merge_epochs: 1,
            seed: job.seed,
            torch_seed: round_seed(job.seed, first),
        })?;
    }
    let mut epoch = first;
    while !finished {
        let metrics = model.train_an_epoch(&EpochContext {
            round: epoch,
            epoch: 0,
            run_epoch: epoch,
        })?;
        let validation = model.run_validation()?;
        epoch += 1;
        schedule.round = epoch;
        schedule.history.push(RoundRecord {
            round: epoch,
            validation: validation.map(reported),
            train_loss: Some(metrics.loss),
        });
        if model.best_state_dict(&schedule) {
            best = model.state_dict()?;
            schedule.best_round = epoch;
        }
        model.push_log(&format!(
            "epoch {epoch}: train loss {:.4}{}",
            metrics.loss,
            validation.map_or(String::new(), |v| format!(
                ", validation accuracy {:.2}%",
                v.accuracy * 100.0
            ))
        ));
        if let Some(reason) = model.is_task_finished(&schedule) {
            stopped = reason;
            finished = true;
        }
        finished |= epoch >= job.epochs as u64;
        write_checkpoint(&dir, &schedule, &model.state_dict()?, &best)?;
    }
    model.load_state_dict(&best)?;
    let test = model.run_test()?;
    let weights = dir.join(WEIGHTS_FILE);
    model.save_weights(&weights)?;
    let files = model.fine_tuned_files(&dir)?;
    Ok(FineTuneOutcome {
        epochs_run: schedule.round as usize,
        best_epoch: schedule.best_round as usize,
        stopped,
        test,
        weights,
        files,
    })
}

fn write_checkpoint(
    dir: &Path,
    schedule: &Schedule,
    last: &fl_tensor::TensorSet,
    best: &fl_tensor::TensorSet,
) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    for (name, set) in [(CHECKPOINT_LAST, last), (CHECKPOINT_BEST, best)] {
        let path = dir.join(name);
        write_safetensors(&path, &from_tensor_set(set)?)
            .map_err(|source| ModelError::Params { path, source })?;
    }
    let state = json!({
        "round": schedule.round,
        "best_round": schedule.best_round,
        "history": schedule.history.iter().map(|r| json!({
            "round": r.round,
            "train_loss": r.train_loss,
            "validation_loss": r.validation.as_ref().and_then(|m| m.loss),
            "validation_accuracy": r.validation.as_ref().and_then(|m| m.accuracy),
        })).collect::<Vec<Value>>(),
        "max_rounds": schedule.max_rounds,
        "patience": schedule.patience,
    });
    let path = dir.join(CHECKPOINT);
    let partial = dir.join(format!("{CHECKPOINT}.partial"));
    fs::write(&partial, state.to_string()).map_err(io(&partial))?;
    fs::rename(&partial, &path).map_err(io(&path))
}

fn read_checkpoint(
    dir: &Path,
) -> Result<(Schedule, fl_tensor::TensorSet, fl_tensor::TensorSet), ModelError> {
    let path = dir.join(CHECKPOINT);
    let bad = |message: String| ModelError::Model(format!("{}: {message}", path.display()));
    let text = fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let number = |key: &str| value.get(key).and_then(Value::as_u64);
    let (Some(round), Some(best_round), Some(max_rounds)) =
        (number("round"), number("best_round"), number("max_rounds"))
    else {
        return Err(bad(
            "`round`, `best_round` or `max_rounds` is missing".into()
        ));
    };
    let history = value
        .get("history")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| RoundRecord {
                    round: r.get("round").and_then(Value::as_u64).unwrap_or(0),
                    train_loss: r.get("train_loss").and_then(Value::as_f64),
                    validation: r.get("validation_accuracy").and_then(Value::as_f64).map(
                        |accuracy| fl_tensor::Metrics {
                            accuracy: Some(accuracy),
                            loss: r.get("validation_loss").and_then(Value::as_f64),
                            ..fl_tensor::Metrics::default()
                        },
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    let schedule = Schedule {
        round,
        max_rounds,
        metric: StopMetric::ValidationAccuracy,
        patience: value
            .get("patience")
            .and_then(Value::as_u64)
            .map(|p| p as u32),
        history,
        best_round,
    };
    let read = |name: &str| -> Result<fl_tensor::TensorSet, ModelError> {
        let path = dir.join(name);
        let tensors = read_params(&path).map_err(|source| ModelError::Params { path, source })?;
        to_tensor_set(&tensors)
    };
    Ok((schedule, read(CHECKPOINT_LAST)?, read(CHECKPOINT_BEST)?))
}
