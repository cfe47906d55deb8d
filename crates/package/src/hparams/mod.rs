//! The hyper-parameters of local training, specified once ([`HYPER_PARAMETERS`]): the keys,
//! what each accepts, its default and where it may be set. `config.json` checking, a
//! workflow's `training` section, the trainer, the printed "effective settings" and the docs'
//! table all read this one spec.
//!
//! A package declares values in `config.json`, a workflow may override them
//! ([`HyperParameterValues`] holds what one source declares), and
//! [`HyperParameters::resolve`] layers them over the defaults, remembering where each
//! effective value came from ([`Resolved`]), so that a run can print and record every value
//! it trains with. Nothing that changes training is implied: a learning-rate schedule applies
//! only when one is declared.

mod spec;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use spec::{
    HYPER_PARAMETERS, KeyProblem, KeySpec, RETIRED_KEYS, Scope, json_schema, key_spec,
    markdown_table,
};
use spec::{Parsed, parse_value};

/// The optimiser of local training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Adam (PyTorch's `torch.optim.Adam` with L2 `weight_decay`).
    Adam,
    /// Stochastic gradient descent, with optional momentum.
    Sgd,
}

impl fmt::Display for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Adam => "adam",
            Self::Sgd => "sgd",
        })
    }
}

/// How a package's classifier head meets a task's labels, matched by name (the package's
/// `id2label` is the truth for its outputs; the same names in another order are mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadRule {
    /// Every output is kept with its meaning; every task label must be one of the package's.
    #[default]
    Keep,
    /// A new head for the task's labels, initialised from the seed.
    Reset,
    /// The package's outputs are kept, and one new output per task label the package lacks.
    Extend,
}

impl fmt::Display for HeadRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Keep => "keep",
            Self::Reset => "reset",
            Self::Extend => "extend",
        })
    }
}

/// How the learning rate changes with the run-wide epoch (0-based, counted across rounds).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base learning rate throughout.
    #[default]
    Constant,
    /// PyTorch's `StepLR`: the rate times `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays, at least 1.
        step_size: u32,
        /// Factor of each decay, in (0, 1].
        gamma: f64,
    },
    /// PyTorch's `CosineAnnealingLR` (its closed form): from the base rate down to `eta_min`
    /// over `t_max` epochs, along half a cosine.
    Cosine {
        /// Epochs of the half period, at least 1.
        t_max: u32,
        /// The lowest rate, at least 0.
        eta_min: f64,
    },
}

impl LrSchedule {
    /// The learning rate of a 0-based run-wide epoch, from the base rate.
    pub fn rate_at(&self, base: f64, epoch: u64) -> f64 {
        match *self {
            Self::Constant => base,
            Self::Step { step_size, gamma } => {
                let decays = epoch / u64::from(step_size.max(1));
                base * gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX))
            }
            Self::Cosine { t_max, eta_min } => {
                let phase = std::f64::consts::PI * epoch as f64 / f64::from(t_max.max(1));
                eta_min + (base - eta_min) * (1.0 + phase.cos()) / 2.0
            }
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Constant => f.write_str("constant"),
            Self::Step { step_size, gamma } => {
                write!(f, "step (x{gamma} every {step_size} epochs)")
            }
            Self::Cosine { t_max, eta_min } => {
                write!(f, "cosine (to {eta_min} over {t_max} epochs)")
            }
        }
    }
}

/// The hyper-parameters one source declares (a package's `config.json`, a workflow's
/// `training` section, a command line): each key is set or left to the next layer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperParameterValues {
    /// `optimizer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Optimizer>,
    /// `learning_rate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// `lr_schedule`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_schedule: Option<LrSchedule>,
    /// `momentum`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// `weight_decay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// `batch_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// `drop_last`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_last: Option<bool>,
    /// `head`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadRule>,
    /// `epochs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
}

impl HyperParameterValues {
    /// Reads the hyper-parameter keys of a JSON object (`config.json`, or a workflow's
    /// `training` section as JSON); other keys are not looked at. Keys that `scope` does not
    /// allow, retired keys and bad values are problems, all of them reported; momentum with
    /// Adam is one too.
    pub fn from_json(raw: &Map<String, Value>, scope: Scope) -> Result<Self, Vec<KeyProblem>> {
        let mut values = Self::default();
        let mut problems = Vec::new();
        for (key, replacement) in RETIRED_KEYS {
            if raw.contains_key(*key) {
                problems.push(KeyProblem {
                    key: (*key).to_owned(),
                    message: "is no longer read".to_owned(),
                    expected: (*replacement).to_owned(),
                });
            }
        }
        for spec in HYPER_PARAMETERS {
            let Some(value) = raw.get(spec.key) else {
                continue;
            };
            if scope == Scope::Anywhere && spec.scope == Scope::PackageOnly {
                problems.push(KeyProblem {
                    key: spec.key.to_owned(),
                    message: "cannot be set here".to_owned(),
                    expected: spec.description.to_owned(),
                });
                continue;
            }
            match parse_value(spec, value) {
                Ok(parsed) => values.set(spec.key, parsed),
                Err(problem) => problems.push(problem),
            }
        }
        if let (Some(Optimizer::Adam), Some(m)) = (values.optimizer, values.momentum)
            && m != 0.0
        {
            problems.push(KeyProblem {
                key: "momentum".to_owned(),
                message: format!("is {m}, but `optimizer` is adam: momentum applies to SGD only"),
                expected: "no `momentum` with adam, or `optimizer: sgd`".to_owned(),
            });
        }
        if problems.is_empty() {
            Ok(values)
        } else {
            Err(problems)
        }
    }

