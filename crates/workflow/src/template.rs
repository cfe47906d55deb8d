//! A new workflow file, as `engine workflow new` writes it: every top-level key present with
//! its default written out and a line of explanation, in the style of `workflows/fedavg.yaml`.
//!
//! ```
//! use fl_workflow::template::{self, TemplateInitiator, TemplateOptions, TemplateParticipant};
//!
//! let text = template::fedavg(&TemplateOptions {
//!     name: "digits".into(),
//!     model: "models/digits-cnn".into(),
//!     initiator: TemplateInitiator {
//!         node: "initiator".into(),
//!         train: None,
//!         validation: Some("datasets/digits/initiator".into()),
//!         test: "datasets/digits/initiator".into(),
//!     },
//!     participants: vec![TemplateParticipant {
//!         node: "site-1".into(),
//!         data: "datasets/digits/site-1".into(),
//!     }],
//!     dir: "workflows".into(),
//! })?;
//! assert!(text.contains("\nmodel: ../models/digits-cnn\n"));
//! # Ok::<(), fl_workflow::template::TemplateError>(())
//! ```
//!
//! The defaults come from [`crate::defaults`] and the types' `Default`s, so the file states
//! what leaving a key out means. The text is not checked here: names that are not valid node
//! ids, or paths that do not exist, are what [`Workflow::parse`](crate::Workflow::parse) of
//! the text reports.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::paths;
use crate::quote::yaml_string;
use crate::workflow::{
    Aggregation, EarlyStopping, SUPPORTED_VERSIONS, Timeouts, Transport, defaults,
};

/// What a new workflow is about; paths are absolute or relative to the current directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateOptions {
    /// The task's name.
    pub name: String,
    /// The model package: a package directory or a `model.zip`.
    pub model: PathBuf,
    /// The initiator and its data.
    pub initiator: TemplateInitiator,
    /// The participants, in order.
    pub participants: Vec<TemplateParticipant>,
    /// The directory the workflow file is written to: paths are written relative to it when
    /// they share more than the root with it, else absolute.
    pub dir: PathBuf,
}

/// The initiator of a new workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInitiator {
    /// Node id.
    pub node: String,
    /// Training data, when the initiator trains too.
    pub train: Option<PathBuf>,
    /// Validation data, for early stopping; without it early stopping is written off.
    pub validation: Option<PathBuf>,
    /// Test data.
    pub test: PathBuf,
}

/// A participant of a new workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateParticipant {
    /// Node id.
    pub node: String,
    /// Its dataset directory.
    pub data: PathBuf,
}

/// Why a workflow could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A path is not UTF-8, and a workflow file is UTF-8 text.
    #[error("the {what} `{}` is not UTF-8, which a workflow file cannot hold", .path.display())]
    NotUtf8 {
        /// Which path (`model`, `participant site-1's data`).
        what: String,
        /// The path as written relative to the workflow's directory.
        path: PathBuf,
    },
}

/// Returns the text of a commented FedAvg workflow with every top-level key: the given model
/// and nodes, every other key at its default.
pub fn fedavg(options: &TemplateOptions) -> Result<String, TemplateError> {
    let mut w = Writer {
        out: String::new(),
        dir: &options.dir,
    };
    w.lines(&[
        "# A FedAvg task, written by `engine workflow new`. Every key is present with its",
        "# default and a line of explanation; edit what the task needs. Relative paths are",
        "# relative to this file's directory.",
        "#",
        "#   engine validate FILE   # check it (every problem at once)",
        "#   engine submit FILE     # run it; `--set KEY=VALUE` and `--output DIR` override keys",
        "#",
        "# `engine workflow schema` prints every key with its description (for editors).",
    ]);
    w.task(options)?;
    w.nodes(options)?;
    w.rounds(options);
    w.tail(options);
    Ok(w.out)
}

/// Builds the text, one commented key at a time.
struct Writer<'a> {
    out: String,
    dir: &'a Path,
}

