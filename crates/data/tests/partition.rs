//! Partitioning datasets into sites: real PNG files in temporary directories, every share
//! read back with `Dataset::open`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::files::*;
use fl_data::{
    ImportOptions, PartitionError, PartitionOptions, PartitionScheme, Split, partition_dataset,
};

#[test]
fn linked_imports_and_partitions_share_the_files() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    pngs(&src.join("a"), 4);
    let out = tmp.path().join("out");
    let report = import(
        &src,
        &out,
        &ImportOptions {
            link: true,
            ..Default::default()
        },
    );
    assert_eq!(report.linked, 4);
    let inode = |p: &Path| fs::metadata(p).unwrap().ino();
    let dataset = open(&out);
    let original = inode(&src.join("a/img-00.png"));
    assert!(dataset.train.iter().any(|s| inode(&s.path) == original));

    let sites = tmp.path().join("sites");
    let options = PartitionOptions {
        link: true,
        ..PartitionOptions::new(2)
    };
    partition_dataset(&out, &sites, &options).unwrap();
    let site = open(&sites.join("site-1"));
    assert!(
        site.train
            .iter()
            .all(|s| fs::metadata(&s.path).unwrap().nlink() == 3)
    );
}

#[test]
fn iid_partitions_deal_every_sample_to_exactly_one_site() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), 3, 20);
    let out = tmp.path().join("sites");
    let report = partition_dataset(&ds, &out, &PartitionOptions::new(4)).unwrap();
    let names: Vec<&str> = report.shares.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["site-1", "site-2", "site-3", "site-4"]);
    assert_eq!(listing(&out), names);
    let dirs: Vec<PathBuf> = report.shares.iter().map(|s| s.dir.clone()).collect();
    assert_eq!(all_samples(&dirs), all_samples(&[&ds]), "each sample once");
    for share in &report.shares {
        assert_eq!(
            share.total(Split::Train),
            12,
            "48 Train samples dealt evenly"
        );
        assert_eq!(open(&share.dir).labels, report.labels, "same class indices");
    }
    let text = report.to_string();
    assert!(text.contains("partitioned into 4 sites"), "{text}");
    assert!(
        text.contains("Train:\n  label    site-1  site-2  site-3  site-4  total"),
        "{text}"
    );
    assert!(
        text.contains("total        12      12      12      12     48"),
        "{text}"
    );

    let again = tmp.path().join("again");
    partition_dataset(&ds, &again, &PartitionOptions::new(4)).unwrap();
    let other = tmp.path().join("other");
    let seeded = PartitionOptions {
        seed: 9,
        ..PartitionOptions::new(4)
    };
    partition_dataset(&ds, &other, &seeded).unwrap();
    let site1 = |dir: &Path| annotation(&dir.join("site-1"));
    assert_eq!(site1(&out), site1(&again));
    assert_ne!(site1(&out), site1(&other));
}

#[test]
fn dirichlet_alpha_controls_label_skew() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), 4, 100);
    let run = |alpha: f64, name: &str| {
        let options = PartitionOptions {
            scheme: PartitionScheme::Dirichlet { alpha },
            ..PartitionOptions::new(4)
        };
        partition_dataset(&ds, &tmp.path().join(name), &options).unwrap()
    };
    // 80 Train samples per label over 4 sites: 20 each when uniform.
    let flat = run(1000.0, "flat");
    for share in &flat.shares {
        for l in 0..4 {
            let n = share.count(Split::Train, l);
            assert!((12..=28).contains(&n), "{}: label {l}: {n}", share.name);
        }
    }
    let skewed = run(0.05, "skewed");
    let mut dominated = 0;
    for l in 0..4 {
        let max = skewed
            .shares
            .iter()
            .map(|s| s.count(Split::Train, l))
            .max()
            .unwrap();
        if max >= 70 {
            dominated += 1;
        }
    }
    assert!(
        dominated >= 3,
        "small alpha gives most labels to one site:\n{skewed}"
    );
    for report in [&flat, &skewed] {
        let dirs: Vec<PathBuf> = report.shares.iter().map(|s| s.dir.clone()).collect();
        assert_eq!(all_samples(&dirs), all_samples(&[&ds]));
        assert!(report.shares.iter().all(|s| s.total(Split::Train) >= 1));
    }
}

