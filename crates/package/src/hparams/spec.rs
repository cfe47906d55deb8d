//! The spec: every hyper-parameter key the engine reads, with what it accepts, its default and
//! where it may be set, and the parser of one key's JSON value.

use serde_json::{Map, Value, json};

use super::{HeadRule, LrSchedule, Optimizer};
use crate::values::describe;

/// Where a hyper-parameter may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In the package's `config.json` and in a workflow's `training` section.
    Anywhere,
    /// In `config.json` only (and on `engine finetune`'s command line): a workflow sets the
    /// local epochs of a round with `merge_epochs` instead.
    PackageOnly,
}

/// One hyper-parameter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The key, in `config.json` and in a workflow's `training` section.
    pub key: &'static str,
    /// What it accepts.
    pub accepted: &'static str,
    /// Its default, as written in the docs and printed by runs.
    pub default: &'static str,
    /// Where it may be set.
    pub scope: Scope,
    /// What it does.
    pub description: &'static str,
}

/// Every hyper-parameter the engine's training reads, in the order runs print them.
pub const HYPER_PARAMETERS: &[KeySpec] = &[
    KeySpec {
        key: "optimizer",
        accepted: "`adam` or `sgd` (any case)",
        default: "adam",
        scope: Scope::Anywhere,
        description: "the optimiser of local training, built fresh at every round",
    },
    KeySpec {
        key: "learning_rate",
        accepted: "a number greater than 0",
        default: "0.001",
        scope: Scope::Anywhere,
        description: "the optimiser's base learning rate",
    },
    KeySpec {
        key: "lr_schedule",
        accepted: "`constant`, `{kind: step, step_size: N, gamma: G}` (N >= 1, 0 < G <= 1, G \
                   defaults to 0.1) or `{kind: cosine, t_max: N, eta_min: X}` (N >= 1, X >= 0, \
                   X defaults to 0)",
        default: "constant",
        scope: Scope::Anywhere,
        description: "how the learning rate changes with the run-wide epoch (counted across \
                      rounds from 0), as PyTorch's StepLR and CosineAnnealingLR define it",
    },
    KeySpec {
        key: "momentum",
        accepted: "a number from 0 to below 1 (SGD only)",
        default: "0",
        scope: Scope::Anywhere,
        description: "SGD's momentum",
    },
    KeySpec {
        key: "weight_decay",
        accepted: "a number from 0",
        default: "0.0005 with adam, 0 with sgd",
        scope: Scope::Anywhere,
        description: "L2 penalty added to the gradient (PyTorch's `weight_decay`)",
    },
    KeySpec {
        key: "batch_size",
        accepted: "a whole number of at least 1",
        default: "32",
        scope: Scope::Anywhere,
        description: "samples per training batch (the last batch of an epoch may be smaller; \
                      see `drop_last`)",
    },
    KeySpec {
        key: "drop_last",
        accepted: "`true` or `false`",
        default: "false",
        scope: Scope::Anywhere,
        description: "drop an epoch's last training batch when it is smaller than `batch_size` \
                      (PyTorch's `DataLoader(drop_last=True)`); with `false` a last batch of a \
                      single sample joins the batch before it, so that BatchNorm never trains \
                      on one sample",
    },
    KeySpec {
        key: "head",
        accepted: "`keep`, `reset` or `extend`",
        default: "keep",
        scope: Scope::Anywhere,
        description: "how the package's classifier head meets the task's labels, matched by \
                      name (`id2label` is the truth for its outputs; another order is mapped): \
                      `keep` needs every task label in `id2label` and keeps every output, \
                      `reset` makes a new head for the task's labels from the seed, `extend` \
                      keeps the package's outputs and adds one, from the seed, per new label",
    },
    KeySpec {
        key: "epochs",
        accepted: "a whole number of at least 1",
        default: "10",
        scope: Scope::PackageOnly,
        description: "epochs of `engine finetune` (`--epochs` overrides); a workflow's rounds \
                      run `merge_epochs` local epochs each instead",
    },
];

