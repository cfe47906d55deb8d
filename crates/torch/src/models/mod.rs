//! Built-in model implementations, with PyTorch's parameter names.

mod resnet;
mod small_cnn;

pub use resnet::{ResNetDepth, resnet};
pub use small_cnn::small_cnn;
