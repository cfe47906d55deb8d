//! `engine coordinator`: the long-running service that accepts submitted workflows and runs
//! them with their nodes on agents. Each task runs on its own thread (its own actix system)
//! in `<work_dir>/<task>/`: the submitted package under `package/`, then the same files as an
//! embedded run (`task.log`, `metrics.json`, `tensorboard/`, `model.zip`, `report.zip`) and
//! `status.json`. Clients follow a task's events live; `engine status` and `engine logs` read
//! running and finished tasks, also those of an earlier run of the service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use fl_telemetry::LogLine;
use fl_transport::{COORDINATOR, ControlConnection, NatsOptions, NatsTransport, Transport};
use fl_workflow::Workflow;
use serde::{Deserialize, Serialize};

use crate::control::{
    self, CLIENTS_TASK, CONTROL_TASK, ClientMessage, ClientRequest, PING_SUBJECT, Pong,
    STATUS_SUBJECT, TaskState, TaskStatus,
};
use crate::error::RuntimeError;
use crate::events::TaskEvent;
use crate::remote::{RemoteNodes, write_package_files};
use crate::task::{Launch, TaskIdentity, run_task};

/// A request on the clients stream, with the client's endpoint for the answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FromClient {
    /// The client's endpoint id on the `clients` stream.
    pub client: String,
    /// What it asks.
    pub request: ClientRequest,
}

/// Where the service listens and keeps its tasks.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Server URL and the coordinator's credentials (task and endpoint are filled in).
    pub nats: NatsOptions,
    /// Each task's directory goes under it.
    pub work_dir: PathBuf,
    /// Resume the tasks that were running when the service stopped (from their last
    /// checkpoint); without it they are marked failed.
    pub recover: bool,
}

/// What the service keeps of a submission, to resume its task (`submission.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Submission {
    /// The workflow file's path on the submitter's machine.
    path: String,
    /// The workflow's digest.
    digest: String,
}

const SUBMISSION_FILE: &str = "submission.json";

/// The status file in each task's directory.
const STATUS_FILE: &str = "status.json";

struct Entry {
    status: TaskStatus,
    /// Clients following the task, and whether each gets the result files at the end.
    watchers: Vec<(String, bool)>,
}

type Tasks = Arc<Mutex<BTreeMap<String, Entry>>>;

fn lock(tasks: &Tasks) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
    tasks.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the service until the process is stopped; `on_ready` is called once it takes
/// submissions.
pub fn run_coordinator(
    options: ServiceOptions,
    on_ready: impl FnOnce(),
) -> Result<(), RuntimeError> {
    let system = actix::System::new();
    let result = system.block_on(serve(options, on_ready));
    actix::System::current().stop();
    result
}

