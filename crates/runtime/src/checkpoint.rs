//! Checkpoints of the coordinator after every round, and reading them back to resume a task
//! (recover mode).
//!
//! `<output>/checkpoint/latest/` and `<output>/checkpoint/previous/` each hold `state.json`
//! (the round, the best round and its validation metrics, the schedule's history and decision, the
//! rounds' summaries, the contributions, the samples per node, the seed, the workflow and its
//! digest, and the digest of each weights file) and `global.safetensors` / `best.safetensors`.
//! A new checkpoint is written whole into `checkpoint/.partial/` (every file synced), then
//! `latest` becomes `previous` and `.partial` becomes `latest`, so a crash at any moment leaves
//! at least one complete checkpoint. Reading checks every digest; a damaged `latest` falls back
//! to `previous`.
//!
//! Participants keep no state between rounds: each round builds a fresh optimizer, and the
//! data order and augmentation come from the seed and the run-wide epoch number. So the
//! coordinator's checkpoint is everything a resumed task needs to train exactly as the
//! uninterrupted one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use fl_tensor::{Metrics, RoundRecord, TensorSet};
use fl_torch::{from_tensor_set, read_params, to_tensor_set, write_safetensors};
use serde::{Deserialize, Serialize};

use crate::results::RoundSummary;

/// The layout version of `state.json`.
const VERSION: u32 = 1;

/// The state of a task after a completed round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    pub task_id: String,
    pub workflow_digest: String,
    /// The effective workflow (every default filled in), to name what changed.
    pub workflow: serde_json::Value,
    /// The last completed round.
    pub round: u64,
    pub best_round: u64,
    pub best_validation: Option<Metrics>,
    /// What the round-end hooks saw: every round's validation metrics and training loss.
    pub history: Vec<RoundRecord>,
    /// Why the model said the task is finished after `round`, when it did.
    pub finished: Option<String>,
    pub rounds: Vec<RoundSummary>,
    pub contributed: BTreeMap<String, u32>,
    pub samples: BTreeMap<String, u64>,
    pub seed: u64,
    pub global_digest: String,
    pub best_digest: String,
}

/// A checkpoint read back.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub state: State,
    pub global: TensorSet,
    pub best: TensorSet,
    /// `latest` or `previous`.
    pub which: &'static str,
    /// Why `latest` was not used, when it was not.
    pub fallback_reason: Option<String>,
}

/// Why a task cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// No checkpoint at all.
    #[error(
        "{}: no checkpoint to resume from (the task did not complete a round, or ran in another output directory); run it without --recover",
        dir.display()
    )]
    Missing {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// Every checkpoint is damaged.
    #[error("{}: no usable checkpoint: {reasons}", dir.display())]
    Damaged {
        /// The checkpoint directory.
        dir: PathBuf,
        /// What is wrong with each.
        reasons: String,
    },
    /// The workflow changed since the checkpoint.
    #[error(
        "{}: the workflow changed since the checkpoint of round {round} ({changes}); resume with the workflow as it was, or run the changed one without --recover",
        dir.display()
    )]
    WorkflowChanged {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The checkpointed round.
        round: u64,
        /// The keys that differ.
        changes: String,
    },
    /// Writing a checkpoint failed.
    #[error("{}: {message}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The checkpoint directory of an output directory.
pub(crate) fn dir(output: &Path) -> PathBuf {
    output.join("checkpoint")
}

