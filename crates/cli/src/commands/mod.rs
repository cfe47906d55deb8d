//! One module per subcommand.

pub mod finetune;
pub mod model;
pub mod nats_args;
pub mod predict;
pub mod progress;
pub mod service;
pub mod status;
pub mod submit;
pub mod validate;

/// Opens the MODEL argument (a package directory or a `model.zip`), logging its warnings.
fn open_model(path: &std::path::Path) -> anyhow::Result<fl_package::OpenedPackage> {
    let opened = fl_package::OpenedPackage::open(path, &fl_model::catalog())?;
    for warning in &opened.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    Ok(opened)
}
