//! Helpers shared by the fl-torch integration tests: the fixtures directory, the Python
//! interpreter with torch (`FEDENGINE_PYTHON`), and comparing named tensors.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

/// `crates/torch/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The Python with torch, torchvision and safetensors that `scripts/setup` installed.
pub fn python() -> String {
    std::env::var("FEDENGINE_PYTHON")
        .ok()
        .or_else(|| option_env!("FEDENGINE_PYTHON").map(String::from))
        .expect(
            "FEDENGINE_PYTHON is not set: run ./scripts/setup, which writes it into \
             .cargo/config.toml, or point it at a Python with torch, torchvision and safetensors",
        )
}

/// The tensor called `name`.
pub fn tensor(tensors: &[(String, Tensor)], name: &str) -> Tensor {
    tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor `{name}`"))
        .1
        .shallow_clone()
}

/// The largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}
