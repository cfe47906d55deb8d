//! Opening datasets: every kind of unusable sample is counted by split and reason (and is
//! an error in strict mode); CVAT exports; which annotation file is read.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::{TempDataset, canonical, sample};
use fl_data::{DataError, Dataset, OpenOptions, SkipReason, Split};
use serde_json::json;

const LENIENT: OpenOptions = OpenOptions { strict: false };
const STRICT: OpenOptions = OpenOptions { strict: true };

/// A dataset with one good sample per split plus `bad` samples in `split`, opened leniently
/// and strictly. Returns the lenient result after checking that strict mode refuses it.
fn open_with(ds: &TempDataset, split: Split, bad: Vec<serde_json::Value>) -> Dataset {
    let good = |s: Split| format!("images/good-{}.png", s.name());
    let mut splits = serde_json::Map::new();
    for s in Split::ALL {
        ds.grey(&good(s), 4, 4, 10);
        let mut items = vec![sample(&good(s), &["a"])];
        if s == split {
            items.extend(bad.iter().cloned());
        }
        splits.insert(s.name().to_owned(), json!(items));
    }
    let mut root = json!({"labels": ["a", "b"]});
    root.as_object_mut().unwrap().extend(splits);
    ds.annotation(&root);

    let dataset = Dataset::open(&ds.dir, &LENIENT).unwrap();
    for s in Split::ALL {
        assert_eq!(dataset.split(s).len(), 1, "{s}: the good sample is kept");
        assert_eq!(dataset.split(s)[0].path, canonical(&ds.dir.join(good(s))));
    }
    assert_eq!(dataset.report.total_skipped(), bad.len());
    match Dataset::open(&ds.dir, &STRICT) {
        Err(DataError::Rejected {
            skipped, summary, ..
        }) => {
            assert_eq!(skipped, bad.len());
            assert!(summary.starts_with(split.name()), "{summary}");
        }
        other => panic!("strict mode accepted the dataset: {other:?}"),
    }
    dataset
}

#[test]
fn unlabeled_samples_are_counted() {
    let ds = TempDataset::new();
    ds.grey("images/x.png", 4, 4, 1);
    let bad = vec![
        sample("images/x.png", &[]),
        json!({"path": "images/x.png"}),
        json!({"path": "images/x.png", "tags": null}),
    ];
    let d = open_with(&ds, Split::Validation, bad);
    assert_eq!(d.report.count(Split::Validation, SkipReason::Unlabeled), 3);
    assert_eq!(d.report.entries[0].examples[0], "images/x.png");
}

#[test]
fn multi_labeled_samples_are_counted_but_repeated_tags_are_one_label() {
    let ds = TempDataset::new();
    ds.grey("images/x.png", 4, 4, 1);
    let bad = vec![sample("images/x.png", &["a", "b"])];
    let d = open_with(&ds, Split::Train, bad);
    assert_eq!(d.report.count(Split::Train, SkipReason::MultiLabeled), 1);
    assert_eq!(d.report.entries[0].examples[0], "images/x.png (a, b)");

    // The same label twice is a single label.
    let ds = TempDataset::new();
    ds.grey("images/x.png", 4, 4, 1);
    ds.annotation(&json!({"labels": ["a", "b"], "Train": [sample("images/x.png", &["b", "b"])]}));
    let d = Dataset::open(&ds.dir, &STRICT).unwrap();
    assert_eq!(d.train[0].label, 1);
}

#[test]
fn unknown_labels_are_counted() {
    let ds = TempDataset::new();
    ds.grey("images/x.png", 4, 4, 1);
    let bad = vec![
        sample("images/x.png", &["c"]),
        sample("images/x.png", &["A"]),
    ];
    let d = open_with(&ds, Split::Test, bad);
    assert_eq!(d.report.count(Split::Test, SkipReason::UnknownLabel), 2);
    assert_eq!(d.report.count(Split::Train, SkipReason::UnknownLabel), 0);
}

