//! Running a workflow embedded: every node in this process over the in-process transport,
//! from check-in to the result files.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use actix::SyncArbiter;
use fl_data::{Dataset, OpenOptions};
use fl_model::{ModelContext, ModelInit, build_model};
use fl_package::OpenedPackage;
use fl_telemetry::TaskLog;
use fl_torch::{Origin, TrainerOptions};
use fl_workflow::Workflow;

use crate::aggregator::AggregatorActor;
use crate::coordinator::Coordinator;
use crate::error::RuntimeError;
use crate::events::TaskEvent;
use crate::node::{DataSources, NodeSpec, start_node, task_logger};
use crate::packager::{Package, PackagerActor};
use crate::recorder::Recorder;
use crate::remote::RemoteNodes;
use crate::results::{FederationSummary, ResultFiles};
use crate::settings::EffectiveSettings;
use crate::workers::with_torch;
use fl_tensor::Body;
use fl_transport::{COORDINATOR, InProcess, NatsOptions, NatsTransport, Transport};

/// How to run a task beyond its workflow.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The in-process transport to use (default: a new one). Tests use it to make nodes
    /// unreachable.
    pub transport: Option<InProcess>,
    /// Talk through a NATS server instead: every node and the coordinator get their own
    /// connection and identity (this template's URL and credentials; task and endpoint are
    /// filled in). The nodes still run in this process.
    pub nats: Option<NatsOptions>,
    /// Image decoding threads per node (default 1).
    pub workers: Option<usize>,
    /// Resume from the output directory's last checkpoint instead of starting over (see
    /// `checkpoint`): the workflow must be the one checkpointed.
    pub recover: bool,
}

/// Hands each endpoint its transport.
pub(crate) enum Endpoints {
    /// One in-process transport shared by every endpoint.
    Shared(Arc<dyn Transport>),
    /// A NATS connection per endpoint.
    Nats(NatsOptions),
}

impl Endpoints {
    async fn connect(
        &self,
        task_id: &str,
        endpoint: &str,
    ) -> Result<Arc<dyn Transport>, RuntimeError> {
        match self {
            Endpoints::Shared(transport) => Ok(transport.clone()),
            Endpoints::Nats(template) => {
                let mut options = template.clone();
                options.task = task_id.to_owned();
                options.endpoint = endpoint.to_owned();
                let transport = NatsTransport::connect(options)
                    .await
                    .map_err(|e| RuntimeError::Transport(e.to_string()))?;
                Ok(Arc::new(transport))
            }
        }
    }
}

/// The largest message the coordinator accepts for a model of `model_bytes`: the model,
/// an eighth more for names and metrics, and 64 MiB for the initiator's result files.
pub(crate) fn message_limit(model_bytes: u64) -> u64 {
    model_bytes
        .saturating_add(model_bytes / 8)
        .saturating_add(64 << 20)
}

/// What a finished task produced.
#[derive(Debug, Clone)]
pub struct TaskReport {
    /// The summary written into the Model Card and `report.zip`.
    pub summary: FederationSummary,
    /// `model.zip` and `report.zip`.
    pub files: ResultFiles,
    /// The output directory.
    pub output: PathBuf,
}

/// Runs `workflow` with every node in this process. Progress goes to `events` as it happens.
pub fn run_embedded(
    workflow: &Workflow,
    options: RunOptions,
    events: Option<Sender<TaskEvent>>,
) -> Result<TaskReport, RuntimeError> {
    let digest = workflow.digest();
    let identity = TaskIdentity {
        task_id: format!("{}-{}", workflow.name, &digest[..12]),
        digest,
    };
    let endpoints = match options.nats {
        Some(template) => Endpoints::Nats(template),
        None => Endpoints::Shared(Arc::new(options.transport.unwrap_or_default())),
    };
    let launch = Launch::Embedded {
        endpoints,
        workers: options.workers.unwrap_or(1),
    };
    let system = actix::System::new();
    let result = system.block_on(run_task(
        workflow.clone(),
        identity,
        launch,
        options.recover,
        events,
    ));
    actix::System::current().stop();
    result
}

/// A task's id and its workflow's digest.
#[derive(Debug, Clone)]
pub(crate) struct TaskIdentity {
    pub task_id: String,
    pub digest: String,
}

/// Where a task's nodes run.
pub(crate) enum Launch {
    /// In this process.
    Embedded {
        endpoints: Endpoints,
        /// Image decoding threads per node.
        workers: usize,
    },
    /// On agents, over NATS; `nats` is the coordinator's connection template (task and
    /// endpoint are filled in).
    Remote {
        nodes: RemoteNodes,
        nats: NatsOptions,
    },
}

