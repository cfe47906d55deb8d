//! FedAvg benchmarks: the runtime's round overhead on the shipped digits task, aggregation
//! throughput against a plain memory copy, and the aggregator's peak memory with many
//! participants against the model's size.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fl_runtime::{RunOptions, TaskEvent, run_embedded};
use fl_tensor::{Aggregator, Body, Envelope, Metrics, NamedTensor, TensorSet, Weighting};
use fl_workflow::Workflow;

use crate::report::{Summary, machine, today};

/// ResNet-18's parameter count: the "ResNet-18-sized" model of these benchmarks.
const RESNET18_PARAMS: usize = 11_689_512;

/// Runs the FedAvg benchmarks and returns the BENCHMARKS.md section.
pub fn run(root: &Path, repeats: usize) -> Result<String> {
    let overhead = round_overhead(root, repeats)?;
    let Throughput {
        both: aggregate,
        copy,
        offer,
        finish,
    } = aggregation_throughput(repeats)?;
    let memory = [5usize, 50]
        .iter()
        .map(|&n| peak_memory(n, RESNET18_PARAMS).map(|m| (n, m)))
        .collect::<Result<Vec<_>>>()?;
    let model_mib = (RESNET18_PARAMS * 4) as f64 / (1 << 20) as f64;
    let ratios: Vec<f64> = aggregate.iter().zip(&copy).map(|(a, c)| a / c).collect();
    let memory_rows: Vec<String> = memory
        .iter()
        .map(|(n, kib)| {
            let mib = *kib as f64 / 1024.0;
            format!(
                "| {n} | {model_mib:.1} | {mib:.1} | **{:.2}** |",
                mib / model_mib
            )
        })
        .collect();
    Ok(format!(
        "## FedAvg (embedded runtime)\n\n\
         Command: `./scripts/bench` · date: {} · machine: {} · {repeats} repeats, median (min–max).\n\n\
         **Round overhead** on the shipped task (`workflows/fedavg.yaml`: 3 participants, SmallCnn, \
         1 local epoch, 20 rounds): the round's wall time (broadcast, training, collection, \
         spooling, aggregation) minus the time the participants spent training. Embedded, the \
         participants train one after another (libtorch's seed and thread count are \
         process-wide), so their training times are summed, not maxed. Share of the round: \
         **{}**; absolute: {} ms per round, over {} rounds.\n\n\
         **Aggregation throughput**, ResNet-18-sized model ({} f32 parameters, {model_mib:.1} MiB), \
         4 updates: update bytes per second through `offer` (decode, checks, durable spool with \
         fsync) and `finish` (canonical-order fold in f64), against a plain memory copy of the \
         same bytes measured in the same run.\n\n\
         | | GB/s |\n|---|---|\n\
         | offer + finish | {} |\n| offer only | {} |\n| finish only | {} |\n| memory copy | {} |\n\
         | **ratio (aggregation / copy)** | **{}** |\n\n\
         Aggregation runs at a small fraction of memory bandwidth: `offer` verifies every \
         checksum and value (NaN/Inf) and writes each update durably (write, fsync, rename) \
         before accepting it, and `finish` reads every spooled update back and folds it into an \
         f64 running mean in node-id order, which is what makes the result independent of \
         arrival order and the round recoverable. Both are single-threaded today.\n\n\
         **Aggregator peak memory** (peak RSS of a process that creates each update, encodes it, \
         offers it and drops it, then finishes; it also holds the global model it generates \
         updates from), against the model's size. Flat in the number of participants: updates \
         are spooled, never held together. Of the peak, the benchmark itself holds the global \
         model, the update it generates and that update's encoding (about 3x the model); \
         `finish` adds its f64 accumulator (2x), one update read back, and the result. The \
         design target \"one model plus one update\" is met in shape (constant in the number of \
         participants) but not in the constant: the f64 accumulator doubles the model.\n\n\
         | participants | model (MiB) | peak RSS (MiB) | peak / model |\n|---|---|---|---|\n{}\n",
        today(),
        machine(),
        Summary::of(
            &overhead
                .iter()
                .map(|(share, _)| *share * 100.0)
                .collect::<Vec<_>>()
        )
        .show(1)
            + " %",
        Summary::of(&overhead.iter().map(|(_, ms)| *ms).collect::<Vec<_>>()).show(1),
        overhead.len(),
        RESNET18_PARAMS,
        Summary::of(&aggregate).show(2),
        Summary::of(&offer).show(2),
        Summary::of(&finish).show(2),
        Summary::of(&copy).show(2),
        Summary::of(&ratios).show(3),
        memory_rows.join("\n"),
    ))
}

