//! Recognising a weights file from its bytes: safetensors, a PyTorch `torch.save` archive,
//! or a libtorch/TorchScript archive; truncated and mis-named files are told apart.
//!
//! Only headers and the zip directory are read, never the whole file.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;
use thiserror::Error;

/// The largest safetensors header accepted (the format's own limit is 100 MB).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// The format of a weights file, as recognised from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// PyTorch `torch.save(state_dict)`: a zip with `data.pkl` and raw storages.
    PytorchZip,
    /// A libtorch archive: tch's `.ot` files and TorchScript modules (a zip with
    /// `constants.pkl` / `code/`).
    LibtorchArchive,
}

impl ParamFormat {
    /// The file extensions this format is usually saved with.
    pub fn usual_extensions(self) -> &'static [&'static str] {
        match self {
            Self::Safetensors => &["safetensors"],
            Self::PytorchZip => &["pt", "pth", "bin"],
            Self::LibtorchArchive => &["ot", "pt", "ts", "pth"],
        }
    }
}

impl fmt::Display for ParamFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Safetensors => "safetensors",
            Self::PytorchZip => "PyTorch torch.save archive",
            Self::LibtorchArchive => "libtorch archive",
        })
    }
}

/// What was learnt about a weights file without loading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamFileInfo {
    /// The format, from the bytes.
    pub format: ParamFormat,
    /// Size in bytes.
    pub size: u64,
    /// Number of tensors, when the format's header says (safetensors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor_count: Option<usize>,
    /// Set when the extension is not one this format is usually saved with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_mismatch: Option<String>,
}

/// Why a weights file is not usable.
#[derive(Debug, Error)]
pub enum ParamFileError {
    /// The file could not be read.
    #[error("cannot be read: {0}")]
    Io(#[from] io::Error),
    /// The file is empty.
    #[error("is empty")]
    Empty,
    /// The bytes match none of the accepted formats.
    #[error("is not in a recognised weights format (its first bytes are {first_bytes})")]
    Unrecognised {
        /// The first bytes, in hex.
        first_bytes: String,
    },
    /// A PyTorch file from before PyTorch 1.6's zip format.
    #[error("is a legacy (pre-1.6) torch.save pickle, which cannot be read safely")]
    LegacyPickle,
    /// The file ends before its own header says it should.
    #[error(
        "is truncated: a {format} file of {size} bytes whose header describes {expected} bytes"
    )]
    Truncated {
        /// The format recognised from the start of the file.
        format: ParamFormat,
        /// The file's size.
        size: u64,
        /// The size its header describes.
        expected: u64,
    },
    /// A zip archive whose directory at the end is missing or damaged.
    #[error("starts like a zip archive but is truncated or damaged: {reason}")]
    BrokenZip {
        /// What the zip reader reported.
        reason: String,
    },
    /// A zip that is not a PyTorch archive.
    #[error("is a zip archive without `data.pkl`, so not a PyTorch or libtorch archive")]
    NotTorchZip,
    /// A safetensors header that does not parse.
    #[error("has a safetensors length prefix but its header is not valid: {reason}")]
    BadSafetensorsHeader {
        /// What is wrong with it.
        reason: String,
    },
}

impl ParamFileError {
    /// What formats are accepted, for messages.
    pub const ACCEPTED: &'static str = "safetensors (.safetensors), a PyTorch torch.save(state_dict) archive (.pt/.pth/.bin) \
         or a libtorch archive (.ot)";
}