#[test]
fn missing_files_are_counted() {
    let ds = TempDataset::new();
    fs::create_dir(ds.dir.join("images/dir.png")).unwrap();
    let bad = vec![
        sample("images/none.png", &["a"]),
        sample("", &["a"]),
        sample("images/dir.png", &["a"]),
    ];
    let d = open_with(&ds, Split::Train, bad);
    assert_eq!(d.report.count(Split::Train, SkipReason::MissingFile), 3);
    assert!(d.report.to_string().contains("images/none.png"));
}

#[test]
fn undecodable_files_are_counted_with_the_decoders_reason() {
    let ds = TempDataset::new();
    ds.bytes("images/text.png", b"not an image at all");
    ds.bytes("images/empty.jpg", b"");
    // A PNG signature followed by garbage.
    ds.bytes("images/broken.png", b"\x89PNG\r\n\x1a\n\0\0\0\0garbage");
    let bad = vec![
        sample("images/text.png", &["a"]),
        sample("images/empty.jpg", &["b"]),
        sample("images/broken.png", &["a"]),
    ];
    let d = open_with(&ds, Split::Validation, bad);
    assert_eq!(
        d.report.count(Split::Validation, SkipReason::Undecodable),
        3
    );
    let text = &d.report.undecodable[0];
    assert_eq!(
        (text.split, text.path.as_str()),
        (Split::Validation, "images/text.png")
    );
    assert_eq!(text.reason, "unknown format");
    assert!(
        d.report
            .to_string()
            .contains("images/text.png (unknown format)")
    );
}

/// Photo-like pixels, so that the compressed data spans many bytes.
fn noisy(width: u32, height: u32) -> Vec<u8> {
    (0..width * height * 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 / 2 + (i % 97) as u8)
        .collect()
}

#[test]
fn truncated_images_are_left_out_naming_the_file_and_listed_in_strict_mode() {
    let ds = TempDataset::new();
    let whole_png = ds.rgb_pixels("images/whole.png", 64, 48, noisy(64, 48));
    let whole_jpg = ds.rgb_pixels("images/whole.jpg", 64, 48, noisy(64, 48));
    let mut bad = Vec::new();
    for (whole, cut) in [(&whole_png, "cut.png"), (&whole_jpg, "cut.jpg")] {
        let bytes = fs::read(whole).unwrap();
        // Five copies, more than a report keeps as examples.
        for i in 0..5 {
            let path = format!("images/{i}-{cut}");
            let written = ds.bytes(&path, &bytes[..bytes.len() / 2]);
            // The header is intact: only decoding the whole file shows the problem.
            let reader = image::ImageReader::open(&written).unwrap();
            assert_eq!(
                reader
                    .with_guessed_format()
                    .unwrap()
                    .into_dimensions()
                    .unwrap(),
                (64, 48)
            );
            bad.push(sample(&path, &["b"]));
        }
    }
    bad.push(sample("images/whole.png", &["a"]));
    bad.push(sample("images/whole.jpg", &["a"]));
    ds.annotation(&json!({"labels": ["a", "b"], "Train": bad}));

    let d = Dataset::open(&ds.dir, &LENIENT).unwrap();
    let kept: Vec<_> = d.train.iter().map(|s| s.path.clone()).collect();
    assert_eq!(kept, [canonical(&whole_png), canonical(&whole_jpg)]);
    assert_eq!(d.report.count(Split::Train, SkipReason::Undecodable), 10);
    assert_eq!(d.report.undecodable.len(), 10);
    let summary = d.report.to_string();
    assert!(summary.contains("images/0-cut.png ("), "{summary}");
    for image in &d.report.undecodable {
        assert!(!image.reason.is_empty(), "{image:?}");
    }

    let message = Dataset::open(&ds.dir, &STRICT).unwrap_err().to_string();
    assert!(message.contains("10 samples cannot be used"), "{message}");
    for image in &d.report.undecodable {
        let line = format!("  {} (Train): {}", image.path, image.reason);
        assert!(message.contains(&line), "{line} missing from:\n{message}");
    }
    assert!(message.contains("images/4-cut.jpg (Train): "), "{message}");
}

