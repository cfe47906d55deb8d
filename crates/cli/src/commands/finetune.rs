//! `engine finetune MODEL --data DATASET --out OUT`: local fine-tuning with progress bars and
//! a final table.

use std::path::PathBuf;
use std::process::ExitCode;

use super::open_model;
use anyhow::{Context, Result};
use clap::Args;
use fl_data::{Dataset, OpenOptions};
use fl_torch::{EpochRow, FineTuneObserver, FineTuneOptions, fine_tune};
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
