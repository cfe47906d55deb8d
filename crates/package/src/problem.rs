//! Problems found while checking a package: what is wrong, where, and what would be accepted.

use std::fmt;

use serde::Serialize;

/// How serious a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The package cannot be used until this is fixed.
    Error,
    /// The package is usable; something is ignored or looks unintended.
    Warning,
}

/// A 1-based position in a text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Line, starting at 1.
    pub line: u64,
    /// Column, starting at 1; 0 when only the line is known.
    pub column: u64,
}

/// One finding about one file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Whether it blocks the package.
    pub severity: Severity,
    /// The file, relative to the package directory (`README.md`, `config.json`, ...).
    pub file: String,
    /// Where in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The key the problem is about, when there is one (`tasks`, `size.height`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What would be accepted instead, when that can be said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

impl Problem {
    /// Returns an error about `file`.
    pub fn error(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, message)
    }

    /// Returns a warning about `file`.
    pub fn warning(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, message)
    }

    fn new(severity: Severity, file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity,
            file: file.into(),
            position: None,
            key: None,
            message: message.into(),
            expected: None,
        }
    }

    /// Sets the key the problem is about.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the position in the file.
    pub fn at(mut self, position: Option<Position>) -> Self {
        self.position = position;
        self
    }

    /// Sets the line (column unknown).
    pub fn line(self, line: u64) -> Self {
        self.at(Some(Position { line, column: 0 }))
    }

    /// Says what would be accepted.
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Whether this problem blocks the package.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    /// Formats as `error: config.json:3:5: key `entry_class`: message (accepted: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}", self.file)?;
        match self.position {
            Some(Position { line, column: 0 }) => write!(f, ":{line}")?,
            Some(Position { line, column }) => write!(f, ":{line}:{column}")?,
            None => {}
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

/// Problems collected while checking one package, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Adds a problem.
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|p| p.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.0.len() - self.error_count()
    }

    /// All problems.
    pub fn as_slice(&self) -> &[Problem] {
        &self.0
    }

    /// Whether there is no problem at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Problems {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_position_key_and_what_is_accepted() {
        let p = Problem::error("config.json", "is missing")
            .key("entry_class")
            .at(Some(Position { line: 3, column: 5 }))
            .expected("a non-empty string");
        assert_eq!(
            p.to_string(),
            "error: config.json:3:5: key `entry_class`: is missing (accepted: a non-empty string)"
        );
        let w = Problem::warning("README.md", "unknown key is ignored").line(7);
        assert_eq!(
            w.to_string(),
            "warning: README.md:7: unknown key is ignored"
        );

        let mut all = Problems::default();
        all.push(w);
        assert!(!all.has_errors());
        all.push(p);
        assert!(all.has_errors());
        assert_eq!((all.error_count(), all.warning_count()), (1, 1));
    }
}
