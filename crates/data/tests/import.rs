//! Importing ImageFolder trees and CSV files into datasets: real PNG files in temporary
//! directories, read back with `Dataset::open`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::files::*;
use fl_data::{ImportError, ImportOptions, ImportSkipReason, Split, import_dataset, no_progress};

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
