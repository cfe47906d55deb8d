//! `engine validate WORKFLOW`: check a workflow file, then everything the run checks before
//! it trains (package, labels, settings, every node's model and data), and summarise it;
//! `engine workflow schema`: print the JSON Schema of workflow files; `engine workflow new`:
//! write a commented workflow (`workflow_new`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use fl_runtime::{Preflight, preflight};
use fl_workflow::{
    Dataset, Override, Overrides, StoppingMetric, Transport, Weighting, Workflow, WorkflowErrors,
};
use serde::Serialize;

/// Overrides of a workflow's keys on the command line (`engine submit`, `engine validate`).
#[derive(Debug, Clone, Args)]
pub struct OverrideArgs {
    /// Override a workflow key for this run, checked like the file itself (repeatable):
    /// `--set max_rounds=5`, `--set training.learning_rate=0.01`,
    /// `--set 'training.lr_schedule={kind: step, step_size: 5}'`. Paths are relative to the
    /// workflow file. Recorded in summary.json.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<Override>,
    /// Write the results here instead of the workflow's `output` (relative to the current
    /// directory).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

impl OverrideArgs {
    /// The overrides to load the workflow with.
    pub fn overrides(&self) -> Overrides {
        let mut overrides = Overrides::new();
        for set in &self.sets {
            overrides = overrides.with_set(set.clone());
        }
        if let Some(output) = &self.output {
            overrides = overrides.with_output(output);
        }
        overrides
    }
}

/// Arguments of `engine validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The workflow YAML file.
    workflow: PathBuf,
    #[command(flatten)]
    overrides: OverrideArgs,
    /// Check the file only: do not build the model or read the datasets.
    #[arg(long)]
    no_build: bool,
    /// Print machine-readable JSON (problems, or the effective workflow) instead of text.
    #[arg(long)]
    json: bool,
}

/// `engine workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Print the JSON Schema of workflow files (for editors), with every key's default.
    Schema,
    /// Write a commented FedAvg workflow for a package and site directories, every key
    /// present with its default and a line of explanation.
    New(super::workflow_new::NewWorkflowArgs),
}

