//! Batching: seeded order, every sample once per epoch, identical output whatever the
//! number of workers, errors delivered in place.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::TempDataset;
use fl_data::{Batch, BatchOptions, DataError, Preprocessor, Sample, batches};
use fl_package::{Affine, PreprocessorConfig, Resample};

const N: usize = 10;

/// Ten 3x2 grey images; image `i` is uniformly `i * 20`, label `i % 3`.
fn samples(ds: &TempDataset) -> Vec<Sample> {
    (0..N)
        .map(|i| Sample {
            path: ds.grey(&format!("images/{i}.png"), 3, 2, (i * 20) as u8),
            label: i % 3,
        })
        .collect()
}

fn options(workers: usize) -> BatchOptions {
    BatchOptions {
        batch_size: 4,
        last_batch: fl_data::LastBatch::Keep,
        shuffle: true,
        augment: false,
        seed: 11,
        epoch: 0,
        workers,
        prefetch: 2,
    }
}

fn collect(samples: &[Sample], p: &Arc<Preprocessor>, o: BatchOptions) -> Vec<Batch> {
    batches(samples.to_vec(), Arc::clone(p), o)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn order(batches: &[Batch]) -> Vec<usize> {
    batches.iter().flat_map(|b| b.indices.clone()).collect()
}

#[test]
fn batches_hold_the_right_images_labels_and_sizes() {
    let ds = TempDataset::new();
    let s = samples(&ds);
    let p = Arc::new(Preprocessor::new(None, 1));
    let out = collect(&s, &p, options(2));
    let sizes: Vec<usize> = out.iter().map(|b| b.shape[0]).collect();
    assert_eq!(sizes, [4, 4, 2]);
    for b in &out {
        assert_eq!(b.shape[1..], [1, 2, 3]);
        assert_eq!(b.data.len(), b.shape.iter().product::<usize>());
        assert_eq!(b.labels.len(), b.shape[0]);
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[k], (i % 3) as i64);
            let image = &b.data[k * 6..(k + 1) * 6];
            assert!(image.iter().all(|&v| v == (i * 20) as f32 / 255.0));
        }
    }
    // Every sample exactly once.
    let mut seen = order(&out);
    seen.sort_unstable();
    assert_eq!(seen, (0..N).collect::<Vec<_>>());
}

#[test]
fn order_depends_on_seed_and_epoch_only() {
    let ds = TempDataset::new();
    let s = samples(&ds);
    let p = Arc::new(Preprocessor::new(None, 1));
    let first = order(&collect(&s, &p, options(2)));
    assert_eq!(first, order(&collect(&s, &p, options(3))));
    assert_ne!(first, (0..N).collect::<Vec<_>>(), "shuffled");
    let next_epoch = order(&collect(
        &s,
        &p,
        BatchOptions {
            epoch: 1,
            ..options(2)
        },
    ));
    assert_ne!(first, next_epoch);
    let other_seed = order(&collect(
        &s,
        &p,
        BatchOptions {
            seed: 12,
            ..options(2)
        },
    ));
    assert_ne!(first, other_seed);
    let unshuffled = BatchOptions {
        shuffle: false,
        ..options(2)
    };
    assert_eq!(
        order(&collect(&s, &p, unshuffled)),
        (0..N).collect::<Vec<_>>()
    );
}

#[test]
fn output_is_identical_with_0_1_and_4_workers() {
    let ds = TempDataset::new();
    // Images that differ pixel by pixel, so augmentation shows.
    let s: Vec<Sample> = (0..N)
        .map(|i| Sample {
            path: ds.grey_pixels(
                &format!("images/r{i}.png"),
                6,
                6,
                (0..36).map(|v| (v * 7 + i * 3) as u8).collect(),
            ),
            label: i % 2,
        })
        .collect();
    let config = PreprocessorConfig {
        resize: None,
        center_crop: None,
        affine: Some(Affine {
            degrees: (-20.0, 20.0),
            translate: (0.2, 0.2),
        }),
        horizontal_flip: true,
        rescale_factor: Some(1.0 / 255.0),
        normalize: None,
        resample: Resample::Bilinear,
    };
    let p = Arc::new(Preprocessor::new(Some(&config), 1));
    let augmented = |workers| BatchOptions {
        augment: true,
        batch_size: 3,
        ..options(workers)
    };
    let one = collect(&s, &p, augmented(1));
    assert_eq!(one, collect(&s, &p, augmented(4)));
    assert_eq!(one, collect(&s, &p, augmented(0)));
    // Augmentation did happen, and differs by epoch.
    let plain = collect(
        &s,
        &p,
        BatchOptions {
            augment: false,
            ..augmented(4)
        },
    );
    assert_eq!(order(&plain), order(&one));
    assert_ne!(plain, one);
    let next = collect(
        &s,
        &p,
        BatchOptions {
            epoch: 1,
            ..augmented(4)
        },
    );
    assert_ne!(next[0].data, one[0].data);
}

#[test]
fn a_bad_image_fails_its_batch_only() {
    let ds = TempDataset::new();
    let mut s = samples(&ds);
    s[5].path = ds.bytes("images/bad.png", b"garbage");
    let p = Arc::new(Preprocessor::new(None, 1));
    let unshuffled = BatchOptions {
        shuffle: false,
        ..options(3)
    };
    let results: Vec<_> = batches(s, p, unshuffled).collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    let message = results[1].as_ref().unwrap_err().to_string();
    assert!(message.contains("bad.png"), "{message}");
}

#[test]
fn images_of_different_sizes_in_a_batch_are_an_error_suggesting_size() {
    let ds = TempDataset::new();
    let mut s = samples(&ds);
    s[1].path = ds.grey("images/big.png", 5, 5, 0);
    let p = Arc::new(Preprocessor::new(None, 1));
    let first = batches(
        s,
        p,
        BatchOptions {
            shuffle: false,
            ..options(1)
        },
    )
    .next()
    .unwrap();
    match first {
        Err(e @ DataError::MixedSizes { .. }) => {
            let message = e.to_string();
            assert!(message.contains("big.png"), "{message}");
            assert!(message.contains("`size` in preprocessor_config.json"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_batch_size_is_an_error_and_empty_inputs_give_no_batches() {
    let p = Arc::new(Preprocessor::new(None, 1));
    let mut it = batches(
        Vec::new(),
        Arc::clone(&p),
        BatchOptions {
            batch_size: 0,
            ..options(2)
        },
    );
    assert!(matches!(
        it.next(),
        Some(Err(DataError::InvalidOptions {
            key: "batch_size",
            ..
        }))
    ));
    assert!(it.next().is_none());
    let mut empty = batches(Vec::new(), p, options(2));
    assert_eq!(empty.len(), 0);
    assert!(empty.next().is_none());
}

#[test]
fn dropping_the_iterator_early_stops_the_workers() {
    let ds = TempDataset::new();
    let s: Arc<[Sample]> = samples(&ds).into();
    let p = Arc::new(Preprocessor::new(None, 1));
    let o = BatchOptions {
        batch_size: 1,
        prefetch: 3,
        ..options(4)
    };
    let mut it = batches(Arc::clone(&s), Arc::clone(&p), o);
    assert_eq!(it.len(), N);
    assert!(it.next().unwrap().is_ok());
    assert_eq!(it.len(), N - 1);
    // Returns (joining the workers) rather than hanging on the unconsumed batches.
    drop(it);
    assert_eq!(
        Arc::strong_count(&p),
        1,
        "workers released the preprocessor"
    );
    assert_eq!(Arc::strong_count(&s), 1);
}
