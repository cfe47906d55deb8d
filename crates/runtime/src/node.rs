//! A node's actors: the Dataset actor opens its data, the Trainer and the Validator each own
//! a model on their own thread (libtorch work never runs on the async runtime), and the node
//! actor is the node's endpoint on the transport, turning envelopes into work and results
//! back into envelopes.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use fl_data::{Dataset, OpenOptions};
use fl_package::ModelPackage;
use fl_telemetry::NodeLog;
use fl_tensor::{Body, Digest, Envelope, Metrics, Split, TensorSet};
use fl_torch::{LocalTrainer, NodeData, RoundUpdate, TrainerOptions};

use fl_transport::{COORDINATOR, Inbox, Transport};

/// libtorch's seed and thread count are process-wide: one node trains or evaluates at a
/// time in a process, so that every node's results are what they would be alone.
static TORCH: Mutex<()> = Mutex::new(());

/// Where a node's splits come from: a dataset directory per split (the same directory may
/// serve several splits).
#[derive(Debug, Clone, Default)]
pub struct DataSources {
    /// Directory whose `Train` split this node trains on.
    pub train: Option<std::path::PathBuf>,
    /// Directory whose `Validation` split this node validates on.
    pub validation: Option<std::path::PathBuf>,
    /// Directory whose `Test` split this node tests on.
    pub test: Option<std::path::PathBuf>,
}

/// Opens a node's datasets.
#[derive(Debug, Default)]
pub struct DatasetActor;

impl Actor for DatasetActor {
    type Context = SyncContext<Self>;
}

/// Opens the data of a node, re-indexed to the task's labels.
#[derive(Debug, Message)]
#[rtype(result = "Result<(NodeData, String), String>")]
pub struct OpenData {
    /// The sources.
    pub sources: DataSources,
    /// The task's labels.
    pub labels: Vec<String>,
}

impl Handler<OpenData> for DatasetActor {
    type Result = Result<(NodeData, String), String>;

    fn handle(&mut self, msg: OpenData, _: &mut Self::Context) -> Self::Result {
        let mut data = NodeData::default();
        let mut reports = Vec::new();
        let sources = [
            (Split::Train, &msg.sources.train),
            (Split::Validation, &msg.sources.validation),
            (Split::Test, &msg.sources.test),
        ];
        for (split, dir) in sources {
            let Some(dir) = dir else { continue };
            let dataset = Dataset::open(dir, &OpenOptions::default()).map_err(|e| e.to_string())?;
            if !dataset.report.is_clean() {
                reports.push(format!("{}: {}", dir.display(), dataset.report));
            }
            let node_data =
                NodeData::from_dataset(&dataset, &msg.labels).map_err(|e| e.to_string())?;
            match split {
                Split::Train => data.train = node_data.train,
                Split::Validation => data.validation = node_data.validation,
                Split::Test => data.test = node_data.test,
            }
        }
        Ok((data, reports.join("\n")))
    }
}

/// Owns a node's training model.
pub struct TrainerActor {
    trainer: LocalTrainer,
    /// Where progress goes: (transport, task id, node).
    progress: (Arc<dyn Transport>, String, String),
}

impl Actor for TrainerActor {
    type Context = SyncContext<Self>;
}

/// Trains one round from the global weights.
#[derive(Debug, Message)]
#[rtype(result = "Result<(RoundUpdate, f64), String>")]
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
    type Result = Result<(RoundUpdate, f64), String>;

    fn handle(&mut self, msg: TrainRound, _: &mut Self::Context) -> Self::Result {
        let _torch = TORCH
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let started = std::time::Instant::now();
        let (transport, task_id, node) = &self.progress;
        let epochs = msg.merge_epochs as u32;
        let mut done = 0;
        let mut report = |record: &fl_torch::EpochRecord| {
            done += 1;
            send(
                &**transport,
                task_id,
                node,
                COORDINATOR,
                msg.report_round,
                Body::Progress {
                    epoch: done,
                    epochs,
                    loss: Some(record.metrics.loss),
                },
            );
        };
        crate::faults::crash_point("before-training", msg.report_round);
        let update = self
            .trainer
            .train_round_observed(&msg.global, msg.round, msg.merge_epochs, &mut report)
            .map_err(|e| e.to_string())?;
        crate::faults::crash_point("after-training", msg.report_round);
        Ok((update, started.elapsed().as_secs_f64()))
    }
}

/// The key under which an update's metrics carry its training time in seconds.
pub const TRAIN_SECONDS: &str = "train_seconds";

/// Owns a node's evaluation model.
pub struct ValidatorActor {
    evaluator: LocalTrainer,
}

