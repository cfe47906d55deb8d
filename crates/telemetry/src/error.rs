//! The crate's error type.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong while writing or reading a task's telemetry.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A file or directory could not be created, written, synced or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A TensorBoard run name that is not a safe relative directory name.
    #[error(
        "invalid TensorBoard run name {name:?}: {reason}; expected one or more `/`-separated \
         components of letters, digits, `-`, `_` and `.` (such as `site-1`)"
    )]
    InvalidRunName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A node id that cannot appear in a task log line.
    #[error(
        "invalid node id {node:?} for the task log: {reason}; expected a non-empty id without \
         whitespace, control characters, `[` or `]` (such as `site-1`)"
    )]
    InvalidNode {
        /// The id given.
        node: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An earlier write to an event file failed, so the file may end with a partial record
    /// and nothing more is written to it.
    #[error(
        "{}: an earlier write to this event file failed; nothing more is written to it",
        path.display()
    )]
    WriterFailed {
        /// The event file.
        path: PathBuf,
    },
    /// An event file whose records do not check out.
    #[error("{}: corrupt event file at byte {offset}: {problem}", path.display())]
    CorruptEvents {
        /// The event file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// A task log line that does not have the task log's format.
    #[error(
        "invalid task log line {line:?}: {problem}; expected \
         `2026-11-26T17:11:50.123Z [site-1] INFO message`"
    )]
    InvalidLogLine {
        /// The line.
        line: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A metrics file that is not a JSON list of round metrics.
    #[error("{}: is not a JSON list of round metrics: {source}", path.display())]
    Json {
        /// The metrics file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

impl TelemetryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
