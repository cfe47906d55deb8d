//! A weights file named by a package's `param_file`: its format recognised from its bytes
//! (`fl_package::inspect_param_file`) and its tensors read (`fl_torch::read_param_file`:
//! safetensors, PyTorch `torch.save` archive through the restricted unpickler, libtorch
//! `.ot` through libtorch).
//!
//! Input: `[mode, rest...]`. An even `mode` makes `rest` the file itself. An odd one builds a
//! PyTorch archive from `rest`, a sequence of `[length: u32 LE][bytes]` chunks: the first is
//! `archive/data.pkl`, the next ones `archive/data/0`, `archive/data/1`, ... (the storages);
//! stored, with valid CRCs, so that mutations reach the unpickler instead of failing the
//! zip's checksum. The readers take a path, so the file is written to a temporary directory
//! (one per process, the same file every time).

#![no_main]

use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// The file every input is written to.
fn file_path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("weights");
        (dir, path)
    });
    path
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        pytorch_archive(rest)
    };
    let path = file_path();
    std::fs::write(path, &bytes).expect("temporary file written");

    let _ = fl_package::inspect_param_file(path).map_err(|e| e.to_string());
    match fl_torch::read_param_file(path) {
        Ok(file) => {
            for (_, tensor) in &file.tensors {
                let _ = (tensor.size(), tensor.kind(), tensor.numel());
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});

/// A stored zip holding `archive/data.pkl`, `archive/byteorder` and the storages.
fn pytorch_archive(mut rest: &[u8]) -> Vec<u8> {
    let mut chunks = Vec::new();
    while let [a, b, c, d, tail @ ..] = rest {
        let len = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(tail.len());
        chunks.push(&tail[..len]);
        rest = &tail[len..];
    }
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut add = |name: &str, bytes: &[u8]| {
        zip.start_file(name, options).expect("zip entry");
        zip.write_all(bytes).expect("zip entry written");
    };
    let mut chunks = chunks.into_iter();
    add("archive/data.pkl", chunks.next().unwrap_or_default());
    add("archive/byteorder", b"little");
    for (key, storage) in chunks.enumerate() {
        add(&format!("archive/data/{key}"), storage);
    }
    zip.finish().expect("zip written").into_inner()
}
