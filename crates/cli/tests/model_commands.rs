//! `engine model validate|show` as a user runs them: the built binary, with no
//! `LD_LIBRARY_PATH`, on the shipped example package and on a broken copy of it.

mod common;

use common::{engine, repo};

fn example() -> String {
    repo().join("models/digits-cnn").display().to_string()
}

#[test]
fn the_example_package_validates_and_shows() {
    let out = engine(&["model", "validate", &example()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid model package"));
    assert!(stderr.is_empty(), "no problem expected: {stderr}");

    let out = engine(&["model", "show", "--json", &example()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown["name"], "digits-cnn");
    assert_eq!(shown["entry"]["class"], "SmallCnn");
    assert_eq!(shown["labels"].as_array().map(Vec::len), Some(10));
    assert_eq!(shown["param_file"]["format"], "safetensors");
    assert_eq!(shown["param_file"]["tensors"], 16);

    let out = engine(&["model", "show", &example()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Handwritten digits CNN") && text.contains("safetensors"),
        "{text}"
    );
}

#[test]
fn the_plain_engine_lists_its_models_and_refuses_an_unlinked_one_saying_how_to_link_it() {
    let out = engine(&["model", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|m| format!("{}.{}", m["entry_module"], m["entry_class"]).replace('"', ""))
        .collect();
    assert_eq!(
        names,
        [
            "fedengine.vision.ResNet18",
            "fedengine.vision.ResNet34",
            "fedengine.vision.ResNet50",
            "fedengine.vision.SmallCnn"
        ]
    );

    // The example author package needs its crate linked in (`lesion-engine`).
    let lesion = repo().join("examples/skin-lesion/package");
    let out = engine(&["model", "validate", &lesion.display().to_string()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "no model linked into this engine is registered as module `acme.dermatology`"
        ) && stderr.contains("docs/AUTHORING.md"),
        "{stderr}"
    );
}

#[test]
fn a_broken_package_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [
        "README.md",
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(
            repo().join("models/digits-cnn").join(file),
            dir.path().join(file),
        )
        .expect("copy");
    }
    let card = std::fs::read_to_string(dir.path().join("README.md")).expect("card");
    std::fs::write(
        dir.path().join("README.md"),
        card.replace("framework: PyTorch", "framework: TensorFlow"),
    )
    .expect("card");
    let config = std::fs::read_to_string(dir.path().join("config.json")).expect("config");
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("SmallCnn", "BigCnn"),
    )
    .expect("config");
    let path = dir.path().display().to_string();

    let out = engine(&["model", "validate", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("README.md:7:12: key `framework`"),
        "{stderr}"
    );
    assert!(stderr.contains("config.json: key `entry_class`: module `fedengine.vision` has no model class `BigCnn` (accepted: ResNet18, ResNet34, ResNet50, SmallCnn)"), "{stderr}");
    assert!(stderr.contains("2 errors, 0 warnings"), "{stderr}");

    let out = engine(&["model", "validate", "--json", &path]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 2);
    assert_eq!(report["problems"][0]["position"]["line"], 7);

    let out = engine(&["model", "show", &path]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn version_and_help_work_for_every_subcommand() {
    let out = engine(&["--version"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(concat!("engine ", env!("CARGO_PKG_VERSION")))
    );
    for args in [
        &["--help"][..],
        &["model", "--help"],
        &["model", "validate", "--help"],
        &["model", "show", "--help"],
    ] {
        let out = engine(args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: engine"),
            "{args:?}"
        );
    }
}
