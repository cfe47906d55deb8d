//! `engine model validate|show DIR`: check a model package (every file, then its model built
//! and its weights matched as a run would) and summarise it; `engine model list`: the models
//! this binary can build; `engine model new DIR`: scaffold a package (`model_new`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fl_package::{Entry, Inspection, ModelPackage, Problems, Resize, inspect_package};
use serde::Serialize;

/// `engine model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Check every file of a model package and print every problem found, then build its
    /// model and match the weights file against it, as a run would.
    ///
    /// Exits with status 1 when there is an error; warnings alone exit 0.
    Validate(ValidateArgs),
    /// Create a valid package for a built-in architecture: Model Card, config.json with
    /// every hyper-parameter written out, preprocessor_config.json and weights (initialised,
    /// or torchvision's with a new head for the labels).
    New(super::model_new::NewArgs),
    /// Print a package's Model Card summary, labels and weights file.
    Show(PackageArgs),
    /// List the models this engine binary can build: `entry_module`, `entry_class` and what
    /// each is (model crates linked into the binary add theirs).
    List {
        /// Print machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments shared by the `model` subcommands.
#[derive(Debug, Args)]
pub struct PackageArgs {
    /// The package: a directory (README.md, config.json, weights) or a `model.zip`.
    dir: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `engine model validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    package: PackageArgs,
    /// Also check a dataset directory against the model, as a run would: every image decoded
    /// whole (a file a run would leave out is listed with the reason), and the data's labels
    /// matched to the package's head by name under its `head` rule.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// The package directory to inspect: `path` itself, or a `model.zip` unpacked into a scratch
/// directory that lives as long as the returned guard.
fn unpacked(path: &Path) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if !path.is_file() {
        return Ok((path.to_path_buf(), None));
    }
    let scratch = tempfile::tempdir()?;
    let dir = fl_package::extract_model_zip(path, &scratch.path().join("package")).with_context(
        || {
            format!(
                "{} is a file, so it must be a model.zip (a zipped package)",
                path.display()
            )
        },
    )?;
    Ok((dir, Some(scratch)))
}

/// `model validate`: the files, then the model built and its weights matched as a run would,
/// then (with `--data`) the dataset decoded and its labels matched.
fn validate(args: &ValidateArgs, catalog: &fl_package::ModelCatalog) -> Result<ExitCode> {
    let shown = &args.package.dir;
    let (dir, _scratch) = unpacked(shown)?;
    let mut inspection = inspect_package(&dir, catalog);
    let mut labels = Vec::new();
    if let Some(data) = &args.data {
        match fl_data::Dataset::open(data, &fl_data::OpenOptions::default()) {
            Ok(dataset) => {
                let listing = dataset.report.listing();
                for line in listing.lines().filter(|l| !l.trim().is_empty()) {
                    inspection.problems.push(fl_package::Problem::warning(
                        data.display().to_string(),
                        format!("left out of a run: {}", line.trim()),
                    ));
                }
                labels = dataset.labels;
            }
            Err(error) => {
                inspection.problems.push(
                    fl_package::Problem::error(data.display().to_string(), error.to_string())
                        .expected("a dataset directory with annotation.json or a CVAT export"),
                );
                inspection.package = None;
            }
        }
    }
    // What a run checks beyond the files: the model is built, the weights matched (and the
    // data's labels met by the head).
    if let Some(package) = &inspection.package
        && let Err(error) = super::build_check(package, &labels)
    {
        inspection.problems.push(
            fl_package::Problem::error(
                fl_package::CONFIG_FILE,
                format!("the model cannot be built from this package: {error}"),
            )
            .expected("a package whose model the engine builds and whose weights match it"),
        );
        inspection.package = None;
    }
    if args.package.json {
        print_json(&ValidateOutput {
            package: shown,
            valid: inspection.package.is_some(),
            errors: inspection.problems.error_count(),
            warnings: inspection.problems.warning_count(),
            problems: &inspection.problems,
        })?;
    } else {
        print_problems(shown, &inspection);
        if inspection.package.is_some() {
            println!(
                "{}: valid model package (its model builds)",
                shown.display()
            );
        }
    }
    Ok(exit_code(&inspection))
}

/// Runs a `model` subcommand.
pub fn run(command: ModelCommand) -> Result<ExitCode> {
    let catalog = fl_model::catalog();
    match command {
        ModelCommand::List { json } => {
            let models = fl_model::registered_models();
            if json {
                let rows: Vec<serde_json::Value> = models
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "entry_module": m.module,
                            "entry_class": m.class,
                            "summary": m.summary,
                        })
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                for m in models {
                    println!("{}.{}\t{}", m.module, m.class, m.summary);
                }
                println!(
                    "(and any TorchScript package: `entry_file` with the scripted module's class)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::New(args) => super::model_new::run(args),
        ModelCommand::Validate(args) => validate(&args, &catalog),
        ModelCommand::Show(args) => {
            let (dir, _scratch) = unpacked(&args.dir)?;
            let inspection = inspect_package(&dir, &catalog);
            let Some(package) = &inspection.package else {
                if args.json {
                    print_json(&ValidateOutput {
                        package: &args.dir,
                        valid: false,
                        errors: inspection.problems.error_count(),
                        warnings: inspection.problems.warning_count(),
                        problems: &inspection.problems,
                    })?;
                } else {
                    print_problems(&args.dir, &inspection);
                }
                return Ok(exit_code(&inspection));
            };
            if args.json {
                print_json(&ShowOutput::from(package))?;
            } else {
                print_problems(&args.dir, &inspection);
                print_summary(package);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit_code(inspection: &Inspection) -> ExitCode {
    if inspection.package.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Problems go to stderr, one per line, followed by a count.
fn print_problems(dir: &Path, inspection: &Inspection) {
    let problems = &inspection.problems;
    for problem in problems {
        eprintln!("{problem}");
    }
    if problems.has_errors() {
        eprintln!(
            "{}: {} error{}, {} warning{}",
            dir.display(),
            problems.error_count(),
            plural(problems.error_count()),
            problems.warning_count(),
            plural(problems.warning_count())
        );
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[derive(Serialize)]
struct ValidateOutput<'a> {
    package: &'a Path,
    valid: bool,
    errors: usize,
    warnings: usize,
    problems: &'a Problems,
}

#[derive(Serialize)]
struct ShowOutput<'a> {
    package: &'a Path,
    name: &'a str,
    display_name: &'a str,
    tasks: Vec<&'static str>,
    license: &'a str,
    author: &'a str,
    framework: Option<&'a str>,
    tags: &'a [String],
    is_federated: bool,
    entry: &'a Entry,
    labels: Option<&'a [String]>,
    param_file: ParamOutput<'a>,
    preprocessor: Option<&'a fl_package::PreprocessorConfig>,
    warnings: &'a Problems,
}

#[derive(Serialize)]
struct ParamOutput<'a> {
    path: &'a str,
    format: fl_package::ParamFormat,
    size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tensors: Option<usize>,
}

impl<'a> From<&'a ModelPackage> for ShowOutput<'a> {
    fn from(p: &'a ModelPackage) -> Self {
        Self {
            package: &p.root,
            name: &p.card.name,
            display_name: &p.card.display_name,
            tasks: p.card.tasks.iter().map(|t| t.as_str()).collect(),
            license: &p.card.license,
            author: &p.card.author,
            framework: p.card.framework.as_deref(),
            tags: &p.card.tags,
            is_federated: p.card.is_federated,
            entry: &p.config.entry,
            labels: p.labels(),
            param_file: ParamOutput {
                path: &p.config.param_file,
                format: p.param_file.format,
                size_bytes: p.param_file.size,
                tensors: p.param_file.tensor_count,
            },
            preprocessor: p.preprocessor.as_ref(),
            warnings: &p.warnings,
        }
    }
}

fn print_summary(p: &ModelPackage) {
    let card = &p.card;
    let row = |key: &str, value: &str| println!("{key:<14}{value}");
    row("name", &card.name);
    row("display name", &card.display_name);
    row(
        "tasks",
        &card
            .tasks
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    row("license", &card.license);
    row("author", &card.author);
    row(
        "framework",
        card.framework.as_deref().unwrap_or("(not given)"),
    );
    row("federated", if card.is_federated { "yes" } else { "no" });
    if !card.tags.is_empty() {
        row("tags", &card.tags.join(", "));
    }
    let model = match &p.config.entry {
        Entry::Module { module, class } => format!("{module}.{class} (built into the engine)"),
        Entry::File { path, class } => format!("{class} from TorchScript file {path}"),
    };
    row("model", &model);
    let labels = match p.labels() {
        Some(labels) => format!("{} ({})", labels.len(), labels.join(", ")),
        None => "(not given; taken from the dataset when fine-tuning)".to_owned(),
    };
    row("labels", &labels);
    let tensors = p
        .param_file
        .tensor_count
        .map(|n| format!(", {n} tensors"))
        .unwrap_or_default();
    row(
        "param file",
        &format!(
            "{} ({}, {} bytes{tensors})",
            p.config.param_file, p.param_file.format, p.param_file.size
        ),
    );
    if let Some(pre) = &p.preprocessor {
        let mut steps = Vec::new();
        match pre.resize {
            Some(Resize::Exact { height, width }) => steps.push(format!("resize {height}x{width}")),
            Some(Resize::ShortestEdge(n)) => steps.push(format!("resize shortest edge {n}")),
            None => {}
        }
        if let Some((h, w)) = pre.center_crop {
            steps.push(format!("center crop {h}x{w}"));
        }
        if let Some(a) = pre.affine {
            steps.push(format!(
                "random affine (degrees {:?}, translate {:?})",
                a.degrees, a.translate
            ));
        }
        if pre.horizontal_flip {
            steps.push("random horizontal flip".to_owned());
        }
        if let Some(n) = &pre.normalize {
            steps.push(format!("normalize (mean {:?}, std {:?})", n.mean, n.std));
        }
        row("preprocessing", &steps.join(", "));
    }
}
