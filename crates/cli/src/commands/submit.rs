//! `engine submit WORKFLOW`: runs a FedAvg task with progress bars and the task log live,
//! then a table per round. Embedded (every node in this process) by default; with `--nats
//! URL`, or `transport: {nats: ...}` in the workflow, the task goes to the coordinator
//! service on that server and runs on the agents, and this command follows it to the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::{Result, bail};
use clap::Args;
use fl_runtime::control::{ClientMessage, TaskState};
use fl_runtime::{Client, RunOptions, run_embedded};
use fl_workflow::{Transport, Workflow};

use super::nats_args::NatsArgs;
use super::progress::{Progress, percent, print_rounds};

/// Arguments of `engine submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    #[command(flatten)]
    overrides: super::validate::OverrideArgs,
    /// Submit to the coordinator service on this NATS server (overrides the workflow's
    /// `transport`); the task's nodes run on agents.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    #[command(flatten)]
    credentials: NatsArgs,
    /// Do not show the task log on the console (it is still written to task.log).
    #[arg(long)]
    quiet: bool,
    /// Resume the task from its last checkpoint in the workflow's output directory (after
    /// a crash or kill): nothing done is redone, the result is what an uninterrupted run
    /// gives. The workflow must be unchanged.
    #[arg(long)]
    recover: bool,
}

/// Runs `engine submit`; exits 0 when the task finished, 1 with the reason otherwise.
pub fn run(args: SubmitArgs) -> Result<ExitCode> {
    let workflow = match Workflow::load_with(&args.workflow, &args.overrides.overrides()) {
        Ok(workflow) => workflow,
        Err(errors) => {
            super::validate::print_errors(&args.workflow, &errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    let nats = match (&args.nats, &workflow.transport) {
        (Some(url), _) => Some((url.clone(), None)),
        (None, Transport::Nats(nats)) => Some((nats.url.clone(), nats.credentials.clone())),
        (None, Transport::Embedded) => None,
    };
    match nats {
        Some(_) if args.recover => {
            bail!(
                "--recover resumes embedded runs; a distributed task is resumed by restarting its coordinator (not available yet)"
            )
        }
        Some(_) if !args.overrides.sets.is_empty() => {
            bail!(
                "--set applies to embedded runs; the coordinator service runs the workflow file \
                 as submitted, so write the values into {} for a distributed run",
                args.workflow.display()
            )
        }
        Some((url, workflow_creds)) => {
            let mut credentials = args.credentials.clone();
            if credentials.creds.is_none() && credentials.user.is_none() {
                credentials.creds = workflow_creds;
            }
            submit_remote(&args, &workflow, &credentials, &url)
        }
        None => submit_embedded(&args, &workflow),
    }
}

fn submit_embedded(args: &SubmitArgs, workflow: &Workflow) -> Result<ExitCode> {
    let (sender, receiver) = mpsc::channel();
    let runner = {
        let workflow = workflow.clone();
        let options = RunOptions {
            recover: args.recover,
            ..RunOptions::default()
        };
        std::thread::spawn(move || run_embedded(&workflow, options, Some(sender)))
    };
    let mut progress = Progress::new(
        u64::from(workflow.max_rounds),
        u64::from(workflow.merge_epochs),
        args.quiet,
    );
    for event in receiver {
        progress.event(&event);
    }
    progress.finish();
    let report = match runner.join() {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => {
            eprintln!("error: the task failed: {error}");
            eprintln!(
                "the task log is {}",
                workflow.output.join("task.log").display()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(_) => bail!("the task's thread panicked"),
    };

    let s = &report.summary;
    print_rounds(&s.rounds, Some(s.best_round));
    println!(
        "{} of at most {} rounds{}; best round {} (*): validation accuracy {}, test accuracy {}",
        s.rounds_run,
        s.max_rounds,
        if s.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        s.best_round,
        percent(s.best_validation.as_ref().and_then(|m| m.accuracy)),
        percent(s.final_test.as_ref().and_then(|m| m.accuracy)),
    );
    println!("wrote {}", report.files.model_zip.display());
    println!("wrote {}", report.files.report_zip.display());
    Ok(ExitCode::SUCCESS)
}

fn submit_remote(
    args: &SubmitArgs,
    workflow: &Workflow,
    credentials: &NatsArgs,
    url: &str,
) -> Result<ExitCode> {
    let client = Client::connect(&credentials.options(url))?;
    let mut progress = Progress::new(
        u64::from(workflow.max_rounds),
        u64::from(workflow.merge_epochs),
        args.quiet,
    );
    let submitted = client.submit(
        &args.workflow,
        &workflow.model,
        &workflow.output,
        |message| match message {
            ClientMessage::Accepted { task_id } => {
                progress.println(format!(
                    "submitted as task `{task_id}` to the coordinator at {url}"
                ));
            }
            ClientMessage::Event(event) => progress.event(event),
            _ => {}
        },
    );
    progress.finish();
    let submitted = submitted?;
    print_rounds(&progress.finished, None);
    let status = &submitted.status;
    match &status.state {
        TaskState::Finished {
            rounds,
            test_accuracy,
        } => {
            println!(
                "task `{}` finished after {rounds} round(s); test accuracy of the best state {}",
                status.task_id,
                percent(*test_accuracy)
            );
            for file in &submitted.files {
                println!("wrote {}", file.display());
            }
            println!(
                "the coordinator keeps the task's files in {} (engine logs {} --nats {url})",
                status.output, status.task_id
            );
            Ok(ExitCode::SUCCESS)
        }
        TaskState::Failed { reason } => {
            eprintln!("error: task `{}` failed: {reason}", status.task_id);
            eprintln!(
                "the task log: engine logs {} --nats {url} (on the coordinator's machine: {}/task.log)",
                status.task_id, status.output
            );
            Ok(ExitCode::FAILURE)
        }
        TaskState::Running { .. } => bail!("the coordinator ended the session while the task runs"),
    }
}
