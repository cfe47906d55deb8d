//! libtorch archives (tch's `.ot` files, written by `Tensor::save_multi` or
//! `VarStore::save` to a `.ot` path), read through libtorch itself, after
//! [`check_archive`] made sure libtorch cannot be made to allocate more than the file holds.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use tch::{Device, Tensor};
use zip::{CompressionMethod, ZipArchive};

use super::ParamError;
use super::pickle::{PickleError, check_lengths};

/// The largest pickle entry checked (a state dict's is kilobytes).
const MAX_PICKLE: u64 = 256 << 20;

/// The most bytes deflate can make of one byte (its format's limit is about 1032).
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Bytes the tensors of an archive may take beyond twice the file's size: libtorch builds
/// views (an expanded stride-0 tensor takes no memory until someone copies it), so views far
/// larger than the storages are refused as the PyTorch reader refuses them.
const EXPANSION_ALLOWANCE: u64 = 64 << 20;

/// Reads the named tensors of a libtorch archive onto the CPU, in archive order.
pub(super) fn read(path: &Path) -> Result<Vec<(String, Tensor)>, ParamError> {
    let error = |message: String| ParamError::Libtorch {
        path: path.to_path_buf(),
        message,
    };
    let file_len = check_archive(path).map_err(error)?;
    let tensors = Tensor::load_multi_with_device(path, Device::Cpu).map_err(|e| {
        error(format!(
            "{}; accepted here: archives of named tensors written by tch \
             (Tensor::save_multi); a TorchScript module holds no named tensor list",
            first_line(&e.to_string())
        ))
    })?;
    let built: u64 = tensors
        .iter()
        .map(|(_, t)| (t.numel() as u64).saturating_mul(t.kind().elt_size_in_bytes() as u64))
        .fold(0, u64::saturating_add);
    let limit = file_len
        .saturating_mul(2)
        .saturating_add(EXPANSION_ALLOWANCE);
    if built > limit {
        return Err(error(format!(
            "its tensors would take {built} bytes once copied, more than twice the file's \
             {file_len} bytes (plus {EXPANSION_ALLOWANCE}): expanded (stride 0) or repeated \
             views are refused; save contiguous copies (tensor.contiguous())"
        )));
    }
    Ok(tensors)
}

/// Checks a zip archive that libtorch will read (a `.ot` file or a TorchScript module) for
/// what would make libtorch allocate more than the file can hold, since it sizes buffers
/// from the archive's headers before reading: every entry is stored or deflated (TorchScript
/// deflates its code), announces no more than its compressed bytes can give (the file's
/// size when stored, [`MAX_DEFLATE_RATIO`] times that when deflated), and every pickle
/// (`.pkl`, `.debug_pkl`) has no length or memo index reaching past its bytes
/// ([`check_lengths`]). Returns the file's size.
pub(crate) fn check_archive(path: &Path) -> Result<u64, String> {
    let file = File::open(path).map_err(|e| format!("it cannot be read: {e}"))?;
    let file_len = file
        .metadata()
        .map_err(|e| format!("it cannot be read: {e}"))?
        .len();
    let mut zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("it is not a complete zip archive: {e}"))?;
    let mut pickles = Vec::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| format!("entry {i} cannot be read: {e}"))?;
        let name = entry
            .name()
            .map_or_else(|_| format!("#{i}"), |n| n.into_owned());
        let (size, packed) = (entry.size(), entry.compressed_size());
        let most = match entry.compression() {
            CompressionMethod::Stored => packed,
            CompressionMethod::Deflated => packed.saturating_mul(MAX_DEFLATE_RATIO) + 1024,
            other => {
                return Err(format!(
                    "entry `{name}` is compressed with {other}; libtorch archives store or \
                     deflate their entries (re-save it with torch.save or torch.jit.save)"
                ));
            }
        };
        if size > most || packed > file_len {
            return Err(format!(
                "entry `{name}` announces {size} bytes from {packed} in a file of {file_len}: \
                 damaged or forged"
            ));
        }
        if name.ends_with("pkl") {
            if size > MAX_PICKLE {
                return Err(format!(
                    "entry `{name}` is {size} bytes, more than the {MAX_PICKLE} accepted"
                ));
            }
            let stored = entry.compression() == CompressionMethod::Stored;
            pickles.push((i, name, size, stored));
        }
    }
    for (i, name, size, stored) in pickles {
        // A stored entry is read as libtorch reads it, without its CRC (a bad CRC must not
        // hide what libtorch would see); a deflated one is inflated.
        let entry = if stored {
            zip.by_index_raw(i)
        } else {
            zip.by_index(i)
        }
        .map_err(|e| format!("entry `{name}` cannot be read: {e}"))?;
        let mut pickle = Vec::with_capacity(size as usize);
        entry
            .take(size + 1)
            .read_to_end(&mut pickle)
            .map_err(|e| format!("entry `{name}` is damaged: {e}"))?;
        check_lengths(&pickle).map_err(|e| match e {
            PickleError::Invalid { offset, reason } => {
                format!("entry `{name}`, byte {offset}: {reason}")
            }
            PickleError::Forbidden(global) => format!("entry `{name}`: {global}"),
        })?;
    }
    Ok(file_len)
}

