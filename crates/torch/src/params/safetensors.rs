//! safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
//! dtype, shape and byte range, then the raw little-endian data, tensors back to back.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{Map, Value, json};
use tch::{Device, Tensor};

use super::{ACCEPTED_DTYPES, Dtype, ParamError, checked_numel, tensor_from_bytes};

/// The largest header accepted (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<i64>,
    start: u64,
    end: u64,
}

/// Reads every tensor of a safetensors file, in data order.
pub(super) fn read(path: &Path) -> Result<Vec<(String, Tensor)>, ParamError> {
    let io_err = |source| ParamError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |reason: String| ParamError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::new(file);
    if size < 8 {
        return Err(bad(format!(
            "it is truncated: {size} bytes, shorter than the 8-byte header length"
        )));
    }
    let mut len = [0u8; 8];
    reader.read_exact(&mut len).map_err(io_err)?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER {
        return Err(bad(format!(
            "its header claims {header_len} bytes, more than the 100 MB allowed"
        )));
    }
    if 8 + header_len > size {
        return Err(bad(format!(
            "it is truncated: the header needs {} bytes but the file has {size}",
            8 + header_len
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    reader.read_exact(&mut header).map_err(io_err)?;
    let entries = parse_header(&header).map_err(bad)?;
    let data_len = size - 8 - header_len;
    check_layout(&entries, data_len).map_err(bad)?;

    let mut tensors = Vec::with_capacity(entries.len());
    let mut buf = Vec::new();
    for entry in entries {
        let n = usize::try_from(entry.end - entry.start)
            .map_err(|_| bad(format!("tensor `{}` is too large", entry.name)))?;
        reader
            .seek(SeekFrom::Start(8 + header_len + entry.start))
            .map_err(io_err)?;
        buf.resize(n, 0);
        reader.read_exact(&mut buf).map_err(io_err)?;
        let tensor = tensor_from_bytes(&entry.name, &buf, &entry.shape, entry.dtype)?;
        tensors.push((entry.name, tensor));
    }
    Ok(tensors)
}

/// Parses the JSON header into entries sorted by their data offsets (header order on ties).
fn parse_header(header: &[u8]) -> Result<Vec<Entry>, String> {
    let header: Map<String, Value> = serde_json::from_slice(header)
        .map_err(|e| format!("its header is not a JSON object: {e}"))?;
    let mut entries = Vec::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            info.get(key)
                .ok_or_else(|| format!("tensor `{name}` has no `{key}`"))
        };
        let dtype_name = field("dtype")?
            .as_str()
            .ok_or_else(|| format!("tensor `{name}` has a `dtype` that is not a string"))?;
        let dtype = Dtype::from_safetensors_name(dtype_name).ok_or_else(|| {
            format!("tensor `{name}` has dtype {dtype_name}; accepted: {ACCEPTED_DTYPES}")
        })?;
        let shape = field("shape")?
            .as_array()
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().and_then(|d| i64::try_from(d).ok()))
                    .collect::<Option<Vec<i64>>>()
            })
            .ok_or_else(|| format!("tensor `{name}` has a `shape` that is not a list of sizes"))?;
        let (start, end) = field("data_offsets")?
            .as_array()
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| format!("tensor `{name}` has no valid `data_offsets` [begin, end]"))?;
        if start > end {
            return Err(format!("tensor `{name}` has decreasing `data_offsets`"));
        }
        let needed = checked_numel(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| format!("tensor `{name}` has an impossible shape {shape:?}"))?;
        if end - start != needed as u64 {
            return Err(format!(
                "tensor `{name}` spans {} bytes but its shape {shape:?} of {dtype_name} needs \
                 {needed}",
                end - start
            ));
        }
        entries.push(Entry {
            name,
            dtype,
            shape,
            start,
            end,
        });
    }
    entries.sort_by_key(|e| e.start);
    Ok(entries)
}

/// Tensors must lie back to back and fill the data exactly, as the format requires.
fn check_layout(entries: &[Entry], data_len: u64) -> Result<(), String> {
    let mut end = 0;
    for entry in entries {
        if entry.start < end {
            return Err(format!(
                "tensor `{}` overlaps the tensor before it",
                entry.name
            ));
        }
        if entry.start > end {
            return Err(format!(
                "there is a gap of {} bytes before tensor `{}` (tensors must be back to back)",
                entry.start - end,
                entry.name
            ));
        }
        end = entry.end;
    }
    if end > data_len {
        return Err(format!(
            "it is truncated: the header describes {end} bytes of data but the file holds \
             {data_len}"
        ));
    }
    if end < data_len {
        return Err(format!(
            "{} bytes follow the last tensor's data",
            data_len - end
        ));
    }
    Ok(())
}

