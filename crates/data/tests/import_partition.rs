//! Importing ImageFolder trees and CSV files into datasets, and partitioning datasets into
//! sites: real PNG files in temporary directories, read back with `Dataset::open`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use fl_data::{
    Dataset, ImportError, ImportOptions, ImportReport, ImportSkipReason, OpenOptions,
    PartitionError, PartitionOptions, PartitionScheme, Split, import_dataset, no_progress,
    partition_dataset,
};

/// Writes a 4x4 grey PNG whose pixels are all `value`.
fn png(path: &Path, value: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_raw(4, 4, vec![value; 16])
        .unwrap()
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

/// Writes `count` PNGs into `dir` named `img-<i>.png`.
fn pngs(dir: &Path, count: usize) {
    for i in 0..count {
        png(&dir.join(format!("img-{i:02}.png")), i as u8);
    }
}

fn import(source: &Path, target: &Path, options: &ImportOptions) -> ImportReport {
    import_dataset(source, target, options, &no_progress).unwrap()
}

fn import_err(source: &Path, target: &Path) -> ImportError {
    import_dataset(source, target, &ImportOptions::default(), &no_progress).unwrap_err()
}

fn open(dir: &Path) -> Dataset {
    Dataset::open(dir, &OpenOptions { strict: true }).unwrap()
}

fn annotation(dir: &Path) -> String {
    fs::read_to_string(dir.join("annotation.json")).unwrap()
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An ImageFolder tree: `Mélanome` 5 images (two in a nested folder), `cat` 20, `dog` 10,
/// plus a text file, a corrupt PNG and hidden entries.
fn image_folder(root: &Path) -> PathBuf {
    let src = root.join("src");
    pngs(&src.join("cat"), 20);
    pngs(&src.join("dog"), 10);
    pngs(&src.join("Mélanome"), 3);
    png(&src.join("Mélanome/patient 1/a.png"), 1);
    png(&src.join("Mélanome/patient 2/a.png"), 2);
    fs::write(src.join("dog/notes.txt"), "not an image").unwrap();
    fs::write(src.join("cat/broken.png"), b"\x89PNG\r\n\x1a\nrubbish").unwrap();
    fs::write(src.join(".DS_Store"), "x").unwrap();
    png(&src.join("cat/.hidden.png"), 9);
    src
}

#[test]
fn image_folders_import_stratified_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = image_folder(tmp.path());
    let out = tmp.path().join("out");
    let report = import(
        &src,
        &out,
        &ImportOptions {
            seed: 7,
            ..Default::default()
        },
    );

    // Code point order, as torchvision sorts class folders: "M" < "c" < "d".
    assert_eq!(report.labels, ["Mélanome", "cat", "dog"]);
    // 35 images at 0.8/0.1/0.1 is 28/3.5/3.5: largest remainders give 28/4/3 in all.
    assert_eq!(
        report.counts,
        [vec![4, 16, 8], vec![1, 2, 1], vec![0, 2, 1]]
    );
    assert_eq!(report.total(), 35);
    assert_eq!(report.hidden, 2);
    let skipped: Vec<(String, &ImportSkipReason)> = report
        .skipped
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().into_owned(),
                &s.reason,
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0].0, "broken.png");
    assert_eq!(skipped[1].0, "notes.txt");
    assert!(
        skipped
            .iter()
            .all(|(_, r)| matches!(r, ImportSkipReason::NotAnImage(_)))
    );
    let text = report.to_string();
    assert!(text.contains("skipped 2 files"), "{text}");
    assert!(
        text.contains("notes.txt: not a usable PNG or JPEG image"),
        "{text}"
    );
    assert!(text.contains("ignored 2 hidden entries"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("Mélanome") && l.ends_with(" 5"))
    );

    let dataset = open(&out);
    assert_eq!(dataset.labels, report.labels);
    for split in Split::ALL {
        assert_eq!(dataset.class_counts(split), report.counts[split as usize]);
    }
    // Images live under images/<class index>/ with safe, unique names.
    let mut files: Vec<String> = listing(&out.join("images/0"));
    files.sort();
    assert_eq!(
        files,
        [
            "img-00.png",
            "img-01.png",
            "img-02.png",
            "patient_1_a.png",
            "patient_2_a.png"
        ]
    );
    assert_eq!(listing(&out.join("images")), ["0", "1", "2"]);
    assert_eq!(
        listing(tmp.path()),
        ["out", "src"],
        "no staging directory left"
    );
    assert!(annotation(&out).contains("\"source\": \"import\""));
}

