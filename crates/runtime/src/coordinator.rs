//! The coordinator's round state machine (AlphaMed's initiator side): check-in, then per
//! round broadcast the global weights, collect updates until every node answered or the
//! calculation timeout, aggregate if the quorum is met (otherwise retry, boundedly), validate
//! and test on the initiator, decide on early stopping, and record everything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use actix::Addr;
use fl_telemetry::NodeLog;
use fl_tensor::{
    Body, Decision, Envelope, Metrics, PackageFile, RoundRecord, Schedule, StopMetric, TensorSet,
};
use fl_workflow::{StoppingMetric, Workflow};

use crate::aggregator::AggregatorActor;
use crate::checkpoint;
use crate::error::RuntimeError;
use crate::events::TaskEvent;
use crate::faults::crash_point;
use crate::node::send;
use crate::recorder::Recorder;
use crate::results::{ParticipantSummary, RoundSummary};
use fl_transport::{COORDINATOR, Inbox, Transport};

/// What the rounds produced, for the Packager.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub best: TensorSet,
    pub best_round: u64,
    pub best_validation: Option<Metrics>,
    pub final_test: Option<Metrics>,
    pub rounds: Vec<RoundSummary>,
    pub participants: Vec<ParticipantSummary>,
    pub stopped_early: bool,
    /// The model's extra result files, from the initiator.
    pub files: Vec<PackageFile>,
}

/// Runs the rounds of a task.
pub(crate) struct Coordinator {
    pub workflow: Workflow,
    pub task_id: String,
    pub transport: Arc<dyn Transport>,
    pub inbox: Inbox,
    pub aggregator: Addr<AggregatorActor>,
    pub events: Option<Sender<TaskEvent>>,
    pub log: NodeLog,
    pub out: PathBuf,
    pub recorder: Recorder,
    /// The workflow's digest (checkpoints carry it).
    pub digest: String,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("task_id", &self.task_id)
            .finish_non_exhaustive()
    }
}

/// A decoded message at the coordinator.
pub(crate) struct Incoming {
    pub sender: String,
    pub round: u64,
    pub body: Body,
    pub bytes: Vec<u8>,
}

/// " from `node`" when the transport proved the sender.
fn from_whom(from: Option<&str>) -> String {
    from.map_or(String::new(), |node| format!(" from `{node}`"))
}

/// At most 64 characters of a name a message gave, for logs.
fn truncated(name: &str) -> String {
    const MAX: usize = 64;
    match name.char_indices().nth(MAX) {
        None => name.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &name[..end], name.len()),
    }
}

impl Coordinator {
    pub(crate) fn emit(&self, event: TaskEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// The next decodable message from a node of this task, or `None` when `deadline`
    /// passes (or the transport closed). Remote nodes' log lines go to the task log. A
    /// message whose envelope names another sender than the transport proved (the node whose
    /// subject it came on) is refused as an impersonation attempt.
    pub(crate) async fn next(&mut self, deadline: Option<Instant>) -> Option<Incoming> {
        loop {
            let delivery = match deadline {
                None => self.inbox.recv_delivery().await?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::timeout(left, self.inbox.recv_delivery())
                        .await
                        .ok()??
                }
            };
            let envelope = match Envelope::decode(&delivery.bytes) {
                Ok(envelope) => envelope,
                Err(error) => {
                    self.log.warn(format!(
                        "ignored an undecodable message{}: {error}",
                        from_whom(delivery.from.as_deref())
                    ));
                    continue;
                }
            };
            if let Some(from) = &delivery.from
                && *from != envelope.sender
            {
                self.log.error(format!(
                    "refused an impersonation attempt: a `{}` message naming `{}` as its \
                     sender came on `{}`, the subject only `{from}` may publish on",
                    envelope.body.kind(),
                    truncated(&envelope.sender),
                    fl_transport::from_subject(&self.task_id, from),
                ));
                continue;
            }
            if envelope.task_id != self.task_id {
                self.log.warn(format!(
                    "ignored a message from `{}` for task `{}`",
                    truncated(&envelope.sender),
                    truncated(&envelope.task_id)
                ));
                continue;
            }
            if let Body::Log {
                unix_ms,
                level,
                message,
            } = envelope.body
            {
                // A remote node's log line joins the task log with its own time.
                let line = fl_telemetry::LogLine {
                    unix_ms,
                    node: envelope.sender,
                    level: level.parse().unwrap_or(fl_telemetry::Level::Info),
                    message,
                };
                if let Err(error) = self.log.task_log().append(line) {
                    tracing::warn!("task log: {error}");
                }
                continue;
            }
            return Some(Incoming {
                sender: envelope.sender,
                round: envelope.round,
                body: envelope.body,
                bytes: delivery.bytes,
            });
        }
    }

