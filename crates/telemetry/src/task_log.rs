//! The task log: AlphaMed's `push_log`.
//!
//! Every node of a task pushes short human-readable lines ("round 3: 412 samples trained",
//! "waiting for site-2"). Each becomes one line of the task's `task.log`,
//!
//! ```text
//! 2026-11-26T17:11:50.123Z [site-1] INFO round 3: 412 samples trained
//! ```
//!
//! and is delivered at the same moment to live sinks (a channel or a callback) so that a
//! console can show it. A [`TaskLog`] is a cheap `Clone` handle shared by every thread and
//! node of a process; [`NodeLog`] binds it to one node id.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::TelemetryError;
use crate::time::{format_rfc3339_millis, parse_rfc3339_millis, unix_millis};

/// The task log's file name in a task's output directory.
pub const TASK_LOG_FILE: &str = "task.log";

/// How important a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Detail for whoever debugs a task.
    Debug,
    /// Progress.
    Info,
    /// Something the user should look at; the task goes on.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// `DEBUG`, `INFO`, `WARN` or `ERROR`, as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        [Self::Debug, Self::Info, Self::Warn, Self::Error]
            .into_iter()
            .find(|level| level.as_str() == text)
            .ok_or(())
    }
}

/// One pushed line.
///
/// `Display` gives the log's form, `2026-11-26T17:11:50.123Z [site-1] INFO message`, and
/// `FromStr` reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was pushed: milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The node that pushed it (`initiator`, `site-1`, ...).
    pub node: String,
    /// How important it is.
    pub level: Level,
    /// The text. It may hold newlines: the file then has one line per line of text, each
    /// with the same timestamp, node and level.
    pub message: String,
}

impl LogLine {
    /// The time as RFC 3339 UTC with milliseconds: `2026-11-26T17:11:50.123Z`.
    pub fn timestamp(&self) -> String {
        format_rfc3339_millis(self.unix_ms)
    }

    /// The text appended to the file: one `\n`-ended line per line of the message.
    fn file_text(&self) -> String {
        let header = format!("{} [{}] {}", self.timestamp(), self.node, self.level);
        let mut text = String::with_capacity(self.message.len() + header.len() + 2);
        for line in self.message.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            text.push_str(&header);
            text.push(' ');
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {} {}",
            self.timestamp(),
            self.node,
            self.level,
            self.message
        )
    }
}

impl FromStr for LogLine {
    type Err = TelemetryError;

    fn from_str(line: &str) -> Result<Self, TelemetryError> {
        let invalid = |problem| TelemetryError::InvalidLogLine {
            line: line.to_owned(),
            problem,
        };
        let (timestamp, rest) = line
            .split_once(" [")
            .ok_or_else(|| invalid("no ` [` after the timestamp"))?;
        let unix_ms =
            parse_rfc3339_millis(timestamp).ok_or_else(|| invalid("invalid timestamp"))?;
        let (node, rest) = rest
            .split_once("] ")
            .ok_or_else(|| invalid("no `] ` after the node id"))?;
        check_node(node).map_err(|_| invalid("invalid node id"))?;
        let (level, message) = rest.split_once(' ').unwrap_or((rest, ""));
        let level = level.parse().map_err(|()| invalid("unknown level"))?;
        Ok(Self {
            unix_ms,
            node: node.to_owned(),
            level,
            message: message.to_owned(),
        })
    }
}

fn check_node(node: &str) -> Result<(), TelemetryError> {
    let reason = if node.is_empty() {
        "it is empty"
    } else if node
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '[' || c == ']')
    {
        "it has whitespace, a control character, `[` or `]`"
    } else {
        return Ok(());
    };
    Err(TelemetryError::InvalidNode {
        node: node.to_owned(),
        reason,
    })
}

/// Something that receives every line as it is pushed.
enum Sink {
    Channel(Sender<LogLine>),
    Callback(Box<dyn Fn(&LogLine) + Send + Sync>),
}

struct State {
    file: Option<File>,
    sinks: Vec<Sink>,
}

struct Inner {
    path: Option<PathBuf>,
    state: Mutex<State>,
    /// Whether a failure of the reporting methods has been logged through `tracing`.
    reported: AtomicBool,
}

