//! Shared by the tests: the repository and a package of the test model.

use std::fs;
use std::path::{Path, PathBuf};

use author_model_tests::{CLASS, MODULE, write_initial_weights};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A package of the test model in `dir`, with extra `config.json` keys.
pub fn package(dir: &Path, extra_config: &str) -> PathBuf {
    let package = dir.join("package");
    fs::create_dir_all(&package).expect("package dir");
    fs::write(
        package.join("README.md"),
        "---\nname: head-only\ntasks:\n  - image-classification\nlicense: Apache-2.0\nauthor: fedengine tests\nframework: PyTorch\n---\n\n# HeadOnly\n\nA test model.\n",
    )
    .expect("card");
    let labels: Vec<String> = (0..10).map(|i| format!("\"{i}\": \"{i}\"")).collect();
    let ids: Vec<String> = (0..10).map(|i| format!("\"{i}\": {i}")).collect();
    fs::write(
        package.join("config.json"),
        format!(
            r#"{{"entry_module": "{MODULE}", "entry_class": "{CLASS}", "param_file": "model.safetensors",
"id2label": {{{}}}, "label2id": {{{}}}, "learning_rate": 0.5, "batch_size": 32{extra_config}}}"#,
            labels.join(", "),
            ids.join(", ")
        ),
    )
    .expect("config");
    fs::write(
        package.join("preprocessor_config.json"),
        r#"{"size": 8, "image_mean": [0.5], "image_std": [0.5]}"#,
    )
    .expect("preprocessor");
    write_initial_weights(&package.join("model.safetensors"), 10, 7).expect("weights");
    package
}
