//! The sections with defaults: `aggregation`, `early_stopping`, `timeouts` and `training`.

use super::Checker;
use crate::error::Position;
use crate::keys;
use crate::workflow::{
    Aggregation, EarlyStopping, MAX_ROUNDS_LIMIT, StoppingMetric, Timeouts, Training, Weighting,
    defaults,
};
use crate::yaml::{Node, Value};
use fl_package::Scope;

impl Checker {
    pub(super) fn aggregation(
        &mut self,
        node: &Node,
        key: &str,
        at: Position,
    ) -> Option<Aggregation> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::AGGREGATION,
            "a mapping such as `{weighting: samples}`",
        )?;
        let weighting = self.or_default(&m, "weighting", Weighting::default(), |c, n, k| {
            c.choice(
                n,
                k,
                &[
                    ("samples", Weighting::Samples),
                    ("uniform", Weighting::Uniform),
                ],
            )
        });
        Some(Aggregation {
            weighting: weighting?,
        })
    }

    pub(super) fn early_stopping(
        &mut self,
        node: &Node,
        key: &str,
        at: Position,
    ) -> Option<EarlyStopping> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::EARLY_STOPPING,
            "a mapping such as `{metric: validation_accuracy, patience: 10}`",
        )?;
        let enabled = self.or_default(&m, "enabled", true, |c, n, k| c.boolean(n, k));
        let metric = self.or_default(&m, "metric", StoppingMetric::default(), |c, n, k| {
            c.choice(
                n,
                k,
                &[
                    ("validation_accuracy", StoppingMetric::ValidationAccuracy),
                    ("validation_loss", StoppingMetric::ValidationLoss),
                ],
            )
        });
        let patience = self.or_default(&m, "patience", defaults::PATIENCE, |c, n, k| {
            c.whole_u32(n, k, 1, MAX_ROUNDS_LIMIT)
        });
        Some(EarlyStopping {
            enabled: enabled?,
            metric: metric?,
            patience: patience?,
        })
    }

    pub(super) fn timeouts(&mut self, node: &Node, key: &str, at: Position) -> Option<Timeouts> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::TIMEOUTS,
            "a mapping such as `{schedule: 30s, calculation: 30m}`",
        )?;
        let schedule = self.or_default(&m, "schedule", defaults::SCHEDULE_TIMEOUT, |c, n, k| {
            c.timeout(n, k)
        });
        let calculation = self.or_default(
            &m,
            "calculation",
            defaults::CALCULATION_TIMEOUT,
            |c, n, k| c.timeout(n, k),
        );
        Some(Timeouts {
            schedule: schedule?,
            calculation: calculation?,
        })
    }

    /// `training`: checked against the hyper-parameter spec, as `config.json` is, every
    /// problem reported at its key in the workflow.
    pub(super) fn training(&mut self, node: &Node, key: &str, at: Position) -> Option<Training> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::TRAINING,
            "a mapping of hyper-parameters, such as `{learning_rate: 0.01}`",
        )?;
        let json: serde_json::Map<String, serde_json::Value> = m
            .entries
            .iter()
            .filter(|(_, n)| n.value != Value::Null)
            .map(|(k, n)| ((*k).to_owned(), n.to_json()))
            .collect();
        match Training::from_json(&json, Scope::Anywhere) {
            Ok(training) => Some(training),
            Err(problems) => {
                for p in problems {
                    let at = m
                        .get(p.key.split('.').next().unwrap_or_default())
                        .and_then(|n| n.find(p.key.split('.').skip(1)))
                        .map_or(m.at, |n| n.at);
                    self.error(at, &m.key(&p.key), p.message, Some(p.expected));
                }
                None
            }
        }
    }
}
