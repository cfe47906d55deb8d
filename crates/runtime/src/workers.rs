//! The libtorch side of a node: the Trainer and the Validator, each a one-thread
//! `SyncArbiter` owning an instance of the package's model, and the messages they take.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use fl_model::AutoFedAvgModel;
use fl_model::engine::{TrainedRound, decide, finish, train_round};
use fl_tensor::{Body, Schedule, TensorSet};
use fl_transport::{COORDINATOR, Transport};

use crate::node::send;

/// libtorch's seed and thread count are process-wide: one node trains or evaluates at a
/// time in a process, so that every node's results are what they would be alone.
static TORCH: Mutex<()> = Mutex::new(());

/// Runs `work` holding the process-wide libtorch lock, with the run's thread count.
pub(crate) fn with_torch<T>(threads: usize, work: impl FnOnce() -> T) -> T {
    let _torch = TORCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::set_num_threads(threads.max(1) as i32);
    work()
}

/// Owns a node's training model.
pub struct TrainerActor {
    pub(crate) model: Box<dyn AutoFedAvgModel>,
    /// Training samples: the FedAvg weight.
    pub(crate) samples: u64,
    pub(crate) seed: u64,
    pub(crate) threads: usize,
    /// Where progress goes: (transport, task id, node).
    pub(crate) progress: (Arc<dyn Transport>, String, String),
}

impl Actor for TrainerActor {
    type Context = SyncContext<Self>;
}

/// Trains one round from the global weights.
#[derive(Debug, Message)]
#[rtype(result = "Result<(TrainedRound, f64), String>")]
pub struct TrainRound {
    /// The global weights.
    pub global: Arc<TensorSet>,
    /// 0-based round (the run-wide epoch counter starts at `round * merge_epochs`).
    pub round: u64,
    /// Local epochs.
    pub merge_epochs: usize,
    /// The round as the coordinator counts it (1-based), for progress messages.
    pub report_round: u64,
}

impl Handler<TrainRound> for TrainerActor {
    /// The update and the seconds spent training (not waiting for the lock).
    type Result = Result<(TrainedRound, f64), String>;

    fn handle(&mut self, msg: TrainRound, _: &mut Self::Context) -> Self::Result {
        with_torch(self.threads, || {
            let started = std::time::Instant::now();
            let (transport, task_id, node) = &self.progress;
            let epochs = msg.merge_epochs as u32;
            let mut report = |done: usize, metrics: &fl_torch::Metrics| {
                send(
                    &**transport,
                    task_id,
                    node,
                    COORDINATOR,
                    msg.report_round,
                    Body::Progress {
                        epoch: done as u32,
                        epochs,
                        loss: Some(metrics.loss),
                    },
                );
            };
            crate::faults::crash_point("before-training", msg.report_round);
            let update = train_round(
                &mut *self.model,
                &msg.global,
                msg.round,
                msg.merge_epochs,
                self.seed,
                self.samples,
                &mut report,
            )
            .map_err(|e| e.to_string())?;
            crate::faults::crash_point("after-training", msg.report_round);
            Ok((update, started.elapsed().as_secs_f64()))
        })
    }
}

/// The key under which an update's metrics carry its training time in seconds.
pub const TRAIN_SECONDS: &str = "train_seconds";

/// Owns a node's evaluation model.
pub struct ValidatorActor {
    pub(crate) model: Box<dyn AutoFedAvgModel>,
    pub(crate) threads: usize,
}

impl Actor for ValidatorActor {
    type Context = SyncContext<Self>;
}

/// Validates a round's global weights, asks the model's scheduler hooks and, when asked,
/// tests the weights; answers with the [`Body::Decided`] to send.
#[derive(Debug, Message)]
#[rtype(result = "Result<Body, String>")]
pub struct DecideRound {
    /// The round's global weights.
    pub global: Arc<TensorSet>,
    /// The task so far.
    pub schedule: Schedule,
    /// Test the weights too.
    pub test: bool,
}

impl Handler<DecideRound> for ValidatorActor {
    type Result = Result<Body, String>;

    fn handle(&mut self, msg: DecideRound, _: &mut Self::Context) -> Self::Result {
        with_torch(self.threads, || {
            let (validation, test, decision) =
                decide(&mut *self.model, &msg.global, msg.schedule, msg.test)
                    .map_err(|e| e.to_string())?;
            Ok(Body::Decided {
                validation,
                test,
                decision,
            })
        })
    }
}

/// Tests the best weights and collects the model's extra result files; answers with the
/// [`Body::Finished`] to send.
#[derive(Debug, Message)]
#[rtype(result = "Result<Body, String>")]
pub struct FinishTask {
    /// The best weights.
    pub best: Arc<TensorSet>,
}

impl Handler<FinishTask> for ValidatorActor {
    type Result = Result<Body, String>;

    fn handle(&mut self, msg: FinishTask, _: &mut Self::Context) -> Self::Result {
        with_torch(self.threads, || {
            let (test, files) = finish(&mut *self.model, &msg.best).map_err(|e| e.to_string())?;
            Ok(Body::Finished { test, files })
        })
    }
}

impl std::fmt::Debug for TrainerActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainerActor").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ValidatorActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorActor").finish_non_exhaustive()
    }
}
