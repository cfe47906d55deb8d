//! The engine's preprocessing against torchvision's, with torchvision as the oracle: photo-like
//! PNG and JPEG files (RGB, grey, RGBA; odd sizes, portrait and landscape) go through
//! `Preprocessor::load` for `preprocessor_config.json` configurations and through the
//! `Resize` / `CenterCrop` / `ToTensor` / `Normalize` pipeline a PyTorch user writes for
//! them (`tests/fixtures/torchvision_preprocess.py`, run by `FEDENGINE_PYTHON`), and the
//! tensors must agree to within [`TOLERANCE`] (PNG) or [`JPEG_TOLERANCE`] (JPEG).
//!
//! `cargo test -p fl-data --test torchvision_parity -- --nocapture` prints the largest
//! difference per resampling filter and configuration.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use fl_data::Preprocessor;
use fl_package::{Problems, parse_preprocessor};
use serde_json::{Value, json};

/// Largest accepted difference for PNG sources, in the units of the tensors (0..1 before
/// normalisation): resizing and cropping are exact, only `f32` arithmetic differs.
const TOLERANCE: f32 = 1e-5;

/// Largest accepted difference for JPEG sources (0..1 units). The engine decodes JPEG with
/// zune-jpeg, Pillow with libjpeg-turbo; their IDCT and chroma upsampling round differently,
/// by up to 1 level on grey images and 3 on colour ones here (4 on a 4:2:0 file that
/// libjpeg wrote), before any resize.
const JPEG_TOLERANCE: f32 = 4.0 / 255.0 + 1e-5;

/// The Python with torch and torchvision that `scripts/setup` installed.
fn python() -> String {
    std::env::var("FEDENGINE_PYTHON")
        .ok()
        .or_else(|| option_env!("FEDENGINE_PYTHON").map(str::to_owned))
        .expect(
            "FEDENGINE_PYTHON is not set: this test needs torchvision as its oracle; run \
             ./scripts/setup, which writes it into .cargo/config.toml, or point it at a Python \
             with torch, torchvision and pillow",
        )
}

/// A small deterministic generator for the images' noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Photo-like pixels: smooth gradients and texture, a sharp-edged disc, and noise, so that
/// every resampling filter's weights show.
fn photo(width: u32, height: u32, channels: usize, seed: u64) -> Vec<u8> {
    let mut noise = Noise(seed);
    let (w, h) = (f64::from(width), f64::from(height));
    let mut pixels = Vec::with_capacity((width * height) as usize * channels);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (f64::from(x), f64::from(y));
            let disc = ((fx - 0.6 * w).powi(2) + (fy - 0.4 * h).powi(2)).sqrt() < 0.25 * w.min(h);
            for c in 0..channels {
                let c = c as f64;
                let mut v = 120.0 + 70.0 * (fx * 0.21 + c).sin() * (fy * 0.13 - 0.5 * c).cos();
                v += 60.0 * (fx / w - fy / h) + if disc { 45.0 - 30.0 * c } else { 0.0 };
                v += 40.0 * (noise.next() - 0.5);
                pixels.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    pixels
}

/// Writes the test images into `dir`; returns `(name, path)` pairs.
fn write_images(dir: &Path) -> BTreeMap<&'static str, PathBuf> {
    let mut paths = BTreeMap::new();
    let mut save = |name: &'static str, image: image::DynamicImage| {
        let path = dir.join(name);
        image.save(&path).unwrap();
        paths.insert(name, path);
    };
    let rgb = |w, h, seed| image::RgbImage::from_raw(w, h, photo(w, h, 3, seed)).unwrap();
    let grey = |w, h, seed| image::GrayImage::from_raw(w, h, photo(w, h, 1, seed)).unwrap();
    save("landscape.png", rgb(97, 61, 1).into());
    save("portrait-grey.png", grey(40, 53, 2).into());
    save("small.png", rgb(13, 17, 3).into());
    let rgba = image::RgbaImage::from_raw(30, 22, photo(30, 22, 4, 4)).unwrap();
    save("alpha.png", rgba.into());
    save("photo.jpg", rgb(123, 77, 5).into());
    save("grey.jpg", grey(64, 48, 6).into());
    paths
}

