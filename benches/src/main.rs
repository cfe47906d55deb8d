//! `fedbench`: fedengine's benchmarks, each measured side by side with its baseline in the
//! same run, interleaved, and written to BENCHMARKS.md as median ratios with min and max.
//!
//! ```sh
//! ./scripts/bench            # builds in release and runs every benchmark
//! ```

mod federated;
mod flower;
mod micro;
mod nats;
mod report;
mod scale;
mod training;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Runs fedengine's benchmarks and updates BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The repository root (where BENCHMARKS.md, models/ and datasets/ are).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Repetitions of each measurement (interleaved engine/baseline).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// The Python interpreter with torch (default: $FEDENGINE_PYTHON, then .venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Run only these benchmarks (default: all).
    #[arg(long, value_delimiter = ',', value_parser = ["micro", "training", "fedavg", "nats", "scale", "flower"])]
    only: Vec<String>,
    #[command(subcommand)]
    internal: Option<Internal>,
}

/// Helpers the benchmarks run as child processes.
#[derive(Debug, clap::Subcommand)]
enum Internal {
    /// Aggregates synthetic updates and prints the peak RSS in KiB.
    #[command(hide = true)]
    AggregateMemory {
        #[arg(long)]
        participants: usize,
        #[arg(long)]
        params: usize,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Internal::AggregateMemory {
        participants,
        params,
    }) = args.internal
    {
        return federated::aggregate_memory(participants, params);
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var_os("FEDENGINE_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| args.root.join(".venv/bin/python"));
    if wanted("micro") {
        let section = micro::run(args.repeats)?;
        report::write_section(&args.root.join("BENCHMARKS.md"), "micro", &section)?;
        println!("{section}");
    }
    if wanted("training") {
        let section = training::run(&args.root, &python, args.repeats)?;
        report::write_section(&args.root.join("BENCHMARKS.md"), "training", &section)?;
        println!("{section}");
    }
    if wanted("fedavg") {
        let section = federated::run(&args.root, args.repeats)?;
        report::write_section(&args.root.join("BENCHMARKS.md"), "fedavg", &section)?;
        println!("{section}");
    }
    if wanted("scale") {
        let section = scale::run(&args.root)?;
        report::write_section(&args.root.join("BENCHMARKS.md"), "scale", &section)?;
        println!("{section}");
    }
    if wanted("flower") {
        let section = flower::run(&args.root, args.repeats)?;
        report::write_section(&args.root.join("BENCHMARKS.md"), "flower", &section)?;
        println!("{section}");
    }
    if wanted("nats") {
        let section = nats::run(&args.root, args.repeats)?;
        report::write_section(&args.root.join("BENCHMARKS.md"), "nats", &section)?;
        println!("{section}");
    }
    Ok(())
}
