//! Table-driven checks over broken packages: each case starts from a valid package, breaks
//! one thing, and asserts the exact problems reported.

mod common;

use std::fs;
use std::path::Path;

use common::{CARD, catalog, edit, safetensors_bytes, write_valid_package};
use fl_package::{Problem, Severity, inspect_package};

/// What one reported problem must be.
struct Expect {
    severity: Severity,
    file: &'static str,
    key: Option<&'static str>,
    line: Option<u64>,
    message: &'static str,
}

fn error(file: &'static str, key: Option<&'static str>, message: &'static str) -> Expect {
    Expect {
        severity: Severity::Error,
        file,
        key,
        line: None,
        message,
    }
}

fn at_line(mut e: Expect, line: u64) -> Expect {
    e.line = Some(line);
    e
}

fn matches(problem: &Problem, e: &Expect) -> bool {
    problem.severity == e.severity
        && problem.file == e.file
        && problem.key.as_deref() == e.key
        && problem.message.contains(e.message)
        && e.line
            .is_none_or(|line| problem.position.map(|p| p.line) == Some(line))
}

type Break = fn(&Path);

fn cases() -> Vec<(&'static str, Break, Vec<Expect>)> {
    vec![
        (
            "missing README",
            |d| fs::remove_file(d.join("README.md")).expect("rm"),
            vec![error("README.md", None, "is missing from the package")],
        ),
        (
            "no front matter",
            |d| fs::write(d.join("README.md"), "# Skin lesions\n\nname: x\n").expect("w"),
            vec![at_line(
                error("README.md", None, "does not start with YAML front matter"),
                1,
            )],
        ),
        (
            "unterminated front matter",
            |d| {
                fs::write(
                    d.join("README.md"),
                    "---\nname: a\ntasks: [image-classification]\n# Title\n",
                )
                .expect("w")
            },
            vec![at_line(error("README.md", None, "never closed"), 1)],
        ),
        (
            "YAML syntax error",
            |d| edit(d, "README.md", "tags: [dermatology]", "tags: [dermatology"),
            vec![error(
                "README.md",
                None,
                "the front matter is not valid YAML",
            )],
        ),
        (
            "name missing",
            |d| edit(d, "README.md", "name: skin-lesions\n", ""),
            vec![error("README.md", Some("name"), "is required but missing")],
        ),
        (
            "tasks missing",
            |d| edit(d, "README.md", "tasks:\n  - image-classification\n", ""),
            vec![error("README.md", Some("tasks"), "is required but missing")],
        ),
        (
            "license missing",
            |d| edit(d, "README.md", "license: Apache-2.0\n", ""),
            vec![error(
                "README.md",
                Some("license"),
                "is required but missing",
            )],
        ),
        (
            "author missing",
            |d| edit(d, "README.md", "author: Jane Doe\n", ""),
            vec![error(
                "README.md",
                Some("author"),
                "is required but missing",
            )],
        ),
        (
            "unknown task",
            |d| {
                edit(
                    d,
                    "README.md",
                    "  - image-classification",
                    "  - image-segmentation",
                )
            },
            vec![at_line(
                error(
                    "README.md",
                    Some("tasks"),
                    "unknown task `image-segmentation`",
                ),
                5,
            )],
        ),
        (
            "empty task list",
            |d| {
                edit(
                    d,
                    "README.md",
                    "tasks:\n  - image-classification",
                    "tasks: []",
                )
            },
            vec![error("README.md", Some("tasks"), "is a list")],
        ),
        (
            "framework TensorFlow",
            |d| {
                edit(
                    d,
                    "README.md",
                    "framework: PyTorch",
                    "framework: TensorFlow",
                )
            },
            vec![at_line(
                error(
                    "README.md",
                    Some("framework"),
                    "unsupported framework: the string \"TensorFlow\"",
                ),
                7,
            )],
        ),
        (
            "non-string card values",
            |d| {
                edit(d, "README.md", "author: Jane Doe", "author: 42");
                edit(d, "README.md", "is-federated: true", "is-federated: maybe");
            },
            vec![
                error("README.md", Some("author"), "is the number 42"),
                error("README.md", Some("is-federated"), "is the string \"maybe\""),
            ],
        ),
        (
            "both entry_file and entry_module",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""entry_file": null"#,
                    r#""entry_file": "model.ts""#,
                )
            },
            vec![error(
                "config.json",
                None,
                "both `entry_file` and `entry_module` are given",
            )],
        ),
        (
            "neither entry_file nor entry_module",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""entry_module": "fedengine.vision","#,
                    "",
                )
            },
            vec![error(
                "config.json",
                None,
                "neither `entry_file` nor `entry_module` is given",
            )],
        ),
        (
            "unknown entry_module",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""entry_module": "fedengine.vision""#,
                    r#""entry_module": "models.resnet""#,
                )
            },
            vec![error(
                "config.json",
                Some("entry_module"),
                "no model linked into this engine is registered as module `models.resnet`",
            )],
        ),
        (
            "non-string config values",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""entry_class": "ResNet18""#,
                    r#""entry_class": 18"#,
                );
                edit(
                    d,
                    "config.json",
                    r#""param_file": "weights/model.safetensors""#,
                    r#""param_file": ["w"]"#,
                );
            },
            vec![
                error("config.json", Some("entry_class"), "is the number 18"),
                error("config.json", Some("param_file"), "is a list"),
            ],
        ),
        (
            "param_file missing from config",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""param_file": "weights/model.safetensors","#,
                    "",
                )
            },
            vec![error(
                "config.json",
                Some("param_file"),
                "is required but missing",
            )],
        ),
        (
            "param_file does not exist",
            |d| fs::remove_file(d.join("weights/model.safetensors")).expect("rm"),
            vec![error(
                "config.json",
                Some("param_file"),
                "`weights/model.safetensors` does not exist",
            )],
        ),
        (
            "param_file with ..",
            |d| {
                edit(
                    d,
                    "config.json",
                    "weights/model.safetensors",
                    "../model.safetensors",
                )
            },
            vec![error(
                "config.json",
                Some("param_file"),
                "leaves the package directory through `..`",
            )],
        ),
        (
            "absolute param_file",
            |d| edit(d, "config.json", "weights/model.safetensors", "/etc/passwd"),
            vec![error(
                "config.json",
                Some("param_file"),
                "is an absolute path",
            )],
        ),
        (
            "param_file symlink out of the package",
            |d| {
                let outside = d.parent().expect("parent").join("outside.safetensors");
                fs::write(&outside, safetensors_bytes()).expect("outside");
                fs::remove_file(d.join("weights/model.safetensors")).expect("rm");
                std::os::unix::fs::symlink(&outside, d.join("weights/model.safetensors"))
                    .expect("symlink");
            },
            vec![error(
                "config.json",
                Some("param_file"),
                "symbolic link that leads outside the package",
            )],
        ),
        (
            "README symlink out of the package",
            |d| {
                let outside = d.parent().expect("parent").join("README.md");
                fs::write(&outside, CARD).expect("outside");
                fs::remove_file(d.join("README.md")).expect("rm");
                std::os::unix::fs::symlink(&outside, d.join("README.md")).expect("symlink");
            },
            vec![error(
                "README.md",
                None,
                "symbolic link that leads outside the package",
            )],
        ),
        (
            "non-JSON config.json",
            |d| {
                fs::write(
                    d.join("config.json"),
                    "{\n  \"entry_class\": \"ResNet18\",\n  param_file: x\n}",
                )
                .expect("w")
            },
            vec![at_line(error("config.json", None, "is not valid JSON"), 3)],
        ),
        (
            "config.json not an object",
            |d| fs::write(d.join("config.json"), "[1, 2]").expect("w"),
            vec![error("config.json", None, "is a list, not a JSON object")],
        ),
        (
            "disagreeing id2label and label2id",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""benign": 0, "malignant": 1"#,
                    r#""benign": 1, "malignant": 0"#,
                )
            },
            vec![error(
                "config.json",
                Some("label2id"),
                "id2label maps 0 to `benign` but label2id maps `benign` to 1",
            )],
        ),
        (
            "wrong-typed preprocessor keys",
            |d| {
                fs::write(d.join("preprocessor_config.json"),
            r#"{"size": "224", "do_horizontal_flip": "yes", "image_mean": 0.5, "image_std": [0.2, 0.2, -1]}"#).expect("w")
            },
            vec![
                error(
                    "preprocessor_config.json",
                    Some("size"),
                    "is the string \"224\"",
                ),
                error(
                    "preprocessor_config.json",
                    Some("do_horizontal_flip"),
                    "is the string \"yes\"",
                ),
                error("preprocessor_config.json", Some("image_std"), "is a list"),
            ],
        ),
        (
            "truncated weights",
            |d| {
                let bytes = safetensors_bytes();
                fs::write(
                    d.join("weights/model.safetensors"),
                    &bytes[..bytes.len() - 4],
                )
                .expect("w");
            },
            vec![error("config.json", Some("param_file"), "is truncated")],
        ),
        (
            "weights that are not weights",
            |d| fs::write(d.join("weights/model.safetensors"), "TODO: upload weights").expect("w"),
            vec![error(
                "config.json",
                Some("param_file"),
                "is not in a recognised weights format",
            )],
        ),
        (
            "Python entry file",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""entry_module": "fedengine.vision""#,
                    r#""entry_module": null"#,
                );
                edit(
                    d,
                    "config.json",
                    r#""entry_file": null"#,
                    r#""entry_file": "model.py""#,
                );
            },
            vec![error("config.json", Some("entry_file"), "is Python source")],
        ),
        (
            "param_file is the TorchScript entry file itself",
            |d| {
                edit(
                    d,
                    "config.json",
                    r#""entry_module": "fedengine.vision""#,
                    r#""entry_module": null"#,
                );
                edit(
                    d,
                    "config.json",
                    r#""entry_file": null"#,
                    r#""entry_file": "weights/model.safetensors""#,
                );
            },
            vec![error(
                "config.json",
                Some("param_file"),
                "names the entry file `weights/model.safetensors` itself",
            )],
        ),
    ]
}

