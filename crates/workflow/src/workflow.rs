//! The workflow of a FedAvg task, with every default filled in: what the parser produces,
//! what `Serialize` prints, what the digest covers and what the JSON Schema describes.
//!
//! The doc comments of these types become the JSON Schema's descriptions, so they are
//! written for the person editing the YAML file and state every default.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::duration::Timeout;

/// Defaults of keys that may be left out.
pub mod defaults {
    use crate::duration::Timeout;

    /// `seed`.
    pub const SEED: u64 = 0;
    /// `max_rounds`.
    pub const MAX_ROUNDS: u32 = 20;
    /// `merge_epochs`.
    pub const MERGE_EPOCHS: u32 = 1;
    /// `log_rounds`.
    pub const LOG_ROUNDS: u32 = 1;
    /// `early_stopping.patience`.
    pub const PATIENCE: u32 = 10;
    /// `timeouts.schedule`.
    pub const SCHEDULE_TIMEOUT: Timeout = Timeout::from_millis(30_000);
    /// `timeouts.calculation`.
    pub const CALCULATION_TIMEOUT: Timeout = Timeout::from_millis(30 * 60_000);
    /// `round_retries`.
    pub const ROUND_RETRIES: u32 = 2;
    /// `threads`.
    pub const THREADS: u32 = 1;
    /// The directory under which `output` defaults to `<name>`, relative to the workflow file.
    pub const OUTPUT_PARENT: &str = "runs";

    // Functions for the JSON Schema's `default` values.
    pub(crate) fn seed() -> u64 {
        SEED
    }
    pub(crate) fn max_rounds() -> u32 {
        MAX_ROUNDS
    }
    pub(crate) fn merge_epochs() -> u32 {
        MERGE_EPOCHS
    }
    pub(crate) fn log_rounds() -> u32 {
        LOG_ROUNDS
    }
    pub(crate) fn patience() -> u32 {
        PATIENCE
    }
    pub(crate) fn enabled() -> bool {
        true
    }
    pub(crate) fn schedule() -> Timeout {
        SCHEDULE_TIMEOUT
    }
    pub(crate) fn calculation() -> Timeout {
        CALCULATION_TIMEOUT
    }
    pub(crate) fn round_retries() -> u32 {
        ROUND_RETRIES
    }
    pub(crate) fn threads() -> u32 {
        THREADS
    }
}

/// The workflow format versions this engine reads.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// Largest accepted `max_rounds`.
pub const MAX_ROUNDS_LIMIT: u32 = 100_000;
/// Largest accepted `merge_epochs`.
pub const MERGE_EPOCHS_LIMIT: u32 = 10_000;
/// Largest accepted `round_retries`.
pub const ROUND_RETRIES_LIMIT: u32 = 100;
/// Largest accepted `threads`.
pub const THREADS_LIMIT: u32 = 1024;

/// A FedAvg task: which model to fine-tune, which nodes hold which data, how rounds run.
///
/// Version 1 of the workflow format. Relative paths are relative to the directory of the
/// workflow file. Keys not listed here are errors.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(title = "fedengine FedAvg workflow", deny_unknown_fields)]
pub struct Workflow {
    /// Version of the workflow format. Required; only `1` exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// The task's name: letters, digits, `-` and `_` (at most 64, starting with a letter or
    /// digit). Names the task in logs and messages and the default output directory
    /// `runs/<name>`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"))]
    pub name: String,
    /// Seed of every random choice (head initialisation, data order, augmentation). The same
    /// workflow, seed and `threads` give bit-identical weights. Default: 0.
    #[schemars(default = "defaults::seed")]
    pub seed: u64,
    /// The model package to fine-tune: a package directory (with `README.md`,
    /// `config.json`, weights) or a `model.zip` written by an earlier task.
    #[serde(serialize_with = "lossy_path")]
    pub model: PathBuf,
    /// The initiator (aggregator): coordinates the task, holds the test data (and the
    /// validation data, for early stopping), and trains too when it has `train` data.
    pub initiator: Initiator,
    /// The data owners that train on their private data each round. Node ids are unique
    /// across the initiator and the participants. May be empty only when the initiator
    /// trains. Default: none.
    #[schemars(default, with = "Option<Vec<Participant>>")]
    pub participants: Vec<Participant>,
    /// Number of FedAvg rounds, at most (early stopping may end the task sooner). Default: 20.
    #[schemars(default = "defaults::max_rounds", range(min = 1, max = 100_000))]
    pub max_rounds: u32,
    /// Local epochs each training node runs per round, from the round's global weights.
    /// Default: 1.
    #[schemars(default = "defaults::merge_epochs", range(min = 1, max = 10_000))]
    pub merge_epochs: u32,
    /// Test the global model every this many rounds; the first and the last round are always
    /// tested. At most `max_rounds`. Default: 1 (every round).
    #[schemars(default = "defaults::log_rounds", range(min = 1))]
    pub log_rounds: u32,
    /// How updates are averaged. Default: weighting by samples.
    #[schemars(default, with = "Option<Aggregation>")]
    pub aggregation: Aggregation,
    /// Early stopping on the initiator's validation data. Default: enabled, on validation
    /// accuracy, patience 10. Without `initiator.validation` it is off (the last round's
    /// model is kept); writing this section, other than `enabled: false`, without validation
    /// data is an error.
    #[schemars(default, with = "Option<EarlyStopping>")]
    pub early_stopping: EarlyStopping,
    /// Bounds on every wait of a round. Default: schedule 30s, calculation 30m.
    #[schemars(default, with = "Option<Timeouts>")]
    pub timeouts: Timeouts,
    /// Minimum number of training nodes (participants, plus the initiator when it trains)
    /// whose updates a round needs. Default: all of them.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub quorum: u32,
    /// How many times a round without quorum is run again before the task fails. Default: 2.
    #[schemars(default = "defaults::round_retries", range(max = 100))]
    pub round_retries: u32,
    /// Overrides of the model package's hyper-parameters (from its `config.json`). Keys left
    /// out keep the package's values. Default: none.
    #[schemars(default, with = "Option<TrainingSchema>")]
    pub training: Training,
    /// libtorch threads per training node. Part of the reproducibility contract: 1 and 2
    /// threads give different floating-point sums. Default: 1.
    #[schemars(default = "defaults::threads", range(min = 1, max = 1024))]
    pub threads: u32,
    /// Directory for the results (`model.zip`, `report.zip`, checkpoints, task log).
    /// Default: `runs/<name>` next to the workflow file.
    #[serde(serialize_with = "lossy_path")]
    #[schemars(with = "Option<PathBuf>")]
    pub output: PathBuf,
    /// How nodes talk. Default: `embedded` (every node in this process).
    #[schemars(default)]
    pub transport: Transport,
    /// The command-line overrides applied to the file, as `KEY=VALUE` in the order applied
    /// (`--output DIR` as `output=ABSOLUTE_DIR`), for the task's records; not a key of the
    /// file, and not covered by [`Workflow::digest`] (their effect on the values is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(skip)]
    pub overrides: Vec<String>,
}

