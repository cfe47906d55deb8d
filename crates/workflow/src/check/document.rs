//! The whole document: the version first, then every top-level key, then the checks across
//! keys, and the effective workflow when nothing is wrong.

use super::{Checker, IDENTIFIER, key_at};
use crate::error::Position;
use crate::keys;
use crate::paths;
use crate::workflow::{
    Aggregation, EarlyStopping, MAX_ROUNDS_LIMIT, MERGE_EPOCHS_LIMIT, ROUND_RETRIES_LIMIT,
    SUPPORTED_VERSIONS, THREADS_LIMIT, Timeouts, Training, Transport, Workflow, defaults,
};
use crate::yaml::{Node, Value};

impl Checker {
    /// Checks the whole document.
    pub(crate) fn workflow(&mut self, root: &Node) -> Option<Workflow> {
        const TOP: &str = "a mapping of workflow keys, starting with `version: 1`";
        let pairs = match &root.value {
            Value::Map(pairs) => pairs,
            Value::Null => {
                // The parser places an empty document at its end; the start reads better.
                let start = Position { line: 1, column: 1 };
                self.error(start, "", "is empty", Some(TOP.to_owned()));
                return None;
            }
            _ => {
                self.wrong(root, "", TOP);
                return None;
            }
        };
        // A file of another version is not checked against this one's keys: that would only
        // bury the one problem that matters.
        let supported = SUPPORTED_VERSIONS
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let version_node = pairs
            .iter()
            .find(|(k, _)| k.value == Value::Str("version".into()))
            .map(|(_, v)| v);
        if let Some(node) = version_node
            && let Value::Int(v) = node.value
            && !SUPPORTED_VERSIONS.iter().any(|s| i128::from(*s) == v)
        {
            self.error(
                node.at,
                "version",
                format!("workflow format version {v} is not supported by this engine"),
                Some(format!("version {supported}")),
            );
            return None;
        }

        let m = self.mapping(root, "", root.at, &keys::ROOT, TOP)?;
        let version = match m.get("version") {
            None => {
                self.missing(
                    &m,
                    "version",
                    format!("`version: {supported}` as the first key"),
                );
                None
            }
            Some(node) => match node.value {
                Value::Int(_) => Some(1),
                _ => {
                    self.wrong(node, "version", format!("the whole number {supported}"));
                    None
                }
            },
        };
        let name = match m.get("name") {
            None => {
                self.missing(&m, "name", format!("the task's name: {IDENTIFIER}"));
                None
            }
            Some(node) => self.identifier(node, "name", 64, false),
        };
        let seed = self.or_default(&m, "seed", defaults::SEED, |c, n, k| {
            c.whole(n, k, 0, u64::MAX)
        });
        let model = match m.get("model") {
            None => {
                self.missing(&m, "model", "a model package directory or model.zip");
                None
            }
            Some(node) => self
                .path(
                    node,
                    "model",
                    "a model package directory or model.zip, relative to the workflow file",
                )
                .map(|path| (path, node.at)),
        };

        let mut datasets = Vec::new();
        let initiator = match m.get("initiator") {
            None => {
                self.missing(
                    &m,
                    "initiator",
                    "a mapping with `node`, `test` and optionally `train`, `validation`",
                );
                None
            }
            Some(node) => self.initiator(node, key_at(root, "initiator"), &mut datasets),
        };
        let participants = match m.optional("participants") {
            None => {
                self.participant_count = Some(0);
                Some(Vec::new())
            }
            Some(node) => self.participants(node, &mut datasets),
        };
        let max_rounds = self.or_default(&m, "max_rounds", defaults::MAX_ROUNDS, |c, n, k| {
            c.whole_u32(n, k, 1, MAX_ROUNDS_LIMIT)
        });
        let merge_epochs =
            self.or_default(&m, "merge_epochs", defaults::MERGE_EPOCHS, |c, n, k| {
                c.whole_u32(n, k, 1, MERGE_EPOCHS_LIMIT)
            });
        let log_rounds = self.or_default(&m, "log_rounds", defaults::LOG_ROUNDS, |c, n, k| {
            c.whole_u32(n, k, 1, MAX_ROUNDS_LIMIT)
        });
        let aggregation = self.or_default(&m, "aggregation", Aggregation::default(), |c, n, k| {
            c.aggregation(n, k, key_at(root, k))
        });
        let early_stopping =
            self.or_default(&m, "early_stopping", EarlyStopping::default(), |c, n, k| {
                c.early_stopping(n, k, key_at(root, k))
            });
        let timeouts = self.or_default(&m, "timeouts", Timeouts::default(), |c, n, k| {
            c.timeouts(n, k, key_at(root, k))
        });
        let quorum = self.or_none(&m, "quorum", |c, n, k| c.whole_u32(n, k, 1, u32::MAX));
        let round_retries =
            self.or_default(&m, "round_retries", defaults::ROUND_RETRIES, |c, n, k| {
                c.whole_u32(n, k, 0, ROUND_RETRIES_LIMIT)
            });
        let training = self.or_default(&m, "training", Training::default(), |c, n, k| {
            c.training(n, k, key_at(root, k))
        });
        let threads = self.or_default(&m, "threads", defaults::THREADS, |c, n, k| {
            c.whole_u32(n, k, 1, THREADS_LIMIT)
        });
        let output = self.or_none(&m, "output", |c, n, k| {
            c.path(n, k, "a directory path, relative to the workflow file")
                .map(|path| (path, n.at))
        });
        let transport = self.or_default(&m, "transport", Transport::default(), |c, n, k| {
            c.transport(n, k, key_at(root, k))
        });

        // Checks across keys, each only when the values it compares are valid.
        self.unique_nodes();
        if let (Some(initiator_trains), Some(participant_count)) =
            (self.initiator_trains, self.participant_count)
        {
            let training_nodes = participant_count + usize::from(initiator_trains);
            if training_nodes == 0 {
                self.error(
                    Self::at(&m, "participants"),
                    "participants",
                    "no node trains: there are no participants and the initiator has no `train` data",
                    Some("at least one participant `{node, data}`, or `initiator.train`".to_owned()),
                );
            }
            if let Some(Some(quorum)) = quorum
                && quorum as usize > training_nodes
                && training_nodes > 0
            {
                let who = if initiator_trains {
                    format!("{participant_count} participants and the initiator")
                } else {
                    format!("{participant_count} participants")
                };
                self.error(
                    Self::at(&m, "quorum"),
                    "quorum",
                    format!("is {quorum}, but only {training_nodes} nodes train ({who})"),
                    Some(format!("a whole number from 1 to {training_nodes}")),
                );
            }
        }
        if let (Some(max_rounds), Some(log_rounds)) = (max_rounds, log_rounds)
            && log_rounds > max_rounds
        {
            self.error(
                Self::at(&m, "log_rounds"),
                "log_rounds",
                format!("is {log_rounds}, more than `max_rounds` ({max_rounds})"),
                Some(format!("a whole number from 1 to {max_rounds}")),
            );
        }
        if let (Some(initiator), Some(stopping), Some(_)) =
            (&initiator, &early_stopping, m.optional("early_stopping"))
            && stopping.enabled
            && initiator.validation.is_none()
        {
            self.error(
                key_at(root, "early_stopping"),
                "early_stopping",
                "early stopping needs validation data, but `initiator.validation` is not given",
                Some("`initiator.validation`, or `early_stopping.enabled: false`".to_owned()),
            );
        }
        if let Some(transport) = &transport
            && self.local_files
        {
            self.check_datasets(&datasets, transport);
        }
        if let Some((model, at)) = &model
            && self.local_files
        {
            self.check_model(model, *at);
        }
        if let Some(Some((output, at))) = &output
            && self.local_files
            && output.exists()
            && !output.is_dir()
        {
            self.error(
                *at,
                "output",
                format!("{} exists and is not a directory", output.display()),
                Some("a directory, which is created when missing".to_owned()),
            );
        }

        let name = name?;
        let initiator = initiator?;
        let participants = participants?;
        let early_stopping = early_stopping.map(|mut stopping| {
            stopping.enabled &= initiator.validation.is_some();
            stopping
        })?;
        let training_nodes = participants.len() + usize::from(initiator.train.is_some());
        let quorum = match quorum? {
            Some(quorum) => quorum,
            None => u32::try_from(training_nodes).unwrap_or(u32::MAX),
        };
        let output = match output? {
            Some((output, _)) => output,
            None => paths::resolve(&self.base, &format!("{}/{name}", defaults::OUTPUT_PARENT)),
        };
        Some(Workflow {
            version: version?,
            name,
            seed: seed?,
            model: model?.0,
            initiator,
            participants,
            max_rounds: max_rounds?,
            merge_epochs: merge_epochs?,
            log_rounds: log_rounds?,
            aggregation: aggregation?,
            early_stopping,
            timeouts: timeouts?,
            quorum,
            round_retries: round_retries?,
            training: training?,
            threads: threads?,
            output,
            transport: transport?,
            overrides: Vec::new(),
        })
    }
}
