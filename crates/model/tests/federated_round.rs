//! The engine's calls on a model ([`fl_model::engine`]) with the built-in `VisionClassifier`
//! on the shipped example: `models/digits-cnn` trained on `datasets/digits/site-{1,2,3}` and
//! tested on `datasets/digits/initiator`.
//!
//! libtorch's thread count and generator are process-wide, so the tests run one at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fl_model::engine::train_round;
use fl_model::{AutoFedAvgModel, DatasetDirs, ModelContext, ModelInit, build_model};
use fl_package::ModelPackage;
use fl_tensor::{Aggregator, Envelope, TensorSet, Weighting};
use fl_torch::{Metrics, TrainerOptions, run_epoch};

static LIBTORCH: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    LIBTORCH.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A node's model with its data loaded, as the engine builds it, and its training count.
fn node(name: &str, seed: u64) -> (Box<dyn AutoFedAvgModel>, u64) {
    let package = ModelPackage::open(&root().join("models/digits-cnn"), &fl_model::catalog())
        .expect("the example package is valid");
    let mut model = build_model(ModelInit {
        package,
        options: TrainerOptions {
            seed,
            threads: 1,
            workers: 2,
            ..TrainerOptions::default()
        },
        context: ModelContext {
            node: name.into(),
            task: "digits".into(),
            labels: (0..10).map(|i| i.to_string()).collect(),
            ..ModelContext::default()
        },
    })
    .expect("built");
    let dir = root().join("datasets/digits").join(name);
    let dirs = if name == "initiator" {
        DatasetDirs {
            test: Some(dir),
            ..DatasetDirs::default()
        }
    } else {
        DatasetDirs {
            train: Some(dir),
            ..DatasetDirs::default()
        }
    };
    let summary = model.init_dataset(&dirs).expect("the data is accepted");
    (model, summary.train)
}

fn test(model: &mut dyn AutoFedAvgModel, weights: &TensorSet) -> Metrics {
    model.load_state_dict(weights).expect("loaded");
    model.run_test().expect("tested").expect("test data")
}

#[test]
fn a_round_is_reproducible_and_every_round_and_seed_trains_differently() {
    let _guard = serial();
    let (mut first, samples) = node("site-1", 3);
    assert_eq!(samples, 333);
    let global = first.state_dict().expect("initial weights");
    let mut epochs = Vec::new();
    let a = train_round(&mut *first, &global, 0, 2, 3, samples, &mut |done, m| {
        epochs.push((done, *m));
    })
    .expect("round 0");
    // Training twice more from the same inputs (the same model, whose weights and cache
    // changed since, and a fresh one) gives the same bits.
    let b = train_round(&mut *first, &global, 0, 2, 3, samples, &mut |_, _| {}).expect("again");
    let (mut fresh, _) = node("site-1", 3);
    let c = train_round(&mut *fresh, &global, 0, 2, 3, samples, &mut |_, _| {}).expect("fresh");
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.weights, c.weights);
    assert_eq!(a.metrics, c.metrics);
    assert_ne!(a.weights, global, "training changed the weights");
    assert_eq!(a.base_digest, global.digest());
    assert_eq!((a.samples, a.epochs), (333, 2));
    assert_eq!(epochs.len(), 2, "one report per epoch");
    assert_eq!(epochs[1], (2, a.metrics));
    assert_eq!(a.metrics.samples as u64, a.samples);

    // Round 1 runs epochs 2 and 3 of the run (other orders, other learning-rate steps): from
    // the same global weights it ends elsewhere.
    assert_eq!(run_epoch(1, 2, 1), Some(3));
    let d = train_round(&mut *first, &global, 1, 2, 3, samples, &mut |_, _| {}).expect("round 1");
    assert_ne!(d.weights, a.weights);
    // Another seed, other data orders and augmentation.
    let (mut other, _) = node("site-1", 4);
    let e = train_round(&mut *other, &global, 0, 2, 4, samples, &mut |_, _| {}).expect("seed 4");
    assert_ne!(e.weights, a.weights);
    // A participant without training data is refused.
    let error =
        train_round(&mut *first, &global, 0, 2, 3, 0, &mut |_, _| {}).expect_err("no samples");
    assert!(error.to_string().contains("training samples"), "{error}");
}

#[test]
fn two_fedavg_rounds_over_three_sites_beat_the_initial_model() {
    let _guard = serial();
    let names = ["site-1", "site-2", "site-3"];
    let mut nodes: Vec<(Box<dyn AutoFedAvgModel>, u64)> =
        names.iter().map(|n| node(n, 11)).collect();
    let (mut initiator, _) = node("initiator", 11);
    let mut global = nodes[0].0.state_dict().expect("initial weights");
    let initial = test(&mut *initiator, &global);
    assert_eq!(initial.samples, 360);

    let spool = tempfile::tempdir().expect("temp dir");
    for round in 0..2u64 {
        let mut aggregator = Aggregator::new(
            &global,
            "digits",
            round,
            names,
            Weighting::Samples,
            spool.path().join(format!("round-{round}")),
        )
        .expect("aggregator");
        let mut updates = Vec::new();
        for (name, (model, samples)) in names.iter().zip(&mut nodes) {
            let update = train_round(
                &mut **model,
                &global,
                round,
                2,
                11,
                *samples,
                &mut |_, _| {},
            )
            .expect("local training");
            updates.push((update.samples, update.weights.clone()));
            let bytes = Envelope::new("digits", round, *name, update.into_body())
                .encode()
                .expect("encoded");
            let accepted = aggregator.offer(&bytes).expect("update accepted");
            assert_eq!(accepted.sender, *name);
        }
        assert!(aggregator.is_complete());
        let next = aggregator.finish().expect("aggregated");

        // The aggregate is Σ n_k w_k / Σ n_k, computed here by hand for one tensor.
        let total: f64 = updates.iter().map(|(n, _)| *n as f64).sum();
        let tensor = "fc.weight";
        let mut expected = vec![0f64; next.get(tensor).expect("fc").numel()];
        for (n, weights) in &updates {
            let values = weights.get(tensor).expect("fc").to_f32_vec().expect("f32");
            for (sum, v) in expected.iter_mut().zip(values) {
                *sum += *n as f64 * f64::from(v);
            }
        }
        let got = next.get(tensor).expect("fc").to_f32_vec().expect("f32");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            let e = e / total;
            assert!(
                (f64::from(*g) - e).abs() <= 1e-6,
                "{tensor}[{i}]: {g} vs {e}"
            );
        }
        assert_ne!(next, global);
        global = next;
    }
    let last = test(&mut *initiator, &global);
    assert!(
        last.accuracy >= initial.accuracy + 0.4,
        "after 2 rounds: {:.4}, initially {:.4}",
        last.accuracy,
        initial.accuracy
    );
    assert!(last.loss < initial.loss);
}