    pub(crate) fn deadline(limit: Option<Duration>) -> Option<Instant> {
        limit.map(|d| Instant::now() + d)
    }

    /// Waits until every node checked in; returns training samples per node.
    pub(crate) async fn check_in(
        &mut self,
        nodes: &[String],
    ) -> Result<BTreeMap<String, u64>, RuntimeError> {
        let deadline = Self::deadline(self.workflow.timeouts.schedule.limit());
        let mut seen = BTreeMap::new();
        while seen.len() < nodes.len() {
            let Some(message) = self.next(deadline).await else {
                let missing: Vec<&str> = nodes
                    .iter()
                    .filter(|n| !seen.contains_key(*n))
                    .map(String::as_str)
                    .collect();
                return Err(RuntimeError::CheckIn {
                    timeout: self.workflow.timeouts.schedule.to_string(),
                    missing: missing.join(", "),
                });
            };
            if let Body::Failed { reason } = &message.body
                && nodes.contains(&message.sender)
            {
                return Err(RuntimeError::Agent {
                    node: message.sender,
                    reason: format!("could not start: {reason}"),
                });
            }
            if let Body::Hello { train, .. } = message.body
                && nodes.contains(&message.sender)
            {
                self.log.info(format!(
                    "`{}` checked in with {train} training samples",
                    message.sender
                ));
                self.emit(TaskEvent::CheckedIn {
                    node: message.sender.clone(),
                    train,
                });
                seen.insert(message.sender, train);
            }
        }
        Ok(seen)
    }

    /// Sends `to` the global weights and then `request` about them (train or evaluate): a
    /// node caches weights by digest, so every request comes with the weights it names.
    pub(crate) fn ask(&self, to: &str, round: u64, global: &TensorSet, request: Body) {
        for body in [Body::global_weights(global.clone()), request] {
            send(
                &*self.transport,
                &self.task_id,
                COORDINATOR,
                to,
                round,
                body,
            );
        }
    }

    /// Asks the initiator to validate `global`, decide on the best state and the end of the
    /// task, and test `global` when `test`: (validation, test, decision).
    async fn decide(
        &mut self,
        round: u64,
        global: &TensorSet,
        schedule: Schedule,
        test: bool,
    ) -> Result<(Option<Metrics>, Option<Metrics>, Decision), RuntimeError> {
        let request = Body::Decide {
            digest: global.digest(),
            schedule,
            test,
        };
        self.ask_initiator(
            round,
            global,
            request,
            "round-end decision",
            |body| match body {
                Body::Decided {
                    validation,
                    test,
                    decision,
                } => Some((validation, test, decision)),
                _ => None,
            },
        )
        .await
    }

    /// Asks the initiator to test the best weights and send the model's extra result files.
    async fn finish(
        &mut self,
        round: u64,
        best: &TensorSet,
    ) -> Result<(Option<Metrics>, Vec<PackageFile>), RuntimeError> {
        let request = Body::Finish {
            digest: best.digest(),
        };
        self.ask_initiator(round, best, request, "final test", |body| match body {
            Body::Finished { test, files } => Some((test, files)),
            _ => None,
        })
        .await
    }

