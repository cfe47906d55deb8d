//! End to end against Flower: the shipped digits FedAvg task run by the engine (coordinator
//! and agents as processes over NATS) and by Flower 1.42 in its deployment mode (SuperLink +
//! three SuperNodes) and its legacy gRPC mode, interleaved in the same run by
//! `benches/flower/run.py` (which installs Flower in its own environment); this module runs it
//! and writes its result as a BENCHMARKS.md section.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::report::{machine, today};

const SYSTEMS: [(&str, &str); 3] = [
    ("engine", "engine (NATS, processes)"),
    ("deployment", "Flower deployment"),
    ("legacy", "Flower legacy gRPC"),
];

/// `median (min–max)` of a `{median, min, max}` object, scaled, or `n/a`.
fn show(value: &Value, scale: f64, digits: usize) -> String {
    match (
        value["median"].as_f64(),
        value["min"].as_f64(),
        value["max"].as_f64(),
    ) {
        (Some(median), Some(min), Some(max)) => format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            median * scale,
            min * scale,
            max * scale
        ),
        _ => "n/a".to_owned(),
    }
}

/// Runs the comparison and returns the section.
pub fn run(root: &Path, repeats: usize) -> Result<String> {
    let engine = std::env::current_exe()?.with_file_name("engine");
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("flower.json");
    let status = Command::new("python3")
        .arg(root.join("benches/flower/run.py"))
        .args(["--repeats", &repeats.max(1).to_string(), "--out"])
        .arg(&out)
        .arg("--engine")
        .arg(&engine)
        .current_dir(root)
        .status()
        .context("running benches/flower/run.py with python3")?;
    if !status.success() {
        bail!("benches/flower/run.py failed ({status}); its output above says why");
    }
    let result: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let systems = &result["systems"];
    let row = |label: &str, key: &str, scale: f64, digits: usize| -> String {
        let cells: Vec<String> = SYSTEMS
            .iter()
            .map(|(name, _)| show(&systems[*name][key], scale, digits))
            .collect();
        format!("| {label} | {} |\n", cells.join(" | "))
    };
    let header: Vec<&str> = SYSTEMS.iter().map(|(_, title)| *title).collect();
    let overhead = |system: &str, at: &str| systems[system]["median_overhead_seconds"][at].as_f64();
    let ratios: String = ["deployment", "legacy"]
        .iter()
        .map(|mode| {
            match (overhead("engine", "median"), overhead(mode, "median")) {
                (Some(e), Some(f)) if f > 0.0 => {
                    // Whether the repeats' ranges overlap: then the difference is within noise.
                    let overlap = matches!(
                        (overhead("engine", "max"), overhead(mode, "min")),
                        (Some(engine_max), Some(flower_min)) if engine_max >= flower_min
                    );
                    format!(
                        "- engine round overhead / Flower {mode}'s: **{:.3}** ({}{})\n",
                        e / f,
                        if e < f {
                            "target met: below Flower's"
                        } else {
                            "target missed: not below Flower's"
                        },
                        if overlap {
                            "; the repeats' ranges overlap, so the difference is within this \
                             machine's noise"
                        } else {
                            ""
                        }
                    )
                }
                _ => format!("- engine round overhead / Flower {mode}'s: not measured\n"),
            }
        })
        .collect();
    let messages = |key: &str| -> String {
        result[key]["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|m| format!("- {m}\n"))
            .collect()
    };
    let notes: String = result["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| format!("- {m}\n"))
        .collect();
    let versions = &result["versions"];
    Ok(format!(
        "## End to end against Flower (digits FedAvg)\n\n\
         Command: `./scripts/bench` · date: {} · machine: {} · {} repeats, interleaved \
         (engine, Flower deployment, Flower legacy), median (min–max) over the repeats · \
         flwr {}, torch {}, {}.\n\n\
         The shipped task (`workflows/fedavg.yaml`: three sites, SmallCnn from \
         `models/digits-cnn`, the same shards, 1 local epoch, batch 32, SGD from lr 0.05 with the \
         package's step decay, weighting by samples, {} rounds, test after every round, early \
         stopping off so every system runs every round), each participant in its own process: \
         the engine's coordinator and agents over nats-server, Flower's SuperLink and three \
         SuperNodes (`flwr run`), and Flower's legacy `start_server`/`start_client`. The Flower \
         apps (`benches/flower/`) reproduce the engine's data order, augmentation and initial \
         weights, so the accuracies can be compared. *Round overhead* is a round's wall time \
         minus its slowest participant's training time; *loopback bytes* count every byte on \
         `lo` during the run (each system in its own network namespace), divided by the rounds. \
         Where the engine's participants train faster, the same overhead is a larger \
         share of its shorter round.\n\n\
         | | {} |\n|---|---|---|---|\n{}{}{}{}{}{}{}{}{}\n\
         Model parameters: {} bytes.\n\n{}{}\n{}\n{}",
        today(),
        machine(),
        result["repeats"].as_u64().unwrap_or(0),
        versions["flwr"].as_str().unwrap_or("?"),
        versions["torch"].as_str().unwrap_or("?"),
        versions["nats_server"].as_str().unwrap_or("?"),
        result["task"]["rounds"].as_u64().unwrap_or(0),
        header.join(" | "),
        row("total wall time (s)", "total_seconds", 1.0, 2),
        row("median round time (ms)", "median_round_seconds", 1000.0, 1),
        row(
            "median round overhead (ms)",
            "median_overhead_seconds",
            1000.0,
            1
        ),
        row(
            "overhead share of the round (%)",
            "median_overhead_share",
            100.0,
            1
        ),
        row(
            "slowest participant's training (ms)",
            "median_max_train_seconds",
            1000.0,
            1
        ),
        row("final test accuracy (%)", "final_test_accuracy", 100.0, 2),
        row("best test accuracy (%)", "best_test_accuracy", 100.0, 2),
        row(
            "loopback bytes per round (KB)",
            "loopback_bytes_per_round",
            0.001,
            0
        ),
        row("rounds run", "rounds_run", 1.0, 0),
        result["task"]["model_parameter_bytes"]
            .as_u64()
            .unwrap_or(0),
        ratios,
        messages("agreement"),
        messages("targets"),
        notes,
    ))
}