/// The initiator (aggregator) node and its data.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Initiator {
    /// Node id: letters, digits, `-` and `_` (at most 64, starting with a letter or digit).
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"))]
    pub node: String,
    /// Training data (its `Train` split): the initiator then trains like a participant.
    /// Default: none (the initiator only aggregates and evaluates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<Dataset>,
    /// Validation data (its `Validation` split), for early stopping and the best state.
    /// Default: none (no early stopping; the last round's model is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Dataset>,
    /// Test data (its `Test` split): the global model is tested on it. Required.
    pub test: Dataset,
}

/// A data owner that trains each round.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Participant {
    /// Node id: letters, digits, `-` and `_` (at most 64, starting with a letter or digit).
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"))]
    pub node: String,
    /// The node's training data (its `Train` split).
    pub data: Dataset,
}

/// A dataset: a directory path, or the name under which an agent registered its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(deny_unknown_fields)]
pub enum Dataset {
    /// A dataset directory (AlphaMed `annotation.json` or CVAT `annotations.xml`), relative
    /// to the workflow file. It must exist for an embedded run; over NATS it is a path on the
    /// node's own machine.
    Path(#[serde(serialize_with = "lossy_path")] PathBuf),
    /// A dataset an agent registered under this name on its own machine. For distributed
    /// runs (`transport: {nats: ...}`).
    Named {
        /// The registered name: letters, digits, `.`, `-` and `_` (at most 128).
        #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"))]
        name: String,
    },
}

impl Dataset {
    /// The directory, for a dataset given as a path.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Path(path) => Some(path),
            Self::Named { .. } => None,
        }
    }
}

/// How the updates of a round are averaged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Aggregation {
    /// `samples`: each update weighs its number of training samples (FedAvg);
    /// `uniform`: a plain mean (AlphaMed's behaviour). Default: `samples`.
    #[schemars(default)]
    pub weighting: Weighting,
}

/// Weights of the updates in the average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Each update weighs its number of training samples.
    #[default]
    Samples,
    /// Every update weighs the same.
    Uniform,
}

/// Early stopping on the initiator's validation data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Whether the task stops after `patience` rounds without improvement, keeping the best
    /// state. Default: true; in the effective workflow false when the initiator has no
    /// validation data.
    #[schemars(default = "defaults::enabled")]
    pub enabled: bool,
    /// What improves: `validation_accuracy` (higher is better) or `validation_loss` (lower
    /// is better). Default: `validation_accuracy`.
    #[schemars(default)]
    pub metric: StoppingMetric,
    /// Rounds without improvement before stopping (counting validated rounds). Default: 10.
    #[schemars(default = "defaults::patience", range(min = 1))]
    pub patience: u32,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            enabled: true,
            metric: StoppingMetric::default(),
            patience: defaults::PATIENCE,
        }
    }
}

/// The metric early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoppingMetric {
    /// Accuracy on the validation data; higher is better.
    #[default]
    ValidationAccuracy,
    /// Mean loss on the validation data; lower is better.
    ValidationLoss,
}

