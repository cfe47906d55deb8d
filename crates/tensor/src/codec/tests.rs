use proptest::prelude::*;
use serde::Serialize;

use super::*;
use crate::envelope::Metrics;
use crate::schedule::Decision;
use crate::tensor::NamedTensor;

/// One tensor of every dtype, with varied bytes (valid bools).
fn every_dtype() -> TensorSet {
    let tensors = DType::ALL
        .iter()
        .enumerate()
        .map(|(i, &dtype)| {
            let shape = vec![2, 3];
            let len = 6 * dtype.size();
            let data = (0..len)
                .map(|j| match dtype {
                    DType::Bool => (j % 2) as u8,
                    _ => (j * 37 + i * 11) as u8,
                })
                .collect();
            NamedTensor::new(format!("t.{}", dtype.name()), dtype, shape, data).unwrap()
        })
        .collect();
    TensorSet::new(tensors).unwrap()
}

fn update(tensors: TensorSet) -> Envelope {
    Envelope::new(
        "task-1",
        3,
        "hospital-a",
        Body::Update {
            samples: 120,
            base_digest: Digest::from_bytes([7; 32]),
            metrics: Metrics {
                loss: Some(0.25),
                accuracy: Some(0.875),
                extra: [("auc".to_owned(), 0.9)].into(),
            },
            tensors,
        },
    )
}

