//! `engine predict MODEL IMAGE...`: top-k labels with probabilities for each image.

use std::path::PathBuf;
use std::process::ExitCode;

use super::open_model;
use anyhow::{Result, bail};
use clap::Args;
use fl_data::Preprocessor;
use fl_torch::{Classifier, predict};
use serde_json::json;

/// Arguments of `engine predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model package: a directory or a `model.zip`.
    model: PathBuf,
    /// Image files (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many labels to print per image.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Print JSON (one object per image) instead of text.
    #[arg(long)]
    json: bool,
    /// Stop at the first unreadable image instead of reporting it and going on.
    #[arg(long)]
    fail_fast: bool,
}

/// Runs `engine predict`. Exits 1 when any image could not be read.
pub fn run(args: PredictArgs) -> Result<ExitCode> {
    let opened = open_model(&args.model)?;
    let (model, _) = Classifier::from_package(&opened.package, None, 0)?;
    let preprocessor = Preprocessor::new(
        opened.package.preprocessor.as_ref(),
        model.spec.in_channels as u32,
    );
    preprocessor.validate()?;
    if args.fail_fast {
        for path in &args.images {
            if let Err(error) = preprocessor.load(path, None) {
                bail!("{error}");
            }
        }
    }
    let predictions = predict(
        &model,
        &preprocessor,
        &args.images,
        args.top_k,
        args.batch_size,
    )?;
    let mut failed = 0;
    let mut rows = Vec::new();
    for p in &predictions {
        match &p.outcome {
            Ok(scored) => {
                if args.json {
                    rows.push(json!({"image": p.path, "predictions": scored}));
                } else {
                    let labels: Vec<String> = scored
                        .iter()
                        .map(|s| format!("{} ({:.1}%)", s.label, s.probability * 100.0))
                        .collect();
                    println!("{}: {}", p.path.display(), labels.join(", "));
                }
            }
            Err(error) => {
                failed += 1;
                if args.json {
                    rows.push(json!({"image": p.path, "error": error.to_string()}));
                }
                eprintln!("error: {error}");
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
