//! `Workflow::load_with`: `--set KEY=VALUE` and `--output DIR` written into the document and
//! checked like the file's own text, problems naming the override, and what is recorded.

use std::fs;

use fl_workflow::{Dataset, Optimizer, Overrides, Transport, Workflow, WorkflowErrors};

mod common;

use common::{BASE, fixture, write};

fn load(dir: &tempfile::TempDir, text: &str, sets: &[&str]) -> Result<Workflow, WorkflowErrors> {
    let overrides = Overrides::from_sets(sets).expect("valid --set arguments");
    Workflow::load_with(write(dir, "task.yaml", text), &overrides)
}

#[test]
fn overrides_change_values_and_create_missing_sections() {
    let dir = fixture();
    let base = fs::canonicalize(dir.path()).expect("canonical");
    let w = load(
        &dir,
        &format!("{BASE}max_rounds: 20\n"),
        &[
            "max_rounds=3",
            "training.learning_rate=0.01",
            "training.optimizer=sgd",
            "training.lr_schedule={kind: step, step_size: 5}",
            "early_stopping.patience=4",
            "participants.1.data=data/hub",
            "participants[2].node=c",
            "participants.2.data=data/b",
            "seed=1",
            "seed=2",
        ],
    )
    .expect("valid");
    assert_eq!(w.max_rounds, 3);
    assert_eq!(w.training.learning_rate, Some(0.01));
    assert_eq!(w.training.optimizer, Some(Optimizer::Sgd));
    assert_eq!(
        w.training.lr_schedule,
        Some(fl_package::LrSchedule::Step {
            step_size: 5,
            gamma: 0.1
        })
    );
    assert_eq!(w.early_stopping.patience, 4);
    assert!(w.early_stopping.enabled);
    // Paths in a value are relative to the workflow file, like the file's own.
    assert_eq!(w.participants[1].data, Dataset::Path(base.join("data/hub")));
    assert_eq!(w.training_nodes(), ["a", "b", "c"]);
    assert_eq!(
        w.quorum, 3,
        "the default quorum counts the added participant"
    );
    assert_eq!(w.seed, 2, "a later override wins");
    assert_eq!(w.overrides.len(), 10);
    assert_eq!(w.overrides[0], "max_rounds=3");
    assert_eq!(w.overrides[6], "participants[2].node=c");

    // A section given as null (its entries commented out) or a scalar is replaced; a
    // transport written out by an override is checked like the file's.
    let w = load(
        &dir,
        &format!("{BASE}training:\ntransport: embedded\n"),
        &[
            "training.batch_size=16",
            "transport.nats.url=nats://127.0.0.1:4222",
        ],
    )
    .expect("valid");
    assert_eq!(w.training.batch_size, Some(16));
    let Transport::Nats(nats) = &w.transport else {
        panic!("NATS transport: {:?}", w.transport);
    };
    assert_eq!(nats.url, "nats://127.0.0.1:4222");

    // The same overrides on the text of a submitted workflow.
    let path = dir.path().join("task.yaml");
    let overrides = Overrides::from_sets(["merge_epochs=2"]).expect("valid");
    let w = Workflow::parse_submitted_with(BASE, &path, &overrides).expect("valid");
    assert_eq!(w.merge_epochs, 2);
    let w = Workflow::parse_with(BASE, &path, &overrides).expect("valid");
    assert_eq!(w.merge_epochs, 2);
}

