//! AlphaMed-style pretrained model packages.
//!
//! A package is one directory holding a Model Card (`README.md` with YAML front matter),
//! `config.json` (which model to build and where its weights are), an optional
//! `preprocessor_config.json`, and a weights file. This crate reads and checks all of it
//! without loading any weights, reporting every problem at once with the file, the key or
//! line, and what would be accepted:
//!
//! ```no_run
//! use fl_package::{inspect_package, ModelCatalog};
//!
//! let mut catalog = ModelCatalog::new();
//! catalog.register("fedengine.vision", "SmallCnn");
//! let inspection = inspect_package("models/digits-cnn".as_ref(), &catalog);
//! for problem in &inspection.problems {
//!     eprintln!("{problem}");
//! }
//! if let Some(package) = inspection.package {
//!     println!("{} ({})", package.card.display_name, package.param_file.format);
//! }
//! ```
//!
//! The crate knows no model implementation; the caller passes a [`ModelCatalog`] of the
//! `entry_module` / `entry_class` names it can build.

mod card;
mod catalog;
mod config;
mod hparams;
mod labels;
mod opened;
mod package;
mod param_file;
mod paths;
mod preprocessor;
mod problem;
mod result;
mod scaffold;
mod values;

pub use card::{CARD_FILE, ModelCard, Task, parse_card};
pub use catalog::{CatalogMiss, ModelCatalog};
pub use config::{CONFIG_FILE, Entry, ModelConfig, parse_config};
pub use hparams::{
    HYPER_PARAMETERS, HeadRule, HyperParameterValues, HyperParameters, KeyProblem, KeySpec,
    LrSchedule, Optimizer, Origin, Origins, RETIRED_KEYS, ResolveError, Resolved, Scope, Setting,
    json_schema, key_spec, markdown_table, setting_line,
};
pub use labels::{HeadPlan, LabelError, LabelPlan, plan_labels};
pub use opened::{OpenError, OpenedPackage};
pub use package::{
    Inspection, MAX_CARD_BYTES, MAX_JSON_BYTES, ModelPackage, PackageError, inspect_package,
};
pub use param_file::{ParamFileError, ParamFileInfo, ParamFormat, inspect_param_file};
pub use paths::{PathError, resolve_inside};
pub use preprocessor::{
    Affine, Normalize, PREPROCESSOR_FILE, PreprocessorConfig, Resample, Resize, parse_preprocessor,
};
pub use problem::{Position, Problem, Problems, Severity};
pub use result::{
    MAX_EXTRACTED_BYTES, ResultError, ResultSpec, extract_model_zip, write_model_zip,
};
pub use scaffold::{NEW_WEIGHTS_FILE, NewPackage};
