//! Reading a workflow file: YAML into a tree of located nodes, then every key checked against
//! the version 1 format, then the checks across keys and against the file system. Every
//! problem is collected; a workflow is returned only when there is none.

use std::path::{Path, PathBuf};

use crate::duration::{TIMEOUT_ACCEPTED, Timeout, TimeoutParseError};
use crate::error::{Position, WorkflowError, WorkflowErrors};
use crate::keys::{self, Section};
use crate::paths;
use crate::workflow::{
    Aggregation, Dataset, EarlyStopping, Initiator, MAX_ROUNDS_LIMIT, MERGE_EPOCHS_LIMIT,
    NatsTransport, Optimizer, Participant, ROUND_RETRIES_LIMIT, SUPPORTED_VERSIONS, StoppingMetric,
    THREADS_LIMIT, Timeouts, Training, Transport, Weighting, Workflow, defaults,
};
use crate::yaml::{self, Node, Value};

/// Keys with a default whose null value (e.g. every entry commented out) means the default.
const NULL_IS_DEFAULT: &[&str] = &["aggregation", "early_stopping", "timeouts", "training"];

/// Workflow files larger than this are refused before being read whole.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What node ids and the task name accept.
const IDENTIFIER: &str =
    "letters, digits, `-` and `_`, at most 64, starting with a letter or digit";
/// What registered dataset names accept.
const DATASET_NAME: &str =
    "letters, digits, `.`, `-` and `_`, at most 128, starting with a letter or digit";
/// What a dataset key accepts.
const DATASET: &str = "a dataset directory (relative to the workflow file), or `{name: NAME}` \
                       for a dataset an agent registered";

impl Workflow {
    /// Reads and checks the workflow file at `path`, returning every problem at once.
    ///
    /// Relative paths in the file resolve against the file's directory. Paths are checked
    /// as far as the file system goes (existence and kind); packages and datasets are not
    /// opened.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WorkflowErrors> {
        let path = path.as_ref();
        let fail = |message: String, expected: Option<&str>, position: Option<Position>| {
            WorkflowErrors::new(vec![WorkflowError {
                file: path.display().to_string(),
                position,
                key: None,
                message,
                expected: expected.map(str::to_owned),
            }])
        };
        let metadata = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read the workflow file: {e}"), None, None))?;
        if metadata.is_dir() {
            return Err(fail(
                "is a directory".to_owned(),
                Some("a workflow YAML file, such as workflows/fedavg.yaml"),
                None,
            ));
        }
        if metadata.len() > MAX_FILE_BYTES {
            return Err(fail(
                format!("is {} bytes, too large for a workflow", metadata.len()),
                Some("a YAML file of at most 1 MiB"),
                None,
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| fail(format!("cannot read the workflow file: {e}"), None, None))?;
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse(&text, path),
            Err(error) => {
                // The position of the first byte that is not UTF-8.
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                let before = String::from_utf8_lossy(valid);
                let line = before.matches('\n').count() as u64 + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
                Err(fail(
                    "is not UTF-8 text".to_owned(),
                    Some("a UTF-8 YAML file"),
                    Some(Position { line, column }),
                ))
            }
        }
    }

    /// Checks the workflow `text`, read from `path`: problems name `path`, and relative
    /// paths in the text resolve against its directory (the file itself is not read).
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, WorkflowErrors> {
        let path = path.as_ref();
        let mut checker = Checker {
            file: path.display().to_string(),
            base: paths::base_dir(path),
            errors: Vec::new(),
            nodes: Vec::new(),
            initiator_trains: None,
            participant_count: None,
        };
        let workflow = match yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text)) {
            Ok(root) => checker.workflow(&root),
            Err(error) => {
                checker.errors.push(WorkflowError {
                    file: checker.file.clone(),
                    position: Some(error.at.unwrap_or(Position { line: 1, column: 1 })),
                    key: None,
                    message: format!("is not valid YAML: {}", error.message),
                    expected: None,
                });
                None
            }
        };
        match workflow {
            Some(workflow) if checker.errors.is_empty() => Ok(workflow),
            Some(_) => Err(WorkflowErrors::new(checker.errors)),
            None if checker.errors.is_empty() => {
                // Every path that gives up reports why; this is a safety net, not a message
                // users should see.
                checker.error(
                    Position { line: 1, column: 1 },
                    "",
                    "could not be read as a workflow",
                    None,
                );
                Err(WorkflowErrors::new(checker.errors))
            }
            None => Err(WorkflowErrors::new(checker.errors)),
        }
    }
}