/// libtorch messages carry a C++ backtrace after the first line.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_that_would_make_libtorch_allocate_what_they_do_not_hold_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Found by fuzz/param_file: a TorchScript archive whose damaged deflated debug
        // pickle made libtorch's unpickler reserve 3.2 GB for one string (the input's first
        // byte is the target's mode; the file follows).
        let input = include_bytes!("../../../../fuzz/seeds/param_file/libtorch-pickle-length");
        let found = dir.path().join("found.ot");
        std::fs::write(&found, &input[1..]).expect("written");
        let error = read(&found).expect_err("refused").to_string();
        assert!(error.contains(".debug_pkl` is damaged"), "{error}");
        // A well-formed archive whose pickle announces a 3.2 GB string in 9 bytes.
        let forged = dir.path().join("forged.ot");
        let mut zip = zip::ZipWriter::new(File::create(&forged).expect("created"));
        let stored =
            zip::write::SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", stored).expect("entry");
        std::io::Write::write_all(&mut zip, b"\x80\x02X\x00\x00\xbe\xbe.").expect("written");
        zip.finish().expect("zip");
        let error = read(&forged).expect_err("refused").to_string();
        assert!(
            error.contains("entry `archive/data.pkl`, byte 2"),
            "{error}"
        );
        assert!(error.contains("runs past the end of the pickle"), "{error}");

        // What tch writes reads back, and a view far larger than the file is refused.
        let saved = dir.path().join("saved.ot");
        let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        Tensor::save_multi(&[("w", &w)], &saved).expect("saved");
        let tensors = read(&saved).expect("read back");
        assert_eq!(tensors[0].0, "w");
        assert_eq!(
            Vec::<f32>::try_from(&tensors[0].1).expect("floats"),
            [1.0, 2.0, 3.0]
        );
        let expanded = Tensor::from_slice(&[1.0f32]).expand([1 << 26], false);
        let big = dir.path().join("expanded.ot");
        Tensor::save_multi(&[("e", &expanded)], &big).expect("saved");
        match read(&big) {
            // libtorch may store the view's storage (4 bytes) or a full copy (256 MiB);
            // either way nothing larger than the file comes out unchecked.
            Err(error) => assert!(error.to_string().contains("expanded"), "{error}"),
            Ok(tensors) => {
                let len = std::fs::metadata(&big).expect("size").len();
                assert!(
                    len >= 4 << 26,
                    "a {len}-byte file gave {} elements",
                    tensors[0].1.numel()
                );
            }
        }
    }
}
