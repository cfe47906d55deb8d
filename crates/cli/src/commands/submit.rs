//! `engine submit WORKFLOW`: runs a FedAvg task (embedded: every node in this process) with
//! progress bars and the task log live, then a table per round.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::{Result, bail};
use clap::Args;
use fl_runtime::{RunOptions, TaskEvent, run_embedded};
use fl_workflow::{Transport, Workflow};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Arguments of `engine submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    /// Do not show the task log on the console (it is still written to task.log).
    #[arg(long)]
    quiet: bool,
}

/// Runs `engine submit`; exits 0 when the task finished, 1 with the reason otherwise.
pub fn run(args: SubmitArgs) -> Result<ExitCode> {
    let workflow = match Workflow::load(&args.workflow) {
        Ok(workflow) => workflow,
        Err(errors) => {
            super::validate::print_errors(&args.workflow, &errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Transport::Nats(nats) = &workflow.transport {
        bail!(
            "{}: transport `nats` ({}) is not available in this version; remove `transport` to run embedded",
            args.workflow.display(),
            nats.url
        );
    }
    let (sender, receiver) = mpsc::channel();
    let runner = {
        let workflow = workflow.clone();
        std::thread::spawn(move || run_embedded(&workflow, RunOptions::default(), Some(sender)))
    };

    let bars = MultiProgress::new();
    let rounds = bars.add(ProgressBar::new(u64::from(workflow.max_rounds)));
    rounds.set_style(
        ProgressStyle::with_template("round {pos}/{len} [{bar:30}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let node_style =
        ProgressStyle::with_template("  {prefix:<12} epoch {pos}/{len} [{bar:20}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let mut nodes: BTreeMap<String, ProgressBar> = BTreeMap::new();
    for event in receiver {
        match event {
            TaskEvent::Log(line) if !args.quiet => {
                let _ = bars.println(line.to_string());
            }
            TaskEvent::RoundStarted {
                round,
                attempt,
                nodes: asked,
                ..
            } => {
                rounds.set_position(round - 1);
                rounds.set_message(if attempt > 1 {
                    format!("(attempt {attempt})")
                } else {
                    String::new()
                });
                for (_, bar) in std::mem::take(&mut nodes) {
                    bar.finish_and_clear();
                }
                for node in asked {
                    let bar = bars.add(ProgressBar::new(u64::from(workflow.merge_epochs)));
                    bar.set_style(node_style.clone());
                    bar.set_prefix(node.clone());
                    bar.set_message("training");
                    nodes.insert(node, bar);
                }
            }
            TaskEvent::EpochFinished {
                node, epoch, loss, ..
            } => {
                if let Some(bar) = nodes.get(&node) {
                    bar.set_position(u64::from(epoch));
                    bar.set_message(loss.map_or(String::new(), |l| format!("loss {l:.4}")));
                }
            }
            TaskEvent::UpdateAccepted { node, loss, .. } => {
                if let Some(bar) = nodes.get(&node) {
                    bar.set_position(u64::from(workflow.merge_epochs));
                    bar.set_message(format!(
                        "update accepted{}",
                        loss.map_or(String::new(), |l| format!(", loss {l:.4}"))
                    ));
                }
            }
            TaskEvent::Dropped { node, reason, .. } => {
                if let Some(bar) = nodes.get(&node) {
                    bar.set_message(format!("left out: {reason}"));
                }
            }
            TaskEvent::RoundFinished(summary) => {
                rounds.set_position(summary.round);
            }
            _ => {}
        }
    }
    for (_, bar) in nodes {
        bar.finish_and_clear();
    }
    rounds.finish_and_clear();
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

    let percent = |a: Option<f64>| a.map_or("-".to_owned(), |a| format!("{:.2}%", a * 100.0));
    println!(
        "{:>5}  {:<28}  {:>10}  {:>10}  {:>9}  {:>8}",
        "round", "participants", "train loss", "valid acc", "test acc", "seconds"
    );
    for r in &report.summary.rounds {
        let mut who = r.participants.join(",");
        if !r.dropped.is_empty() {
            who.push_str(&format!(" (-{})", r.dropped.join(",")));
        }
        let marker = if r.round == report.summary.best_round {
            " *"
        } else {
            ""
        };
        println!(
            "{:>5}  {:<28}  {:>10}  {:>10}  {:>9}  {:>8.1}{marker}",
            r.round,
            who,
            r.train_loss.map_or("-".to_owned(), |l| format!("{l:.4}")),
            percent(r.validation_accuracy),
            percent(r.test_accuracy),
            r.seconds
        );
    }
    let s = &report.summary;
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
