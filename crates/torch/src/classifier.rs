//! An image classifier built from a model package: the registered implementation, its
//! variables in a `VarStore`, the package's weights loaded strictly, and its labels.

use fl_package::{Entry, ModelPackage};
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

use crate::error::ModelError;
use crate::params::{load_strict, named_tensors, read_params, write_safetensors};
use crate::registry::{ModelSpec, builtin_models, find_builtin};

/// What happened to the classifier head when building from a package for a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadChange {
    /// The package's labels are the dataset's: every weight was loaded.
    Kept,
    /// The dataset's labels differ from the package's (count, names or order): the head was
    /// re-initialised for the dataset's labels, every other weight was loaded.
    Rebuilt {
        /// Classes before.
        from: usize,
        /// Classes now.
        to: usize,
    },
}

/// A classifier ready to train, evaluate or predict.
pub struct Classifier {
    vs: nn::VarStore,
    net: Box<dyn ModuleT + Send>,
    /// Input channels and number of classes.
    pub spec: ModelSpec,
    /// Labels by class index.
    pub labels: Vec<String>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("spec", &self.spec)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// Builds the package's model for `labels` (the dataset's; `None` keeps the package's),
    /// loading the package's weights strictly. When the labels differ from the package's the
    /// head is re-initialised from `seed` (as AlphaMed's AutoResNet does) and every other
    /// weight is loaded.
    pub fn from_package(
        package: &ModelPackage,
        labels: Option<&[String]>,
        seed: i64,
    ) -> Result<(Self, HeadChange), ModelError> {
        let (module, class) = match &package.config.entry {
            Entry::Module { module, class } => (module.as_str(), class.as_str()),
            Entry::File { .. } => {
                return Err(ModelError::TorchScriptUnsupported {
                    path: package.entry_path.clone().unwrap_or_default(),
                });
            }
        };
        let builtin = find_builtin(module, class).ok_or_else(|| ModelError::UnknownModel {
            module: module.to_owned(),
            class: class.to_owned(),
            known: builtin_models()
                .iter()
                .map(|m| format!("{}.{}", m.module, m.class))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let in_channels = match package.config.raw.get("in_channels") {
            None => 3,
            Some(v) => {
                v.as_i64()
                    .filter(|c| [1, 3].contains(c))
                    .ok_or_else(|| ModelError::Config {
                        key: "in_channels".into(),
                        message: format!("is {v}"),
                        expected: "1 (grey) or 3 (RGB)".into(),
                    })?
            }
        };
        let params_err = |source| ModelError::Params {
            path: package.param_path.clone(),
            source,
        };
        let tensors = read_params(&package.param_path).map_err(params_err)?;
        let head_weight = format!("{}.weight", builtin.head);
        let package_classes = tensors
            .iter()
            .find(|(name, _)| *name == head_weight)
            .map(|(_, t)| t.size()[0] as usize);
        let package_labels = package.labels().map(<[String]>::to_vec);
        let target_labels: Vec<String> = match (labels, &package_labels, package_classes) {
            (Some(labels), _, _) => labels.to_vec(),
            (None, Some(labels), _) => labels.clone(),
            (None, None, Some(n)) => (0..n).map(|i| i.to_string()).collect(),
            (None, None, None) => {
                return Err(ModelError::Config {
                    key: "id2label".into(),
                    message: "is missing and the weights have no classifier head".into(),
                    expected: "id2label with the model's labels".into(),
                });
            }
        };
        let keep_head = match &package_labels {
            Some(pkg) => *pkg == target_labels,
            None => package_classes == Some(target_labels.len()),
        };

        tch::manual_seed(seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let spec = ModelSpec {
            in_channels,
            num_classes: target_labels.len() as i64,
        };
        let net = (builtin.build)(&vs.root(), spec);
        let change = if keep_head {
            load_strict(&mut vs, &tensors).map_err(params_err)?;
            HeadChange::Kept
        } else {
            // Keep the freshly initialised head; load everything else strictly.
            let prefix = format!("{}.", builtin.head);
            let mut merged: Vec<(String, Tensor)> = tensors
                .into_iter()
                .filter(|(name, _)| !name.starts_with(&prefix))
                .collect();
            merged.extend(
                named_tensors(&vs)
                    .into_iter()
                    .filter(|(name, _)| name.starts_with(&prefix)),
            );
            load_strict(&mut vs, &merged).map_err(params_err)?;
            HeadChange::Rebuilt {
                from: package_classes
                    .or(package_labels.map(|l| l.len()))
                    .unwrap_or(0),
                to: target_labels.len(),
            }
        };
        Ok((
            Self {
                vs,
                net,
                spec,
                labels: target_labels,
            },
            change,
        ))
    }

    /// Runs the model on a batch `[N, C, H, W]`, in training mode (BatchNorm batch
    /// statistics, updated running averages) or evaluation mode.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(xs, train)
    }

    /// The model's variables.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Detached copies of every variable, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, Tensor)> {
        named_tensors(&self.vs)
    }

    /// Restores a [`snapshot`](Self::snapshot).
    pub fn restore(&mut self, snapshot: &[(String, Tensor)]) -> Result<(), ModelError> {
        load_strict(&mut self.vs, snapshot).map_err(|source| ModelError::Params {
            path: "(snapshot)".into(),
            source,
        })?;
        Ok(())
    }

    /// Writes every variable as safetensors with PyTorch's names.
    pub fn save_safetensors(&self, path: &std::path::Path) -> Result<(), ModelError> {
        write_safetensors(path, &self.snapshot()).map_err(|source| ModelError::Params {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtin_catalog;

    fn example() -> ModelPackage {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/digits-cnn");
        ModelPackage::open(&dir, &builtin_catalog()).expect("the example package is valid")
    }

    fn value(tensors: &[(String, Tensor)], name: &str) -> Tensor {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .expect("tensor present")
    }

    #[test]
    fn same_labels_keep_every_weight_and_new_labels_rebuild_only_the_head() {
        let package = example();
        let file = read_params(&package.param_path).expect("weights");

        let (kept, change) = Classifier::from_package(&package, None, 1).expect("built");
        assert_eq!(change, HeadChange::Kept);
        assert_eq!(kept.labels.len(), 10);
        let state = kept.snapshot();
        for name in ["conv1.weight", "bn2.running_var", "fc.weight"] {
            assert!(
                value(&state, name).equal(&value(&file, name)),
                "{name} loaded as saved"
            );
        }

        let labels: Vec<String> = ["benign", "malignant", "unknown"]
            .map(String::from)
            .to_vec();
        let (rebuilt, change) =
            Classifier::from_package(&package, Some(&labels), 1).expect("built");
        assert_eq!(change, HeadChange::Rebuilt { from: 10, to: 3 });
        assert_eq!(rebuilt.labels, labels);
        let state = rebuilt.snapshot();
        assert_eq!(value(&state, "fc.weight").size(), vec![3, 256]);
        assert!(value(&state, "conv2.weight").equal(&value(&file, "conv2.weight")));

        let logits = rebuilt.forward(
            &Tensor::zeros([4, 1, 8, 8], (tch::Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(logits.size(), vec![4, 3]);
    }
}
