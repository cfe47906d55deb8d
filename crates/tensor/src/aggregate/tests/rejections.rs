//! Updates the aggregator refuses, each with its own variant, changing nothing.

use super::*;

fn assert_rejected(bad: &[u8], expected: impl Fn(&Rejection) -> bool) {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = aggregate(reference_dir.path(), Weighting::Samples, &[a(), b()]);

    let dir = tempfile::tempdir().unwrap();
    let mut aggregator = start(dir.path(), Weighting::Samples);
    aggregator.offer(&a().encode().unwrap()).unwrap();
    aggregator.offer(&b().encode().unwrap()).unwrap();
    let rejection = aggregator.offer(bad).unwrap_err();
    assert!(expected(&rejection), "unexpected rejection: {rejection:?}");
    assert!(!rejection.to_string().is_empty());
    assert_eq!(
        aggregator.accepted().collect::<Vec<_>>(),
        [("a", 1), ("b", 3)]
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "nothing written"
    );
    assert_eq!(aggregator.finish().unwrap(), reference);
}

fn encoded(envelope: Envelope) -> Vec<u8> {
    envelope.encode().unwrap()
}

fn with_tensor(set: TensorSet, name: &str, replacement: Option<NamedTensor>) -> TensorSet {
    let mut tensors: Vec<NamedTensor> = set
        .into_tensors()
        .into_iter()
        .filter(|t| t.name() != name)
        .collect();
    tensors.extend(replacement);
    TensorSet::new(tensors).unwrap()
}

#[test]
fn each_bad_update_is_rejected_with_its_variant_and_changes_nothing() {
    let good_c = || weights(|i| i, [0.0, 0.0], 1);

    let mut late = c();
    late.round = ROUND + 1;
    assert_rejected(
        &encoded(late),
        |r| matches!(r, Rejection::WrongRound { expected: ROUND, found, .. } if *found == ROUND + 1),
    );

    let mut other_task = c();
    other_task.task_id = "task-2".into();
    assert_rejected(
        &encoded(other_task),
        |r| matches!(r, Rejection::WrongTask { found, .. } if found == "task-2"),
    );

    let stranger = update("mallory", 5, good_c());
    assert_rejected(
        &encoded(stranger),
        |r| matches!(r, Rejection::UnknownSender { sender } if sender == "mallory"),
    );

    let again = update("a", 9, weights(|_| 100.0, [100.0, 100.0], 99));
    assert_rejected(
        &encoded(again),
        |r| matches!(r, Rejection::DuplicateSender { sender } if sender == "a"),
    );

    let empty = update("c", 0, good_c());
    assert_rejected(
        &encoded(empty),
        |r| matches!(r, Rejection::NoSamples { sender } if sender == "c"),
    );

    let stale = update_on(Digest::from_bytes([9; 32]), "c", 4, good_c());
    assert_rejected(&encoded(stale), |r| {
        matches!(r, Rejection::BaseDigest { found, expected, .. }
            if *found == Digest::from_bytes([9; 32]) && *expected == global().digest())
    });

    let missing = update("c", 4, with_tensor(good_c(), "fc.bias", None));
    assert_rejected(
        &encoded(missing),
        |r| matches!(r, Rejection::MissingTensor { tensor, .. } if tensor == "fc.bias"),
    );

    let extra = NamedTensor::from_f32("fc.extra", vec![1], &[0.0]).unwrap();
    let unexpected = update("c", 4, with_tensor(good_c(), "fc.extra", Some(extra)));
    assert_rejected(
        &encoded(unexpected),
        |r| matches!(r, Rejection::UnexpectedTensor { tensor, .. } if tensor == "fc.extra"),
    );

    // Renamed: the walk must see both the missing and the unexpected name.
    let renamed = NamedTensor::from_f32("aaa", vec![2], &[0.0, 0.0]).unwrap();
    let renamed = update("c", 4, with_tensor(good_c(), "fc.bias", Some(renamed)));
    assert_rejected(
        &encoded(renamed),
        |r| matches!(r, Rejection::UnexpectedTensor { tensor, .. } if tensor == "aaa"),
    );

    let transposed = NamedTensor::from_f32("conv.weight", vec![3, 2], &[0.0; 6]).unwrap();
    let reshaped = update(
        "c",
        4,
        with_tensor(good_c(), "conv.weight", Some(transposed)),
    );
    assert_rejected(&encoded(reshaped), |r| {
        matches!(r, Rejection::ShapeMismatch { tensor, expected, found, .. }
            if tensor == "conv.weight" && expected == &[2, 3] && found == &[3, 2])
    });

    let doubles = NamedTensor::from_f64("fc.bias", vec![2], &[0.0, 0.0]).unwrap();
    let retyped = update("c", 4, with_tensor(good_c(), "fc.bias", Some(doubles)));
    assert_rejected(&encoded(retyped), |r| {
        matches!(
            r,
            Rejection::DTypeMismatch {
                expected: DType::F32,
                found: DType::F64,
                ..
            }
        )
    });

    let mut corrupted = encoded(update("c", 4, weights(|_| 1.5, [0.0, 0.0], 1)));
    let at = corrupted
        .windows(4)
        .position(|w| w == 1.5f32.to_le_bytes())
        .unwrap();
    corrupted[at + 1] ^= 0x10;
    assert_rejected(
        &corrupted,
        |r| matches!(r, Rejection::Checksum { tensor, .. } if tensor == "conv.weight"),
    );

    let nan = update(
        "c",
        4,
        weights(|i| if i == 4.0 { f32::NAN } else { i }, [0.0, 0.0], 1),
    );
    assert_rejected(
        &encoded(nan),
        |r| matches!(r, Rejection::NonFinite { tensor, index: 4, value, .. } if tensor == "conv.weight" && value.is_nan()),
    );
    let inf = update("c", 4, weights(|i| i, [0.0, f32::NEG_INFINITY], 1));
    assert_rejected(
        &encoded(inf),
        |r| matches!(r, Rejection::NonFinite { tensor, index: 1, value, .. } if tensor == "fc.bias" && *value == f64::NEG_INFINITY),
    );

    let broadcast = Envelope::new(TASK, ROUND, "c", Body::global_weights(good_c()));
    assert_rejected(&encoded(broadcast), |r| {
        matches!(
            r,
            Rejection::NotAnUpdate {
                kind: "global_weights",
                ..
            }
        )
    });

    assert_rejected(b"\x92\x01\x02", |r| matches!(r, Rejection::Undecodable(_)));
}

#[test]
fn too_many_samples_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut aggregator = start(dir.path(), Weighting::Samples);
    aggregator.limit_samples([("a".to_string(), 1), ("b".to_string(), 3)].into());
    let huge = update("b", u64::MAX, weights(|i| 4.0 + i, [5.0, 3.0], 30));
    let rejection = aggregator.offer(&huge.encode().unwrap()).unwrap_err();
    assert!(
        matches!(
            rejection,
            Rejection::TooManySamples { ref sender, samples: u64::MAX, registered: 3 } if sender == "b"
        ),
        "{rejection}"
    );
    assert!(
        rejection
            .to_string()
            .contains("more than the 3 it checked in with")
    );
    // `c` registered nothing: it may claim no sample. Exactly what was registered is fine.
    assert!(matches!(
        aggregator.offer(&c().encode().unwrap()),
        Err(Rejection::TooManySamples { registered: 0, .. })
    ));
    aggregator.offer(&a().encode().unwrap()).unwrap();
    aggregator.offer(&b().encode().unwrap()).unwrap();
    assert_eq!(aggregator.total_samples(), 4);
}