#[test]
fn the_same_seed_gives_the_same_dataset_and_another_seed_another() {
    let tmp = tempfile::tempdir().unwrap();
    let src = image_folder(tmp.path());
    let with_seed = |seed: u64, name: &str| {
        let out = tmp.path().join(name);
        import(
            &src,
            &out,
            &ImportOptions {
                seed,
                ..Default::default()
            },
        );
        annotation(&out)
    };
    let a = with_seed(1, "a");
    assert_eq!(a, with_seed(1, "b"));
    assert_ne!(a, with_seed(2, "c"));
}

#[test]
fn csv_imports_keep_quoted_labels_verbatim_whatever_the_row_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    pngs(&data.join("img"), 12);
    let absolute = tmp.path().join("elsewhere/abs.png");
    png(&absolute, 3);
    let labels = ["肺炎", "a, \"b\"", "x/y z"];
    let mut rows: Vec<String> = (0..12)
        .map(|i| {
            let label = labels[i % 3].replace('"', "\"\"");
            format!("{i},\"{label}\",img/img-{i:02}.png")
        })
        .collect();
    rows.push(format!("12,\"肺炎\",{}", absolute.display()));
    rows.push("13,x/y z,img/missing.png".into());
    let mut reversed_rows = rows.clone();
    reversed_rows.reverse();
    rows.push("14,x/y z,img/img-00.png".into());
    rows.push("15,,img/img-01.png".into());
    rows.push("16,x/y z".into());
    let header = "id,label,path\n";
    fs::write(data.join("a.csv"), format!("{header}{}\n", rows.join("\n"))).unwrap();
    let rows = reversed_rows;
    fs::write(
        data.join("b.csv"),
        format!("{header}{}\r\n", rows.join("\r\n")),
    )
    .unwrap();

    let out = tmp.path().join("out");
    let report = import(&data.join("a.csv"), &out, &ImportOptions::default());
    // Sorted by code point: 'a' < 'x' < '肺'.
    assert_eq!(report.labels, ["a, \"b\"", "x/y z", "肺炎"]);
    assert_eq!(report.total(), 13);
    let reasons: Vec<(Option<usize>, &ImportSkipReason)> =
        report.skipped.iter().map(|s| (s.line, &s.reason)).collect();
    assert_eq!(reasons.len(), 4);
    assert_eq!(reasons[0], (Some(15), &ImportSkipReason::NotFound));
    assert!(
        matches!(reasons[1], (Some(16), ImportSkipReason::Duplicate { first }) if first == "line 2")
    );
    assert_eq!(reasons[2], (Some(17), &ImportSkipReason::EmptyLabel));
    let short = ImportSkipReason::ShortRow {
        cells: 2,
        expected: 3,
    };
    assert_eq!(reasons[3], (Some(18), &short));
    let text = report.to_string();
    assert!(text.contains("skipped 4 files:"), "{text}");
    assert!(
        text.contains("  line 18: row has 2 cells, the header 3\n"),
        "{text}"
    );
    assert!(
        text.contains("line 15: ") && text.contains("missing.png: no such file"),
        "{text}"
    );
    let dataset = open(&out);
    assert_eq!(dataset.labels, report.labels);
    assert_eq!(dataset.len(), 13);
    let text = annotation(&out);
    assert!(
        text.contains("\"肺炎\"") && text.contains("\"x/y z\""),
        "{text}"
    );

    let reversed = tmp.path().join("reversed");
    import(&data.join("b.csv"), &reversed, &ImportOptions::default());
    assert_eq!(annotation(&reversed), text, "row order does not matter");

    // An explicit order replaces the sorted one; unlisted labels are skipped.
    let options = ImportOptions {
        labels: Some(vec!["x/y z".into(), "肺炎".into(), "unused".into()]),
        ..Default::default()
    };
    let ordered = import(&data.join("a.csv"), &tmp.path().join("ordered"), &options);
    assert_eq!(ordered.labels, ["x/y z", "肺炎", "unused"]);
    assert_eq!(
        ordered.counts[0][2] + ordered.counts[1][2] + ordered.counts[2][2],
        0
    );
    let not_listed = ordered
        .skipped
        .iter()
        .filter(|s| matches!(&s.reason, ImportSkipReason::LabelNotListed(l) if l == "a, \"b\""))
        .count();
    assert_eq!(not_listed, 4);
    assert_eq!(open(&tmp.path().join("ordered")).labels, ordered.labels);
}

