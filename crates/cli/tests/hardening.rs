//! User data that used to panic, train into NaN or swap labels, run through the `engine`
//! binary as a user runs it: each is now a clear error naming what is wrong, or a run that
//! stays finite and matches labels by name.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{engine, repo, zip_entry};
use tch::Tensor;

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Writes an RGB or grey PNG of `size` whose pixels depend on `seed`.
fn png(path: &Path, (width, height): (u32, u32), channels: u32, seed: u32) {
    let pixel = |x: u32, y: u32, c: u32| ((x * 37 + y * 91 + c * 53 + seed * 17) % 251) as u8;
    if channels == 1 {
        image::GrayImage::from_fn(width, height, |x, y| image::Luma([pixel(x, y, 0)]))
            .save(path)
            .expect("png");
    } else {
        image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([pixel(x, y, 0), pixel(x, y, 1), pixel(x, y, 2)])
        })
        .save(path)
        .expect("png");
    }
}

/// A dataset directory: `counts` (train, validation, test) images per label, of `size`.
fn dataset(dir: &Path, labels: &[&str], counts: (usize, usize, usize), size: u32, channels: u32) {
    fs::create_dir_all(dir.join("images")).expect("images dir");
    let mut splits = serde_json::Map::new();
    let mut seed = 0;
    for (split, n) in [
        ("Train", counts.0),
        ("Validation", counts.1),
        ("Test", counts.2),
    ] {
        let mut entries = Vec::new();
        for i in 0..n {
            let label = labels[i % labels.len()];
            let name = format!("images/{split}-{i}.png");
            png(&dir.join(&name), (size, size), channels, seed);
            seed += 1;
            entries.push(
                serde_json::json!({"path": name, "tags": [{"label": label, "source": "test"}]}),
            );
        }
        splits.insert(split.into(), serde_json::Value::Array(entries));
    }
    splits.insert("labels".into(), serde_json::json!(labels));
    fs::write(
        dir.join("annotation.json"),
        serde_json::to_string(&splits).expect("json"),
    )
    .expect("annotation");
}

/// The name of the first tensor of a safetensors file that is not finite.
fn first_non_finite(weights: &[u8], dir: &Path) -> Option<String> {
    let file = dir.join("check.safetensors");
    fs::write(&file, weights).expect("weights");
    fl_torch::read_params(&file)
        .expect("readable weights")
        .into_iter()
        .find(|(_, t): &(String, Tensor)| {
            t.is_floating_point() && t.isfinite().all().int64_value(&[]) == 0
        })
        .map(|(name, _)| name)
}

