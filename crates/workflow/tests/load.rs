//! `Workflow::load` on real files: one broken workflow per problem (each with its exact key
//! and line:column), all problems of a file together, defaults, path resolution, the digest
//! and the shipped example.

use std::fs;
use std::path::{Path, PathBuf};

use fl_workflow::{
    Dataset, Optimizer, StoppingMetric, Timeout, Transport, Weighting, Workflow, WorkflowErrors,
};
use tempfile::TempDir;

/// A directory with what the base workflow names: a model package directory and datasets.
fn fixture() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["model", "data/hub", "data/a", "data/b"] {
        fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    fs::write(dir.path().join("model.zip"), b"PK").expect("write");
    fs::write(dir.path().join("nats.creds"), b"creds").expect("write");
    dir
}

/// A valid workflow; each line is numbered in a comment so that positions can be read off.
const BASE: &str = "\
version: 1
name: demo
model: model
initiator:
  node: hub
  validation: data/hub
  test: data/hub
participants:
  - node: a
    data: data/a
  - node: b
    data: data/b
";

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, text).expect("write workflow");
    path
}

fn load(dir: &TempDir, text: &str) -> Result<Workflow, WorkflowErrors> {
    Workflow::load(write(dir, "task.yaml", text))
}

/// `(key, line, column)` of every problem, in order.
fn located(errors: &WorkflowErrors) -> Vec<(String, u64, u64)> {
    errors
        .iter()
        .map(|e| {
            let p = e
                .position
                .expect("every problem of a parsed file has a position");
            (e.key.clone().unwrap_or_default(), p.line, p.column)
        })
        .collect()
}

struct Case {
    name: &'static str,
    yaml: String,
    /// The key, line and column of the only problem, and words its message must contain.
    key: &'static str,
    line: u64,
    column: u64,
    message: &'static str,
    /// Words the "accepted" part must contain.
    accepted: &'static str,
}

