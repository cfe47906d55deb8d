//! The valid package every broken-package case starts from, and the edits that break it.

#![allow(dead_code)]

use std::fs;
use std::path::Path;

use fl_package::ModelCatalog;

pub const CARD: &str = "---\nname: skin-lesions\ndisplay-name: Skin lesions\ntasks:\n  - image-classification\n\
license: Apache-2.0\nframework: PyTorch\ntags: [dermatology]\nauthor: Jane Doe\nis-federated: true\n---\n\n# Skin lesions\n";

pub const CONFIG: &str = r#"{
  "entry_module": "fedengine.vision",
  "entry_file": null,
  "entry_class": "ResNet18",
  "param_file": "weights/model.safetensors",
  "id2label": {"0": "benign", "1": "malignant"},
  "label2id": {"benign": 0, "malignant": 1},
  "learning_rate": 0.001
}"#;

pub const PREPROCESSOR: &str = r#"{"size": 224, "do_affine": true, "degrees": 10, "translate": [0.1, 0.1],
  "do_horizontal_flip": true, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#;

pub fn catalog() -> ModelCatalog {
    let mut catalog = ModelCatalog::new();
    catalog.register("fedengine.vision", "ResNet18");
    catalog.register("fedengine.vision", "SmallCnn");
    catalog
}

pub fn safetensors_bytes() -> Vec<u8> {
    let header = br#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]);
    bytes
}

pub fn write_valid_package(dir: &Path) {
    fs::write(dir.join("README.md"), CARD).expect("card");
    fs::write(dir.join("config.json"), CONFIG).expect("config");
    fs::write(dir.join("preprocessor_config.json"), PREPROCESSOR).expect("preprocessor");
    fs::create_dir(dir.join("weights")).expect("weights dir");
    fs::write(dir.join("weights/model.safetensors"), safetensors_bytes()).expect("weights");
}

pub fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "fixture {file} has no {from:?}");
    fs::write(path, text.replacen(from, to, 1)).expect("write");
}
