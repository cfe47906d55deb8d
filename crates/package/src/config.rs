//! `config.json`: which model implementation to build, where its weights are, and the
//! model's own keys (labels, hyper-parameters).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::{CatalogMiss, ModelCatalog};
use crate::hparams::{HyperParameterValues, Scope};
use crate::problem::{Position, Problem, Problems};
use crate::values::{describe, non_empty_string};

/// The model configuration's file name inside a package.
pub const CONFIG_FILE: &str = "config.json";

/// How the model's code is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A model implementation compiled into the engine (`entry_module` + `entry_class`).
    Module {
        /// `entry_module`.
        module: String,
        /// `entry_class`.
        class: String,
    },
    /// A TorchScript file inside the package (`entry_file` + `entry_class`).
    File {
        /// `entry_file`, as written (relative to the package).
        path: String,
        /// `entry_class`.
        class: String,
    },
}

impl Entry {
    /// `entry_class`.
    pub fn class(&self) -> &str {
        match self {
            Self::Module { class, .. } | Self::File { class, .. } => class,
        }
    }
}

/// A parsed, valid `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// Where the model's code comes from.
    pub entry: Entry,
    /// `param_file`, as written (relative to the package).
    pub param_file: String,
    /// Class labels by index, from `id2label` (or `label2id`), when given.
    pub labels: Option<Vec<String>>,
    /// The hyper-parameters the file declares (checked against the spec; the others take
    /// their documented defaults when training).
    pub hyper_parameters: HyperParameterValues,
    /// Every key of the file, in order, including the ones above (a model's own keys are
    /// read from here).
    pub raw: Map<String, Value>,
}

/// The outcome of parsing `config.json`: the config when it has no error, and the files it
/// names even when other keys have errors (so that those are checked too).
#[derive(Debug, Default)]
pub(crate) struct ParsedConfig {
    /// The valid config.
    pub config: Option<ModelConfig>,
    /// `param_file`, when it is a non-empty string.
    pub param_file: Option<String>,
    /// `entry_file`, when it is a non-empty string other than Python source.
    pub entry_file: Option<String>,
}

/// Parses and checks `config.json`, adding every problem to `problems`; returns the config
/// when it has no error. The files it names are only checked for form: a package checks that
/// they exist inside it.
pub fn parse_config(
    text: &str,
    catalog: &ModelCatalog,
    problems: &mut Problems,
) -> Option<ModelConfig> {
    parse_config_and_paths(text, catalog, problems).config
}

