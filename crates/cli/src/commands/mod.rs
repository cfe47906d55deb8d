//! One module per subcommand.

pub mod finetune;
pub mod model;
mod open;
pub mod predict;
pub mod submit;
pub mod validate;
