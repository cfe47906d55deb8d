//! Helpers for tests: tiny datasets with real PNG and JPEG files in temporary directories.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub mod files;

/// A dataset directory under a temporary parent (so files "outside" it can be made).
pub struct TempDataset {
    /// Keeps the temporary directory alive.
    pub parent: tempfile::TempDir,
    /// The dataset directory, `parent/ds`.
    pub dir: PathBuf,
}

impl TempDataset {
    pub fn new() -> Self {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("ds");
        fs::create_dir_all(dir.join("images")).unwrap();
        Self { parent, dir }
    }

    /// Writes a `width` x `height` grey PNG whose pixels are all `value`.
    pub fn grey(&self, relative: &str, width: u32, height: u32, value: u8) -> PathBuf {
        let pixels = vec![value; (width * height) as usize];
        self.grey_pixels(relative, width, height, pixels)
    }

    /// Writes a grey PNG with the given row-major pixels.
    pub fn grey_pixels(&self, relative: &str, width: u32, height: u32, pixels: Vec<u8>) -> PathBuf {
        let path = self.dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_raw(width, height, pixels)
            .unwrap()
            .save(&path)
            .unwrap();
        path
    }

    /// Writes an RGB image (PNG or JPEG by extension) with the given interleaved pixels.
    pub fn rgb_pixels(&self, relative: &str, width: u32, height: u32, pixels: Vec<u8>) -> PathBuf {
        let path = self.dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_raw(width, height, pixels)
            .unwrap()
            .save(&path)
            .unwrap();
        path
    }

    /// Writes `annotation.json`.
    pub fn annotation(&self, value: &Value) {
        fs::write(self.dir.join("annotation.json"), value.to_string()).unwrap();
    }

    /// Writes a file with arbitrary bytes.
    pub fn bytes(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    /// A path outside the dataset directory (in its parent).
    pub fn outside(&self, name: &str) -> PathBuf {
        self.parent.path().join(name)
    }
}

/// An AlphaMed sample with one tag per label.
pub fn sample(path: &str, labels: &[&str]) -> Value {
    let tags: Vec<Value> = labels
        .iter()
        .map(|l| json!({"label": l, "source": "manual"}))
        .collect();
    json!({"path": path, "tags": tags})
}

/// The canonical form of `path`, as `Sample::path` holds it.
pub fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap()
}