fn write_err(path: &Path, e: impl ToString) -> RecoverError {
    RecoverError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn sync_dir(path: &Path) {
    if let Ok(dir) = fs::File::open(path) {
        let _ = dir.sync_all();
    }
}

fn write_weights(path: &Path, set: &TensorSet) -> Result<(), RecoverError> {
    let tensors = from_tensor_set(set).map_err(|e| write_err(path, e))?;
    // Written beside the path, synced, renamed.
    write_safetensors(path, &tensors).map_err(|e| write_err(path, e))
}

/// Writes the checkpoint of a completed round (see the module docs for the protocol).
pub(crate) fn write(
    output: &Path,
    state: &State,
    global: &TensorSet,
    best: &TensorSet,
) -> Result<(), RecoverError> {
    let root = dir(output);
    let partial = root.join(".partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(|e| write_err(&partial, e))?;
    }
    fs::create_dir_all(&partial).map_err(|e| write_err(&partial, e))?;
    write_weights(&partial.join("global.safetensors"), global)?;
    write_weights(&partial.join("best.safetensors"), best)?;
    let state_path = partial.join("state.json");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| write_err(&state_path, e))?;
    {
        use std::io::Write as _;
        let mut file = fs::File::create(&state_path).map_err(|e| write_err(&state_path, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| write_err(&state_path, e))?;
    }
    sync_dir(&partial);
    let (latest, previous) = (root.join("latest"), root.join("previous"));
    if latest.exists() {
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(|e| write_err(&previous, e))?;
        }
        fs::rename(&latest, &previous).map_err(|e| write_err(&latest, e))?;
    }
    fs::rename(&partial, &latest).map_err(|e| write_err(&partial, e))?;
    sync_dir(&root);
    Ok(())
}

fn read_weights(path: &Path, digest: &str) -> Result<TensorSet, String> {
    let tensors = read_params(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let set = to_tensor_set(&tensors).map_err(|e| format!("{}: {e}", path.display()))?;
    let found = set.digest().to_string();
    if found != digest {
        return Err(format!(
            "{}: digest {found} differs from the recorded {digest}",
            path.display()
        ));
    }
    Ok(set)
}

fn read_one(dir: &Path) -> Result<(State, TensorSet, TensorSet), String> {
    let state_path = dir.join("state.json");
    let bytes = fs::read(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
    let state: State =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", state_path.display()))?;
    if state.version != VERSION {
        return Err(format!(
            "{}: layout version {} (this engine reads {VERSION})",
            state_path.display(),
            state.version
        ));
    }
    let global = read_weights(&dir.join("global.safetensors"), &state.global_digest)?;
    let best = read_weights(&dir.join("best.safetensors"), &state.best_digest)?;
    Ok((state, global, best))
}

/// The top-level keys (and `initiator.*` etc., one level down) whose values differ.
fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return vec!["(the whole workflow)".into()];
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed = Vec::new();
    for key in keys {
        let (a, b) = (old.get(key), new.get(key));
        if a == b {
            continue;
        }
        match (a.and_then(|a| a.as_object()), b.and_then(|b| b.as_object())) {
            (Some(_), Some(_)) => {
                for inner in changed_keys(
                    a.unwrap_or(&serde_json::Value::Null),
                    b.unwrap_or(&serde_json::Value::Null),
                ) {
                    changed.push(format!("{key}.{inner}"));
                }
            }
            _ => changed.push(format!(
                "`{key}`: {} → {}",
                a.map_or("absent".into(), |v| v.to_string()),
                b.map_or("absent".into(), |v| v.to_string())
            )),
        }
    }
    changed
}

/// Reads the newest usable checkpoint of `output` for a workflow with this digest and
/// effective form; refuses one of another workflow, naming what changed.
pub(crate) fn load(
    output: &Path,
    digest: &str,
    workflow: &serde_json::Value,
) -> Result<Loaded, RecoverError> {
    let root = dir(output);
    let mut reasons = Vec::new();
    let mut fallback_reason = None;
    for which in ["latest", "previous"] {
        let path = root.join(which);
        if !path.exists() {
            continue;
        }
        match read_one(&path) {
            Ok((state, global, best)) => {
                if state.workflow_digest != digest {
                    let changes = changed_keys(&state.workflow, workflow);
                    return Err(RecoverError::WorkflowChanged {
                        dir: root,
                        round: state.round,
                        changes: if changes.is_empty() {
                            "its digest differs".into()
                        } else {
                            changes.join("; ")
                        },
                    });
                }
                return Ok(Loaded {
                    state,
                    global,
                    best,
                    which,
                    fallback_reason,
                });
            }
            Err(reason) => {
                fallback_reason = Some(reason.clone());
                reasons.push(format!("{which}: {reason}"));
            }
        }
    }
    if reasons.is_empty() {
        Err(RecoverError::Missing { dir: root })
    } else {
        Err(RecoverError::Damaged {
            dir: root,
            reasons: reasons.join("; "),
        })
    }
}
