//! One round's training at the coordinator: broadcast the global weights, collect the
//! updates into the Aggregator until every training node answered or the calculation
//! timeout, retry without the quorum (boundedly), and summarise the round. A node that
//! restarts mid-round (its `Hello` comes again) is sent the round again; a duplicate of an
//! accepted update does not undo it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use fl_tensor::{Body, TensorSet, Weighting};

use crate::aggregator::{BeginRound, Finish, Offer};
use crate::coordinator::Coordinator;
use crate::error::RuntimeError;
use crate::events::TaskEvent;
use crate::faults::crash_point;
use crate::results::RoundSummary;

impl Coordinator {
    /// Runs one round's training until the quorum's updates are aggregated, retrying a
    /// bounded number of times. Returns the new global weights and the round's summary.
    pub(crate) async fn train_round(
        &mut self,
        round: u64,
        global: &Arc<TensorSet>,
        nodes: &[String],
        registered: &BTreeMap<String, u64>,
    ) -> Result<(TensorSet, RoundSummary), RuntimeError> {
        let started = Instant::now();
        let quorum = self.workflow.quorum as usize;
        let weighting = match self.workflow.aggregation.weighting {
            fl_workflow::Weighting::Samples => Weighting::Samples,
            fl_workflow::Weighting::Uniform => Weighting::Uniform,
        };
        let attempts = self.workflow.round_retries + 1;
        for attempt in 1..=attempts {
            let spool_dir = self
                .out
                .join("rounds")
                .join(format!("round-{round:05}"))
                .join(format!("attempt-{attempt}"));
            self.aggregator
                .send(BeginRound {
                    global: global.clone(),
                    task_id: self.task_id.clone(),
                    round,
                    expected: nodes.to_vec(),
                    weighting,
                    spool_dir,
                    registered: registered.clone(),
                })
                .await
                .map_err(|e| RuntimeError::Transport(e.to_string()))?
                .map_err(RuntimeError::Transport)?;
            self.emit(TaskEvent::RoundStarted {
                round,
                attempt,
                nodes: nodes.to_vec(),
                max_rounds: u64::from(self.workflow.max_rounds),
            });
            let train = Body::Train {
                digest: global.digest(),
                merge_epochs: self.workflow.merge_epochs,
            };
            for node in nodes {
                self.ask(node, round, global, train.clone());
            }
            let deadline = Self::deadline(self.workflow.timeouts.calculation.limit());
            let mut answered: BTreeMap<String, bool> = BTreeMap::new();
            let mut losses: Vec<(u64, f64)> = Vec::new();
            while answered.len() < nodes.len() {
                let Some(message) = self.next(deadline).await else {
                    break;
                };
                let sender = message.sender.clone();
                match message.body {
                    Body::Update { .. } => {
                        let result = self
                            .aggregator
                            .send(Offer(message.bytes))
                            .await
                            .map_err(|e| RuntimeError::Transport(e.to_string()))?;
                        match result {
                            Ok(accepted) => {
                                self.emit(TaskEvent::UpdateAccepted {
                                    round,
                                    node: sender.clone(),
                                    samples: accepted.samples,
                                    loss: accepted.metrics.loss,
                                    train_seconds: accepted
                                        .metrics
                                        .extra
                                        .get(crate::workers::TRAIN_SECONDS)
                                        .copied(),
                                });
                                self.recorder.training(round, &sender, &accepted.metrics, accepted.samples)?;
                                crash_point("during-aggregation", round);
                                if let Some(loss) = accepted.metrics.loss {
                                    losses.push((accepted.samples, loss));
                                }
                                answered.insert(sender, true);
                            }
                            Err(rejection) if message.round != round => self.log.warn(format!(
                                "round {round}: ignored a late update from `{sender}` (round {}): {rejection}",
                                message.round
                            )),
                            Err(rejection) => {
                                self.log.warn(format!(
                                    "round {round}: rejected the update from `{sender}`: {rejection}"
                                ));
                                self.emit(TaskEvent::UpdateRejected {
                                    round,
                                    node: sender.clone(),
                                    reason: rejection.to_string(),
                                });
                                // A duplicate of an accepted update (a node that
                                // trained the round again after a restart) does not undo it.
                                if nodes.contains(&sender) {
                                    answered.entry(sender).or_insert(false);
                                }
                            }
                        }
                    }
                    Body::Progress {
                        epoch,
                        epochs,
                        loss,
                    } if message.round == round => self.emit(TaskEvent::EpochFinished {
                        round,
                        node: sender,
                        epoch,
                        epochs,
                        loss,
                    }),
                    Body::Hello { .. }
                        if nodes.contains(&sender) && !answered.contains_key(&sender) =>
                    {
                        // The node restarted and lost the round's work: send it again.
                        self.log.warn(format!(
                            "round {round}: `{sender}` rejoined; sending it the round again"
                        ));
                        self.ask(&sender, round, global, train.clone());
                    }
                    Body::Failed { reason }
                        if message.round == round && nodes.contains(&sender) =>
                    {
                        self.log
                            .warn(format!("round {round}: `{sender}` failed: {reason}"));
                        self.emit(TaskEvent::Dropped {
                            round,
                            node: sender.clone(),
                            reason,
                        });
                        answered.insert(sender, false);
                    }
                    other => self.log.warn(format!(
                        "round {round}: ignored a `{}` message from `{sender}` (round {})",
                        other.kind(),
                        message.round
                    )),
                }
            }
            let accepted: Vec<String> = answered
                .iter()
                .filter(|(_, ok)| **ok)
                .map(|(n, _)| n.clone())
                .collect();
            let dropped: Vec<String> = nodes
                .iter()
                .filter(|n| !accepted.contains(n))
                .cloned()
                .collect();
            for node in dropped.iter().filter(|n| !answered.contains_key(*n)) {
                let reason = format!(
                    "no update within the calculation timeout ({})",
                    self.workflow.timeouts.calculation
                );
                self.log
                    .warn(format!("round {round}: `{node}` left out: {reason}"));
                self.emit(TaskEvent::Dropped {
                    round,
                    node: node.clone(),
                    reason,
                });
            }
            if accepted.len() >= quorum {
                let new_global = self
                    .aggregator
                    .send(Finish)
                    .await
                    .map_err(|e| RuntimeError::Transport(e.to_string()))?
                    .map_err(RuntimeError::Transport)?;
                // Sample counts are bounded by what each node registered; the sum is taken
                // wide so that no count can wrap it.
                let total: u128 = losses.iter().map(|(n, _)| u128::from(*n)).sum();
                let train_loss = (total > 0)
                    .then(|| losses.iter().map(|(n, l)| *n as f64 * l).sum::<f64>() / total as f64);
                return Ok((
                    new_global,
                    RoundSummary {
                        round,
                        participants: accepted,
                        dropped,
                        train_loss,
                        validation_accuracy: None,
                        test_accuracy: None,
                        seconds: started.elapsed().as_secs_f64(),
                    },
                ));
            }
            if attempt < attempts {
                self.log.warn(format!(
                    "round {round}: {} of the {quorum} updates the quorum needs; retrying (attempt {} of {attempts})",
                    accepted.len(),
                    attempt + 1
                ));
            } else {
                return Err(RuntimeError::NoQuorum {
                    round,
                    accepted: accepted.len(),
                    quorum,
                    attempts,
                    missing: dropped.join(", "),
                });
            }
        }
        unreachable!("the last attempt returns")
    }
}