fn small_update() -> Vec<u8> {
    let tensors = TensorSet::new(vec![
        NamedTensor::from_f32("w", vec![2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap(),
        NamedTensor::from_i64("n", vec![], &[9]).unwrap(),
    ])
    .unwrap();
    update(tensors).encode().unwrap()
}

/// Returns where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn every_dtype_and_every_body_round_trips() {
    let tensors = every_dtype();
    let messages = [
        Envelope::new(
            "task-1",
            0,
            "coordinator",
            Body::global_weights(tensors.clone()),
        ),
        update(tensors.clone()),
        Envelope::new(
            "task-1",
            2,
            "hospital-b",
            Body::Decided {
                validation: Some(Metrics {
                    loss: None,
                    accuracy: Some(0.5),
                    extra: Default::default(),
                }),
                test: None,
                decision: Decision {
                    best: true,
                    finished: Some("no better validation accuracy for 2 rounds".into()),
                },
            },
        ),
    ];
    for message in messages {
        let bytes = message.encode().unwrap();
        let decoded = Envelope::decode(&bytes).unwrap();
        assert_eq!(decoded, message);
        if let Some(got) = decoded.body.tensors() {
            for (a, b) in got.iter().zip(tensors.iter()) {
                assert_eq!(
                    (a.name(), a.dtype(), a.shape(), a.data()),
                    (b.name(), b.dtype(), b.shape(), b.data())
                );
            }
            assert_eq!(got.len(), DType::ALL.len());
        }
        // The view decodes the same message without copying.
        let view = decode_view(&bytes).unwrap();
        assert_eq!(view.body.kind(), message.body.kind());
        if let Some(view_tensors) = view.body.tensors() {
            let first = view_tensors.iter().next().unwrap();
            let offset = first.data().as_ptr() as usize - bytes.as_ptr() as usize;
            assert!(offset < bytes.len(), "view data points into the message");
        }
    }
}

#[test]
fn tensor_data_is_a_raw_little_endian_bin() {
    let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
    let tensor = NamedTensor::from_f32("fc.weight", vec![10, 100], &values).unwrap();
    let raw = tensor.data().to_vec();
    let bytes = update(TensorSet::new(vec![tensor]).unwrap())
        .encode()
        .unwrap();
    // bin16 marker (0xc5), big-endian length 4000, then exactly the little-endian floats.
    let mut expected = vec![0xc5, 0x0f, 0xa0];
    expected.extend_from_slice(&raw);
    assert!(
        find(&bytes, &expected).is_some(),
        "data is not one bin of raw bytes"
    );
    assert!(
        bytes.len() < raw.len() + 300,
        "{} bytes for 4000 of data",
        bytes.len()
    );
    // Named fields, not positional arrays.
    for key in [
        "schema_version",
        "task_id",
        "base_digest",
        "crc32",
        "shape",
        "update",
    ] {
        assert!(find(&bytes, key.as_bytes()).is_some(), "no `{key}` key");
    }
}

#[test]
fn a_flipped_data_byte_is_a_checksum_error() {
    let bytes = small_update();
    let data = 3.0f32.to_le_bytes();
    let at = find(&bytes, &data).unwrap();
    let mut bad = bytes.clone();
    bad[at] ^= 0x40;
    match Envelope::decode(&bad) {
        Err(CodecError::Checksum {
            tensor,
            expected,
            actual,
        }) => {
            assert_eq!(tensor, "w");
            assert_ne!(expected, actual);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let message = decode_view(&bad).unwrap_err().to_string();
    assert!(
        message.starts_with("tensor `w`: checksum mismatch"),
        "{message}"
    );
    // Every single-bit error anywhere in the data of `w` is caught.
    let start = find(&bytes, &1.0f32.to_le_bytes()).unwrap();
    for at in start..start + 16 {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[at] ^= 1 << bit;
            assert!(
                matches!(Envelope::decode(&bad), Err(CodecError::Checksum { .. })),
                "bit {bit} of byte {at}"
            );
        }
    }
}

#[test]
fn truncated_and_extended_messages_are_refused() {
    let bytes = small_update();
    for len in 0..bytes.len() {
        let error = Envelope::decode(&bytes[..len]).unwrap_err();
        assert!(
            matches!(error, CodecError::Malformed { .. }),
            "prefix of {len} bytes: {error:?}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0xc0);
    assert_eq!(Envelope::decode(&longer), Err(CodecError::TrailingBytes));
    assert!(Envelope::decode(&bytes).is_ok());
}

#[test]
fn other_schema_versions_are_refused_by_name() {
    let mut message = update(every_dtype());
    message.schema_version = SCHEMA_VERSION + 1;
    let error = Envelope::decode(&message.encode().unwrap()).unwrap_err();
    assert_eq!(
        error,
        CodecError::SchemaVersion {
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
    message.schema_version = 1;
    assert!(
        matches!(
            Envelope::decode(&message.encode().unwrap()),
            Err(CodecError::SchemaVersion { found: 1, .. })
        ),
        "version 1 nodes cannot answer the round-end decision"
    );
    assert!(error.to_string().contains("upgrade the engine"), "{error}");
    message.schema_version = 0;
    assert!(matches!(
        Envelope::decode(&message.encode().unwrap()),
        Err(CodecError::SchemaVersion { found: 0, .. })
    ));

    // A newer message whose body this version cannot even parse still gets the version
    // error, not "malformed".
    #[derive(Serialize)]
    struct Future {
        schema_version: u32,
        task_id: &'static str,
        round: u64,
        sender: &'static str,
        body: FutureBody,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum FutureBody {
        Heartbeat { at: u64 },
    }
    let future = Future {
        schema_version: 7,
        task_id: "t",
        round: 0,
        sender: "x",
        body: FutureBody::Heartbeat { at: 1 },
    };
    let bytes = rmp_serde::to_vec_named(&future).unwrap();
    assert_eq!(
        Envelope::decode(&bytes),
        Err(CodecError::SchemaVersion {
            found: 7,
            supported: SCHEMA_VERSION
        })
    );
    let current = Future {
        schema_version: SCHEMA_VERSION,
        ..future
    };
    let bytes = rmp_serde::to_vec_named(&current).unwrap();
    assert!(matches!(
        Envelope::decode(&bytes),
        Err(CodecError::Malformed { .. })
    ));
}

/// A tensor record with any fields, to forge messages.
#[derive(Serialize)]
struct Raw<D: Serialize> {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<u64>,
    crc32: u32,
    data: D,
}

fn forged<D: Serialize>(tensors: Vec<Raw<D>>) -> Vec<u8> {
    let envelope = Envelope::new(
        "task-1",
        3,
        "hospital-a",
        Body::Update {
            samples: 1,
            base_digest: Digest::from_bytes([0; 32]),
            metrics: Metrics::default(),
            tensors,
        },
    );
    envelope.encode().unwrap()
}

fn raw(
    name: &'static str,
    dtype: &'static str,
    shape: Vec<u64>,
    data: &[u8],
) -> Raw<serde_bytes::ByteBuf> {
    Raw {
        name,
        dtype,
        shape,
        crc32: checksum(data),
        data: serde_bytes::ByteBuf::from(data.to_vec()),
    }
}

#[test]
fn inconsistent_tensors_are_refused_with_their_error() {
    // The forging path itself is sound.
    let good = forged(vec![raw("w", "F32", vec![2], &[0; 8])]);
    assert!(Envelope::decode(&good).is_ok());

    let short = forged(vec![raw("w", "F32", vec![3], &[0; 8])]);
    let error = Envelope::decode(&short).unwrap_err();
    assert_eq!(
        error,
        CodecError::Tensor(TensorError::DataLength {
            tensor: "w".into(),
            dtype: DType::F32,
            shape: vec![3],
            expected: 12,
            actual: 8,
        })
    );
    assert_eq!(
        error.to_string(),
        "tensor `w`: F32 data of shape [3] must be 12 bytes, found 8"
    );

    let huge = forged(vec![raw("w", "F64", vec![u64::MAX, u64::MAX], &[])]);
    assert!(matches!(
        Envelope::decode(&huge),
        Err(CodecError::Tensor(TensorError::ShapeOverflow { .. }))
    ));
    let dtype = forged(vec![raw("w", "F8", vec![1], &[0])]);
    assert_eq!(
        Envelope::decode(&dtype),
        Err(CodecError::UnknownDType {
            tensor: "w".into(),
            dtype: "F8".into()
        })
    );
    let twice = forged(vec![
        raw("w", "U8", vec![1], &[0]),
        raw("w", "U8", vec![1], &[1]),
    ]);
    assert_eq!(
        Envelope::decode(&twice),
        Err(CodecError::Tensor(TensorError::DuplicateName {
            tensor: "w".into()
        }))
    );
    let unnamed = forged(vec![raw("", "U8", vec![1], &[0])]);
    assert_eq!(
        Envelope::decode(&unnamed),
        Err(CodecError::Tensor(TensorError::EmptyName))
    );
    // Data as an array of numbers is not accepted.
    let array = forged(vec![Raw {
        name: "w",
        dtype: "U8",
        shape: vec![2],
        crc32: checksum(&[1, 2]),
        data: vec![1u8, 2],
    }]);
    assert!(matches!(
        Envelope::decode(&array),
        Err(CodecError::Malformed { .. })
    ));
    // Tensors in any order are accepted and sorted.
    let unsorted = forged(vec![
        raw("b", "U8", vec![1], &[0]),
        raw("a", "U8", vec![1], &[1]),
    ]);
    let names: Vec<String> = match Envelope::decode(&unsorted).unwrap().body {
        Body::Update { tensors, .. } => tensors.iter().map(|t| t.name().to_owned()).collect(),
        _ => unreachable!(),
    };
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn global_weights_must_carry_their_digest() {
    let tensors = every_dtype();
    let message = Envelope::new(
        "task-1",
        0,
        "coordinator",
        Body::GlobalWeights {
            digest: Digest::from_bytes([1; 32]),
            tensors: tensors.clone(),
        },
    );
    assert_eq!(
        Envelope::decode(&message.encode().unwrap()),
        Err(CodecError::DigestMismatch {
            declared: Digest::from_bytes([1; 32]),
            computed: tensors.digest(),
        })
    );
}

/// A mutation of a valid message.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, value: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let n = bytes.len();
    match mutation {
        Mutation::Flip { at, mask } => bytes[at % n] ^= mask,
        Mutation::Set { at, value } => bytes[at % n] = *value,
        Mutation::Truncate { len } => bytes.truncate(len % n),
        Mutation::Insert { at, bytes: new } => {
            let at = at % (n + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at % n;
            let end = (at + len).min(n);
            bytes.drain(at..end);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Hostile bytes never panic; whatever still decodes is a consistent message.
    #[test]
    fn mutated_messages_never_panic(mutations in proptest::collection::vec(mutation(), 1..4)) {
        let mut bytes = small_update();
        for m in &mutations {
            if bytes.is_empty() {
                break;
            }
            apply(&mut bytes, m);
        }
        let owned = Envelope::decode(&bytes);
        let view = decode_view(&bytes).map(|e| e.try_map_tensors(|v| Ok::<_, CodecError>(v.to_tensor_set())));
        prop_assert_eq!(owned.as_ref().err(), view.as_ref().err());
        if let Ok(decoded) = owned {
            // Whatever got through must still be a consistent message: re-encoding it gives
            // bytes that decode to the same message.
            let again = Envelope::decode(&decoded.encode().unwrap()).unwrap();
            prop_assert_eq!(again, decoded);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Envelope::decode(&bytes);
    }
}
