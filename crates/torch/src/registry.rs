//! The registry of model implementations built into the engine, selected by a package's
//! `config.json` through `entry_module` + `entry_class`.

use fl_package::ModelCatalog;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use crate::models::{ResNetDepth, resnet, small_cnn};

/// The `entry_module` of every built-in model.
pub const BUILTIN_MODULE: &str = "fedengine.vision";

/// The shape of a classifier to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Image channels (1 for grey, 3 for RGB).
    pub in_channels: i64,
    /// Output classes.
    pub num_classes: i64,
}

/// Builds a model's variables under a path and returns its forward function.
pub type BuildFn = fn(&nn::Path, ModelSpec) -> Box<dyn ModuleT + Send>;

/// One built-in model.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinModel {
    /// `entry_module`.
    pub module: &'static str,
    /// `entry_class`.
    pub class: &'static str,
    /// What it is, for listings.
    pub summary: &'static str,
    /// The classifier head's parameter prefix (`fc`), rebuilt when the number of classes
    /// changes.
    pub head: &'static str,
    /// Its constructor.
    pub build: BuildFn,
}

/// The suffix of BatchNorm's counter of training batches, as PyTorch names it.
pub(crate) const BATCH_COUNTER: &str = "num_batches_tracked";

impl BuiltinModel {
    /// Builds the model's variables in `vs` (at its root) and returns the network, with
    /// PyTorch's BatchNorm counters: a non-trainable `int64` scalar
    /// `<prefix>.num_batches_tracked` beside every `<prefix>.running_mean` (tch's BatchNorm has
    /// none), which every forward pass in training mode increments by one, as PyTorch's does.
    /// So the model's state dict has torchvision's names and entries, counters included.
    pub fn instantiate(&self, vs: &nn::VarStore, spec: ModelSpec) -> Box<dyn ModuleT + Send> {
        let net = (self.build)(&vs.root(), spec);
        let mut counters = Vec::new();
        let mut variables = vs.variables_.lock().unwrap_or_else(|p| p.into_inner());
        let mut prefixes: Vec<String> = variables
            .named_variables
            .keys()
            .filter_map(|name| name.strip_suffix("running_mean").map(str::to_owned))
            .collect();
        prefixes.sort();
        for prefix in prefixes {
            let counter = Tensor::zeros([], (Kind::Int64, vs.device()));
            counters.push(counter.shallow_clone());
            variables
                .named_variables
                .insert(format!("{prefix}{BATCH_COUNTER}"), counter);
        }
        Box::new(Counted { net, counters })
    }
}

/// A built-in network and its BatchNorm counters, counted per training forward pass.
struct Counted {
    net: Box<dyn ModuleT + Send>,
    counters: Vec<Tensor>,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("counters", &self.counters.len())
            .finish_non_exhaustive()
    }
}

impl ModuleT for Counted {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = self.net.forward_t(xs, train);
        if train {
            tch::no_grad(|| {
                for counter in &self.counters {
                    let _ = counter.shallow_clone().f_add_scalar_(1);
                }
            });
        }
        out
    }
}

const BUILTINS: &[BuiltinModel] = &[
    BuiltinModel {
        module: BUILTIN_MODULE,
        class: "SmallCnn",
        summary: "two conv layers with BatchNorm; small images, fast tests",
        head: "fc",
        build: |p, s| Box::new(small_cnn(p, s.in_channels, s.num_classes)),
    },
    BuiltinModel {
        module: BUILTIN_MODULE,
        class: "ResNet18",
        summary: "torchvision resnet18 (same parameter names)",
        head: "fc",
        build: |p, s| Box::new(resnet(p, ResNetDepth::R18, s.in_channels, s.num_classes)),
    },
    BuiltinModel {
        module: BUILTIN_MODULE,
        class: "ResNet34",
        summary: "torchvision resnet34 (same parameter names)",
        head: "fc",
        build: |p, s| Box::new(resnet(p, ResNetDepth::R34, s.in_channels, s.num_classes)),
    },
    BuiltinModel {
        module: BUILTIN_MODULE,
        class: "ResNet50",
        summary: "torchvision resnet50 (same parameter names)",
        head: "fc",
        build: |p, s| Box::new(resnet(p, ResNetDepth::R50, s.in_channels, s.num_classes)),
    },
];

/// Every built-in model.
pub fn builtin_models() -> &'static [BuiltinModel] {
    BUILTINS
}

/// Finds a built-in model by `entry_module` and `entry_class`.
pub fn find_builtin(module: &str, class: &str) -> Option<&'static BuiltinModel> {
    BUILTINS
        .iter()
        .find(|m| m.module == module && m.class == class)
}

/// The catalog of built-in names, for package validation.
pub fn builtin_catalog() -> ModelCatalog {
    let mut catalog = ModelCatalog::new();
    for model in BUILTINS {
        catalog.register(model.module, model.class);
    }
    catalog
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn every_builtin_builds_and_classifies_a_batch() {
        for (model, size) in BUILTINS.iter().zip([8, 32, 32]) {
            let vs = nn::VarStore::new(Device::Cpu);
            let spec = ModelSpec {
                in_channels: 1,
                num_classes: 7,
            };
            let net = model.instantiate(&vs, spec);
            let xs = Tensor::randn([2, 1, size, size], (Kind::Float, Device::Cpu));
            let logits = net.forward_t(&xs, false);
            assert_eq!(logits.size(), vec![2, 7], "{}", model.class);
            assert!(builtin_catalog().lookup(model.module, model.class).is_ok());
        }
    }

    #[test]
    fn resnet18_has_torchvisions_parameter_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = find_builtin(BUILTIN_MODULE, "ResNet18")
            .expect("registered")
            .instantiate(
                &vs,
                ModelSpec {
                    in_channels: 3,
                    num_classes: 1000,
                },
            );
        let names = vs.variables();
        for name in [
            "conv1.weight",
            "bn1.running_var",
            "layer2.0.downsample.0.weight",
            "layer4.1.bn2.bias",
            "fc.bias",
        ] {
            assert!(names.contains_key(name), "missing {name}");
        }
        // torchvision's 122 state-dict entries, the 20 `num_batches_tracked` counters included.
        assert_eq!(names.len(), 122);
        assert_eq!(
            names["layer1.0.bn1.num_batches_tracked"].kind(),
            Kind::Int64
        );
        let xs = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let _ = net.forward_t(&xs, true);
        let _ = net.forward_t(&xs, true);
        let _ = net.forward_t(&xs, false);
        let counted = vs.variables()["layer4.1.bn2.num_batches_tracked"].int64_value(&[]);
        assert_eq!(counted, 2, "two training passes counted, evaluation not");
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(
            params, 11_689_512,
            "torchvision resnet18 has 11,689,512 parameters"
        );
    }
}