fn output_err(path: &std::path::Path, e: impl ToString) -> RuntimeError {
    RuntimeError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Runs a task from check-in to the result files, its nodes launched as `launch` says.
pub(crate) async fn run_task(
    workflow: Workflow,
    identity: TaskIdentity,
    launch: Launch,
    recover: bool,
    events: Option<Sender<TaskEvent>>,
) -> Result<TaskReport, RuntimeError> {
    let out = workflow.output.clone();
    fs::create_dir_all(&out).map_err(|e| output_err(&out, e))?;
    let TaskIdentity { task_id, digest } = identity;
    // Held to the end: nothing below touches the directory before it is ours.
    let _owner = crate::lock::lock_dir(&out, &format!("the task `{task_id}`"))?;
    let resume = if recover {
        let workflow_json = serde_json::to_value(&workflow).unwrap_or_default();
        let loaded = crate::checkpoint::load(&out, &digest, &workflow_json)
            .map_err(|e| RuntimeError::Recover(Box::new(e)))?;
        // Rounds after the checkpoint run again: their spooled updates go.
        remove_rounds_after(&out, loaded.state.round)?;
        Some(loaded)
    } else {
        // A new run starts clean: the artefacts of an earlier run in the same directory
        // (its spooled updates would otherwise be taken for this run's) are replaced.
        for stale in ["rounds", "tensorboard", "checkpoint"] {
            let path = out.join(stale);
            if path.exists() {
                fs::remove_dir_all(&path).map_err(|e| output_err(&path, e))?;
            }
        }
        for stale in ["task.log", "metrics.json"] {
            let path = out.join(stale);
            if path.exists() {
                fs::remove_file(&path).map_err(|e| output_err(&path, e))?;
            }
        }
        None
    };

    // The task log, mirrored to the event stream.
    let task_log = TaskLog::open(out.join("task.log")).map_err(|e| output_err(&out, e))?;
    if let Some(events) = &events {
        let events = events.clone();
        task_log.add_callback(move |line| {
            let _ = events.send(TaskEvent::Log(line.clone()));
        });
    }
    let coordinator_log = task_log
        .node(COORDINATOR)
        .map_err(|e| output_err(&out, e))?;
    match &resume {
        None => coordinator_log.info(format!(
            "task `{task_id}` starts (workflow digest {digest})"
        )),
        Some(loaded) => coordinator_log.info(format!(
            "task `{task_id}` resumes after round {} from the {} checkpoint{}",
            loaded.state.round,
            loaded.which,
            loaded
                .fallback_reason
                .as_ref()
                .map_or(String::new(), |why| format!(
                    " (the latest is unusable: {why})"
                ))
        )),
    }

    // The package (a directory or a model.zip).
    let opened = open_package(&workflow)?;
    let package = &opened.package;
    // The coordinator's endpoint (over NATS it creates the task's stream, before any agent
    // is told about the task).
    let (shared, nats_coordinator) = match &launch {
        Launch::Embedded { endpoints, .. } => {
            (endpoints.connect(&task_id, COORDINATOR).await?, None)
        }
        Launch::Remote { nats, .. } => {
            let mut options = nats.clone();
            options.task = task_id.clone();
            options.endpoint = COORDINATOR.to_owned();
            let transport = NatsTransport::connect(options)
                .await
                .map_err(|e| RuntimeError::Transport(e.to_string()))?;
            (
                Arc::new(transport.clone()) as Arc<dyn Transport>,
                Some(transport),
            )
        }
    };
    let inbox = shared
        .open(COORDINATOR)
        .map_err(|e| RuntimeError::Transport(e.to_string()))?;

    // The task's labels are those of the initiator's test data.
    let labels = match &launch {
        Launch::Embedded { .. } => embedded_labels(&workflow)?,
        Launch::Remote { nodes, .. } => {
            coordinator_log.info("announcing the task to the agents");
            nodes
                .announce(&workflow, &task_id)
                .await
                .inspect_err(|error| coordinator_log.error(format!("the task failed: {error}")))?
        }
    };

    // Every value training uses, printed once and recorded with the results.
    let settings = EffectiveSettings::of(package, &workflow)
        .inspect_err(|error| coordinator_log.error(format!("the task failed: {error}")))?;
    settings.log(&coordinator_log);
    let plan = crate::settings::plan_task_labels(package, &workflow, &labels)
        .inspect_err(|error| coordinator_log.error(format!("the task failed: {error}")))?;
    if crate::settings::plan_is_notable(&plan) {
        coordinator_log.info(plan.to_string());
    }
    let labels = plan.labels;
    let overrides = vec![(Origin::Workflow, workflow.training.clone())];
    let trainer_options = TrainerOptions {
        seed: workflow.seed,
        threads: workflow.threads as usize,
        workers: match &launch {
            Launch::Embedded { workers, .. } => *workers,
            Launch::Remote { .. } => 1,
        },
        overrides,
        ..TrainerOptions::default()
    };

    let nodes = node_sources(&workflow);
    let mut addresses = Vec::new();
    match &launch {
        Launch::Embedded { endpoints, .. } => {
            for (node, sources) in &nodes {
                let log = task_log.node(node).map_err(|e| output_err(&out, e))?;
                let node_transport = endpoints.connect(&task_id, node).await?;
                let node_inbox = node_transport
                    .open(node)
                    .map_err(|e| RuntimeError::Transport(e.to_string()))?;
                let spec = NodeSpec {
                    node,
                    task_id: &task_id,
                    package,
                    sources: sources.clone(),
                    labels: &labels,
                    options: &trainer_options,
                    is_initiator: *node == workflow.initiator.node,
                    result_dir: out.join("nodes").join(node),
                };
                let address = start_node(spec, node_transport, node_inbox, log)
                    .await
                    .map_err(|message| RuntimeError::Package {
                        path: workflow.model.clone(),
                        message: format!("node `{node}`: {message}"),
                    })?;
                addresses.push(address);
            }
        }
        Launch::Remote { nodes: remote, .. } => remote.set_up(
            &*shared,
            &workflow,
            &task_id,
            &package.root,
            &labels,
            &trainer_options,
        )?,
    }

    // The coordinator's own instance of the model: its state dict is the initial global
    // model (the package's weights, the head rebuilt for the task's labels when they differ,
    // seeded so every run starts the same), and it turns the best exchanged state into the
    // result's full weights (a model may exchange only part of itself).
    let model_error = |source| RuntimeError::Model {
        node: COORDINATOR.into(),
        source: Box::new(source),
    };
    let init = ModelInit {
        package: package.clone(),
        options: trainer_options.clone(),
        context: ModelContext {
            node: COORDINATOR.into(),
            task: task_id.clone(),
            labels: labels.clone(),
            is_initiator: false,
            result_dir: out.join("nodes").join(COORDINATOR),
            logger: task_logger(coordinator_log.clone()),
            ..ModelContext::default()
        },
    };
    let mut model =
        with_torch(workflow.threads as usize, || build_model(init)).map_err(model_error)?;
    let initial = model.state_dict().map_err(model_error)?;
    // No message a node sends needs much more than the model: an update is the weights and
    // a few metrics; the initiator's result files get the slack.
    let limit = message_limit(initial.byte_size());
    shared.limit_messages(limit);
    tracing::debug!(limit, "messages to the coordinator are limited");

    let tensorboard_dir = out.join("tensorboard");
    let metrics_path = out.join("metrics.json");
    let recorder = Recorder::create(
        &metrics_path,
        &tensorboard_dir,
        nodes.iter().map(|(n, _)| n),
        resume.is_some(),
    )?;
    let mut coordinator = Coordinator {
        workflow: workflow.clone(),
        task_id: task_id.clone(),
        transport: shared.clone(),
        inbox,
        aggregator: SyncArbiter::start(1, AggregatorActor::default),
        events,
        log: coordinator_log.clone(),
        out: out.clone(),
        recorder,
        digest: digest.clone(),
    };
    let node_ids: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let outcome = match coordinator.check_in(&node_ids).await {
        Ok(samples) => coordinator.run(initial, &samples, resume).await,
        Err(error) => Err(error),
    };
    coordinator.recorder.close();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            coordinator_log.error(format!("the task failed: {error}"));
            for node in &node_ids {
                crate::node::send(
                    &*shared,
                    &task_id,
                    COORDINATOR,
                    node,
                    0,
                    Body::Stop {
                        reason: format!("the task failed: {error}"),
                    },
                );
            }
            flush(nats_coordinator.as_ref()).await;
            let _ = task_log.sync();
            return Err(error);
        }
    };
    flush(nats_coordinator.as_ref()).await;

    // The Packager: the best weights as the result package, and the report.
    let summary = FederationSummary {
        task: task_id.clone(),
        rounds_run: outcome.rounds.len() as u64,
        max_rounds: u64::from(workflow.max_rounds),
        stopped_early: outcome.stopped_early,
        best_round: outcome.best_round,
        best_validation: outcome.best_validation.clone(),
        final_test: outcome.final_test.clone(),
        participants: outcome.participants.clone(),
        rounds: outcome.rounds.clone(),
        seed: workflow.seed,
        workflow_digest: digest,
        weighting: match workflow.aggregation.weighting {
            fl_workflow::Weighting::Samples => "samples".into(),
            fl_workflow::Weighting::Uniform => "uniform".into(),
        },
        settings: Some(settings),
    };
    let best_path = out.join(".best.safetensors.partial");
    with_torch(workflow.threads as usize, || {
        model.load_state_dict(&outcome.best)?;
        model.save_weights(&best_path)
    })
    .map_err(model_error)?;
    coordinator_log.info(format!(
        "best round {} kept; test accuracy {}",
        outcome.best_round,
        outcome
            .final_test
            .as_ref()
            .and_then(|m| m.accuracy)
            .map_or("-".into(), |a| format!("{:.2}%", a * 100.0))
    ));
    let _ = task_log.sync();
    crate::faults::crash_point("during-packaging", outcome.rounds.len() as u64);
    let packager = SyncArbiter::start(1, || PackagerActor);
    let files = packager
        .send(Package {
            out: out.clone(),
            package: package.clone(),
            best_weights: best_path.clone(),
            labels: labels.clone(),
            summary: summary.clone(),
            tensorboard_dir: tensorboard_dir.clone(),
            metrics: metrics_path.clone(),
            task_log: out.join("task.log"),
            extra_files: outcome
                .files
                .into_iter()
                .map(|file| (file.path, file.bytes))
                .collect(),
        })
        .await;
    let _ = fs::remove_file(&best_path);
    // The nodes' result directories, when no model wrote anything there.
    let _ = fs::remove_dir(out.join("nodes"));
    let files = files.map_err(|e| RuntimeError::Transport(e.to_string()))??;
    drop(addresses);
    Ok(TaskReport {
        summary,
        files,
        output: out,
    })
}

