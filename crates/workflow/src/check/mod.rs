//! The checker behind [`Workflow::load`](crate::Workflow::load): every key of a workflow file
//! checked against the version 1 format, every problem collected with its position and key
//! path.
//!
//! - this module: the [`Checker`] core (reporting, known-key mappings, defaults);
//! - [`values`]: single values (numbers, choices, names, paths, timeouts, datasets);
//! - [`document`]: the whole document, key by key, then the checks that compare its keys;
//! - [`nodes`]: the initiator and the participants;
//! - [`sections`]: `aggregation`, `early_stopping`, `timeouts` and `training`;
//! - [`transport`]: `transport` and its NATS server;
//! - [`cross`]: unique node ids, datasets against the transport, the model on disk.

use std::path::PathBuf;

use crate::error::{Position, WorkflowError};
use crate::keys::{self, Section};
use crate::overrides::apply::origin_index;
use crate::workflow::Dataset;
use crate::yaml::{Node, Value};

mod cross;
mod document;
mod nodes;
mod sections;
mod transport;
mod values;

/// Keys with a default whose null value (e.g. every entry commented out) means the default.
const NULL_IS_DEFAULT: &[&str] = &["aggregation", "early_stopping", "timeouts", "training"];

/// What node ids and the task name accept.
const IDENTIFIER: &str =
    "letters, digits, `-` and `_`, at most 64, starting with a letter or digit";
/// What registered dataset names accept.
const DATASET_NAME: &str =
    "letters, digits, `.`, `-` and `_`, at most 128, starting with a letter or digit";
/// What a dataset key accepts.
const DATASET: &str = "a dataset directory (relative to the workflow file), or `{name: NAME}` \
                       for a dataset an agent registered";

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
pub(crate) struct Checker {
    pub file: String,
    pub base: PathBuf,
    pub errors: Vec<WorkflowError>,
    /// Valid node ids with their key path and position, initiator first.
    pub nodes: Vec<(String, String, Position)>,
    /// Whether the initiator has `train` data, once its mapping was read.
    pub initiator_trains: Option<bool>,
    /// Number of participants, once the list was read (0 when absent).
    pub participant_count: Option<usize>,
    /// Whether paths are checked against this machine's file system (not for a workflow
    /// submitted from another machine: its paths are the submitter's and the agents').
    pub local_files: bool,
    /// How the overrides are named in problems, by the number in their origin positions
    /// (`crate::overrides::apply`).
    pub origins: Vec<String>,
}

impl Checker {
    pub(crate) fn error(
        &mut self,
        at: Position,
        key: &str,
        message: impl Into<String>,
        expected: Option<String>,
    ) {
        // A node an override wrote is reported as the override's, without a file position.
        let (origin, position) = match origin_index(at) {
            Some(i) => (self.origins.get(i).cloned(), None),
            None => (None, Some(at)),
        };
        self.errors.push(WorkflowError {
            file: self.file.clone(),
            origin,
            position,
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
