//! The registry of model implementations built into the engine, selected by a package's
//! `config.json` through `entry_module` + `entry_class`.

use fl_package::ModelCatalog;
use tch::nn::{self, ModuleT};

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
            let net = (model.build)(&vs.root(), spec);
            let xs = Tensor::randn([2, 1, size, size], (Kind::Float, Device::Cpu));
            let logits = net.forward_t(&xs, false);
            assert_eq!(logits.size(), vec![2, 7], "{}", model.class);
            assert!(builtin_catalog().lookup(model.module, model.class).is_ok());
        }
    }

    #[test]
    fn resnet18_has_torchvisions_parameter_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = (find_builtin(BUILTIN_MODULE, "ResNet18")
            .expect("registered")
            .build)(
            &vs.root(),
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
        // torchvision's 122 state-dict entries minus the 20 `num_batches_tracked` counters.
        assert_eq!(names.len(), 102);
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