/// A mapping of the file whose keys were checked against its [`Section`].
struct Mapping<'n> {
    /// Key path of the mapping (`participants[1]`); empty for the top level.
    path: String,
    /// Where a missing key is reported: the mapping's own key, else the mapping.
    at: Position,
    /// Known keys with their values, first occurrence only.
    entries: Vec<(&'static str, &'n Node)>,
    /// Known keys suggested for misspelt ones: not reported again as missing.
    suggested: Vec<&'static str>,
}

impl<'n> Mapping<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, node)| *node)
    }

    /// The value of an optional key; an explicit null counts as absent.
    fn optional(&self, key: &str) -> Option<&'n Node> {
        self.get(key).filter(|node| node.value != Value::Null)
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// A dataset and where it was named, for the checks that need the transport.
struct DatasetUse {
    key: String,
    at: Position,
    dataset: Dataset,
}

/// Collects the problems of one file, and what the checks across keys need even when other
/// keys of the same section are wrong.
struct Checker {
    file: String,
    base: PathBuf,
    errors: Vec<WorkflowError>,
    /// Valid node ids with their key path and position, initiator first.
    nodes: Vec<(String, String, Position)>,
    /// Whether the initiator has `train` data, once its mapping was read.
    initiator_trains: Option<bool>,
    /// Number of participants, once the list was read (0 when absent).
    participant_count: Option<usize>,
}

impl Checker {
    fn error(
        &mut self,
        at: Position,
        key: &str,
        message: impl Into<String>,
        expected: Option<String>,
    ) {
        self.errors.push(WorkflowError {
            file: self.file.clone(),
            position: Some(at),
            key: (!key.is_empty()).then(|| key.to_owned()),
            message: message.into(),
            expected,
        });
    }

    /// Reports a value of the wrong type or out of range.
    fn wrong(&mut self, node: &Node, key: &str, expected: impl Into<String>) {
        self.error(
            node.at,
            key,
            format!("is {}", node.value.describe()),
            Some(expected.into()),
        );
    }

    fn missing(&mut self, mapping: &Mapping<'_>, key: &str, expected: impl Into<String>) {
        if mapping.suggested.contains(&key) {
            // The misspelling was reported with this key as the suggestion.
            return;
        }
        self.error(
            mapping.at,
            &mapping.key(key),
            "is required but missing",
            Some(expected.into()),
        );
    }