/// Like [`parse_config`], also giving the files the config names when other keys have errors.
pub(crate) fn parse_config_and_paths(
    text: &str,
    catalog: &ModelCatalog,
    problems: &mut Problems,
) -> ParsedConfig {
    let raw = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            problems.push(
                Problem::error(CONFIG_FILE, format!("is {}, not a JSON object", describe(&other)))
                    .expected("a JSON object such as {\"entry_module\": ..., \"entry_class\": ..., \"param_file\": ...}"),
            );
            return ParsedConfig::default();
        }
        Err(error) => {
            problems.push(
                Problem::error(CONFIG_FILE, format!("is not valid JSON: {error}"))
                    .at(Some(Position {
                        line: error.line() as u64,
                        column: error.column() as u64,
                    }))
                    .expected("a JSON object"),
            );
            return ParsedConfig::default();
        }
    };
    let errors_before = problems.error_count();
    let error = |key: &str, message: String, expected: &str| {
        Problem::error(CONFIG_FILE, message)
            .key(key)
            .expected(expected)
    };

    // entry_file / entry_module: exactly one non-empty string, the other absent or null.
    let mut entry_of = |key: &str| -> Option<String> {
        match raw.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => match non_empty_string(v) {
                Some(s) => Some(s.to_owned()),
                None => {
                    problems.push(error(
                        key,
                        format!("is {}", describe(v)),
                        "a non-empty string, or null when unused",
                    ));
                    None
                }
            },
        }
    };
    let entry_file = entry_of("entry_file");
    let entry_module = entry_of("entry_module");
    let both_or_neither = "exactly one of `entry_module` (a model built into the engine) and `entry_file` (a TorchScript file in the package); the other absent or null";
    let class = required_string(&raw, "entry_class", problems);
    let entry = match (entry_file, entry_module) {
        (Some(_), Some(_)) => {
            problems.push(
                Problem::error(
                    CONFIG_FILE,
                    "both `entry_file` and `entry_module` are given",
                )
                .expected(both_or_neither),
            );
            None
        }
        (None, None) => {
            if raw.get("entry_file").is_none_or(Value::is_null)
                && raw.get("entry_module").is_none_or(Value::is_null)
            {
                problems.push(
                    Problem::error(
                        CONFIG_FILE,
                        "neither `entry_file` nor `entry_module` is given",
                    )
                    .expected(both_or_neither),
                );
            }
            None
        }
        (Some(path), None) => {
            if path.to_ascii_lowercase().ends_with(".py") {
                problems.push(error(
                    "entry_file",
                    format!("`{path}` is Python source, which the engine cannot load"),
                    "a TorchScript file: export the model in PyTorch with \
                     `torch.jit.script(model).save(\"model.ts\")` and set \"entry_file\": \"model.ts\"",
                ));
                None
            } else {
                class.map(|class| Entry::File { path, class })
            }
        }
        (None, Some(module)) => {
            if let Some(class) = &class {
                match catalog.lookup(&module, class) {
                    Ok(()) => {}
                    Err(CatalogMiss::UnknownModule { known }) => problems.push(error(
                        "entry_module",
                        format!(
                            "no model linked into this engine is registered as module `{module}` \
                             (a model crate registers it; build an engine binary that links it, \
                             see docs/AUTHORING.md)"
                        ),
                        &known_list(&known),
                    )),
                    Err(CatalogMiss::UnknownClass { known }) => problems.push(error(
                        "entry_class",
                        format!("module `{module}` has no model class `{class}`"),
                        &known_list(&known),
                    )),
                }
            }
            class.map(|class| Entry::Module { module, class })
        }
    };

    let param_file = required_string(&raw, "param_file", problems);
    let labels = parse_labels(&raw, problems);
    let hyper_parameters = match HyperParameterValues::from_json(&raw, Scope::PackageOnly) {
        Ok(values) => Some(values),
        Err(found) => {
            for p in found {
                problems.push(error(&p.key, p.message, &p.expected));
            }
            None
        }
    };

    let entry_file = match &entry {
        Some(Entry::File { path, .. }) => Some(path.clone()),
        _ => None,
    };
    let valid = problems.error_count() == errors_before;
    let config = match (entry, param_file.clone(), labels, hyper_parameters) {
        (Some(entry), Some(param_file), Ok(labels), Some(hyper_parameters)) if valid => {
            Some(ModelConfig {
                entry,
                param_file,
                labels,
                hyper_parameters,
                raw,
            })
        }
        _ => None,
    };
    ParsedConfig {
        config,
        param_file,
        entry_file,
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none are registered".to_owned()
    } else {
        known.join(", ")
    }
}

fn required_string(raw: &Map<String, Value>, key: &str, problems: &mut Problems) -> Option<String> {
    match raw.get(key) {
        None => {
            problems.push(
                Problem::error(CONFIG_FILE, "is required but missing")
                    .key(key)
                    .expected("a non-empty string"),
            );
            None
        }
        Some(v) => match non_empty_string(v) {
            Some(s) => Some(s.to_owned()),
            None => {
                problems.push(
                    Problem::error(CONFIG_FILE, format!("is {}", describe(v)))
                        .key(key)
                        .expected("a non-empty string"),
                );
                None
            }
        },
    }
}

/// Reads `id2label` / `label2id` into labels by index. `Err` when a problem was reported.
fn parse_labels(
    raw: &Map<String, Value>,
    problems: &mut Problems,
) -> Result<Option<Vec<String>>, ()> {
    let id2label = match raw.get("id2label") {
        None | Some(Value::Null) => None,
        Some(v) => Some(id2label(v).map_err(|message| {
            problems.push(
                Problem::error(CONFIG_FILE, message)
                    .key("id2label")
                    .expected(
                        "an object from class ids \"0\"..\"N-1\" to distinct non-empty labels",
                    ),
            );
        })?),
    };
    let label2id = match raw.get("label2id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(label2id(v).map_err(|message| {
            problems.push(
                Problem::error(CONFIG_FILE, message)
                    .key("label2id")
                    .expected("an object from distinct labels to class ids 0..N-1"),
            );
        })?),
    };
    match (id2label, label2id) {
        (Some(a), Some(b)) if a != b => {
            let detail = a
                .iter()
                .enumerate()
                .find(|(i, label)| b.get(*i) != Some(label))
                .map(|(i, label)| match b.iter().position(|l| l == label) {
                    Some(j) => {
                        format!("id2label maps {i} to `{label}` but label2id maps `{label}` to {j}")
                    }
                    None => format!("id2label maps {i} to `{label}` but label2id has no `{label}`"),
                })
                .unwrap_or_else(|| {
                    format!("id2label has {} labels, label2id has {}", a.len(), b.len())
                });
            problems.push(
                Problem::error(
                    CONFIG_FILE,
                    format!("`id2label` and `label2id` disagree: {detail}"),
                )
                .key("label2id")
                .expected("label2id as the exact inverse of id2label"),
            );
            Err(())
        }
        (a, b) => Ok(a.or(b)),
    }
}

