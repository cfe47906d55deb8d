//! `engine status` and `engine logs TASK`: what the coordinator service knows about its
//! tasks, running or finished.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fl_runtime::Client;
use fl_runtime::control::{ClientMessage, TaskState, TaskStatus};

use super::nats_args::NatsArgs;
use super::progress::percent;

/// Arguments of `engine status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this task.
    task: Option<String>,
    /// The NATS server of the coordinator.
    #[arg(long, value_name = "URL")]
    nats: String,
    #[command(flatten)]
    credentials: NatsArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn state(status: &TaskStatus) -> String {
    match &status.state {
        TaskState::Running { round, max_rounds } => format!("running, round {round}/{max_rounds}"),
        TaskState::Finished {
            rounds,
            test_accuracy,
        } => format!(
            "finished, {rounds} round(s), test accuracy {}",
            percent(*test_accuracy)
        ),
        TaskState::Failed { reason } => format!("failed: {reason}"),
    }
}

/// Prints the coordinator's tasks; exits 1 when the asked task is unknown.
pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let client = Client::connect(&args.credentials.options(&args.nats))?;
    let mut tasks = client.status()?;
    tasks.sort_by_key(|t| t.submitted_ms);
    if let Some(task) = &args.task {
        tasks.retain(|t| &t.task_id == task);
        if tasks.is_empty() {
            eprintln!(
                "error: no task `{task}` on the coordinator at {}",
                args.nats
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
        return Ok(ExitCode::SUCCESS);
    }
    if tasks.is_empty() {
        println!("no tasks");
    }
    for task in &tasks {
        println!("{:<48}  {}", task.task_id, state(task));
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `engine logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task (as `engine status` lists it).
    task: String,
    /// The NATS server of the coordinator.
    #[arg(long, value_name = "URL")]
    nats: String,
    #[command(flatten)]
    credentials: NatsArgs,
    /// Keep printing until the task ends.
    #[arg(long, short)]
    follow: bool,
}

/// Prints a task's log; exits with the task's outcome when it ended (0 while it runs).
pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    let client = Client::connect(&args.credentials.options(&args.nats))?;
    let status = client.logs(&args.task, args.follow, |message| match message {
        ClientMessage::History(lines) => {
            for line in lines {
                println!("{line}");
            }
        }
        ClientMessage::Event(fl_runtime::TaskEvent::Log(line)) => println!("{line}"),
        _ => {}
    })?;
    eprintln!("task `{}`: {}", status.task_id, state(&status));
    Ok(match status.state {
        TaskState::Failed { .. } => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}
