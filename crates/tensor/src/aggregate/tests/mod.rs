use std::fs;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::dtype::DType;
use crate::spool::SpoolError;
use crate::tensor::NamedTensor;

mod rejections;

const TASK: &str = "task-1";
const ROUND: u64 = 4;
const NODES: [&str; 4] = ["a", "b", "c", "d"];

fn global() -> TensorSet {
    weights(|_| 0.0, [0.0, 0.0], 0)
}

/// The test model: `conv.weight` [2, 3] with `conv(i)` at flat index i, `fc.bias` [2], and
/// a BatchNorm counter.
fn weights(conv: impl Fn(f32) -> f32, fc: [f32; 2], batches: i64) -> TensorSet {
    let conv: Vec<f32> = (0..6).map(|i| conv(i as f32)).collect();
    TensorSet::new(vec![
        NamedTensor::from_f32("conv.weight", vec![2, 3], &conv).unwrap(),
        NamedTensor::from_f32("fc.bias", vec![2], &fc).unwrap(),
        NamedTensor::from_i64("bn.num_batches_tracked", vec![], &[batches]).unwrap(),
    ])
    .unwrap()
}

fn update_on(base: Digest, sender: &str, samples: u64, tensors: TensorSet) -> Envelope {
    let metrics = Metrics {
        loss: Some(0.5),
        accuracy: Some(0.75),
        extra: Default::default(),
    };
    Envelope::new(
        TASK,
        ROUND,
        sender,
        Body::Update {
            samples,
            base_digest: base,
            metrics,
            tensors,
        },
    )
}

fn update(sender: &str, samples: u64, tensors: TensorSet) -> Envelope {
    update_on(global().digest(), sender, samples, tensors)
}

fn a() -> Envelope {
    update("a", 1, weights(|i| i, [1.0, -1.0], 10))
}
fn b() -> Envelope {
    update("b", 3, weights(|i| 4.0 + i, [5.0, 3.0], 30))
}
fn c() -> Envelope {
    update("c", 4, weights(|i| i + 2.0, [3.0, 1.0], 20))
}

fn start(dir: &Path, weighting: Weighting) -> Aggregator {
    Aggregator::new(&global(), TASK, ROUND, NODES, weighting, dir).unwrap()
}

fn aggregate(dir: &Path, weighting: Weighting, updates: &[Envelope]) -> TensorSet {
    let mut aggregator = start(dir, weighting);
    for update in updates {
        aggregator.offer(&update.encode().unwrap()).unwrap();
    }
    aggregator.finish().unwrap()
}

fn f32s(set: &TensorSet, name: &str) -> Vec<f32> {
    set.get(name).unwrap().to_f32_vec().unwrap()
}