/// Per round of the shipped task: (overhead share, overhead ms).
fn round_overhead(root: &Path, repeats: usize) -> Result<Vec<(f64, f64)>> {
    let mut workflow =
        Workflow::load(root.join("workflows/fedavg.yaml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows = Vec::new();
    for _ in 0..repeats.max(1) {
        let out = tempfile::tempdir()?;
        workflow.output = out.path().to_path_buf();
        let (sender, receiver) = mpsc::channel();
        let report = run_embedded(&workflow, RunOptions::default(), Some(sender))
            .context("running the shipped workflow")?;
        let mut training = std::collections::BTreeMap::<u64, f64>::new();
        for event in receiver.try_iter() {
            if let TaskEvent::UpdateAccepted {
                round,
                train_seconds: Some(s),
                ..
            } = event
            {
                *training.entry(round).or_default() += s;
            }
        }
        for round in &report.summary.rounds {
            let trained = training.get(&round.round).copied().unwrap_or(0.0);
            let overhead = (round.seconds - trained).max(0.0);
            rows.push((overhead / round.seconds, overhead * 1000.0));
        }
    }
    Ok(rows)
}

/// An aggregator of round 1 of the benchmark task over `senders`, spooling into `spool`.
fn aggregator(global: &TensorSet, senders: &[String], spool: &Path) -> Result<Aggregator> {
    Ok(Aggregator::new(
        global,
        "bench",
        1,
        senders.to_vec(),
        Weighting::Samples,
        spool,
    )?)
}

/// A model of `params` f32 values in 62 tensors, with values derived from `seed`.
pub(crate) fn model(params: usize, seed: u32) -> Result<TensorSet> {
    let parts = 62;
    let mut tensors = Vec::with_capacity(parts);
    let mut left = params;
    for i in 0..parts {
        let n = if i + 1 == parts { left } else { params / parts };
        left -= n;
        let values: Vec<f32> = (0..n)
            .map(|j| ((j as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 * 1e-10)
            .collect();
        tensors.push(NamedTensor::from_f32(
            format!("layer{i:02}.weight"),
            vec![n as u64],
            &values,
        )?);
    }
    Ok(TensorSet::new(tensors)?)
}

fn update_bytes(global: &TensorSet, sender: &str, seed: u32, params: usize) -> Result<Vec<u8>> {
    let tensors = model(params, seed)?;
    let body = Body::Update {
        samples: 100 + u64::from(seed),
        base_digest: global.digest(),
        metrics: Metrics::default(),
        tensors,
    };
    Ok(Envelope::new("bench", 1, sender, body).encode()?)
}

/// GB/s per repeat.
#[derive(Debug, Default)]
struct Throughput {
    /// Through `offer` and `finish`.
    both: Vec<f64>,
    /// A plain memory copy of the same bytes.
    copy: Vec<f64>,
    /// Through `offer` only.
    offer: Vec<f64>,
    /// Through `finish` only.
    finish: Vec<f64>,
}

fn aggregation_throughput(repeats: usize) -> Result<Throughput> {
    const UPDATES: usize = 4;
    let params = RESNET18_PARAMS;
    let global = model(params, 0)?;
    let bytes_per_update = (params * 4) as f64;
    let total = bytes_per_update * UPDATES as f64;
    let mut rates = Throughput::default();
    let senders: Vec<String> = (0..UPDATES).map(|i| format!("site-{i}")).collect();
    let updates: Vec<Vec<u8>> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| update_bytes(&global, s, i as u32 + 1, params))
        .collect::<Result<_>>()?;
    for _ in 0..repeats.max(1) {
        let spool = tempfile::tempdir()?;
        let mut aggregator = aggregator(&global, &senders, spool.path())?;
        let started = Instant::now();
        for bytes in &updates {
            aggregator
                .offer(bytes)
                .map_err(|e| anyhow::anyhow!("update rejected: {e}"))?;
        }
        let offered = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let result = aggregator.finish()?;
        let finished = started.elapsed().as_secs_f64();
        assert_eq!(result.len(), global.len());
        rates.both.push(total / (offered + finished) / 1e9);
        rates.offer.push(total / offered / 1e9);
        rates.finish.push(total / finished / 1e9);

        // The baseline: copying the same bytes once.
        let mut target = vec![0u8; updates[0].len()];
        let started = Instant::now();
        for bytes in &updates {
            target.copy_from_slice(bytes);
            std::hint::black_box(&target);
        }
        rates.copy.push(
            updates.iter().map(Vec::len).sum::<usize>() as f64
                / started.elapsed().as_secs_f64()
                / 1e9,
        );
    }
    Ok(rates)
}

/// Peak RSS (KiB) of a child process aggregating `participants` updates of `params` values.
fn peak_memory(participants: usize, params: usize) -> Result<u64> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "aggregate-memory",
            "--participants",
            &participants.to_string(),
            "--params",
            &params.to_string(),
        ])
        .output()
        .context("running fedbench aggregate-memory")?;
    if !out.status.success() {
        bail!(
            "aggregate-memory failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("aggregate-memory printed no peak")
}

/// The child side of [`peak_memory`]: aggregates and prints its peak RSS in KiB.
pub fn aggregate_memory(participants: usize, params: usize) -> Result<()> {
    let global = model(params, 0)?;
    let senders: Vec<String> = (0..participants).map(|i| format!("site-{i}")).collect();
    let spool = tempfile::tempdir()?;
    let mut aggregator = aggregator(&global, &senders, spool.path())?;
    for (i, sender) in senders.iter().enumerate() {
        let bytes = update_bytes(&global, sender, i as u32 + 1, params)?;
        aggregator
            .offer(&bytes)
            .map_err(|e| anyhow::anyhow!("update rejected: {e}"))?;
    }
    let result = aggregator.finish()?;
    std::hint::black_box(&result);
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("VmHWM not found in /proc/self/status")?;
    println!("{peak}");
    Ok(())
}
