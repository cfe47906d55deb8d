//! `engine model new DIR`: a valid package for a built-in architecture, every hyper-parameter
//! and preprocessing choice written out, weights initialised from a seed or taken from a
//! torchvision file with a new head for the labels. The package is built in a staging
//! directory, opened and its model built as a run would, and only then renamed into place.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use fl_data::{Dataset, OpenOptions};
use fl_package::{
    CONFIG_FILE, HyperParameters, NEW_WEIGHTS_FILE, NewPackage, PREPROCESSOR_FILE, inspect_package,
};
use fl_torch::{
    BUILTIN_MODULE, ModelSpec, NewWeights, find_builtin, new_model_weights, write_safetensors,
};

/// A built-in architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// torchvision's resnet18.
    Resnet18,
    /// torchvision's resnet34.
    Resnet34,
    /// torchvision's resnet50.
    Resnet50,
    /// A small CNN for small images (fast to train on a laptop).
    SmallCnn,
}

impl Arch {
    /// The built-in model's `entry_class`.
    fn class(self) -> &'static str {
        match self {
            Self::Resnet18 => "ResNet18",
            Self::Resnet34 => "ResNet34",
            Self::Resnet50 => "ResNet50",
            Self::SmallCnn => "SmallCnn",
        }
    }

    /// The image size a package gets when `--image-size` is not given.
    fn default_image_size(self) -> u32 {
        match self {
            Self::SmallCnn => 32,
            _ => 224,
        }
    }
}

/// Arguments of `engine model new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The package directory to create (absent or empty).
    dir: PathBuf,
    /// The architecture.
    #[arg(long, value_enum)]
    arch: Arch,
    /// The labels, in class-index order, comma-separated.
    #[arg(long, value_delimiter = ',', required_unless_present = "labels_from")]
    labels: Vec<String>,
    /// Take the labels (and their order) from a dataset directory's annotation.json.
    #[arg(long, value_name = "DATASET", conflicts_with = "labels")]
    labels_from: Option<PathBuf>,
    /// Images are resized to this many pixels square (default: 224 for ResNets, 32 for
    /// small-cnn; written in preprocessor_config.json).
    #[arg(long)]
    image_size: Option<u32>,
    /// Image channels: 1 (grey) or 3 (RGB).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=3))]
    channels: u32,
    /// Pretrained weights for the architecture (torchvision `.pt` state dict, `.safetensors`
    /// or libtorch `.ot`); the classifier head is made new for the labels. Without it the
    /// weights are initialised from --seed.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// The Model Card's `name` (default: the directory's name).
    #[arg(long)]
    name: Option<String>,
    /// The Model Card's `author`.
    #[arg(long)]
    author: String,
    /// The Model Card's `license` (an SPDX identifier such as Apache-2.0, or your own).
    #[arg(long)]
    license: String,
    /// Seed of the initial weights (or of the new head).
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

/// Runs `engine model new`.
pub fn run(args: NewArgs) -> Result<ExitCode> {
    if args.channels == 2 {
        bail!("--channels: 2 is not accepted (accepted: 1 for grey images, 3 for RGB)");
    }
    let labels = labels(&args)?;
    let target = args.dir.clone();
    check_fresh(&target)?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .context("--name is needed: the directory has no name to take")?,
    };
    let builtin = find_builtin(BUILTIN_MODULE, args.arch.class())
        .context("the architecture is not built into this engine")?;
    let spec = ModelSpec {
        in_channels: i64::from(args.channels),
        num_classes: labels.len() as i64,
    };
    let (tensors, origin) = new_model_weights(builtin, spec, args.weights.as_deref(), args.seed)?;
    let pretrained = args.weights.is_some();
    let (mean, std) = normalisation(args.channels, pretrained);
    let package = NewPackage {
        name,
        author: args.author.clone(),
        license: args.license.clone(),
        entry_module: BUILTIN_MODULE.to_owned(),
        entry_class: builtin.class.to_owned(),
        architecture: builtin.summary.to_owned(),
        labels,
        in_channels: args.channels,
        image_size: args
            .image_size
            .unwrap_or_else(|| args.arch.default_image_size()),
        image_mean: mean,
        image_std: std,
        weights_origin: weights_origin(&origin, args.weights.as_deref()),
        hyper_parameters: HyperParameters::resolve(&[])?.values,
    };

    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".model-new-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    write_files(staging.path(), &package, &tensors)?;
    check_runnable(staging.path(), &package.labels)?;
    let staged = staging.keep();
    if target.is_dir() {
        // An empty directory: rename replaces it on Linux only when it is removed first.
        fs::remove_dir(&target).with_context(|| format!("replacing {}", target.display()))?;
    }
    if let Err(error) = fs::rename(&staged, &target) {
        let _ = fs::remove_dir_all(&staged);
        return Err(error).with_context(|| format!("moving the package to {}", target.display()));
    }
    print_summary(&target, &package, &origin);
    Ok(ExitCode::SUCCESS)
}

