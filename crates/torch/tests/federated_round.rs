//! FedAvg building blocks on the shipped example: `models/digits-cnn` trained on
//! `datasets/digits/site-{1,2,3}` and tested on `datasets/digits/initiator`.
//!
//! libtorch's thread count and generator are process-wide, so the tests run one at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fl_data::{Dataset, OpenOptions};
use fl_package::ModelPackage;
use fl_tensor::{Aggregator, DType, Envelope, Split, TensorSet, Weighting};
use fl_torch::{
    Classifier, LocalTrainer, NodeData, TrainerOptions, WeightExchange, builtin_catalog,
    from_tensor_set, order_fingerprint, read_params, run_epoch, to_tensor_set,
};
use tch::Kind;

static LIBTORCH: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    LIBTORCH.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn package() -> ModelPackage {
    ModelPackage::open(&root().join("models/digits-cnn"), &builtin_catalog())
        .expect("the example package is valid")
}

fn dataset(node: &str) -> Dataset {
    Dataset::open(
        &root().join("datasets/digits").join(node),
        &OpenOptions::default(),
    )
    .expect("the example dataset opens")
}

fn labels() -> Vec<String> {
    (0..10).map(|i| i.to_string()).collect()
}

fn trainer(node: &str, seed: u64) -> LocalTrainer {
    let data = NodeData::from_dataset(&dataset(node), &labels()).expect("same labels");
    let options = TrainerOptions {
        seed,
        threads: 1,
        workers: 2,
        ..TrainerOptions::default()
    };
    LocalTrainer::new(&package(), data, &labels(), &options).expect("trainer built")
}

/// SHA-256 of the example package's weights as a TensorSet (`fedengine.tensorset.v1`),
/// computed independently with Python's `hashlib` from `model.safetensors`'s header and data
/// (the 14 tensors other than BatchNorm's `num_batches_tracked`, which tch does not hold).
const PACKAGE_DIGEST: &str = "56f593828e621c14c9b8b252e55021c6a60f29872c7e7f829863e47216dac071";

#[test]
fn tensor_set_round_trip_is_bit_exact_and_the_digest_stable() {
    let _guard = serial();
    let package = package();
    let (mut model, _) = Classifier::from_package(&package, Some(&labels()), 7).expect("built");
    let snapshot = model.snapshot();
    let set = model.weights().expect("exchangeable");

    // Every variable of the SmallCnn, with its dtype, shape and exact bytes.
    assert_eq!(set.len(), 14);
    assert_eq!(set.len(), snapshot.len());
    assert_eq!(set.len(), model.var_store().variables().len());
    for (name, tensor) in &snapshot {
        let named = set.get(name).expect("every variable is in the set");
        assert_eq!(named.dtype(), DType::F32, "{name}");
        let shape: Vec<u64> = tensor.size().iter().map(|&d| d as u64).collect();
        assert_eq!(named.shape(), shape.as_slice(), "{name}");
        let values: Vec<f32> = Vec::try_from(tensor.flatten(0, -1)).expect("f32 values");
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        let wire: Vec<u32> = named
            .to_f32_vec()
            .expect("f32")
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(wire, bits, "{name}");
    }
    for name in [
        "bn1.running_mean",
        "bn2.running_var",
        "conv1.weight",
        "fc.bias",
    ] {
        assert!(set.get(name).is_some(), "{name} is exchanged");
    }
    // The package's weights, exactly as stored in model.safetensors.
    let file = to_tensor_set(&read_params(&package.param_path).expect("weights")).expect("set");
    for tensor in &set {
        assert_eq!(file.get(tensor.name()), Some(tensor), "{}", tensor.name());
    }

    // Back to tensors: same kinds and bits, hence the same set and digest.
    let back = from_tensor_set(&set).expect("tensors");
    assert_eq!(back.len(), snapshot.len());
    for ((name, tensor), (original_name, original)) in back.iter().zip(&snapshot) {
        assert_eq!(name, original_name);
        assert_eq!(tensor.kind(), Kind::Float);
        assert!(tensor.equal(original), "{name}");
    }
    assert_eq!(to_tensor_set(&back).expect("again"), set);

    // The digest is stable: across calls, models, loads, and versions of the engine.
    let digest = set.digest();
    assert_eq!(model.weights().expect("again").digest(), digest);
    let (other, _) = Classifier::from_package(&package, None, 99).expect("built");
    assert_eq!(other.weights().expect("set").digest(), digest);
    model.load_weights(&set).expect("strict load");
    assert_eq!(model.weights().expect("set").digest(), digest);
    assert_eq!(digest.to_hex(), PACKAGE_DIGEST);

    // Loads are strict: a missing tensor or another dtype is refused, nothing changes.
    let mut tensors = set.clone().into_tensors();
    let removed = tensors.remove(0);
    let missing = TensorSet::new(tensors.clone()).expect("set");
    let err = model.load_weights(&missing).expect_err("missing refused");
    assert!(err.to_string().contains(removed.name()), "{err}");
    let doubled: Vec<(String, tch::Tensor)> = from_tensor_set(&set)
        .expect("tensors")
        .into_iter()
        .map(|(n, t)| (n, t.to_kind(Kind::Double)))
        .collect();
    let err = model
        .load_weights(&to_tensor_set(&doubled).expect("set"))
        .expect_err("dtype refused");
    assert!(err.to_string().contains("F64"), "{err}");
    assert_eq!(model.weights().expect("set").digest(), digest);
}

