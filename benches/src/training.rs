//! Training throughput: samples per second of one local epoch in the engine against the same
//! model, batch, optimiser and thread count in plain PyTorch (same libtorch), and the engine's
//! data pipeline (decode + preprocess on worker threads) against pre-decoded tensors.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fl_data::{Batch, BatchOptions, Dataset, OpenOptions, Preprocessor, Sample, batches};
use fl_package::ModelPackage;
use fl_torch::{BUILTIN_MODULE, Classifier, ModelSpec, find_builtin, train_epoch};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::report::{Summary, machine, today};

const BATCH: usize = 32;
const LR: f64 = 0.05;
const RESNET_STEPS: usize = 10;

/// Runs the training benchmarks and returns the BENCHMARKS.md section.
pub fn run(root: &Path, python: &Path, repeats: usize) -> Result<String> {
    let package = ModelPackage::open(
        &root.join("models/digits-cnn"),
        &fl_torch::builtin_catalog(),
    )?;
    let data = root.join("datasets/digits/central");
    let dataset = Dataset::open(&data, &OpenOptions { strict: true })?;
    let train: Arc<[Sample]> = dataset.train.into();
    let mut rows = Vec::new();

    for threads in [1usize, 2] {
        tch::set_num_threads(threads as i32);
        let (mut cold, mut pipeline, mut decoded, mut torch) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for repeat in 0..repeats {
            let rates = small_cnn_epochs(&package, &train, repeat, false)?;
            cold.push(rates[0]);
            pipeline.push(rates[1]);
            decoded.push(small_cnn_epochs(&package, &train, repeat, true)?[0]);
            torch.push(pytorch(
                python,
                &["--model", "small_cnn", "--data"],
                Some(&data),
                threads,
            )?);
        }
        rows.push(row(
            &format!("SmallCnn, digits 1x8x8, {} samples", train.len()),
            threads,
            &cold,
            &pipeline,
            &decoded,
            &torch,
        ));
    }

    let threads = 2;
    tch::set_num_threads(threads as i32);
    let (mut engine, mut torch) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        engine.push(resnet18_steps()?);
        torch.push(pytorch(
            python,
            &["--model", "resnet18", "--steps", &RESNET_STEPS.to_string()],
            None,
            threads,
        )?);
    }
    let e = Summary::of(&engine);
    let t = Summary::of(&torch);
    let ratios: Vec<f64> = engine.iter().zip(&torch).map(|(a, b)| a / b).collect();
    rows.push(format!(
        "| ResNet-18, random 3x64x64, {RESNET_STEPS} steps | {threads} | — | — | {} | {} | **{}** | — |",
        e.show(1),
        t.show(1),
        Summary::of(&ratios).show(2)
    ));

    Ok(format!(
        "## Training throughput (engine vs PyTorch)\n\n\
         Command: `./scripts/bench` · date: {} · machine: {} · {repeats} interleaved repeats, \
         median (min–max).\n\n\
         One epoch of SGD (lr {LR}, batch {BATCH}) in training mode. *Engine, pipeline*: the engine's \
         data path (decoding and preprocessing on 2 worker threads, prefetched) feeding the \
         training step, as `engine finetune` runs it without augmentation: the first epoch \
         decodes every PNG, later epochs reuse the decoded images (cache) and only augment and \
         normalise. *Engine, tensors*: the same step on pre-decoded batches. *PyTorch*: the same model and step in Python (eager, \
         same libtorch 2.13) on pre-decoded tensors. Ratios above 1 mean the engine is faster.\n\n\
         | workload | threads | engine, pipeline, 1st epoch (samples/s) | engine, pipeline, later epochs (samples/s) | engine, tensors (samples/s) | PyTorch (samples/s) | engine tensors / PyTorch | pipeline (later epochs) / tensors |\n\
         |---|---|---|---|---|---|---|---|\n{}\n",
        today(),
        machine(),
        rows.join("\n")
    ))
}

