//! The nodes: the initiator with its datasets, and the list of participants.

use super::{Checker, DATASET, DatasetUse, IDENTIFIER};
use crate::error::Position;
use crate::keys;
use crate::workflow::{Initiator, Participant};
use crate::yaml::{Node, Value};

impl Checker {
    pub(super) fn initiator(
        &mut self,
        node: &Node,
        at: Position,
        datasets: &mut Vec<DatasetUse>,
    ) -> Option<Initiator> {
        let m = self.mapping(
            node,
            "initiator",
            at,
            &keys::INITIATOR,
            "a mapping with `node`, `test` and optionally `train`, `validation`",
        )?;
        let id = match m.get("node") {
            None => {
                self.missing(&m, "node", format!("the initiator's node id: {IDENTIFIER}"));
                None
            }
            Some(n) => self.node_id(n, "initiator.node"),
        };
        self.initiator_trains = Some(m.optional("train").is_some());
        let train = self.or_none(&m, "train", |c, n, k| c.dataset(n, k, datasets));
        let validation = self.or_none(&m, "validation", |c, n, k| c.dataset(n, k, datasets));
        let test = match m.get("test") {
            None => {
                self.missing(&m, "test", format!("the test data: {DATASET}"));
                None
            }
            Some(n) => self.dataset(n, "initiator.test", datasets),
        };
        Some(Initiator {
            node: id?,
            train: train?,
            validation: validation?,
            test: test?,
        })
    }

    pub(super) fn participants(
        &mut self,
        node: &Node,
        datasets: &mut Vec<DatasetUse>,
    ) -> Option<Vec<Participant>> {
        const ITEM: &str = "a mapping with `node` and `data`";
        let Value::Seq(items) = &node.value else {
            self.wrong(
                node,
                "participants",
                format!("a list of participants, each {ITEM}"),
            );
            return None;
        };
        self.participant_count = Some(items.len());
        let mut participants = Some(Vec::with_capacity(items.len()));
        for (i, item) in items.iter().enumerate() {
            let path = format!("participants[{i}]");
            let participant = self
                .mapping(item, &path, item.at, &keys::PARTICIPANT, ITEM)
                .and_then(|m| {
                    let id = match m.get("node") {
                        None => {
                            self.missing(
                                &m,
                                "node",
                                format!("the participant's node id: {IDENTIFIER}"),
                            );
                            None
                        }
                        Some(n) => self.node_id(n, &m.key("node")),
                    };
                    let data = match m.get("data") {
                        None => {
                            self.missing(
                                &m,
                                "data",
                                format!("the participant's training data: {DATASET}"),
                            );
                            None
                        }
                        Some(n) => self.dataset(n, &m.key("data"), datasets),
                    };
                    Some(Participant {
                        node: id?,
                        data: data?,
                    })
                });
            match (participant, participants.as_mut()) {
                (Some(p), Some(list)) => list.push(p),
                _ => participants = None,
            }
        }
        participants
    }
    /// Reads a node id and remembers it for the uniqueness check.
    pub(super) fn node_id(&mut self, node: &Node, key: &str) -> Option<String> {
        let id = self.identifier(node, key, 64, false)?;
        self.nodes.push((id.clone(), key.to_owned(), node.at));
        Some(id)
    }
}
