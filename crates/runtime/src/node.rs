//! A node: its model instances, built through the registry and given their data
//! ([`start_node`]), and the node actor, the node's endpoint on the transport, turning
//! envelopes into work for the Trainer and the Validator ([`crate::workers`]) and results
//! back into envelopes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use fl_model::{AutoFedAvgModel, DataSummary, ModelContext, ModelInit, TaskLogger, build_model};
use fl_package::ModelPackage;
use fl_telemetry::NodeLog;
use fl_tensor::{Body, Digest, Envelope, TensorSet};
use fl_torch::TrainerOptions;
use fl_transport::{COORDINATOR, Inbox, Transport};

use crate::workers::{
    DecideRound, FinishTask, TRAIN_SECONDS, TrainRound, TrainerActor, ValidatorActor, with_torch,
};

/// Where a node's splits come from: a dataset directory per split (the same directory may
/// serve several splits).
pub type DataSources = fl_model::DatasetDirs;

impl std::fmt::Debug for NodeActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeActor")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Where a node runs and what it runs on.
#[derive(Debug, Clone)]
pub struct NodeSpec<'a> {
    /// The node's id.
    pub node: &'a str,
    /// The task's id.
    pub task_id: &'a str,
    /// The model package.
    pub package: &'a ModelPackage,
    /// The node's data.
    pub sources: DataSources,
    /// The task's labels.
    pub labels: &'a [String],
    /// Seed, threads, workers, hyper-parameter overrides.
    pub options: &'a TrainerOptions,
    /// Whether the node is the task's initiator.
    pub is_initiator: bool,
    /// The node's own directory for the model's result files.
    pub result_dir: PathBuf,
}

/// A model's logger writing to a node's lines of the task log.
pub(crate) fn task_logger(log: NodeLog) -> TaskLogger {
    TaskLogger::new(move |warning, line| {
        if warning {
            log.warn(line);
        } else {
            log.info(line);
        }
    })
}

/// Builds one instance of the package's model for this node and has it verify and load
/// `dataset` ([`fl_model::AutoModel::init_dataset`]); a refusal is logged with its reason.
fn model_for(
    spec: &NodeSpec<'_>,
    dataset: &DataSources,
    log: &NodeLog,
) -> Result<(Box<dyn AutoFedAvgModel>, DataSummary), String> {
    let init = ModelInit {
        package: spec.package.clone(),
        options: spec.options.clone(),
        context: ModelContext {
            node: spec.node.to_owned(),
            task: spec.task_id.to_owned(),
            labels: spec.labels.to_vec(),
            is_initiator: spec.is_initiator,
            result_dir: spec.result_dir.clone(),
            logger: task_logger(log.clone()),
            ..ModelContext::default()
        },
    };
    build_and_verify(init, dataset, spec.options.threads).inspect_err(|message| {
        log.error(message.clone());
    })
}

/// Builds a model instance (under the libtorch lock) and has it verify and load `dataset`;
/// the error says which of the two failed, as the task log and `engine validate` show it.
pub(crate) fn build_and_verify(
    init: ModelInit,
    dataset: &DataSources,
    threads: usize,
) -> Result<(Box<dyn AutoFedAvgModel>, DataSummary), String> {
    let mut model = with_torch(threads, || build_model(init))
        .map_err(|e| format!("the model could not be built: {e}"))?;
    let summary = model
        .init_dataset(dataset)
        .map_err(|reason| format!("the dataset was refused: {reason}"))?;
    Ok((model, summary))
}

/// Starts a node: builds the package's model for its Trainer (when it has training data)
/// and its Validator (when it has validation or test data), each verifying and loading its
/// part of the data, and the node's endpoint on the transport (`inbox` is the node's, already
/// open), which checks in with the coordinator.
pub async fn start_node(
    spec: NodeSpec<'_>,
    transport: Arc<dyn Transport>,
    inbox: Inbox,
    log: NodeLog,
) -> Result<Addr<NodeActor>, String> {
    let (node, task_id, options) = (spec.node, spec.task_id, spec.options);
    let mut counts = (0, 0, 0);
    let trainer = match &spec.sources.train {
        None => None,
        Some(dir) => {
            let dataset = DataSources {
                train: Some(dir.clone()),
                ..DataSources::default()
            };
            let (model, summary) = model_for(&spec, &dataset, &log)?;
            counts.0 = summary.train;
            (summary.train > 0).then(|| {
                start_sync(TrainerActor {
                    model,
                    samples: summary.train,
                    seed: options.seed,
                    threads: options.threads,
                    progress: (transport.clone(), task_id.to_owned(), node.to_owned()),
                })
            })
        }
    };
    let validator = if spec.sources.validation.is_none() && spec.sources.test.is_none() {
        None
    } else {
        let dataset = DataSources {
            train: None,
            ..spec.sources.clone()
        };
        let (model, summary) = model_for(&spec, &dataset, &log)?;
        counts.1 = summary.validation;
        counts.2 = summary.test;
        Some(start_sync(ValidatorActor {
            model,
            threads: options.threads,
        }))
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

    /// Hands the weights with `digest` to the Validator as `message(weights)` and sends the
    /// body it answers with to the coordinator for `round`; `fail` reports what went wrong.
    fn on_validator<M>(
        &self,
        ctx: &mut Context<Self>,
        round: u64,
        digest: &Digest,
        fail: impl FnOnce(String) + 'static,
        message: impl FnOnce(Arc<TensorSet>) -> M,
    ) where
        M: Message<Result = Result<Body, String>> + Send + 'static,
        ValidatorActor: Handler<M>,
    {
        let (Some(validator), Some(weights)) = (self.validator.clone(), self.weights_for(digest))
        else {
            fail("asked to validate or test without that data or without those weights".into());
            return;
        };
        let (transport, task_id, node) = (
            self.transport.clone(),
            self.task_id.clone(),
            self.node.clone(),
        );
        let work = validator.send(message(weights));
        ctx.spawn(
            async move {
                match work.await {
                    Ok(Ok(body)) => send(&*transport, &task_id, &node, COORDINATOR, round, body),
                    Ok(Err(reason)) => fail(reason),
                    Err(error) => fail(format!("the validator stopped: {error}")),
                }
            }
            .into_actor(self),
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
                                    update.epochs, update.samples, update.metrics.loss
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
            Body::Decide {
                digest,
                schedule,
                test,
            } => self.on_validator(ctx, round, &digest, fail, |global| DecideRound {
                global,
                schedule,
                test,
            }),
            Body::Finish { digest } => {
                self.on_validator(ctx, round, &digest, fail, |best| FinishTask { best });
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
