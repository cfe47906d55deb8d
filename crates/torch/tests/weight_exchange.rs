//! Weights in and out of a classifier as a `TensorSet`, on the shipped example package
//! `models/digits-cnn`: bit-exact, with a stable digest, strictly loaded. (Rounds of FedAvg
//! through the engine's calls are tested in `crates/model/tests/federated_round.rs`.)
//!
//! libtorch's thread count and generator are process-wide, so the tests run one at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fl_package::ModelPackage;
use fl_tensor::{DType, TensorSet};
use fl_torch::{
    Classifier, WeightExchange, builtin_catalog, from_tensor_set, read_params, to_tensor_set,
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

fn labels() -> Vec<String> {
    (0..10).map(|i| i.to_string()).collect()
}

/// SHA-256 of the example package's weights as a TensorSet (`fedengine.tensorset.v1`),
/// computed independently with Python's `hashlib` from `model.safetensors`'s header and data
/// (all 16 tensors, BatchNorm's `num_batches_tracked` counters included).
const PACKAGE_DIGEST: &str = "f4d4bdcc51b2a146dc71bb5dcfbda18ece483d2ba2571345a1ace51ea7f21f17";

#[test]
fn tensor_set_round_trip_is_bit_exact_and_the_digest_stable() {
    let _guard = serial();
    let package = package();
    let (mut model, _) =
        Classifier::from_package(&package, Some(&labels()), fl_torch::HeadRule::Keep, 7)
            .expect("built");
    let snapshot = model.snapshot();
    let set = model.weights().expect("exchangeable");

    // Every variable of the SmallCnn (its two BatchNorm counters as I64), with its dtype,
    // shape and exact bytes.
    assert_eq!(set.len(), 16);
    assert_eq!(set.len(), snapshot.len());
    assert_eq!(set.len(), model.var_store().variables().len());
    for (name, tensor) in &snapshot {
        let named = set.get(name).expect("every variable is in the set");
        if name.ends_with("num_batches_tracked") {
            assert_eq!(named.dtype(), DType::I64, "{name}");
            assert_eq!(tensor.int64_value(&[]), named.to_i64_vec().expect("i64")[0]);
            continue;
        }
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
        assert_eq!(tensor.kind(), original.kind());
        assert!(tensor.equal(original), "{name}");
    }
    assert_eq!(to_tensor_set(&back).expect("again"), set);

    // The digest is stable: across calls, models, loads, and versions of the engine.
    let digest = set.digest();
    assert_eq!(model.weights().expect("again").digest(), digest);
    let (other, _) =
        Classifier::from_package(&package, None, fl_torch::HeadRule::Keep, 99).expect("built");
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
        .map(|(n, t)| match t.kind() {
            Kind::Float => (n, t.to_kind(Kind::Double)),
            _ => (n, t),
        })
        .collect();
    let err = model
        .load_weights(&to_tensor_set(&doubled).expect("set"))
        .expect_err("dtype refused");
    assert!(err.to_string().contains("F64"), "{err}");
    assert_eq!(model.weights().expect("set").digest(), digest);
}
