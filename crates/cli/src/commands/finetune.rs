//! `engine finetune MODEL --data DATASET --out OUT`: local fine-tuning through the package's
//! model (`AutoModel::fine_tune`, built-in or registered by a model crate), with progress
//! bars, a final table, `model.zip` and `metrics.json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use super::open_model;
use anyhow::{Context, Result};
use clap::Args;
use fl_data::{Dataset, OpenOptions};
use fl_model::{
    DatasetDirs, EpochSummary, FineTuneJob, FineTuneOutcome, ModelContext, ModelInit, Progress,
    ProgressSink, TaskLogger, build_model,
};
use fl_package::{
    HeadRule, HyperParameterValues, ResultSpec, Setting, setting_line, write_model_zip,
};
use fl_torch::{Metrics, Origin, TrainerOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Arguments of `engine finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The model package: a directory or a `model.zip`.
    model: PathBuf,
    /// The dataset directory (annotation.json or a CVAT annotations.xml).
    #[arg(long)]
    data: PathBuf,
    /// Where to write model.zip, metrics.json and work/ (the checkpoint `--recover` resumes
    /// from, and the model's own result files); created if needed.
    #[arg(long)]
    out: PathBuf,
    /// Seed of initialisation, data order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// libtorch threads; the same seed and thread count give bit-identical weights.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Image decoding threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Validated epochs without a better validation accuracy before stopping early (the
    /// model's own rule may stop sooner).
    #[arg(long, default_value_t = 10)]
    patience: u32,
    /// Overrides the package's `epochs` (default: the package's, else 10).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: Option<u32>,
    /// How the package's classifier head meets the data's labels, matched by name
    /// (default: the package's `head`, else keep): keep, reset or extend.
    #[arg(long, value_parser = ["keep", "reset", "extend"])]
    head: Option<String>,
    /// Memory for decoded images kept between epochs, in MiB (0 decodes every epoch).
    #[arg(long, default_value_t = fl_torch::DEFAULT_CACHE_BYTES >> 20)]
    cache_mib: usize,
    /// Refuse the dataset if any sample is unusable (instead of leaving it out).
    #[arg(long)]
    strict_data: bool,
    /// Continue an interrupted run from the checkpoint in OUT/work (same package, data and
    /// options).
    #[arg(long)]
    recover: bool,
}

/// Progress bars per epoch, fed by the model.
#[derive(Default)]
struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressSink for Bars {
    fn epoch_started(&self, epoch: usize, epochs: usize, samples: usize) {
        let bar = ProgressBar::new(samples as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} samples {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(format!("{epoch}/{epochs}"));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, samples: usize) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(samples as u64);
        }
    }

    fn epoch_finished(&self, row: &EpochSummary) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
        let validation = row.validation.map_or(String::new(), |m| {
            format!(", validation accuracy {:.2}%", m.accuracy * 100.0)
        });
        tracing::info!(
            "epoch {}: loss {:.4}{validation} ({:.1}s)",
            row.epoch,
            row.train.loss,
            row.seconds
        );
    }
}

/// `metrics.json` of a local run.
#[derive(Serialize)]
struct Report<'a> {
    epochs: &'a [EpochSummary],
    best_epoch: usize,
    stopped: &'a str,
    stopped_early: bool,
    test: Option<Metrics>,
    labels: &'a [String],
    seed: u64,
    /// Every hyper-parameter the run trained with and where it came from.
    settings: &'a [Setting],
}

/// Runs `engine finetune`.
pub fn run(args: FinetuneArgs) -> Result<ExitCode> {
    let opened = open_model(&args.model)?;
    let package = &opened.package;
    let dataset = Dataset::open(
        &args.data,
        &OpenOptions {
            strict: args.strict_data,
        },
    )?;
    if !dataset.report.is_clean() {
        eprintln!(
            "{}: {} sample(s) left out:\n{}",
            args.data.display(),
            dataset.report.total_skipped(),
            dataset.report
        );
    }
    let init = ModelInit {
        package: package.clone(),
        options: TrainerOptions {
            seed: args.seed,
            threads: args.threads,
            workers: args.workers,
            cache_bytes: args.cache_mib << 20,
            overrides: command_line_overrides(&args),
        },
        context: ModelContext {
            node: "local".into(),
            task: "finetune".into(),
            labels: dataset.labels.clone(),
            is_initiator: true,
            result_dir: args.out.join("work"),
            logger: TaskLogger::new(|warning, line| {
                if warning {
                    eprintln!("warning: {line}");
                } else {
                    eprintln!("{line}");
                }
            }),
            training: false,
            progress: Progress::new(Bars::default()),
        },
    };
    let resolved = init.settings()?;
    let settings = resolved.settings(true);
    print_settings(&settings);
    let epochs = resolved.values.epochs;
    tch::set_num_threads(args.threads.max(1) as i32);
    let mut model = build_model(init)?;
    let labels = model.context().labels.clone();
    let outcome = model
        .fine_tune(&FineTuneJob {
            node: "local".into(),
            task: "finetune".into(),
            dataset: DatasetDirs::single(&args.data),
            is_initiator: true,
            recover: args.recover,
            epochs,
            seed: args.seed,
            patience: Some(args.patience),
        })
        .with_context(|| format!("fine-tuning {}", args.model.display()))?;

    let extra_files: Vec<(String, Vec<u8>)> =
        fl_model::engine::collect_result_files(outcome.files.clone())?
            .into_iter()
            .map(|file| (file.path, file.bytes))
            .collect();
    let model_zip = args.out.join("model.zip");
    write_model_zip(
        &ResultSpec {
            source: package,
            weights: &outcome.weights,
            weights_name: "model.safetensors",
            labels: &labels,
            config_updates: settings
                .iter()
                .map(|s| (s.key.clone(), s.value.clone()))
                .collect(),
            card_appendix: Some(card_appendix(&dataset, &outcome, args.seed, &settings)),
            federated: None,
            extra_files: &extra_files,
        },
        &model_zip,
    )?;
    let report = Report {
        epochs: &outcome.epochs,
        best_epoch: outcome.best_epoch,
        stopped: &outcome.stopped,
        stopped_early: outcome.stopped_early,
        test: outcome.test,
        labels: &labels,
        seed: args.seed,
        settings: &settings,
    };
    let metrics = args.out.join("metrics.json");
    std::fs::write(&metrics, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", metrics.display()))?;
    print_table(&outcome);
    println!("wrote {}", model_zip.display());
    Ok(ExitCode::SUCCESS)
}

/// The command line's layer of hyper-parameters (`--epochs`).
fn command_line_overrides(args: &FinetuneArgs) -> Vec<(Origin, HyperParameterValues)> {
    let head = args.head.as_deref().map(|rule| match rule {
        "reset" => HeadRule::Reset,
        "extend" => HeadRule::Extend,
        _ => HeadRule::Keep,
    });
    let values = HyperParameterValues {
        epochs: args.epochs,
        head,
        ..HyperParameterValues::default()
    };
    if values.is_empty() {
        Vec::new()
    } else {
        vec![(Origin::CommandLine, values)]
    }
}

/// Prints the effective settings once, before training (on stderr, with the progress).
fn print_settings(settings: &[Setting]) {
    eprintln!("effective settings (value, then where it comes from):");
    for s in settings {
        eprintln!(
            "{}",
            setting_line(&s.key, &s.shown(), &s.source.to_string())
        );
    }
}

fn percent(m: Option<Metrics>) -> String {
    m.map_or("-".to_owned(), |m| format!("{:.2}%", m.accuracy * 100.0))
}

fn print_table(outcome: &FineTuneOutcome) {
    println!(
        "{:>5}  {:>10}  {:>9}  {:>10}  {:>8}",
        "epoch", "train loss", "train acc", "valid acc", "seconds"
    );
    for row in &outcome.epochs {
        let marker = if row.epoch == outcome.best_epoch {
            " *"
        } else {
            ""
        };
        println!(
            "{:>5}  {:>10.4}  {:>9}  {:>10}  {:>8.1}{marker}",
            row.epoch,
            row.train.loss,
            percent(Some(row.train)),
            percent(row.validation),
            row.seconds
        );
    }
    println!(
        "best epoch {} (*){}; test accuracy {}",
        outcome.best_epoch,
        if outcome.stopped_early {
            format!(", stopped early: {}", outcome.stopped)
        } else {
            String::new()
        },
        percent(outcome.test)
    );
}

/// The Model Card's "Fine-tuning" section.
fn card_appendix(
    dataset: &Dataset,
    outcome: &FineTuneOutcome,
    seed: u64,
    settings: &[Setting],
) -> String {
    let best = outcome
        .epochs
        .iter()
        .find(|e| e.epoch == outcome.best_epoch);
    let mut text = String::from("## Fine-tuning\n\n");
    text.push_str(&format!(
        "Fine-tuned locally by fedengine on {} training samples ({} validation, {} test), \
         {} epochs run, seed {seed}; {}.\n\n",
        dataset.train.len(),
        dataset.validation.len(),
        dataset.test.len(),
        outcome.epochs.len(),
        outcome.stopped
    ));
    text.push_str("| | value |\n|---|---|\n");
    text.push_str(&format!("| best epoch | {} |\n", outcome.best_epoch));
    text.push_str(&format!(
        "| validation accuracy (best epoch) | {} |\n",
        percent(best.and_then(|b| b.validation))
    ));
    text.push_str(&format!("| test accuracy | {} |\n", percent(outcome.test)));
    text.push_str("\n### Training settings\n\n| setting | value | from |\n|---|---|---|\n");
    for s in settings {
        text.push_str(&format!("| `{}` | {} | {} |\n", s.key, s.shown(), s.source));
    }
    text
}