#[cfg(unix)]
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

/// Asserts that `result` failed, that its message contains every `needle`, and that
/// `tmp` holds exactly `expected` entries afterwards.
fn assert_failed<T: std::fmt::Debug, E: std::fmt::Display>(
    result: Result<T, E>,
    needles: &[&str],
    tmp: &Path,
    expected: &[&str],
) {
    let message = result.unwrap_err().to_string();
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
    assert_eq!(listing(tmp), expected, "nothing written after: {message}");
}

#[test]
fn import_errors_name_the_problem_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("new/out");
    assert_failed(
        Err::<(), _>(import_err(&t.join("nope"), &out)),
        &["nope", "does not exist", "ImageFolder", "CSV"],
        t,
        &[],
    );
    fs::create_dir(t.join("empty")).unwrap();
    fs::write(t.join("empty/.DS_Store"), "").unwrap();
    assert_failed(
        Err::<(), _>(import_err(&t.join("empty"), &out)),
        &[
            "empty",
            "is empty (1 hidden entry ignored)",
            "SRC/<label>/<image>",
        ],
        t,
        &["empty"],
    );
    fs::create_dir_all(t.join("noimg/a")).unwrap();
    fs::write(t.join("noimg/a/x.txt"), "text").unwrap();
    assert_failed(
        Err::<(), _>(import_err(&t.join("noimg"), &out)),
        &["noimg", "no usable PNG or JPEG image", "x.txt"],
        t,
        &["empty", "noimg"],
    );
    pngs(&t.join("flat/a"), 2);
    fs::write(t.join("flat/readme.md"), "hi").unwrap();
    assert_failed(
        Err::<(), _>(import_err(&t.join("flat"), &out)),
        &["readme.md", "label folder", "SRC/<label>/<image>"],
        t,
        &["empty", "flat", "noimg"],
    );
    fs::write(t.join("bad.csv"), "file,class\na.png,x\n").unwrap();
    assert_failed(
        Err::<(), _>(import_err(&t.join("bad.csv"), &out)),
        &[
            "bad.csv",
            "header `file,class`",
            "no `path` column",
            "path,label",
        ],
        t,
        &["bad.csv", "empty", "flat", "noimg"],
    );
    fs::write(t.join("bad2.csv"), "path,label\n\"a.png,x\n").unwrap();
    assert_failed(
        Err::<(), _>(import_err(&t.join("bad2.csv"), &out)),
        &["bad2.csv:2:", "not closed"],
        t,
        &["bad.csv", "bad2.csv", "empty", "flat", "noimg"],
    );
    fs::remove_file(t.join("flat/readme.md")).unwrap();
    assert_failed(
        Err::<(), _>(import_err(&t.join("flat"), &t.join("flat/a/out"))),
        &["is inside the source folder"],
        t,
        &["bad.csv", "bad2.csv", "empty", "flat", "noimg"],
    );
    assert_eq!(listing(&t.join("flat/a")), ["img-00.png", "img-01.png"]);
    let labels = ImportOptions {
        labels: Some(vec!["a".into(), "a".into()]),
        ..Default::default()
    };
    let err = import_dataset(&t.join("flat"), &out, &labels, &no_progress).unwrap_err();
    assert!(
        err.to_string().starts_with("--labels repeats \"a\""),
        "{err}"
    );
    // A target that is not empty is refused before anything is read.
    let err = import_err(&t.join("flat"), &t.join("noimg"));
    assert!(matches!(err, ImportError::TargetNotEmpty { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("not empty; expected a new directory or an empty one")
    );
    assert!(!t.join("new").exists());
}

/// A dataset of `labels` labels with `per_label` images each, imported from a folder.
fn dataset(root: &Path, labels: usize, per_label: usize) -> PathBuf {
    let src = root.join("src");
    for l in 0..labels {
        pngs(&src.join(format!("label {l}")), per_label);
    }
    let out = root.join("ds");
    import(&src, &out, &ImportOptions::default());
    out
}

/// Every sample path (relative to its dataset) with its split and label, of all shares.
fn all_samples<P: AsRef<Path>>(dirs: &[P]) -> Vec<(Split, String, usize)> {
    let mut all = Vec::new();
    for dir in dirs {
        let d = open(dir.as_ref());
        for split in Split::ALL {
            for s in d.split(split) {
                let rel = s.path.strip_prefix(&d.root).unwrap();
                all.push((split, rel.to_string_lossy().into_owned(), s.label));
            }
        }
    }
    all.sort();
    all
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
