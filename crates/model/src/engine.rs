//! The calls the engine makes on a model in a federated task: a participant's round
//! ([`train_round`]), the initiator's round-end decision with its validation and, when asked,
//! test ([`decide`]), and its final test with the extra result files ([`finish`]). The engine's runtime owns everything around them.
//!
//! # Optimiser state across rounds
//!
//! The optimiser is **created afresh at the start of every round**
//! ([`AutoFedAvgModel::start_round`]), from the global weights, and kept across the round's
//! `merge_epochs` epochs only (FedAvg as published, and what Flower and FedML clients do).
//! Momentum buffers (SGD) and moment estimates (Adam) from the previous round describe the
//! trajectory of this node's own pre-aggregation weights; after averaging they point from a
//! model the node no longer has, and stale Adam second moments also damp the first steps
//! wrongly. A fresh optimiser also makes a round a pure function of `(global weights, round,
//! seed, data, threads)`: nothing has to be checkpointed besides the global model for a
//! resumed run (or a node that joins late, restarts or is replaced) to reproduce a round bit
//! for bit. AlphaMed keeps a local optimiser across rounds; this engine does not, on purpose.
//!
//! # Epochs, data order and learning rate
//!
//! Epochs are counted across the run: epoch `e` (0-based) of round `r` is run-wide epoch
//! `r * merge_epochs + e` ([`fl_torch::run_epoch`]). Data order and augmentation are keyed by
//! `(seed, run-wide epoch)` (see [`crate::SampleLoader`]), so every epoch of every round
//! differs and a resumed round sees the same batches; so is a step learning-rate decay
//! ([`AutoFedAvgModel::learning_rate`]). libtorch's own generator (Dropout, a rebuilt head) is
//! seeded at the start of each round from `(seed, round)` ([`fl_torch::round_seed`]).
//!
//! libtorch's thread count and generator are process-wide: determinism holds when one model
//! trains at a time in a process (the runtime serialises them) and every node uses the same
//! thread count.

use fl_tensor::{Body, Decision, Digest, PackageFile, Schedule, TensorSet};
use fl_torch::{Metrics, ModelError, round_seed, run_epoch};

use crate::fedavg::{AutoFedAvgModel, EpochContext, ResultFile, RoundContext};

/// Files a model may not replace in the result package (the engine writes them).
pub const RESERVED_FILES: &[&str] = &["README.md", "config.json", "model.safetensors"];

/// The largest extra result file, in bytes.
pub const MAX_RESULT_FILE: u64 = 256 << 20;

/// A participant's trained round.
#[derive(Debug, Clone)]
pub struct TrainedRound {
    /// The exchanged weights after training.
    pub weights: TensorSet,
    /// Training samples per epoch: the FedAvg weight.
    pub samples: u64,
    /// The last epoch's training metrics.
    pub metrics: Metrics,
    /// Digest of the global weights training started from.
    pub base_digest: Digest,
    /// Local epochs run.
    pub epochs: usize,
}

impl TrainedRound {
    /// The [`Body::Update`] that carries it.
    pub fn into_body(self) -> Body {
        Body::Update {
            samples: self.samples,
            base_digest: self.base_digest,
            metrics: reported(self.metrics),
            tensors: self.weights,
        }
    }
}

/// Training metrics as they travel.
pub fn reported(metrics: Metrics) -> fl_tensor::Metrics {
    metrics.into()
}

/// Runs 0-based `round` on a participant: loads `global`, starts the round (seed from
/// `(seed, round)`, fresh optimiser), trains `merge_epochs` epochs keyed by the run-wide
/// epoch, and returns the exchanged weights. `on_epoch(done, metrics)` is called after each
/// epoch. `samples` is the node's training count (its FedAvg weight).
pub fn train_round(
    model: &mut dyn AutoFedAvgModel,
    global: &TensorSet,
    round: u64,
    merge_epochs: usize,
    seed: u64,
    samples: u64,
    on_epoch: &mut dyn FnMut(usize, &Metrics),
) -> Result<TrainedRound, ModelError> {
    let Some(last) = merge_epochs
        .checked_sub(1)
        .and_then(|e| run_epoch(round, merge_epochs, e))
    else {
        return Err(ModelError::Config {
            key: "merge_epochs".into(),
            message: format!("is {merge_epochs} in round {round}"),
            expected: "at least 1, with round * merge_epochs below 2^64".into(),
        });
    };
    if samples == 0 {
        return Err(ModelError::EmptySplit {
            split: "Train",
            hint: "a FedAvg participant needs training samples",
        });
    }
    model.load_state_dict(global)?;
    model.start_round(&RoundContext {
        round,
        merge_epochs,
        seed,
        torch_seed: round_seed(seed, round),
    })?;
    let mut metrics = None;
    for (epoch, run_epoch) in (last + 1 - merge_epochs as u64..=last).enumerate() {
        let m = model.train_an_epoch(&EpochContext {
            round,
            epoch,
            run_epoch,
        })?;
        on_epoch(epoch + 1, &m);
        metrics = Some(m);
    }
    // Whatever the model's own epoch does, nothing non-finite leaves as an update.
    fl_torch::check_finite(model.parts().vs, || {
        format!("in the update after round {}'s training", round + 1)
    })?;
    Ok(TrainedRound {
        weights: model.state_dict()?,
        samples,
        metrics: metrics.unwrap_or(Metrics {
            loss: 0.0,
            accuracy: 0.0,
            samples: 0,
        }),
        base_digest: global.digest(),
        epochs: merge_epochs,
    })
}

