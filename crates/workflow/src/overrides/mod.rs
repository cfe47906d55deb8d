//! Command-line overrides of a workflow file: `--set KEY=VALUE` (repeatable) and
//! `--output DIR`.
//!
//! An override is applied to the parsed YAML document before any check, so it is checked
//! exactly like the file's own text (unknown keys get the same suggestions, bad values the
//! same messages); a problem it causes names the override instead of a file position:
//!
//! ```text
//! --set training.learning_rate=-1: key `training.learning_rate`: is the number -1 (accepted: ...)
//! ```
//!
//! - `KEY` is a dotted key path (`max_rounds`, `training.optimizer`, `participants.0.data`;
//!   `participants[0].data` is accepted too). Missing mappings on the way are created, so
//!   `training.optimizer=sgd` works without a `training` section; an index into a list
//!   replaces that item, and the index one past the end adds an item.
//! - `VALUE` is YAML, as it would be written in the file: `3` is a number, `sgd` a string,
//!   `{kind: step, step_size: 5}` a mapping, an empty value is null. Paths in it are relative
//!   to the workflow file, like the file's own.
//! - `--output DIR` replaces `output` with `DIR` relative to the current directory (not the
//!   workflow file), after every `--set`.
//!
//! The applied overrides are recorded in [`Workflow::overrides`](crate::Workflow::overrides).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::yaml::{self, Node};

pub(crate) mod apply;

/// What `--set` accepts, for messages.
const ACCEPTED: &str = "KEY=VALUE with a dotted key path and a YAML value, such as \
                        `--set training.learning_rate=0.01` or `--set participants.0.data=DIR`";

/// One `--set KEY=VALUE`: a key path into the workflow and the YAML value to put there.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The key path as given (trimmed).
    key: String,
    /// The key path's parts: mapping keys, or list indices (`0`).
    path: Vec<String>,
    /// The value as given.
    text: String,
    /// The value, parsed as YAML.
    value: Node,
}

/// Why a `--set` argument is not an override.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// There is no `=` between the key and the value.
    #[error("--set {text}: has no `=` (accepted: {ACCEPTED})")]
    MissingEquals {
        /// The argument as given.
        text: String,
    },
    /// Nothing before the `=`.
    #[error("--set {text}: the key is empty (accepted: {ACCEPTED})")]
    EmptyKey {
        /// The argument as given.
        text: String,
    },
    /// A part of the key path is empty or malformed (`training..learning_rate`, `a[0`).
    #[error("--set {text}: key `{key}` has an empty or malformed part (accepted: {ACCEPTED})")]
    BadKeyPath {
        /// The argument as given.
        text: String,
        /// The key path as given.
        key: String,
    },
    /// The value is not YAML (`{a: 1`).
    #[error(
        "--set {text}: the value is not valid YAML: {message} (accepted: a YAML value, such as \
         `3`, `sgd`, `\"a b\"` or `{{kind: step, step_size: 5}}`)"
    )]
    InvalidValue {
        /// The argument as given.
        text: String,
        /// The YAML parser's message.
        message: String,
    },
}

impl Override {
    /// Parses `KEY=VALUE` (split at the first `=`; the value may contain more).
    pub fn parse(text: &str) -> Result<Self, OverrideError> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(OverrideError::MissingEquals {
                text: text.to_owned(),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(OverrideError::EmptyKey {
                text: text.to_owned(),
            });
        }
        let path = key_path(key).ok_or_else(|| OverrideError::BadKeyPath {
            text: text.to_owned(),
            key: key.to_owned(),
        })?;
        let value_node = yaml::parse(value).map_err(|error| OverrideError::InvalidValue {
            text: text.to_owned(),
            message: error.message,
        })?;
        Ok(Self {
            key: key.to_owned(),
            path,
            text: value.to_owned(),
            value: value_node,
        })
    }

    /// The key path as given (`training.learning_rate`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value as given (YAML text).
    pub fn value(&self) -> &str {
        &self.text
    }

    pub(crate) fn path(&self) -> &[String] {
        &self.path
    }

    pub(crate) fn node(&self) -> &Node {
        &self.value
    }
}

