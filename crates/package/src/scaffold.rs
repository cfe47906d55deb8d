//! The text files of a new package (`engine model new`): a Model Card with its required keys
//! and a section that explains every hyper-parameter, a `config.json` that writes every
//! hyper-parameter out, and a `preprocessor_config.json` that writes every preprocessing
//! choice out. The weights file is the caller's (it needs libtorch).

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::hparams::{HYPER_PARAMETERS, HyperParameters};

/// The weights file name a new package uses.
pub const NEW_WEIGHTS_FILE: &str = "model.safetensors";

/// Everything a new package's text files say.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPackage {
    /// The Model Card's `name`.
    pub name: String,
    /// `author`.
    pub author: String,
    /// `license`.
    pub license: String,
    /// The built-in model's `entry_module`.
    pub entry_module: String,
    /// The built-in model's `entry_class`.
    pub entry_class: String,
    /// What the architecture is, one line.
    pub architecture: String,
    /// Class labels by index.
    pub labels: Vec<String>,
    /// Image channels (1 grey, 3 RGB).
    pub in_channels: u32,
    /// Images are resized to this many pixels square.
    pub image_size: u32,
    /// Normalisation mean per channel.
    pub image_mean: Vec<f64>,
    /// Normalisation standard deviation per channel.
    pub image_std: Vec<f64>,
    /// Where the weights come from, one sentence for the card.
    pub weights_origin: String,
    /// The hyper-parameters written into `config.json`.
    pub hyper_parameters: HyperParameters,
}

impl NewPackage {
    /// The Model Card (`README.md`).
    pub fn card(&self) -> String {
        let mut text = String::from("---\n");
        let _ = writeln!(text, "name: {}", yaml_scalar(&self.name));
        let _ = writeln!(text, "display-name: {}", yaml_scalar(&self.name));
        text.push_str("tasks:\n  - image-classification\n");
        let _ = writeln!(text, "license: {}", yaml_scalar(&self.license));
        text.push_str("framework: PyTorch\n");
        let _ = writeln!(text, "tags:\n  - {}", yaml_scalar(&self.entry_class));
        let _ = writeln!(text, "author: {}", yaml_scalar(&self.author));
        text.push_str("is-federated: false\n---\n\n");
        let _ = writeln!(text, "# {}\n", self.name);
        let _ = writeln!(
            text,
            "An image classifier for {} labels, made by `engine model new`. Describe here what \
             it is for, the data it was trained on and its limits.\n",
            self.labels.len()
        );
        text.push_str("## Model\n\n");
        let _ = writeln!(
            text,
            "`{}.{}`, built into the engine: {}. Input: {} channel(s), {}x{} pixels.\n",
            self.entry_module,
            self.entry_class,
            self.architecture,
            self.in_channels,
            self.image_size,
            self.image_size
        );
        text.push_str("## Weights\n\n");
        let _ = writeln!(text, "`{NEW_WEIGHTS_FILE}`: {}\n", self.weights_origin);
        text.push_str("## Labels\n\n");
        for (i, label) in self.labels.iter().enumerate() {
            let _ = writeln!(text, "{i}. {label}");
        }
        text.push_str("\n## Training settings\n\n");
        text.push_str(
            "Every hyper-parameter is written in `config.json`; nothing else applies (no \
             learning-rate schedule unless `lr_schedule` declares one). A workflow's `training` \
             section may override them for one task (docs/TRAINING.md).\n\n",
        );
        text.push_str("| key | value | what it does | accepted |\n|---|---|---|---|\n");
        let values = self.hyper_parameters.to_config_json();
        for spec in HYPER_PARAMETERS {
            let value = values.get(spec.key).map_or(String::new(), Value::to_string);
            let _ = writeln!(
                text,
                "| `{}` | `{}` | {} | {} |",
                spec.key,
                value,
                spec.description,
                spec.accepted.replace('|', "\\|")
            );
        }
        text.push_str("\n## Preprocessing\n\n");
        let _ = writeln!(
            text,
            "`preprocessor_config.json`: resize to {0}x{0}, scale to 0-1, normalise with mean \
             {1:?} and standard deviation {2:?}; no augmentation (set `do_affine` or \
             `do_horizontal_flip` to add some).",
            self.image_size, self.image_mean, self.image_std
        );
        text
    }

