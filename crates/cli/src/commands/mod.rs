//! One module per subcommand.

pub mod data;
pub mod finetune;
pub mod model;
pub mod model_new;
pub mod nats_args;
pub mod predict;
pub mod progress;
pub mod service;
pub mod status;
pub mod submit;
pub mod validate;
pub mod workflow_new;

/// Opens the MODEL argument (a package directory or a `model.zip`), logging its warnings.
fn open_model(path: &std::path::Path) -> anyhow::Result<fl_package::OpenedPackage> {
    let opened = fl_package::OpenedPackage::open(path, &fl_model::catalog())?;
    for warning in &opened.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    Ok(opened)
}

/// Builds the package's model for `labels` (empty: the package's own) as a run would: the
/// model implementation found, its weights read and matched strictly, the preprocessing
/// checked, the hyper-parameters resolved. Nothing is trained or written.
fn build_check(
    package: &fl_package::ModelPackage,
    labels: &[String],
) -> Result<(), fl_torch::ModelError> {
    let scratch = tempfile::tempdir().map_err(|source| fl_torch::ModelError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let init = fl_model::ModelInit {
        package: package.clone(),
        options: fl_torch::TrainerOptions::default(),
        context: fl_model::ModelContext {
            node: "validate".into(),
            task: "validate".into(),
            labels: labels.to_vec(),
            result_dir: scratch.path().to_owned(),
            ..fl_model::ModelContext::default()
        },
    };
    fl_model::build_model(init).map(drop)
}