#[test]
fn each_broken_package_reports_exactly_its_problems() {
    let mut failures = Vec::new();
    for (name, break_it, expected) in cases() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("package");
        fs::create_dir(&dir).expect("package dir");
        write_valid_package(&dir);
        break_it(&dir);
        let inspection = inspect_package(&dir, &catalog());
        let errors: Vec<&Problem> = inspection
            .problems
            .iter()
            .filter(|p| p.is_error())
            .collect();
        let all_found = expected
            .iter()
            .all(|e| errors.iter().any(|p| matches(p, e)));
        if inspection.package.is_some() || !all_found || errors.len() != expected.len() {
            failures.push(format!(
                "case `{name}`: expected {} error(s), got:\n{}",
                expected.len(),
                inspection.problems
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_valid_fixture_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_valid_package(dir.path());
    let inspection = inspect_package(dir.path(), &catalog());
    assert!(inspection.problems.is_empty(), "{}", inspection.problems);
    let package = inspection.package.expect("valid");
    assert_eq!(package.card.display_name, "Skin lesions");
    assert_eq!(
        package.labels(),
        Some(&["benign".to_owned(), "malignant".to_owned()][..])
    );
    assert_eq!(package.param_file.tensor_count, Some(1));
}

#[test]
fn every_problem_of_one_package_is_reported_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_valid_package(dir.path());
    edit(dir.path(), "README.md", "license: Apache-2.0\n", "");
    edit(
        dir.path(),
        "README.md",
        "framework: PyTorch",
        "framework: JAX",
    );
    edit(
        dir.path(),
        "README.md",
        "author: Jane Doe",
        "author: Jane Doe\nsource-hospital: north",
    );
    edit(
        dir.path(),
        "config.json",
        "weights/model.safetensors",
        "weights/missing.safetensors",
    );
    edit(
        dir.path(),
        "config.json",
        r#""learning_rate": 0.001"#,
        r#""learning_rate": -1"#,
    );
    fs::write(
        dir.path().join("preprocessor_config.json"),
        r#"{"resample": 7}"#,
    )
    .expect("w");

    let inspection = inspect_package(dir.path(), &catalog());
    assert!(inspection.package.is_none());
    let problems = &inspection.problems;
    let keys: Vec<(&str, Option<&str>, Severity)> = problems
        .iter()
        .map(|p| (p.file.as_str(), p.key.as_deref(), p.severity))
        .collect();
    for expected in [
        ("README.md", Some("license"), Severity::Error),
        ("README.md", Some("framework"), Severity::Error),
        ("README.md", Some("source-hospital"), Severity::Warning),
        ("config.json", Some("param_file"), Severity::Error),
        ("config.json", Some("learning_rate"), Severity::Error),
        (
            "preprocessor_config.json",
            Some("resample"),
            Severity::Error,
        ),
    ] {
        assert!(
            keys.contains(&expected),
            "{expected:?} missing from:\n{problems}"
        );
    }
    assert_eq!(
        (problems.error_count(), problems.warning_count()),
        (5, 1),
        "{problems}"
    );
}

#[test]
fn warnings_alone_leave_the_package_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_valid_package(dir.path());
    edit(
        dir.path(),
        "README.md",
        "author: Jane Doe",
        "author: Jane Doe\nhospital: north",
    );
    fs::rename(
        dir.path().join("weights/model.safetensors"),
        dir.path().join("weights/model.pt"),
    )
    .expect("mv");
    edit(
        dir.path(),
        "config.json",
        "weights/model.safetensors",
        "weights/model.pt",
    );
    let inspection = inspect_package(dir.path(), &catalog());
    assert_eq!(
        inspection.problems.warning_count(),
        2,
        "{}",
        inspection.problems
    );
    assert!(
        inspection
            .problems
            .iter()
            .any(|p| p.message.contains("its extension is `.pt`"))
    );
    let package = inspection.package.expect("warnings do not invalidate");
    assert_eq!(package.card.unknown[0].0, "hospital");
}
