//! `engine data import SRC DIR`: an ImageFolder tree or a `path,label` CSV into an AlphaMed
//! dataset directory with seeded, stratified splits; `engine data partition DIR --sites N`:
//! one dataset into N site directories for trying federated setups on one machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Result;
use clap::{Args, Subcommand};
use fl_data::{
    ImportOptions, PartitionOptions, PartitionScheme, ProgressStage, SplitFractions,
    import_dataset, partition_dataset,
};
use indicatif::{ProgressBar, ProgressStyle};

/// `engine data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Turn an ImageFolder tree (SRC/<label>/<image>) or a CSV file (`path,label` header)
    /// into a dataset directory with annotation.json and seeded Train/Validation/Test splits,
    /// stratified by label. Every file left out is listed with the reason; nothing is written
    /// on error.
    Import(ImportArgs),
    /// Split one dataset into N site directories (OUT/site-1 ... OUT/site-N), IID, with a
    /// Dirichlet label skew, or by label; prints the samples per label per site.
    Partition(PartitionArgs),
}

/// Arguments of `engine data import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An ImageFolder directory (one folder per label, images below it) or a CSV file with
    /// `path` and `label` columns (paths relative to the CSV's directory).
    source: PathBuf,
    /// The dataset directory to create (absent or empty).
    dir: PathBuf,
    /// Fractions of each label's images in Train, Validation and Test; they must sum to 1.
    #[arg(
        long,
        default_value = "0.8,0.1,0.1",
        value_name = "TRAIN,VALIDATION,TEST"
    )]
    split: String,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hard-link images instead of copying them (falls back to copying across file systems).
    #[arg(long)]
    link: bool,
}

/// Arguments of `engine data partition`.
#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// The dataset directory to split.
    dir: PathBuf,
    /// Number of sites.
    #[arg(long)]
    sites: usize,
    /// Where to write site-1 ... site-N (and `initiator` with --holdout); absent or empty.
    #[arg(long, short)]
    out: PathBuf,
    /// Every site gets a shuffled, even share of every label (the default).
    #[arg(long, conflicts_with_all = ["dirichlet", "by_label"])]
    iid: bool,
    /// Label skew: each label's samples are shared out in proportions drawn from a
    /// Dirichlet distribution with this concentration (smaller is more skewed; Flower
    /// Datasets' DirichletPartitioner).
    #[arg(long, value_name = "ALPHA", conflicts_with = "by_label")]
    dirichlet: Option<f64>,
    /// Each label goes wholly to one site (labels dealt round-robin).
    #[arg(long)]
    by_label: bool,
    /// Seed of the partition.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sites get only training data; the validation and test data go to OUT/initiator.
    #[arg(long)]
    holdout: bool,
    /// Hard-link images instead of copying them.
    #[arg(long)]
    link: bool,
}

/// Runs a `data` subcommand.
pub fn run(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Import(args) => import(args),
        DataCommand::Partition(args) => partition(args),
    }
}

fn import(args: ImportArgs) -> Result<ExitCode> {
    let options = ImportOptions {
        split: SplitFractions::parse(&args.split)?,
        seed: args.seed,
        link: args.link,
        labels: None,
    };
    let bar = Mutex::new(None::<(ProgressStage, ProgressBar)>);
    let progress = |stage: ProgressStage, done: u64, total: u64| {
        let Ok(mut slot) = bar.lock() else { return };
        if slot.as_ref().is_none_or(|(s, _)| *s != stage) {
            if let Some((_, old)) = slot.take() {
                old.finish_and_clear();
            }
            let new = ProgressBar::new(total);
            new.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            new.set_message(match stage {
                ProgressStage::Checking => "checking",
                ProgressStage::Copying => "copying",
            });
            *slot = Some((stage, new));
        }
        if let Some((_, bar)) = slot.as_ref() {
            bar.set_position(done);
        }
    };
    let outcome = import_dataset(&args.source, &args.dir, &options, &progress);
    if let Ok(mut slot) = bar.lock()
        && let Some((_, bar)) = slot.take()
    {
        bar.finish_and_clear();
    }
    let report = outcome?;
    println!("{report}");
    println!(
        "wrote {} (split {}, seed {})",
        args.dir.display(),
        args.split,
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}

fn partition(args: PartitionArgs) -> Result<ExitCode> {
    let scheme = match (args.dirichlet, args.by_label) {
        (Some(alpha), _) => PartitionScheme::Dirichlet { alpha },
        (None, true) => PartitionScheme::ByLabel,
        (None, false) => PartitionScheme::Iid,
    };
    let options = PartitionOptions {
        scheme,
        seed: args.seed,
        holdout: args.holdout,
        link: args.link,
        ..PartitionOptions::new(args.sites)
    };
    let report = partition_dataset(&args.dir, &args.out, &options)?;
    println!("{report}");
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
