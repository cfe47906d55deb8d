//! Event files as TensorBoard's own reader sees them, and corruption detection.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use fl_telemetry::{EventKind, EventWriter, TelemetryError, read_events};

const RUNS: [&str; 2] = ["site-1", "initiator"];
const TAGS: [&str; 4] = [
    "train/loss",
    "train/accuracy",
    "validation/accuracy",
    "test/accuracy",
];

/// A value that needs float32 rounding (not a short binary fraction).
fn value(run: usize, tag: usize, step: i64) -> f32 {
    (1.0 / 3.0 + run as f64 * 0.37 + tag as f64 * 0.011 + step as f64 * 0.1) as f32
}

fn wall_time(step: i64) -> f64 {
    1_795_713_110.125 + step as f64
}

fn python() -> String {
    std::env::var("FEDENGINE_PYTHON")
        .ok()
        .or_else(|| option_env!("FEDENGINE_PYTHON").map(str::to_owned))
        .expect(
            "FEDENGINE_PYTHON is not set: it names a Python with the `tensorboard` package \
             (scripts/setup writes it into .cargo/config.toml)",
        )
}

/// Writes both runs: every tag at steps 1..=5, one event per scalar, in the order of a
/// real task (round by round).
fn write_runs(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (r, run) in RUNS.iter().enumerate() {
        let mut writer = EventWriter::create(root, Some(run)).unwrap();
        for step in 1..=5 {
            for (t, tag) in TAGS.iter().enumerate() {
                // The initiator does not train.
                if *run == "initiator" && tag.starts_with("train/") {
                    continue;
                }
                writer
                    .add_scalar(tag, step, value(r, t, step), wall_time(step))
                    .unwrap();
            }
        }
        files.push(writer.path().to_path_buf());
        writer.close().unwrap();
    }
    files
}

const READER: &str = r#"
import json, os, struct, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
def f32_bits(value):
    """The float32 bit pattern of value, or None when value is not exactly a float32."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    return bits if struct.unpack("<f", struct.pack("<I", bits))[0] == value else None
root = sys.argv[1]
multiplexer = EventMultiplexer()
multiplexer.AddRunsFromDirectory(root)
out = {"runs": sorted(multiplexer.Runs()), "scalars": {}}
for run in out["runs"]:
    ea = EventAccumulator(os.path.join(root, run))
    ea.Reload()
    out["scalars"][run] = {
        tag: [[e.step, repr(e.value), f32_bits(e.value), repr(e.wall_time)] for e in ea.Scalars(tag)]
        for tag in ea.Tags()["scalars"]
    }
print(json.dumps(out))
"#;

#[test]
fn tensorboard_reads_exactly_what_was_written() {
    let root = tempfile::tempdir().unwrap();
    write_runs(root.path());

    let python = python();
    let output = Command::new(&python)
        .arg("-c")
        .arg(READER)
        .arg(root.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run FEDENGINE_PYTHON={python}: {e}"));
    assert!(
        output.status.success(),
        "the TensorBoard reader failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let runs: Vec<&str> = json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(runs, ["initiator", "site-1"]);

    for (r, run) in RUNS.iter().enumerate() {
        let scalars = json["scalars"][run].as_object().unwrap();
        let mut expected_tags: Vec<&str> = TAGS
            .iter()
            .copied()
            .filter(|tag| *run == "site-1" || !tag.starts_with("train/"))
            .collect();
        expected_tags.sort_unstable();
        let mut tags: Vec<&str> = scalars.keys().map(String::as_str).collect();
        tags.sort_unstable();
        assert_eq!(tags, expected_tags, "tags of run {run}");

        for (t, tag) in TAGS.iter().enumerate() {
            let Some(points) = scalars.get(*tag) else {
                continue;
            };
            let points = points.as_array().unwrap();
            let steps: Vec<i64> = points.iter().map(|p| p[0].as_i64().unwrap()).collect();
            assert_eq!(steps, [1, 2, 3, 4, 5], "steps of {run} {tag}");
            for (point, step) in points.iter().zip(1..) {
                // Numbers travel as Python's repr (parsed by Rust's exact parser) and as the
                // float32 bit pattern, so that no JSON float parsing gets in the way.
                let want = value(r, t, step);
                let got: f64 = point[1].as_str().unwrap().parse().unwrap();
                assert_eq!(got, f64::from(want), "{run} {tag} step {step}");
                assert_eq!(
                    point[2].as_u64(),
                    Some(u64::from(want.to_bits())),
                    "{run} {tag} step {step}: not the written float32"
                );
                let got_time: f64 = point[3].as_str().unwrap().parse().unwrap();
                assert_eq!(got_time, wall_time(step));
            }
        }
    }
}

#[test]
fn our_reader_agrees_with_what_was_written() {
    let root = tempfile::tempdir().unwrap();
    let files = write_runs(root.path());
    let events = read_events(&files[0]).unwrap();
    assert_eq!(events.len(), 1 + 5 * TAGS.len());
    assert_eq!(
        events[0].kind,
        EventKind::FileVersion("brain.Event:2".into())
    );
    let EventKind::Summary(values) = &events[4].kind else {
        panic!("{:?}", events[4]);
    };
    assert_eq!(events[4].step, 1);
    assert_eq!(values[0].tag, "test/accuracy");
    assert_eq!(values[0].simple_value, Some(value(0, 3, 1)));
}

#[test]
fn every_flipped_byte_is_detected() {
    let root = tempfile::tempdir().unwrap();
    let files = write_runs(root.path());
    let original = fs::read(&files[1]).unwrap();
    let broken = root.path().join("broken.tfevents");
    let mut problems = BTreeMap::new();
    for at in 0..original.len() {
        let mut bytes = original.clone();
        bytes[at] ^= 0xff;
        fs::write(&broken, &bytes).unwrap();
        match read_events(&broken) {
            Err(TelemetryError::CorruptEvents { problem, .. }) => {
                *problems.entry(problem).or_insert(0) += 1;
            }
            other => panic!("flipping byte {at} gave {other:?}"),
        }
    }
    // Flips in a length or its checksum, and in data or its checksum.
    assert!(
        problems.contains_key("length checksum mismatch"),
        "{problems:?}"
    );
    assert!(
        problems.contains_key("data checksum mismatch"),
        "{problems:?}"
    );
    assert_eq!(problems.values().sum::<usize>(), original.len());
}

#[test]
fn a_truncated_file_is_detected() {
    let root = tempfile::tempdir().unwrap();
    let files = write_runs(root.path());
    let original = fs::read(&files[0]).unwrap();
    let error = read_events_of(root.path(), &original[..original.len() - 1]).unwrap_err();
    assert!(error.to_string().contains("truncated record of"), "{error}");
    let error = read_events_of(root.path(), &original[..original.len() - 30]).unwrap_err();
    assert!(
        matches!(error, TelemetryError::CorruptEvents { .. }),
        "{error}"
    );
}

fn read_events_of(dir: &Path, bytes: &[u8]) -> Result<usize, TelemetryError> {
    let path = dir.join("cut.tfevents");
    fs::write(&path, bytes).unwrap();
    read_events(&path).map(|events| events.len())
}