/// Waits (boundedly) until what the coordinator sent over NATS is stored by the server, so
/// that agents get their `Stop` even when this process ends next.
async fn flush(transport: Option<&NatsTransport>) {
    if let Some(transport) = transport
        && tokio::time::timeout(std::time::Duration::from_secs(10), transport.flush())
            .await
            .is_err()
    {
        tracing::warn!(
            "some messages to the agents were not stored by the NATS server within 10 s"
        );
    }
}

/// The task's labels in an embedded run: those of the initiator's test directory.
/// Opens the workflow's model package (a directory or a `model.zip`).
pub(crate) fn open_package(workflow: &Workflow) -> Result<OpenedPackage, RuntimeError> {
    OpenedPackage::open(&workflow.model, &fl_model::catalog()).map_err(|e| RuntimeError::Package {
        path: workflow.model.clone(),
        message: e.to_string(),
    })
}

pub(crate) fn embedded_labels(workflow: &Workflow) -> Result<Vec<String>, RuntimeError> {
    let test_dir = workflow
        .initiator
        .test
        .path()
        .ok_or_else(|| RuntimeError::Package {
            path: workflow.model.clone(),
            message: "the embedded runtime needs the initiator's test data as a directory".into(),
        })?;
    Ok(Dataset::open(test_dir, &OpenOptions::default())
        .map_err(|source| RuntimeError::Data {
            node: workflow.initiator.node.clone(),
            source: Box::new(source),
        })?
        .labels)
}

/// Every node with its data directories (for an embedded run), the initiator first.
pub(crate) fn node_sources(workflow: &Workflow) -> Vec<(String, DataSources)> {
    let initiator = &workflow.initiator;
    let path = |d: Option<&fl_workflow::Dataset>| d.and_then(|d| d.path()).map(Into::into);
    let mut nodes = vec![(
        initiator.node.clone(),
        DataSources {
            train: path(initiator.train.as_ref()),
            validation: path(initiator.validation.as_ref()),
            test: path(Some(&initiator.test)),
        },
    )];
    for participant in &workflow.participants {
        nodes.push((
            participant.node.clone(),
            DataSources {
                train: path(Some(&participant.data)),
                ..DataSources::default()
            },
        ));
    }
    nodes
}

/// Removes the spooled updates of the rounds after `round` (they run again on recovery).
fn remove_rounds_after(out: &std::path::Path, round: u64) -> Result<(), RuntimeError> {
    let rounds = out.join("rounds");
    let Ok(entries) = fs::read_dir(&rounds) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("round-"))
            .and_then(|n| n.parse::<u64>().ok());
        if number.is_some_and(|n| n > round) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|e| output_err(&path, e))?;
        }
    }
    Ok(())
}
