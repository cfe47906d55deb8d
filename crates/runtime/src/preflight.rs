//! Everything an embedded run checks before it trains, without training: `engine validate
//! WORKFLOW` runs it so that a run never fails on something validation passed. The package is
//! opened, the task's labels read from the initiator's test data, the effective settings
//! resolved, and on every node the package's model is built (weights matched strictly) and
//! given the node's data to verify, exactly as the run's nodes do.

use std::sync::{Arc, Mutex};

use fl_model::{DatasetDirs, ModelContext, ModelInit, TaskLogger};
use fl_torch::TrainerOptions;
use fl_workflow::Workflow;

use crate::error::RuntimeError;
use crate::node::build_and_verify;
use crate::settings::EffectiveSettings;
use crate::task::{embedded_labels, node_sources, open_package};

/// What the checks found.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The task's labels (the initiator's test data's).
    pub labels: Vec<String>,
    /// What the task would train with.
    pub settings: EffectiveSettings,
    /// Every node, the initiator first.
    pub nodes: Vec<NodeCheck>,
}

impl Preflight {
    /// Whether every node passed.
    pub fn passed(&self) -> bool {
        self.nodes.iter().all(|n| n.error.is_none())
    }
}

/// One node's checks.
#[derive(Debug, Clone, Default)]
pub struct NodeCheck {
    /// The node.
    pub node: String,
    /// Samples per split the node would use (train, validation, test).
    pub samples: (u64, u64, u64),
    /// Why the node would fail the run, when it would.
    pub error: Option<String>,
    /// Warnings (samples left out and why).
    pub warnings: Vec<String>,
    /// Whether the node's data is registered by name on an agent, so not checked here.
    pub remote: bool,
}

/// Runs the checks of an embedded run's start. An `Err` is what stops every node (the
/// package, the labels, the settings); a node's own failure is in its [`NodeCheck`].
pub fn preflight(workflow: &Workflow) -> Result<Preflight, RuntimeError> {
    let opened = open_package(workflow)?;
    let package = &opened.package;
    let settings = EffectiveSettings::of(package, workflow)?;
    let labels =
        crate::settings::plan_task_labels(package, workflow, &embedded_labels(workflow)?)?.labels;
    let options = TrainerOptions {
        seed: workflow.seed,
        threads: workflow.threads as usize,
        overrides: vec![(fl_package::Origin::Workflow, workflow.training.clone())],
        ..TrainerOptions::default()
    };
    let scratch = tempfile::tempdir().map_err(|e| RuntimeError::Output {
        path: std::env::temp_dir(),
        message: e.to_string(),
    })?;
    let mut nodes = Vec::new();
    for (node, sources) in node_sources(workflow) {
        let is_remote = sources.dirs().is_empty();
        let mut check = NodeCheck {
            node: node.clone(),
            remote: is_remote,
            ..NodeCheck::default()
        };
        // The Trainer and the Validator each build their model and verify their part.
        let parts = [
            DatasetDirs {
                train: sources.train.clone(),
                ..DatasetDirs::default()
            },
            DatasetDirs {
                train: None,
                ..sources.clone()
            },
        ];
        for part in parts.iter().filter(|p| !p.dirs().is_empty()) {
            let init = ModelInit {
                package: package.clone(),
                options: options.clone(),
                context: ModelContext {
                    node: node.clone(),
                    task: workflow.name.clone(),
                    labels: labels.clone(),
                    is_initiator: node == workflow.initiator.node,
                    result_dir: scratch.path().join(&node),
                    ..ModelContext::default()
                },
            };
            match check_part(init, part, workflow.threads as usize) {
                Ok((summary, warnings)) => {
                    check.samples.0 += summary.train;
                    check.samples.1 += summary.validation;
                    check.samples.2 += summary.test;
                    check.warnings.extend(warnings);
                }
                Err(error) => {
                    check.error = Some(error);
                    break;
                }
            }
        }
        nodes.push(check);
    }
    Ok(Preflight {
        labels,
        settings,
        nodes,
    })
}

/// Builds one model instance and has it verify `part` of the node's data.
fn check_part(
    mut init: ModelInit,
    part: &DatasetDirs,
    threads: usize,
) -> Result<(fl_model::DataSummary, Vec<String>), String> {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = warnings.clone();
    init.context.logger = TaskLogger::new(move |warning, line| {
        if warning && let Ok(mut lines) = sink.lock() {
            lines.push(line.to_owned());
        }
    });
    let (_, summary) = build_and_verify(init, part, threads)?;
    let warnings = warnings.lock().map(|w| w.clone()).unwrap_or_default();
    Ok((summary, warnings))
}