    /// Sends `request` with `global` to the initiator and waits (within the calculation
    /// timeout) for the answer `accept` takes; asks again when the initiator rejoined.
    async fn ask_initiator<T>(
        &mut self,
        round: u64,
        global: &TensorSet,
        request: Body,
        what: &str,
        accept: impl Fn(Body) -> Option<T>,
    ) -> Result<T, RuntimeError> {
        let node = self.workflow.initiator.node.clone();
        self.ask(&node, round, global, request.clone());
        let deadline = Self::deadline(self.workflow.timeouts.calculation.limit());
        loop {
            let Some(message) = self.next(deadline).await else {
                return Err(RuntimeError::Evaluation {
                    node,
                    reason: format!(
                        "no {what} within the calculation timeout ({})",
                        self.workflow.timeouts.calculation
                    ),
                });
            };
            if matches!(message.body, Body::Hello { .. }) && message.sender == node {
                // The node restarted (its agent was restarted): it lost the request.
                self.log.warn(format!(
                    "round {round}: `{node}` rejoined; asking it again for the {what}"
                ));
                self.ask(&node, round, global, request.clone());
                continue;
            }
            if message.sender != node || message.round != round {
                self.log.warn(format!(
                    "round {round}: ignored a late `{}` message from `{}` (round {})",
                    message.body.kind(),
                    message.sender,
                    message.round
                ));
                continue;
            }
            let kind = message.body.kind();
            match message.body {
                Body::Failed { reason } => return Err(RuntimeError::Evaluation { node, reason }),
                body => match accept(body) {
                    Some(answer) => return Ok(answer),
                    None => self.log.warn(format!(
                        "round {round}: ignored a `{kind}` message from `{node}`"
                    )),
                },
            }
        }
    }

    /// The schedule the initiator's model decides on after `round`: the workflow's limits
    /// and every round so far (this one without its validation metrics yet).
    fn schedule(&self, round: u64, history: &[RoundRecord], best_round: u64) -> Schedule {
        let early = &self.workflow.early_stopping;
        Schedule {
            round,
            max_rounds: u64::from(self.workflow.max_rounds),
            metric: match early.metric {
                StoppingMetric::ValidationAccuracy => StopMetric::ValidationAccuracy,
                StoppingMetric::ValidationLoss => StopMetric::ValidationLoss,
            },
            patience: (self.workflow.early_stopping_active()
                && self.workflow.initiator.validation.is_some())
            .then_some(early.patience),
            history: history.to_vec(),
            best_round,
        }
    }

