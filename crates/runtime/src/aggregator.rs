//! The Aggregator actor: the coordinator's streaming FedAvg (`fl_tensor::Aggregator`) on its
//! own thread, since accepting an update decodes, checks and durably spools it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use fl_tensor::{Accepted, Aggregator, Rejection, TensorSet, Weighting};

/// Owns the current round's aggregation.
#[derive(Debug, Default)]
pub struct AggregatorActor {
    current: Option<Aggregator>,
}

impl Actor for AggregatorActor {
    type Context = SyncContext<Self>;
}

/// Starts aggregating a round (or a retry of it) over `expected` nodes.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct BeginRound {
    /// The round's global weights.
    pub global: Arc<TensorSet>,
    /// The task.
    pub task_id: String,
    /// The round.
    pub round: u64,
    /// The nodes asked to train.
    pub expected: Vec<String>,
    /// Weighting.
    pub weighting: Weighting,
    /// Where updates are spooled.
    pub spool_dir: PathBuf,
    /// The training samples each node checked in with: the most its updates may claim.
    pub registered: BTreeMap<String, u64>,
}

impl Handler<BeginRound> for AggregatorActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: BeginRound, _: &mut Self::Context) -> Self::Result {
        let mut aggregator = Aggregator::new(
            &msg.global,
            msg.task_id,
            msg.round,
            msg.expected,
            msg.weighting,
            msg.spool_dir,
        )
        .map_err(|e| e.to_string())?;
        aggregator.limit_samples(msg.registered);
        self.current = Some(aggregator);
        Ok(())
    }
}

/// Offers an encoded update.
#[derive(Debug, Message)]
#[rtype(result = "Result<Accepted, Rejection>")]
pub struct Offer(pub Vec<u8>);

impl Handler<Offer> for AggregatorActor {
    type Result = Result<Accepted, Rejection>;

    fn handle(&mut self, Offer(bytes): Offer, _: &mut Self::Context) -> Self::Result {
        match &mut self.current {
            Some(aggregator) => aggregator.offer(&bytes),
            None => Err(Rejection::NotAnUpdate {
                sender: String::new(),
                kind: "update outside a round",
            }),
        }
    }
}

/// Folds the accepted updates into the new global weights.
#[derive(Debug, Message)]
#[rtype(result = "Result<TensorSet, String>")]
pub struct Finish;

impl Handler<Finish> for AggregatorActor {
    type Result = Result<TensorSet, String>;

    fn handle(&mut self, _: Finish, _: &mut Self::Context) -> Self::Result {
        let aggregator = self.current.take().ok_or("no round to finish")?;
        aggregator.finish().map_err(|e| e.to_string())
    }
}
