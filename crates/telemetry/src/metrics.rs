//! Per-round metrics of every node, kept as a task's `metrics.json`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::TelemetryError;

/// The metrics file's name in a task's output directory.
pub const METRICS_FILE: &str = "metrics.json";

/// What one node measured in one round.
///
/// Every measurement is optional: a node that only evaluates (an initiator holding the test
/// set) has no training metrics, and a participant without validation data has no
/// validation metrics. JSON has no NaN or infinity, so a non-finite value is written as
/// `null` and reads back as `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundMetrics {
    /// The round, 1-based (0 may describe the initial weights).
    pub round: u32,
    /// The node id (`initiator`, `site-1`, ...).
    pub node: String,
    /// Training samples used in the round: the node's weight in FedAvg (0 when it did not
    /// train).
    pub samples: u64,
    /// Mean training loss.
    #[serde(default)]
    pub train_loss: Option<f64>,
    /// Training accuracy, 0..=1.
    #[serde(default)]
    pub train_accuracy: Option<f64>,
    /// Validation loss.
    #[serde(default)]
    pub validation_loss: Option<f64>,
    /// Validation accuracy, 0..=1.
    #[serde(default)]
    pub validation_accuracy: Option<f64>,
    /// Test loss.
    #[serde(default)]
    pub test_loss: Option<f64>,
    /// Test accuracy, 0..=1.
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// Wall time the node spent on the round, in seconds.
    pub duration_seconds: f64,
}

impl RoundMetrics {
    /// A record with no measurement yet.
    pub fn new(round: u32, node: impl Into<String>) -> Self {
        Self {
            round,
            node: node.into(),
            samples: 0,
            train_loss: None,
            train_accuracy: None,
            validation_loss: None,
            validation_accuracy: None,
            test_loss: None,
            test_accuracy: None,
            duration_seconds: 0.0,
        }
    }
}

/// The metrics of a task, rewritten whole as pretty JSON (a list of [`RoundMetrics`]) each
/// time it changes.
///
/// Each rewrite goes to a temporary file in the same directory, which is synced and then
/// renamed over the file (and the directory synced), so a reader or a crash sees either the
/// old list or the new one, never a mix.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    records: Vec<RoundMetrics>,
}

impl MetricsFile {
    /// Starts an empty list at `path` (creating its directory; an existing file is replaced).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, TelemetryError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| TelemetryError::io(dir, source))?;
        }
        let file = Self {
            path,
            records: Vec::new(),
        };
        file.write()?;
        Ok(file)
    }

    /// Opens an existing file to continue it (when a task recovers).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TelemetryError> {
        let path = path.as_ref().to_path_buf();
        let records = Self::read(&path)?;
        Ok(Self { path, records })
    }

    /// Reads the records of a metrics file.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<RoundMetrics>, TelemetryError> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|source| TelemetryError::io(path, source))?;
        serde_json::from_slice(&bytes).map_err(|source| TelemetryError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records, in the order they were first inserted.
    pub fn records(&self) -> &[RoundMetrics] {
        &self.records
    }

    /// Adds `record`, or replaces the record of the same round and node in place (a round
    /// run again after a recovery), and rewrites the file.
    ///
    /// On error the record is kept in memory and the file still holds the previous list;
    /// the next successful rewrite includes it.
    pub fn insert(&mut self, record: RoundMetrics) -> Result<(), TelemetryError> {
        match self
            .records
            .iter_mut()
            .find(|old| old.round == record.round && old.node == record.node)
        {
            Some(old) => *old = record,
            None => self.records.push(record),
        }
        self.write()
    }

    fn write(&self) -> Result<(), TelemetryError> {
        let mut json =
            serde_json::to_vec_pretty(&self.records).map_err(|source| TelemetryError::Json {
                path: self.path.clone(),
                source,
            })?;
        json.push(b'\n');
        write_atomically(&self.path, &json)
    }
}

/// Replaces `path` with `bytes` through a synced temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TelemetryError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|source| TelemetryError::io(&temp, source))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|source| TelemetryError::io(&temp, source))?;
        drop(file);
        fs::rename(&temp, path).map_err(|source| TelemetryError::io(path, source))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the temporary file may not even exist.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), TelemetryError> {
    if cfg!(unix) {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| TelemetryError::io(dir, source))
    } else {
        Ok(())
    }
}