fn row(
    name: &str,
    threads: usize,
    cold: &[f64],
    pipeline: &[f64],
    decoded: &[f64],
    torch: &[f64],
) -> String {
    let vs_torch: Vec<f64> = decoded.iter().zip(torch).map(|(a, b)| a / b).collect();
    let vs_decoded: Vec<f64> = pipeline.iter().zip(decoded).map(|(a, b)| a / b).collect();
    format!(
        "| {name} | {threads} | {} | {} | {} | {} | **{}** | {} |",
        Summary::of(cold).show(0),
        Summary::of(pipeline).show(0),
        Summary::of(decoded).show(0),
        Summary::of(torch).show(0),
        Summary::of(&vs_torch).show(2),
        Summary::of(&vs_decoded).show(2),
    )
}

/// Samples per second of epochs of the example package on the digits training split: with
/// the engine's pipeline, the first epoch (decoding everything) and the second (decoded images
/// cached, as `engine finetune` runs later epochs); or on pre-decoded batches.
fn small_cnn_epochs(
    package: &ModelPackage,
    train: &Arc<[Sample]>,
    repeat: usize,
    predecoded: bool,
) -> Result<Vec<f64>> {
    let (mut model, _) = Classifier::from_package(package, None, fl_torch::HeadRule::Keep, 0)?;
    let preprocessor = Arc::new(
        Preprocessor::new(package.preprocessor.as_ref(), 1)
            .with_cache(fl_torch::DEFAULT_CACHE_BYTES),
    );
    let options = |epoch: usize| BatchOptions {
        batch_size: BATCH,
        last_batch: fl_data::LastBatch::MergeSingle,
        shuffle: true,
        augment: false,
        seed: 0,
        epoch: (repeat * 2 + epoch) as u64,
        workers: 2,
        prefetch: 4,
    };
    let mut optimizer = nn::Sgd::default().build(model.var_store(), LR)?;
    let per_second = |started: Instant| train.len() as f64 / started.elapsed().as_secs_f64();
    if predecoded {
        let all: Vec<Batch> =
            batches(train.clone(), preprocessor, options(0)).collect::<Result<_, _>>()?;
        let started = Instant::now();
        train_epoch(&mut model, &mut optimizer, all.into_iter().map(Ok), |_| {})?;
        return Ok(vec![per_second(started)]);
    }
    let mut rates = Vec::new();
    for epoch in 0..2 {
        let started = Instant::now();
        let data = batches(train.clone(), preprocessor.clone(), options(epoch));
        train_epoch(&mut model, &mut optimizer, data, |_| {})?;
        rates.push(per_second(started));
    }
    Ok(rates)
}

/// Samples per second of SGD steps of ResNet-18 on random 3x64x64 batches.
fn resnet18_steps() -> Result<f64> {
    let builtin = find_builtin(BUILTIN_MODULE, "ResNet18").context("ResNet18 is registered")?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = (builtin.build)(
        &vs.root(),
        ModelSpec {
            in_channels: 3,
            num_classes: 10,
        },
    );
    let mut optimizer = nn::Sgd::default().build(&vs, LR)?;
    let xs = Tensor::randn(
        [(BATCH * RESNET_STEPS) as i64, 3, 64, 64],
        (Kind::Float, Device::Cpu),
    );
    let ys = Tensor::randint(
        10,
        [(BATCH * RESNET_STEPS) as i64],
        (Kind::Int64, Device::Cpu),
    );
    let started = Instant::now();
    for step in 0..RESNET_STEPS as i64 {
        let x = xs.narrow(0, step * BATCH as i64, BATCH as i64);
        let y = ys.narrow(0, step * BATCH as i64, BATCH as i64);
        let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
        optimizer.backward_step(&loss);
    }
    Ok((BATCH * RESNET_STEPS) as f64 / started.elapsed().as_secs_f64())
}

/// Runs `benches/pytorch_train.py` once and returns its samples per second.
fn pytorch(python: &Path, args: &[&str], data: Option<&Path>, threads: usize) -> Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pytorch_train.py");
    let mut command = Command::new(python);
    command.arg(&script).args(args);
    if let Some(data) = data {
        command.arg(data);
    }
    command.args([
        "--threads",
        &threads.to_string(),
        "--batch",
        &BATCH.to_string(),
        "--lr",
        &LR.to_string(),
    ]);
    let out = command
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    json["samples_per_second"][0]
        .as_f64()
        .context("pytorch_train.py printed no samples_per_second")
}
