//! metrics.json: atomic rewrites that read back to the same records.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use fl_telemetry::{MetricsFile, RoundMetrics, TelemetryError};

fn record(round: u32, node: &str) -> RoundMetrics {
    RoundMetrics {
        round,
        node: node.into(),
        samples: 400 + u64::from(round),
        train_loss: Some(1.0 / f64::from(round + 2)),
        train_accuracy: Some(0.5 + f64::from(round) * 0.01),
        validation_loss: (node != "site-2").then_some(0.3),
        validation_accuracy: (node != "site-2").then_some(0.1 + 0.2),
        test_loss: None,
        test_accuracy: None,
        duration_seconds: 12.345_678_9,
    }
}

#[test]
fn every_update_reads_back_to_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task").join("metrics.json");
    let mut file = MetricsFile::create(&path).unwrap();
    assert_eq!(MetricsFile::read(&path).unwrap(), []);
    let mut expected = Vec::new();
    for round in 1..=3 {
        for node in ["site-1", "site-2"] {
            file.insert(record(round, node)).unwrap();
            expected.push(record(round, node));
            assert_eq!(MetricsFile::read(&path).unwrap(), expected);
        }
        let mut initiator = RoundMetrics::new(round, "initiator");
        initiator.test_accuracy = Some(0.875);
        initiator.test_loss = Some(0.25);
        file.insert(initiator.clone()).unwrap();
        expected.push(initiator);
    }
    assert_eq!(file.records(), expected);
    assert_eq!(MetricsFile::open(&path).unwrap().records(), expected);

    // Pretty JSON, absent measurements as null.
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("[\n  {\n    \"round\": 1,\n    \"node\": \"site-1\""),
        "{text}"
    );
    assert!(text.contains("\"test_loss\": null"), "{text}");
    assert!(text.ends_with("]\n"));
}

#[test]
fn a_round_run_again_replaces_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.json");
    let mut file = MetricsFile::create(&path).unwrap();
    file.insert(record(1, "site-1")).unwrap();
    file.insert(record(2, "site-1")).unwrap();
    let mut rerun = record(1, "site-1");
    rerun.samples = 7;
    file.insert(rerun.clone()).unwrap();
    assert_eq!(
        MetricsFile::read(&path).unwrap(),
        [rerun, record(2, "site-1")]
    );
}

#[test]
fn non_finite_values_are_written_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.json");
    let mut file = MetricsFile::create(&path).unwrap();
    let mut diverged = record(1, "site-1");
    diverged.train_loss = Some(f64::NAN);
    file.insert(diverged).unwrap();
    let back = MetricsFile::read(&path).unwrap();
    assert_eq!(back[0].train_loss, None);
    assert_eq!(back[0].train_accuracy, record(1, "site-1").train_accuracy);
}

#[cfg(unix)]
#[test]
fn rewrites_replace_the_file_instead_of_writing_into_it() {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.json");
    let mut file = MetricsFile::create(&path).unwrap();
    file.insert(record(1, "site-1")).unwrap();
    let before = fs::metadata(&path).unwrap().ino();
    // A reader that opened the old file keeps reading the old, complete list.
    let old_handle = fs::File::open(&path).unwrap();
    file.insert(record(2, "site-1")).unwrap();
    assert_ne!(
        fs::metadata(&path).unwrap().ino(),
        before,
        "rewritten in place"
    );
    let old: Vec<RoundMetrics> = serde_json::from_reader(old_handle).unwrap();
    assert_eq!(old, [record(1, "site-1")]);
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["metrics.json"]);
}

#[test]
fn a_concurrent_reader_never_sees_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.json");
    let mut file = MetricsFile::create(&path).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut reads = 0;
            let mut last_len = 0;
            while !done.load(Ordering::Relaxed) {
                let records = MetricsFile::read(&path).unwrap();
                assert!(records.len() >= last_len, "the list shrank");
                last_len = records.len();
                reads += 1;
            }
            reads
        })
    };
    for round in 1..=200 {
        file.insert(record(round, "site-1")).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn a_file_that_is_not_a_metrics_list_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.json");
    fs::write(&path, "{\"round\": 1}").unwrap();
    let error = MetricsFile::open(&path).unwrap_err();
    assert!(matches!(error, TelemetryError::Json { .. }), "{error}");
    assert!(error.to_string().contains("metrics.json"), "{error}");
    assert!(matches!(
        MetricsFile::open(dir.path().join("missing.json")),
        Err(TelemetryError::Io { .. })
    ));
}

#[test]
fn floats_read_back_bit_for_bit() {
    // Accuracies computed in float32 and widened, as a training loop may report them;
    // 0.44433334469795227 is one that an inexact JSON float parser gets wrong by one ulp.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.json");
    let mut file = MetricsFile::create(&path).unwrap();
    let mut expected = Vec::new();
    for round in 0..500u32 {
        let mut m = RoundMetrics::new(round, "site-1");
        m.train_accuracy = Some(f64::from((1.0 / 3.0 + f64::from(round) * 0.001_1) as f32));
        m.train_loss = Some(1.0 / f64::from(round + 7));
        m.duration_seconds = f64::from(round).sqrt() * 1e-3;
        expected.push(m);
    }
    expected[0].validation_accuracy = Some(0.444_333_344_697_952_27);
    for m in &expected {
        file.insert(m.clone()).unwrap();
    }
    let back = MetricsFile::read(&path).unwrap();
    for (got, want) in back.iter().zip(&expected) {
        assert_eq!(got, want, "round {}", want.round);
    }
    assert_eq!(back.len(), expected.len());
}
