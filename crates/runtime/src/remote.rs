//! The coordinator's side of agents: a task's nodes hosted by `engine agent` processes on
//! other machines. Each is announced on its control subject (it answers at once, or the task
//! fails naming the node and what to check), then sent its [`Body::Setup`] on the task's
//! stream: the package's files, the task's labels and the training options.

use std::path::Path;
use std::time::Duration;

use fl_tensor::{Body, PackageFile};
use fl_torch::TrainerOptions;
use fl_transport::{ControlConnection, ControlError, Transport};
use fl_workflow::Workflow;
use serde::{Deserialize, Serialize};

use crate::control::{self, Announce, AnnounceReply, DataRef};
use crate::error::RuntimeError;
use crate::node::send;
use fl_transport::COORDINATOR;

/// How long an agent has to answer an announcement.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Packages larger than this are refused before being read (they travel in one message).
const MAX_PACKAGE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The training options an agent needs, as they travel in [`Body::Setup`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RemoteOptions {
    pub seed: u64,
    pub threads: usize,
    pub overrides: Vec<(fl_torch::Origin, fl_torch::HyperParameterValues)>,
}

impl RemoteOptions {
    pub(crate) fn of(options: &TrainerOptions) -> Self {
        Self {
            seed: options.seed,
            threads: options.threads,
            overrides: options.overrides.clone(),
        }
    }

    /// The trainer options on an agent with `workers` decoding threads.
    pub(crate) fn trainer_options(self, workers: usize) -> TrainerOptions {
        TrainerOptions {
            seed: self.seed,
            threads: self.threads,
            workers,
            overrides: self.overrides,
            ..TrainerOptions::default()
        }
    }
}

/// Agents reached through a control connection.
#[derive(Debug, Clone)]
pub struct RemoteNodes {
    /// The coordinator's control connection.
    pub control: ControlConnection,
}

/// A node with what it serves.
fn announcements(workflow: &Workflow, task_id: &str) -> Vec<Announce> {
    let initiator = &workflow.initiator;
    let mut list = vec![Announce {
        task_id: task_id.to_owned(),
        node: initiator.node.clone(),
        train: initiator.train.as_ref().map(DataRef::from),
        validation: initiator.validation.as_ref().map(DataRef::from),
        test: Some(DataRef::from(&initiator.test)),
        want_labels: true,
    }];
    list.extend(workflow.participants.iter().map(|p| Announce {
        task_id: task_id.to_owned(),
        node: p.node.clone(),
        train: Some(DataRef::from(&p.data)),
        validation: None,
        test: None,
        want_labels: false,
    }));
    list
}

impl RemoteNodes {
    /// Announces the task to every node's agent, the initiator first; returns the task's
    /// labels (the initiator's test data's). Fails at the first agent that is not there or
    /// refuses, saying which and why.
    pub(crate) async fn announce(
        &self,
        workflow: &Workflow,
        task_id: &str,
    ) -> Result<Vec<String>, RuntimeError> {
        let mut labels = None;
        for announce in announcements(workflow, task_id) {
            let node = announce.node.clone();
            let subject = control::agent_subject(&node);
            let answer = self
                .control
                .request(&subject, control::encode(&announce), ANNOUNCE_TIMEOUT)
                .await
                .map_err(|error| {
                    let reason = match error {
                        ControlError::NoResponders { .. } => format!(
                            "no agent serves node `{node}` on {}: start `engine agent --nats {} --node {node} --data NAME=DIR` on its machine",
                            self.control.url(),
                            self.control.url()
                        ),
                        other => format!("the agent of `{node}` did not answer: {other}"),
                    };
                    RuntimeError::Agent { node: node.clone(), reason }
                })?;
            match control::decode::<AnnounceReply>(&answer) {
                Ok(AnnounceReply::Accepted { labels: answered }) => {
                    if announce.want_labels {
                        labels = answered;
                    }
                }
                Ok(AnnounceReply::Refused { reason }) => {
                    return Err(RuntimeError::Agent { node, reason });
                }
                Err(reason) => return Err(RuntimeError::Agent { node, reason }),
            }
        }
        labels.ok_or_else(|| RuntimeError::Agent {
            node: workflow.initiator.node.clone(),
            reason: "the initiator's agent sent no labels".into(),
        })
    }

    /// Sends every node its setup: the package files, the labels and the options.
    pub(crate) fn set_up(
        &self,
        transport: &dyn Transport,
        workflow: &Workflow,
        task_id: &str,
        package_root: &Path,
        labels: &[String],
        options: &TrainerOptions,
    ) -> Result<(), RuntimeError> {
        let files = package_files(package_root).map_err(|message| RuntimeError::Package {
            path: package_root.to_path_buf(),
            message,
        })?;
        let options = serde_json::to_string(&RemoteOptions::of(options))
            .map_err(|e| RuntimeError::Transport(e.to_string()))?;
        let nodes = std::iter::once(&workflow.initiator.node)
            .chain(workflow.participants.iter().map(|p| &p.node));
        for node in nodes {
            send(
                transport,
                task_id,
                COORDINATOR,
                node,
                0,
                Body::Setup {
                    files: files.clone(),
                    labels: labels.to_vec(),
                    options: options.clone(),
                },
            );
        }
        Ok(())
    }
}

/// Every regular file under `root` (a package directory), with `/`-separated relative paths
/// in a stable order. Hidden files and symbolic links are left out.
pub(crate) fn package_files(root: &Path) -> Result<Vec<PackageFile>, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        files: &mut Vec<PackageFile>,
        total: &mut u64,
    ) -> Result<(), String> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("reading {}: {e}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            if kind.is_dir() {
                walk(root, &path, files, total)?;
            } else if kind.is_file() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                *total += size;
                if *total > MAX_PACKAGE_BYTES {
                    return Err(format!(
                        "the package is larger than {} GiB, too large to send to agents",
                        MAX_PACKAGE_BYTES >> 30
                    ));
                }
                let relative = path
                    .strip_prefix(root)
                    .map_err(|e| e.to_string())?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes =
                    std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                files.push(PackageFile {
                    path: relative,
                    bytes,
                });
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(root, root, &mut files, &mut 0)?;
    Ok(files)
}

/// Writes `files` under `dir`, refusing any path that would leave it.
pub(crate) fn write_package_files(dir: &Path, files: &[PackageFile]) -> Result<(), String> {
    for file in files {
        let relative = Path::new(&file.path);
        let safe = !file.path.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(format!(
                "package file `{}` is not a relative path inside the package",
                file.path
            ));
        }
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, &file.bytes)
            .map_err(|e| format!("writing {}: {e}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_files_round_trip_and_unsafe_paths_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("source");
        std::fs::create_dir_all(source.join("sub")).expect("dirs");
        std::fs::write(source.join("config.json"), b"{}").expect("write");
        std::fs::write(source.join("sub/weights.bin"), [1u8, 2, 3]).expect("write");
        std::fs::write(source.join(".hidden"), b"x").expect("write");
        let files = package_files(&source).expect("files");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["config.json", "sub/weights.bin"]);

        let copy = dir.path().join("copy");
        write_package_files(&copy, &files).expect("written");
        assert_eq!(
            std::fs::read(copy.join("sub/weights.bin")).expect("read"),
            [1, 2, 3]
        );
        for bad in ["../evil", "/etc/passwd", "", "a/../../b"] {
            let file = PackageFile {
                path: bad.into(),
                bytes: vec![],
            };
            assert!(
                write_package_files(&copy, &[file]).is_err(),
                "{bad:?} must be refused"
            );
        }
    }
}
