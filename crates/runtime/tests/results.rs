//! The Packager's output: `model.zip` is a valid package carrying the federation summary,
//! `report.zip` carries TensorBoard runs, metrics, the task log and `summary.json`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use fl_runtime::RuntimeError;
use fl_runtime::results::{
    FederationSummary, ParticipantSummary, ResultFiles, RoundSummary, card_appendix, write_results,
};
use fl_runtime::settings::EffectiveSettings;
use fl_telemetry::{
    EventKind, EventWriter, Level, MetricsFile, RoundMetrics, TaskLog, read_events,
};
use fl_tensor::Metrics;

fn example_package() -> fl_package::ModelPackage {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/digits-cnn");
    fl_package::ModelPackage::open(&dir, &fl_torch::builtin_catalog()).expect("example package")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn summary() -> FederationSummary {
    FederationSummary {
        task: "digits-fedavg".into(),
        rounds_run: 3,
        max_rounds: 20,
        stopped_early: true,
        best_round: 2,
        best_validation: Some(Metrics {
            loss: Some(0.4213),
            accuracy: Some(0.8125),
            extra: BTreeMap::from([("auc".to_owned(), 0.93)]),
        }),
        final_test: Some(Metrics {
            loss: Some(0.5),
            accuracy: Some(0.8),
            extra: BTreeMap::new(),
        }),
        participants: vec![
            ParticipantSummary {
                node: "site-1".into(),
                samples: 412,
                rounds_contributed: 3,
            },
            ParticipantSummary {
                node: "site-2".into(),
                samples: 305,
                rounds_contributed: 2,
            },
        ],
        rounds: vec![
            RoundSummary {
                round: 1,
                participants: strings(&["site-1", "site-2"]),
                dropped: vec![],
                train_loss: Some(1.2345678),
                validation_accuracy: Some(0.75),
                test_accuracy: None,
                seconds: 12.34,
            },
            RoundSummary {
                round: 2,
                participants: strings(&["site-1", "site-2"]),
                dropped: vec![],
                train_loss: Some(0.61),
                validation_accuracy: Some(0.8125),
                test_accuracy: Some(0.8),
                seconds: 11.0,
            },
            RoundSummary {
                round: 3,
                participants: strings(&["site-1"]),
                dropped: strings(&["site-2"]),
                train_loss: Some(0.55),
                validation_accuracy: Some(0.8),
                test_accuracy: None,
                seconds: 30.05,
            },
        ],
        seed: 42,
        workflow_digest: "5f2b9c0e7d41a3f8e6b2c9d0a1f4e7b3c6d9e2f5a8b1c4d7e0f3a6b9c2d5e8f1".into(),
        weighting: "samples".into(),
        settings: Some(settings()),
    }
}

/// What the digits package trains with, the workflow overriding its learning rate.
fn settings() -> EffectiveSettings {
    let package = example_package();
    let workflow = fl_package::HyperParameterValues {
        learning_rate: Some(0.01),
        ..Default::default()
    };
    let resolved = fl_package::HyperParameters::resolve(&[
        (
            fl_package::Origin::Package,
            &package.config.hyper_parameters,
        ),
        (fl_package::Origin::Workflow, &workflow),
    ])
    .expect("resolved");
    EffectiveSettings {
        hyper_parameters: resolved.settings(false),
        augmentation: "none".into(),
        merge_epochs: 1,
        threads: 1,
        overrides: vec!["training.learning_rate=0.01".into()],
    }
}

/// The scalars written per run: (tag, step, value).
type Scalars = Vec<(String, i64, f32)>;

/// Writes what a task leaves behind: TensorBoard runs, metrics.json and task.log.
fn telemetry(dir: &Path) -> (PathBuf, PathBuf, PathBuf, BTreeMap<String, Scalars>) {
    let board = dir.join("tensorboard");
    let mut written = BTreeMap::new();
    for (run, offset) in [("initiator", 0.0f32), ("site-1", 0.5)] {
        let mut writer = EventWriter::create(&board, Some(run)).expect("event writer");
        let mut scalars = Vec::new();
        for step in 1..=3i64 {
            let loss = 1.0 / step as f32 + offset;
            let accuracy = 0.25 * step as f32;
            writer
                .add_scalars(
                    step,
                    &[("train/loss", loss), ("validation/accuracy", accuracy)],
                    1_700_000_000.0 + step as f64,
                )
                .expect("scalars");
            scalars.push(("train/loss".to_owned(), step, loss));
            scalars.push(("validation/accuracy".to_owned(), step, accuracy));
        }
        writer.close().expect("close");
        written.insert(run.to_owned(), scalars);
    }

    let metrics_path = dir.join("metrics.json");
    let mut metrics = MetricsFile::create(&metrics_path).expect("metrics");
    for round in 1..=3 {
        let mut record = RoundMetrics::new(round, "site-1");
        record.samples = 412;
        record.train_loss = Some(1.0 / f64::from(round));
        metrics.insert(record).expect("insert");
    }

    let log_path = dir.join("task.log");
    let log = TaskLog::open(&log_path).expect("task log");
    let site = log.node("site-1").expect("node log");
    site.push_log(Level::Info, "round 1: training on 412 samples")
        .expect("log");
    log.node("initiator")
        .expect("node log")
        .push_log(Level::Info, "round 1: aggregated 2 updates")
        .expect("log");
    log.sync().expect("sync");
    (board, metrics_path, log_path, written)
}

fn zip_names(path: &Path) -> Vec<String> {
    let mut zip = zip::ZipArchive::new(fs::File::open(path).expect("open")).expect("zip");
    (0..zip.len())
        .map(|i| {
            let entry = zip.by_index(i).expect("entry");
            entry.name().expect("entry name").into_owned()
        })
        .collect()
}

fn zip_entry(path: &Path, name: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(fs::File::open(path).expect("open")).expect("zip");
    let mut entry = zip.by_name(name).expect("entry");
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).expect("read");
    bytes
}

fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("run dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().expect("one file")
}

fn scalars_of(path: &Path) -> Scalars {
    let events = read_events(path).expect("events");
    assert!(
        matches!(&events[0].kind, EventKind::FileVersion(v) if v == fl_telemetry::FILE_VERSION)
    );
    let mut out = Vec::new();
    for event in &events[1..] {
        let EventKind::Summary(values) = &event.kind else {
            panic!("unexpected event {event:?}");
        };
        for value in values {
            out.push((
                value.tag.clone(),
                event.step,
                value.simple_value.expect("scalar"),
            ));
        }
    }
    out
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn write_results_gives_a_valid_model_zip_and_a_complete_report() {
    let work = tempfile::tempdir().expect("tempdir");
    let package = example_package();
    let (board, metrics, log, written) = telemetry(work.path());
    let labels = strings(&[
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ]);
    let summary = summary();
    let out = work.path().join("runs/task"); // does not exist yet
    let ResultFiles {
        model_zip,
        report_zip,
    } = write_results(
        &out,
        &package,
        &package.param_path,
        &labels,
        &summary,
        &board,
        &metrics,
        &log,
        &[],
    )
    .expect("results written");
    assert_eq!(model_zip, out.join("model.zip"));
    assert_eq!(report_zip, out.join("report.zip"));
    // Nothing else (no `*.partial`, no temporary file) is left in the output directory.
    assert_eq!(dir_names(&out), ["model.zip", "report.zip"]);

    // model.zip is a valid package with the new labels, the best weights and the summary.
    let unpacked =
        fl_package::extract_model_zip(&model_zip, &work.path().join("model")).expect("extract");
    let inspection = fl_package::inspect_package(&unpacked, &fl_torch::builtin_catalog());
    assert!(
        !inspection.problems.has_errors(),
        "{:?}",
        inspection.problems
    );
    let result = inspection.package.expect("a valid package");
    assert_eq!(result.labels(), Some(&labels[..]));
    // The result records every hyper-parameter it was trained with, overrides applied.
    let trained = &result.config.hyper_parameters;
    assert_eq!(trained.learning_rate, Some(0.01), "the workflow's override");
    assert_eq!(
        trained.optimizer,
        Some(fl_package::Optimizer::Sgd),
        "the package's"
    );
    assert_eq!(trained.lr_schedule, Some(fl_package::LrSchedule::Constant));
    assert_eq!(
        trained.weight_decay,
        Some(0.0),
        "SGD's documented default, written out"
    );
    let card = fs::read_to_string(unpacked.join("README.md")).expect("card");
    assert!(card.contains("### Training settings"), "{card}");
    assert!(
        card.contains("| `learning_rate` | 0.01 | workflow |"),
        "{card}"
    );
    assert_eq!(result.config.param_file, "model.safetensors");
    assert_eq!(
        fs::read(&result.param_path).expect("weights"),
        fs::read(&package.param_path).expect("weights")
    );
    // The front matter stays as written except that the result is marked federated.
    assert!(result.card.is_federated);
    assert_eq!(
        result.card.front_matter,
        package
            .card
            .front_matter
            .replace("is-federated: false", "is-federated: true")
    );
    let body = &result.card.body;
    assert!(body.starts_with(&package.card.body), "{body}");
    assert!(body.ends_with(&card_appendix(&summary)), "{body}");
    for needle in [
        "## Federated fine-tuning",
        "task `digits-fedavg`",
        "3 of at most 20 rounds",
        "| rounds run | 3 of 20 |",
        "| stopped early | yes |",
        "| best round | 2 |",
        "| best validation | accuracy 81.25%, loss 0.4213, auc 0.9300 |",
        "| final test | accuracy 80.00%, loss 0.5000 |",
        "| seed | 42 |",
        "| weighting | samples |",
        "| site-1 | 412 | 3 |",
        "| site-2 | 305 | 2 |",
        "717 training samples",
        "| 3 | site-1 | site-2 | 0.5500 | 80.00% | - | 30.1 |",
        &summary.workflow_digest,
    ] {
        assert!(body.contains(needle), "README lacks `{needle}`:\n{body}");
    }

    // report.zip holds every telemetry file and the summary.
    let names = zip_names(&report_zip);
    for run in ["initiator", "site-1"] {
        let prefix = format!("tensorboard/{run}/events.out.tfevents.");
        assert_eq!(
            names.iter().filter(|n| n.starts_with(&prefix)).count(),
            1,
            "{names:?}"
        );
    }
    for name in ["metrics.json", "task.log", "summary.json"] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(
        zip_entry(&report_zip, "metrics.json"),
        fs::read(&metrics).expect("metrics")
    );
    assert_eq!(
        zip_entry(&report_zip, "task.log"),
        fs::read(&log).expect("log")
    );
    let task_log = String::from_utf8(zip_entry(&report_zip, "task.log")).expect("utf-8");
    assert!(task_log.contains("[site-1] INFO round 1: training on 412 samples"));

    // The event files read back with the scalars written.
    let report =
        fl_package::extract_model_zip(&report_zip, &work.path().join("report")).expect("extract");
    for (run, scalars) in &written {
        let file = only_file(&report.join("tensorboard").join(run));
        assert_eq!(&scalars_of(&file), scalars, "run {run}");
    }

    // summary.json is the summary.
    let parsed: FederationSummary =
        serde_json::from_slice(&zip_entry(&report_zip, "summary.json")).expect("summary.json");
    assert_eq!(parsed, summary);
}

#[test]
fn write_results_without_optional_telemetry_still_writes_the_summary() {
    let work = tempfile::tempdir().expect("tempdir");
    let package = example_package();
    let labels = package.labels().expect("labels").to_vec();
    let out = work.path().join("out");
    let missing = work.path().join("missing");
    let files = write_results(
        &out,
        &package,
        &package.param_path,
        &labels,
        &summary(),
        &missing.join("tensorboard"),
        &missing.join("metrics.json"),
        &missing.join("task.log"),
        &[],
    )
    .expect("results written");
    assert_eq!(zip_names(&files.report_zip), ["summary.json"]);
    assert_eq!(dir_names(&out), ["model.zip", "report.zip"]);
}

#[test]
fn write_results_failure_is_an_output_error_and_leaves_no_partial_file() {
    let work = tempfile::tempdir().expect("tempdir");
    let package = example_package();
    let labels = package.labels().expect("labels").to_vec();
    let (board, metrics, log, _) = telemetry(work.path());
    let out = work.path().join("out");
    let weights = work.path().join("no-such-weights.safetensors");
    let error = write_results(
        &out,
        &package,
        &weights,
        &labels,
        &summary(),
        &board,
        &metrics,
        &log,
        &[],
    )
    .expect_err("missing weights");
    match &error {
        RuntimeError::Output { path, message } => {
            assert_eq!(path, &weights, "{error}");
            assert!(message.contains("model.zip"), "{error}");
        }
        other => panic!("expected an output error, got {other}"),
    }
    assert!(dir_names(&out).is_empty(), "{:?}", dir_names(&out));
}

#[test]
fn results_card_appendix_has_the_summary_and_one_row_per_round() {
    let summary = FederationSummary {
        task: "t".into(),
        rounds_run: 1,
        max_rounds: 5,
        stopped_early: false,
        best_round: 1,
        best_validation: Some(Metrics {
            loss: None,
            accuracy: Some(0.5),
            extra: BTreeMap::new(),
        }),
        final_test: None,
        settings: None,
        participants: vec![ParticipantSummary {
            node: "a|b".into(),
            samples: 10,
            rounds_contributed: 1,
        }],
        rounds: vec![RoundSummary {
            round: 1,
            participants: strings(&["a|b"]),
            dropped: strings(&["c", "d"]),
            train_loss: Some(0.612_345),
            validation_accuracy: Some(0.5),
            test_accuracy: None,
            seconds: 2.04,
        }],
        seed: 7,
        workflow_digest: "abc".into(),
        weighting: "equal".into(),
    };
    let text = card_appendix(&summary);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "## Federated fine-tuning");
    assert_eq!(
        lines[2],
        "Fine-tuned federatedly (FedAvg) by fedengine in task `t`: 1 of at most 5 rounds run \
         (no early stop), 1 participant(s) with 10 training samples in all."
    );
    let expected_tail = [
        "| | value |",
        "|---|---|",
        "| rounds run | 1 of 5 |",
        "| stopped early | no |",
        "| best round | 1 |",
        "| best validation | accuracy 50.00% |",
        "| final test | - |",
        "| seed | 7 |",
        "| workflow digest | `abc` |",
        "| weighting | equal |",
        "",
        "### Participants",
        "",
        "| node | samples | rounds contributed |",
        "|---|---|---|",
        "| a\\|b | 10 | 1 |",
        "",
        "### Rounds",
        "",
        "| round | participants | dropped | train loss | validation accuracy | test accuracy | seconds |",
        "|---|---|---|---|---|---|---|",
        "| 1 | a\\|b | c, d | 0.6123 | 50.00% | - | 2.0 |",
    ];
    assert_eq!(&lines[4..], &expected_tail[..], "{text}");
    assert!(text.ends_with("|\n"));
}