#[test]
fn by_label_and_holdout_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), 5, 10);
    let options = PartitionOptions {
        scheme: PartitionScheme::ByLabel,
        holdout: true,
        ..PartitionOptions::new(2)
    };
    let out = tmp.path().join("sites");
    let report = partition_dataset(&ds, &out, &options).unwrap();
    assert_eq!(listing(&out), ["initiator", "site-1", "site-2"]);
    let labels_of = |name: &str| -> BTreeSet<usize> {
        let d = open(&out.join(name));
        Split::ALL
            .iter()
            .flat_map(|&s| d.split(s).iter().map(|x| x.label).collect::<Vec<_>>())
            .collect()
    };
    assert_eq!(labels_of("site-1"), BTreeSet::from([0, 2, 4]));
    assert_eq!(labels_of("site-2"), BTreeSet::from([1, 3]));
    for site in ["site-1", "site-2"] {
        let d = open(&out.join(site));
        assert!(
            d.validation.is_empty() && d.test.is_empty(),
            "{site} trains only"
        );
        assert_eq!(d.labels.len(), 5, "{site} keeps every label");
    }
    let initiator = open(&out.join("initiator"));
    let source = open(&ds);
    assert!(initiator.train.is_empty());
    assert_eq!(initiator.validation.len(), source.validation.len());
    assert_eq!(initiator.test.len(), source.test.len());
    let share = report.share("initiator").unwrap();
    assert_eq!(share.splits, [Split::Validation, Split::Test]);
    let text = report.to_string();
    assert!(text.contains("held out for the initiator"), "{text}");
    assert!(
        text.contains("Validation:\n  label    initiator  total"),
        "{text}"
    );
}

#[test]
fn partition_errors_name_the_flag_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ds = dataset(t, 2, 3); // 2 labels of 3 images: 5 Train, 1 Validation
    let out = t.join("deeper/out");
    let with = |options: PartitionOptions| partition_dataset(&ds, &out, &options);
    let after = ["ds", "src"];
    assert_failed(
        with(PartitionOptions::new(0)),
        &["--sites 0", "at least 1"],
        t,
        &after,
    );
    assert_failed(
        with(PartitionOptions::new(6)),
        &[
            "--sites 6",
            "the 5 Train samples",
            "expected --sites from 1 to 5",
        ],
        t,
        &after,
    );
    let min = PartitionOptions {
        min_per_site: 2,
        ..PartitionOptions::new(3)
    };
    assert_failed(with(min), &["expected --sites from 1 to 2"], t, &after);
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let bad = PartitionOptions {
            scheme: PartitionScheme::Dirichlet { alpha },
            ..PartitionOptions::new(2)
        };
        assert_failed(with(bad), &["--alpha", "greater than 0"], t, &after);
    }
    let by_label = PartitionOptions {
        scheme: PartitionScheme::ByLabel,
        ..PartitionOptions::new(3)
    };
    assert_failed(
        with(by_label),
        &["by-label", "2 labels", "from 1 to 2"],
        t,
        &after,
    );
    let unbalanced = PartitionOptions {
        scheme: PartitionScheme::Dirichlet { alpha: 0.001 },
        ..PartitionOptions::new(5)
    };
    assert_failed(
        with(unbalanced),
        &["after 10 draws", "larger --alpha or fewer --sites"],
        t,
        &after,
    );
    assert_failed(
        partition_dataset(&t.join("src"), &out, &PartitionOptions::new(1)),
        &["cannot read dataset", "no annotation file"],
        t,
        &after,
    );
    assert!(matches!(
        partition_dataset(&ds, &t.join("src"), &PartitionOptions::new(1)),
        Err(PartitionError::OutputNotEmpty { .. })
    ));
    let scheme = PartitionScheme::from_name("stripes", None)
        .unwrap_err()
        .to_string();
    assert!(
        scheme.contains("expected iid, dirichlet or by-label"),
        "{scheme}"
    );
    let alpha = PartitionScheme::from_name("iid", Some(0.5))
        .unwrap_err()
        .to_string();
    assert!(
        alpha.contains("--alpha only applies to --scheme dirichlet"),
        "{alpha}"
    );
    assert_eq!(
        PartitionScheme::from_name("Dirichlet", None).unwrap(),
        PartitionScheme::Dirichlet { alpha: 0.5 }
    );
}