impl Writer<'_> {
    fn lines(&mut self, lines: &[&str]) {
        for line in lines {
            self.out.push_str(line);
            self.out.push('\n');
        }
    }

    /// A blank line, the comment, then `key: value` (`key:` for an empty value).
    fn key(&mut self, comment: &str, key: &str, value: impl std::fmt::Display) {
        let line = format!("{key}: {value}");
        self.out
            .push_str(&format!("\n# {comment}\n{}\n", line.trim_end()));
    }

    /// A blank line, the comment, then a section with one `key: value` line per entry.
    fn section(&mut self, comment: &str, key: &str, entries: &[(&str, String)]) {
        self.out.push_str(&format!("\n# {comment}\n{key}:\n"));
        for (entry, value) in entries {
            self.out.push_str(&format!("  {entry}: {value}\n"));
        }
    }

    /// A path as written in the file, quoted when needed.
    fn path(&self, what: &str, path: &Path) -> Result<String, TemplateError> {
        let written = paths::relative_to(path, self.dir);
        match written.to_str() {
            Some(text) => Ok(yaml_string(text)),
            None => Err(TemplateError::NotUtf8 {
                what: what.to_owned(),
                path: written,
            }),
        }
    }

    fn task(&mut self, options: &TemplateOptions) -> Result<(), TemplateError> {
        let version = SUPPORTED_VERSIONS.iter().max().copied().unwrap_or(1);
        self.key(
            "Version of the workflow format; required, only 1 exists.",
            "version",
            version,
        );
        self.key(
            "The task's name (letters, digits, `-`, `_`): in logs, and the default output directory.",
            "name",
            yaml_string(&options.name),
        );
        self.key(
            "Seed of every random choice; with the same seed and `threads`, runs are bit-identical.",
            "seed",
            defaults::SEED,
        );
        let model = self.path("model", &options.model)?;
        self.key(
            "The model package to fine-tune: a package directory or a model.zip.",
            "model",
            model,
        );
        Ok(())
    }

    fn nodes(&mut self, options: &TemplateOptions) -> Result<(), TemplateError> {
        let initiator = &options.initiator;
        self.lines(&[
            "",
            "# The initiator (aggregator): coordinates the task and evaluates the global model.",
            "initiator:",
            "  # Node id: letters, digits, `-` and `_`, unique across all nodes.",
        ]);
        self.out
            .push_str(&format!("  node: {}\n", yaml_string(&initiator.node)));
        self.out.push_str(
            "  # Training data (its Train split): the initiator then trains like a participant.\n",
        );
        match &initiator.train {
            Some(train) => {
                let train = self.path("initiator's training data", train)?;
                self.out.push_str(&format!("  train: {train}\n"));
            }
            None => self.out.push_str("  # train: DIR\n"),
        }
        self.out.push_str(
            "  # Validation data (its Validation split): early stopping and the best state.\n",
        );
        match &initiator.validation {
            Some(validation) => {
                let validation = self.path("initiator's validation data", validation)?;
                self.out.push_str(&format!("  validation: {validation}\n"));
            }
            None => self.out.push_str("  # validation: DIR\n"),
        }
        let test = self.path("initiator's test data", &initiator.test)?;
        self.out.push_str(&format!(
            "  # Test data (its Test split): the global model is tested on it.\n  test: {test}\n"
        ));

        self.out.push_str(
            "\n# The data owners: each trains on the Train split of its own directory.\n",
        );
        if options.participants.is_empty() {
            self.out.push_str("participants: []\n");
            return Ok(());
        }
        self.out.push_str("participants:\n");
        for participant in &options.participants {
            let what = format!("data of participant {}", participant.node);
            let data = self.path(&what, &participant.data)?;
            self.out.push_str(&format!(
                "  - node: {}\n    data: {data}\n",
                yaml_string(&participant.node)
            ));
        }
        Ok(())
    }

    fn rounds(&mut self, options: &TemplateOptions) {
        self.key(
            "At most this many rounds (early stopping may end the task sooner).",
            "max_rounds",
            defaults::MAX_ROUNDS,
        );
        self.key(
            "Local epochs each training node runs per round, from the round's global weights.",
            "merge_epochs",
            defaults::MERGE_EPOCHS,
        );
        self.key(
            "Test the global model every N rounds (the first and the last round always).",
            "log_rounds",
            defaults::LOG_ROUNDS,
        );
        self.section(
            "Updates weighted by each node's training samples (FedAvg), or `uniform` (plain mean).",
            "aggregation",
            &[("weighting", scalar(&Aggregation::default().weighting))],
        );
        // Early stopping needs validation data; without it the section must say it is off.
        let stopping = EarlyStopping {
            enabled: options.initiator.validation.is_some(),
            ..EarlyStopping::default()
        };
        self.section(
            "Stop after `patience` rounds without a better validation metric, keeping the best state.",
            "early_stopping",
            &[
                ("enabled", stopping.enabled.to_string()),
                ("metric", scalar(&stopping.metric)),
                ("patience", stopping.patience.to_string()),
            ],
        );
        let timeouts = Timeouts::default();
        self.section(
            "Waits for the nodes to check in and for a round's updates (500ms, 30s, 5m, 1h; 0: none).",
            "timeouts",
            &[
                ("schedule", timeouts.schedule.to_string()),
                ("calculation", timeouts.calculation.to_string()),
            ],
        );
        let training_nodes =
            options.participants.len() + usize::from(options.initiator.train.is_some());
        self.key(
            &format!(
                "Updates a round needs; empty means every training node ({training_nodes} here)."
            ),
            "quorum",
            "",
        );
        self.key(
            "Times a round without quorum is run again before the task fails.",
            "round_retries",
            defaults::ROUND_RETRIES,
        );
    }

    fn tail(&mut self, options: &TemplateOptions) {
        self.lines(&[
            "",
            "# Overrides of the model package's hyper-parameters (its config.json; docs/TRAINING.md);",
            "# empty keeps the package's values. Uncomment a key and give it a value to override it.",
            "training:",
        ]);
        let specs: Vec<_> = fl_package::HYPER_PARAMETERS
            .iter()
            .filter(|spec| spec.scope == fl_package::Scope::Anywhere)
            .collect();
        let width = specs.iter().map(|s| s.key.len()).max().unwrap_or(0) + 1;
        for spec in specs {
            let key = format!("{}:", spec.key);
            let about = format!("{}; default {}", spec.accepted, spec.default);
            let mut lines = wrap(&about, LINE_WIDTH - width - 7).into_iter();
            let first = lines.next().unwrap_or_default();
            self.out.push_str(&format!("  # {key:<width$} # {first}\n"));
            for line in lines {
                self.out
                    .push_str(&format!("  # {:<width$} #   {line}\n", ""));
            }
        }
        self.key(
            "libtorch threads per training node; part of the reproducibility contract.",
            "threads",
            defaults::THREADS,
        );
        let output = format!("{}/{}", defaults::OUTPUT_PARENT, options.name);
        self.key(
            "Results directory (model.zip, report.zip, checkpoints, task log), relative to this file.",
            "output",
            yaml_string(&output),
        );
        self.key(
            "`embedded`: every node in this process; `{nats: {url: nats://HOST:PORT}}`: agents.",
            "transport",
            scalar(&Transport::default()),
        );
    }
}

/// The width comments are wrapped to.
const LINE_WIDTH: usize = 96;

/// Splits `text` into lines of at most `width` characters at spaces (a longer word gets a
/// line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A value as a YAML scalar, spelled as the workflow spells it (`samples`, `embedded`).
fn scalar(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => yaml_string(&text),
        Ok(other) => other.to_string(),
        // Unit enums and numbers always serialise; this only keeps the function total.
        Err(error) => yaml_string(&error.to_string()),
    }
}
