//! Problems of a workflow file: where, which key, what is wrong and what would be accepted.

use std::fmt;

use serde::Serialize;

/// A 1-based position in a workflow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    /// Line, starting at 1.
    pub line: u64,
    /// Column (in characters), starting at 1.
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem of a workflow file, or of an override of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowError {
    /// The workflow file, as the caller named it.
    pub file: String,
    /// The command-line override the problem comes from (`--set training.learning_rate=-1`,
    /// `--output DIR`), when it is not the file's text; such a problem has no position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Where in the file, when known (I/O errors and overrides have no position).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The key path the problem is about (`participants[1].data`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What would be accepted instead, when that can be said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

impl fmt::Display for WorkflowError {
    /// Formats as ``workflows/x.yaml:12:5: key `participants[1].node`: message (accepted: ...)``,
    /// or, for a problem of an override, as ``--set max_rounds=0: key `max_rounds`: ...``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{origin}")?,
            None => {
                write!(f, "{}", self.file)?;
                if let Some(position) = self.position {
                    write!(f, ":{position}")?;
                }
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(expected) = &self.expected {
            write!(f, " (accepted: {expected})")?;
        }
        Ok(())
    }
}

/// Every problem found in one workflow file and its overrides: those without a position
/// (I/O, overrides) first, then in the order of their positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WorkflowErrors(Vec<WorkflowError>);

impl WorkflowErrors {
    pub(crate) fn new(mut errors: Vec<WorkflowError>) -> Self {
        // Problems without a position (I/O) come first, then in document order; the sort is
        // stable, so problems at one position keep the order they were found in.
        errors.sort_by_key(|e| e.position);
        Self(errors)
    }

    /// The problems.
    pub fn as_slice(&self) -> &[WorkflowError] {
        &self.0
    }

    /// Number of problems (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `WorkflowErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, WorkflowError> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a WorkflowErrors {
    type Item = &'a WorkflowError;
    type IntoIter = std::slice::Iter<'a, WorkflowError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for WorkflowErrors {
    type Item = WorkflowError;
    type IntoIter = std::vec::IntoIter<WorkflowError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for WorkflowErrors {
    /// One problem per line; several are introduced by a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "the workflow has {} problems:", all.len())?;
                for error in all {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for WorkflowErrors {}
