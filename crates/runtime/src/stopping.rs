//! Early stopping on the initiator's validation metrics: the best score so far and how many
//! validated rounds passed without beating it.

use fl_tensor::Metrics;
use fl_workflow::StoppingMetric;

/// Early-stopping bookkeeping: the best score and how many validated rounds since.
#[derive(Debug)]
pub(crate) struct Stopping {
    metric: StoppingMetric,
    patience: u32,
    best: Option<f64>,
    since_best: u32,
}

impl Stopping {
    pub(crate) fn new(metric: StoppingMetric, patience: u32) -> Self {
        Self {
            metric,
            patience,
            best: None,
            since_best: 0,
        }
    }

    /// Early stopping as checkpointed: the best score and validated rounds since.
    pub(crate) fn restore(
        metric: StoppingMetric,
        patience: u32,
        best: Option<f64>,
        since_best: u32,
    ) -> Self {
        Self {
            metric,
            patience,
            best,
            since_best,
        }
    }

    /// The best score and the validated rounds since (for checkpoints).
    pub(crate) fn state(&self) -> (Option<f64>, u32) {
        (self.best, self.since_best)
    }

    /// Records a round's validation metrics; returns whether it is the best so far.
    pub(crate) fn observe(&mut self, metrics: &Metrics) -> bool {
        let score = match self.metric {
            StoppingMetric::ValidationAccuracy => metrics.accuracy,
            StoppingMetric::ValidationLoss => metrics.loss.map(|l| -l),
        };
        let Some(score) = score.filter(|s| s.is_finite()) else {
            self.since_best += 1;
            return false;
        };
        if self.best.is_none_or(|best| score > best) {
            self.best = Some(score);
            self.since_best = 0;
            true
        } else {
            self.since_best += 1;
            false
        }
    }

    /// Whether patience ran out.
    pub(crate) fn should_stop(&self) -> bool {
        self.since_best >= self.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(a: f64) -> Metrics {
        Metrics {
            accuracy: Some(a),
            loss: Some(1.0 - a),
            ..Metrics::default()
        }
    }

    #[test]
    fn early_stopping_counts_rounds_without_improvement() {
        let mut s = Stopping::new(StoppingMetric::ValidationAccuracy, 2);
        assert!(s.observe(&accuracy(0.5)));
        assert!(!s.observe(&accuracy(0.5)), "a tie is no improvement");
        assert!(!s.should_stop());
        assert!(!s.observe(&accuracy(0.4)));
        assert!(s.should_stop());
        assert!(s.observe(&accuracy(0.6)));
        assert!(!s.should_stop());

        let mut by_loss = Stopping::new(StoppingMetric::ValidationLoss, 1);
        assert!(by_loss.observe(&accuracy(0.5)));
        assert!(by_loss.observe(&accuracy(0.7)), "lower loss is better");
        assert!(!by_loss.observe(&accuracy(0.6)));
        assert!(by_loss.should_stop());
    }
}