#[test]
fn paths_escaping_the_dataset_are_counted() {
    let ds = TempDataset::new();
    let outside = ds.outside("secret.png");
    image::GrayImage::new(4, 4).save(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, ds.dir.join("images/link.png")).unwrap();
    std::os::unix::fs::symlink(ds.parent.path(), ds.dir.join("up")).unwrap();
    let bad = vec![
        sample("../secret.png", &["a"]),
        sample("images/../../secret.png", &["a"]),
        sample(outside.to_str().unwrap(), &["a"]),
        sample("images/link.png", &["a"]),
        sample("up/secret.png", &["a"]),
    ];
    let d = open_with(&ds, Split::Train, bad);
    assert_eq!(d.report.count(Split::Train, SkipReason::PathEscapes), 5);

    // A link that stays inside is followed; the sample holds the real file.
    std::os::unix::fs::symlink("good-Train.png", ds.dir.join("images/inner.png")).unwrap();
    ds.annotation(&json!({"labels": ["a"], "Train": [sample("images/inner.png", &["a"])]}));
    let d = Dataset::open(&ds.dir, &STRICT).unwrap();
    assert_eq!(
        d.train[0].path,
        canonical(&ds.dir.join("images/good-Train.png"))
    );
}

#[test]
fn null_and_absent_splits_are_empty() {
    let ds = TempDataset::new();
    ds.grey("images/x.png", 4, 4, 1);
    ds.annotation(
        &json!({"labels": ["a"], "Train": [sample("images/x.png", &["a"])],
                          "Validation": null, "notes": "x"}),
    );
    let d = Dataset::open(&ds.dir, &STRICT).unwrap();
    assert_eq!((d.train.len(), d.validation.len(), d.test.len()), (1, 0, 0));
    assert_eq!(d.report.total_skipped(), 0);
    assert_eq!(d.report.ignored_keys, ["notes"]);
    assert_eq!(d.labels, ["a"]);
    assert_eq!(d.root, canonical(&ds.dir));
}

