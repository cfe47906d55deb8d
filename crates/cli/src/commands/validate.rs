//! `engine validate WORKFLOW`: check a workflow file and summarise it; `engine workflow
//! schema`: print the JSON Schema of workflow files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use fl_workflow::{Dataset, StoppingMetric, Transport, Weighting, Workflow, WorkflowErrors};
use serde::Serialize;

/// Arguments of `engine validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The workflow YAML file.
    workflow: PathBuf,
    /// Print machine-readable JSON (problems, or the effective workflow) instead of text.
    #[arg(long)]
    json: bool,
}

/// `engine workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Print the JSON Schema of workflow files (for editors), with every key's default.
    Schema,
}

/// Runs `engine validate`: every problem on stderr and exit status 1, or a summary.
pub fn run(args: ValidateArgs) -> Result<ExitCode> {
    let loaded = Workflow::load(&args.workflow);
    if args.json {
        let output = match &loaded {
            Ok(workflow) => ValidateOutput {
                workflow: &args.workflow,
                valid: true,
                errors: Vec::new(),
                digest: Some(workflow.digest()),
                effective: Some(workflow),
            },
            Err(errors) => ValidateOutput {
                workflow: &args.workflow,
                valid: false,
                errors: errors.iter().collect(),
                digest: None,
                effective: None,
            },
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        match &loaded {
            Ok(workflow) => print_summary(&args.workflow, workflow),
            Err(errors) => print_errors(&args.workflow, errors),
        }
    }
    Ok(if loaded.is_ok() {
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
    }
}

#[derive(Serialize)]
struct ValidateOutput<'a> {
    workflow: &'a Path,
    valid: bool,
    errors: Vec<&'a fl_workflow::WorkflowError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The workflow with every default filled in and paths resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    effective: Option<&'a Workflow>,
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
