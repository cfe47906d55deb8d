//! `engine agent`: the daemon a data owner runs next to its data. It serves one node id; the
//! coordinator announces tasks to it on its control subject, and for each accepted task it
//! hosts the node's Dataset, Trainer and Validator actors, exactly as in an embedded run, on
//! the task's NATS stream. Datasets are registered by name (`--data NAME=DIR`); a workflow
//! names them, or gives one of the registered directories as a path, and nothing else on
//! the machine can be asked for. Only weights, metrics and log lines leave it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use fl_data::{Dataset, OpenOptions};
use fl_package::OpenedPackage;
use fl_telemetry::TaskLog;
use fl_tensor::{Body, Envelope, PackageFile};
use fl_transport::{COORDINATOR, ControlConnection, Inbox, NatsOptions, NatsTransport, Transport};

use crate::control::{self, Announce, AnnounceReply, CONTROL_TASK, DataRef};
use crate::error::RuntimeError;
use crate::node::{DataSources, NodeSpec, send, start_node};
use crate::remote::{RemoteOptions, write_package_files};
use serde::{Deserialize, Serialize};

/// How long an accepted task may take to send the node its setup.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// What an agent keeps of a task it hosts (`<work_dir>/<task>/hosting.json`, beside the
/// package copy), so that after a restart with `--recover` it rejoins the task; removed when
/// the task ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hosting {
    train: Option<PathBuf>,
    validation: Option<PathBuf>,
    test: Option<PathBuf>,
    labels: Vec<String>,
    options: String,
}

const HOSTING_FILE: &str = "hosting.json";

impl Hosting {
    fn sources(&self) -> DataSources {
        DataSources {
            train: self.train.clone(),
            validation: self.validation.clone(),
            test: self.test.clone(),
        }
    }
}

/// The tasks this agent hosts now.
type Active = Rc<RefCell<BTreeSet<String>>>;

/// What an agent serves, and where.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Server URL and this node's credentials (task and endpoint are filled in).
    pub nats: NatsOptions,
    /// The node id it serves.
    pub node: String,
    /// Registered datasets: name → directory.
    pub data: BTreeMap<String, PathBuf>,
    /// Where each task's package copy and local task log go (`<work_dir>/<task>/`).
    pub work_dir: PathBuf,
    /// Image decoding threads.
    pub workers: usize,
}

impl AgentOptions {
    /// Checks the registered datasets (names and directories) and makes their paths
    /// canonical; the error names the dataset and what is accepted.
    pub fn checked(mut self) -> Result<Self, String> {
        let mut data = BTreeMap::new();
        for (name, dir) in std::mem::take(&mut self.data) {
            let valid_name = !name.is_empty()
                && name.len() <= 128
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if !valid_name {
                return Err(format!(
                    "--data {name}={}: the name must be letters, digits, `.`, `-` and `_` (at most 128, starting with a letter or digit)",
                    dir.display()
                ));
            }
            let canonical = dir.canonicalize().map_err(|e| {
                format!(
                    "--data {name}={}: {e} (a dataset directory is expected)",
                    dir.display()
                )
            })?;
            if !canonical.is_dir() {
                return Err(format!(
                    "--data {name}={}: not a directory (a dataset directory is expected)",
                    dir.display()
                ));
            }
            data.insert(name, canonical);
        }
        self.data = data;
        Ok(self)
    }

    /// The registered directory a workflow's reference means, or why there is none.
    fn resolve(&self, reference: &DataRef) -> Result<PathBuf, String> {
        let served = || {
            self.data
                .iter()
                .map(|(name, dir)| format!("{name}={}", dir.display()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match reference {
            DataRef::Name(name) => self.data.get(name).cloned().ok_or_else(|| {
                format!(
                    "node `{}` has no dataset named `{name}`; it serves: {} (register one with `engine agent --data {name}=DIR`)",
                    self.node,
                    served()
                )
            }),
            DataRef::Path(path) => {
                let canonical = Path::new(path).canonicalize().ok();
                self.data
                    .values()
                    .find(|dir| Some(*dir) == canonical.as_ref())
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "node `{}` serves only its registered datasets ({}), not the directory {path}: name one of them in the workflow (`data: {{name: NAME}}`) or register it with `--data NAME={path}`",
                            self.node,
                            served()
                        )
                    })
            }
        }
    }

    /// The node's data for an announced task, and the labels when asked for.
    fn accept(&self, announce: &Announce) -> Result<(DataSources, Option<Vec<String>>), String> {
        if announce.node != self.node {
            return Err(format!(
                "this agent serves node `{}`, not `{}`",
                self.node, announce.node
            ));
        }
        let resolve = |r: &Option<DataRef>| r.as_ref().map(|r| self.resolve(r)).transpose();
        let sources = DataSources {
            train: resolve(&announce.train)?,
            validation: resolve(&announce.validation)?,
            test: resolve(&announce.test)?,
        };
        let labels = match (&sources.test, announce.want_labels) {
            (Some(test), true) => Some(
                Dataset::open(test, &OpenOptions::default())
                    .map_err(|e| format!("opening {}: {e}", test.display()))?
                    .labels,
            ),
            _ => None,
        };
        Ok((sources, labels))
    }
}