/// Keys an earlier format read, refused with what replaces them (so that a package written
/// for it never trains with its setting silently ignored).
pub const RETIRED_KEYS: &[(&str, &str)] = &[
    (
        "lr_step_size",
        "`lr_schedule: {kind: step, step_size: N, gamma: G}` (a schedule applies only when declared)",
    ),
    (
        "lr_gamma",
        "`lr_schedule: {kind: step, step_size: N, gamma: G}` (a schedule applies only when declared)",
    ),
];

/// The spec of `key`, when it is a hyper-parameter.
pub fn key_spec(key: &str) -> Option<&'static KeySpec> {
    HYPER_PARAMETERS.iter().find(|spec| spec.key == key)
}

/// A value that a hyper-parameter key does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// The key path, e.g. `lr_schedule.step_size`.
    pub key: String,
    /// What is wrong, e.g. `is the number 0`.
    pub message: String,
    /// What would be accepted.
    pub expected: String,
}

impl KeyProblem {
    fn wrong(key: impl Into<String>, value: &Value, expected: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: format!("is {}", describe(value)),
            expected: expected.into(),
        }
    }
}

/// One key's parsed value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Parsed {
    Number(f64),
    Count(u32),
    Optimizer(Optimizer),
    Schedule(LrSchedule),
    Flag(bool),
    Head(HeadRule),
}

/// Parses the value of the hyper-parameter `spec.key`.
pub(crate) fn parse_value(spec: &KeySpec, value: &Value) -> Result<Parsed, KeyProblem> {
    let key = spec.key;
    let wrong = || KeyProblem::wrong(key, value, spec.accepted);
    match key {
        "learning_rate" => number(value, |x| x > 0.0)
            .map(Parsed::Number)
            .ok_or_else(wrong),
        "momentum" => number(value, |x| (0.0..1.0).contains(&x))
            .map(Parsed::Number)
            .ok_or_else(wrong),
        "weight_decay" => number(value, |x| x >= 0.0)
            .map(Parsed::Number)
            .ok_or_else(wrong),
        "batch_size" | "epochs" => count(value, 1).map(Parsed::Count).ok_or_else(wrong),
        "optimizer" => match value.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("adam") => Ok(Parsed::Optimizer(Optimizer::Adam)),
            Some("sgd") => Ok(Parsed::Optimizer(Optimizer::Sgd)),
            _ => Err(wrong()),
        },
        "lr_schedule" => parse_schedule(spec, value).map(Parsed::Schedule),
        "drop_last" => value.as_bool().map(Parsed::Flag).ok_or_else(wrong),
        "head" => match value.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("keep") => Ok(Parsed::Head(HeadRule::Keep)),
            Some("reset") => Ok(Parsed::Head(HeadRule::Reset)),
            Some("extend") => Ok(Parsed::Head(HeadRule::Extend)),
            _ => Err(wrong()),
        },
        _ => Err(wrong()),
    }
}

fn number(value: &Value, accept: impl Fn(f64) -> bool) -> Option<f64> {
    value.as_f64().filter(|x| x.is_finite() && accept(*x))
}

fn count(value: &Value, min: u32) -> Option<u32> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= min)
}

