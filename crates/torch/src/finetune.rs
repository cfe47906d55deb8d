//! Local fine-tuning (AlphaMed's `TaskMode.LOCAL`): train a package on one dataset with
//! per-epoch validation, early stopping on validation accuracy, the best state kept and
//! tested, and the result written as `model.zip`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use fl_data::{BatchOptions, Dataset, Preprocessor, Sample, batches};
use fl_package::{ModelPackage, ResultSpec, write_model_zip};
use serde::Serialize;
use serde_json::Map;

use crate::classifier::{Classifier, HeadChange};
use crate::error::ModelError;
use crate::train::{HyperParameters, Metrics, evaluate, train_epoch};

/// Memory for decoded images kept between epochs, by default: 512 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 512 << 20;

/// How a fine-tuning run is done, beyond the package's hyper-parameters.
#[derive(Debug, Clone)]
pub struct FineTuneOptions {
    /// Seed of initialisation, data order and augmentation.
    pub seed: u64,
    /// libtorch intra-op threads. Part of the reproducibility contract: the same seed and
    /// thread count give bit-identical weights.
    pub threads: usize,
    /// Epochs without a better validation accuracy before stopping.
    pub patience: usize,
    /// Image decoding threads.
    pub workers: usize,
    /// Overrides the package's `epochs`.
    pub epochs: Option<usize>,
    /// Memory for decoded images kept between epochs (0: decode every epoch).
    pub cache_bytes: usize,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            threads: 1,
            patience: 10,
            workers: 2,
            epochs: None,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// One epoch's results.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRow {
    /// 1-based.
    pub epoch: usize,
    /// The learning rate used.
    pub learning_rate: f64,
    /// Training loss and accuracy (augmented data, training mode).
    pub train: Metrics,
    /// Validation metrics, when there is a validation split.
    pub validation: Option<Metrics>,
    /// Wall time of the epoch, including validation.
    pub seconds: f64,
}

/// What a fine-tuning run did.
#[derive(Debug, Clone, Serialize)]
pub struct FineTuneReport {
    /// The hyper-parameters used.
    pub hyper_parameters: HyperParameters,
    /// Every epoch run.
    pub epochs: Vec<EpochRow>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Test metrics of the kept weights, when there is a test split.
    pub test: Option<Metrics>,
    /// The labels of the result.
    pub labels: Vec<String>,
    /// Whether the head was rebuilt for the dataset's labels.
    #[serde(skip)]
    pub head_change: HeadChange,
    /// The written `model.zip`.
    pub model_zip: PathBuf,
}

/// Receives progress of a run (for progress bars and logs).
pub trait FineTuneObserver {
    /// An epoch starts over `samples` training samples.
    fn epoch_started(&mut self, _epoch: usize, _epochs: usize, _samples: usize) {}
    /// A training batch of `samples` samples finished.
    fn batch_finished(&mut self, _samples: usize) {}
    /// An epoch finished.
    fn epoch_finished(&mut self, _row: &EpochRow) {}
    /// A notable event, for the task log.
    fn message(&mut self, _message: &str) {}
}