/// Bounds on the waits of a round. Durations with units (`500ms`, `30s`, `5m`, `1h`);
/// `0` means no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Timeouts {
    /// How long the initiator waits for the nodes to check in (AlphaMed's
    /// `schedule_timeout`). Default: 30s.
    #[schemars(default = "defaults::schedule")]
    pub schedule: Timeout,
    /// How long the initiator waits for the updates of a round (AlphaMed's
    /// `calculation_timeout`). Default: 30m.
    #[schemars(default = "defaults::calculation")]
    pub calculation: Timeout,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            schedule: defaults::SCHEDULE_TIMEOUT,
            calculation: defaults::CALCULATION_TIMEOUT,
        }
    }
}

/// Overrides of the model package's hyper-parameters (the `training` section): each key left
/// out keeps the value of the package's `config.json`, or the documented default. Keys,
/// values and defaults are `fl_package`'s one spec ([`fl_package::HYPER_PARAMETERS`]); the
/// number of local epochs is `merge_epochs`, not a training key.
pub type Training = fl_package::HyperParameterValues;

pub use fl_package::Optimizer;

/// The JSON Schema of the `training` section, generated from the hyper-parameter spec.
pub(crate) struct TrainingSchema;

impl JsonSchema for TrainingSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Training".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let properties: serde_json::Map<String, serde_json::Value> = fl_package::HYPER_PARAMETERS
            .iter()
            .filter(|spec| spec.scope == fl_package::Scope::Anywhere)
            .map(|spec| (spec.key.to_owned(), fl_package::json_schema(spec)))
            .collect();
        let mut schema = serde_json::Map::new();
        schema.insert("type".into(), "object".into());
        schema.insert("additionalProperties".into(), false.into());
        schema.insert(
            "description".into(),
            "Overrides of the model package's hyper-parameters (its config.json); keys left \
             out keep the package's values, or the documented defaults."
                .into(),
        );
        schema.insert("properties".into(), properties.into());
        schema.into()
    }
}

/// How the nodes of a task talk to each other.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Every node in this process, over in-process channels (the default).
    #[default]
    Embedded,
    /// Nodes in separate processes or hosts, over a NATS server.
    Nats(NatsTransport),
}

/// Connection to a NATS server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NatsTransport {
    /// Server URL: `nats://host:port` (also `tls://`, `ws://`, `wss://`).
    #[schemars(regex(pattern = r"^(nats|tls|ws|wss)://[^\s/]+"))]
    pub url: String,
    /// A NATS credentials file (`.creds`), relative to the workflow file. Default: none.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lossy_optional_path"
    )]
    pub credentials: Option<PathBuf>,
}

/// Paths print as text; a path that is not UTF-8 (it cannot come from a YAML file, only from
/// a workflow file's directory) is written lossily rather than failing.
fn lossy_path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

fn lossy_optional_path<S: Serializer>(
    path: &Option<PathBuf>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => lossy_path(path, serializer),
        None => serializer.serialize_none(),
    }
}

impl Workflow {
    /// Returns the SHA-256 (lowercase hex) of the effective workflow as canonical JSON: the
    /// same for the same task whatever the file's comments, key order, quoting or spelling
    /// of defaults and durations (`60s` is `1m`), different when any value changes. Paths
    /// are the resolved ones, so the same file in another directory is another task.
    ///
    /// It covers the effective values, whether the file or an override gave them: `--set
    /// max_rounds=3` and `max_rounds: 3` in the file give the same digest. The list of
    /// [`Workflow::overrides`] itself is left out (so a workflow without overrides keeps the
    /// digest it always had).
    pub fn digest(&self) -> String {
        let values;
        let hashed = if self.overrides.is_empty() {
            self
        } else {
            values = Self {
                overrides: Vec::new(),
                ..self.clone()
            };
            &values
        };
        // Serialising plain structs, strings and numbers into memory cannot fail; if it ever
        // did, hashing the error text still gives a stable, if useless, digest.
        let bytes = serde_json::to_vec(hashed).unwrap_or_else(|e| e.to_string().into_bytes());
        Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The nodes that train each round: the initiator first when it has `train` data, then the
    /// participants in order.
    pub fn training_nodes(&self) -> Vec<&str> {
        let initiator = self
            .initiator
            .train
            .as_ref()
            .map(|_| self.initiator.node.as_str());
        initiator
            .into_iter()
            .chain(self.participants.iter().map(|p| p.node.as_str()))
            .collect()
    }

    /// Whether early stopping runs: enabled and the initiator has validation data.
    pub fn early_stopping_active(&self) -> bool {
        self.early_stopping.enabled && self.initiator.validation.is_some()
    }

    /// Whether round `round` (1-based) tests the global model: every `log_rounds`-th round,
    /// and always the first and the last.
    pub fn tests_round(&self, round: u32) -> bool {
        round == 1 || round == self.max_rounds || round.is_multiple_of(self.log_rounds.max(1))
    }
}
