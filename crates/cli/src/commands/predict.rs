//! `engine predict MODEL IMAGE...`: top-k labels with probabilities for each image, from
//! the package's model (built-in, TorchScript or registered by a model crate).

use std::path::PathBuf;
use std::process::ExitCode;

use super::open_model;
use anyhow::Result;
use clap::Args;
use fl_model::{ModelContext, ModelInit, build_model};
use fl_torch::{ModelError, TrainerOptions};
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
    /// Stop at the first image that fails (after printing the ones before it) instead of
    /// reporting it and going on.
    #[arg(long)]
    fail_fast: bool,
}

/// Runs `engine predict`. Exits 1 when any image could not be read.
pub fn run(args: PredictArgs) -> Result<ExitCode> {
    let opened = open_model(&args.model)?;
    let labels = opened
        .package
        .labels()
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    let mut model = build_model(ModelInit {
        package: opened.package,
        options: TrainerOptions::default(),
        context: ModelContext {
            node: "local".into(),
            task: "predict".into(),
            labels,
            ..ModelContext::default()
        },
    })?;
    let predictions = model.predict_files(&args.images, args.batch_size);
    let mut failed = 0;
    let mut rows = Vec::new();
    for (path, outcome) in args.images.iter().zip(&predictions) {
        match outcome {
            Ok(scored) => {
                let scored = &scored[..args.top_k.max(1).min(scored.len())];
                if args.json {
                    rows.push(json!({"image": path, "predictions": scored}));
                } else {
                    let labels: Vec<String> = scored
                        .iter()
                        .map(|s| format!("{} ({:.1}%)", s.label, s.probability * 100.0))
                        .collect();
                    println!("{}: {}", path.display(), labels.join(", "));
                }
            }
            Err(error) => {
                failed += 1;
                // Data errors name their file themselves.
                let message = match error {
                    ModelError::Data(_) => error.to_string(),
                    _ => format!("{}: {error}", path.display()),
                };
                if args.json {
                    rows.push(json!({"image": path, "error": message}));
                }
                eprintln!("error: {message}");
                if args.fail_fast {
                    break;
                }
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