#[test]
fn malformed_annotation_files_name_the_file_and_key() {
    let ds = TempDataset::new();
    fs::write(
        ds.dir.join("annotation.json"),
        "{\"labels\": [\"a\", \"a\"]}",
    )
    .unwrap();
    let message = Dataset::open(&ds.dir, &LENIENT).unwrap_err().to_string();
    assert!(message.contains("annotation.json"), "{message}");
    assert!(message.contains("`labels[1]`"), "{message}");
    assert!(
        message.contains("expected a list of distinct class names"),
        "{message}"
    );

    fs::write(
        ds.dir.join("annotation.json"),
        "{\"labels\": [\"a\"],\n\"Train\": [}",
    )
    .unwrap();
    match Dataset::open(&ds.dir, &LENIENT) {
        Err(DataError::Syntax { line: 2, file, .. }) => {
            assert!(file.ends_with("annotation.json"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_annotation_file_or_directory_is_a_clear_error() {
    let ds = TempDataset::new();
    let message = Dataset::open(&ds.dir, &LENIENT).unwrap_err().to_string();
    assert!(message.contains("has no annotation file"), "{message}");
    assert!(message.contains("annotation.json") && message.contains("annotations.xml"));
    assert!(message.contains(ds.dir.to_str().unwrap()), "{message}");
    assert!(matches!(
        Dataset::open(&ds.dir.join("nope"), &LENIENT),
        Err(DataError::Directory { .. })
    ));
}

const CVAT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>cat</name></label><label><name>dog</name></label>
  </labels></task></meta>
  <image id="0" name="images/a.png" subset="Train" width="4" height="4"><tag label="cat" source="manual"/></image>
  <image id="1" name="b.png" subset="Validation" width="4" height="4"><tag label="dog" source="manual"/></image>
  <image id="2" name="c.png" subset="test" width="4" height="4"><tag label="dog" source="manual"/></image>
  <image id="3" name="images/a.png" subset="default" width="4" height="4"><tag label="cat"/></image>
  <image id="4" name="images/a.png" width="4" height="4"><tag label="cat"/></image>
  <image id="5" name="images/a.png" subset="Train" width="4" height="4"/>
</annotations>"#;

#[test]
fn cvat_exports_are_read_with_unknown_subsets_reported() {
    let ds = TempDataset::new();
    ds.grey("images/a.png", 4, 4, 1);
    ds.grey("images/b.png", 4, 4, 2); // CVAT puts `b.png` under images/
    ds.grey("images/test/c.png", 4, 4, 3); // ...or images/<subset>/ in project exports
    fs::write(ds.dir.join("annotations.xml"), CVAT).unwrap();
    let d = Dataset::open(&ds.dir, &LENIENT).unwrap();
    assert_eq!(d.labels, ["cat", "dog"]);
    assert_eq!(d.train.len(), 1);
    assert_eq!(d.train[0].label, 0);
    assert_eq!(
        d.validation[0].path,
        canonical(&ds.dir.join("images/b.png"))
    );
    assert_eq!(d.validation[0].label, 1);
    assert_eq!(d.test[0].path, canonical(&ds.dir.join("images/test/c.png")));
    assert_eq!(d.report.count_in(None, SkipReason::UnknownSubset), 2);
    assert_eq!(d.report.count(Split::Train, SkipReason::Unlabeled), 1);
    assert_eq!(d.report.total_skipped(), 3);
    let text = d.report.to_string();
    assert!(text.contains("images/a.png (subset \"default\")"), "{text}");
    assert!(text.contains("images/a.png (no subset)"), "{text}");
    assert!(matches!(
        Dataset::open(&ds.dir, &STRICT),
        Err(DataError::Rejected { skipped: 3, .. })
    ));
}

#[test]
fn annotation_json_is_preferred_over_cvat_xml() {
    let ds = TempDataset::new();
    ds.grey("images/a.png", 4, 4, 1);
    fs::write(ds.dir.join("annotation.xml"), CVAT).unwrap();
    let d = Dataset::open(&ds.dir, &LENIENT).unwrap();
    assert!(d.report.file.ends_with("annotation.xml"));
    assert_eq!(d.labels, ["cat", "dog"]);
    ds.annotation(&json!({"labels": ["z"], "Train": [sample("images/a.png", &["z"])]}));
    let d = Dataset::open(&ds.dir, &LENIENT).unwrap();
    assert!(d.report.file.ends_with("annotation.json"));
    assert_eq!(d.labels, ["z"]);
}

#[test]
fn files_listed_twice_are_counted_once_and_never_leak_into_test() {
    let ds = TempDataset::new();
    ds.grey("images/x.png", 4, 4, 1);
    ds.grey("images/y.png", 4, 4, 2);
    ds.annotation(&json!({
        "labels": ["a", "b"],
        "Train": [sample("images/x.png", &["a"]), sample("./images/x.png", &["a"]), sample("images/y.png", &["b"])],
        "Test": [sample("images/x.png", &["a"])],
    }));
    let dataset = Dataset::open(&ds.dir, &LENIENT).unwrap();
    assert_eq!(dataset.train.len(), 2);
    assert!(
        dataset.test.is_empty(),
        "the Train image does not count as a Test image"
    );
    assert_eq!(dataset.report.count(Split::Train, SkipReason::Duplicate), 1);
    assert_eq!(dataset.report.count(Split::Test, SkipReason::Duplicate), 1);
    let shown = dataset.report.to_string();
    assert!(
        shown.contains("images/x.png (first listed in Train)"),
        "{shown}"
    );
    assert!(matches!(
        Dataset::open(&ds.dir, &STRICT),
        Err(DataError::Rejected { skipped: 2, .. })
    ));
}