/// Runs the agent until the process is stopped; `on_ready` is called once it listens for
/// tasks (after connecting and subscribing). With `recover`, it first rejoins the tasks it
/// hosted when it stopped (those whose `hosting.json` is still in the work directory).
pub fn run_agent(
    options: AgentOptions,
    recover: bool,
    on_ready: impl FnOnce(),
) -> Result<(), RuntimeError> {
    let system = actix::System::new();
    let result = system.block_on(serve(options, recover, on_ready));
    actix::System::current().stop();
    result
}

async fn serve(
    options: AgentOptions,
    recover: bool,
    on_ready: impl FnOnce(),
) -> Result<(), RuntimeError> {
    let mut control_options = options.nats.clone();
    control_options.task = CONTROL_TASK.to_owned();
    control_options.endpoint = options.node.clone();
    let control = ControlConnection::connect(&control_options)
        .await
        .map_err(|e| RuntimeError::Transport(e.to_string()))?;
    let subject = control::agent_subject(&options.node);
    let mut requests = control
        .serve(&subject)
        .await
        .map_err(|e| RuntimeError::Transport(e.to_string()))?;
    let active: Active = Rc::default();
    for (task_id, hosting) in left_over(&options.work_dir) {
        if recover {
            tracing::info!(task = %task_id, "rejoining a task hosted before the restart");
            active.borrow_mut().insert(task_id.clone());
            actix::spawn(host_task(
                options.clone(),
                task_id,
                hosting.sources(),
                Some(hosting),
                active.clone(),
            ));
        } else {
            tracing::warn!(task = %task_id, "a task hosted before the restart is not rejoined (start with --recover to rejoin it)");
        }
    }
    tracing::info!(node = %options.node, %subject, "agent ready");
    on_ready();
    while let Some(request) = requests.next().await {
        let reply = match control::decode::<Announce>(&request.payload) {
            Err(reason) => AnnounceReply::Refused { reason },
            Ok(announce) => match options.accept(&announce) {
                Ok((sources, labels)) => {
                    let task_id = announce.task_id;
                    if active.borrow().contains(&task_id) {
                        // A restarted coordinator announces its task again: the node is
                        // still here, and checks in again when it gets the setup.
                        tracing::info!(task = %task_id, "the coordinator announced a task this agent hosts");
                    } else {
                        tracing::info!(task = %task_id, "accepted a task");
                        active.borrow_mut().insert(task_id.clone());
                        actix::spawn(host_task(
                            options.clone(),
                            task_id,
                            sources,
                            None,
                            active.clone(),
                        ));
                    }
                    AnnounceReply::Accepted { labels }
                }
                Err(reason) => {
                    tracing::warn!(task = %announce.task_id, %reason, "refused a task");
                    AnnounceReply::Refused { reason }
                }
            },
        };
        control.respond(&request, control::encode(&reply)).await;
    }
    Ok(())
}