    /// `config.json`: the entry, the weights file, the labels and every hyper-parameter.
    pub fn config(&self) -> Value {
        let mut map = Map::new();
        map.insert("entry_module".into(), json!(self.entry_module));
        map.insert("entry_file".into(), Value::Null);
        map.insert("entry_class".into(), json!(self.entry_class));
        map.insert("param_file".into(), json!(NEW_WEIGHTS_FILE));
        map.insert("in_channels".into(), json!(self.in_channels));
        let id2label: Map<String, Value> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, label)| (i.to_string(), json!(label)))
            .collect();
        let label2id: Map<String, Value> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, label)| (label.clone(), json!(i)))
            .collect();
        map.insert("id2label".into(), Value::Object(id2label));
        map.insert("label2id".into(), Value::Object(label2id));
        map.extend(self.hyper_parameters.to_config_json());
        Value::Object(map)
    }

    /// `preprocessor_config.json`: every key written, augmentation off.
    pub fn preprocessor(&self) -> Value {
        json!({
            "size": self.image_size,
            "do_affine": false,
            "do_horizontal_flip": false,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
        })
    }
}

/// A YAML scalar: plain when it reads back as the same string, double-quoted otherwise.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ' | '/' | '(' | ')'))
        && !text.starts_with([' ', '-', '.'])
        && !text.ends_with(' ')
        && text.parse::<f64>().is_err()
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
        );
    if plain {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelCatalog, inspect_package};

    fn example() -> NewPackage {
        NewPackage {
            name: "chest x-ray: pneumonia".into(),
            author: "Dr. Müller".into(),
            license: "CC-BY-4.0".into(),
            entry_module: "fedengine.vision".into(),
            entry_class: "SmallCnn".into(),
            architecture: "a small CNN".into(),
            labels: vec!["normal".into(), "pneumonia, viral".into(), "肺炎".into()],
            in_channels: 1,
            image_size: 32,
            image_mean: vec![0.5],
            image_std: vec![0.5],
            weights_origin: "initialised from seed 0".into(),
            hyper_parameters: HyperParameters::resolve(&[]).expect("defaults").values,
        }
    }

    #[test]
    fn a_new_package_is_valid_and_writes_every_setting_out() {
        let spec = example();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("README.md"), spec.card()).expect("card");
        let config = serde_json::to_string_pretty(&spec.config()).expect("json");
        std::fs::write(dir.path().join("config.json"), config).expect("config");
        let pre = serde_json::to_string_pretty(&spec.preprocessor()).expect("json");
        std::fs::write(dir.path().join("preprocessor_config.json"), pre).expect("pre");
        // Any safetensors file will do for the text checks (the weights are the caller's).
        let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        std::fs::write(dir.path().join(NEW_WEIGHTS_FILE), bytes).expect("weights");

        let mut catalog = ModelCatalog::new();
        catalog.register("fedengine.vision", "SmallCnn");
        let inspection = inspect_package(dir.path(), &catalog);
        let package = inspection.package.expect("valid");
        assert!(inspection.problems.is_empty(), "{}", inspection.problems);
        assert_eq!(package.card.name, spec.name);
        assert_eq!(package.card.author, spec.author);
        assert_eq!(package.labels(), Some(spec.labels.as_slice()));
        // Every hyper-parameter is declared by the package, none left to a default.
        let declared = package.config.hyper_parameters.to_json();
        for key in HYPER_PARAMETERS {
            assert!(declared.contains_key(key.key), "{} not written", key.key);
            assert!(spec.card().contains(&format!("| `{}` |", key.key)));
        }
        let pre = package.preprocessor.expect("preprocessor");
        assert_eq!(pre.augmentation(), "none");
    }

    #[test]
    fn yaml_scalars_are_quoted_when_plain_would_change_them() {
        assert_eq!(yaml_scalar("digits-cnn"), "digits-cnn");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("1.5"), "\"1.5\"");
        assert_eq!(yaml_scalar("#tag"), "\"#tag\"");
        assert_eq!(yaml_scalar(""), "\"\"");
    }
}
