//! `template::fedavg`: the written workflow loads with the checker, its written defaults are
//! the real ones, every key is present, and names and paths are quoted as YAML needs.

use std::fs;
use std::path::{Path, PathBuf};

use fl_workflow::template::{self, TemplateInitiator, TemplateOptions, TemplateParticipant};
use fl_workflow::{Workflow, accepted_keys, yaml_string};
use tempfile::TempDir;

/// A directory with a model package, datasets whose names need quoting, and `workflows/`.
fn fixture() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    for sub in [
        "models/m",
        "datasets/hub",
        "datasets/site 1",
        "datasets/a: b #c",
        "datasets/données-été",
        "workflows",
    ] {
        fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    (dir, root)
}

fn options(root: &Path) -> TemplateOptions {
    TemplateOptions {
        name: "demo".into(),
        model: root.join("models/m"),
        initiator: TemplateInitiator {
            node: "hub".into(),
            train: None,
            validation: Some(root.join("datasets/hub")),
            test: root.join("datasets/hub"),
        },
        participants: vec![
            TemplateParticipant {
                node: "site-1".into(),
                data: root.join("datasets/site 1"),
            },
            TemplateParticipant {
                node: "site_2".into(),
                data: root.join("datasets/a: b #c"),
            },
            TemplateParticipant {
                node: "site-3".into(),
                data: root.join("datasets/données-été"),
            },
        ],
        dir: root.join("workflows"),
    }
}

/// The same task written with only the required keys (absolute paths).
fn minimal(options: &TemplateOptions) -> String {
    let path = |p: &Path| yaml_string(p.to_str().expect("UTF-8"));
    let i = &options.initiator;
    let mut text = format!(
        "version: 1\nname: {}\nmodel: {}\ninitiator:\n  node: {}\n  test: {}\n",
        options.name,
        path(&options.model),
        i.node,
        path(&i.test)
    );
    for (key, data) in [("train", &i.train), ("validation", &i.validation)] {
        if let Some(data) = data {
            text.push_str(&format!("  {key}: {}\n", path(data)));
        }
    }
    if !options.participants.is_empty() {
        text.push_str("participants:\n");
    }
    for p in &options.participants {
        text.push_str(&format!(
            "  - node: {}\n    data: {}\n",
            p.node,
            path(&p.data)
        ));
    }
    text
}

fn load_both(options: &TemplateOptions) -> (String, Workflow, Workflow) {
    let text = template::fedavg(options).expect("template");
    let file = options.dir.join("new.yaml");
    fs::write(&file, &text).expect("write");
    let written = Workflow::load(&file).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let file = options.dir.join("minimal.yaml");
    fs::write(&file, minimal(options)).expect("write");
    let defaults = Workflow::load(&file).unwrap_or_else(|e| panic!("{e}"));
    (text, written, defaults)
}

#[test]
fn the_template_loads_and_its_written_values_are_the_defaults() {
    let (_dir, root) = fixture();
    let options = options(&root);
    let (text, written, defaults) = load_both(&options);
    assert_eq!(written, defaults, "{text}");
    assert_eq!(written.digest(), defaults.digest());
    assert!(written.early_stopping.enabled);
    // Paths are relative to the file's directory, quoted where YAML needs it.
    assert!(text.contains("\nmodel: ../models/m\n"), "{text}");
    assert!(
        text.contains("    data: \"../datasets/site 1\"\n"),
        "{text}"
    );
    assert!(
        text.contains("    data: \"../datasets/a: b #c\"\n"),
        "{text}"
    );
    assert!(
        text.contains("    data: \"../datasets/données-été\"\n"),
        "{text}"
    );
    assert!(text.contains("\noutput: runs/demo\n"), "{text}");
    assert_eq!(written.output, root.join("workflows/runs/demo"));

    // The initiator trains alone, without validation data: early stopping is written off.
    let mut alone = options;
    alone.participants.clear();
    alone.initiator.train = Some(root.join("datasets/hub"));
    alone.initiator.validation = None;
    alone.dir = root;
    let (text, written, defaults) = load_both(&alone);
    assert_eq!(written, defaults, "{text}");
    assert!(!written.early_stopping.enabled);
    assert!(text.contains("\nparticipants: []\n"), "{text}");
    assert!(text.contains("  train: datasets/hub\n"), "{text}");
    assert!(text.contains("  # validation: DIR\n"), "{text}");
    assert!(
        text.contains("every training node (1 here).\nquorum:\n"),
        "{text}"
    );
}

#[test]
fn every_key_is_written_with_a_line_of_explanation() {
    let (_dir, root) = fixture();
    let text = template::fedavg(&options(&root)).expect("template");
    let lines: Vec<&str> = text.lines().collect();
    let top: Vec<String> = accepted_keys()
        .into_iter()
        .filter(|k| !k.contains(['.', '[']))
        .collect();
    assert!(top.len() >= 18, "{top:?}");
    for key in &top {
        let at = lines
            .iter()
            .position(|l| *l == format!("{key}:") || l.starts_with(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("`{key}` is written:\n{text}"));
        assert!(
            lines[at - 1].starts_with("# "),
            "`{key}` is explained: {:?}",
            lines[at - 1]
        );
    }
    // The keys of the sections with defaults are written out; the training keys are
    // listed, commented out.
    for key in accepted_keys() {
        let Some((section, sub)) = key.split_once('.') else {
            continue;
        };
        match section {
            "aggregation" | "early_stopping" | "timeouts" => {
                assert!(text.contains(&format!("\n  {sub}: ")), "`{key}`:\n{text}");
            }
            "training" if !sub.contains('.') => {
                assert!(text.contains(&format!("\n  # {sub}: ")), "`{key}`:\n{text}");
            }
            _ => {}
        }
    }
}

#[test]
fn names_are_quoted_and_read_back_as_written() {
    let (_dir, root) = fixture();
    let mut options = options(&root);
    options.name = "my task: #1".into();
    options.participants[0].node = "true".into();
    let text = template::fedavg(&options).expect("template");
    assert!(text.contains("\nname: \"my task: #1\"\n"), "{text}");
    assert!(text.contains("\noutput: \"runs/my task: #1\"\n"), "{text}");
    assert!(text.contains("  - node: \"true\"\n"), "{text}");
    // The checker reads the strings as written, and refuses the name for what it is.
    let errors = Workflow::parse(&text, options.dir.join("new.yaml")).expect_err("bad name");
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["`my task: #1` is not a valid name"], "{errors}");
}

#[cfg(unix)]
#[test]
fn paths_that_are_not_utf8_are_refused() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let (_dir, root) = fixture();
    let mut options = options(&root);
    options.model = root.join(OsStr::from_bytes(b"caf\xe9"));
    let error = template::fedavg(&options).expect_err("not UTF-8");
    assert!(
        error.to_string().starts_with("the model `../caf"),
        "{error}"
    );
}