/// `constant`, or a mapping with `kind` and that kind's parameters.
fn parse_schedule(spec: &KeySpec, value: &Value) -> Result<LrSchedule, KeyProblem> {
    let map = match value {
        Value::String(s) if s.eq_ignore_ascii_case("constant") => return Ok(LrSchedule::Constant),
        Value::Object(map) => map,
        other => return Err(KeyProblem::wrong(spec.key, other, spec.accepted)),
    };
    let kind = map.get("kind").and_then(Value::as_str);
    let (known, schedule): (&[&str], _) = match kind.map(str::to_ascii_lowercase).as_deref() {
        Some("constant") => (&["kind"], Ok(LrSchedule::Constant)),
        Some("step") => (&["kind", "step_size", "gamma"], step(map)),
        Some("cosine") => (&["kind", "t_max", "eta_min"], cosine(map)),
        _ => {
            let found = map.get("kind").unwrap_or(&Value::Null);
            return Err(KeyProblem::wrong(
                "lr_schedule.kind",
                found,
                "`constant`, `step` or `cosine`",
            ));
        }
    };
    if let Some(extra) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(KeyProblem {
            key: format!("lr_schedule.{extra}"),
            message: format!("is not a key of a `{}` schedule", kind.unwrap_or_default()),
            expected: known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    schedule
}

fn step(map: &Map<String, Value>) -> Result<LrSchedule, KeyProblem> {
    let step_size = required(
        map,
        "step_size",
        "a whole number of epochs, at least 1",
        |v| count(v, 1),
    )?;
    let gamma = optional(
        map,
        "gamma",
        0.1,
        "a number greater than 0 and at most 1",
        |v| number(v, |x| x > 0.0 && x <= 1.0),
    )?;
    Ok(LrSchedule::Step { step_size, gamma })
}

fn cosine(map: &Map<String, Value>) -> Result<LrSchedule, KeyProblem> {
    let t_max = required(map, "t_max", "a whole number of epochs, at least 1", |v| {
        count(v, 1)
    })?;
    let eta_min = optional(map, "eta_min", 0.0, "a number from 0", |v| {
        number(v, |x| x >= 0.0)
    })?;
    Ok(LrSchedule::Cosine { t_max, eta_min })
}

fn required<T>(
    map: &Map<String, Value>,
    key: &str,
    expected: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<T, KeyProblem> {
    match map.get(key) {
        None => Err(KeyProblem {
            key: format!("lr_schedule.{key}"),
            message: "is required but missing".to_owned(),
            expected: expected.to_owned(),
        }),
        Some(v) => {
            read(v).ok_or_else(|| KeyProblem::wrong(format!("lr_schedule.{key}"), v, expected))
        }
    }
}

fn optional<T>(
    map: &Map<String, Value>,
    key: &str,
    default: T,
    expected: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<T, KeyProblem> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            read(v).ok_or_else(|| KeyProblem::wrong(format!("lr_schedule.{key}"), v, expected))
        }
    }
}

/// The Markdown table of every hyper-parameter (the docs hold it; a test keeps them equal).
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| key | default | accepted | set in | what it does |\n|---|---|---|---|---|\n",
    );
    for spec in HYPER_PARAMETERS {
        let set_in = match spec.scope {
            Scope::Anywhere => "`config.json`, workflow `training`",
            Scope::PackageOnly => "`config.json`, `engine finetune --epochs`",
        };
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            spec.key,
            spec.default,
            spec.accepted.replace('|', "\\|"),
            set_in,
            spec.description
        ));
    }
    table
}

/// The JSON Schema (draft-07) of one key's value, for editors: its type, range, default and
/// description come from the spec.
pub fn json_schema(spec: &KeySpec) -> Value {
    let description = format!(
        "{}. Accepted: {}. Default: {}.",
        capitalise(spec.description),
        spec.accepted,
        spec.default
    );
    let mut schema = match spec.key {
        "optimizer" => json!({"enum": ["adam", "sgd"], "default": "adam"}),
        "learning_rate" => json!({"type": "number", "exclusiveMinimum": 0, "default": 0.001}),
        "momentum" => json!({"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0}),
        "weight_decay" => json!({"type": "number", "minimum": 0}),
        "batch_size" | "epochs" => json!({"type": "integer", "minimum": 1}),
        "drop_last" => json!({"type": "boolean", "default": false}),
        "head" => json!({"enum": ["keep", "reset", "extend"], "default": "keep"}),
        "lr_schedule" => json!({"oneOf": [
            {"const": "constant"},
            {"type": "object", "additionalProperties": false, "required": ["kind"],
             "properties": {"kind": {"const": "constant"}}},
            {"type": "object", "additionalProperties": false, "required": ["kind", "step_size"],
             "properties": {"kind": {"const": "step"},
                            "step_size": {"type": "integer", "minimum": 1},
                            "gamma": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                                      "default": 0.1}}},
            {"type": "object", "additionalProperties": false, "required": ["kind", "t_max"],
             "properties": {"kind": {"const": "cosine"},
                            "t_max": {"type": "integer", "minimum": 1},
                            "eta_min": {"type": "number", "minimum": 0, "default": 0}}}
        ], "default": "constant"}),
        _ => json!({}),
    };
    schema["description"] = Value::String(description);
    schema
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