/// The best state so far: its validation accuracy (or epoch number without validation data),
/// its 1-based epoch and the weights.
struct Best {
    score: f64,
    epoch: usize,
    state: Vec<(String, tch::Tensor)>,
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl FineTuneObserver for Silent {}

/// Fine-tunes `package` on `dataset` and writes `out_dir/model.zip` and
/// `out_dir/metrics.json`.
pub fn fine_tune(
    package: &ModelPackage,
    dataset: &Dataset,
    out_dir: &Path,
    options: &FineTuneOptions,
    observer: &mut dyn FineTuneObserver,
) -> Result<FineTuneReport, ModelError> {
    if dataset.train.is_empty() {
        return Err(ModelError::EmptySplit {
            split: "Train",
            hint: "fine-tuning needs training samples",
        });
    }
    tch::set_num_threads(options.threads.max(1) as i32);
    let mut hp = HyperParameters::from_config(&package.config.raw)?;
    if let Some(epochs) = options.epochs {
        hp.epochs = epochs.max(1);
    }
    let seed = options.seed;
    let (mut model, head_change) =
        Classifier::from_package(package, Some(&dataset.labels), seed as i64)?;
    match &head_change {
        HeadChange::Kept => {}
        HeadChange::Rebuilt { from, to } => observer.message(&format!(
            "the dataset's labels differ from the package's: classifier head rebuilt ({from} -> {to} classes)"
        )),
        HeadChange::Relabelled { from } => observer.message(&format!(
            "the dataset's labels have other names than the package's ({}): the head is kept and \
             output i now means the dataset's label i",
            from.join(", ")
        )),
    }
    let preprocessor = Arc::new(
        Preprocessor::new(package.preprocessor.as_ref(), model.spec.in_channels as u32)
            .with_cache(options.cache_bytes),
    );
    preprocessor.validate()?;
    let mut optimizer = hp.optimizer(&model)?;
    let train: Arc<[Sample]> = dataset.train.clone().into();
    let validation: Arc<[Sample]> = dataset.validation.clone().into();
    let batch_options = |epoch: usize, training: bool| BatchOptions {
        batch_size: hp.batch_size,
        shuffle: training,
        augment: training,
        seed,
        epoch: epoch as u64,
        workers: options.workers,
        prefetch: options.workers.max(1) * 2,
    };

    let mut rows = Vec::new();
    let mut best: Option<Best> = None;
    let mut stopped_early = false;
    for epoch in 0..hp.epochs {
        let started = Instant::now();
        let learning_rate = hp.learning_rate_at(epoch);
        optimizer.set_lr(learning_rate);
        observer.epoch_started(epoch + 1, hp.epochs, train.len());
        let train_metrics = train_epoch(
            &mut model,
            &mut optimizer,
            batches(
                train.clone(),
                preprocessor.clone(),
                batch_options(epoch, true),
            ),
            |n| observer.batch_finished(n),
        )?;
        let validation_metrics = if validation.is_empty() {
            None
        } else {
            Some(evaluate(
                &model,
                batches(
                    validation.clone(),
                    preprocessor.clone(),
                    batch_options(epoch, false),
                ),
            )?)
        };
        let row = EpochRow {
            epoch: epoch + 1,
            learning_rate,
            train: train_metrics,
            validation: validation_metrics,
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch_finished(&row);
        rows.push(row);

        // Without validation data the last epoch is kept.
        let score = validation_metrics.map_or(epoch as f64, |m| m.accuracy);
        if best.as_ref().is_none_or(|b| score > b.score) {
            best = Some(Best {
                score,
                epoch: epoch + 1,
                state: model.snapshot(),
            });
        } else if let Some(b) = &best
            && epoch + 1 - b.epoch >= options.patience
        {
            observer.message(&format!(
                "early stopping after epoch {}: no better validation accuracy for {} epochs",
                epoch + 1,
                options.patience
            ));
            stopped_early = true;
            break;
        }
    }
    let Some(Best {
        epoch: best_epoch,
        state: best_state,
        ..
    }) = best
    else {
        unreachable!("at least one epoch runs");
    };
    model.restore(&best_state)?;

    let test = if dataset.test.is_empty() {
        None
    } else {
        let test: Arc<[Sample]> = dataset.test.clone().into();
        Some(evaluate(
            &model,
            batches(test, preprocessor, batch_options(0, false)),
        )?)
    };

    fs::create_dir_all(out_dir).map_err(|source| ModelError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let weights = out_dir.join(".model.safetensors.partial");
    model.save_safetensors(&weights)?;
    let model_zip = out_dir.join("model.zip");
    let appendix = card_appendix(dataset, &rows, best_epoch, test.as_ref(), seed);
    let written = write_model_zip(
        &ResultSpec {
            source: package,
            weights: &weights,
            weights_name: "model.safetensors",
            labels: &model.labels,
            config_updates: Map::new(),
            card_appendix: Some(appendix),
            federated: None,
            extra_files: &[],
        },
        &model_zip,
    );
    let _ = fs::remove_file(&weights);
    written.map_err(|e| ModelError::Io {
        path: model_zip.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;

    let report = FineTuneReport {
        hyper_parameters: hp,
        epochs: rows,
        best_epoch,
        stopped_early,
        test,
        labels: model.labels.clone(),
        head_change,
        model_zip,
    };
    let metrics = out_dir.join("metrics.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| ModelError::Io {
        path: metrics.clone(),
        source: std::io::Error::other(e),
    })?;
    fs::write(&metrics, json + "\n").map_err(|source| ModelError::Io {
        path: metrics,
        source,
    })?;
    Ok(report)
}

fn card_appendix(
    dataset: &Dataset,
    rows: &[EpochRow],
    best_epoch: usize,
    test: Option<&Metrics>,
    seed: u64,
) -> String {
    let percent =
        |m: Option<&Metrics>| m.map_or("-".to_owned(), |m| format!("{:.2}%", m.accuracy * 100.0));
    let best = &rows[best_epoch - 1];
    let mut text = String::from("## Fine-tuning\n\n");
    text.push_str(&format!(
        "Fine-tuned locally by fedengine on {} training samples ({} validation, {} test), \
         {} epochs run, seed {seed}.\n\n",
        dataset.train.len(),
        dataset.validation.len(),
        dataset.test.len(),
        rows.len()
    ));
    text.push_str("| | value |\n|---|---|\n");
    text.push_str(&format!("| best epoch | {best_epoch} |\n"));
    text.push_str(&format!(
        "| validation accuracy (best epoch) | {} |\n",
        percent(best.validation.as_ref())
    ));
    text.push_str(&format!("| test accuracy | {} |\n", percent(test)));
    text
}