#[test]
fn problems_of_overrides_name_them() {
    let dir = fixture();
    let errors = load(&dir, BASE, &["training.learning_rate=-1"]).expect_err("negative");
    assert_eq!(errors.len(), 1, "{errors}");
    let error = &errors.as_slice()[0];
    assert_eq!(
        error.origin.as_deref(),
        Some("--set training.learning_rate=-1")
    );
    assert_eq!(error.position, None);
    assert_eq!(error.key.as_deref(), Some("training.learning_rate"));
    assert!(error.file.ends_with("task.yaml"), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("--set training.learning_rate=-1: key `training.learning_rate`: is "),
        "{text}"
    );
    assert!(
        text.contains("(accepted: a number greater than 0)"),
        "{text}"
    );
    let json = serde_json::to_value(error).expect("json");
    assert_eq!(json["origin"], "--set training.learning_rate=-1");

    // Unknown keys get the file's suggestions, in sections an override created too.
    let errors =
        load(&dir, BASE, &["max_round=3", "training.learnin_rate=0.1"]).expect_err("unknown keys");
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "--set max_round=3: key `max_round`: is not a known key; did you mean `max_rounds`? \
             (accepted: version, name, seed, model, initiator, participants, max_rounds, \
             merge_epochs, log_rounds, aggregation, early_stopping, timeouts, quorum, \
             round_retries, training, threads, output, transport)",
            "--set training.learnin_rate=0.1: key `training.learnin_rate`: is not a known key; \
             did you mean `learning_rate`? (accepted: optimizer, learning_rate, lr_schedule, \
             momentum, weight_decay, batch_size, drop_last, head)",
        ]
    );

    // Other kinds of problems: a type, a key path the document cannot take, checks across
    // keys; the file's own problems keep their positions.
    let errors = load(
        &dir,
        &format!("{BASE}threads: 0\n"),
        &["max_rounds=many", "participants.7.data=x", "version=2"],
    )
    .expect_err("bad");
    let found: Vec<_> = errors
        .iter()
        .map(|e| (e.origin.clone(), e.key.clone(), e.message.clone()))
        .collect();
    // An unsupported version stops the check (as in a file), so only it and the override
    // that could not be written are reported.
    assert_eq!(
        found,
        [
            (
                Some("--set participants.7.data=x".to_owned()),
                Some("participants".to_owned()),
                "is a list of 2 items: no index 7".to_owned()
            ),
            (
                Some("--set version=2".to_owned()),
                Some("version".to_owned()),
                "workflow format version 2 is not supported by this engine".to_owned()
            ),
        ]
    );
    let errors = load(
        &dir,
        &format!("{BASE}threads: 0\n"),
        &["max_rounds=many", "merge_epochs=0"],
    )
    .expect_err("bad");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 3, "{errors}");
    assert!(
        shown[0].starts_with("--set max_rounds=many: key `max_rounds`: is the string `many`"),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].starts_with("--set merge_epochs=0: key `merge_epochs`: is the number `0`"),
        "{}",
        shown[1]
    );
    assert!(
        shown[2].contains("task.yaml:13:10: key `threads`"),
        "{}",
        shown[2]
    );
    let errors = load(&dir, BASE, &["log_rounds=50"]).expect_err("more than max_rounds");
    assert_eq!(
        errors.to_string(),
        "--set log_rounds=50: key `log_rounds`: is 50, more than `max_rounds` (20) \
         (accepted: a whole number from 1 to 20)"
    );
}

#[test]
fn output_is_relative_to_the_current_directory() {
    let dir = fixture();
    let base = fs::canonicalize(dir.path()).expect("canonical");
    let cwd = std::env::current_dir().expect("cwd");
    let path = write(&dir, "task.yaml", BASE);

    let overrides = Overrides::from_sets(["output=from-set"]).expect("valid");
    let w = Workflow::load_with(&path, &overrides).expect("valid");
    assert_eq!(
        w.output,
        base.join("from-set"),
        "--set output is the file's"
    );

    let overrides = overrides.with_output("runs/../from-output");
    let w = Workflow::load_with(&path, &overrides).expect("valid");
    assert_eq!(
        w.output,
        cwd.join("from-output"),
        "--output wins and is the cwd's"
    );
    let recorded = format!("output={}", cwd.join("from-output").display());
    assert_eq!(w.overrides, ["output=from-set".to_owned(), recorded]);

    let into_a_file = Overrides::new().with_output(dir.path().join("model.zip"));
    let errors = Workflow::load_with(&path, &into_a_file).expect_err("a file");
    let error = &errors.as_slice()[0];
    assert_eq!(
        error.origin,
        Some(format!(
            "--output {}",
            dir.path().join("model.zip").display()
        ))
    );
    assert!(
        error.message.ends_with("exists and is not a directory"),
        "{error}"
    );
}

#[test]
fn the_digest_covers_the_effective_values_not_how_they_were_given() {
    let dir = fixture();
    let in_file = load(&dir, &format!("{BASE}max_rounds: 3\n"), &[]).expect("valid");
    let overridden = load(&dir, BASE, &["max_rounds=3"]).expect("valid");
    let plain = load(&dir, BASE, &[]).expect("valid");
    assert_eq!(in_file.digest(), overridden.digest());
    assert_ne!(plain.digest(), overridden.digest());
    assert!(in_file.overrides.is_empty());
    // The effective workflow shows the overrides; without any, the key is left out.
    let json = serde_json::to_value(&overridden).expect("json");
    assert_eq!(json["overrides"], serde_json::json!(["max_rounds=3"]));
    let json = serde_json::to_value(&plain).expect("json");
    assert!(json.get("overrides").is_none(), "{json}");
    // An empty file takes its keys from overrides alone.
    let errors = load(&dir, "", &["version=1"]).expect_err("incomplete");
    assert!(
        errors.iter().any(|e| e.key.as_deref() == Some("name")),
        "{errors}"
    );
}