    fn set(&mut self, key: &str, parsed: Parsed) {
        match (key, parsed) {
            ("learning_rate", Parsed::Number(x)) => self.learning_rate = Some(x),
            ("momentum", Parsed::Number(x)) => self.momentum = Some(x),
            ("weight_decay", Parsed::Number(x)) => self.weight_decay = Some(x),
            ("batch_size", Parsed::Count(n)) => self.batch_size = Some(n),
            ("epochs", Parsed::Count(n)) => self.epochs = Some(n),
            ("optimizer", Parsed::Optimizer(o)) => self.optimizer = Some(o),
            ("lr_schedule", Parsed::Schedule(s)) => self.lr_schedule = Some(s),
            ("drop_last", Parsed::Flag(b)) => self.drop_last = Some(b),
            ("head", Parsed::Head(h)) => self.head = Some(h),
            _ => debug_assert!(false, "{key} parsed as {parsed:?}"),
        }
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The keys that are set, as a JSON object with `config.json`'s spelling.
    pub fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The engine's documented default.
    Default,
    /// The package's `config.json`.
    Package,
    /// The workflow's `training` section (or a `--set training.KEY=VALUE`).
    Workflow,
    /// A command-line flag (`engine finetune --epochs`).
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::Package => "config.json",
            Self::Workflow => "workflow",
            Self::CommandLine => "command line",
        })
    }
}

/// The effective hyper-parameters of local training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HyperParameters {
    /// `optimizer`.
    pub optimizer: Optimizer,
    /// `learning_rate`: the base rate.
    pub learning_rate: f64,
    /// `lr_schedule`.
    pub lr_schedule: LrSchedule,
    /// `momentum` (SGD).
    pub momentum: f64,
    /// `weight_decay`.
    pub weight_decay: f64,
    /// `batch_size`.
    pub batch_size: usize,
    /// `drop_last`.
    pub drop_last: bool,
    /// `head`.
    pub head: HeadRule,
    /// `epochs` (local fine-tuning).
    pub epochs: usize,
}

/// A value that two layers of hyper-parameters make invalid together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`momentum` is {momentum} (from {momentum_from}) but `optimizer` is adam (from \
     {optimizer_from}): momentum applies to SGD only; set `momentum: 0` or `optimizer: sgd` in \
     the {optimizer_from}"
)]
pub struct ResolveError {
    /// The momentum.
    pub momentum: String,
    /// Where the momentum came from.
    pub momentum_from: Origin,
    /// Where `optimizer: adam` came from.
    pub optimizer_from: Origin,
}

impl HyperParameters {
    /// Layers the sources over the defaults, later layers winning, and records where each
    /// effective value came from.
    pub fn resolve(layers: &[(Origin, &HyperParameterValues)]) -> Result<Resolved, ResolveError> {
        fn pick<T: Copy>(
            layers: &[(Origin, &HyperParameterValues)],
            get: impl Fn(&HyperParameterValues) -> Option<T>,
        ) -> Option<(T, Origin)> {
            layers
                .iter()
                .rev()
                .find_map(|(origin, values)| get(values).map(|v| (v, *origin)))
        }
        let or_default = |found: Option<(f64, Origin)>, default: f64| {
            found.unwrap_or((default, Origin::Default))
        };
        let (optimizer, optimizer_from) =
            pick(layers, |v| v.optimizer).unwrap_or((Optimizer::Adam, Origin::Default));
        let (learning_rate, lr_from) = or_default(pick(layers, |v| v.learning_rate), 1e-3);
        let (lr_schedule, schedule_from) =
            pick(layers, |v| v.lr_schedule).unwrap_or((LrSchedule::Constant, Origin::Default));
        let (momentum, momentum_from) = or_default(pick(layers, |v| v.momentum), 0.0);
        let default_decay = match optimizer {
            Optimizer::Adam => 5e-4,
            Optimizer::Sgd => 0.0,
        };
        let (weight_decay, decay_from) =
            or_default(pick(layers, |v| v.weight_decay), default_decay);
        let (batch_size, batch_from) =
            pick(layers, |v| v.batch_size).unwrap_or((32, Origin::Default));
        let (drop_last, drop_last_from) =
            pick(layers, |v| v.drop_last).unwrap_or((false, Origin::Default));
        let (head, head_from) =
            pick(layers, |v| v.head).unwrap_or((HeadRule::Keep, Origin::Default));
        let (epochs, epochs_from) = pick(layers, |v| v.epochs).unwrap_or((10, Origin::Default));
        if optimizer == Optimizer::Adam && momentum != 0.0 {
            return Err(ResolveError {
                momentum: momentum.to_string(),
                momentum_from,
                optimizer_from,
            });
        }
        Ok(Resolved {
            values: HyperParameters {
                optimizer,
                learning_rate,
                lr_schedule,
                momentum,
                weight_decay,
                batch_size: batch_size as usize,
                drop_last,
                head,
                epochs: epochs as usize,
            },
            origins: Origins {
                optimizer: optimizer_from,
                learning_rate: lr_from,
                lr_schedule: schedule_from,
                momentum: momentum_from,
                weight_decay: decay_from,
                batch_size: batch_from,
                drop_last: drop_last_from,
                head: head_from,
                epochs: epochs_from,
            },
        })
    }