/// One comparison: an image, the model's channel count, the engine's configuration and the
/// torchvision pipeline it stands for.
struct Case {
    name: String,
    image: &'static str,
    channels: u32,
    config: Value,
    torchvision: Value,
}

const FILTERS: [(&str, u64); 6] = [
    ("nearest", 0),
    ("bilinear", 2),
    ("bicubic", 3),
    ("lanczos", 1),
    ("box", 4),
    ("hamming", 5),
];

/// The configurations compared: `(label, preprocessor_config.json, torchvision steps)`.
/// `RESAMPLE` stands for each filter in turn.
fn configurations() -> Vec<(&'static str, Value, Value)> {
    let imagenet = json!({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]});
    vec![
        // Decoding and channel conversion alone.
        ("decode-only", json!({}), json!({})),
        // The user's case: torchvision `Resize(64)` + `CenterCrop(64)`.
        (
            "shortest-edge-64-crop-64",
            json!({"size": {"shortest_edge": 64}, "crop_size": 64, "resample": "RESAMPLE"}),
            json!({"resize": {"size": 64}, "center_crop": [64, 64]}),
        ),
        (
            "shortest-edge-24-down",
            json!({"size": {"shortest_edge": 24}, "resample": "RESAMPLE"}),
            json!({"resize": {"size": 24}}),
        ),
        (
            "exact-90x71-up",
            json!({"size": {"height": 90, "width": 71}, "resample": "RESAMPLE"}),
            json!({"resize": {"size": [90, 71]}}),
        ),
        (
            "alphamed-size-48",
            json!({"size": 48, "resample": "RESAMPLE"}),
            json!({"resize": {"size": [48, 48]}}),
        ),
        // Margins of 37, 21 and 13 pixels: Python rounds x.5 to even.
        (
            "crop-only-40x60",
            json!({"crop_size": {"height": 40, "width": 60}}),
            json!({"center_crop": [40, 60]}),
        ),
        // Crops larger than the image pad with zeros, the smaller half before.
        (
            "shortest-edge-20-crop-35x27-pads",
            json!({"size": {"shortest_edge": 20}, "crop_size": {"height": 35, "width": 27}}),
            json!({"resize": {"size": 20}, "center_crop": [35, 27]}),
        ),
        (
            "shortest-edge-33-crop-29-normalized",
            json!({"size": {"shortest_edge": 33}, "crop_size": 29,
                   "image_mean": imagenet["mean"], "image_std": imagenet["std"]}),
            json!({"resize": {"size": 33}, "center_crop": [29, 29], "normalize": imagenet}),
        ),
    ]
}

/// Every configuration on every image, RGB and grey, once per filter where it resizes.
fn cases() -> Vec<Case> {
    let images = [
        "landscape.png",
        "portrait-grey.png",
        "small.png",
        "alpha.png",
        "photo.jpg",
        "grey.jpg",
    ];
    let mut cases = Vec::new();
    for (label, config, steps) in configurations() {
        let resamples = config.get("resample").is_some();
        for (filter, number) in FILTERS {
            if !resamples && filter != "bilinear" {
                continue;
            }
            for image in images {
                for channels in [3, 1] {
                    let normalized = steps.get("normalize").is_some();
                    if normalized && channels == 1 {
                        continue;
                    }
                    let mut config = config.clone();
                    let mut torchvision = steps.clone();
                    torchvision["mode"] = json!(if channels == 3 { "RGB" } else { "L" });
                    if resamples {
                        config["resample"] = json!(number);
                        torchvision["resize"]["interpolation"] = json!(filter);
                    } else if torchvision.get("resize").is_some() {
                        torchvision["resize"]["interpolation"] = json!("bilinear");
                    }
                    cases.push(Case {
                        name: format!("{label}.{filter}.{image}.{channels}"),
                        image,
                        channels,
                        config,
                        torchvision,
                    });
                }
            }
        }
    }
    cases
}

