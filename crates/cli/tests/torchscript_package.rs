//! The TorchScript example package `models/digits-scripted` through the `engine` binary:
//! validate, fine-tune twice (bit-identical), unzip, predict; a `.py` entry file refused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fl_package::ModelPackage;
use fl_torch::{builtin_catalog, read_params};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn names(tensors: &[(String, tch::Tensor)]) -> Vec<String> {
    tensors.iter().map(|(name, _)| name.clone()).collect()
}

fn engine_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_engine"))
}

fn run(engine: &Path, args: &[&str]) -> Output {
    Command::new(engine)
        .args(args)
        .current_dir(repo_root())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("engine runs")
}

fn assert_ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn example_package_finetunes_and_predicts_with_the_engine_binary() {
    let engine = engine_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");

    assert_ok(
        &run(&engine, &["model", "validate", "models/digits-scripted"]),
        "engine model validate",
    );
    let finetune = |out: &Path| {
        run(
            &engine,
            &[
                "finetune",
                "models/digits-scripted",
                "--data",
                "datasets/digits/central",
                "--out",
                out.to_str().expect("utf-8"),
                "--epochs",
                "2",
                "--seed",
                "7",
                "--threads",
                "1",
            ],
        )
    };
    let stdout = assert_ok(&finetune(&out), "engine finetune");
    println!("{stdout}");
    let metrics: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("metrics.json")).expect("metrics"))
            .expect("json");
    assert_eq!(metrics["epochs"].as_array().map(Vec::len), Some(2));
    let first = metrics["epochs"][0]["train"]["loss"]
        .as_f64()
        .expect("loss");
    let second = metrics["epochs"][1]["train"]["loss"]
        .as_f64()
        .expect("loss");
    assert!(second < first, "training loss {first} -> {second}");
    let accuracy = metrics["test"]["accuracy"].as_f64().expect("test accuracy");
    println!("digits-scripted, 2 epochs: test accuracy {accuracy:.4}");
    assert!(accuracy >= 0.5, "test accuracy {accuracy}");

    // The result ships the entry file beside the trained weights and is a package again.
    let unpacked = dir.path().join("unpacked");
    fl_package::extract_model_zip(&out.join("model.zip"), &unpacked).expect("extract");
    assert_eq!(
        fs::read(unpacked.join("model.ts")).expect("entry file shipped"),
        fs::read(repo_root().join("models/digits-scripted/model.ts")).expect("entry file")
    );
    let result = ModelPackage::open(&unpacked, &builtin_catalog()).expect("a valid package");
    assert_eq!(result.config.raw["entry_file"], "model.ts");
    let trained = read_params(&result.param_path).expect("weights");
    assert!(names(&trained).contains(&"bn1.running_mean".to_owned()));

    // The same seed and thread count give bit-identical weights through the JIT too.
    let again = dir.path().join("again");
    assert_ok(&finetune(&again), "second engine finetune");
    let unpacked_again = dir.path().join("unpacked-again");
    fl_package::extract_model_zip(&again.join("model.zip"), &unpacked_again).expect("extract");
    assert_eq!(
        fs::read(unpacked.join("model.safetensors")).expect("weights"),
        fs::read(unpacked_again.join("model.safetensors")).expect("weights"),
        "two runs with seed 7 and 1 thread differ"
    );

    let images: Vec<String> = fs::read_dir(repo_root().join("datasets/digits/central/images"))
        .expect("images")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .take(3)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(images.len(), 3, "example images");
    let zip = out.join("model.zip");
    let mut args = vec!["predict", zip.to_str().expect("utf-8"), "--json"];
    args.extend(images.iter().map(String::as_str));
    let stdout = assert_ok(&run(&engine, &args), "engine predict");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("predictions json");
    assert_eq!(rows.as_array().map(Vec::len), Some(3));
    for row in rows.as_array().expect("rows") {
        let best = &row["predictions"][0];
        assert!(
            best["label"].as_str().is_some_and(|l| l.len() == 1),
            "{row}"
        );
        assert!(best["probability"].as_f64().is_some_and(|p| p > 0.0));
    }

    // A Python entry file is refused with the TorchScript recipe.
    let py = dir.path().join("python-entry");
    fs::create_dir_all(&py).expect("dir");
    for name in ["README.md", "model.safetensors", "preprocessor_config.json"] {
        fs::copy(
            repo_root().join("models/digits-scripted").join(name),
            py.join(name),
        )
        .expect("copy");
    }
    fs::write(py.join("model.py"), "class DigitsCnn: pass\n").expect("model.py");
    let mut config: serde_json::Value = serde_json::from_slice(
        &fs::read(repo_root().join("models/digits-scripted/config.json")).expect("config"),
    )
    .expect("json");
    config["entry_file"] = "model.py".into();
    fs::write(py.join("config.json"), config.to_string()).expect("config");
    let output = run(&engine, &["model", "validate", py.to_str().expect("utf-8")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "a .py entry file validated: {text}"
    );
    assert!(
        text.contains("entry_file") && text.contains("torch.jit.script(model).save"),
        "{text}"
    );
}
