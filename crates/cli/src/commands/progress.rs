//! The console view of a running task, the same for an embedded run and one followed from a
//! coordinator: a bar for the rounds, one per training node for its local epochs, the task
//! log above them, and the table of rounds at the end.

use std::collections::BTreeMap;

use fl_runtime::TaskEvent;
use fl_runtime::results::RoundSummary;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Progress bars fed with a task's events.
pub struct Progress {
    bars: MultiProgress,
    rounds: ProgressBar,
    nodes: BTreeMap<String, ProgressBar>,
    node_style: ProgressStyle,
    merge_epochs: u64,
    quiet: bool,
    /// The rounds finished so far.
    pub finished: Vec<RoundSummary>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("finished", &self.finished.len())
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Bars for at most `max_rounds` rounds of `merge_epochs` local epochs; with `quiet`
    /// the task log is not printed.
    pub fn new(max_rounds: u64, merge_epochs: u64, quiet: bool) -> Self {
        let bars = MultiProgress::new();
        let rounds = bars.add(ProgressBar::new(max_rounds));
        rounds.set_style(
            ProgressStyle::with_template("round {pos}/{len} [{bar:30}] {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let node_style =
            ProgressStyle::with_template("  {prefix:<12} epoch {pos}/{len} [{bar:20}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        Self {
            bars,
            rounds,
            nodes: BTreeMap::new(),
            node_style,
            merge_epochs,
            quiet,
            finished: Vec::new(),
        }
    }

    /// Prints a line above the bars (on standard output as it is when that is no terminal).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.bars.is_hidden() {
            println!("{}", line.as_ref());
        } else {
            let _ = self.bars.println(line);
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::Log(line) if !self.quiet => self.println(line.to_string()),
            TaskEvent::RoundStarted {
                round,
                attempt,
                nodes: asked,
                max_rounds,
            } => {
                self.rounds.set_length(*max_rounds);
                self.rounds.set_position(round - 1);
                self.rounds.set_message(if *attempt > 1 {
                    format!("(attempt {attempt})")
                } else {
                    String::new()
                });
                for (_, bar) in std::mem::take(&mut self.nodes) {
                    bar.finish_and_clear();
                }
                for node in asked {
                    let bar = self.bars.add(ProgressBar::new(self.merge_epochs));
                    bar.set_style(self.node_style.clone());
                    bar.set_prefix(node.clone());
                    bar.set_message("training");
                    self.nodes.insert(node.clone(), bar);
                }
            }
            TaskEvent::EpochFinished {
                node, epoch, loss, ..
            } => {
                if let Some(bar) = self.nodes.get(node) {
                    bar.set_position(u64::from(*epoch));
                    bar.set_message(loss.map_or(String::new(), |l| format!("loss {l:.4}")));
                }
            }
            TaskEvent::UpdateAccepted { node, loss, .. } => {
                if let Some(bar) = self.nodes.get(node) {
                    bar.set_position(self.merge_epochs);
                    bar.set_message(format!(
                        "update accepted{}",
                        loss.map_or(String::new(), |l| format!(", loss {l:.4}"))
                    ));
                }
            }
            TaskEvent::Dropped { node, reason, .. } => {
                if let Some(bar) = self.nodes.get(node) {
                    bar.set_message(format!("left out: {reason}"));
                }
            }
            TaskEvent::RoundFinished(summary) => {
                self.rounds.set_position(summary.round);
                self.finished.push(summary.clone());
            }
            _ => {}
        }
    }

    /// Removes the bars.
    pub fn finish(&mut self) {
        for (_, bar) in std::mem::take(&mut self.nodes) {
            bar.finish_and_clear();
        }
        self.rounds.finish_and_clear();
    }
}

/// A percentage with two decimals, or `-`.
pub fn percent(a: Option<f64>) -> String {
    a.map_or("-".to_owned(), |a| format!("{:.2}%", a * 100.0))
}

/// The table of rounds; `*` marks the best one.
pub fn print_rounds(rounds: &[RoundSummary], best_round: Option<u64>) {
    println!(
        "{:>5}  {:<28}  {:>10}  {:>10}  {:>9}  {:>8}",
        "round", "participants", "train loss", "valid acc", "test acc", "seconds"
    );
    for r in rounds {
        let mut who = r.participants.join(",");
        if !r.dropped.is_empty() {
            who.push_str(&format!(" (-{})", r.dropped.join(",")));
        }
        let marker = if Some(r.round) == best_round {
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
}
