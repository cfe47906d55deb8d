//! The committed example data in `datasets/digits`: complete, clean, and partitioned
//! consistently between the central copy, the initiator and the three sites.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fl_data::{BatchOptions, Dataset, OpenOptions, Preprocessor, Sample, Split, batches};

fn digits(name: &str) -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/digits")
        .join(name);
    let d = Dataset::open(&dir, &OpenOptions { strict: true }).unwrap();
    assert!(d.report.is_clean(), "{name}: {}", d.report);
    let expected: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    assert_eq!(d.labels, expected, "{name}");
    d
}

/// File name -> (label, bytes) for a list of samples; file names are unique per dataset.
fn by_name(samples: &[Sample]) -> BTreeMap<String, (usize, Vec<u8>)> {
    let map: BTreeMap<_, _> = samples
        .iter()
        .map(|s| {
            let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, (s.label, fs::read(&s.path).unwrap()))
        })
        .collect();
    assert_eq!(map.len(), samples.len(), "duplicate file names");
    map
}

#[test]
fn central_holds_all_1797_images_in_three_splits() {
    let central = digits("central");
    assert_eq!(central.len(), 1797);
    assert_eq!(
        (
            central.train.len(),
            central.validation.len(),
            central.test.len()
        ),
        (1293, 144, 360)
    );
    // Stratified: every class in every split, in proportion (about 10% each).
    for split in Split::ALL {
        let counts = central.class_counts(split);
        let n = central.split(split).len();
        for (class, &c) in counts.iter().enumerate() {
            assert!(c * 10 >= n * 8 / 10, "{split} class {class}: {c} of {n}");
        }
    }
    let all: Vec<PathBuf> = Split::ALL
        .iter()
        .flat_map(|&s| central.split(s).iter().map(|x| x.path.clone()))
        .collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "an image is in two splits");
}

#[test]
fn sites_and_initiator_partition_the_central_images() {
    let central = digits("central");
    let initiator = digits("initiator");
    assert!(initiator.train.is_empty());
    assert_eq!(by_name(&initiator.validation), by_name(&central.validation));
    assert_eq!(by_name(&initiator.test), by_name(&central.test));

    let mut union = BTreeMap::new();
    let mut majorities = Vec::new();
    for k in 1..=3 {
        let site = digits(&format!("site-{k}"));
        assert!(site.validation.is_empty() && site.test.is_empty());
        let counts = site.class_counts(Split::Train);
        // Label skew, but most classes present.
        assert!(
            counts.iter().filter(|&&c| c >= 3).count() >= 7,
            "site-{k}: {counts:?}"
        );
        let max = counts.iter().max().unwrap();
        majorities.push(counts.iter().position(|c| c == max).unwrap());
        for (name, value) in by_name(&site.train) {
            assert!(
                union.insert(name.clone(), value).is_none(),
                "{name} on two sites"
            );
        }
    }
    assert_eq!(union, by_name(&central.train));
    majorities.dedup();
    assert_eq!(majorities.len(), 3, "each site has its own majority class");
}

#[test]
fn digits_load_as_8x8_grey_images_in_unit_range() {
    let central = digits("central");
    let p = Arc::new(Preprocessor::new(None, 1));
    let options = BatchOptions {
        batch_size: 100,
        ..BatchOptions::default()
    };
    let mut total = 0;
    let mut max = 0.0f32;
    for batch in batches(central.test, p, options) {
        let batch = batch.unwrap();
        assert_eq!(batch.shape[1..], [1, 8, 8]);
        assert!(batch.data.iter().all(|v| (0.0..=1.0).contains(v)));
        max = batch.data.iter().copied().fold(max, f32::max);
        total += batch.shape[0];
    }
    assert_eq!(total, 360);
    assert_eq!(max, 1.0, "16/16 ink maps to 255");
}
