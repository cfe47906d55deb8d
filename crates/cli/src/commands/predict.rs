//! `engine predict MODEL IMAGE...`: top-k labels with probabilities for each image, from
//! the package's model (built-in, TorchScript or registered by a model crate); with
//! `--logits` the raw outputs too, and with `--tensor` a preprocessed batch instead of image
//! files, so that outputs can be compared with PyTorch's directly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::open_model;
use anyhow::{Context, Result, bail};
use clap::Args;
use fl_model::{AutoFedAvgModel, ModelContext, ModelInit, build_model};
use fl_torch::{ModelError, Scored, TrainerOptions};
use serde_json::json;
use tch::{Kind, Tensor};

/// Arguments of `engine predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model package: a directory or a `model.zip`.
    model: PathBuf,
    /// Image files (PNG or JPEG), preprocessed as the package says.
    #[arg(required_unless_present = "tensor")]
    images: Vec<PathBuf>,
    /// A safetensors file holding a preprocessed batch `[N, C, H, W]` (its only tensor, or
    /// the one named `input`), run as it is: no decoding, resizing or normalisation.
    #[arg(long, value_name = "FILE", conflicts_with = "images")]
    tensor: Option<PathBuf>,
    /// How many labels to print per image.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Also print the model's raw outputs (logits), one per label in the model's label order
    /// (`id2label`'s), as PyTorch's `model(x)` returns them.
    #[arg(long)]
    logits: bool,
    /// Print JSON (one object per image) instead of text.
    #[arg(long)]
    json: bool,
    /// Stop at the first image that fails (after printing the ones before it) instead of
    /// reporting it and going on.
    #[arg(long)]
    fail_fast: bool,
}

/// Runs `engine predict`. Exits 1 when any image could not be predicted.
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
    let labels = model.context().labels.clone();
    let (names, predictions) = match &args.tensor {
        Some(file) => predict_tensor(&mut *model, file, args.batch_size)?,
        None => (
            args.images
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            model.predict_files(&args.images, args.batch_size),
        ),
    };
    let mut failed = 0;
    let mut rows = Vec::new();
    for (name, outcome) in names.iter().zip(&predictions) {
        match outcome {
            Ok(scored) => {
                let top = &scored[..args.top_k.max(1).min(scored.len())];
                let logits = args.logits.then(|| in_label_order(scored, &labels));
                if args.json {
                    let mut row = json!({"image": name, "predictions": top});
                    if let Some(logits) = logits {
                        row["logits"] = json!(logits);
                    }
                    rows.push(row);
                } else {
                    let shown: Vec<String> = top
                        .iter()
                        .map(|s| format!("{} ({:.1}%)", s.label, s.probability * 100.0))
                        .collect();
                    println!("{name}: {}", shown.join(", "));
                    if let Some(logits) = logits {
                        let pairs: Vec<String> = labels
                            .iter()
                            .zip(&logits)
                            .map(|(label, logit)| format!("{label}={logit}"))
                            .collect();
                        println!("  logits: {}", pairs.join(", "));
                    }
                }
            }
            Err(error) => {
                failed += 1;
                // Data errors name their file themselves.
                let message = match error {
                    ModelError::Data(_) => error.to_string(),
                    _ => format!("{name}: {error}"),
                };
                if args.json {
                    rows.push(json!({"image": name, "error": message}));
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

/// Each label's logit, in the model's label order.
fn in_label_order(scored: &[Scored], labels: &[String]) -> Vec<f64> {
    labels
        .iter()
        .map(|label| {
            scored
                .iter()
                .find(|s| &s.label == label)
                .map_or(f64::NAN, |s| s.logit)
        })
        .collect()
}

/// Runs the model on the batch in a safetensors file, `batch_size` rows at a time; rows are
/// named `FILE[i]`.
#[allow(clippy::type_complexity)]
fn predict_tensor(
    model: &mut dyn AutoFedAvgModel,
    file: &Path,
    batch_size: usize,
) -> Result<(Vec<String>, Vec<Result<Vec<Scored>, ModelError>>)> {
    let mut tensors = fl_torch::read_params(file)
        .with_context(|| format!("{}: cannot be read as a tensor file", file.display()))?;
    let index = match tensors.iter().position(|(name, _)| name == "input") {
        Some(index) => index,
        None if tensors.len() == 1 => 0,
        None => bail!(
            "{}: holds {} tensors and none is named `input`; give one [N, C, H, W] tensor, or \
             name the batch `input`",
            file.display(),
            tensors.len()
        ),
    };
    let (name, batch) = tensors.swap_remove(index);
    let shape = batch.size();
    if shape.len() != 4 || !batch.is_floating_point() {
        bail!(
            "{}: `{name}` is a {:?} tensor of shape {shape:?}; expected a floating-point batch \
             [N, C, H, W] of preprocessed images",
            file.display(),
            batch.kind()
        );
    }
    let batch = batch.to_kind(Kind::Float);
    let rows = shape[0];
    let mut outcomes = Vec::with_capacity(rows as usize);
    let step = batch_size.max(1) as i64;
    for start in (0..rows).step_by(step as usize) {
        let chunk: Tensor = batch.narrow(0, start, step.min(rows - start));
        match model.predict(&chunk) {
            Ok(scored) => outcomes.extend(scored.into_iter().map(Ok)),
            Err(error) => {
                let message = error.to_string();
                outcomes
                    .extend((0..chunk.size()[0]).map(|_| Err(ModelError::Model(message.clone()))));
            }
        }
    }
    let names = (0..rows)
        .map(|i| format!("{}[{i}]", file.display()))
        .collect();
    Ok((names, outcomes))
}