    /// Runs every round from `initial`; returns what the Packager needs.
    pub(crate) async fn run(
        &mut self,
        initial: TensorSet,
        samples: &BTreeMap<String, u64>,
        resume: Option<checkpoint::Loaded>,
    ) -> Result<Outcome, RuntimeError> {
        let nodes: Vec<String> = self
            .workflow
            .training_nodes()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut global = Arc::new(initial);
        let mut best = (global.as_ref().clone(), 0u64, None::<Metrics>);
        let mut rounds = Vec::new();
        let mut history: Vec<RoundRecord> = Vec::new();
        let mut contributed: BTreeMap<String, u32> = BTreeMap::new();
        let mut stopped_early = false;
        let max_rounds = u64::from(self.workflow.max_rounds);
        let mut first = 1;
        if let Some(loaded) = resume {
            let state = loaded.state;
            global = Arc::new(loaded.global);
            best = (loaded.best, state.best_round, state.best_validation);
            rounds = state.rounds;
            history = state.history;
            contributed = state.contributed;
            first = state.round + 1;
            if state.finished.is_some() && state.round < max_rounds {
                // The checkpointed round was the one that ended the task.
                stopped_early = true;
                first = max_rounds + 1;
            }
        }
        let workflow_json = serde_json::to_value(&self.workflow).unwrap_or_default();
        for round in first..=max_rounds {
            let (new_global, mut summary) =
                self.train_round(round, &global, &nodes, samples).await?;
            for node in &summary.participants {
                *contributed.entry(node.clone()).or_default() += 1;
            }
            global = Arc::new(new_global);
            history.push(RoundRecord {
                round,
                validation: None,
                train_loss: summary.train_loss,
            });
            let schedule = self.schedule(round, &history, best.1);
            let tests = self.workflow.tests_round(round as u32);
            let (validation, test, decision) = self.decide(round, &global, schedule, tests).await?;
            if let Some(record) = history.last_mut() {
                record.validation = validation.clone();
            }
            summary.validation_accuracy = validation.as_ref().and_then(|m| m.accuracy);
            summary.test_accuracy = test.as_ref().and_then(|m| m.accuracy);
            summary.seconds = summary.seconds.max(0.0);
            if decision.best {
                best = (global.as_ref().clone(), round, validation.clone());
            }
            self.recorder.evaluation(
                round,
                &self.workflow.initiator.node,
                validation.as_ref(),
                test.as_ref(),
                summary.seconds,
            )?;
            self.log.info(format!(
                "round {round}: {} update(s) aggregated{}{}{}",
                summary.participants.len(),
                summary
                    .train_loss
                    .map_or(String::new(), |l| format!(", train loss {l:.4}")),
                summary
                    .validation_accuracy
                    .map_or(String::new(), |a| format!(
                        ", validation accuracy {:.2}%",
                        a * 100.0
                    )),
                summary.test_accuracy.map_or(String::new(), |a| format!(
                    ", test accuracy {:.2}%",
                    a * 100.0
                )),
            ));
            self.emit(TaskEvent::RoundFinished(summary.clone()));
            rounds.push(summary);
            let state = checkpoint::State {
                version: 1,
                task_id: self.task_id.clone(),
                workflow_digest: self.digest.clone(),
                workflow: workflow_json.clone(),
                round,
                best_round: best.1,
                best_validation: best.2.clone(),
                history: history.clone(),
                finished: decision.finished.clone(),
                rounds: rounds.clone(),
                contributed: contributed.clone(),
                samples: samples.clone(),
                seed: self.workflow.seed,
                global_digest: global.digest().to_string(),
                best_digest: best.0.digest().to_string(),
            };
            checkpoint::write(&self.out, &state, &global, &best.0)
                .map_err(|e| RuntimeError::Recover(Box::new(e)))?;
            crash_point("after-checkpoint", round);
            // The checkpoint covers the round: its spooled updates are needed by nothing
            // (recovery resumes after it, or reruns it from scratch after falling back to the
            // previous checkpoint).
            let spool = self.out.join("rounds").join(format!("round-{round:05}"));
            if let Err(error) = std::fs::remove_dir_all(&spool)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                self.log
                    .warn(format!("cannot remove {}: {error}", spool.display()));
            }
            if let Some(reason) = decision.finished.filter(|_| round < max_rounds) {
                self.log
                    .info(format!("early stopping after round {round}: {reason}"));
                stopped_early = true;
                break;
            }
        }
        let (best_weights, best_round, best_validation) = best;
        let (final_test, files) = self.finish(best_round.max(1), &best_weights).await?;
        for node in self
            .workflow
            .participants
            .iter()
            .map(|p| p.node.clone())
            .chain(std::iter::once(self.workflow.initiator.node.clone()))
        {
            send(
                &*self.transport,
                &self.task_id,
                COORDINATOR,
                &node,
                0,
                Body::Stop {
                    reason: "the task is finished".into(),
                },
            );
        }
        let participants = nodes
            .iter()
            .map(|node| ParticipantSummary {
                node: node.clone(),
                samples: samples.get(node).copied().unwrap_or(0),
                rounds_contributed: contributed.get(node).copied().unwrap_or(0),
            })
            .collect();
        Ok(Outcome {
            best: best_weights,
            best_round,
            best_validation,
            final_test,
            rounds,
            participants,
            stopped_early,
            files,
        })
    }
}
