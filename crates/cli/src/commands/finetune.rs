//! `engine finetune MODEL --data DATASET --out OUT`: local fine-tuning with progress bars and
//! a final table.

use std::path::PathBuf;
use std::process::ExitCode;

use super::open_model;
use anyhow::{Context, Result};
use clap::Args;
use fl_data::{Dataset, OpenOptions};
use fl_model::{DatasetDirs, FineTuneJob, ModelContext, ModelInit, TaskLogger, build_model};
use fl_package::{Entry, ModelPackage, ResultSpec, write_model_zip};
use fl_torch::{
    BUILTIN_MODULE, EpochRow, FineTuneObserver, FineTuneOptions, TrainerOptions, fine_tune,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `engine finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The model package: a directory or a `model.zip`.
    model: PathBuf,
    /// The dataset directory (annotation.json or a CVAT annotations.xml).
    #[arg(long)]
    data: PathBuf,
    /// Where to write model.zip and metrics.json (created if needed).
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
    /// Epochs without a better validation accuracy before stopping early.
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Overrides the package's `epochs`.
    #[arg(long)]
    epochs: Option<usize>,
    /// Memory for decoded images kept between epochs, in MiB (0 decodes every epoch).
    #[arg(long, default_value_t = fl_torch::DEFAULT_CACHE_BYTES >> 20)]
    cache_mib: usize,
    /// Refuse the dataset if any sample is unusable (instead of leaving it out).
    #[arg(long)]
    strict_data: bool,
}

struct Bars {
    bar: Option<ProgressBar>,
}

impl FineTuneObserver for Bars {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, samples: usize) {
        let bar = ProgressBar::new(samples as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} samples {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(format!("{epoch}/{epochs}"));
        self.bar = Some(bar);
    }

    fn batch_finished(&mut self, samples: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(samples as u64);
        }
    }

    fn epoch_finished(&mut self, row: &EpochRow) {
        if let Some(bar) = self.bar.take() {
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

    fn message(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

/// Runs `engine finetune`.
pub fn run(args: FinetuneArgs) -> Result<ExitCode> {
    let opened = open_model(&args.model)?;
    if matches!(&opened.package.config.entry, Entry::Module { module, .. } if module != BUILTIN_MODULE)
    {
        return run_registered(&args, &opened.package);
    }
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
    let options = FineTuneOptions {
        seed: args.seed,
        threads: args.threads,
        patience: args.patience,
        workers: args.workers,
        epochs: args.epochs,
        cache_bytes: args.cache_mib << 20,
    };
    let report = fine_tune(
        &opened.package,
        &dataset,
        &args.out,
        &options,
        &mut Bars { bar: None },
    )
    .with_context(|| format!("fine-tuning {}", args.model.display()))?;

    let percent = |m: Option<fl_torch::Metrics>| {
        m.map_or("-".to_owned(), |m| format!("{:.2}%", m.accuracy * 100.0))
    };
    println!(
        "{:>5}  {:>10}  {:>9}  {:>10}  {:>8}",
        "epoch", "train loss", "train acc", "valid acc", "seconds"
    );
    for row in &report.epochs {
        let marker = if row.epoch == report.best_epoch {
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
        report.best_epoch,
        if report.stopped_early {
            ", stopped early"
        } else {
            ""
        },
        percent(report.test)
    );
    println!("wrote {}", report.model_zip.display());
    Ok(ExitCode::SUCCESS)
}

/// Fine-tunes a model registered by a model crate through its own
/// [`fl_model::AutoModel::fine_tune`], then packages its weights and extra files as
/// `model.zip`. (The built-in vision models use the engine's local loop above, with
/// per-batch progress and `metrics.json`.)
fn run_registered(args: &FinetuneArgs, package: &ModelPackage) -> Result<ExitCode> {
    let dataset = Dataset::open(
        &args.data,
        &OpenOptions {
            strict: args.strict_data,
        },
    )?;
    let work = args.out.join("work");
    let options = TrainerOptions {
        seed: args.seed,
        threads: args.threads,
        workers: args.workers,
        cache_bytes: args.cache_mib << 20,
        ..TrainerOptions::default()
    };
    let init = ModelInit {
        package: package.clone(),
        options,
        context: ModelContext {
            node: "local".into(),
            task: "finetune".into(),
            labels: dataset.labels.clone(),
            is_initiator: true,
            result_dir: work,
            // The model's own lines (one per epoch with `fine_tune_fedavg`) as progress.
            logger: TaskLogger::new(|warning, line| {
                if warning {
                    eprintln!("warning: {line}");
                } else {
                    eprintln!("{line}");
                }
            }),
            ..ModelContext::default()
        },
    };
    let epochs = match args.epochs {
        Some(epochs) => epochs,
        None => init.hyper_parameters()?.epochs,
    };
    tch::set_num_threads(args.threads.max(1) as i32);
    let mut model = build_model(init)?;
    let outcome = model
        .fine_tune(&FineTuneJob {
            node: "local".into(),
            task: "finetune".into(),
            dataset: DatasetDirs::single(&args.data),
            is_initiator: true,
            recover: false,
            epochs,
            seed: args.seed,
        })
        .with_context(|| format!("fine-tuning {}", args.model.display()))?;
    let mut extra_files = Vec::new();
    for file in &outcome.files {
        fl_model::engine::check_zip_path(&file.path_in_zip)?;
        let bytes = std::fs::read(&file.file)
            .with_context(|| format!("reading {}", file.file.display()))?;
        extra_files.push((file.path_in_zip.clone(), bytes));
    }
    let test = outcome
        .test
        .map_or("-".to_owned(), |m| format!("{:.2}%", m.accuracy * 100.0));
    let appendix = format!(
        "## Fine-tuning\n\nFine-tuned locally by fedengine on `{}`: {} epoch(s), kept epoch {} \
         ({}), test accuracy {test}, seed {}.\n",
        dataset.root.display(),
        outcome.epochs_run,
        outcome.best_epoch,
        outcome.stopped,
        args.seed
    );
    let model_zip = args.out.join("model.zip");
    write_model_zip(
        &ResultSpec {
            source: package,
            weights: &outcome.weights,
            weights_name: "model.safetensors",
            labels: &dataset.labels,
            config_updates: serde_json::Map::new(),
            card_appendix: Some(appendix),
            federated: None,
            extra_files: &extra_files,
        },
        &model_zip,
    )?;
    println!(
        "{} epoch(s), kept epoch {} ({}); test accuracy {test}",
        outcome.epochs_run, outcome.best_epoch, outcome.stopped
    );
    println!("wrote {}", model_zip.display());
    Ok(ExitCode::SUCCESS)
}
