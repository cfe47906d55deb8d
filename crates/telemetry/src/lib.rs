//! Observability of a federated task: what users read while and after a task runs.
//!
//! - [`EventWriter`] writes TensorBoard event files, one run directory per node
//!   (`tensorboard/initiator/`, `tensorboard/site-1/`), so TensorBoard plots each
//!   participant's curves side by side; [`read_events`] reads them back with every checksum
//!   checked.
//! - [`TaskLog`] is the task log (AlphaMed's `push_log`): timestamped lines per node,
//!   appended to `task.log` and delivered live to the console.
//! - [`MetricsFile`] keeps every node's [`RoundMetrics`] as the task's `metrics.json`,
//!   rewritten atomically at each update.
//!
//! Export through OpenTelemetry comes later. The crate depends on neither tch nor actix.
//!
//! ```no_run
//! use fl_telemetry::{EventWriter, MetricsFile, RoundMetrics, TaskLog, wall_time_now};
//!
//! # fn main() -> Result<(), fl_telemetry::TelemetryError> {
//! let out = std::path::Path::new("runs/task-1");
//! let log = TaskLog::open(out.join("task.log"))?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! log.add_sender(tx); // the console reads `rx`
//! let site = log.node("site-1")?;
//! site.info("round 1: training on 412 samples");
//!
//! let mut board = EventWriter::create(out.join("tensorboard"), Some("site-1"))?;
//! board.add_scalar("train/loss", 1, 0.693, wall_time_now())?;
//! board.flush()?;
//!
//! let mut metrics = MetricsFile::create(out.join("metrics.json"))?;
//! let mut round = RoundMetrics::new(1, "site-1");
//! round.samples = 412;
//! round.train_loss = Some(0.693);
//! metrics.insert(round)?;
//! board.close()?;
//! # drop(rx);
//! # Ok(())
//! # }
//! ```

mod crc32c;
mod error;
mod metrics;
mod proto;
mod task_log;
mod tensorboard;
mod time;

pub use crc32c::{crc32c, masked_crc32c};
pub use error::TelemetryError;
pub use metrics::{METRICS_FILE, MetricsFile, RoundMetrics};
pub use proto::{EventKind, RecordedEvent, SummaryValue};
pub use task_log::{Level, LogLine, NodeLog, TASK_LOG_FILE, TaskLog};
pub use tensorboard::{EventWriter, FILE_VERSION, read_events, unix_seconds, wall_time_now};