/// Writes named tensors as safetensors under their names, in the given order, atomically: the
/// file is written beside `path` under a temporary name, synced, then renamed over `path`, so
/// readers never see a partial file. Tensors may live on any device and be non-contiguous;
/// dtypes must be one of F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL.
pub fn write_safetensors<S: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: &[(S, Tensor)],
) -> Result<(), ParamError> {
    let path = path.as_ref();
    let write_err = |reason: String| ParamError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0u64;
    for (name, tensor) in tensors {
        let name = name.as_ref();
        let bad = |reason: String| ParamError::Tensor {
            name: name.to_string(),
            reason,
        };
        if name == "__metadata__" {
            return Err(bad("has a name reserved by safetensors".into()));
        }
        let kind = tensor.f_kind().map_err(|e| bad(e.to_string()))?;
        let dtype = Dtype::from_kind(kind).ok_or_else(|| {
            bad(format!(
                "has kind {kind:?}, which safetensors files here do not hold; accepted: \
                 {ACCEPTED_DTYPES}"
            ))
        })?;
        let shape = tensor.size();
        let bytes = checked_numel(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| bad(format!("has an impossible shape {shape:?}")))?
            as u64;
        let entry = json!({
            "dtype": dtype.safetensors_name(),
            "shape": shape,
            "data_offsets": [offset, offset + bytes],
        });
        if header.insert(name.to_string(), entry).is_some() {
            return Err(bad(
                "is named twice; safetensors names must be unique".into()
            ));
        }
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| write_err(format!("cannot encode the header: {e}")))?;
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    header.resize(header.len().next_multiple_of(8), b' ');

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| write_err("it has no file name".into()))?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            write_err(format!(
                "cannot create a temporary file in its directory: {e}"
            ))
        })?;
    let io = |e: std::io::Error| write_err(e.to_string());
    {
        let mut out = BufWriter::new(temp.as_file());
        out.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&header).map_err(io)?;
        let mut buf = Vec::new();
        for (name, tensor) in tensors {
            let bad = |e: tch::TchError| ParamError::Tensor {
                name: name.as_ref().to_string(),
                reason: format!("cannot be copied out: {e}"),
            };
            let cpu = tensor
                .detach()
                .f_to_device(Device::Cpu)
                .and_then(|t| t.f_contiguous())
                .map_err(bad)?;
            let numel = cpu.numel();
            buf.resize(numel * cpu.kind().elt_size_in_bytes(), 0);
            cpu.f_copy_data_u8(&mut buf, numel).map_err(bad)?;
            out.write_all(&buf).map_err(io)?;
        }
        out.flush().map_err(io)?;
    }
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(path)
        .map_err(|e| write_err(format!("cannot rename the temporary file into place: {e}")))?;
    // Make the rename itself durable.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn writes_and_reads_back_every_dtype_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("all.safetensors");
        let base = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
        let mut tensors = vec![("z.transposed".to_string(), base.tr())];
        for dtype in Dtype::ALL {
            let t = if dtype == Dtype::Bool {
                base.gt(2.0)
            } else {
                base.to_kind(dtype.kind())
            };
            tensors.push((format!("t_{}", dtype.safetensors_name()), t));
        }
        tensors.push(("scalar".into(), Tensor::from(2.5f64)));
        tensors.push((
            "empty".into(),
            Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
        ));
        write_safetensors(&path, &tensors).expect("write");
        let back = read(&path).expect("read");
        assert_eq!(back.len(), tensors.len());
        for ((n0, t0), (n1, t1)) in tensors.iter().zip(&back) {
            assert_eq!(n0, n1);
            assert_eq!(t0.kind(), t1.kind(), "{n0}");
            assert_eq!(t0.size(), t1.size(), "{n0}");
            assert!(t0.equal(t1), "{n0}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "temporary file left behind: {leftovers:?}"
        );
    }

    #[test]
    fn refuses_duplicates_and_unsupported_kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        let t = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let dup = write_safetensors(&path, &[("a", t.shallow_clone()), ("a", t.shallow_clone())]);
        assert!(
            dup.expect_err("dup")
                .to_string()
                .contains("tensor `a` is named twice")
        );
        let complex = Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu));
        let err = write_safetensors(&path, &[("c", complex)]).expect_err("complex");
        assert!(err.to_string().contains("accepted: F32"), "{err}");
        assert!(!path.exists());
    }

    fn raw(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn reports_inconsistent_headers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                &[0u8; 4][..],
                "spans 4 bytes but its shape [2] of F32 needs 8",
            ),
            (
                r#"{"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#,
                &[0u8; 8][..],
                "has dtype C64; accepted: F32",
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
                &[0u8; 3][..],
                "tensor `b` overlaps",
            ),
            (
                r#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#,
                &[0u8; 5][..],
                "3 bytes follow",
            ),
            (
                r#"{"w":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}}"#,
                &[0u8; 5][..],
                "truncated",
            ),
            (r#"["w"]"#, &[][..], "not a JSON object"),
        ];
        for (i, (header, data, expected)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.safetensors"));
            std::fs::write(&path, raw(header, data)).expect("write");
            let err = read(&path).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains(&format!("{i}.safetensors")), "{err}");
        }
    }
}
