//! libtorch archives (tch's `.ot` files, written by `Tensor::save_multi` or
//! `VarStore::save` to a `.ot` path), read through libtorch itself.

use std::path::Path;

use tch::{Device, Tensor};

use super::ParamError;

/// Reads the named tensors of a libtorch archive onto the CPU, in archive order.
pub(super) fn read(path: &Path) -> Result<Vec<(String, Tensor)>, ParamError> {
    Tensor::load_multi_with_device(path, Device::Cpu).map_err(|e| ParamError::Libtorch {
        path: path.to_path_buf(),
        message: format!(
            "{}; accepted here: archives of named tensors written by tch \
             (Tensor::save_multi); a TorchScript module holds no named tensor list",
            first_line(&e.to_string())
        ),
    })
}

/// libtorch messages carry a C++ backtrace after the first line.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}