async fn serve(options: ServiceOptions, on_ready: impl FnOnce()) -> Result<(), RuntimeError> {
    let transport_err = |e: &dyn std::fmt::Display| RuntimeError::Transport(e.to_string());
    std::fs::create_dir_all(&options.work_dir).map_err(|e| RuntimeError::Output {
        path: options.work_dir.clone(),
        message: e.to_string(),
    })?;
    let _owner = crate::lock::lock_dir(&options.work_dir, "the coordinator service")?;
    let mut control_options = options.nats.clone();
    control_options.task = CONTROL_TASK.to_owned();
    control_options.endpoint = COORDINATOR.to_owned();
    let control = ControlConnection::connect(&control_options)
        .await
        .map_err(|e| transport_err(&e))?;
    let mut clients_options = options.nats.clone();
    clients_options.task = CLIENTS_TASK.to_owned();
    clients_options.endpoint = COORDINATOR.to_owned();
    let clients = NatsTransport::connect(clients_options)
        .await
        .map_err(|e| transport_err(&e))?;
    let mut inbox = clients.open(COORDINATOR).map_err(|e| transport_err(&e))?;
    let mut pings = control
        .serve(PING_SUBJECT)
        .await
        .map_err(|e| transport_err(&e))?;
    let mut statuses = control
        .serve(STATUS_SUBJECT)
        .await
        .map_err(|e| transport_err(&e))?;
    let instance = format!("{}-{:x}", std::process::id(), now_ms());
    let (earlier, interrupted) = earlier_tasks(&options.work_dir, options.recover);
    let tasks: Tasks = Arc::new(Mutex::new(earlier));
    for task_id in interrupted {
        match resubmit(&options, &task_id) {
            Ok((workflow, identity)) => {
                let recover = crate::checkpoint::dir(&workflow.output).exists();
                tracing::info!(task = %task_id, recover, "resuming a task that was running when the service stopped");
                start(
                    &options, &control, &clients, &tasks, workflow, identity, recover,
                );
            }
            Err(reason) => {
                tracing::error!(task = %task_id, %reason, "cannot resume the task");
                if let Some(entry) = lock(&tasks).get_mut(&task_id) {
                    entry.status.state = TaskState::Failed {
                        reason: format!("could not be resumed: {reason}"),
                    };
                    save_status(Path::new(&entry.status.output), &entry.status);
                }
            }
        }
    }
    tracing::info!(url = %options.nats.url, work_dir = %options.work_dir.display(), "coordinator ready");
    on_ready();
    loop {
        tokio::select! {
            Some(request) = pings.next() => {
                let running = lock(&tasks)
                    .values()
                    .filter(|e| matches!(e.status.state, TaskState::Running { .. }))
                    .count();
                let pong = Pong { version: env!("CARGO_PKG_VERSION").to_owned(), running, instance: instance.clone() };
                control.respond(&request, control::encode(&pong)).await;
            }
            Some(request) = statuses.next() => {
                let list: Vec<TaskStatus> = lock(&tasks).values().map(|e| e.status.clone()).collect();
                control.respond(&request, control::encode(&list)).await;
            }
            bytes = inbox.recv() => {
                let Some(bytes) = bytes else { break };
                match control::decode::<FromClient>(&bytes) {
                    Ok(message) => handle(&options, &control, &clients, &tasks, message),
                    Err(error) => tracing::warn!(%error, "ignored a client message"),
                }
            }
        }
    }
    Ok(())
}

fn reply(clients: &NatsTransport, client: &str, message: &ClientMessage) {
    if let Err(error) = clients.send(client, control::encode(message)) {
        tracing::warn!(%client, %error, "cannot answer a client");
    }
}

fn handle(
    options: &ServiceOptions,
    control: &ControlConnection,
    clients: &NatsTransport,
    tasks: &Tasks,
    FromClient { client, request }: FromClient,
) {
    match request {
        ClientRequest::Submit {
            workflow,
            path,
            package,
        } => match submit(options, &workflow, &path, &package) {
            Ok((workflow, identity)) => {
                let status = TaskStatus {
                    task_id: identity.task_id.clone(),
                    name: workflow.name.clone(),
                    state: TaskState::Running {
                        round: 0,
                        max_rounds: u64::from(workflow.max_rounds),
                    },
                    submitted_ms: now_ms(),
                    output: workflow.output.display().to_string(),
                };
                save_status(&workflow.output, &status);
                lock(tasks).insert(
                    identity.task_id.clone(),
                    Entry {
                        status,
                        watchers: vec![(client.clone(), true)],
                    },
                );
                tracing::info!(task = %identity.task_id, %client, "task submitted");
                reply(
                    clients,
                    &client,
                    &ClientMessage::Accepted {
                        task_id: identity.task_id.clone(),
                    },
                );
                start(options, control, clients, tasks, workflow, identity, false);
            }
            Err(reason) => reply(clients, &client, &ClientMessage::Refused { reason }),
        },
        ClientRequest::Follow { task_id } => {
            let mut tasks = lock(tasks);
            let Some(entry) = tasks.get_mut(&task_id) else {
                reply(clients, &client, &unknown_task(&task_id));
                return;
            };
            if matches!(entry.status.state, TaskState::Running { .. }) {
                entry.watchers.push((client, true));
            } else {
                reply(clients, &client, &ended(&entry.status, true));
            }
        }
        ClientRequest::Logs { task_id, follow } => {
            let mut tasks = lock(tasks);
            let Some(entry) = tasks.get_mut(&task_id) else {
                reply(clients, &client, &unknown_task(&task_id));
                return;
            };
            let history = read_log(&Path::new(&entry.status.output).join("task.log"));
            reply(clients, &client, &ClientMessage::History(history));
            if follow && matches!(entry.status.state, TaskState::Running { .. }) {
                entry.watchers.push((client, false));
            } else {
                let status = entry.status.clone();
                reply(clients, &client, &ClientMessage::Done { status });
            }
        }
    }
}

