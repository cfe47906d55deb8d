//! `engine finetune` and `engine predict` end to end on the shipped digits data, as a user
//! runs them (the built binary, no `LD_LIBRARY_PATH`).

mod common;

use std::path::Path;
use std::process::Output;

use common::{engine, repo, zip_entry};

fn finetune(out: &Path) -> Output {
    engine(&[
        "finetune",
        "models/digits-cnn",
        "--data",
        "datasets/digits/central",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--seed",
        "7",
        "--threads",
        "1",
    ])
}

#[test]
fn finetune_reaches_90_percent_is_reproducible_and_its_result_predicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));

    let out = finetune(&first);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("epoch  train loss"),
        "a table per epoch: {stdout}"
    );

    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("metrics.json")).expect("metrics"))
            .expect("json");
    let accuracy = metrics["test"]["accuracy"].as_f64().expect("test accuracy");
    assert!(accuracy >= 0.90, "test accuracy {accuracy}");
    assert_eq!(metrics["test"]["samples"], 360);

    // The same seed and thread count give bit-identical weights.
    assert!(finetune(&second).status.success());
    let weights = zip_entry(&first.join("model.zip"), "model.safetensors");
    assert_eq!(
        weights,
        zip_entry(&second.join("model.zip"), "model.safetensors")
    );

    // The result is a package: it validates once unzipped, and predicts.
    let unpacked = dir.path().join("unpacked");
    fl_package::extract_model_zip(&first.join("model.zip"), &unpacked).expect("extract");
    let out = engine(&["model", "validate", unpacked.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let annotation: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("datasets/digits/central/annotation.json")).expect("annotation"),
    )
    .expect("json");
    let tests = annotation["Test"].as_array().expect("test split");
    let mut args = vec![
        "predict".to_owned(),
        first.join("model.zip").display().to_string(),
        "--json".into(),
    ];
    let mut expected = Vec::new();
    for sample in tests.iter().take(20) {
        args.push(format!(
            "datasets/digits/central/{}",
            sample["path"].as_str().expect("path")
        ));
        expected.push(
            sample["tags"][0]["label"]
                .as_str()
                .expect("label")
                .to_owned(),
        );
    }
    args.push("datasets/digits/central/images/missing.png".into());
    let out = engine(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        out.status.code(),
        Some(1),
        "a missing image makes the exit status 1"
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(
        rows.len(),
        21,
        "every image gets a row, the missing one too"
    );
    let right = rows[..20]
        .iter()
        .zip(&expected)
        .filter(|(row, label)| row["predictions"][0]["label"] == label.as_str())
        .count();
    assert!(right >= 16, "{right}/20 right");
    let top = &rows[0]["predictions"];
    assert_eq!(top.as_array().map(Vec::len), Some(3), "top-3 by default");
    assert!(top[0]["probability"].as_f64() >= top[1]["probability"].as_f64());
    assert!(
        rows[20]["error"]
            .as_str()
            .expect("error")
            .contains("missing.png")
    );
}

#[test]
fn an_interrupted_finetune_resumes_with_recover_to_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |out: &Path, epochs: &str, recover: bool| {
        let out = out.to_str().expect("utf-8 path");
        let mut args = vec![
            "finetune",
            "models/digits-cnn",
            "--data",
            "datasets/digits/central",
            "--out",
            out,
            "--epochs",
            epochs,
            "--seed",
            "3",
        ];
        if recover {
            args.push("--recover");
        }
        let output = engine(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let (whole, resumed) = (dir.path().join("whole"), dir.path().join("resumed"));
    run(&whole, "4", false);
    run(&resumed, "2", false);
    let output = run(&resumed, "4", true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("resuming after epoch 2 of 4"), "{stderr}");
    assert_eq!(
        zip_entry(&whole.join("model.zip"), "model.safetensors"),
        zip_entry(&resumed.join("model.zip"), "model.safetensors"),
        "resumed and uninterrupted runs keep the same weights"
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(resumed.join("metrics.json")).expect("metrics"))
            .expect("json");
    assert_eq!(metrics["epochs"].as_array().map(Vec::len), Some(4));
}
