//! `engine model new` as a user runs it: a package from torchvision weights that validates,
//! keeps every pretrained tensor but the head, and fine-tunes with every setting written
//! out; a refusal that writes nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{engine, zip_entry};

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn python(script: &str, cwd: &Path) -> Output {
    Command::new(std::env::var("FEDENGINE_PYTHON").expect("FEDENGINE_PYTHON is set"))
        .args(["-c", script])
        .current_dir(cwd)
        .output()
        .expect("python runs")
}

#[test]
fn a_package_from_torchvision_weights_validates_keeps_them_and_fine_tunes() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    // torchvision's resnet18 (1000 ImageNet classes), as PyTorch saves it.
    let made = python(
        "import torch, torchvision\n\
         torch.manual_seed(0)\n\
         torch.save(torchvision.models.resnet18().state_dict(), 'resnet18.pt')",
        dir,
    );
    assert!(made.status.success(), "{}", text(&made));
    let package = dir.join("pkg");
    let p = package.to_str().expect("utf-8");
    let weights = dir.join("resnet18.pt");
    let out = engine(&[
        "model",
        "new",
        p,
        "--arch",
        "resnet18",
        "--labels",
        "benign,malignant, unsure",
        "--weights",
        weights.to_str().expect("utf-8"),
        "--image-size",
        "32",
        "--author",
        "A. Tester",
        "--license",
        "Apache-2.0",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the classifier head new"),
        "{}",
        text(&out)
    );

    let out = engine(&["model", "validate", p]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("its model builds"), "{}", text(&out));

    // Every tensor but the head is torchvision's, its 122 entries (BatchNorm counters
    // included); the head has the package's three labels.
    let compared = python(
        "import torch\n\
         from safetensors.torch import load_file\n\
         tv = torch.load('resnet18.pt')\n\
         ours = load_file('pkg/model.safetensors')\n\
         same = all(torch.equal(ours[k], tv[k]) for k in ours if not k.startswith('fc.'))\n\
         print(same, tuple(ours['fc.weight'].shape), len(ours))",
        dir,
    );
    assert!(compared.status.success(), "{}", text(&compared));
    assert_eq!(
        String::from_utf8_lossy(&compared.stdout).trim(),
        "True (3, 512) 122"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(package.join("config.json")).expect("config"))
            .expect("JSON");
    assert_eq!(config["id2label"]["2"], "unsure");
    assert_eq!(config["optimizer"], "adam");
    assert_eq!(config["lr_schedule"]["kind"], "constant");
    let pre: serde_json::Value = serde_json::from_slice(
        &std::fs::read(package.join("preprocessor_config.json")).expect("preprocessor"),
    )
    .expect("JSON");
    assert_eq!(
        pre["image_mean"][0], 0.485,
        "ImageNet statistics for its weights"
    );

    // Refused when the directory holds something; nothing is changed.
    let out = engine(&[
        "model",
        "new",
        p,
        "--arch",
        "small-cnn",
        "--labels",
        "a,b",
        "--author",
        "x",
        "--license",
        "MIT",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(package.join("config.json")).expect("config"))
            .expect("JSON");
    assert_eq!(after, config);
}

#[test]
fn finetune_prints_and_records_every_setting_and_where_it_came_from() {
    let work = tempfile::tempdir().expect("tempdir");
    let out_dir = work.path().join("out");
    let out = engine(&[
        "finetune",
        "models/digits-cnn",
        "--data",
        "datasets/digits/central",
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--epochs",
        "1",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("effective settings"), "{log}");
    assert!(
        log.contains("(command line)") && log.contains("(default)"),
        "{log}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&zip_entry(&out_dir.join("model.zip"), "config.json"))
            .expect("config.json");
    assert_eq!(config["epochs"], 1, "--epochs recorded");
    assert_eq!(config["learning_rate"], 0.05, "the package's");
    assert_eq!(
        config["lr_schedule"]["kind"], "constant",
        "the default, written out"
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("metrics.json")).expect("metrics"))
            .expect("JSON");
    let settings = metrics["settings"].as_array().expect("settings");
    assert!(
        settings
            .iter()
            .any(|s| s["key"] == "epochs" && s["source"] == "command_line"),
        "{settings:?}"
    );
}