/// The initiator's round end: loads `global`, validates it, fills this round's validation
/// metrics into the schedule's last record, asks the model's hooks, and tests the weights
/// when `test`. Returns the validation metrics, the test metrics and the decision.
pub fn decide(
    model: &mut dyn AutoFedAvgModel,
    global: &TensorSet,
    mut schedule: Schedule,
    test: bool,
) -> Result<
    (
        Option<fl_tensor::Metrics>,
        Option<fl_tensor::Metrics>,
        Decision,
    ),
    ModelError,
> {
    model.load_state_dict(global)?;
    let validation = model.run_validation()?.map(reported);
    match schedule.history.last_mut() {
        Some(record) if record.round == schedule.round => record.validation = validation.clone(),
        _ => schedule.history.push(fl_tensor::RoundRecord {
            round: schedule.round,
            validation: validation.clone(),
            train_loss: None,
        }),
    }
    let decision = Decision {
        best: model.best_state_dict(&schedule),
        finished: model.is_task_finished(&schedule),
    };
    let test = if test {
        model.run_test()?.map(reported)
    } else {
        None
    };
    Ok((validation, test, decision))
}

/// The initiator's end of the task: loads the best weights, tests them, and collects the
/// model's extra result files ([`collect_result_files`]).
pub fn finish(
    model: &mut dyn AutoFedAvgModel,
    best: &TensorSet,
) -> Result<(Option<fl_tensor::Metrics>, Vec<PackageFile>), ModelError> {
    model.load_state_dict(best)?;
    let test = model.run_test()?.map(reported);
    let dir = model.context().result_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| ModelError::Io {
        path: dir.clone(),
        source,
    })?;
    let files = collect_result_files(model.fine_tuned_files(&dir)?)?;
    if files.is_empty() {
        // Leave no empty directory behind (the removal fails, as it should, when the model
        // wrote files it did not return).
        let _ = std::fs::remove_dir(&dir);
    }
    Ok((test, files))
}

/// Reads a model's extra result files for `model.zip`, checked: relative `/`-separated paths
/// inside the zip, none of [`RESERVED_FILES`], at most [`MAX_RESULT_FILE`] bytes each.
pub fn collect_result_files(files: Vec<ResultFile>) -> Result<Vec<PackageFile>, ModelError> {
    let mut collected = Vec::with_capacity(files.len());
    for file in files {
        check_zip_path(&file.path_in_zip)?;
        let io = |source| ModelError::Io {
            path: file.file.clone(),
            source,
        };
        let size = std::fs::metadata(&file.file).map_err(io)?.len();
        if size > MAX_RESULT_FILE {
            return Err(ModelError::Model(format!(
                "fine_tuned_files: {} is {size} bytes; at most {MAX_RESULT_FILE} are accepted",
                file.file.display()
            )));
        }
        let bytes = std::fs::read(&file.file).map_err(io)?;
        collected.push(PackageFile {
            path: file.path_in_zip,
            bytes,
        });
    }
    Ok(collected)
}

/// Checks a path inside `model.zip` given by a model.
pub fn check_zip_path(path: &str) -> Result<(), ModelError> {
    let bad = |why: &str| {
        Err(ModelError::Model(format!(
            "fine_tuned_files: `{path}` {why} (accepted: a relative `/`-separated path such as \
             `extra/labels.txt`, not {})",
            RESERVED_FILES.join(", ")
        )))
    };
    if path.is_empty() || path.starts_with('/') || path.contains('\\') {
        return bad("is not a relative `/`-separated path");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("has an empty, `.` or `..` component");
    }
    if RESERVED_FILES.contains(&path) {
        return bad("is a file the engine writes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_paths_stay_inside_the_package() {
        for good in ["labels.txt", "extra/descriptions.json"] {
            assert!(check_zip_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a//b",
            "a/./b",
            "config.json",
            "a\\b",
        ] {
            let error = check_zip_path(bad).expect_err(bad).to_string();
            assert!(error.contains("accepted:"), "{error}");
        }
    }
}