#[test]
fn a_diverging_run_stops_naming_where_and_writes_nothing_non_finite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("package");
    copy_dir(&repo().join("models/digits-cnn"), &package);
    // A learning rate no one means: SGD blows the weights up within a few batches.
    let config = fs::read_to_string(package.join("config.json")).expect("config");
    fs::write(
        package.join("config.json"),
        config.replace("\"learning_rate\": 0.05", "\"learning_rate\": 1e30"),
    )
    .expect("config");
    let out = dir.path().join("out");
    let run = engine(&[
        "finetune",
        path_str(&package),
        "--data",
        "datasets/digits/central",
        "--out",
        path_str(&out),
        "--epochs",
        "3",
    ]);
    let (stdout, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("training diverged:") && stderr.contains("is not finite (round 1, epoch 1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !out.join("model.zip").exists(),
        "no result from a diverged run"
    );
    // Whatever was written (checkpoints of earlier epochs) holds only finite values.
    let mut stack = vec![out];
    while let Some(next) = stack.pop() {
        let Ok(entries) = fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "safetensors") {
                let bytes = fs::read(&path).expect("read");
                assert_eq!(
                    first_non_finite(&bytes, dir.path()),
                    None,
                    "{}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn resnet18_with_a_last_batch_of_one_trains_finite_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // 33 training images in batches of 32: the last batch would hold one image, whose
    // 1 x 1 feature maps BatchNorm cannot normalise in training mode.
    dataset(&data, &["a", "b"], (33, 4, 4), 32, 3);
    let package = dir.path().join("resnet");
    let made = engine(&[
        "model",
        "new",
        path_str(&package),
        "--arch",
        "resnet18",
        "--labels-from",
        path_str(&data),
        "--image-size",
        "32",
        "--author",
        "tests",
        "--license",
        "Apache-2.0",
    ]);
    assert!(made.status.success(), "{:?}", text(&made));
    let out = dir.path().join("out");
    let run = engine(&[
        "finetune",
        path_str(&package),
        "--data",
        path_str(&data),
        "--out",
        path_str(&out),
        "--epochs",
        "1",
    ]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let weights = zip_entry(&out.join("model.zip"), "model.safetensors");
    assert_eq!(first_non_finite(&weights, dir.path()), None);
    let tensors = {
        let file = dir.path().join("result.safetensors");
        fs::write(&file, &weights).expect("weights");
        fl_torch::read_params(&file).expect("weights")
    };
    let counter = tensors
        .iter()
        .find(|(n, _)| n == "layer4.1.bn2.num_batches_tracked")
        .map(|(_, t)| t.int64_value(&[]))
        .expect("PyTorch's BatchNorm counters are in the result");
    assert_eq!(
        counter, 1,
        "one training batch of 33, counted as PyTorch counts"
    );
}

#[test]
fn predict_reports_each_image_and_never_panics_on_a_tiny_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("scripted");
    copy_dir(&repo().join("models/digits-scripted"), &package);
    // No resize: images reach the TorchScript module at their own size.
    fs::write(
        package.join("preprocessor_config.json"),
        r#"{"image_mean": [0.5], "image_std": [0.5]}"#,
    )
    .expect("preprocessor");
    let good = dir.path().join("good.png");
    let tiny = dir.path().join("tiny.png");
    png(&good, (8, 8), 1, 1);
    png(&tiny, (1, 1), 1, 2);
    for fail_fast in [false, true] {
        let mut args = vec![
            "predict",
            path_str(&package),
            path_str(&good),
            path_str(&tiny),
        ];
        if fail_fast {
            args.push("--fail-fast");
        }
        let run = engine(&args);
        let (stdout, stderr) = text(&run);
        assert_eq!(run.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stdout.contains(&format!("{}:", good.display())) && stdout.contains('%'),
            "the good image's prediction is printed (fail-fast {fail_fast}): {stdout}"
        );
        assert!(
            stderr.contains(&format!("{}: ", tiny.display()))
                && stderr.contains("could not run on a batch of shape [1, 1, 1, 1]"),
            "{stderr}"
        );
    }
}

#[test]
fn reordered_label_names_train_the_same_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let central = repo().join("datasets/digits/central");
    let reordered = dir.path().join("reordered");
    copy_dir(&central, &reordered);
    let annotation: serde_json::Value =
        serde_json::from_slice(&fs::read(central.join("annotation.json")).expect("annotation"))
            .expect("json");
    let mut shuffled = annotation.clone();
    let mut labels: Vec<serde_json::Value> =
        annotation["labels"].as_array().expect("labels").clone();
    labels.reverse();
    shuffled["labels"] = serde_json::Value::Array(labels);
    fs::write(
        reordered.join("annotation.json"),
        serde_json::to_string(&shuffled).expect("json"),
    )
    .expect("annotation");

    let results: Vec<PathBuf> = [central, reordered]
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let out = dir.path().join(format!("out-{i}"));
            let run = engine(&[
                "finetune",
                "models/digits-cnn",
                "--data",
                path_str(data),
                "--out",
                path_str(&out),
                "--epochs",
                "2",
                "--seed",
                "3",
            ]);
            let (stdout, stderr) = text(&run);
            assert!(run.status.success(), "{stdout}\n{stderr}");
            if i == 1 {
                assert!(
                    stderr.contains("labels matched by name")
                        && stderr.contains("another order, mapped by name"),
                    "the mapping is reported: {stderr}"
                );
            }
            out.join("model.zip")
        })
        .collect();
    assert_eq!(
        zip_entry(&results[0], "model.safetensors"),
        zip_entry(&results[1], "model.safetensors"),
        "the same samples meet the same outputs"
    );
    assert_eq!(
        zip_entry(&results[0], "config.json"),
        zip_entry(&results[1], "config.json")
    );
}

/// Zips a package directory's files (flat) as a `model.zip`.
fn zip_package(dir: &Path, zip_path: &Path) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(fs::File::create(zip_path).expect("zip"));
    for entry in fs::read_dir(dir).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("entry");
        zip.write_all(&fs::read(entry.path()).expect("read"))
            .expect("write");
    }
    zip.finish().expect("zip written");
}