/// Checks a submission and lays out its directory.
fn submit(
    options: &ServiceOptions,
    text: &str,
    path: &str,
    package: &[fl_tensor::PackageFile],
) -> Result<(Workflow, TaskIdentity), String> {
    let mut workflow = Workflow::parse_submitted(text, path).map_err(|e| e.to_string())?;
    let digest = workflow.digest();
    let task_id = task_id(&workflow.name, &digest);
    let dir = options.work_dir.join(&task_id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(dir.join("workflow.yaml"), text)
        .map_err(|e| format!("writing {}: {e}", dir.display()))?;
    write_package_files(&dir.join("package"), package)?;
    let submission = Submission {
        path: path.to_owned(),
        digest: digest.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&submission).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(SUBMISSION_FILE), bytes)
        .map_err(|e| format!("writing {}: {e}", dir.display()))?;
    workflow.model = dir.join("package");
    workflow.output = dir;
    Ok((workflow, TaskIdentity { task_id, digest }))
}

/// The workflow and identity of a task submitted to an earlier run of the service.
fn resubmit(options: &ServiceOptions, task_id: &str) -> Result<(Workflow, TaskIdentity), String> {
    let dir = options.work_dir.join(task_id);
    let text = std::fs::read_to_string(dir.join("workflow.yaml"))
        .map_err(|e| format!("{}: {e}", dir.join("workflow.yaml").display()))?;
    let submission: Submission = std::fs::read(dir.join(SUBMISSION_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", dir.join(SUBMISSION_FILE).display()))?;
    let mut workflow =
        Workflow::parse_submitted(&text, &submission.path).map_err(|e| e.to_string())?;
    let digest = workflow.digest();
    if digest != submission.digest {
        return Err(format!(
            "its workflow's digest is {digest}, not the submitted {}",
            submission.digest
        ));
    }
    workflow.model = dir.join("package");
    workflow.output = dir;
    Ok((
        workflow,
        TaskIdentity {
            task_id: task_id.to_owned(),
            digest,
        },
    ))
}

/// `<name>-<digest prefix>-<time>`: unique per submission, readable, a valid subject token,
/// and never one of the control tokens (it contains `-`).
fn task_id(name: &str, digest: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    format!("{name}-{}-{:x}", &digest[..8], now_ms())
}

/// Runs a task on its own thread, forwarding its events to the clients following it.
fn start(
    options: &ServiceOptions,
    control: &ControlConnection,
    clients: &NatsTransport,
    tasks: &Tasks,
    workflow: Workflow,
    identity: TaskIdentity,
    recover: bool,
) {
    let (events, received) = mpsc::channel::<TaskEvent>();
    let task_id = identity.task_id.clone();
    let (forwarded, forwarding_done) = mpsc::channel::<()>();
    {
        let (clients, tasks, task_id) = (clients.clone(), tasks.clone(), task_id.clone());
        std::thread::spawn(move || {
            for event in received {
                let mut tasks = lock(&tasks);
                let Some(entry) = tasks.get_mut(&task_id) else {
                    continue;
                };
                if let (
                    TaskEvent::RoundStarted {
                        round, max_rounds, ..
                    },
                    TaskState::Running { .. },
                ) = (&event, &entry.status.state)
                {
                    entry.status.state = TaskState::Running {
                        round: *round,
                        max_rounds: *max_rounds,
                    };
                }
                let message = control::encode(&ClientMessage::Event(event));
                for (watcher, _) in &entry.watchers {
                    let _ = clients.send(watcher, message.clone());
                }
            }
            let _ = forwarded.send(());
        });
    }
    let launch = Launch::Remote {
        nodes: RemoteNodes {
            control: control.clone(),
        },
        nats: options.nats.clone(),
    };
    let (clients, tasks) = (clients.clone(), tasks.clone());
    let thread_name = format!("task-{task_id}");
    let failed_id = task_id.clone();
    let spawned = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let system = actix::System::new();
            let result =
                system.block_on(run_task(workflow, identity, launch, recover, Some(events)));
            actix::System::current().stop();
            // Every event is forwarded before the end is announced.
            let _ = forwarding_done.recv_timeout(std::time::Duration::from_secs(10));
            let state = match &result {
                Ok(report) => TaskState::Finished {
                    rounds: report.summary.rounds_run,
                    test_accuracy: report.summary.final_test.as_ref().and_then(|m| m.accuracy),
                },
                Err(error) => TaskState::Failed {
                    reason: error.to_string(),
                },
            };
            let mut tasks = lock(&tasks);
            let Some(entry) = tasks.get_mut(&task_id) else {
                return;
            };
            entry.status.state = state;
            save_status(Path::new(&entry.status.output), &entry.status);
            tracing::info!(task = %task_id, state = ?entry.status.state, "task ended");
            for (watcher, wants_results) in &entry.watchers {
                reply(&clients, watcher, &ended(&entry.status, *wants_results));
            }
            entry.watchers.clear();
        });
    if let Err(error) = spawned {
        tracing::error!(task = %failed_id, %error, "cannot start the task's thread");
    }
}