/// Runs the oracle; returns each case's tensor and shape.
fn torchvision(
    cases: &[Case],
    images: &BTreeMap<&str, PathBuf>,
    dir: &Path,
) -> BTreeMap<String, (Vec<f32>, Vec<usize>)> {
    let specs: Vec<Value> = cases
        .iter()
        .map(|c| {
            let mut spec = c.torchvision.clone();
            spec["name"] = json!(c.name);
            spec["image"] = json!(images[c.image]);
            spec
        })
        .collect();
    let spec_file = dir.join("spec.json");
    fs::write(&spec_file, json!({ "cases": specs }).to_string()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision_preprocess.py");
    let out = dir.join("torchvision");
    let python = python();
    let output = Command::new(&python)
        .arg(&script)
        .arg(&spec_file)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run FEDENGINE_PYTHON={python}: {e}"));
    assert!(
        output.status.success(),
        "the torchvision oracle failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shapes: BTreeMap<String, Vec<usize>> =
        serde_json::from_slice(&fs::read(out.join("shapes.json")).unwrap()).unwrap();
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let bytes = fs::read(out.join(format!("{name}.f32"))).unwrap();
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (values, shape))
        })
        .collect()
}

/// The engine's tensor for a case, from its `preprocessor_config.json` text.
fn engine(case: &Case, path: &Path) -> (Vec<f32>, Vec<usize>) {
    let mut problems = Problems::default();
    let config = parse_preprocessor(&case.config.to_string(), &mut problems)
        .unwrap_or_else(|| panic!("{}: {problems}", case.name));
    assert!(problems.is_empty(), "{}: {problems}", case.name);
    let image = Preprocessor::new(Some(&config), case.channels)
        .load(path, None)
        .unwrap();
    let shape = image.shape().to_vec();
    (image.data, shape)
}

/// The largest difference scaled back to 0..1 units (normalisation divides by `std`).
fn max_difference(case: &Case, engine: &[f32], torchvision: &[f32]) -> f32 {
    let std = case.torchvision["normalize"]["std"]
        .as_array()
        .map_or(1.0, |s| {
            s.iter().filter_map(Value::as_f64).fold(1.0, f64::min)
        }) as f32;
    engine
        .iter()
        .zip(torchvision)
        .map(|(a, b)| (a - b).abs() * std)
        .fold(0.0, f32::max)
}

#[test]
fn preprocessing_matches_torchvision_on_pil_images() {
    let dir = tempfile::tempdir().unwrap();
    let images = write_images(dir.path());
    let cases = cases();
    let expected = torchvision(&cases, &images, dir.path());
    // (configuration, filter, PNG or JPEG) -> largest difference in 255ths.
    let mut table: BTreeMap<(String, String, &str), f32> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let (values, shape) = engine(case, &images[case.image]);
        let (oracle, oracle_shape) = &expected[&case.name];
        if &shape != oracle_shape {
            failures.push(format!(
                "{}: shape {shape:?}, torchvision {oracle_shape:?}",
                case.name
            ));
            continue;
        }
        let difference = max_difference(case, &values, oracle);
        let jpeg = case.image.ends_with(".jpg");
        let tolerance = if jpeg { JPEG_TOLERANCE } else { TOLERANCE };
        if difference > tolerance {
            failures.push(format!(
                "{}: differs by {difference:.6} (tolerance {tolerance:.6})",
                case.name
            ));
        }
        let mut parts = case.name.split('.');
        let (label, filter) = (parts.next().unwrap(), parts.next().unwrap());
        let kind = case.image;
        let entry = table
            .entry((label.to_owned(), filter.to_owned(), kind))
            .or_default();
        *entry = entry.max(difference * 255.0);
    }
    eprintln!("largest difference to torchvision, in 1/255 units:");
    for ((label, filter, kind), difference) in &table {
        eprintln!("  {label:<36} {filter:<9} {kind:<4} {difference:.4}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from torchvision:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
