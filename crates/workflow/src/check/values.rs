//! Single values: whole numbers in range, booleans, choices, names, paths,
//! timeouts and datasets. Each reports what is wrong and returns `None`.

use std::path::PathBuf;

use super::{Checker, DATASET, DATASET_NAME, DatasetUse, IDENTIFIER};
use crate::duration::{TIMEOUT_ACCEPTED, Timeout, TimeoutParseError};
use crate::keys;
use crate::paths;
use crate::workflow::Dataset;
use crate::yaml::{Node, Value};

impl Checker {
    /// Reads a whole number in `min..=max`.
    pub(super) fn whole(&mut self, node: &Node, key: &str, min: u64, max: u64) -> Option<u64> {
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

    pub(super) fn whole_u32(&mut self, node: &Node, key: &str, min: u32, max: u32) -> Option<u32> {
        self.whole(node, key, min.into(), max.into())
            .and_then(|n| u32::try_from(n).ok())
    }

    pub(super) fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong(node, key, "true or false");
                None
            }
        }
    }

    /// Reads one of `choices`.
    pub(super) fn choice<T: Copy>(
        &mut self,
        node: &Node,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
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
    pub(super) fn identifier(
        &mut self,
        node: &Node,
        key: &str,
        max_len: usize,
        dots: bool,
    ) -> Option<String> {
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
    pub(super) fn path(&mut self, node: &Node, key: &str, expected: &str) -> Option<PathBuf> {
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

    pub(super) fn timeout(&mut self, node: &Node, key: &str) -> Option<Timeout> {
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

    pub(super) fn dataset(
        &mut self,
        node: &Node,
        key: &str,
        uses: &mut Vec<DatasetUse>,
    ) -> Option<Dataset> {
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
}