/// The tasks whose `hosting.json` is in `work_dir` (hosted when the agent stopped).
fn left_over(work_dir: &Path) -> Vec<(String, Hosting)> {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Hosting)> = entries
        .flatten()
        .filter_map(|entry| {
            let task = entry.file_name().to_str()?.to_owned();
            let bytes = std::fs::read(entry.path().join(HOSTING_FILE)).ok()?;
            Some((task, serde_json::from_slice(&bytes).ok()?))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Hosts the node for one task until the coordinator says stop; `resumed` is what was kept
/// of a task hosted before a restart.
async fn host_task(
    options: AgentOptions,
    task_id: String,
    sources: DataSources,
    resumed: Option<Hosting>,
    active: Active,
) {
    let node = options.node.clone();
    let mut nats = options.nats.clone();
    nats.task = task_id.clone();
    nats.endpoint = node.clone();
    let transport = match NatsTransport::connect(nats).await {
        Ok(transport) => transport,
        Err(error) => {
            tracing::error!(task = %task_id, %error, "cannot join the task's stream");
            active.borrow_mut().remove(&task_id);
            return;
        }
    };
    let shared: Arc<dyn Transport> = Arc::new(transport.clone());
    let fail = |reason: String| {
        tracing::error!(task = %task_id, %reason, "the node could not start");
        send(
            &*shared,
            &task_id,
            &node,
            COORDINATOR,
            0,
            Body::Failed { reason },
        );
    };
    let dir = options.work_dir.join(&task_id);
    match hosted(&options, &task_id, &sources, resumed, shared.clone()).await {
        Ok(Some(address)) => {
            while address.connected() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tracing::info!(task = %task_id, "task finished");
        }
        Ok(None) => tracing::info!(task = %task_id, "stopped before it started"),
        Err(reason) => fail(reason),
    }
    // The task is over for this node: nothing to rejoin after a restart.
    let _ = std::fs::remove_file(dir.join(HOSTING_FILE));
    active.borrow_mut().remove(&task_id);
    if tokio::time::timeout(Duration::from_secs(10), transport.flush())
        .await
        .is_err()
    {
        tracing::warn!(task = %task_id, "some messages were not stored by the NATS server");
    }
}

/// Waits for the setup (unless resumed) and starts the node; `None` when the task was
/// stopped first.
async fn hosted(
    options: &AgentOptions,
    task_id: &str,
    sources: &DataSources,
    resumed: Option<Hosting>,
    transport: Arc<dyn Transport>,
) -> Result<Option<actix::Addr<crate::node::NodeActor>>, String> {
    let node = &options.node;
    let dir = options.work_dir.join(task_id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let task_log = TaskLog::open(dir.join("task.log")).map_err(|e| e.to_string())?;
    {
        // Every line also goes to the coordinator's task log.
        let (transport, task_id, node) = (transport.clone(), task_id.to_owned(), node.clone());
        task_log.add_callback(move |line| {
            send(
                &*transport,
                &task_id,
                &node,
                COORDINATOR,
                0,
                Body::Log {
                    unix_ms: line.unix_ms,
                    level: line.level.as_str().to_owned(),
                    message: line.message.clone(),
                },
            );
        });
    }
    let log = task_log.node(node.as_str()).map_err(|e| e.to_string())?;
    let mut inbox = transport.open(node).map_err(|e| e.to_string())?;
    let package_dir = dir.join("package");
    let hosting = match resumed {
        Some(hosting) => {
            log.warn(format!(
                "rejoined task `{task_id}` after a restart of the agent"
            ));
            hosting
        }
        None => {
            let Some((files, labels, remote)) =
                tokio::time::timeout(SETUP_TIMEOUT, setup(&mut inbox, task_id))
                    .await
                    .map_err(|_| {
                        format!("no setup arrived within {} s", SETUP_TIMEOUT.as_secs())
                    })?
            else {
                return Ok(None);
            };
            if package_dir.exists() {
                std::fs::remove_dir_all(&package_dir)
                    .map_err(|e| format!("removing {}: {e}", package_dir.display()))?;
            }
            write_package_files(&package_dir, &files)?;
            let hosting = Hosting {
                train: sources.train.clone(),
                validation: sources.validation.clone(),
                test: sources.test.clone(),
                labels,
                options: remote,
            };
            let path = dir.join(HOSTING_FILE);
            let bytes = serde_json::to_vec_pretty(&hosting).map_err(|e| e.to_string())?;
            std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
            log.info(format!(
                "joined task `{task_id}` with its {} data",
                describe(sources)
            ));
            hosting
        }
    };
    let opened = OpenedPackage::open(&package_dir, &fl_model::catalog())
        .map_err(|e| format!("the task's model package: {e}"))?;
    let remote: RemoteOptions =
        serde_json::from_str(&hosting.options).map_err(|e| format!("the task's options: {e}"))?;
    let trainer_options = remote.trainer_options(options.workers);
    let sources = hosting.sources();
    let spec = NodeSpec {
        node,
        task_id,
        package: &opened.package,
        // The initiator is the node that tests.
        is_initiator: sources.test.is_some(),
        sources,
        labels: &hosting.labels,
        options: &trainer_options,
        result_dir: dir.join("result"),
    };
    let address = start_node(spec, transport, inbox, log).await?;
    Ok(Some(address))
}

/// The setup message: package files, labels, options. `None` if the task stopped first.
async fn setup(
    inbox: &mut Inbox,
    task_id: &str,
) -> Option<(Vec<PackageFile>, Vec<String>, String)> {
    while let Some(bytes) = inbox.recv().await {
        match Envelope::decode(&bytes) {
            Ok(envelope) if envelope.task_id == task_id => match envelope.body {
                Body::Setup {
                    files,
                    labels,
                    options,
                } => return Some((files, labels, options)),
                Body::Stop { .. } => return None,
                other => tracing::warn!("ignored a `{}` message before the setup", other.kind()),
            },
            Ok(envelope) => tracing::warn!("ignored a message of task `{}`", envelope.task_id),
            Err(error) => tracing::warn!("ignored an undecodable message: {error}"),
        }
    }
    None
}

fn describe(sources: &DataSources) -> String {
    [
        ("train", &sources.train),
        ("validation", &sources.validation),
        ("test", &sources.test),
    ]
    .iter()
    .filter(|(_, dir)| dir.is_some())
    .map(|(split, _)| *split)
    .collect::<Vec<_>>()
    .join(" and ")
}
