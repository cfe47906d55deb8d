//! What a task records as it goes: one `metrics.json` record per round and node, and
//! TensorBoard scalars in one run directory per node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fl_telemetry::{EventWriter, MetricsFile, RoundMetrics, wall_time_now};
use fl_tensor::Metrics;

use crate::error::RuntimeError;

/// `metrics.json` and the TensorBoard writers of a task.
#[derive(Debug)]
pub(crate) struct Recorder {
    metrics_path: PathBuf,
    metrics: MetricsFile,
    tensorboard: BTreeMap<String, EventWriter>,
}

fn output(path: &Path, e: impl ToString) -> RuntimeError {
    RuntimeError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// `prefix/loss` and `prefix/accuracy`, for the values that are present.
fn scalars(prefix: &str, metrics: Option<&Metrics>) -> Vec<(String, f32)> {
    let Some(m) = metrics else { return Vec::new() };
    [("loss", m.loss), ("accuracy", m.accuracy)]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (format!("{prefix}/{name}"), v as f32)))
        .collect()
}

impl Recorder {
    /// Creates `metrics.json` (or, with `resume`, continues the existing one) and a
    /// TensorBoard run under `tensorboard_dir` for every node (a new event file in each).
    pub(crate) fn create(
        metrics_path: &Path,
        tensorboard_dir: &Path,
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
        resume: bool,
    ) -> Result<Self, RuntimeError> {
        let mut tensorboard = BTreeMap::new();
        for node in nodes {
            let node = node.as_ref();
            let writer = EventWriter::create(tensorboard_dir, Some(node))
                .map_err(|e| output(tensorboard_dir, e))?;
            tensorboard.insert(node.to_owned(), writer);
        }
        Ok(Self {
            metrics_path: metrics_path.to_path_buf(),
            metrics: if resume && metrics_path.exists() {
                MetricsFile::open(metrics_path)
            } else {
                MetricsFile::create(metrics_path)
            }
            .map_err(|e| output(metrics_path, e))?,
            tensorboard,
        })
    }

    /// Records a node's accepted training update.
    pub(crate) fn training(
        &mut self,
        round: u64,
        node: &str,
        metrics: &Metrics,
        samples: u64,
    ) -> Result<(), RuntimeError> {
        let mut record = RoundMetrics::new(round as u32, node);
        record.samples = samples;
        record.train_loss = metrics.loss;
        record.train_accuracy = metrics.accuracy;
        // How long the node trained, as it reports.
        record.duration_seconds = metrics
            .extra
            .get(crate::workers::TRAIN_SECONDS)
            .copied()
            .unwrap_or(0.0);
        self.write(record, scalars("train", Some(metrics)))
    }

    /// Records the initiator's validation and test results of a round.
    pub(crate) fn evaluation(
        &mut self,
        round: u64,
        node: &str,
        validation: Option<&Metrics>,
        test: Option<&Metrics>,
        seconds: f64,
    ) -> Result<(), RuntimeError> {
        let mut record = RoundMetrics::new(round as u32, node);
        record.validation_loss = validation.and_then(|m| m.loss);
        record.validation_accuracy = validation.and_then(|m| m.accuracy);
        record.test_loss = test.and_then(|m| m.loss);
        record.test_accuracy = test.and_then(|m| m.accuracy);
        record.duration_seconds = seconds;
        let mut values = scalars("validation", validation);
        values.extend(scalars("test", test));
        self.write(record, values)
    }

    fn write(
        &mut self,
        record: RoundMetrics,
        values: Vec<(String, f32)>,
    ) -> Result<(), RuntimeError> {
        let (round, node) = (i64::from(record.round), record.node.clone());
        self.metrics
            .insert(record)
            .map_err(|e| output(&self.metrics_path, e))?;
        let values: Vec<(&str, f32)> = values.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        if let Some(writer) = self.tensorboard.get_mut(&node) {
            // TensorBoard files are a view of metrics.json: a failure there is not the task's.
            let _ = writer.add_scalars(round, &values, wall_time_now());
            let _ = writer.flush();
        }
        Ok(())
    }

    /// Flushes and closes the TensorBoard files.
    pub(crate) fn close(self) {
        for (_, writer) in self.tensorboard {
            let _ = writer.close();
        }
    }
}