fn id2label(value: &Value) -> Result<Vec<String>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("is {}", describe(value)))?;
    let mut labels = vec![None; map.len()];
    for (id, label) in map {
        let index = id
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|i| *i < map.len())
            .ok_or_else(|| {
                format!(
                    "has the id `{id}`, not one of 0..{}",
                    map.len().saturating_sub(1)
                )
            })?;
        let label =
            non_empty_string(label).ok_or_else(|| format!("maps `{id}` to {}", describe(label)))?;
        if labels[index].is_some() {
            return Err(format!("gives id {index} twice"));
        }
        labels[index] = Some(label.to_owned());
    }
    distinct(labels.into_iter().map(|l| l.unwrap_or_default()).collect())
}

fn label2id(value: &Value) -> Result<Vec<String>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("is {}", describe(value)))?;
    let mut labels = vec![None; map.len()];
    for (label, id) in map {
        let index = id
            .as_u64()
            .map(|i| i as usize)
            .filter(|i| *i < map.len())
            .ok_or_else(|| {
                format!(
                    "maps `{label}` to {}, not one of 0..{}",
                    describe(id),
                    map.len().saturating_sub(1)
                )
            })?;
        if labels[index].is_some() {
            return Err(format!("gives id {index} to more than one label"));
        }
        labels[index] = Some(label.clone());
    }
    distinct(labels.into_iter().map(|l| l.unwrap_or_default()).collect())
}

fn distinct(labels: Vec<String>) -> Result<Vec<String>, String> {
    for (i, label) in labels.iter().enumerate() {
        if labels[..i].contains(label) {
            return Err(format!("has the label `{label}` twice"));
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> ModelCatalog {
        let mut c = ModelCatalog::new();
        c.register("fedengine.vision", "SmallCnn");
        c
    }

    fn parse(text: &str) -> (Option<ModelConfig>, Problems) {
        let mut problems = Problems::default();
        let config = parse_config(text, &catalog(), &mut problems);
        (config, problems)
    }

    #[test]
    fn parses_a_builtin_entry_with_labels_and_hyper_parameters() {
        let (config, problems) = parse(
            r#"{"entry_file": null, "entry_module": "fedengine.vision", "entry_class": "SmallCnn",
                "param_file": "w.safetensors", "id2label": {"1": "dog", "0": "cat"},
                "label2id": {"cat": 0, "dog": 1}, "learning_rate": 0.001, "batch_size": 32}"#,
        );
        assert!(problems.is_empty(), "{problems}");
        let config = config.expect("valid");
        assert_eq!(
            config.entry,
            Entry::Module {
                module: "fedengine.vision".into(),
                class: "SmallCnn".into()
            }
        );
        assert_eq!(config.labels, Some(vec!["cat".into(), "dog".into()]));
        assert_eq!(config.raw["batch_size"], 32);
    }

    #[test]
    fn python_entry_files_are_refused_with_how_to_export() {
        let (config, problems) =
            parse(r#"{"entry_file": "model.py", "entry_class": "Net", "param_file": "w.pt"}"#);
        assert!(config.is_none());
        let p = &problems.as_slice()[0];
        assert_eq!(p.key.as_deref(), Some("entry_file"));
        assert!(
            p.expected
                .as_deref()
                .unwrap_or("")
                .contains("torch.jit.script"),
            "{p}"
        );
    }

    #[test]
    fn unknown_classes_list_the_known_ones() {
        let (_, problems) = parse(
            r#"{"entry_module": "fedengine.vision", "entry_class": "Vgg", "param_file": "w"}"#,
        );
        assert_eq!(problems.len(), 1);
        let p = &problems.as_slice()[0];
        assert_eq!(p.key.as_deref(), Some("entry_class"));
        assert_eq!(p.expected.as_deref(), Some("SmallCnn"));
    }

    #[test]
    fn bad_hyper_parameters_and_label_maps_are_reported_together() {
        let (_, problems) = parse(
            r#"{"entry_module": "fedengine.vision", "entry_class": "SmallCnn", "param_file": "w",
                "id2label": {"0": "a", "5": "b"}, "batch_size": 0, "learning_rate": "fast"}"#,
        );
        let keys: Vec<_> = problems.iter().filter_map(|p| p.key.as_deref()).collect();
        assert_eq!(
            keys,
            vec!["id2label", "learning_rate", "batch_size"],
            "{problems}"
        );
    }
}
