//! `engine validate` and `engine workflow schema` as a user runs them: the built binary on
//! the shipped workflow and on a broken one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(cwd)
        // The binary must find libtorch by itself (rpath), not through the test runner.
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("engine runs")
}

#[test]
fn the_shipped_workflow_is_valid_and_summarised() {
    let root = repo_root();
    let out = engine(&["validate", "workflows/fedavg.yaml"], &root);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "no problem expected: {stderr}");
    assert!(
        stdout.starts_with("workflows/fedavg.yaml: valid workflow `digits-fedavg` (version 1)"),
        "{stdout}"
    );
    for expected in [
        "site-1 (datasets/digits/site-1)",
        "site-3 (datasets/digits/site-3)",
        "at most 20, 1 local epoch each, tested every round",
        "weighted by training samples",
        "3 of 3 training nodes",
        "output          runs/digits-fedavg",
        "models/digits-cnn",
        // What the run itself checks: the model built, every node's data opened.
        "node site-1     model built; 333 train, 0 validation, 0 test samples",
        "node initiator  model built; 0 train, 144 validation, 360 test samples",
        "learning_rate  0.05",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in\n{stdout}");
    }

    let out = engine(&["validate", "--json", "workflows/fedavg.yaml"], &root);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["valid"], true);
    assert_eq!(json["effective"]["max_rounds"], 20);
    assert_eq!(json["effective"]["participants"][2]["node"], "site-3");
    assert_eq!(json["digest"].as_str().map(str::len), Some(64));
}

#[test]
fn a_broken_workflow_lists_every_problem_with_its_position_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = std::fs::canonicalize(repo_root().join("models/digits-cnn")).expect("model");
    let yaml = format!(
        "version: 1\nname: broken\nmodel: {}\ninitiator:\n  node: hub\n  test: no/such/dir\n\
         participants:\n  - node: hub\n    data: no/such/dir\nmax_round: 5\n",
        models.display()
    );
    std::fs::write(dir.path().join("broken.yaml"), yaml).expect("write");
    let out = engine(&["validate", "broken.yaml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 5, "four problems and a count:\n{stderr}");
    assert!(
        lines[0].starts_with("error: broken.yaml:6:9: key `initiator.test`: ")
            && lines[0].contains("does not exist"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("error: broken.yaml:8:11: key `participants[0].node`: node id `hub` is already used by `initiator.node`"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("error: broken.yaml:9:11: key `participants[0].data`: "),
        "{stderr}"
    );
    assert!(
        lines[3].starts_with("error: broken.yaml:10:1: key `max_round`: ")
            && lines[3].contains("did you mean `max_rounds`?"),
        "{stderr}"
    );
    assert_eq!(lines[4], "broken.yaml: 4 errors");
    assert!(out.stdout.is_empty());

    let out = engine(&["validate", "--json", "broken.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"][3]["key"], "max_round");
    assert_eq!(json["errors"][3]["position"]["line"], 10);
    assert_eq!(json["errors"][3]["position"]["column"], 1);
}

#[test]
fn the_workflow_schema_is_printed_as_json() {
    let out = engine(&["workflow", "schema"], &repo_root());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON Schema");
    assert_eq!(schema["properties"]["max_rounds"]["default"], 20);
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
}

/// What only the run would find (a site's label the task does not have, weights that do not
/// fit the model) fails validation too, naming the node; `--set` values are checked like the
/// file's and `--no-build` checks the file alone.
#[test]
fn validation_runs_the_checks_the_run_makes_before_training() {
    let root = repo_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("odd-site");
    std::fs::create_dir_all(site.join("images")).expect("mkdir");
    std::fs::copy(
        root.join("datasets/digits/site-1/images/0000.png"),
        site.join("images/a.png"),
    )
    .expect("copy");
    std::fs::write(
        site.join("annotation.json"),
        r#"{"labels": ["eleven"], "Train": [{"path": "images/a.png",
            "tags": [{"label": "eleven", "source": "test"}]}]}"#,
    )
    .expect("annotation");
    let digits = std::fs::canonicalize(root.join("datasets/digits")).expect("digits");
    let model = std::fs::canonicalize(root.join("models/digits-cnn")).expect("model");
    let yaml = format!(
        "version: 1\nname: odd\nmodel: {}\ninitiator:\n  node: initiator\n  test: {}\n\
         participants:\n  - node: site-1\n    data: odd-site\n",
        model.display(),
        digits.join("initiator").display()
    );
    std::fs::write(dir.path().join("odd.yaml"), yaml).expect("write");

    let out = engine(&["validate", "odd.yaml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node `site-1`") && stderr.contains("eleven"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the run would fail before training"),
        "{stderr}"
    );
    let out = engine(&["validate", "--json", "odd.yaml"], dir.path());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["valid"], false);
    assert_eq!(json["run_checks"]["nodes"][1]["node"], "site-1");
    assert!(
        json["run_checks"]["nodes"][1]["error"].is_string(),
        "{json}"
    );

    // The file alone is valid.
    let out = engine(&["validate", "--no-build", "odd.yaml"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A `--set` is checked like the file and named in the error.
    let out = engine(
        &[
            "validate",
            "workflows/fedavg.yaml",
            "--set",
            "training.learning_rate=-1",
        ],
        &root,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--set training.learning_rate=-1") && stderr.contains("greater than 0"),
        "{stderr}"
    );
}
