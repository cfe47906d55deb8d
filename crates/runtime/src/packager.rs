//! The Packager actor: writes a task's results on its own thread (zipping and fsyncing
//! model-sized files must not stall the coordinator).

use std::path::PathBuf;

use actix::prelude::*;
use fl_package::ModelPackage;

use crate::error::RuntimeError;
use crate::results::{FederationSummary, ResultFiles, write_results};

/// Writes results when asked.
#[derive(Debug, Default)]
pub struct PackagerActor;

impl Actor for PackagerActor {
    type Context = SyncContext<Self>;
}

/// Everything [`write_results`] needs.
#[derive(Debug, Message)]
#[rtype(result = "Result<ResultFiles, RuntimeError>")]
pub struct Package {
    /// The output directory.
    pub out: PathBuf,
    /// The package that was fine-tuned.
    pub package: ModelPackage,
    /// The best weights (safetensors).
    pub best_weights: PathBuf,
    /// The task's labels.
    pub labels: Vec<String>,
    /// The summary for the Model Card and `summary.json`.
    pub summary: FederationSummary,
    /// TensorBoard runs.
    pub tensorboard_dir: PathBuf,
    /// `metrics.json`.
    pub metrics: PathBuf,
    /// `task.log`.
    pub task_log: PathBuf,
    /// The model's extra files for `model.zip` (path inside it, contents).
    pub extra_files: Vec<(String, Vec<u8>)>,
}

impl Handler<Package> for PackagerActor {
    type Result = Result<ResultFiles, RuntimeError>;

    fn handle(&mut self, msg: Package, _: &mut Self::Context) -> Self::Result {
        write_results(
            &msg.out,
            &msg.package,
            &msg.best_weights,
            &msg.labels,
            &msg.summary,
            &msg.tensorboard_dir,
            &msg.metrics,
            &msg.task_log,
            &msg.extra_files,
        )
    }
}