impl Actor for ValidatorActor {
    type Context = SyncContext<Self>;
}

/// Evaluates the global weights on one split.
#[derive(Debug, Message)]
#[rtype(result = "Result<(Metrics, u64), String>")]
pub struct EvaluateSplit {
    /// The weights.
    pub global: Arc<TensorSet>,
    /// The split.
    pub split: Split,
}

impl Handler<EvaluateSplit> for ValidatorActor {
    type Result = Result<(Metrics, u64), String>;

    fn handle(&mut self, msg: EvaluateSplit, _: &mut Self::Context) -> Self::Result {
        let _torch = TORCH
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let metrics = self
            .evaluator
            .evaluate(&msg.global, msg.split)
            .map_err(|e| e.to_string())?;
        Ok((metrics.into(), metrics.samples as u64))
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

impl std::fmt::Debug for NodeActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeActor")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Starts a node: opens its data (Dataset actor), builds its Trainer and Validator on their
/// own threads, and its endpoint on the transport (`inbox` is the node's, already open),
/// which checks in with the coordinator.
#[allow(clippy::too_many_arguments)]
pub async fn start_node(
    node: &str,
    task_id: &str,
    package: &ModelPackage,
    sources: DataSources,
    labels: &[String],
    options: &TrainerOptions,
    transport: Arc<dyn Transport>,
    inbox: Inbox,
    log: NodeLog,
) -> Result<Addr<NodeActor>, String> {
    let datasets = SyncArbiter::start(1, || DatasetActor);
    let (data, report) = datasets
        .send(OpenData {
            sources,
            labels: labels.to_vec(),
        })
        .await
        .map_err(|e| e.to_string())??;
    if !report.is_empty() {
        log.warn(format!("samples left out of the data:\n{report}"));
    }
    let counts = (
        data.train.len() as u64,
        data.validation.len() as u64,
        data.test.len() as u64,
    );
    let trainer = if data.train.is_empty() {
        None
    } else {
        let local =
            LocalTrainer::new(package, data.clone(), labels, options).map_err(|e| e.to_string())?;
        Some(start_sync(TrainerActor {
            trainer: local,
            progress: (transport.clone(), task_id.to_owned(), node.to_owned()),
        }))
    };
    let validator = if data.validation.is_empty() && data.test.is_empty() {
        None
    } else {
        let evaluation = NodeData {
            train: Vec::new(),
            ..data
        };
        let local =
            LocalTrainer::new(package, evaluation, labels, options).map_err(|e| e.to_string())?;
        Some(start_sync(ValidatorActor { evaluator: local }))
    };
    Ok(NodeActor {
        node: node.to_owned(),
        task_id: task_id.to_owned(),
        transport,
        inbox: Some(inbox),
        trainer,
        validator,
        weights: None,
        counts,
        log,
    }
    .start())
}

/// Starts a sync actor that owns `actor` on its own thread.
fn start_sync<A>(actor: A) -> Addr<A>
where
    A: Actor<Context = SyncContext<A>> + Send,
{
    let slot = Mutex::new(Some(actor));
    SyncArbiter::start(1, move || {
        slot.lock()
            .ok()
            .and_then(|mut s| s.take())
            .unwrap_or_else(|| unreachable!("a one-thread arbiter builds its actor once"))
    })
}

/// A node's endpoint: receives envelopes from the coordinator, hands work to the Trainer
/// and Validator, and sends the results back.
pub struct NodeActor {
    node: String,
    task_id: String,
    transport: Arc<dyn Transport>,
    inbox: Option<Inbox>,
    trainer: Option<Addr<TrainerActor>>,
    validator: Option<Addr<ValidatorActor>>,
    weights: Option<(Digest, Arc<TensorSet>)>,
    counts: (u64, u64, u64),
    log: NodeLog,
}

/// Bytes that arrived at the node's endpoint.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Inbound(Vec<u8>);

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(mut inbox) = self.inbox.take() {
            let address = ctx.address();
            actix::spawn(async move {
                while let Some(bytes) = inbox.recv().await {
                    if address.try_send(Inbound(bytes)).is_err() {
                        break;
                    }
                }
            });
        }
        let (train, validation, test) = self.counts;
        self.reply(
            0,
            Body::Hello {
                train,
                validation,
                test,
            },
        );
    }
}

impl NodeActor {
    fn reply(&self, round: u64, body: Body) {
        send(
            &*self.transport,
            &self.task_id,
            &self.node,
            COORDINATOR,
            round,
            body,
        );
    }

