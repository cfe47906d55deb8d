//! Compiles `csrc/jit_module.cpp`, the small C++ part of the TorchScript support that reaches
//! libtorch's module API where tch's C API does not (a module's buffers), against the same
//! libtorch that torch-sys links: its library directory comes from torch-sys
//! (`DEP_TCH_LIBTORCH_LIB`), the headers sit beside it.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/jit_module.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!(
            "torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB); run ./scripts/setup"
        );
    };
    let root = PathBuf::from(&lib)
        .parent()
        .map(PathBuf::from)
        .expect("libtorch's lib directory has a parent");
    // PyPI's torch 2.13 wheels are built with the C++11 ABI, as torch-sys assumes by default.
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/jit_module.cpp")
        .compile("fedengine_jit");
}