fn labels(args: &NewArgs) -> Result<Vec<String>> {
    let labels: Vec<String> = match &args.labels_from {
        Some(dir) => Dataset::open(dir, &OpenOptions::default())?.labels,
        None => args.labels.iter().map(|l| l.trim().to_owned()).collect(),
    };
    let from = match &args.labels_from {
        Some(dir) => format!("--labels-from {}", dir.display()),
        None => "--labels".to_owned(),
    };
    if labels.len() < 2 {
        bail!(
            "{from}: {} label(s) given (accepted: at least two distinct, non-empty labels)",
            labels.len()
        );
    }
    if let Some(empty) = labels.iter().position(String::is_empty) {
        bail!("{from}: label {empty} is empty (accepted: non-empty labels)");
    }
    for (i, label) in labels.iter().enumerate() {
        if labels[..i].contains(label) {
            bail!("{from}: `{label}` is given twice (accepted: distinct labels)");
        }
    }
    Ok(labels)
}

fn check_fresh(target: &Path) -> Result<()> {
    match fs::symlink_metadata(target) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_dir() => {
            let mut entries =
                fs::read_dir(target).with_context(|| format!("reading {}", target.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{}: the directory is not empty (accepted: a new or empty directory; \
                     nothing was written)",
                    target.display()
                );
            }
            Ok(())
        }
        Ok(_) => bail!(
            "{}: exists and is not a directory (accepted: a new or empty directory)",
            target.display()
        ),
    }
}

/// Normalisation written into the preprocessor: ImageNet's statistics for RGB torchvision
/// weights (what they were trained with), 0.5 / 0.5 otherwise.
fn normalisation(channels: u32, pretrained: bool) -> (Vec<f64>, Vec<f64>) {
    if pretrained && channels == 3 {
        (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    } else {
        (vec![0.5; channels as usize], vec![0.5; channels as usize])
    }
}

fn weights_origin(origin: &NewWeights, file: Option<&Path>) -> String {
    match (origin, file) {
        (NewWeights::Pretrained { seed, .. }, Some(file)) => format!(
            "the pretrained weights of `{}`, with a new classifier head for these labels \
             (initialised from seed {seed}). Fine-tune them on your data.",
            file.file_name().unwrap_or_default().to_string_lossy()
        ),
        (NewWeights::Initialised { seed }, _) | (NewWeights::Pretrained { seed, .. }, None) => {
            format!(
                "libtorch's default initialisation from seed {seed}; not trained. Fine-tune \
                 them on your data."
            )
        }
    }
}

fn write_files(dir: &Path, package: &NewPackage, tensors: &[(String, tch::Tensor)]) -> Result<()> {
    let json = |value: &serde_json::Value| -> Result<String> {
        Ok(serde_json::to_string_pretty(value)? + "\n")
    };
    fs::write(dir.join("README.md"), package.card())?;
    fs::write(dir.join(CONFIG_FILE), json(&package.config())?)?;
    fs::write(dir.join(PREPROCESSOR_FILE), json(&package.preprocessor())?)?;
    write_safetensors(dir.join(NEW_WEIGHTS_FILE), tensors)?;
    Ok(())
}

/// Opens the package and builds its model as a run would (weights matched strictly).
fn check_runnable(dir: &Path, labels: &[String]) -> Result<()> {
    let inspection = inspect_package(dir, &fl_model::catalog());
    let Some(package) = inspection.package else {
        bail!(
            "the new package does not validate (nothing was written):\n{}",
            inspection.problems
        );
    };
    super::build_check(&package, labels)
        .context("the new package's model cannot be built (nothing was written)")?;
    Ok(())
}

fn print_summary(dir: &Path, package: &NewPackage, origin: &NewWeights) {
    println!(
        "wrote {}: `{}` ({}.{}, {} labels, {} channel(s), {}x{} images)",
        dir.display(),
        package.name,
        package.entry_module,
        package.entry_class,
        package.labels.len(),
        package.in_channels,
        package.image_size,
        package.image_size
    );
    match origin {
        NewWeights::Initialised { seed } => println!("  weights: initialised from seed {seed}"),
        NewWeights::Pretrained { loaded, seed } => {
            println!("  weights: {loaded} tensors loaded, the classifier head new (seed {seed})")
        }
    }
    println!(
        "  every hyper-parameter is written in {}/{CONFIG_FILE} and explained in README.md",
        dir.display()
    );
    println!(
        "  next: engine model validate {0}; engine finetune {0} --data DATASET --out OUT",
        dir.display()
    );
}