fn case(
    name: &'static str,
    yaml: impl Into<String>,
    (key, line, column): (&'static str, u64, u64),
    message: &'static str,
    accepted: &'static str,
) -> Case {
    Case {
        name,
        yaml: yaml.into(),
        key,
        line,
        column,
        message,
        accepted,
    }
}

#[test]
fn each_broken_workflow_reports_its_problem_at_the_exact_key_and_position() {
    let cases = [
        case(
            "unknown key with a suggestion",
            format!("{BASE}max_round: 5\n"),
            ("max_round", 13, 1),
            "is not a known key; did you mean `max_rounds`?",
            "max_rounds",
        ),
        case(
            "unknown key in a section",
            format!("{BASE}early_stopping:\n  patiance: 3\n"),
            ("early_stopping.patiance", 14, 3),
            "did you mean `patience`?",
            "enabled, metric, patience",
        ),
        case(
            "a key of another section",
            format!("{BASE}patience: 3\n"),
            ("patience", 13, 1),
            "did you mean `early_stopping.patience`?",
            "max_rounds",
        ),
        case(
            "unknown key in a list item",
            BASE.replace("    data: data/b", "    dta: data/b\n    data: data/b"),
            ("participants[1].dta", 12, 5),
            "did you mean `data`?",
            "node, data",
        ),
        case(
            "string for a number",
            format!("{BASE}max_rounds: many\n"),
            ("max_rounds", 13, 13),
            "is the string `many`",
            "a whole number from 1 to 100000",
        ),
        case(
            "zero rounds",
            format!("{BASE}max_rounds: 0\n"),
            ("max_rounds", 13, 13),
            "is the number `0`",
            "a whole number from 1",
        ),
        case(
            "negative seed",
            format!("{BASE}seed: -1\n"),
            ("seed", 13, 7),
            "is the number `-1`",
            "a whole number from 0",
        ),
        case(
            "list for a mapping",
            format!("{BASE}aggregation: [samples]\n"),
            ("aggregation", 13, 14),
            "is a list",
            "a mapping such as `{weighting: samples}`",
        ),
        case(
            "unknown choice",
            format!("{BASE}aggregation:\n  weighting: mean\n"),
            ("aggregation.weighting", 14, 14),
            "is the string `mean`",
            "`samples` or `uniform`",
        ),
        case(
            "string for a boolean",
            format!("{BASE}early_stopping:\n  enabled: no\n"),
            ("early_stopping.enabled", 14, 12),
            "is the string `no`",
            "true or false",
        ),
        case(
            "duration without a unit",
            format!("{BASE}timeouts:\n  schedule: 30\n"),
            ("timeouts.schedule", 14, 13),
            "`30` has a number without a unit",
            "`500ms`, `30s`, `5m`, `1h`",
        ),
        case(
            "duration with an unknown unit",
            format!("{BASE}timeouts:\n  calculation: 5 min\n"),
            ("timeouts.calculation", 14, 16),
            "unknown unit `min`",
            "or 0 for no limit",
        ),
        case(
            "missing name",
            BASE.replace("name: demo\n", ""),
            ("name", 1, 1),
            "is required but missing",
            "the task's name",
        ),
        case(
            "missing test data",
            BASE.replace("  test: data/hub\n", ""),
            ("initiator.test", 4, 1),
            "is required but missing",
            "the test data",
        ),
        case(
            "missing participant data",
            BASE.replace("    data: data/a\n", ""),
            ("participants[0].data", 9, 5),
            "is required but missing",
            "training data",
        ),
        case(
            "invalid node id",
            BASE.replace("node: b", "node: site two"),
            ("participants[1].node", 11, 11),
            "`site two` is not a valid name",
            "letters, digits",
        ),
        case(
            "duplicate node ids",
            BASE.replace("node: b", "node: a"),
            ("participants[1].node", 11, 11),
            "node id `a` is already used by `participants[0].node`",
            "unique",
        ),
        case(
            "initiator id reused",
            BASE.replace("node: b", "node: hub"),
            ("participants[1].node", 11, 11),
            "already used by `initiator.node`",
            "unique",
        ),
        case(
            "duplicate key",
            format!("{BASE}seed: 1\nseed: 2\n"),
            ("seed", 14, 1),
            "is given more than once (first on line 13)",
            "each key once",
        ),
        case(
            "quorum too high",
            format!("{BASE}quorum: 3\n"),
            ("quorum", 13, 9),
            "is 3, but only 2 nodes train (2 participants)",
            "a whole number from 1 to 2",
        ),
        case(
            "log_rounds above max_rounds",
            format!("{BASE}max_rounds: 5\nlog_rounds: 6\n"),
            ("log_rounds", 14, 13),
            "is 6, more than `max_rounds` (5)",
            "from 1 to 5",
        ),
        case(
            "nobody trains",
            BASE.split("participants:")
                .next()
                .unwrap_or_default()
                .to_owned(),
            ("participants", 1, 1),
            "no node trains",
            "`initiator.train`",
        ),
        case(
            "early stopping without validation data",
            format!(
                "{}early_stopping:\n  patience: 3\n",
                BASE.replace("  validation: data/hub\n", "")
            ),
            ("early_stopping", 12, 1),
            "early stopping needs validation data",
            "`early_stopping.enabled: false`",
        ),
        case(
            "unsupported version",
            // Nothing else is checked against version 1: the typo is not reported.
            format!("{}typo: 1\n", BASE.replace("version: 1", "version: 2")),
            ("version", 1, 10),
            "workflow format version 2 is not supported",
            "version 1",
        ),
        case(
            "version missing",
            BASE.replace("version: 1\n", ""),
            ("version", 1, 1),
            "is required but missing",
            "`version: 1`",
        ),
        case(
            "dataset path that does not exist",
            BASE.replace("data: data/b", "data: data/nope"),
            ("participants[1].data", 12, 11),
            "data/nope does not exist",
            "an existing dataset directory",
        ),
        case(
            "dataset path that is a file",
            BASE.replace("data: data/b", "data: model.zip"),
            ("participants[1].data", 12, 11),
            "model.zip is not a directory",
            "an existing dataset directory",
        ),
        case(
            "model path that does not exist",
            BASE.replace("model: model", "model: models/none"),
            ("model", 3, 8),
            "models/none does not exist",
            "a model package directory, or a model.zip",
        ),
        case(
            "model file that is not a zip",
            BASE.replace("model: model", "model: nats.creds"),
            ("model", 3, 8),
            "is a file but not a .zip",
            "model.zip",
        ),
        case(
            "dataset by name in an embedded run",
            BASE.replace("data: data/a", "data: {name: site-a-train}"),
            ("participants[0].data", 10, 11),
            "dataset `site-a-train` is given by name",
            "`transport: {nats: ...}`",
        ),
        case(
            "misspelt required key: reported once",
            BASE.replace("data: data/a", "data: {nmae: site-a}"),
            ("participants[0].data.nmae", 10, 12),
            "did you mean `name`?",
            "name",
        ),
        case(
            "misspelt required key of a section",
            BASE.replace("  test: data/hub", "  tset: data/hub"),
            ("initiator.tset", 7, 3),
            "did you mean `test`?",
            "node, train, validation, test",
        ),
        case(
            "transport of an unknown kind",
            format!("{BASE}transport: grpc\n"),
            ("transport", 13, 12),
            "is the string `grpc`",
            "`embedded`, or `{nats:",
        ),
        case(
            "NATS URL without a scheme",
            format!("{BASE}transport:\n  nats:\n    url: localhost:4222\n"),
            ("transport.nats.url", 15, 10),
            "`localhost:4222` is not a NATS server URL",
            "nats://127.0.0.1:4222",
        ),
        case(
            "NATS credentials that do not exist",
            format!(
                "{BASE}transport:\n  nats:\n    url: nats://h:4222\n    credentials: no.creds\n"
            ),
            ("transport.nats.credentials", 16, 18),
            "no.creds does not exist",
            "credentials file",
        ),
        case(
            "momentum with Adam",
            format!("{BASE}training:\n  optimizer: adam\n  momentum: 0.9\n"),
            ("training.momentum", 15, 13),
            "momentum applies to SGD only",
            "`optimizer: sgd`",
        ),
        case(
            "epochs under training",
            format!("{BASE}training:\n  epochs: 3\n"),
            ("training.epochs", 14, 3),
            "local epochs per round are the top-level `merge_epochs`",
            "learning_rate",
        ),
        case(
            "learning rate of zero",
            format!("{BASE}training:\n  learning_rate: 0\n"),
            ("training.learning_rate", 14, 18),
            "is the number `0`",
            "a number greater than 0",
        ),
        case(
            "output that is a file",
            format!("{BASE}output: model.zip\n"),
            ("output", 13, 9),
            "model.zip exists and is not a directory",
            "a directory",
        ),
        case(
            "too many threads",
            format!("{BASE}threads: 5000\n"),
            ("threads", 13, 10),
            "is the number `5000`",
            "from 1 to 1024",
        ),
        case(
            "the document is a list",
            "- version: 1\n",
            ("", 1, 1),
            "is a list",
            "a mapping of workflow keys",
        ),
        case(
            "empty file",
            "# nothing yet\n",
            ("", 1, 1),
            "is empty",
            "`version: 1`",
        ),
    ];
    let dir = fixture();
    for case in &cases {
        let errors = match load(&dir, &case.yaml) {
            Ok(_) => panic!("{}: expected a problem, the workflow loaded", case.name),
            Err(errors) => errors,
        };
        assert_eq!(
            located(&errors),
            vec![(case.key.to_owned(), case.line, case.column)],
            "{}: {errors}",
            case.name
        );
        let error = &errors.as_slice()[0];
        assert!(
            error.message.contains(case.message),
            "{}: message {:?} lacks {:?}",
            case.name,
            error.message,
            case.message
        );
        let accepted = error.expected.as_deref().unwrap_or_default();
        assert!(
            accepted.contains(case.accepted),
            "{}: accepted {accepted:?} lacks {:?}",
            case.name,
            case.accepted
        );
        // The printed form: file:line:column, the key, the message, what is accepted.
        let printed = error.to_string();
        let file = dir.path().join("task.yaml");
        let prefix = format!("{}:{}:{}: ", file.display(), case.line, case.column);
        assert!(printed.starts_with(&prefix), "{}: {printed}", case.name);
        if !case.key.is_empty() {
            assert!(
                printed.contains(&format!("key `{}`: ", case.key)),
                "{printed}"
            );
        }
    }
}

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
fn every_problem_of_a_file_is_reported_together_in_document_order() {
    let dir = fixture();
    let yaml = "\
version: 1
name: bad name
max_round: 5
model: nowhere
initiator:
  node: a
  test: 12
participants:
  - node: a
    data: data/a
  - node: b
    data: {name: b-train}
timeouts:
  schedule: soon
quorum: 0
";
    let errors = load(&dir, yaml).expect_err("broken");
    assert_eq!(
        located(&errors),
        vec![
            ("name".to_owned(), 2, 7),
            ("max_round".to_owned(), 3, 1),
            ("model".to_owned(), 4, 8),
            ("initiator.test".to_owned(), 7, 9),
            ("participants[0].node".to_owned(), 9, 11),
            ("participants[1].data".to_owned(), 12, 11),
            ("timeouts.schedule".to_owned(), 14, 13),
            ("quorum".to_owned(), 15, 9),
        ],
        "{errors}"
    );
    // The summary names the count and every problem.
    let text = errors.to_string();
    assert!(text.starts_with("the workflow has 8 problems:"), "{text}");
    assert_eq!(text.lines().count(), 9, "{text}");
}

#[test]
fn defaults_are_filled_in() {
    let dir = fixture();
    let w = load(&dir, BASE).expect("valid");
    let base = fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(w.version, 1);
    assert_eq!(w.name, "demo");
    assert_eq!(w.seed, 0);
    assert_eq!(w.max_rounds, 20);
    assert_eq!(w.merge_epochs, 1);
    assert_eq!(w.log_rounds, 1);
    assert_eq!(w.aggregation.weighting, Weighting::Samples);
    assert!(w.early_stopping.enabled);
    assert!(w.early_stopping_active());
    assert_eq!(w.early_stopping.metric, StoppingMetric::ValidationAccuracy);
    assert_eq!(w.early_stopping.patience, 10);
    assert_eq!(w.timeouts.schedule.to_string(), "30s");
    assert_eq!(w.timeouts.calculation.to_string(), "30m");
    assert_eq!(w.quorum, 2, "all training nodes");
    assert_eq!(w.round_retries, 2);
    assert!(w.training.is_empty());
    assert_eq!(w.threads, 1);
    assert_eq!(w.output, base.join("runs/demo"));
    assert_eq!(w.transport, Transport::Embedded);
    assert_eq!(w.initiator.train, None);
    assert_eq!(w.training_nodes(), ["a", "b"]);
    assert!(w.tests_round(1) && w.tests_round(20));

    // Without validation data, early stopping is off rather than an error.
    let w = load(&dir, &BASE.replace("  validation: data/hub\n", "")).expect("valid");
    assert!(!w.early_stopping.enabled);
    assert!(!w.early_stopping_active());

    // Sections whose entries are all commented out mean their defaults.
    let w = load(
        &dir,
        &format!("{BASE}training:\n  # learning_rate: 0.1\ntimeouts:\n"),
    )
    .expect("valid");
    assert!(w.training.is_empty());
    assert_eq!(w.timeouts.schedule.to_string(), "30s");
}

#[test]
fn every_key_is_read() {
    let dir = fixture();
    let yaml = "\
version: 1
name: full-task
seed: 7
model: model.zip
initiator:
  node: hub
  train: data/hub
  validation: data/hub
  test: data/hub
participants:
  - node: a
    data: data/a
max_rounds: 9
merge_epochs: 3
log_rounds: 2
aggregation: {weighting: uniform}
early_stopping: {enabled: false, metric: validation_loss, patience: 4}
timeouts: {schedule: 500ms, calculation: 0}
quorum: 1
round_retries: 0
training:
  learning_rate: 0.01
  batch_size: 16
  optimizer: sgd
  momentum: 0.9
  weight_decay: 0.0001
  lr_step_size: 5
  lr_gamma: 0.5
threads: 2
output: out/here
transport:
  nats:
    url: nats://127.0.0.1:4222
    credentials: nats.creds
";
    let w = load(&dir, yaml).expect("valid");
    let base = fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(w.name, "full-task");
    assert_eq!(w.seed, 7);
    assert_eq!(w.model, base.join("model.zip"));
    assert_eq!(
        w.initiator.train,
        Some(Dataset::Path(base.join("data/hub")))
    );
    assert_eq!(w.training_nodes(), ["hub", "a"]);
    assert_eq!(w.participants.len(), 1);
    assert_eq!((w.max_rounds, w.merge_epochs, w.log_rounds), (9, 3, 2));
    assert!(w.tests_round(1) && w.tests_round(2) && !w.tests_round(3) && w.tests_round(9));
    assert_eq!(w.aggregation.weighting, Weighting::Uniform);
    assert!(!w.early_stopping.enabled);
    assert_eq!(w.early_stopping.metric, StoppingMetric::ValidationLoss);
    assert_eq!(w.early_stopping.patience, 4);
    assert_eq!(w.timeouts.schedule, Timeout::from_millis(500));
    assert_eq!(w.timeouts.calculation.limit(), None);
    assert_eq!((w.quorum, w.round_retries, w.threads), (1, 0, 2));
    let t = &w.training;
    assert_eq!(t.learning_rate, Some(0.01));
    assert_eq!(t.batch_size, Some(16));
    assert_eq!(t.optimizer, Some(Optimizer::Sgd));
    assert_eq!(t.momentum, Some(0.9));
    assert_eq!(t.weight_decay, Some(0.0001));
    assert_eq!(t.lr_step_size, Some(5));
    assert_eq!(t.lr_gamma, Some(0.5));
    assert_eq!(w.output, base.join("out/here"));
    let Transport::Nats(nats) = &w.transport else {
        panic!("NATS transport: {:?}", w.transport);
    };
    assert_eq!(nats.url, "nats://127.0.0.1:4222");
    assert_eq!(
        nats.credentials.as_deref(),
        Some(base.join("nats.creds").as_path())
    );
}

#[test]
fn participants_data_is_a_path_or_a_registered_name() {
    let dir = fixture();
    let base = fs::canonicalize(dir.path()).expect("canonical");
    let nats = "transport: {nats: {url: nats://127.0.0.1:4222}}\n";
    let yaml = format!(
        "{}{nats}",
        BASE.replace("data: data/a", "data: {name: site-a.train}")
            .replace("data: data/b", "data: elsewhere/b")
    );
    let w = load(&dir, &yaml).expect("valid over NATS");
    assert_eq!(
        w.participants[0].data,
        Dataset::Named {
            name: "site-a.train".into()
        }
    );
    assert_eq!(w.participants[0].data.path(), None);
    // Over NATS a path is the agent's own: not checked here, still resolved like any path.
    assert_eq!(
        w.participants[1].data,
        Dataset::Path(base.join("elsewhere/b"))
    );

    let w = load(&dir, BASE).expect("valid embedded");
    assert_eq!(
        w.participants[0].data.path(),
        Some(base.join("data/a").as_path())
    );
}

#[test]
fn relative_paths_resolve_against_the_workflow_file() {
    let dir = fixture();
    fs::create_dir_all(dir.path().join("flows/deeper")).expect("mkdir");
    let yaml = BASE
        .replace("model: model", "model: ../../model")
        .replace("data/", "../../data/")
        .replace("  test: ../../data/hub", "  test: ./../.././data/hub/");
    let path = write(&dir, "flows/deeper/task.yaml", &yaml);
    // Loaded from another working directory's point of view: only the file's location counts.
    let w = Workflow::load(&path).expect("valid");
    let base = fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(w.model, base.join("model"));
    assert_eq!(w.initiator.test, Dataset::Path(base.join("data/hub")));
    assert_eq!(w.participants[1].data, Dataset::Path(base.join("data/b")));
    assert_eq!(w.output, base.join("flows/deeper/runs/demo"));

    // Absolute paths stay as they are.
    let absolute = BASE.replace(
        "model: model",
        &format!("model: {}", base.join("model").display()),
    );
    let w = load(&dir, &absolute).expect("valid");
    assert_eq!(w.model, base.join("model"));
}

#[test]
fn the_digest_ignores_formatting_and_follows_values() {
    let dir = fixture();
    let digest = |text: &str| load(&dir, text).expect("valid").digest();
    let base = digest(BASE);
    assert_eq!(base.len(), 64);
    assert!(base.chars().all(|c| c.is_ascii_hexdigit()));

    let reformatted = "\
# The same task, written differently.
participants: [{data: data/a, node: a}, {node: b, data: \"data/b\"}]
initiator: {test: ./data/hub, node: hub, validation: data/hub/}
model: 'model'   # quoted
name: demo
version: 1
seed: 0              # the default, spelled out
quorum: 2            # likewise
timeouts: {schedule: 30000ms, calculation: 1800s}
";
    assert_eq!(digest(reformatted), base);
    assert_eq!(digest(&format!("{BASE}max_rounds: 20\n")), base);

    assert_ne!(digest(&format!("{BASE}max_rounds: 21\n")), base);
    assert_ne!(digest(&format!("{BASE}seed: 1\n")), base);
    assert_ne!(digest(&BASE.replace("node: b", "node: c")), base);
    assert_ne!(
        digest(&format!("{BASE}timeouts: {{schedule: 31s}}\n")),
        base
    );
}

#[test]
fn the_effective_workflow_prints_and_loads_back_identically() {
    let dir = fixture();
    let w = load(&dir, &format!("{BASE}training: {{learning_rate: 0.02}}\n")).expect("valid");
    let json = serde_json::to_value(&w).expect("serialises");
    assert_eq!(json["max_rounds"], 20);
    assert_eq!(json["timeouts"]["calculation"], "30m");
    assert_eq!(json["transport"], "embedded");
    assert_eq!(json["training"], serde_json::json!({"learning_rate": 0.02}));
    assert_eq!(json["participants"][0]["node"], "a");
    // JSON is YAML: the printed workflow is itself a valid workflow, with the same digest.
    let again = load(&dir, &serde_json::to_string_pretty(&json).expect("text")).expect("valid");
    assert_eq!(again, w);
    assert_eq!(again.digest(), w.digest());
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
fn the_shipped_workflow_loads_with_the_expected_values() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = fs::canonicalize(repo).expect("repository");
    let w = Workflow::load(repo.join("workflows/fedavg.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.name, "digits-fedavg");
    assert_eq!(w.model, repo.join("models/digits-cnn"));
    assert_eq!(w.initiator.node, "initiator");
    assert_eq!(w.initiator.train, None);
    let held_out = Dataset::Path(repo.join("datasets/digits/initiator"));
    assert_eq!(w.initiator.validation.as_ref(), Some(&held_out));
    assert_eq!(w.initiator.test, held_out);
    let sites: Vec<(&str, &Dataset)> = w
        .participants
        .iter()
        .map(|p| (p.node.as_str(), &p.data))
        .collect();
    let site = |n: u32| Dataset::Path(repo.join(format!("datasets/digits/site-{n}")));
    assert_eq!(
        sites,
        [
            ("site-1", &site(1)),
            ("site-2", &site(2)),
            ("site-3", &site(3))
        ]
    );
    assert_eq!(w.aggregation.weighting, Weighting::Samples);
    assert_eq!((w.max_rounds, w.merge_epochs, w.log_rounds), (20, 1, 1));
    assert!(w.early_stopping_active());
    assert_eq!(w.early_stopping.patience, 10);
    assert_eq!(w.quorum, 3);
    assert!(
        w.training.is_empty(),
        "the package's SGD settings are used as they are"
    );
    assert_eq!(w.threads, 1);
    assert_eq!(w.output, repo.join("runs/digits-fedavg"));
    assert_eq!(w.transport, Transport::Embedded);
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