/// Splits `participants[0].data` or `participants.0.data` into its parts; `None` when a part
/// is empty or a bracket is not closed.
fn key_path(key: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    for dotted in key.split('.') {
        let (name, mut rest) = match dotted.find('[') {
            Some(i) => dotted.split_at(i),
            None => (dotted, ""),
        };
        if name.trim().is_empty() && (parts.is_empty() || rest.is_empty()) {
            return None;
        }
        if !name.trim().is_empty() {
            parts.push(name.trim().to_owned());
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let (index, after) = inner.split_once(']')?;
            if index.trim().is_empty() {
                return None;
            }
            parts.push(index.trim().to_owned());
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(parts)
}

impl FromStr for Override {
    type Err = OverrideError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Override {
    /// Formats as `KEY=VALUE`, as recorded in [`Workflow::overrides`](crate::Workflow::overrides).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.text)
    }
}

/// The overrides of one load: `--set`s in the order given (a later one wins), then
/// `--output`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    sets: Vec<Override>,
    output: Option<PathBuf>,
}

impl Overrides {
    /// Returns no overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `--set` arguments (`KEY=VALUE` each), stopping at the first that is not one.
    pub fn from_sets<I, S>(sets: I) -> Result<Self, OverrideError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let sets = sets
            .into_iter()
            .map(|text| Override::parse(text.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { sets, output: None })
    }

    /// Adds a `--set`, applied after the ones before it.
    pub fn with_set(mut self, set: Override) -> Self {
        self.sets.push(set);
        self
    }

    /// Sets `--output DIR`: `output` becomes `dir`, relative to the current directory at load
    /// time (not to the workflow file).
    pub fn with_output(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output = Some(dir.into());
        self
    }

    /// The `--set`s, in order.
    pub fn sets(&self) -> &[Override] {
        &self.sets
    }

    /// The `--output` directory, as given.
    pub fn output(&self) -> Option<&Path> {
        self.output.as_deref()
    }

    /// Whether there is nothing to override.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.output.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Value;

    #[test]
    fn parses_key_paths_and_yaml_values() {
        let o = Override::parse("training.learning_rate=0.01").expect("valid");
        assert_eq!(o.key(), "training.learning_rate");
        assert_eq!(o.path(), ["training", "learning_rate"]);
        assert_eq!(o.node().value, Value::Float(0.01));
        assert_eq!(o.to_string(), "training.learning_rate=0.01");

        let o: Override = " participants[1].data = a=b ".parse().expect("valid");
        assert_eq!(o.path(), ["participants", "1", "data"]);
        assert_eq!(o.node().value, Value::Str("a=b".into()));
        assert_eq!(o.value(), " a=b ");
        assert_eq!(
            Override::parse("max_rounds=3").expect("valid").node().value,
            Value::Int(3)
        );
        assert_eq!(
            Override::parse("training=").expect("valid").node().value,
            Value::Null
        );
        let o = Override::parse("training.lr_schedule={kind: step, step_size: 5}").expect("ok");
        assert!(matches!(o.node().value, Value::Map(ref m) if m.len() == 2));
        assert_eq!(
            Override::parse("a[0][1]=x").expect("valid").path(),
            ["a", "0", "1"]
        );
    }

    #[test]
    fn refuses_what_is_not_key_equals_value() {
        let error = Override::parse("max_rounds").expect_err("no =");
        assert_eq!(
            error,
            OverrideError::MissingEquals {
                text: "max_rounds".into()
            }
        );
        let message = error.to_string();
        assert!(
            message.starts_with("--set max_rounds: has no `=`"),
            "{message}"
        );
        assert!(message.contains("KEY=VALUE"), "{message}");
        assert!(matches!(
            Override::parse(" =3"),
            Err(OverrideError::EmptyKey { .. })
        ));
        for key in ["a..b", ".a", "a.", "a[", "a[]", "a[0]x", "[0]"] {
            assert!(
                matches!(
                    Override::parse(&format!("{key}=1")),
                    Err(OverrideError::BadKeyPath { .. })
                ),
                "{key}"
            );
        }
        let error = Override::parse("training={a: 1").expect_err("not YAML");
        assert!(
            error
                .to_string()
                .starts_with("--set training={a: 1: the value is not valid YAML: "),
            "{error}"
        );
        let overrides = Overrides::from_sets(["seed=1", "bad"]).expect_err("second is bad");
        assert!(matches!(overrides, OverrideError::MissingEquals { .. }));
        let overrides = Overrides::from_sets(["seed=1"]).expect("valid");
        assert!(!overrides.is_empty());
        assert!(Overrides::new().is_empty());
        assert!(!Overrides::new().with_output("out").is_empty());
    }
}