/// Recognises the format of the weights file at `path` from its bytes.
pub fn inspect_param_file(path: &Path) -> Result<ParamFileInfo, ParamFileError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size == 0 {
        return Err(ParamFileError::Empty);
    }
    let mut head = [0u8; 9];
    let n = read_up_to(&mut file, &mut head)?;
    let head = &head[..n];

    let (format, tensor_count) =
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            file.seek(SeekFrom::Start(0))?;
            (zip_format(file)?, None)
        } else if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
            return Err(ParamFileError::LegacyPickle);
        } else if head.len() == 9 && head[8] == b'{' {
            let count = safetensors(&mut file, size, &head[..8])?;
            (ParamFormat::Safetensors, Some(count))
        } else {
            return Err(ParamFileError::Unrecognised {
                first_bytes: head
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            });
        };

    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let extension_mismatch =
        (!format.usual_extensions().contains(&extension.as_str())).then(|| {
            format!(
                "the file's bytes are a {format} but its extension is `.{extension}` (usual: {})",
                format
                    .usual_extensions()
                    .iter()
                    .map(|e| format!(".{e}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    Ok(ParamFileInfo {
        format,
        size,
        tensor_count,
        extension_mismatch,
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Checks a safetensors header against the file size; returns the tensor count.
fn safetensors(file: &mut File, size: u64, prefix: &[u8]) -> Result<usize, ParamFileError> {
    let mut len = [0u8; 8];
    len.copy_from_slice(prefix);
    let header_len = u64::from_le_bytes(len);
    let bad = |reason: String| ParamFileError::BadSafetensorsHeader { reason };
    if header_len > MAX_SAFETENSORS_HEADER {
        return Err(bad(format!(
            "it claims {header_len} bytes, more than the 100 MB allowed"
        )));
    }
    if 8 + header_len > size {
        return Err(ParamFileError::Truncated {
            format: ParamFormat::Safetensors,
            size,
            expected: 8 + header_len,
        });
    }
    file.seek(SeekFrom::Start(8))?;
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let mut end = 0u64;
    let mut count = 0;
    for (name, entry) in &header {
        if name == "__metadata__" {
            continue;
        }
        count += 1;
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| bad(format!("tensor `{name}` has no valid `data_offsets`")))?;
        if offsets.0 > offsets.1 {
            return Err(bad(format!(
                "tensor `{name}` has decreasing `data_offsets`"
            )));
        }
        end = end.max(offsets.1);
    }
    let expected = 8 + header_len + end;
    if expected > size {
        return Err(ParamFileError::Truncated {
            format: ParamFormat::Safetensors,
            size,
            expected,
        });
    }
    Ok(count)
}

/// Tells a PyTorch `torch.save` zip from a libtorch/TorchScript archive.
fn zip_format(file: File) -> Result<ParamFormat, ParamFileError> {
    let archive = zip::ZipArchive::new(file).map_err(|e| ParamFileError::BrokenZip {
        reason: e.to_string(),
    })?;
    let names: Vec<String> = archive
        .file_names()
        .map(|name| name.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| ParamFileError::BrokenZip {
            reason: e.to_string(),
        })?;
    let has = |suffix: &str| names.iter().any(|n| n.ends_with(suffix));
    if !has("/data.pkl") && !names.iter().any(|n| n == "data.pkl") {
        return Err(ParamFileError::NotTorchZip);
    }
    if has("/constants.pkl") || names.iter().any(|n| n.contains("/code/")) {
        Ok(ParamFormat::LibtorchArchive)
    } else {
        Ok(ParamFormat::PytorchZip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn safetensors_bytes() -> Vec<u8> {
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        bytes
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn recognises_safetensors_and_reports_truncation_and_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = safetensors_bytes();
        let info = inspect_param_file(&write(dir.path(), "w.safetensors", &bytes)).expect("valid");
        assert_eq!(info.format, ParamFormat::Safetensors);
        assert_eq!(info.tensor_count, Some(1));
        assert_eq!(info.extension_mismatch, None);

        let renamed = inspect_param_file(&write(dir.path(), "w.pt", &bytes)).expect("valid");
        assert!(
            renamed
                .extension_mismatch
                .expect("mismatch")
                .contains("`.pt`")
        );

        let cut = inspect_param_file(&write(
            dir.path(),
            "cut.safetensors",
            &bytes[..bytes.len() - 3],
        ));
        assert!(
            matches!(cut, Err(ParamFileError::Truncated { expected, .. }) if expected == bytes.len() as u64)
        );
    }

    #[test]
    fn recognises_torch_zips_and_refuses_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut zip_bytes = Vec::new();
        {
            let mut zip = zip::ZipWriter::new(io::Cursor::new(&mut zip_bytes));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            zip.start_file("archive/data.pkl", options).expect("entry");
            zip.write_all(b"\x80\x02}q\x00.").expect("write");
            zip.start_file("archive/data/0", options).expect("entry");
            zip.write_all(&[0u8; 16]).expect("write");
            zip.finish().expect("finish");
        }
        let info = inspect_param_file(&write(dir.path(), "w.pt", &zip_bytes)).expect("valid");
        assert_eq!(info.format, ParamFormat::PytorchZip);
        let cut = inspect_param_file(&write(
            dir.path(),
            "cut.pt",
            &zip_bytes[..zip_bytes.len() - 30],
        ));
        assert!(
            matches!(cut, Err(ParamFileError::BrokenZip { .. })),
            "{cut:?}"
        );

        assert!(matches!(
            inspect_param_file(&write(dir.path(), "empty.pt", b"")),
            Err(ParamFileError::Empty)
        ));
        assert!(matches!(
            inspect_param_file(&write(dir.path(), "old.pt", b"\x80\x02\x8a\x0alegacy")),
            Err(ParamFileError::LegacyPickle)
        ));
        assert!(matches!(
            inspect_param_file(&write(dir.path(), "text.pt", b"placeholder weights")),
            Err(ParamFileError::Unrecognised { .. })
        ));
    }
}
