//! The sections with defaults: `aggregation`, `early_stopping`, `timeouts` and `training`.

use super::Checker;
use crate::error::Position;
use crate::keys;
use crate::workflow::{
    Aggregation, EarlyStopping, MAX_ROUNDS_LIMIT, Optimizer, StoppingMetric, Timeouts, Training,
    Weighting, defaults,
};
use crate::yaml::Node;

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

    pub(super) fn training(&mut self, node: &Node, key: &str, at: Position) -> Option<Training> {
        let m = self.mapping(
            node,
            key,
            at,
            &keys::TRAINING,
            "a mapping of hyper-parameters, such as `{learning_rate: 0.01}`",
        )?;
        let learning_rate = self.or_none(&m, "learning_rate", |c, n, k| {
            c.number(n, k, |x| x > 0.0, "a number greater than 0")
        });
        let batch_size = self.or_none(&m, "batch_size", |c, n, k| c.whole_u32(n, k, 1, u32::MAX));
        let optimizer = self.or_none(&m, "optimizer", |c, n, k| {
            c.choice(n, k, &[("adam", Optimizer::Adam), ("sgd", Optimizer::Sgd)])
        });
        let momentum = self.or_none(&m, "momentum", |c, n, k| {
            c.number(
                n,
                k,
                |x| (0.0..1.0).contains(&x),
                "a number from 0 to below 1",
            )
        });
        let weight_decay = self.or_none(&m, "weight_decay", |c, n, k| {
            c.number(n, k, |x| x >= 0.0, "a number from 0")
        });
        let lr_step_size =
            self.or_none(&m, "lr_step_size", |c, n, k| c.whole_u32(n, k, 0, u32::MAX));
        let lr_gamma = self.or_none(&m, "lr_gamma", |c, n, k| {
            c.number(
                n,
                k,
                |x| x > 0.0 && x <= 1.0,
                "a number greater than 0 and at most 1",
            )
        });
        if let (Some(Some(Optimizer::Adam)), Some(Some(_))) = (optimizer, momentum) {
            self.error(
                Self::at(&m, "momentum"),
                &m.key("momentum"),
                "momentum applies to SGD only, and `optimizer` is `adam`",
                Some("no `momentum` with Adam, or `optimizer: sgd`".to_owned()),
            );
        }
        Some(Training {
            learning_rate: learning_rate?,
            batch_size: batch_size?,
            optimizer: optimizer?,
            momentum: momentum?,
            weight_decay: weight_decay?,
            lr_step_size: lr_step_size?,
            lr_gamma: lr_gamma?,
        })
    }
}
