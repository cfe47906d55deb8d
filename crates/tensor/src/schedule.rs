//! The round-end decision: what the coordinator tells the initiator's model after a round
//! ([`Schedule`]), and what the model answers ([`Decision`]), with the default rules.
//!
//! The engine owns rounds, transport, timeouts, checkpoints and packaging; a model decides
//! only whether the round's global weights are the best so far and whether the task is
//! finished. A model that keeps the defaults gets [`Schedule::default_best`] and
//! [`Schedule::default_finished`]: at most `max_rounds`, and validation-driven early
//! stopping with the workflow's metric and patience.

use serde::{Deserialize, Serialize};

use crate::envelope::Metrics;

/// Which validation metric early stopping and the best state follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMetric {
    /// Higher validation accuracy is better.
    #[default]
    ValidationAccuracy,
    /// Lower validation loss is better.
    ValidationLoss,
}

impl StopMetric {
    /// A score where higher is better, when the metrics have the value and it is finite.
    pub fn score(self, metrics: &Metrics) -> Option<f64> {
        match self {
            StopMetric::ValidationAccuracy => metrics.accuracy,
            StopMetric::ValidationLoss => metrics.loss.map(|l| -l),
        }
        .filter(|s| s.is_finite())
    }

    /// What the metric is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            StopMetric::ValidationAccuracy => "validation accuracy",
            StopMetric::ValidationLoss => "validation loss",
        }
    }
}

/// One finished round as the schedule remembers it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoundRecord {
    /// The round (1-based).
    pub round: u64,
    /// The global weights' validation metrics on the initiator, when it has validation data.
    pub validation: Option<Metrics>,
    /// Mean training loss of the round's updates, weighted as they were aggregated.
    pub train_loss: Option<f64>,
}

/// Where the task stands at the end of a round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Schedule {
    /// The round just aggregated (1-based).
    pub round: u64,
    /// The workflow's `max_rounds`: the engine never runs more.
    pub max_rounds: u64,
    /// The workflow's early-stopping metric (also what "best" means by default).
    pub metric: StopMetric,
    /// The workflow's early-stopping patience, in validated rounds; `None` when early
    /// stopping is off (or the initiator has no validation data).
    pub patience: Option<u32>,
    /// Every round so far, oldest first. The coordinator sends the earlier rounds; the
    /// initiator appends this round's record (with its validation metrics) before asking
    /// the model, so the last entry is round [`round`](Self::round).
    pub history: Vec<RoundRecord>,
    /// The round whose weights are kept as the best so far (0: the initial weights).
    pub best_round: u64,
}

/// The model's answer at the end of a round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Decision {
    /// This round's global weights become the best state (what the result package gets).
    pub best: bool,
    /// The task is finished after this round, and why (for the task log).
    pub finished: Option<String>,
}

impl Schedule {
    /// This round's record, when [`history`](Self::history) holds it.
    pub fn current(&self) -> Option<&RoundRecord> {
        self.history.last().filter(|r| r.round == self.round)
    }

    /// The default best-state rule: this round's weights are the best when its validation
    /// score beats every earlier round's (ties keep the earlier state), or when this round
    /// has no validation metrics at all (then the latest state is kept).
    pub fn default_best(&self) -> bool {
        let Some(current) = self.current() else {
            return true;
        };
        let Some(validation) = &current.validation else {
            return true;
        };
        let Some(score) = self.metric.score(validation) else {
            return false;
        };
        self.history[..self.history.len() - 1]
            .iter()
            .filter_map(|r| r.validation.as_ref().and_then(|m| self.metric.score(m)))
            .all(|earlier| score > earlier)
    }

    /// Validated rounds since the best validation score (all validated rounds when none
    /// had a finite score).
    pub fn validated_rounds_since_best(&self) -> u32 {
        let mut best: Option<f64> = None;
        let mut since = 0u32;
        for record in &self.history {
            let Some(metrics) = &record.validation else {
                continue;
            };
            match self.metric.score(metrics) {
                Some(score) if best.is_none_or(|b| score > b) => {
                    best = Some(score);
                    since = 0;
                }
                _ => since = since.saturating_add(1),
            }
        }
        since
    }

    /// The default finishing rule: `max_rounds` reached, or `patience` validated rounds
    /// without a better validation score.
    pub fn default_finished(&self) -> Option<String> {
        if self.round >= self.max_rounds {
            return Some(format!("max_rounds ({}) reached", self.max_rounds));
        }
        let patience = self.patience?;
        let since = self.validated_rounds_since_best();
        (since >= patience)
            .then(|| format!("no better {} for {patience} rounds", self.metric.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(accuracies: &[Option<f64>], patience: Option<u32>) -> Schedule {
        Schedule {
            round: accuracies.len() as u64,
            max_rounds: 20,
            metric: StopMetric::ValidationAccuracy,
            patience,
            history: accuracies
                .iter()
                .enumerate()
                .map(|(i, a)| RoundRecord {
                    round: i as u64 + 1,
                    validation: a.map(|a| Metrics {
                        accuracy: Some(a),
                        loss: Some(1.0 - a),
                        ..Metrics::default()
                    }),
                    train_loss: None,
                })
                .collect(),
            best_round: 0,
        }
    }

    #[test]
    fn best_needs_a_strictly_better_score() {
        assert!(schedule(&[Some(0.5)], None).default_best());
        assert!(schedule(&[Some(0.5), Some(0.6)], None).default_best());
        assert!(
            !schedule(&[Some(0.6), Some(0.6)], None).default_best(),
            "ties keep the earlier"
        );
        assert!(!schedule(&[Some(0.6), Some(f64::NAN)], None).default_best());
        assert!(
            schedule(&[None, None], None).default_best(),
            "no validation: the latest"
        );
        let mut loss = schedule(&[Some(0.5), Some(0.4)], None);
        loss.metric = StopMetric::ValidationLoss;
        assert!(!loss.default_best(), "loss 0.6 is worse than 0.5");
    }

    #[test]
    fn patience_counts_validated_rounds_without_improvement() {
        let s = schedule(&[Some(0.5), Some(0.7), Some(0.6), Some(0.7)], Some(2));
        assert_eq!(s.validated_rounds_since_best(), 2);
        assert_eq!(
            s.default_finished().as_deref(),
            Some("no better validation accuracy for 2 rounds")
        );
        let s = schedule(&[Some(0.5), Some(0.7), Some(0.6)], Some(2));
        assert_eq!(s.default_finished(), None);
        assert_eq!(schedule(&[Some(0.5); 3], None).default_finished(), None);
        let mut last = schedule(&[Some(0.5)], None);
        last.max_rounds = 1;
        assert_eq!(
            last.default_finished().as_deref(),
            Some("max_rounds (1) reached")
        );
    }
}
