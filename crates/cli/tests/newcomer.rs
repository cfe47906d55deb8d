//! A newcomer's first hour, as the README's "Your own data" section tells it: its commands
//! are run as they are written (the built `engine` first on `PATH`) on generated images, and
//! the task's test accuracy is compared with plain PyTorch FedAvg on the same split
//! (`scripts/reference_fedavg.py`). Bad inputs to the data commands are refused with the file
//! or flag named, and nothing is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{binary, repo, zip_entry};

fn python() -> String {
    std::env::var("FEDENGINE_PYTHON").expect("FEDENGINE_PYTHON is set by scripts/setup")
}

fn reference(args: &[&str], cwd: &Path) -> Output {
    Command::new(python())
        .arg(repo().join("scripts/reference_fedavg.py"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("python runs")
}

/// The shell lines of the README's "Your own data" block.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- BEGIN your-own-data")
        .expect("the README's your-own-data block");
    let end = readme.find("<!-- END your-own-data -->").expect("its end");
    let block = &readme[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(body, _)| body)
        .expect("a sh code block");
    body.to_owned()
}

/// Runs shell `script` in `cwd` with the built engine first on `PATH`.
fn shell(script: &str, cwd: &Path) -> Output {
    let bin_dir = Path::new(binary()).parent().expect("binary dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(cwd)
        .env("PATH", path)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("bash runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_readme_walk_through_runs_and_matches_plain_pytorch_fedavg() {
    let work = tempfile::tempdir().expect("tempdir");
    let cwd = work.path();
    let made = reference(&["make-images", "my-images"], cwd);
    assert!(made.status.success(), "{}", text(&made));

    let out = shell(&readme_block(), cwd);
    let log = text(&out);
    assert!(out.status.success(), "the README's commands failed:\n{log}");
    // What each step promises to say.
    assert!(log.contains("imported 900 images in 3 labels"), "{log}");
    assert!(log.contains("dirichlet, alpha 1"), "{log}");
    assert!(log.contains("valid workflow `levels`"), "{log}");
    assert!(log.contains("effective settings"), "{log}");

    // No hidden hyper-parameter: every one the task trained with is the package's, which
    // `engine model new` wrote out.
    let summary: serde_json::Value = serde_json::from_slice(&zip_entry(
        &cwd.join("runs/levels/report.zip"),
        "summary.json",
    ))
    .expect("summary.json");
    let settings = summary["settings"]["hyper_parameters"]
        .as_array()
        .expect("settings recorded");
    // Every key of the spec but `epochs` (a federated run's local epochs are `merge_epochs`).
    assert_eq!(
        settings.len(),
        fl_package::HYPER_PARAMETERS.len() - 1,
        "{settings:?}"
    );
    for setting in settings {
        assert_eq!(setting["source"], "package", "{setting}");
    }
    let engine_accuracy = summary["final_test"]["accuracy"]
        .as_f64()
        .expect("test accuracy");

    let sites: Vec<String> = (1..=3)
        .flat_map(|i| ["--site".to_owned(), format!("data/sites/site-{i}")])
        .collect();
    let mut args = vec![
        "fedavg",
        "--model",
        "models/levels-cnn",
        "--initiator",
        "data/sites/initiator",
    ];
    args.extend(sites.iter().map(String::as_str));
    let out = reference(&args, cwd);
    assert!(out.status.success(), "{}", text(&out));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let reference_accuracy = reference["test_accuracy"].as_f64().expect("accuracy");
    eprintln!(
        "test accuracy: engine {:.2} %, plain PyTorch FedAvg {:.2} %",
        engine_accuracy * 100.0,
        reference_accuracy * 100.0
    );
    // The task is learnable but not trivially (neighbouring classes overlap).
    assert!(reference_accuracy > 0.6 && reference_accuracy < 0.99);
    assert!(
        (engine_accuracy - reference_accuracy).abs() <= 0.02,
        "engine {engine_accuracy} vs PyTorch {reference_accuracy}"
    );
}

/// Runs `engine` with `args` in `cwd`; returns its combined output after checking it failed
/// and wrote nothing at `target`.
fn refused(cwd: &Path, args: &[&str], target: &str) -> String {
    let out = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("engine runs");
    let log = text(&out);
    assert!(!out.status.success(), "{args:?} should fail:\n{log}");
    assert!(
        !cwd.join(target).exists(),
        "{args:?} wrote {target} although it failed"
    );
    let leftovers: Vec<PathBuf> = std::fs::read_dir(cwd)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    log
}

#[test]
fn bad_data_inputs_name_the_file_or_flag_and_write_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let cwd = work.path();
    let made = reference(&["make-images", "good", "--per-class", "4"], cwd);
    assert!(made.status.success(), "{}", text(&made));

    std::fs::create_dir(cwd.join("empty")).expect("mkdir");
    let log = refused(cwd, &["data", "import", "empty", "out"], "out");
    assert!(
        log.contains("source folder empty is empty") && log.contains("SRC/<label>/<image>"),
        "{log}"
    );

    std::fs::create_dir_all(cwd.join("no-images/cat")).expect("mkdir");
    std::fs::write(cwd.join("no-images/cat/readme.txt"), "not an image").expect("write");
    let log = refused(cwd, &["data", "import", "no-images", "out"], "out");
    assert!(
        log.contains("no-images holds no usable PNG or JPEG image") && log.contains("readme.txt"),
        "{log}"
    );

    std::fs::create_dir_all(cwd.join("stray/dog")).expect("mkdir");
    std::fs::copy(
        cwd.join("good/level 0/0000.png"),
        cwd.join("stray/dog/a.png"),
    )
    .expect("cp");
    std::fs::copy(cwd.join("good/level 0/0001.png"), cwd.join("stray/b.png")).expect("cp");
    let log = refused(cwd, &["data", "import", "stray", "out"], "out");
    assert!(log.contains("b.png") && log.contains("<label>"), "{log}");

    std::fs::write(
        cwd.join("no-label.csv"),
        "path,kind\ngood/level 0/0000.png,x\n",
    )
    .expect("csv");
    let log = refused(cwd, &["data", "import", "no-label.csv", "out"], "out");
    assert!(
        log.contains("no-label.csv: header `path,kind` has no `label` column"),
        "{log}"
    );

    std::fs::write(cwd.join("unknown.csv"), "path,label\nmissing/a.png,x\n").expect("csv");
    let log = refused(cwd, &["data", "import", "unknown.csv", "out"], "out");
    assert!(log.contains("line 2: missing/a.png: no such file"), "{log}");

    let log = refused(
        cwd,
        &["data", "import", "good", "out", "--split", "0.8,0.1,0.2"],
        "out",
    );
    assert!(
        log.contains("--split `0.8,0.1,0.2` sums to 1.1") && log.contains("sum to 1"),
        "{log}"
    );

    let out = Command::new(binary())
        .args(["data", "import", "good", "data", "--split", "0.5,0.25,0.25"])
        .current_dir(cwd)
        .output()
        .expect("engine runs");
    assert!(out.status.success(), "{}", text(&out));
    let log = refused(
        cwd,
        &[
            "data",
            "partition",
            "data",
            "--sites",
            "50",
            "--out",
            "sites",
        ],
        "sites",
    );
    assert!(
        log.contains("--sites 50 is too many") && log.contains("expected --sites from 1 to"),
        "{log}"
    );
}