/// Runs `engine validate`: every problem on stderr and exit status 1, or a summary.
pub fn run(args: ValidateArgs) -> Result<ExitCode> {
    let loaded = Workflow::load_with(&args.workflow, &args.overrides.overrides());
    // What the run checks before training, when the file itself is valid.
    let checked = match &loaded {
        Ok(workflow) if !args.no_build => Some(preflight(workflow).map_err(|e| e.to_string())),
        _ => None,
    };
    let runnable = match &checked {
        Some(Ok(report)) => report.passed(),
        Some(Err(_)) => false,
        None => true,
    };
    if args.json {
        let output = match &loaded {
            Ok(workflow) => ValidateOutput {
                workflow: &args.workflow,
                valid: runnable,
                errors: Vec::new(),
                run_checks: checked.as_ref().map(RunChecks::from),
                digest: Some(workflow.digest()),
                effective: Some(workflow),
            },
            Err(errors) => ValidateOutput {
                workflow: &args.workflow,
                valid: false,
                errors: errors.iter().collect(),
                run_checks: None,
                digest: None,
                effective: None,
            },
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        match &loaded {
            Ok(workflow) => {
                if runnable {
                    print_summary(&args.workflow, workflow);
                }
                if let Some(checked) = &checked {
                    print_checks(&args.workflow, checked);
                }
            }
            Err(errors) => print_errors(&args.workflow, errors),
        }
    }
    Ok(if loaded.is_ok() && runnable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `engine workflow ...`.
pub fn run_workflow(command: WorkflowCommand) -> Result<ExitCode> {
    match command {
        WorkflowCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&fl_workflow::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::New(args) => super::workflow_new::run(args),
    }
}

#[derive(Serialize)]
struct ValidateOutput<'a> {
    workflow: &'a Path,
    valid: bool,
    errors: Vec<&'a fl_workflow::WorkflowError>,
    /// What the run would check before training, and what it found.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_checks: Option<RunChecks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The workflow with every default filled in and paths resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    effective: Option<&'a Workflow>,
}

#[derive(Serialize)]
struct RunChecks {
    error: Option<String>,
    labels: Vec<String>,
    settings: Option<fl_runtime::settings::EffectiveSettings>,
    nodes: Vec<NodeOutput>,
}

#[derive(Serialize)]
struct NodeOutput {
    node: String,
    train: u64,
    validation: u64,
    test: u64,
    checked: bool,
    error: Option<String>,
    warnings: Vec<String>,
}

impl From<&Result<Preflight, String>> for RunChecks {
    fn from(checked: &Result<Preflight, String>) -> Self {
        match checked {
            Err(error) => Self {
                error: Some(error.clone()),
                labels: Vec::new(),
                settings: None,
                nodes: Vec::new(),
            },
            Ok(report) => Self {
                error: None,
                labels: report.labels.clone(),
                settings: Some(report.settings.clone()),
                nodes: report
                    .nodes
                    .iter()
                    .map(|n| NodeOutput {
                        node: n.node.clone(),
                        train: n.samples.0,
                        validation: n.samples.1,
                        test: n.samples.2,
                        checked: !n.remote,
                        error: n.error.clone(),
                        warnings: n.warnings.clone(),
                    })
                    .collect(),
            },
        }
    }
}

/// The run's own checks: every failure on stderr, the settings and nodes when they pass.
fn print_checks(file: &Path, checked: &Result<Preflight, String>) {
    let report = match checked {
        Err(error) => {
            eprintln!("error: {error}");
            eprintln!("{}: the run would fail before training", file.display());
            return;
        }
        Ok(report) => report,
    };
    for node in &report.nodes {
        for warning in &node.warnings {
            eprintln!("warning: node `{}`: {warning}", node.node);
        }
        if let Some(error) = &node.error {
            eprintln!("error: node `{}`: {error}", node.node);
        }
    }
    if !report.passed() {
        eprintln!("{}: the run would fail before training", file.display());
        return;
    }
    for line in report.settings.lines() {
        println!("{line}");
    }
    println!("labels          {}", report.labels.join(", "));
    for node in &report.nodes {
        if node.remote {
            println!(
                "node {:<11}data registered on its agent (checked when the task starts)",
                node.node
            );
        } else {
            println!(
                "node {:<11}model built; {} train, {} validation, {} test samples",
                node.node, node.samples.0, node.samples.1, node.samples.2
            );
        }
    }
}

pub fn print_errors(file: &Path, errors: &WorkflowErrors) {
    for error in errors {
        eprintln!("error: {error}");
    }
    let n = errors.len();
    eprintln!(
        "{}: {n} error{}",
        file.display(),
        if n == 1 { "" } else { "s" }
    );
}

fn print_summary(file: &Path, w: &Workflow) {
    let cwd = std::env::current_dir().ok();
    let show = |path: &Path| -> String {
        cwd.as_deref()
            .and_then(|cwd| path.strip_prefix(cwd).ok())
            .filter(|relative| !relative.as_os_str().is_empty())
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let dataset = |d: &Dataset| match d {
        Dataset::Path(path) => show(path),
        Dataset::Named { name } => format!("`{name}` (registered by the node's agent)"),
    };
    let row = |key: &str, value: &str| println!("{key:<16}{value}");

    println!(
        "{}: valid workflow `{}` (version {})",
        file.display(),
        w.name,
        w.version
    );
    row("model", &show(&w.model));
    let mut held = Vec::new();
    if let Some(train) = &w.initiator.train {
        held.push(format!("train {}", dataset(train)));
    }
    if let Some(validation) = &w.initiator.validation {
        held.push(format!("validation {}", dataset(validation)));
    }
    held.push(format!("test {}", dataset(&w.initiator.test)));
    row(
        "initiator",
        &format!("{} ({})", w.initiator.node, held.join(", ")),
    );
    if w.participants.is_empty() {
        row("participants", "none (the initiator trains alone)");
    }
    for (i, p) in w.participants.iter().enumerate() {
        let key = if i == 0 { "participants" } else { "" };
        row(key, &format!("{} ({})", p.node, dataset(&p.data)));
    }
    let epochs = if w.merge_epochs == 1 {
        "1 local epoch".to_owned()
    } else {
        format!("{} local epochs", w.merge_epochs)
    };
    let tested = if w.log_rounds == 1 {
        "tested every round".to_owned()
    } else {
        format!(
            "tested every {} rounds, the first and the last",
            w.log_rounds
        )
    };
    row(
        "rounds",
        &format!("at most {}, {epochs} each, {tested}", w.max_rounds),
    );
    let weighting = match w.aggregation.weighting {
        Weighting::Samples => "weighted by training samples",
        Weighting::Uniform => "uniform (plain mean)",
    };
    row("aggregation", weighting);
    let stopping = if w.early_stopping_active() {
        let metric = match w.early_stopping.metric {
            StoppingMetric::ValidationAccuracy => "validation accuracy",
            StoppingMetric::ValidationLoss => "validation loss",
        };
        format!("on {metric}, patience {}", w.early_stopping.patience)
    } else if w.initiator.validation.is_none() {
        "off (no validation data; the last round's model is kept)".to_owned()
    } else {
        "off".to_owned()
    };
    row("early stopping", &stopping);
    row(
        "quorum",
        &format!(
            "{} of {} training nodes, {} retries of a round without it",
            w.quorum,
            w.training_nodes().len(),
            w.round_retries
        ),
    );
    row(
        "timeouts",
        &format!(
            "schedule {}, calculation {}",
            w.timeouts.schedule, w.timeouts.calculation
        ),
    );
    if !w.training.is_empty() {
        let overrides = serde_json::to_string(&w.training).unwrap_or_default();
        row("training", &overrides);
    }
    row("threads", &format!("{} (seed {})", w.threads, w.seed));
    row("output", &show(&w.output));
    let transport = match &w.transport {
        Transport::Embedded => "embedded (every node in this process)".to_owned(),
        Transport::Nats(nats) => format!("NATS at {}", nats.url),
    };
    row("transport", &transport);
    row("digest", &w.digest());
}
