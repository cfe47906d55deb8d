//! The registry of model implementations, by a package's `entry_module` / `entry_class`.
//!
//! A crate registers a model with [`register_model!`](crate::register_model); the
//! registration is collected at link time (`inventory`), so a model crate only has to be
//! linked into the binary (a `use my_model as _;` in the binary's `main.rs`), not named in
//! any engine code.

use fl_package::{Entry, ModelCatalog};
use fl_torch::ModelError;

use crate::context::ModelInit;
use crate::fedavg::AutoFedAvgModel;
use crate::vision::VisionClassifier;

/// Builds a model for a task.
pub type BuildModel = fn(ModelInit) -> Result<Box<dyn AutoFedAvgModel>, ModelError>;

/// A registered model implementation.
#[derive(Debug)]
pub struct ModelFactory {
    /// The `entry_module` packages name it by.
    pub module: &'static str,
    /// The `entry_class` packages name it by.
    pub class: &'static str,
    /// What it is, for listings.
    pub summary: &'static str,
    /// Its constructor.
    pub build: BuildModel,
}

inventory::collect!(ModelFactory);

/// Registers a model under `entry_module` and `entry_class`; `build` is a
/// `fn(ModelInit) -> Result<Box<dyn AutoFedAvgModel>, ModelError>` (or a closure that
/// captures nothing). See docs/AUTHORING.md.
///
/// ```
/// use fl_model::{AutoFedAvgModel, ModelError, ModelInit, VisionClassifier};
///
/// fn build(init: ModelInit) -> Result<Box<dyn AutoFedAvgModel>, ModelError> {
///     Ok(Box::new(VisionClassifier::build(init)?))
/// }
///
/// fl_model::register_model!("acme.vision", "MyResNet", "ResNet-18 under our name", build);
/// # fn main() {
/// assert_eq!(fl_model::find_model("acme.vision", "MyResNet").unwrap().summary, "ResNet-18 under our name");
/// # }
/// ```
#[macro_export]
macro_rules! register_model {
    ($module:expr, $class:expr, $summary:expr, $build:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::ModelFactory {
                module: $module,
                class: $class,
                summary: $summary,
                build: $build,
            }
        }
    };
}

/// Every registered model, sorted by module and class.
pub fn registered_models() -> Vec<&'static ModelFactory> {
    let mut models: Vec<&'static ModelFactory> = inventory::iter::<ModelFactory>().collect();
    models.sort_by_key(|m| (m.module, m.class));
    models
}

/// The model registered under `module` and `class`; two registrations of the same names are
/// an error naming both.
pub fn find_model(module: &str, class: &str) -> Result<&'static ModelFactory, ModelError> {
    let found: Vec<&'static ModelFactory> = registered_models()
        .into_iter()
        .filter(|m| m.module == module && m.class == class)
        .collect();
    match found[..] {
        [one] => Ok(one),
        [] => Err(ModelError::UnknownModel {
            module: module.to_owned(),
            class: class.to_owned(),
            known: registered_models()
                .iter()
                .map(|m| format!("{}.{}", m.module, m.class))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        _ => Err(ModelError::Model(format!(
            "`{module}.{class}` is registered {} times (by: {}); link one model crate that \
             registers it",
            found.len(),
            found
                .iter()
                .map(|m| m.summary)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// The names of every registered model, for package validation.
pub fn catalog() -> ModelCatalog {
    let mut catalog = ModelCatalog::new();
    for model in registered_models() {
        catalog.register(model.module, model.class);
    }
    catalog
}

/// Builds the package's model: the registered implementation of its `entry_module` /
/// `entry_class`, or, for a TorchScript package (`entry_file`), a [`VisionClassifier`]
/// around the scripted module.
pub fn build_model(init: ModelInit) -> Result<Box<dyn AutoFedAvgModel>, ModelError> {
    match &init.package.config.entry {
        Entry::File { .. } => Ok(Box::new(VisionClassifier::build(init)?)),
        Entry::Module { module, class } => {
            let factory = find_model(module, class)?;
            (factory.build)(init)
        }
    }
}