    /// The learning rate of a 0-based run-wide epoch under the schedule.
    pub fn learning_rate_at(&self, epoch: u64) -> f64 {
        self.lr_schedule.rate_at(self.learning_rate, epoch)
    }

    /// Every key with its value, as `config.json` writes them (a fine-tuned package records
    /// what it was trained with).
    pub fn to_config_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("optimizer".into(), json!(self.optimizer.to_string()));
        map.insert("learning_rate".into(), json!(self.learning_rate));
        map.insert(
            "lr_schedule".into(),
            serde_json::to_value(self.lr_schedule).unwrap_or(Value::Null),
        );
        map.insert("momentum".into(), json!(self.momentum));
        map.insert("weight_decay".into(), json!(self.weight_decay));
        map.insert("batch_size".into(), json!(self.batch_size));
        map.insert("drop_last".into(), json!(self.drop_last));
        map.insert("head".into(), json!(self.head.to_string()));
        map.insert("epochs".into(), json!(self.epochs));
        map
    }
}

/// Where each effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origins {
    /// Of `optimizer`.
    pub optimizer: Origin,
    /// Of `learning_rate`.
    pub learning_rate: Origin,
    /// Of `lr_schedule`.
    pub lr_schedule: Origin,
    /// Of `momentum`.
    pub momentum: Origin,
    /// Of `weight_decay`.
    pub weight_decay: Origin,
    /// Of `batch_size`.
    pub batch_size: Origin,
    /// Of `drop_last`.
    pub drop_last: Origin,
    /// Of `head`.
    pub head: Origin,
    /// Of `epochs`.
    pub epochs: Origin,
}

/// One line of the effective settings: a key, its value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// The key.
    pub key: String,
    /// The value, as `config.json` would hold it.
    pub value: Value,
    /// Where it came from.
    pub source: Origin,
}

/// The effective hyper-parameters and where each came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// The values.
    pub values: HyperParameters,
    /// Their origins.
    pub origins: Origins,
}

impl Resolved {
    /// Every setting in the spec's order; `epochs` only when `with_epochs` (a federated run's
    /// local epochs are its `merge_epochs`, not this key).
    pub fn settings(&self, with_epochs: bool) -> Vec<Setting> {
        let o = &self.origins;
        let values = self.values.to_config_json();
        HYPER_PARAMETERS
            .iter()
            .filter(|spec| with_epochs || spec.key != "epochs")
            .map(|spec| Setting {
                key: spec.key.to_owned(),
                value: values.get(spec.key).cloned().unwrap_or(Value::Null),
                source: match spec.key {
                    "optimizer" => o.optimizer,
                    "learning_rate" => o.learning_rate,
                    "lr_schedule" => o.lr_schedule,
                    "momentum" => o.momentum,
                    "weight_decay" => o.weight_decay,
                    "batch_size" => o.batch_size,
                    "drop_last" => o.drop_last,
                    "head" => o.head,
                    _ => o.epochs,
                },
            })
            .collect()
    }
}

impl Setting {
    /// The value as people read it: names and schedules without JSON quoting
    /// (`sgd`, `step (step_size=10, gamma=0.1)`).
    pub fn shown(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Object(map) => {
                let kind = map.get("kind").and_then(Value::as_str).unwrap_or("?");
                let params: Vec<String> = map
                    .iter()
                    .filter(|(k, _)| *k != "kind")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if params.is_empty() {
                    kind.to_owned()
                } else {
                    format!("{kind} ({})", params.join(", "))
                }
            }
            other => other.to_string(),
        }
    }
}

/// One line of an "effective settings" block: `key  value  (where it comes from)`, aligned.
pub fn setting_line(key: &str, value: &str, source: &str) -> String {
    format!("  {key:<14} {value:<40} ({source})")
}

#[cfg(test)]
mod tests;
