//! An image classifier built from a model package: the registered implementation or the
//! package's TorchScript module, its variables in a `VarStore` under PyTorch's names, the
//! package's weights loaded strictly, and its labels.
//!
//! Both kinds train, evaluate, snapshot, restore and save through the same methods, so the
//! training loop, the optimiser and fine-tuning do not know which kind they run. For a
//! TorchScript module (`entry_file`) the store holds the module's own parameters and buffers
//! (see [`crate::torchscript`] for how buffers are reached).

use fl_package::{Entry, HeadPlan, HeadRule, LabelPlan, ModelPackage, Resize, plan_labels};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::error::ModelError;
use crate::guard::catch_forward;
use crate::params::{load_strict, named_tensors, read_params, write_safetensors};
use crate::registry::{ModelSpec, builtin_models, find_builtin};
use crate::torchscript::ScriptedModule;

/// The network: built into the engine, or a package's TorchScript module.
enum Net {
    Builtin(Box<dyn ModuleT + Send>),
    Scripted(ScriptedModule),
}

/// A classifier ready to train, evaluate or predict.
pub struct Classifier {
    vs: nn::VarStore,
    net: Net,
    /// Input channels and number of classes.
    pub spec: ModelSpec,
    /// Labels by class index.
    pub labels: Vec<String>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.net {
            Net::Builtin(_) => "built-in".to_owned(),
            Net::Scripted(module) => format!("TorchScript {}", module.type_name()),
        };
        f.debug_struct("Classifier")
            .field("net", &kind)
            .field("spec", &self.spec)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// Builds the package's model for the task's `labels` (`None` keeps the package's),
    /// matched to the package's head by name under `head` ([`plan_labels`]): the model's
    /// labels are the plan's, and its head keeps, resets (from `seed`, as AlphaMed's
    /// AutoResNet does) or extends the package's outputs. Every other weight is loaded
    /// strictly.
    ///
    /// A TorchScript package (`entry_file`) is loaded as described in
    /// [`from_torchscript`](Self::from_torchscript).
    pub fn from_package(
        package: &ModelPackage,
        labels: Option<&[String]>,
        head: HeadRule,
        seed: i64,
    ) -> Result<(Self, LabelPlan), ModelError> {
        let (module, class) = match &package.config.entry {
            Entry::Module { module, class } => (module.as_str(), class.as_str()),
            Entry::File { class, .. } => {
                return Self::from_torchscript(package, class, labels, head, seed);
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
        let in_channels = in_channels(package)?;
        let params_err = |source| ModelError::Params {
            path: package.param_path.clone(),
            source,
        };
        let tensors = read_params(&package.param_path).map_err(params_err)?;
        let head_weight = format!("{}.weight", builtin.head);
        let package_classes = tensors
            .iter()
            .find(|(name, _)| *name == head_weight)
            .and_then(|(_, t)| t.size().first().map(|&n| n as usize));
        let plan = plan_for(package, package_classes, labels, head)?;

        tch::manual_seed(seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let spec = ModelSpec {
            in_channels,
            num_classes: plan.labels.len() as i64,
        };
        let net = Net::Builtin(builtin.instantiate(&vs, spec));
        let weights = match &plan.head {
            HeadPlan::Keep { .. } | HeadPlan::ByPosition => tensors,
            // The fresh head from the seed, every other weight from the file.
            HeadPlan::Reset { .. } => with_head(tensors, builtin.head, &vs, 0),
            // The file's rows for the package's outputs, fresh rows for the new labels.
            HeadPlan::Extend { added } => {
                with_head(tensors, builtin.head, &vs, plan.labels.len() - added.len())
            }
        };
        load_strict(&mut vs, &weights).map_err(params_err)?;
        let labels = plan.labels.clone();
        Ok((
            Self {
                vs,
                net,
                spec,
                labels,
            },
            plan,
        ))
    }

    /// Builds a classifier from a TorchScript package: loads the `entry_file` module (whose
    /// class `entry_class` must name), registers its parameters and buffers in the store under
    /// their PyTorch names, and loads the `param_file` strictly into them by name (a
    /// `torch.save(model.state_dict())` file or safetensors from PyTorch; BatchNorm's
    /// `num_batches_tracked` included, as PyTorch saves it).
    ///
    /// The number of classes is the width of the module's output on a batch of zeros of the
    /// preprocessor's output size (run once, in eval mode, which also checks `in_channels`), or
    /// the number of `id2label` entries when the preprocessor does not fix the image size. The
    /// task's labels are matched to `id2label` by name ([`plan_labels`]); a scripted head
    /// cannot be rebuilt by the engine, so only `head: keep` applies. `seed` seeds libtorch
    /// before loading (Dropout in training).
    pub fn from_torchscript(
        package: &ModelPackage,
        entry_class: &str,
        labels: Option<&[String]>,
        head: HeadRule,
        seed: i64,
    ) -> Result<(Self, LabelPlan), ModelError> {
        let Some(entry_path) = package.entry_path.as_deref() else {
            return Err(ModelError::Config {
                key: "entry_file".into(),
                message: "is not given".into(),
                expected: "the TorchScript file of the model, e.g. \"model.ts\"".into(),
            });
        };
        if package.param_path == entry_path {
            return Err(ModelError::Config {
                key: "param_file".into(),
                message: format!("names the entry file `{}` itself", entry_path.display()),
                expected: "a separate weights file with the module's parameters and buffers: \
                     safetensors, or torch.save(model.state_dict())"
                    .into(),
            });
        }
        let in_channels = in_channels(package)?;
        let params_err = |source| ModelError::Params {
            path: package.param_path.clone(),
            source,
        };
        let tensors = read_params(&package.param_path).map_err(params_err)?;

        tch::manual_seed(seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let module = ScriptedModule::load(entry_path, entry_class, &vs)?;
        load_strict(&mut vs, &tensors).map_err(params_err)?;

        let classes = scripted_classes(package, &module, entry_path, in_channels)?;
        let plan = plan_for(package, Some(classes), labels, head)?;
        if !matches!(plan.head, HeadPlan::Keep { .. } | HeadPlan::ByPosition) {
            return Err(ModelError::Config {
                key: "head".into(),
                message: format!(
                    "is `{head}` ({plan}), but the engine cannot rebuild the head of a \
                     TorchScript module"
                ),
                expected: format!(
                    "`head: keep` with the package's {classes} labels, or a module exported \
                     with a head for the data's labels"
                ),
            });
        }
        let target_labels = plan.labels.clone();
        Ok((
            Self {
                vs,
                net: Net::Scripted(module),
                spec: ModelSpec {
                    in_channels,
                    num_classes: classes as i64,
                },
                labels: target_labels,
            },
            plan,
        ))
    }

    /// Runs the model on a batch `[N, C, H, W]`, in training mode (BatchNorm batch
    /// statistics, updated running averages, Dropout) or evaluation mode. A TorchScript module
    /// is switched with `train()` / `eval()` when the mode changes. A batch the network
    /// refuses (an image too small for its convolutions, the wrong channel count) is an error
    /// with libtorch's message, never a panic.
    pub fn try_forward(&self, xs: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let result = match &self.net {
            Net::Builtin(net) => catch_forward(|| net.forward_t(xs, train)),
            Net::Scripted(module) => module.try_forward(xs, train),
        };
        result.map_err(|message| ModelError::Forward {
            shape: xs.size(),
            message,
        })
    }

    /// [`try_forward`](Self::try_forward) for `tch`'s infallible [`ModuleT`] interface: a
    /// refused batch panics with the error, which the training and evaluation loops
    /// ([`crate::train_batches`], [`crate::evaluate_batches`]) catch and return as an error.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.try_forward(xs, train)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// The model's variables: trainable parameters and non-trainable buffers, under PyTorch's
    /// names. For a TorchScript module they are the module's own tensors.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The TorchScript module, for a package with an `entry_file`.
    pub fn scripted(&self) -> Option<&ScriptedModule> {
        match &self.net {
            Net::Builtin(_) => None,
            Net::Scripted(module) => Some(module),
        }
    }

    /// Points a TorchScript module's buffer variables at its current buffers.
    fn refresh(&self) -> Result<(), ModelError> {
        match &self.net {
            Net::Builtin(_) => Ok(()),
            Net::Scripted(module) => module.refresh_buffers(&self.vs),
        }
    }

    /// Detached copies of every variable (parameters and buffers), sorted by name.
    ///
    /// For a TorchScript module the buffers are fetched again first; should that fail (it
    /// did not when the module was loaded), the buffers fetched last are copied, which are
    /// the module's unless it assigned new tensors to them.
    pub fn snapshot(&self) -> Vec<(String, Tensor)> {
        let _ = self.refresh();
        named_tensors(&self.vs)
    }

    /// Restores a [`snapshot`](Self::snapshot), strictly (every name, exact shapes).
    pub fn restore(&mut self, snapshot: &[(String, Tensor)]) -> Result<(), ModelError> {
        self.refresh()?;
        load_strict(&mut self.vs, snapshot).map_err(|source| ModelError::Params {
            path: "(snapshot)".into(),
            source,
        })?;
        Ok(())
    }

    /// Writes every variable as safetensors with PyTorch's names (a TorchScript module's
    /// buffers included, so that `load_state_dict(strict=True)` accepts the file).
    pub fn save_safetensors(&self, path: &std::path::Path) -> Result<(), ModelError> {
        self.refresh()?;
        write_safetensors(path, &named_tensors(&self.vs)).map_err(|source| ModelError::Params {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl ModuleT for Classifier {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward(xs, train)
    }
}

/// The label plan for a package whose head has `outputs` outputs (when known) and the task's
/// `labels` (`None`: the package's own).
fn plan_for(
    package: &ModelPackage,
    outputs: Option<usize>,
    labels: Option<&[String]>,
    head: HeadRule,
) -> Result<LabelPlan, ModelError> {
    let package_labels = package.labels();
    let own: Vec<String>;
    let task = match (labels, package_labels) {
        (Some(labels), _) => labels,
        (None, Some(known)) => known,
        (None, None) => match outputs {
            Some(n) => {
                own = (0..n).map(|i| i.to_string()).collect();
                &own
            }
            None => {
                return Err(ModelError::Config {
                    key: "id2label".into(),
                    message: "is missing and the weights have no classifier head".into(),
                    expected: "id2label with the model's labels".into(),
                });
            }
        },
    };
    plan_labels(package_labels, outputs, task, head).map_err(ModelError::Labels)
}

/// `tensors` with the head `prefix`'s weight and bias taken from the store's fresh head,
/// except their first `keep` rows, which stay the file's.
fn with_head(
    tensors: Vec<(String, Tensor)>,
    prefix: &str,
    vs: &nn::VarStore,
    keep: usize,
) -> Vec<(String, Tensor)> {
    let dotted = format!("{prefix}.");
    let file: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(name, _)| name.starts_with(&dotted))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let mut merged: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(name, _)| !name.starts_with(&dotted))
        .collect();
    for (name, fresh) in named_tensors(vs)
        .into_iter()
        .filter(|(name, _)| name.starts_with(&dotted))
    {
        let old = file.iter().find(|(n, _)| *n == name).map(|(_, t)| t);
        let value = match old {
            // The file's rows for the kept outputs, when they have the fresh rows' shape.
            Some(old)
                if keep > 0
                    && old.size().first() == Some(&(keep as i64))
                    && old.size()[1..] == fresh.size()[1..] =>
            {
                let rows = fresh.size()[0];
                Tensor::cat(
                    &[
                        old.to_kind(fresh.kind()),
                        fresh.narrow(0, keep as i64, rows - keep as i64),
                    ],
                    0,
                )
            }
            // Another shape: left as the file has it, for the strict load to name.
            Some(old) if keep > 0 => old.shallow_clone(),
            _ => fresh,
        };
        merged.push((name, value));
    }
    merged
}

/// The number of classes of a scripted module: the width of its output on a batch of zeros of
/// the preprocessor's output size (which also checks `in_channels`), else `id2label`'s count.
fn scripted_classes(
    package: &ModelPackage,
    module: &ScriptedModule,
    entry_path: &std::path::Path,
    in_channels: i64,
) -> Result<usize, ModelError> {
    let package_labels = package.labels().map(<[String]>::to_vec);
    let classes = match probe_size(package) {
        Some((height, width)) => {
            let xs = Tensor::zeros([2, in_channels, height, width], (Kind::Float, Device::Cpu));
            let logits = tch::no_grad(|| module.try_forward(&xs, false)).map_err(|e| {
                ModelError::Config {
                    key: "entry_file".into(),
                    message: format!(
                        "`{}`: forward on a batch of shape [2, {in_channels}, {height}, \
                         {width}] (in_channels, and the preprocessor's output size) failed: {}",
                        entry_path.display(),
                        e.lines().next().unwrap_or_default()
                    ),
                    expected: "a module classifying [N, in_channels, H, W] images into \
                         logits [N, classes]"
                        .into(),
                }
            })?;
            match logits.size().as_slice() {
                [2, classes] if *classes > 0 => Some(*classes as usize),
                shape => {
                    return Err(ModelError::Config {
                        key: "entry_file".into(),
                        message: format!(
                            "`{}`: forward returned shape {shape:?} for 2 images",
                            entry_path.display()
                        ),
                        expected: "logits [N, classes]".into(),
                    });
                }
            }
        }
        None => None,
    };
    match (classes, &package_labels) {
        (Some(n), Some(pkg)) if pkg.len() != n => Err(ModelError::Config {
            key: "id2label".into(),
            message: format!(
                "has {} labels but the TorchScript module outputs {n} classes",
                pkg.len()
            ),
            expected: format!("{n} labels, one per output of the module"),
        }),
        (Some(n), _) => Ok(n),
        (None, Some(pkg)) => Ok(pkg.len()),
        (None, None) => Err(ModelError::Config {
            key: "id2label".into(),
            message: "is missing, and the preprocessor does not fix the image size \
                          from which the module's number of classes could be found"
                .into(),
            expected: "id2label with the model's labels".into(),
        }),
    }
}

/// `in_channels` from `config.json` (1 or 3, default 3).
fn in_channels(package: &ModelPackage) -> Result<i64, ModelError> {
    match package.config.raw.get("in_channels") {
        None => Ok(3),
        Some(v) => v
            .as_i64()
            .filter(|c| [1, 3].contains(c))
            .ok_or_else(|| ModelError::Config {
                key: "in_channels".into(),
                message: format!("is {v}"),
                expected: "1 (grey) or 3 (RGB)".into(),
            }),
    }
}

/// The image size the preprocessor always produces, when it fixes one: the centre crop, else
/// an exact resize.
fn probe_size(package: &ModelPackage) -> Option<(i64, i64)> {
    let config = package.preprocessor.as_ref()?;
    if let Some((height, width)) = config.center_crop {
        return Some((height.into(), width.into()));
    }
    match config.resize {
        Some(Resize::Exact { height, width }) => Some((height.into(), width.into())),
        _ => None,
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

        let (kept, plan) =
            Classifier::from_package(&package, None, HeadRule::Keep, 1).expect("built");
        assert!(matches!(
            plan.head,
            HeadPlan::Keep {
                reordered: false,
                ..
            }
        ));
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
        let refused = Classifier::from_package(&package, Some(&labels), HeadRule::Keep, 1);
        assert!(matches!(refused, Err(ModelError::Labels(_))));
        let (rebuilt, plan) =
            Classifier::from_package(&package, Some(&labels), HeadRule::Reset, 1).expect("built");
        assert_eq!(plan.head, HeadPlan::Reset { from: 10 });
        assert_eq!(rebuilt.labels, labels);
        let state = rebuilt.snapshot();
        assert_eq!(value(&state, "fc.weight").size(), vec![3, 256]);
        assert!(value(&state, "conv2.weight").equal(&value(&file, "conv2.weight")));

        let logits = rebuilt.forward(
            &Tensor::zeros([4, 1, 8, 8], (Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(logits.size(), vec![4, 3]);
    }

    #[test]
    fn reordered_labels_are_mapped_and_new_ones_extend_the_head() {
        let package = example();
        let file = read_params(&package.param_path).expect("weights");
        let xs = Tensor::randn([3, 1, 8, 8], (Kind::Float, Device::Cpu));
        let (kept, _) = Classifier::from_package(&package, None, HeadRule::Keep, 1).expect("built");

        let reversed: Vec<String> = (0..10).rev().map(|i| i.to_string()).collect();
        let (mapped, plan) =
            Classifier::from_package(&package, Some(&reversed), HeadRule::Keep, 1).expect("built");
        assert!(matches!(
            plan.head,
            HeadPlan::Keep {
                reordered: true,
                ..
            }
        ));
        assert_eq!(
            mapped.labels, kept.labels,
            "the package's order is the model's"
        );
        assert!(mapped.forward(&xs, false).equal(&kept.forward(&xs, false)));

        let mut more = kept.labels.clone();
        more.push("ten".into());
        let (extended, plan) =
            Classifier::from_package(&package, Some(&more), HeadRule::Extend, 1).expect("built");
        assert_eq!(
            plan.head,
            HeadPlan::Extend {
                added: vec!["ten".into()]
            }
        );
        let state = extended.snapshot();
        let weight = value(&state, "fc.weight");
        assert_eq!(weight.size(), vec![11, 256]);
        assert!(weight.narrow(0, 0, 10).equal(&value(&file, "fc.weight")));
        assert!(
            value(&state, "fc.bias")
                .narrow(0, 0, 10)
                .equal(&value(&file, "fc.bias"))
        );
        let logits = extended.forward(&xs, false);
        let diff = (logits.narrow(1, 0, 10) - kept.forward(&xs, false))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "the package's outputs are kept: {diff}");
    }
}