/// The task log of one task: a file and live sinks. Cloning shares it.
///
/// Pushing never panics: [`push`](Self::push) returns I/O errors, and the [`NodeLog`]
/// shorthands report the first failure through `tracing` (later ones are not repeated).
/// A line goes to the sinks even when the file write fails.
#[derive(Clone)]
pub struct TaskLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for TaskLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLog")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl TaskLog {
    /// Opens `path` for appending (creating it and its directory as needed).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TelemetryError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| TelemetryError::io(dir, source))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TelemetryError::io(path, source))?;
        Ok(Self::new(Some(path.to_path_buf()), Some(file)))
    }

    /// A task log with no file: lines only go to the sinks.
    pub fn without_file() -> Self {
        Self::new(None, None)
    }

    fn new(path: Option<PathBuf>, file: Option<File>) -> Self {
        Self {
            inner: Arc::new(Inner {
                path,
                state: Mutex::new(State {
                    file,
                    sinks: Vec::new(),
                }),
                reported: AtomicBool::new(false),
            }),
        }
    }

    /// The file written, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Sends every line pushed from now on to `sender`. The sink is dropped once its receiver
    /// is gone.
    pub fn add_sender(&self, sender: Sender<LogLine>) {
        self.state().sinks.push(Sink::Channel(sender));
    }

    /// Calls `callback` with every line pushed from now on, in push order. It runs while the
    /// log is locked, so it must be quick and must not push to this log.
    pub fn add_callback(&self, callback: impl Fn(&LogLine) + Send + Sync + 'static) {
        self.state().sinks.push(Sink::Callback(Box::new(callback)));
    }

    /// A handle that pushes as `node`.
    pub fn node(&self, node: impl Into<String>) -> Result<NodeLog, TelemetryError> {
        let node = node.into();
        check_node(&node)?;
        Ok(NodeLog {
            log: self.clone(),
            node: node.into(),
        })
    }

    /// Pushes `message` from `node` at `level`, stamped with the current time.
    ///
    /// Lines reach the file and the sinks in the same order; the time is taken in that
    /// order too. An error means the file write failed (the sinks still got the line).
    pub fn push(
        &self,
        node: &str,
        level: Level,
        message: impl Into<String>,
    ) -> Result<(), TelemetryError> {
        check_node(node)?;
        let message = message.into();
        let state = self.state();
        let line = LogLine {
            unix_ms: unix_millis(SystemTime::now()),
            node: node.to_owned(),
            level,
            message,
        };
        self.write(state, line)
    }

    /// Appends a line pushed elsewhere (a node on another machine), keeping its time and
    /// node. Lines reach the file and the sinks in the order they are appended.
    pub fn append(&self, line: LogLine) -> Result<(), TelemetryError> {
        check_node(&line.node)?;
        let state = self.state();
        self.write(state, line)
    }

    fn write(
        &self,
        mut state: std::sync::MutexGuard<'_, State>,
        line: LogLine,
    ) -> Result<(), TelemetryError> {
        let written = match (&state.file, &self.inner.path) {
            // One write call per push: with O_APPEND, other processes appending to the same
            // file do not split it either.
            (Some(file), Some(path)) => {
                let mut file: &File = file;
                file.write_all(line.file_text().as_bytes())
                    .map_err(|source| TelemetryError::io(path, source))
            }
            _ => Ok(()),
        };
        state.sinks.retain(|sink| match sink {
            Sink::Channel(sender) => sender.send(line.clone()).is_ok(),
            Sink::Callback(callback) => {
                callback(&line);
                true
            }
        });
        written
    }

    /// Syncs the file to disk.
    pub fn sync(&self) -> Result<(), TelemetryError> {
        let state = self.state();
        match (&state.file, &self.inner.path) {
            (Some(file), Some(path)) => file
                .sync_all()
                .map_err(|source| TelemetryError::io(path, source)),
            _ => Ok(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A callback that panicked leaves the state as it was: keep logging.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, result: Result<(), TelemetryError>) {
        if let Err(error) = result
            && !self.inner.reported.swap(true, Ordering::Relaxed)
        {
            tracing::error!(%error, "task log write failed; further failures are not reported");
        }
    }
}

/// A [`TaskLog`] handle that pushes as one node.
#[derive(Debug, Clone)]
pub struct NodeLog {
    log: TaskLog,
    node: Arc<str>,
}

impl NodeLog {
    /// The node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The shared task log.
    pub fn task_log(&self) -> &TaskLog {
        &self.log
    }

    /// AlphaMed's `push_log`: pushes `message` at `level`, returning file errors.
    pub fn push_log(&self, level: Level, message: impl Into<String>) -> Result<(), TelemetryError> {
        self.log.push(&self.node, level, message)
    }

    /// Pushes at [`Level::Debug`]; a failure is reported through `tracing` (the first only).
    pub fn debug(&self, message: impl Into<String>) {
        self.log.report(self.push_log(Level::Debug, message));
    }

    /// Pushes at [`Level::Info`]; a failure is reported through `tracing` (the first only).
    pub fn info(&self, message: impl Into<String>) {
        self.log.report(self.push_log(Level::Info, message));
    }

    /// Pushes at [`Level::Warn`]; a failure is reported through `tracing` (the first only).
    pub fn warn(&self, message: impl Into<String>) {
        self.log.report(self.push_log(Level::Warn, message));
    }

    /// Pushes at [`Level::Error`]; a failure is reported through `tracing` (the first only).
    pub fn error(&self, message: impl Into<String>) {
        self.log.report(self.push_log(Level::Error, message));
    }
}