    /// Checks that `node` is a mapping with only keys of `section`, each once.
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        at: Position,
        section: &Section,
        expected: &str,
    ) -> Option<Mapping<'n>> {
        let Value::Map(pairs) = &node.value else {
            self.wrong(node, path, expected);
            return None;
        };
        let mut mapping = Mapping {
            path: path.to_owned(),
            at,
            entries: Vec::new(),
            suggested: Vec::new(),
        };
        let mut seen: Vec<(&str, Position)> = Vec::new();
        for (key, value) in pairs {
            let Value::Str(name) = &key.value else {
                self.error(
                    key.at,
                    path,
                    format!("has a key that is {}", key.value.describe()),
                    Some(format!("text keys: {}", section.keys.join(", "))),
                );
                continue;
            };
            let key_path = mapping.key(name);
            if let Some((_, first)) = seen.iter().find(|(k, _)| k == name) {
                let message = format!("is given more than once (first on line {})", first.line);
                self.error(key.at, &key_path, message, Some("each key once".to_owned()));
                continue;
            }
            seen.push((name, key.at));
            match section.keys.iter().find(|k| *k == name) {
                Some(known) => mapping.entries.push((known, value)),
                None => {
                    mapping.suggested.extend(keys::closest(section, name));
                    let message = match keys::suggestion(section, name) {
                        Some(suggestion) => format!("is not a known key; {suggestion}"),
                        None => "is not a known key".to_owned(),
                    };
                    self.error(key.at, &key_path, message, Some(section.keys.join(", ")));
                }
            }
        }
        Some(mapping)
    }

    /// Reads a whole number in `min..=max`.
    fn whole(&mut self, node: &Node, key: &str, min: u64, max: u64) -> Option<u64> {
        if let Value::Int(n) = node.value
            && let Ok(n) = u64::try_from(n)
            && (min..=max).contains(&n)
        {
            return Some(n);
        }
        let expected = if max >= u64::from(u32::MAX) {
            format!("a whole number from {min}")
        } else {
            format!("a whole number from {min} to {max}")
        };
        self.wrong(node, key, expected);
        None
    }

    fn whole_u32(&mut self, node: &Node, key: &str, min: u32, max: u32) -> Option<u32> {
        self.whole(node, key, min.into(), max.into())
            .and_then(|n| u32::try_from(n).ok())
    }

    /// Reads a number (integers too) accepted by `ok`.
    fn number(
        &mut self,
        node: &Node,
        key: &str,
        ok: fn(f64) -> bool,
        expected: &str,
    ) -> Option<f64> {
        let x = match node.value {
            Value::Int(n) => n as f64,
            Value::Float(x) => x,
            _ => f64::NAN,
        };
        if x.is_finite() && ok(x) {
            Some(x)
        } else {
            self.wrong(node, key, expected);
            None
        }
    }

    fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong(node, key, "true or false");
                None
            }
        }
    }

    /// Reads one of `choices`.
    fn choice<T: Copy>(&mut self, node: &Node, key: &str, choices: &[(&str, T)]) -> Option<T> {
        if let Value::Str(text) = &node.value
            && let Some((_, value)) = choices.iter().find(|(name, _)| name == text)
        {
            return Some(*value);
        }
        let names: Vec<String> = choices
            .iter()
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        self.wrong(node, key, names.join(" or "));
        None
    }

    /// Reads a node id or task name.
    fn identifier(&mut self, node: &Node, key: &str, max_len: usize, dots: bool) -> Option<String> {
        let accepted = if dots { DATASET_NAME } else { IDENTIFIER };
        let Value::Str(text) = &node.value else {
            self.wrong(node, key, format!("a string of {accepted}"));
            return None;
        };
        let valid = text.len() <= max_len
            && text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.'));
        if valid {
            Some(text.clone())
        } else {
            self.error(
                node.at,
                key,
                format!("`{text}` is not a valid name"),
                Some(accepted.to_owned()),
            );
            None
        }
    }

    /// Reads a path and resolves it against the workflow file's directory.
    fn path(&mut self, node: &Node, key: &str, expected: &str) -> Option<PathBuf> {
        match &node.value {
            Value::Str(text) if !text.trim().is_empty() && !text.contains('\0') => {
                Some(paths::resolve(&self.base, text))
            }
            _ => {
                self.wrong(node, key, expected);
                None
            }
        }
    }

    fn timeout(&mut self, node: &Node, key: &str) -> Option<Timeout> {
        let result = match &node.value {
            Value::Int(0) => Ok(Timeout::NONE),
            Value::Str(text) => text.parse::<Timeout>(),
            Value::Int(n) => Err(TimeoutParseError::new(format!(
                "`{n}` has a number without a unit"
            ))),
            _ => {
                self.wrong(node, key, TIMEOUT_ACCEPTED);
                return None;
            }
        };
        result
            .map_err(|e| {
                self.error(
                    node.at,
                    key,
                    e.to_string(),
                    Some(TIMEOUT_ACCEPTED.to_owned()),
                )
            })
            .ok()
    }

    fn dataset(&mut self, node: &Node, key: &str, uses: &mut Vec<DatasetUse>) -> Option<Dataset> {
        let dataset = match &node.value {
            Value::Str(_) => Dataset::Path(self.path(node, key, DATASET)?),
            Value::Map(_) => {
                let m = self.mapping(node, key, node.at, &keys::NAMED_DATASET, DATASET)?;
                let Some(name) = m.get("name") else {
                    self.missing(&m, "name", format!("the registered name: {DATASET_NAME}"));
                    return None;
                };
                let name = self.identifier(name, &m.key("name"), 128, true)?;
                Dataset::Named { name }
            }
            _ => {
                self.wrong(node, key, DATASET);
                return None;
            }
        };
        uses.push(DatasetUse {
            key: key.to_owned(),
            at: node.at,
            dataset: dataset.clone(),
        });
        Some(dataset)
    }

    /// The value of a key with a default: `Some(default)` when absent (or, for the sections and
    /// lists whose schema allows it, null), `None` when invalid.
    fn or_default<T>(
        &mut self,
        m: &Mapping<'_>,
        key: &str,
        default: T,
        read: impl FnOnce(&mut Self, &Node, &str) -> Option<T>,
    ) -> Option<T> {
        let node = if NULL_IS_DEFAULT.contains(&key) {
            m.optional(key)
        } else {
            m.get(key)
        };
        match node {
            None => Some(default),
            Some(node) => read(self, node, &m.key(key)),
        }
    }

    /// The value of an optional key: `Some(None)` when absent or null, `None` when invalid.
    fn or_none<T>(
        &mut self,
        m: &Mapping<'_>,
        key: &str,
        read: impl FnOnce(&mut Self, &Node, &str) -> Option<T>,
    ) -> Option<Option<T>> {
        match m.optional(key) {
            None => Some(None),
            Some(node) => read(self, node, &m.key(key)).map(Some),
        }
    }

    /// Where the value of `key` is, else where the mapping is.
    fn at(m: &Mapping<'_>, key: &str) -> Position {
        m.get(key).map_or(m.at, |node| node.at)
    }

    /// Checks the whole document.
    fn workflow(&mut self, root: &Node) -> Option<Workflow> {
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
        if let Some(transport) = &transport {
            self.check_datasets(&datasets, transport);
        }
        if let Some((model, at)) = &model {
            self.check_model(model, *at);
        }
        if let Some(Some((output, at))) = &output
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
        })
    }

    fn initiator(
        &mut self,
        node: &Node,
        at: Position,
        datasets: &mut Vec<DatasetUse>,
    ) -> Option<Initiator> {
        let m = self.mapping(
            node,
            "initiator",
            at,
            &keys::INITIATOR,
            "a mapping with `node`, `test` and optionally `train`, `validation`",
        )?;
        let id = match m.get("node") {
            None => {
                self.missing(&m, "node", format!("the initiator's node id: {IDENTIFIER}"));
                None
            }
            Some(n) => self.node_id(n, "initiator.node"),
        };
        self.initiator_trains = Some(m.optional("train").is_some());
        let train = self.or_none(&m, "train", |c, n, k| c.dataset(n, k, datasets));
        let validation = self.or_none(&m, "validation", |c, n, k| c.dataset(n, k, datasets));
        let test = match m.get("test") {
            None => {
                self.missing(&m, "test", format!("the test data: {DATASET}"));
                None
            }
            Some(n) => self.dataset(n, "initiator.test", datasets),
        };
        Some(Initiator {
            node: id?,
            train: train?,
            validation: validation?,
            test: test?,
        })
    }

    fn participants(
        &mut self,
        node: &Node,
        datasets: &mut Vec<DatasetUse>,
    ) -> Option<Vec<Participant>> {
        const ITEM: &str = "a mapping with `node` and `data`";
        let Value::Seq(items) = &node.value else {
            self.wrong(
                node,
                "participants",
                format!("a list of participants, each {ITEM}"),
            );
            return None;
        };
        self.participant_count = Some(items.len());
        let mut participants = Some(Vec::with_capacity(items.len()));
        for (i, item) in items.iter().enumerate() {
            let path = format!("participants[{i}]");
            let participant = self
                .mapping(item, &path, item.at, &keys::PARTICIPANT, ITEM)
                .and_then(|m| {
                    let id = match m.get("node") {
                        None => {
                            self.missing(
                                &m,
                                "node",
                                format!("the participant's node id: {IDENTIFIER}"),
                            );
                            None
                        }
                        Some(n) => self.node_id(n, &m.key("node")),
                    };
                    let data = match m.get("data") {
                        None => {
                            self.missing(
                                &m,
                                "data",
                                format!("the participant's training data: {DATASET}"),
                            );
                            None
                        }
                        Some(n) => self.dataset(n, &m.key("data"), datasets),
                    };
                    Some(Participant {
                        node: id?,
                        data: data?,
                    })
                });
            match (participant, participants.as_mut()) {
                (Some(p), Some(list)) => list.push(p),
                _ => participants = None,
            }
        }
        participants
    }

    fn aggregation(&mut self, node: &Node, key: &str, at: Position) -> Option<Aggregation> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::AGGREGATION,
            "a mapping such as `{weighting: samples}`",
        )?;
        let weighting = self.or_default(&m, "weighting", Weighting::default(), |c, n, k| {
            c.choice(
                n,
                k,
                &[
                    ("samples", Weighting::Samples),
                    ("uniform", Weighting::Uniform),
                ],
            )
        });
        Some(Aggregation {
            weighting: weighting?,
        })
    }

    fn early_stopping(&mut self, node: &Node, key: &str, at: Position) -> Option<EarlyStopping> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::EARLY_STOPPING,
            "a mapping such as `{metric: validation_accuracy, patience: 10}`",
        )?;
        let enabled = self.or_default(&m, "enabled", true, |c, n, k| c.boolean(n, k));
        let metric = self.or_default(&m, "metric", StoppingMetric::default(), |c, n, k| {
            c.choice(
                n,
                k,
                &[
                    ("validation_accuracy", StoppingMetric::ValidationAccuracy),
                    ("validation_loss", StoppingMetric::ValidationLoss),
                ],
            )
        });
        let patience = self.or_default(&m, "patience", defaults::PATIENCE, |c, n, k| {
            c.whole_u32(n, k, 1, MAX_ROUNDS_LIMIT)
        });
        Some(EarlyStopping {
            enabled: enabled?,
            metric: metric?,
            patience: patience?,
        })
    }

    fn timeouts(&mut self, node: &Node, key: &str, at: Position) -> Option<Timeouts> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::TIMEOUTS,
            "a mapping such as `{schedule: 30s, calculation: 30m}`",
        )?;
        let schedule = self.or_default(&m, "schedule", defaults::SCHEDULE_TIMEOUT, |c, n, k| {
            c.timeout(n, k)
        });
        let calculation = self.or_default(
            &m,
            "calculation",
            defaults::CALCULATION_TIMEOUT,
            |c, n, k| c.timeout(n, k),
        );
        Some(Timeouts {
            schedule: schedule?,
            calculation: calculation?,
        })
    }

    fn training(&mut self, node: &Node, key: &str, at: Position) -> Option<Training> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::TRAINING,
            "a mapping of hyper-parameters, such as `{learning_rate: 0.01}`",
        )?;
        let learning_rate = self.or_none(&m, "learning_rate", |c, n, k| {
            c.number(n, k, |x| x > 0.0, "a number greater than 0")
        });
        let batch_size = self.or_none(&m, "batch_size", |c, n, k| c.whole_u32(n, k, 1, u32::MAX));
        let optimizer = self.or_none(&m, "optimizer", |c, n, k| {
            c.choice(n, k, &[("adam", Optimizer::Adam), ("sgd", Optimizer::Sgd)])
        });
        let momentum = self.or_none(&m, "momentum", |c, n, k| {
            c.number(
                n,
                k,
                |x| (0.0..1.0).contains(&x),
                "a number from 0 to below 1",
            )
        });
        let weight_decay = self.or_none(&m, "weight_decay", |c, n, k| {
            c.number(n, k, |x| x >= 0.0, "a number from 0")
        });
        let lr_step_size =
            self.or_none(&m, "lr_step_size", |c, n, k| c.whole_u32(n, k, 0, u32::MAX));
        let lr_gamma = self.or_none(&m, "lr_gamma", |c, n, k| {
            c.number(
                n,
                k,
                |x| x > 0.0 && x <= 1.0,
                "a number greater than 0 and at most 1",
            )
        });
        if let (Some(Some(Optimizer::Adam)), Some(Some(_))) = (optimizer, momentum) {
            self.error(
                Self::at(&m, "momentum"),
                &m.key("momentum"),
                "momentum applies to SGD only, and `optimizer` is `adam`",
                Some("no `momentum` with Adam, or `optimizer: sgd`".to_owned()),
            );
        }
        Some(Training {
            learning_rate: learning_rate?,
            batch_size: batch_size?,
            optimizer: optimizer?,
            momentum: momentum?,
            weight_decay: weight_decay?,
            lr_step_size: lr_step_size?,
            lr_gamma: lr_gamma?,
        })
    }

    fn transport(&mut self, node: &Node, key: &str, at: Position) -> Option<Transport> {
        const ACCEPTED: &str =
            "`embedded`, or `{nats: {url: nats://HOST:PORT, credentials: FILE}}`";
        match &node.value {
            Value::Str(text) if text == "embedded" => Some(Transport::Embedded),
            Value::Map(_) => {
                let m = self.mapping(node, key, at, &keys::TRANSPORT, ACCEPTED)?;
                let Some(nats) = m.get("nats") else {
                    self.missing(&m, "nats", ACCEPTED);
                    return None;
                };
                let nats_at = match &node.value {
                    Value::Map(pairs) => pairs
                        .iter()
                        .find(|(k, _)| k.value == Value::Str("nats".into()))
                        .map_or(nats.at, |(k, _)| k.at),
                    _ => nats.at,
                };
                let n = self.mapping(
                    nats,
                    &m.key("nats"),
                    nats_at,
                    &keys::NATS,
                    "a mapping with `url` and optionally `credentials`",
                )?;
                let url = match n.get("url") {
                    None => {
                        self.missing(&n, "url", "the server URL, such as nats://127.0.0.1:4222");
                        None
                    }
                    Some(u) => self.nats_url(u, &n.key("url")),
                };
                let credentials = self.or_none(&n, "credentials", |c, v, k| {
                    let path = c.path(
                        v,
                        k,
                        "a NATS credentials file, relative to the workflow file",
                    )?;
                    if !path.is_file() {
                        let what = if path.exists() {
                            "is not a file"
                        } else {
                            "does not exist"
                        };
                        c.error(
                            v.at,
                            k,
                            format!("{} {what}", path.display()),
                            Some("an existing NATS credentials file (.creds)".to_owned()),
                        );
                        return None;
                    }
                    Some(path)
                });
                Some(Transport::Nats(NatsTransport {
                    url: url?,
                    credentials: credentials?,
                }))
            }
            _ => {
                self.wrong(node, key, ACCEPTED);
                None
            }
        }
    }

    fn nats_url(&mut self, node: &Node, key: &str) -> Option<String> {
        const ACCEPTED: &str = "a URL such as nats://127.0.0.1:4222 (schemes nats, tls, ws, wss)";
        let Value::Str(url) = &node.value else {
            self.wrong(node, key, ACCEPTED);
            return None;
        };
        let url = url.trim();
        let host = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match host {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with(['/', ':'])
                    && !rest.contains(char::is_whitespace) =>
            {
                Some(url.to_owned())
            }
            _ => {
                self.error(
                    node.at,
                    key,
                    format!("`{url}` is not a NATS server URL"),
                    Some(ACCEPTED.to_owned()),
                );
                None
            }
        }
    }

    /// Reads a node id and remembers it for the uniqueness check.
    fn node_id(&mut self, node: &Node, key: &str) -> Option<String> {
        let id = self.identifier(node, key, 64, false)?;
        self.nodes.push((id.clone(), key.to_owned(), node.at));
        Some(id)
    }

    /// Node ids are unique across the initiator and the participants.
    fn unique_nodes(&mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        for (i, (id, key, at)) in nodes.iter().enumerate() {
            if let Some((_, first, _)) = nodes[..i].iter().find(|(other, _, _)| other == id) {
                self.error(
                    *at,
                    key,
                    format!("node id `{id}` is already used by `{first}`"),
                    Some("node ids unique across the initiator and the participants".to_owned()),
                );
            }
        }
    }

    /// Datasets given by name need agents; directories must exist for an embedded run.
    fn check_datasets(&mut self, datasets: &[DatasetUse], transport: &Transport) {
        for DatasetUse { key, at, dataset } in datasets {
            match (dataset, transport) {
                (Dataset::Named { name }, Transport::Embedded) => self.error(
                    *at,
                    key,
                    format!(
                        "dataset `{name}` is given by name, which needs an agent that registered it, but the transport is embedded"
                    ),
                    Some("a dataset directory, or `transport: {nats: ...}` for a distributed run".to_owned()),
                ),
                (Dataset::Path(path), Transport::Embedded) if !path.is_dir() => {
                    let what = if path.exists() { "is not a directory" } else { "does not exist" };
                    self.error(
                        *at,
                        key,
                        format!("{} {what}", path.display()),
                        Some("an existing dataset directory (with annotation.json or annotations.xml), relative to the workflow file".to_owned()),
                    );
                }
                // Over NATS, each agent's paths are its own; nothing to check here.
                _ => {}
            }
        }
    }

    /// The model is a package directory or a `.zip` file; neither is opened here.
    fn check_model(&mut self, model: &Path, at: Position) {
        const ACCEPTED: &str =
            "a model package directory, or a model.zip, relative to the workflow file";
        let problem = if model.is_dir() {
            None
        } else if model.is_file() {
            let zip = model
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
            (!zip).then_some("is a file but not a .zip")
        } else if model.exists() {
            Some("is neither a directory nor a file")
        } else {
            Some("does not exist")
        };
        if let Some(problem) = problem {
            self.error(
                at,
                "model",
                format!("{} {problem}", model.display()),
                Some(ACCEPTED.to_owned()),
            );
        }
    }
}

/// The position of the top-level key `key` (for problems about a whole section).
fn key_at(root: &Node, key: &str) -> Position {
    match &root.value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.value == Value::Str(key.into()))
            .map_or(root.at, |(k, _)| k.at),
        _ => root.at,
    }
}