#[test]
fn weighted_mean_of_known_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut aggregator = start(dir.path(), Weighting::Samples);
    let first = aggregator.offer(&a().encode().unwrap()).unwrap();
    assert_eq!(
        (
            first.sender.as_str(),
            first.samples,
            first.accepted,
            first.expected
        ),
        ("a", 1, 1, 4)
    );
    assert_eq!(first.metrics.accuracy, Some(0.75));
    aggregator.offer(&b().encode().unwrap()).unwrap();
    let third = aggregator.offer_envelope(&c()).unwrap();
    assert!(!third.is_last());
    assert_eq!(aggregator.missing().collect::<Vec<_>>(), ["d"]);
    assert_eq!(aggregator.total_samples(), 8);

    let result = aggregator.finish().unwrap();
    // (1·i + 3·(4 + i) + 4·(i + 2)) / 8 = i + 2.5
    assert_eq!(f32s(&result, "conv.weight"), [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
    // (1·1 + 3·5 + 4·3) / 8 and (1·-1 + 3·3 + 4·1) / 8
    assert_eq!(f32s(&result, "fc.bias"), [3.5, 1.5]);
    let batches = result.get("bn.num_batches_tracked").unwrap();
    assert_eq!(
        batches.to_i64_vec().unwrap(),
        [30],
        "counters take the maximum"
    );
    assert_eq!(batches.dtype(), DType::I64);
    assert_eq!(result.get("conv.weight").unwrap().shape(), [2, 3]);
    // finish leaves the spool as it was and can run again.
    assert_eq!(aggregator.finish().unwrap(), result);
}

#[test]
fn uniform_mean_ignores_sample_counts() {
    let dir = tempfile::tempdir().unwrap();
    let result = aggregate(dir.path(), Weighting::Uniform, &[a(), b(), c()]);
    // (i + (4 + i) + (i + 2)) / 3 = i + 2
    assert_eq!(f32s(&result, "conv.weight"), [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(f32s(&result, "fc.bias"), [3.0, 1.0]);
}

#[test]
fn identical_updates_come_back_bit_for_bit() {
    let f32_values = [-0.0f32, 1e-45, 1.0 / 3.0, -3.4e38, 0.1, 16_777_215.0];
    let model = TensorSet::new(vec![
        NamedTensor::from_f32("f32", vec![6], &f32_values).unwrap(),
        NamedTensor::from_f64("f64", vec![3], &[1.0 / 3.0, -0.0, 1e300]).unwrap(),
        NamedTensor::new(
            "f16",
            DType::F16,
            vec![4],
            vec![0x00, 0x80, 0x01, 0x00, 0x55, 0x35, 0xff, 0xfb],
        )
        .unwrap(),
        NamedTensor::new(
            "bf16",
            DType::BF16,
            vec![3],
            vec![0xab, 0x3e, 0x00, 0x80, 0x01, 0x00],
        )
        .unwrap(),
        NamedTensor::from_i32("i32", vec![2], &[-5, 7]).unwrap(),
        NamedTensor::new("mask", DType::Bool, vec![3], vec![1, 0, 1]).unwrap(),
    ])
    .unwrap();
    for weighting in [Weighting::Samples, Weighting::Uniform] {
        let dir = tempfile::tempdir().unwrap();
        let mut aggregator =
            Aggregator::new(&model, TASK, ROUND, ["x", "y", "z"], weighting, dir.path()).unwrap();
        for (sender, samples) in [("x", 1), ("y", 7), ("z", 1000)] {
            let envelope = update_on(model.digest(), sender, samples, model.clone());
            aggregator.offer(&envelope.encode().unwrap()).unwrap();
        }
        let result = aggregator.finish().unwrap();
        for (got, want) in result.iter().zip(model.iter()) {
            assert_eq!(got.data(), want.data(), "{} ({weighting:?})", got.name());
        }
        assert_eq!(result.digest(), model.digest());
    }
}

/// A small deterministic generator for test values.
fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_f32(state: &mut u64) -> f32 {
    // Values over many magnitudes, both signs: sums of these depend on their order.
    let unit = (split_mix(state) >> 40) as f32 / (1u64 << 24) as f32;
    let exponent = (split_mix(state) % 40) as i32 - 20;
    let sign = if split_mix(state) & 1 == 0 { 1.0 } else { -1.0 };
    sign * (1.0 + unit) * 2f32.powi(exponent)
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for (i, &first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}

#[test]
fn every_arrival_order_gives_the_same_bits() {
    let mut state = 42;
    let samples = [3u64, 17, 250, 1];
    let updates: Vec<Envelope> = NODES
        .iter()
        .zip(samples)
        .map(|(node, n)| {
            let conv: Vec<f32> = (0..6).map(|_| random_f32(&mut state)).collect();
            let fc = [random_f32(&mut state), random_f32(&mut state)];
            let batches = (split_mix(&mut state) % 1000) as i64;
            update(node, n, weights(|i| conv[i as usize], fc, batches))
        })
        .collect();

    // The data is order-sensitive: a naive running f32 sum differs between orders.
    let values: Vec<Vec<f32>> = updates
        .iter()
        .map(|u| match &u.body {
            Body::Update { tensors, .. } => {
                tensors.get("conv.weight").unwrap().to_f32_vec().unwrap()
            }
            _ => unreachable!(),
        })
        .collect();
    let naive = |order: &[usize]| -> Vec<u32> {
        (0..6)
            .map(|j| {
                let sum = order
                    .iter()
                    .fold(0f32, |s, &k| s + samples[k] as f32 * values[k][j]);
                sum.to_bits()
            })
            .collect()
    };
    let orders = permutations(&[0, 1, 2, 3]);
    assert_eq!(orders.len(), 24);
    assert!(
        orders.iter().any(|o| naive(o) != naive(&orders[0])),
        "test data too tame"
    );

    let mut results = Vec::new();
    for order in &orders {
        let dir = tempfile::tempdir().unwrap();
        let arrived: Vec<Envelope> = order.iter().map(|&k| updates[k].clone()).collect();
        let result = aggregate(dir.path(), Weighting::Samples, &arrived);
        let bytes: Vec<Vec<u8>> = result.iter().map(|t| t.data().to_vec()).collect();
        results.push(bytes);
    }
    assert!(
        results.iter().all(|r| *r == results[0]),
        "arrival order changed the result"
    );
}

/// Offers `bad` to a round that already accepted `a` and `b`, and checks that it is rejected
/// as `expected` says and that the round's result is what it is without it.
#[test]
fn integer_tensors_take_the_elementwise_maximum() {
    let model = |i32s: [i32; 3], i8s: [i8; 2], u8s: [u8; 2], mask: [u8; 3]| {
        TensorSet::new(vec![
            NamedTensor::from_i32("i32", vec![3], &i32s).unwrap(),
            NamedTensor::new("i8", DType::I8, vec![2], i8s.map(|v| v as u8).to_vec()).unwrap(),
            NamedTensor::new("u8", DType::U8, vec![2], u8s.to_vec()).unwrap(),
            NamedTensor::new("mask", DType::Bool, vec![3], mask.to_vec()).unwrap(),
            NamedTensor::from_i64("bn.num_batches_tracked", vec![], &[0]).unwrap(),
        ])
        .unwrap()
    };
    let base = model([0; 3], [0; 2], [0; 2], [0; 3]);
    let dir = tempfile::tempdir().unwrap();
    let mut aggregator = Aggregator::new(
        &base,
        TASK,
        ROUND,
        ["p", "q"],
        Weighting::Samples,
        dir.path(),
    )
    .unwrap();
    let p = model([-5, 7, -1], [-128, 3], [200, 0], [1, 0, 0]);
    let q = model([-9, 2, -2], [-100, -3], [10, 255], [0, 0, 1]);
    for (sender, tensors) in [("p", p), ("q", q)] {
        let bytes = update_on(base.digest(), sender, 1, tensors)
            .encode()
            .unwrap();
        assert!(aggregator.offer(&bytes).unwrap().sender == sender);
    }
    let result = aggregator.finish().unwrap();
    assert_eq!(
        result.get("i32").unwrap().to_i32_vec().unwrap(),
        [-5, 7, -1]
    );
    assert_eq!(result.get("i8").unwrap().data(), [-100i8 as u8, 3]);
    assert_eq!(result.get("u8").unwrap().data(), [200, 255]);
    assert_eq!(result.get("mask").unwrap().data(), [1, 0, 1]);
}

#[test]
fn a_reopened_round_directory_keeps_its_accepted_updates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut aggregator = start(dir.path(), Weighting::Samples);
        aggregator.offer(&a().encode().unwrap()).unwrap();
        aggregator.offer(&b().encode().unwrap()).unwrap();
    } // The process "crashes" here.

    let spool = UpdateSpool::open(dir.path()).unwrap();
    let listed: Vec<(&str, u64)> = spool.entries().map(|e| (e.sender(), e.samples())).collect();
    assert_eq!(listed, [("a", 1), ("b", 3)]);

    let mut resumed = start(dir.path(), Weighting::Samples);
    assert_eq!(resumed.accepted().collect::<Vec<_>>(), [("a", 1), ("b", 3)]);
    assert_eq!(resumed.missing().collect::<Vec<_>>(), ["c", "d"]);
    assert!(matches!(
        resumed.offer(&a().encode().unwrap()),
        Err(Rejection::DuplicateSender { .. })
    ));
    resumed.offer(&c().encode().unwrap()).unwrap();

    let fresh_dir = tempfile::tempdir().unwrap();
    let uninterrupted = aggregate(fresh_dir.path(), Weighting::Samples, &[a(), b(), c()]);
    assert_eq!(resumed.finish().unwrap(), uninterrupted);

    // The same directory cannot be taken for another round.
    let next_round = Aggregator::new(
        &global(),
        TASK,
        ROUND + 1,
        NODES,
        Weighting::Samples,
        dir.path(),
    );
    assert!(matches!(
        next_round,
        Err(AggregateError::Spooled { ref rejection, .. }) if matches!(**rejection, Rejection::WrongRound { .. })
    ));
}

#[test]
fn rounds_without_updates_or_with_damaged_spools_fail_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let none: [&str; 0] = [];
    assert!(matches!(
        Aggregator::new(&global(), TASK, ROUND, none, Weighting::Samples, dir.path()),
        Err(AggregateError::NoParticipants { round: ROUND })
    ));
    assert!(matches!(
        Aggregator::new(&global(), TASK, ROUND, [""], Weighting::Samples, dir.path()),
        Err(AggregateError::Spool(SpoolError::SenderName { .. }))
    ));
    let mut aggregator = start(dir.path(), Weighting::Samples);
    assert!(matches!(
        aggregator.finish(),
        Err(AggregateError::NoUpdates { round: ROUND })
    ));

    aggregator.offer(&a().encode().unwrap()).unwrap();
    let file = aggregator.spool().get("a").unwrap().path().to_path_buf();
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == 5.0f32.to_le_bytes())
        .unwrap();
    bytes[at] ^= 0xff; // a value of `conv.weight`
    fs::write(&file, bytes).unwrap();
    assert!(matches!(
        aggregator.finish(),
        Err(AggregateError::Spooled { ref sender, ref rejection })
            if sender == "a" && matches!(**rejection, Rejection::Checksum { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Aggregated values are the f64 weighted mean rounded to f32 (within one f32 ulp, plus
    /// f64 noise where values of mixed signs cancel).
    #[test]
    fn mean_is_within_f32_rounding_of_an_f64_reference(
        updates in proptest::collection::vec(
            (1u64..10_000, proptest::collection::vec(-1.0e3f32..1.0e3, 8)),
            1..6,
        ),
        uniform: bool,
    ) {
        let names: Vec<String> = (0..updates.len()).map(|k| format!("node-{k}")).collect();
        let model = TensorSet::new(vec![NamedTensor::from_f32("w", vec![8], &[0.0; 8]).unwrap()]).unwrap();
        let weighting = if uniform { Weighting::Uniform } else { Weighting::Samples };
        let dir = tempfile::tempdir().unwrap();
        let mut aggregator = Aggregator::new(&model, TASK, ROUND, &names, weighting, dir.path()).unwrap();
        for (name, (samples, values)) in names.iter().zip(&updates) {
            let tensors = TensorSet::new(vec![NamedTensor::from_f32("w", vec![8], values).unwrap()]).unwrap();
            let bytes = update_on(model.digest(), name, *samples, tensors).encode().unwrap();
            aggregator.offer(&bytes).unwrap();
        }
        let got = aggregator.finish().unwrap().get("w").unwrap().to_f32_vec().unwrap();
        for (j, got) in got.iter().enumerate() {
            let weight = |n: u64| if uniform { 1.0 } else { n as f64 };
            let total: f64 = updates.iter().map(|(n, _)| weight(*n)).sum();
            let sum: f64 = updates.iter().map(|(n, v)| weight(*n) * f64::from(v[j])).sum();
            let reference = sum / total;
            let ulp = f64::from((reference as f32).abs().next_up() - (reference as f32).abs());
            let largest = updates.iter().map(|(_, v)| f64::from(v[j].abs())).fold(0.0, f64::max);
            let error = (f64::from(*got) - reference).abs();
            prop_assert!(
                error <= ulp + largest * 1e-12,
                "element {}: got {}, reference {}, error {}", j, got, reference, error
            );
        }
    }
}