#[test]
fn a_round_is_reproducible_and_rounds_see_different_data_orders() {
    let _guard = serial();
    let mut first = trainer("site-1", 3);
    let global = first.weights().expect("initial weights");
    let a = first.train_round(&global, 0, 2).expect("round 0");
    // Training twice more from the same inputs (the same trainer, whose model and cache
    // changed since, and a fresh one) gives the same bits.
    let b = first.train_round(&global, 0, 2).expect("round 0 again");
    let c = trainer("site-1", 3)
        .train_round(&global, 0, 2)
        .expect("round 0, fresh trainer");
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.weights, c.weights);
    assert_eq!(a.weights.digest(), c.weights.digest());
    assert_eq!(a.epochs, c.epochs);
    assert_ne!(a.weights, global, "training changed the weights");
    assert_eq!(a.base_digest, global.digest());
    assert_eq!(a.samples, dataset("site-1").train.len() as u64);
    assert_eq!(a.metrics, a.epochs[1].metrics);
    assert_eq!(a.metrics.samples as u64, a.samples);

    // Round 1 runs epochs 2 and 3 of the run: other orders, other weights.
    let d = first.train_round(&global, 1, 2).expect("round 1");
    assert_eq!(a.run_epochs(), 0..2);
    assert_eq!(d.run_epochs(), 2..4);
    assert_eq!(run_epoch(1, 2, 1), Some(3));
    let orders: Vec<u64> = a.epochs.iter().chain(&d.epochs).map(|e| e.order).collect();
    for (i, epoch) in a.epochs.iter().chain(&d.epochs).enumerate() {
        // The order trained on is the documented one for that run-wide epoch.
        assert_eq!(
            epoch.order,
            order_fingerprint(&first.epoch_order(epoch.epoch)),
            "epoch {}",
            epoch.epoch
        );
        assert!(
            !orders[..i].contains(&orders[i]),
            "epoch {} repeats an order",
            epoch.epoch
        );
    }
    assert_ne!(d.weights, a.weights);
    // Another seed, other orders.
    let e = trainer("site-1", 4)
        .train_round(&global, 0, 2)
        .expect("seed 4");
    assert_ne!(e.epochs[0].order, a.epochs[0].order);
}

#[test]
fn two_fedavg_rounds_over_three_sites_beat_the_initial_model() {
    let _guard = serial();
    let nodes = ["site-1", "site-2", "site-3"];
    let mut trainers: Vec<LocalTrainer> = nodes.iter().map(|n| trainer(n, 11)).collect();
    let mut initiator = trainer("initiator", 11);
    let mut global = trainers[0].weights().expect("initial weights");
    let initial = initiator
        .evaluate(&global, Split::Test)
        .expect("test of the initial model");
    assert_eq!(initial.samples, dataset("initiator").test.len());

    let spool = tempfile::tempdir().expect("temp dir");
    let merge_epochs = 2;
    for round in 0..2u64 {
        let mut aggregator = Aggregator::new(
            &global,
            "digits",
            round,
            nodes,
            Weighting::Samples,
            spool.path().join(format!("round-{round}")),
        )
        .expect("aggregator");
        let mut updates = Vec::new();
        for (node, trainer) in nodes.iter().zip(&mut trainers) {
            let update = trainer
                .train_round(&global, round, merge_epochs)
                .expect("local training");
            updates.push((update.samples, update.weights.clone()));
            let bytes = Envelope::new("digits", round, *node, update.into_body())
                .encode()
                .expect("encoded");
            let accepted = aggregator.offer(&bytes).expect("update accepted");
            assert_eq!(accepted.sender, *node);
        }
        assert!(aggregator.is_complete());
        let next = aggregator.finish().expect("aggregated");

        // The aggregate is Σ n_k w_k / Σ n_k, computed here by hand for one tensor.
        let total: f64 = updates.iter().map(|(n, _)| *n as f64).sum();
        let name = "fc.weight";
        let mut expected = vec![0f64; next.get(name).expect("fc").numel()];
        for (n, weights) in &updates {
            let values = weights.get(name).expect("fc").to_f32_vec().expect("f32");
            for (sum, v) in expected.iter_mut().zip(values) {
                *sum += *n as f64 * f64::from(v);
            }
        }
        let got = next.get(name).expect("fc").to_f32_vec().expect("f32");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            let e = e / total;
            assert!((f64::from(*g) - e).abs() <= 1e-6, "{name}[{i}]: {g} vs {e}");
        }
        assert_ne!(next, global);
        global = next;
        let metrics = initiator.evaluate(&global, Split::Test).expect("test");
        eprintln!(
            "round {round}: test accuracy {:.4} (initial {:.4}), loss {:.4}",
            metrics.accuracy, initial.accuracy, metrics.loss
        );
    }
    let last = initiator.evaluate(&global, Split::Test).expect("test");
    assert!(
        last.accuracy >= initial.accuracy + 0.4,
        "after 2 rounds: {:.4}, initially {:.4}",
        last.accuracy,
        initial.accuracy
    );
    assert!(last.loss < initial.loss);
}
