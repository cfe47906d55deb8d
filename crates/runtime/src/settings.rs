//! The effective settings of a task: every hyper-parameter it trains with and where each came
//! from (the package's `config.json`, the workflow, or the documented default), the
//! augmentation, and the round structure. Logged once at the start (the console shows the task
//! log) and recorded in `summary.json` and the Model Card.

use fl_package::{
    HeadPlan, HyperParameters, LabelPlan, ModelPackage, Origin, PREPROCESSOR_FILE, Resolved,
    Setting, plan_labels, setting_line,
};
use fl_telemetry::NodeLog;
use fl_workflow::Workflow;
use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// What a federated task trains with, as `summary.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectiveSettings {
    /// Every hyper-parameter with its value and source, in the spec's order.
    pub hyper_parameters: Vec<Setting>,
    /// The training-only augmentation of the package's preprocessing.
    pub augmentation: String,
    /// Local epochs per round (`merge_epochs`).
    pub merge_epochs: u32,
    /// libtorch threads per training node.
    pub threads: u32,
    /// The command line's overrides of workflow keys (`--set KEY=VALUE`, `--output`), as
    /// applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

/// The package's hyper-parameters under the workflow's `training` overrides; fails, naming
/// both sources, when they are invalid together.
fn resolve(package: &ModelPackage, workflow: &Workflow) -> Result<Resolved, RuntimeError> {
    HyperParameters::resolve(&[
        (Origin::Package, &package.config.hyper_parameters),
        (Origin::Workflow, &workflow.training),
    ])
    .map_err(|error| RuntimeError::Package {
        path: workflow.model.clone(),
        message: format!("hyper-parameters: {error}"),
    })
}

/// The task's labels: the data's (the initiator's test data) matched to the package's head by
/// name under the effective `head` rule. Every node and the result use the plan's labels, so a
/// sample always meets the output of its own label.
pub fn plan_task_labels(
    package: &ModelPackage,
    workflow: &Workflow,
    data_labels: &[String],
) -> Result<LabelPlan, RuntimeError> {
    let head = resolve(package, workflow)?.values.head;
    plan_labels(package.labels(), None, data_labels, head).map_err(|error| RuntimeError::Package {
        path: workflow.model.clone(),
        message: error.to_string(),
    })
}

/// Whether a plan is worth a line in the log: anything but the package's head as it is.
pub fn plan_is_notable(plan: &LabelPlan) -> bool {
    !matches!(&plan.head, HeadPlan::Keep { reordered: false, unused } if unused.is_empty())
}

impl EffectiveSettings {
    /// Resolves the package's hyper-parameters under the workflow's `training` overrides.
    /// Fails, naming both sources, when they are invalid together.
    pub fn of(package: &ModelPackage, workflow: &Workflow) -> Result<Self, RuntimeError> {
        let resolved = resolve(package, workflow)?;
        Ok(Self::from_resolved(&resolved, package, workflow))
    }

    fn from_resolved(resolved: &Resolved, package: &ModelPackage, workflow: &Workflow) -> Self {
        Self {
            hyper_parameters: resolved.settings(false),
            augmentation: package
                .preprocessor
                .as_ref()
                .map_or_else(|| "none".to_owned(), |p| p.augmentation()),
            merge_epochs: workflow.merge_epochs,
            threads: workflow.threads,
            overrides: workflow.overrides.clone(),
        }
    }

    /// The lines logged at the task's start.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec!["effective settings (value, then where it comes from):".to_owned()];
        for s in &self.hyper_parameters {
            lines.push(setting_line(&s.key, &s.shown(), &s.source.to_string()));
        }
        lines.push(setting_line(
            "augmentation",
            &self.augmentation,
            PREPROCESSOR_FILE,
        ));
        lines.push(setting_line(
            "merge_epochs",
            &self.merge_epochs.to_string(),
            "workflow",
        ));
        lines.push(setting_line(
            "threads",
            &self.threads.to_string(),
            "workflow",
        ));
        for applied in &self.overrides {
            lines.push(format!("  overridden on the command line: {applied}"));
        }
        lines
    }

    /// Logs [`lines`](Self::lines) to the task log.
    pub fn log(&self, log: &NodeLog) {
        for line in self.lines() {
            log.info(line);
        }
    }

    /// The hyper-parameters as `config.json` keys, for the fine-tuned package (it records
    /// what it was trained with).
    pub fn config_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.hyper_parameters
            .iter()
            .map(|s| (s.key.clone(), s.value.clone()))
            .collect()
    }
}