#[test]
fn validate_and_show_take_a_model_zip_and_check_data_as_a_run_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zipped = dir.path().join("model.zip");
    zip_package(&repo().join("models/digits-cnn"), &zipped);
    let run = engine(&["model", "validate", path_str(&zipped)]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("valid model package (its model builds)"),
        "{stdout}"
    );
    let run = engine(&["model", "show", path_str(&zipped), "--json"]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(shown["labels"].as_array().map(Vec::len), Some(10));

    // A dataset with a truncated image and a label the package does not know.
    let data = dir.path().join("data");
    dataset(&data, &["0", "1", "zebra"], (6, 3, 3), 8, 1);
    let cut = data.join("images/Train-0.png");
    let bytes = fs::read(&cut).expect("png");
    fs::write(&cut, &bytes[..bytes.len() / 2]).expect("truncated");
    let run = engine(&[
        "model",
        "validate",
        path_str(&zipped),
        "--data",
        path_str(&data),
    ]);
    let (stdout, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("images/Train-0.png"),
        "the truncated image is listed: {stderr}"
    );
    assert!(
        stderr.contains("not in the package's id2label: `zebra`"),
        "the unknown label is an error: {stderr}"
    );
}

#[test]
fn predict_takes_a_tensor_and_gives_pytorchs_logits() {
    let fixtures = repo().join("crates/torch/tests/fixtures");
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("scripted");
    fs::create_dir_all(&package).expect("package");
    fs::copy(fixtures.join("traced_cnn.ts"), package.join("model.ts")).expect("entry");
    fs::copy(
        fixtures.join("scripted_cnn_state_dict.pt"),
        package.join("weights.pt"),
    )
    .expect("weights");
    fs::write(
        package.join("README.md"),
        "---\nname: traced\ntasks:\n  - image-classification\nlicense: MIT\nauthor: tests\n---\n",
    )
    .expect("card");
    fs::write(
        package.join("config.json"),
        r#"{"entry_file": "model.ts", "entry_class": "ScriptedCnn", "param_file": "weights.pt",
            "in_channels": 3, "id2label": {"0": "a", "1": "b", "2": "c", "3": "d"}}"#,
    )
    .expect("config");
    // The fixture's `input` [4, 3, 8, 8] and what PyTorch computed for it with these weights.
    let io = fixtures.join("scripted_cnn_io.safetensors");
    let run = engine(&[
        "predict",
        path_str(&package),
        "--tensor",
        path_str(&io),
        "--logits",
        "--json",
    ]);
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let expected = fl_torch::read_params(&io)
        .expect("io")
        .into_iter()
        .find(|(n, _)| n == "logits_state_dict")
        .map(|(_, t)| t)
        .expect("PyTorch's logits");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    let mut worst = 0.0f64;
    for (i, row) in rows.iter().enumerate() {
        let logits = row["logits"].as_array().expect("logits");
        assert_eq!(logits.len(), 4);
        for (j, logit) in logits.iter().enumerate() {
            let ours = logit.as_f64().expect("number");
            let theirs = expected.double_value(&[i as i64, j as i64]);
            worst = worst.max((ours - theirs).abs());
        }
        let p = row["predictions"][0]["probability"]
            .as_f64()
            .expect("probability");
        assert!(p.is_finite() && p > 0.0, "{row}");
    }
    println!("max |engine - PyTorch| logit through `engine predict --tensor`: {worst:e}");
    assert!(worst <= 1e-5, "{worst}");
    // A file without a usable batch is refused with what would be accepted.
    let run = engine(&[
        "predict",
        path_str(&package),
        "--tensor",
        path_str(&package.join("config.json")),
    ]);
    let (_, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot be read as a tensor file"),
        "{stderr}"
    );
}

#[test]
fn a_weight_mismatch_is_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = dir.path().join("package");
    copy_dir(&repo().join("models/digits-cnn"), &package);
    let weights = package.join("model.safetensors");
    let mut tensors = fl_torch::read_params(&weights).expect("weights");
    for (name, tensor) in &mut tensors {
        if name == "fc.bias" {
            *tensor = Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu));
        }
    }
    fl_torch::write_safetensors(&weights, &tensors).expect("written");
    let image = repo().join("datasets/digits/central/images/0000.png");
    let run = engine(&["predict", path_str(&package), path_str(&image)]);
    let (_, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("`fc.bias` (model [10], file [3])").count(),
        1,
        "{stderr}"
    );
}
