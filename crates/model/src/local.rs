//! Fine-tuning on one node alone ([`fine_tune_fedavg`]): the local counterpart of a
//! federated task, driven through the same [`AutoFedAvgModel`] methods and hooks.

use std::fs;
use std::path::Path;
use std::time::Instant;

use fl_tensor::{RoundRecord, Schedule, StopMetric, TensorSet};
use fl_torch::{
    ModelError, from_tensor_set, read_params, round_seed, to_tensor_set, write_safetensors,
};
use serde::{Deserialize, Serialize};

use crate::auto_model::{EpochSummary, FineTuneJob, FineTuneOutcome};
use crate::engine::reported;
use crate::fedavg::{AutoFedAvgModel, EpochContext, RoundContext};

/// Validated epochs without a better validation accuracy before a local run stops, unless the
/// job says otherwise.
pub const LOCAL_PATIENCE: u32 = 10;

const CHECKPOINT: &str = "checkpoint.json";
const CHECKPOINT_BEST: &str = "checkpoint-best.safetensors";
const CHECKPOINT_LAST: &str = "checkpoint-last.safetensors";
/// The kept state's weights in the result directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// What a local run checkpoints after every epoch besides the weights.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    /// Every epoch run so far.
    epochs: Vec<EpochSummary>,
    /// The epoch whose state is kept (0: the initial state).
    best_epoch: usize,
}

/// Fine-tunes `model` on the job's data: each epoch is a "round" of one epoch (one
/// optimiser for the whole run), validated, then [`AutoFedAvgModel::best_state_dict`] and
/// [`AutoFedAvgModel::is_task_finished`] decide, with `max_rounds = job.epochs` and
/// validation accuracy with the job's patience. The kept state is tested, saved as
/// `model.safetensors` in the context's result directory, and the model's
/// [`fine_tuned_files`](AutoFedAvgModel::fine_tuned_files) are written there. Epochs are
/// reported to the context's [`Progress`](crate::Progress) and log.
///
/// After every epoch the exchanged weights (latest and best) and the epochs so far are
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
    let mut state = Checkpoint {
        epochs: Vec::new(),
        best_epoch: 0,
    };
    let mut best = model.state_dict()?;
    if job.recover && dir.join(CHECKPOINT).is_file() {
        let (restored, last, kept) = read_checkpoint(&dir)?;
        model.load_state_dict(&last)?;
        best = kept;
        state = restored;
        model.push_log(&format!(
            "resuming after epoch {} of {}",
            state.epochs.len(),
            job.epochs
        ));
    }
    let patience = (summary.validation > 0).then(|| job.patience.unwrap_or(LOCAL_PATIENCE));
    let progress = model.context().progress.clone();
    let mut stopped = format!("max_rounds ({}) reached", job.epochs);
    let mut stopped_early = false;
    let first = state.epochs.len() as u64;
    if first < job.epochs as u64 {
        model.start_round(&RoundContext {
            round: first,
            merge_epochs: 1,
            seed: job.seed,
            torch_seed: round_seed(job.seed, first),
        })?;
    }
    for run_epoch in first..job.epochs as u64 {
        let started = Instant::now();
        let epoch = run_epoch as usize + 1;
        progress.epoch_started(epoch, job.epochs, summary.train as usize);
        let context = EpochContext {
            round: run_epoch,
            epoch: 0,
            run_epoch,
        };
        let learning_rate = model.learning_rate(&context);
        let train = model.train_an_epoch(&context)?;
        let validation = model.run_validation()?;
        let row = EpochSummary {
            epoch,
            learning_rate,
            train,
            validation,
            seconds: started.elapsed().as_secs_f64(),
        };
        state.epochs.push(row);
        progress.epoch_finished(&row);
        model.push_log(&format!(
            "epoch {epoch}: train loss {:.4}{}",
            train.loss,
            validation.map_or(String::new(), |v| format!(
                ", validation accuracy {:.2}%",
                v.accuracy * 100.0
            ))
        ));
        let schedule = schedule(&state, job.epochs, patience);
        if model.best_state_dict(&schedule) {
            best = model.state_dict()?;
            state.best_epoch = epoch;
        }
        let finished = model.is_task_finished(&schedule);
        write_checkpoint(&dir, &state, &model.state_dict()?, &best)?;
        if let Some(reason) = finished {
            stopped_early = epoch < job.epochs;
            stopped = reason;
            break;
        }
    }
    model.load_state_dict(&best)?;
    let test = model.run_test()?;
    let weights = dir.join(WEIGHTS_FILE);
    model.save_weights(&weights)?;
    let files = model.fine_tuned_files(&dir)?;
    Ok(FineTuneOutcome {
        epochs: state.epochs,
        best_epoch: state.best_epoch,
        stopped,
        stopped_early,
        test,
        weights,
        files,
    })
}

/// The hooks' view of a local run: every epoch a round.
fn schedule(state: &Checkpoint, epochs: usize, patience: Option<u32>) -> Schedule {
    Schedule {
        round: state.epochs.len() as u64,
        max_rounds: epochs as u64,
        metric: StopMetric::ValidationAccuracy,
        patience,
        history: state
            .epochs
            .iter()
            .map(|e| RoundRecord {
                round: e.epoch as u64,
                validation: e.validation.map(reported),
                train_loss: Some(e.train.loss),
            })
            .collect(),
        best_round: state.best_epoch as u64,
    }
}

fn write_checkpoint(
    dir: &Path,
    state: &Checkpoint,
    last: &TensorSet,
    best: &TensorSet,
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
    let path = dir.join(CHECKPOINT);
    let partial = dir.join(format!("{CHECKPOINT}.partial"));
    let json = serde_json::to_string_pretty(state)
        .map_err(|e| ModelError::Model(format!("{}: {e}", path.display())))?;
    fs::write(&partial, json).map_err(io(&partial))?;
    fs::rename(&partial, &path).map_err(io(&path))
}

fn read_checkpoint(dir: &Path) -> Result<(Checkpoint, TensorSet, TensorSet), ModelError> {
    let path = dir.join(CHECKPOINT);
    let text = fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    let state: Checkpoint = serde_json::from_str(&text).map_err(|e| {
        ModelError::Model(format!(
            "{}: {e} (delete the file to start over)",
            path.display()
        ))
    })?;
    let read = |name: &str| -> Result<TensorSet, ModelError> {
        let path = dir.join(name);
        let tensors = read_params(&path).map_err(|source| ModelError::Params { path, source })?;
        to_tensor_set(&tensors)
    };
    Ok((state, read(CHECKPOINT_LAST)?, read(CHECKPOINT_BEST)?))
}