/// The refusal of a request about a task this service does not know.
fn unknown_task(task_id: &str) -> ClientMessage {
    ClientMessage::Refused {
        reason: format!("no task `{task_id}` on this coordinator (see `engine status`)"),
    }
}

/// The end of a task for a client; with `results`, and when it finished, with `model.zip`
/// and `report.zip` from its directory.
fn ended(status: &TaskStatus, results: bool) -> ClientMessage {
    let finished = results && matches!(status.state, TaskState::Finished { .. });
    let read = |name: &str| {
        finished
            .then(|| std::fs::read(Path::new(&status.output).join(name)).ok())
            .flatten()
            .unwrap_or_default()
    };
    ClientMessage::Ended {
        model_zip: read(crate::results::MODEL_ZIP),
        report_zip: read(crate::results::REPORT_ZIP),
        status: status.clone(),
    }
}

fn save_status(dir: &Path, status: &TaskStatus) {
    let path = dir.join(STATUS_FILE);
    let partial = dir.join(".status.json.partial");
    let written = serde_json::to_vec_pretty(status)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&partial, bytes))
        .and_then(|()| std::fs::rename(&partial, &path));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "cannot write the task's status");
    }
}

/// Tasks of earlier runs of the service, and those that were running when it stopped: with
/// `recover` they stay running (to be resumed), otherwise they are marked failed.
fn earlier_tasks(work_dir: &Path, recover: bool) -> (BTreeMap<String, Entry>, Vec<String>) {
    let mut tasks = BTreeMap::new();
    let mut interrupted = Vec::new();
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return (tasks, interrupted);
    };
    for entry in entries.flatten() {
        let path = entry.path().join(STATUS_FILE);
        let Some(mut status) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<TaskStatus>(&b).ok())
        else {
            continue;
        };
        if matches!(status.state, TaskState::Running { .. }) {
            if recover {
                interrupted.push(status.task_id.clone());
            } else {
                status.state = TaskState::Failed {
                    reason: "the coordinator stopped while the task was running (restart it with --recover to resume the task)".into(),
                };
                save_status(&entry.path(), &status);
            }
        }
        tasks.insert(
            status.task_id.clone(),
            Entry {
                status,
                watchers: Vec::new(),
            },
        );
    }
    interrupted.sort();
    (tasks, interrupted)
}

/// The lines of a task log (continuation lines of multi-line messages included as lines).
fn read_log(path: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| LogLine::from_str(line).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_subject_tokens_with_a_dash() {
        let id = task_id("digits fedavg/ü", &"ab".repeat(32));
        assert!(id.starts_with("digits-fedavg---abababab-"), "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
    }
}
