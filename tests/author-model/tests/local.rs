//! `AutoModel::fine_tune` through `fl_model::fine_tune_fedavg` on one node: the hooks decide,
//! the kept state is tested and saved, and a run resumed from its checkpoint ends with the
//! weights of an uninterrupted one.

mod common;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fl_model::{
    DatasetDirs, FineTuneJob, FineTuneOutcome, ModelContext, ModelInit, TaskLogger, build_model,
};
use fl_package::ModelPackage;
use fl_torch::TrainerOptions;

/// Runs a fine-tuning; returns its outcome and the lines it logged.
fn fine_tune(
    package: &Path,
    work: &Path,
    epochs: usize,
    recover: bool,
) -> (FineTuneOutcome, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let package = ModelPackage::open(package, &fl_model::catalog()).expect("package");
    let labels: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let mut model = build_model(ModelInit {
        package,
        options: TrainerOptions {
            seed: 5,
            ..TrainerOptions::default()
        },
        context: ModelContext {
            node: "local".into(),
            task: "local".into(),
            labels,
            is_initiator: true,
            result_dir: work.to_path_buf(),
            logger: TaskLogger::new(move |_, line| {
                sink.lock().expect("log").push(line.to_owned());
            }),
            ..ModelContext::default()
        },
    })
    .expect("the registered model builds");
    let outcome = model
        .fine_tune(&FineTuneJob {
            node: "local".into(),
            task: "local".into(),
            dataset: DatasetDirs::single(common::repo().join("datasets/digits/central")),
            is_initiator: true,
            recover,
            epochs,
            seed: 5,
            patience: None,
        })
        .expect("fine-tuned");
    let lines = lines.lock().expect("log").clone();
    (outcome, lines)
}

#[test]
fn a_resumed_local_fine_tuning_ends_with_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = common::package(dir.path(), "");

    let whole = dir.path().join("whole");
    let (outcome, log) = fine_tune(&package, &whole, 4, false);
    assert_eq!(
        log.iter().filter(|l| l.starts_with("epoch ")).count(),
        4,
        "{log:?}"
    );
    assert_eq!(outcome.epochs.len(), 4);
    assert_eq!(outcome.stopped, "max_rounds (4) reached");
    assert!((1..=4).contains(&outcome.best_epoch));
    let test = outcome.test.expect("central has test data");
    assert!(test.accuracy > 0.2, "test accuracy {}", test.accuracy);

    let resumed = dir.path().join("resumed");
    let (first, _) = fine_tune(&package, &resumed, 2, false);
    assert_eq!(first.epochs.len(), 2);
    let (second, log) = fine_tune(&package, &resumed, 4, true);
    assert_eq!(second.epochs.len(), 4);
    // Only epochs 3 and 4 ran again.
    assert!(
        log.contains(&"resuming after epoch 2 of 4".to_owned()),
        "{log:?}"
    );
    let epochs: Vec<&String> = log.iter().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 2, "{log:?}");
    assert!(epochs[0].starts_with("epoch 3:") && epochs[1].starts_with("epoch 4:"));
    assert_eq!(second.best_epoch, outcome.best_epoch);
    assert_eq!(
        fs::read(&outcome.weights).expect("weights"),
        fs::read(&second.weights).expect("weights"),
        "resumed and uninterrupted runs keep bit-identical weights"
    );
    assert_eq!(second.test, outcome.test);
    // The resumed run reports every epoch, those before the interruption included.
    let numbers: Vec<usize> = second.epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(second.epochs[..2], first.epochs[..]);
}
