//! The distributed processes: `engine coordinator` (the service that runs submitted tasks)
//! and `engine agent` (a node's daemon next to its data).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use fl_runtime::{AgentOptions, ServiceOptions, run_agent, run_coordinator};

use super::nats_args::NatsArgs;

/// Arguments of `engine coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// The NATS server (2.10 or newer, with JetStream).
    #[arg(long, value_name = "URL")]
    nats: String,
    #[command(flatten)]
    credentials: NatsArgs,
    /// Where each task's files go (`DIR/<task>/`).
    #[arg(long, value_name = "DIR", default_value = "runs/coordinator")]
    work_dir: PathBuf,
    /// Resume the tasks that were running when the service stopped, from their last
    /// checkpoints (without it they are marked failed).
    #[arg(long)]
    recover: bool,
}

/// Runs the coordinator service until it is stopped.
pub fn coordinator(args: CoordinatorArgs) -> Result<ExitCode> {
    let options = ServiceOptions {
        nats: args.credentials.options(&args.nats),
        work_dir: args.work_dir.clone(),
        recover: args.recover,
    };
    run_coordinator(options, || {
        eprintln!(
            "engine coordinator: ready on {}, tasks in {}",
            args.nats,
            args.work_dir.display()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `engine agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The NATS server (2.10 or newer, with JetStream).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The node id this agent serves (as workflows name it).
    #[arg(long)]
    node: String,
    /// A dataset this node may be asked for: a name workflows use, and its directory here.
    /// Repeat for several.
    #[arg(long = "data", value_name = "NAME=DIR", required = true)]
    data: Vec<String>,
    #[command(flatten)]
    credentials: NatsArgs,
    /// Where each task's package copy and local task log go (default `runs/agent-<node>`).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Image decoding threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Rejoin the tasks this agent hosted when it stopped (they go on from the round the
    /// coordinator is in).
    #[arg(long)]
    recover: bool,
}

/// Runs an agent until it is stopped.
pub fn agent(args: AgentArgs) -> Result<ExitCode> {
    let mut data = BTreeMap::new();
    for entry in &args.data {
        let Some((name, dir)) = entry.split_once('=') else {
            bail!(
                "--data {entry}: expected NAME=DIR, such as --data digits=datasets/digits/site-1"
            );
        };
        if data.insert(name.to_owned(), PathBuf::from(dir)).is_some() {
            bail!("--data {entry}: the name `{name}` is given twice");
        }
    }
    let options = AgentOptions {
        nats: args.credentials.options(&args.nats),
        node: args.node.clone(),
        data,
        work_dir: args
            .work_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/agent-{}", args.node))),
        workers: args.workers.max(1),
    }
    .checked()
    .map_err(anyhow::Error::msg)?;
    let names: Vec<&str> = options.data.keys().map(String::as_str).collect();
    let summary = format!(
        "engine agent: node `{}` ready on {}, serving {}",
        args.node,
        args.nats,
        names.join(", ")
    );
    run_agent(options, args.recover, || eprintln!("{summary}")).context("the agent stopped")?;
    Ok(ExitCode::SUCCESS)
}