    fn weights_for(&self, digest: &Digest) -> Option<Arc<TensorSet>> {
        self.weights
            .as_ref()
            .filter(|(d, _)| d == digest)
            .map(|(_, w)| w.clone())
    }
}

/// Encodes and sends an envelope with the task's trace context, logging a failure (the
/// coordinator's timeouts handle the consequences).
pub(crate) fn send(
    transport: &dyn Transport,
    task_id: &str,
    sender: &str,
    to: &str,
    round: u64,
    body: Body,
) {
    let envelope = Envelope::new(task_id, round, sender, body);
    match envelope.encode() {
        Ok(bytes) => {
            let traceparent = crate::trace::traceparent(task_id);
            if let Err(error) = transport.send_traced(to, bytes, Some(traceparent)) {
                tracing::warn!("{sender} -> {to}: {error}");
            }
        }
        Err(error) => tracing::error!("{sender}: cannot encode a message: {error}"),
    }
}

impl Handler<Inbound> for NodeActor {
    type Result = ();

    fn handle(&mut self, Inbound(bytes): Inbound, ctx: &mut Self::Context) {
        let envelope = match Envelope::decode(&bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.log
                    .warn(format!("ignored an undecodable message: {error}"));
                return;
            }
        };
        if envelope.task_id != self.task_id {
            self.log
                .warn(format!("ignored a message of task `{}`", envelope.task_id));
            return;
        }
        let round = envelope.round;
        let transport = self.transport.clone();
        let (task_id, node, log) = (self.task_id.clone(), self.node.clone(), self.log.clone());
        let fail = move |reason: String| {
            log.error(format!("round {round}: {reason}"));
            send(
                &*transport,
                &task_id,
                &node,
                COORDINATOR,
                round,
                Body::Failed { reason },
            );
        };
        match envelope.body {
            Body::GlobalWeights { digest, tensors } => {
                self.weights = Some((digest, Arc::new(tensors)));
            }
            Body::Train {
                digest,
                merge_epochs,
            } => {
                let (Some(trainer), Some(global)) =
                    (self.trainer.clone(), self.weights_for(&digest))
                else {
                    fail("asked to train without training data or without those weights".into());
                    return;
                };
                let (transport, task_id, node, log) = (
                    self.transport.clone(),
                    self.task_id.clone(),
                    self.node.clone(),
                    self.log.clone(),
                );
                let work = trainer.send(TrainRound {
                    global,
                    round: round.saturating_sub(1),
                    merge_epochs: merge_epochs as usize,
                    report_round: round,
                });
                ctx.spawn(
                    async move {
                        match work.await {
                            Ok(Ok((update, seconds))) => {
                                log.info(format!(
                                    "round {round}: trained {} epoch(s) on {} samples, loss {:.4}",
                                    update.epochs.len(),
                                    update.samples,
                                    update.metrics.loss
                                ));
                                let mut body = update.into_body();
                                if let Body::Update { metrics, .. } = &mut body {
                                    metrics.extra.insert(TRAIN_SECONDS.into(), seconds);
                                }
                                send(&*transport, &task_id, &node, COORDINATOR, round, body);
                            }
                            Ok(Err(reason)) => fail(reason),
                            Err(error) => fail(format!("the trainer stopped: {error}")),
                        }
                    }
                    .into_actor(self),
                );
            }
            Body::Evaluate { digest, split } => {
                let (Some(validator), Some(global)) =
                    (self.validator.clone(), self.weights_for(&digest))
                else {
                    fail("asked to evaluate without that data or without those weights".into());
                    return;
                };
                let (transport, task_id, node) = (
                    self.transport.clone(),
                    self.task_id.clone(),
                    self.node.clone(),
                );
                let work = validator.send(EvaluateSplit { global, split });
                ctx.spawn(
                    async move {
                        match work.await {
                            Ok(Ok((metrics, samples))) => send(
                                &*transport,
                                &task_id,
                                &node,
                                COORDINATOR,
                                round,
                                Body::Metrics {
                                    split,
                                    samples,
                                    metrics,
                                },
                            ),
                            Ok(Err(reason)) => fail(reason),
                            Err(error) => fail(format!("the validator stopped: {error}")),
                        }
                    }
                    .into_actor(self),
                );
            }
            Body::Stop { .. } => ctx.stop(),
            // A restarted coordinator sets the task up again: this node already is, and says
            // so by checking in again.
            Body::Setup { .. } => {
                let (train, validation, test) = self.counts;
                self.reply(
                    0,
                    Body::Hello {
                        train,
                        validation,
                        test,
                    },
                );
            }
            other => self
                .log
                .warn(format!("ignored an unexpected `{}` message", other.kind())),
        }
    }
}
