//! `fedbench`: fedengine's benchmarks, each measured side by side with its baseline in the
//! same run, interleaved, and written to BENCHMARKS.md as median ratios with min and max.
//!
//! ```sh
//! ./scripts/bench            # builds in release and runs every benchmark
//! ```

mod report;
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
}

fn main() -> Result<()> {
    let args = Args::parse();
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var_os("FEDENGINE_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| args.root.join(".venv/bin/python"));
    let section = training::run(&args.root, &python, args.repeats)?;
    report::write_section(&args.root.join("BENCHMARKS.md"), "training", &section)?;
    println!("{section}");
    Ok(())
}
