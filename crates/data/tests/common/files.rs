//! Helpers of the import and partition tests: real PNG files in temporary directories,
//! datasets read back with `Dataset::open`.

use std::fs;
use std::path::{Path, PathBuf};

use fl_data::{
    Dataset, ImportError, ImportOptions, ImportReport, OpenOptions, Split, import_dataset,
    no_progress,
};

pub fn png(path: &Path, value: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_raw(4, 4, vec![value; 16])
        .unwrap()
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

/// Writes `count` PNGs into `dir` named `img-<i>.png`.
pub fn pngs(dir: &Path, count: usize) {
    for i in 0..count {
        png(&dir.join(format!("img-{i:02}.png")), i as u8);
    }
}

pub fn import(source: &Path, target: &Path, options: &ImportOptions) -> ImportReport {
    import_dataset(source, target, options, &no_progress).unwrap()
}

pub fn import_err(source: &Path, target: &Path) -> ImportError {
    import_dataset(source, target, &ImportOptions::default(), &no_progress).unwrap_err()
}

pub fn open(dir: &Path) -> Dataset {
    Dataset::open(dir, &OpenOptions { strict: true }).unwrap()
}

pub fn annotation(dir: &Path) -> String {
    fs::read_to_string(dir.join("annotation.json")).unwrap()
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An ImageFolder tree: `Mélanome` 5 images (two in a nested folder), `cat` 20, `dog` 10,
/// plus a text file, a corrupt PNG and hidden entries.
pub fn image_folder(root: &Path) -> PathBuf {
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

/// Asserts that `result` failed, that its message contains every `needle`, and that
/// `tmp` holds exactly `expected` entries afterwards.
pub fn assert_failed<T: std::fmt::Debug, E: std::fmt::Display>(
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

/// A dataset of `labels` labels with `per_label` images each, imported from a folder.
pub fn dataset(root: &Path, labels: usize, per_label: usize) -> PathBuf {
    let src = root.join("src");
    for l in 0..labels {
        pngs(&src.join(format!("label {l}")), per_label);
    }
    let out = root.join("ds");
    import(&src, &out, &ImportOptions::default());
    out
}

/// Every sample path (relative to its dataset) with its split and label, of all shares.
pub fn all_samples<P: AsRef<Path>>(dirs: &[P]) -> Vec<(Split, String, usize)> {
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
