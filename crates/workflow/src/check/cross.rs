//! Checks across keys and against the file system: unique node ids, datasets against the
//! transport, the model package.

use std::path::Path;

use super::{Checker, DatasetUse};
use crate::error::Position;
use crate::workflow::{Dataset, Transport};

impl Checker {
    /// Node ids are unique across the initiator and the participants.
    pub(super) fn unique_nodes(&mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        for (i, (id, key, at)) in nodes.iter().enumerate() {
            if let Some((_, first, _)) = nodes[..i].iter().find(|(other, _, _)| other == id) {
                self.error(
                    *at,
                    key,
                    format!("node id `{id}` is already used by `{first}`"),
                    Some("node ids unique across the initiator and the participants".to_owned()),
                );
            }
        }
    }

    /// Datasets given by name need agents; directories must exist for an embedded run.
    pub(super) fn check_datasets(&mut self, datasets: &[DatasetUse], transport: &Transport) {
        for DatasetUse { key, at, dataset } in datasets {
            match (dataset, transport) {
                (Dataset::Named { name }, Transport::Embedded) => self.error(
                    *at,
                    key,
                    format!(
                        "dataset `{name}` is given by name, which needs an agent that registered it, but the transport is embedded"
                    ),
                    Some("a dataset directory, or `transport: {nats: ...}` for a distributed run".to_owned()),
                ),
                (Dataset::Path(path), Transport::Embedded) if !path.is_dir() => {
                    let what = if path.exists() { "is not a directory" } else { "does not exist" };
                    self.error(
                        *at,
                        key,
                        format!("{} {what}", path.display()),
                        Some("an existing dataset directory (with annotation.json or annotations.xml), relative to the workflow file".to_owned()),
                    );
                }
                // Over NATS, each agent's paths are its own; nothing to check here.
                _ => {}
            }
        }
    }

    /// The model is a package directory or a `.zip` file; neither is opened here.
    pub(super) fn check_model(&mut self, model: &Path, at: Position) {
        const ACCEPTED: &str =
            "a model package directory, or a model.zip, relative to the workflow file";
        let problem = if model.is_dir() {
            None
        } else if model.is_file() {
            let zip = model
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
            (!zip).then_some("is a file but not a .zip")
        } else if model.exists() {
            Some("is neither a directory nor a file")
        } else {
            Some("does not exist")
        };
        if let Some(problem) = problem {
            self.error(
                at,
                "model",
                format!("{} {problem}", model.display()),
                Some(ACCEPTED.to_owned()),
            );
        }
    }
}
