//! `Workflow::load` on valid workflows: defaults, every key, datasets, path resolution, the
//! digest, printing and loading back, and the shipped example.

use std::fs;
use std::path::Path;

use fl_workflow::{Dataset, Optimizer, StoppingMetric, Timeout, Transport, Weighting, Workflow};

mod common;

use common::{BASE, fixture, load, write};

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
  lr_schedule: {kind: step, step_size: 5, gamma: 0.5}
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
    assert_eq!(
        t.lr_schedule,
        Some(fl_package::LrSchedule::Step {
            step_size: 5,
            gamma: 0.5
        })
    );
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
