//! `Workflow::load` and `Workflow::parse` on input that is not a workflow at all: YAML syntax
//! errors, files that cannot be read, hostile or truncated text.

use std::fs;

use fl_workflow::Workflow;

mod common;

use common::{BASE, fixture, load};

#[test]
fn yaml_syntax_errors_are_located() {
    let dir = fixture();
    let errors = load(
        &dir,
        "version: 1\nname: demo\nparticipants: [a, b\nseed: 1\n",
    )
    .expect_err("unclosed flow sequence");
    assert_eq!(errors.len(), 1, "{errors}");
    let error = &errors.as_slice()[0];
    assert!(error.message.starts_with("is not valid YAML: "), "{error}");
    assert!(!error.message.contains(" at line "), "{error}");
    let position = error.position.expect("position");
    assert!((3..=5).contains(&position.line), "{error}");

    let errors = load(&dir, "version: 1\nname: demo\n  model: x\n").expect_err("bad indentation");
    let position = errors.as_slice()[0].position.expect("position");
    assert_eq!(position.line, 3, "{errors}");

    let errors = load(&dir, "version: 1\n\tname: demo\n").expect_err("tab");
    assert!(errors.as_slice()[0].message.contains("tab"), "{errors}");
    assert!(errors.as_slice()[0].position.is_some(), "{errors}");
}

#[test]
fn files_that_cannot_be_read_say_why() {
    let dir = fixture();
    let errors = Workflow::load(dir.path().join("missing.yaml")).expect_err("missing");
    assert!(
        errors.as_slice()[0]
            .message
            .starts_with("cannot read the workflow file"),
        "{errors}"
    );
    let errors = Workflow::load(dir.path()).expect_err("a directory");
    assert_eq!(errors.as_slice()[0].message, "is a directory");
    let path = dir.path().join("latin1.yaml");
    fs::write(&path, b"version: 1\nname: caf\xe9\n").expect("write");
    let errors = Workflow::load(&path).expect_err("not UTF-8");
    let error = &errors.as_slice()[0];
    assert_eq!(error.message, "is not UTF-8 text");
    assert_eq!(error.position.map(|p| (p.line, p.column)), Some((2, 10)));
}

#[test]
fn hostile_or_truncated_input_gives_located_problems_not_panics() {
    let dir = fixture();
    let path = dir.path().join("task.yaml");
    let full = format!(
        "{BASE}max_rounds: 3\ntimeouts: {{schedule: 1s}}\ntraining: {{learning_rate: 0.1}}\n\
         transport: {{nats: {{url: nats://h:1, credentials: nats.creds}}}}\n"
    );
    // Every prefix of a valid file: a truncated upload, an editor mid-keystroke.
    for (end, _) in full.char_indices() {
        if let Err(errors) = Workflow::parse(&full[..end], &path) {
            assert!(!errors.is_empty());
            assert!(
                errors.iter().all(|e| e.position.is_some()),
                "prefix of {end} bytes: {errors}"
            );
        }
    }
    let deep = format!(
        "version: 1\nname: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                  g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    for text in [
        deep.as_str(),
        laughs,
        "version: 1\n---\nversion: 1\n",
        "version: 1\nname: !!binary aGVsbG8=\n",
        "? [a, b]\n: c\n",
        "version: 99999999999999999999999999999999999999999\n",
        "version: 1\nseed: 1e400\nmax_rounds: .nan\n",
        "\u{feff}version: 1\n",
        "{",
        "'",
        ": :",
    ] {
        let errors = Workflow::parse(text, &path).expect_err(text);
        assert!(
            errors.iter().all(|e| e.position.is_some()),
            "{text:?}: {errors}"
        );
    }
}
