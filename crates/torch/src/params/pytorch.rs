//! PyTorch `torch.save` archives (PyTorch >= 1.6): a zip holding `<prefix>/data.pkl` (the
//! pickled object), `<prefix>/data/<key>` (one raw little-endian storage per key) and
//! `<prefix>/byteorder`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use tch::{Device, Tensor};
use zip::ZipArchive;

use super::pickle::{Object, Pickle, PickleError, TensorRef, Value, unpickle};
use super::{ParamError, WRAPPER_KEYS, checked_numel, tensor_from_bytes};

/// The largest `data.pkl` read (a state dict's is kilobytes).
const MAX_PICKLE: u64 = 256 << 20;

/// Bytes the tensors of an archive may take beyond twice their storages: each tensor is built
/// as its own contiguous copy, so views that expand a storage (stride 0) or repeat it under
/// many names would otherwise let a small file ask for any amount of memory.
const EXPANSION_ALLOWANCE: usize = 64 << 20;

type Archive = ZipArchive<BufReader<File>>;

/// Named tensors, and the checkpoint key they were found under.
type StateDict = (Vec<(String, Tensor)>, Option<String>);

/// (name, tensor index) pairs, and the checkpoint key they were found under.
type Entries = (Vec<(String, usize)>, Option<String>);

/// Reads the state dict of a PyTorch archive: its tensors in dict order and, for a checkpoint
/// dict, the key that held them.
pub(super) fn read(path: &Path) -> Result<StateDict, ParamError> {
    let bad = |reason: String| ParamError::Pytorch {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|source| ParamError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| bad(format!("it is not a complete zip archive: {e}")))?;
    let prefix = find_prefix(&zip).ok_or_else(|| bad("it has no `data.pkl`".into()))?;

    if let Some(order) = read_small(&mut zip, &format!("{prefix}byteorder")).map_err(&bad)?
        && order.trim_ascii() != b"little"
    {
        return Err(bad(format!(
            "its byteorder is `{}`; only little-endian archives are read (re-save it on a \
             little-endian machine)",
            String::from_utf8_lossy(&order)
        )));
    }
    let pkl = read_small(&mut zip, &format!("{prefix}data.pkl"))
        .map_err(&bad)?
        .ok_or_else(|| bad("it has no `data.pkl`".into()))?;
    let (pickle, root) = unpickle(&pkl).map_err(|e| match e {
        PickleError::Forbidden(name) => ParamError::ForbiddenGlobal {
            path: path.to_path_buf(),
            name,
        },
        PickleError::Invalid { offset, reason } => ParamError::Pickle {
            path: path.to_path_buf(),
            offset,
            reason,
        },
    })?;
    let (entries, wrapper_key) =
        state_dict(&pickle, &root).map_err(|found| ParamError::NotStateDict {
            path: path.to_path_buf(),
            found,
        })?;

    check_expansion(&pickle, &entries).map_err(&bad)?;

    // Each storage is read once, when first needed, and dropped after its last tensor.
    let mut uses: HashMap<usize, usize> = HashMap::new();
    for &(_, t) in &entries {
        *uses.entry(pickle.tensors[t].storage).or_default() += 1;
    }
    let mut loaded: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, t) in entries {
        let view = &pickle.tensors[t];
        let s = view.storage;
        let bytes = match loaded.entry(s) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                e.insert(read_storage(&mut zip, &prefix, &pickle, s).map_err(&bad)?)
            }
        };
        let tensor = build_tensor(&name, bytes, view, &pickle)?;
        tensors.push((name, tensor));
        let left = uses.entry(s).or_default();
        *left = left.saturating_sub(1);
        if *left == 0 {
            loaded.remove(&s);
        }
    }
    Ok((tensors, wrapper_key))
}

/// The directory holding `data.pkl`: `archive/` for `archive/data.pkl`, or none.
fn find_prefix(zip: &Archive) -> Option<String> {
    zip.file_names()
        .filter_map(Result::ok)
        .find_map(|name| match name.strip_suffix("data.pkl") {
            Some("") => Some(String::new()),
            Some(dir) if dir.ends_with('/') && dir.matches('/').count() == 1 => {
                Some(dir.to_string())
            }
            _ => None,
        })
}

/// Reads a small entry whole; `None` when there is no such entry.
fn read_small(zip: &mut Archive, name: &str) -> Result<Option<Vec<u8>>, String> {
    let mut entry = match zip.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("entry `{name}` cannot be read: {e}")),
    };
    if entry.size() > MAX_PICKLE {
        return Err(format!(
            "entry `{name}` is {} bytes, more than the {MAX_PICKLE} accepted",
            entry.size()
        ));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .by_ref()
        .take(MAX_PICKLE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("entry `{name}` is damaged: {e}"))?;
    Ok(Some(bytes))
}

/// Reads `data/<key>`, which must hold exactly the bytes its record describes.
fn read_storage(
    zip: &mut Archive,
    prefix: &str,
    pickle: &Pickle,
    storage: usize,
) -> Result<Vec<u8>, String> {
    let record = &pickle.storages[storage];
    let name = format!("{prefix}data/{}", record.key);
    let expected = record
        .numel
        .checked_mul(record.dtype.size())
        .ok_or_else(|| format!("storage `{}` is impossibly large", record.key))?;
    let mut entry = match zip.by_name(&name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(format!(
                "storage `{}` named by data.pkl has no entry `{name}`",
                record.key
            ));
        }
        Err(e) => return Err(format!("entry `{name}` cannot be read: {e}")),
    };
    if entry.size() != expected as u64 {
        return Err(format!(
            "entry `{name}` holds {} bytes but data.pkl describes {} elements of {} ({expected} \
             bytes)",
            entry.size(),
            record.numel,
            record.dtype.safetensors_name()
        ));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(expected)
        .map_err(|_| format!("storage `{}` needs {expected} bytes of memory", record.key))?;
    entry
        .by_ref()
        .take(expected as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("entry `{name}` is damaged: {e}"))?;
    if bytes.len() != expected {
        return Err(format!(
            "entry `{name}` yields {} bytes, not the {expected} its header says",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Refuses tensors that would together take more than twice the bytes of the storages they
/// view plus [`EXPANSION_ALLOWANCE`] once built, before anything is read or allocated. A
/// state dict's tensors take their storages' bytes (tied weights twice); a few small expanded
/// buffers fit the allowance.
fn check_expansion(pickle: &Pickle, entries: &[(String, usize)]) -> Result<(), String> {
    let mut storages = vec![false; pickle.storages.len()];
    let (mut stored, mut built) = (0usize, 0usize);
    for &(_, t) in entries {
        let view = &pickle.tensors[t];
        let record = &pickle.storages[view.storage];
        let size = record.dtype.size();
        if !std::mem::replace(&mut storages[view.storage], true) {
            stored = stored.saturating_add(record.numel.saturating_mul(size));
        }
        let numel = checked_numel(&view.size).unwrap_or(usize::MAX);
        built = built.saturating_add(numel.saturating_mul(size));
    }
    let limit = stored.saturating_mul(2).saturating_add(EXPANSION_ALLOWANCE);
    if built > limit {
        return Err(format!(
            "its tensors would take {built} bytes once built, more than twice the {stored} \
             bytes of the storages they view (plus {EXPANSION_ALLOWANCE}): expanded (stride 0) \
             or repeated views are refused; save contiguous copies (tensor.contiguous())"
        ));
    }
    Ok(())
}

/// Rebuilds one tensor as its own contiguous CPU tensor, sharing nothing with other tensors
/// even when the file's tensors share a storage.
fn build_tensor(
    name: &str,
    storage: &[u8],
    view: &TensorRef,
    pickle: &Pickle,
) -> Result<Tensor, ParamError> {
    let record = &pickle.storages[view.storage];
    let dtype = record.dtype;
    let numel = checked_numel(&view.size).unwrap_or(0);
    let offset = usize::try_from(view.offset).unwrap_or(0);
    if is_contiguous(&view.size, &view.stride) || numel <= 1 {
        // The unpickler checked that offset + numel lies inside the storage.
        let start = offset * dtype.size();
        let end = start + numel * dtype.size();
        let bytes = storage.get(start..end).unwrap_or_default();
        return tensor_from_bytes(name, bytes, &view.size, dtype);
    }
    let whole = tensor_from_bytes(name, storage, &[record.numel as i64], dtype)?;
    let tch_err = |e: tch::TchError| ParamError::Tensor {
        name: name.to_string(),
        reason: format!("cannot be rebuilt from its strides: {e}"),
    };
    let strided = whole
        .f_as_strided(view.size.as_slice(), view.stride.as_slice(), view.offset)
        .map_err(tch_err)?;
    let mut out =
        Tensor::f_empty(view.size.as_slice(), (dtype.kind(), Device::Cpu)).map_err(tch_err)?;
    out.f_copy_(&strided).map_err(tch_err)?;
    Ok(out)
}

/// Row-major contiguous (sizes of 1 may have any stride).
fn is_contiguous(size: &[i64], stride: &[i64]) -> bool {
    let mut expected = 1;
    for (&n, &s) in size.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected *= n;
    }
    true
}

/// Finds the state dict: the top-level dict when all its values are tensors, else the first
/// of [`WRAPPER_KEYS`] holding such a dict. Returns (name, tensor index) pairs.
fn state_dict(pickle: &Pickle, root: &Value) -> Result<Entries, String> {
    let top = match root {
        Value::Object(i) => match &pickle.objects[*i] {
            Object::Dict(dict) => dict,
            Object::List(_) => return Err("a list".into()),
            Object::Tuple(_) => return Err("a tuple".into()),
        },
        other => return Err(describe(pickle, other)),
    };
    let direct = tensor_entries(pickle, &top.entries);
    if let Ok(entries) = direct {
        return Ok((entries, None));
    }
    for key in WRAPPER_KEYS {
        let found = top
            .entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key));
        if let Some((_, Value::Object(i))) = found
            && let Object::Dict(inner) = &pickle.objects[*i]
        {
            return tensor_entries(pickle, &inner.entries)
                .map(|entries| (entries, Some(key.to_string())))
                .map_err(|e| format!("a checkpoint whose `{key}` {e}"));
        }
    }
    direct.map(|entries| (entries, None)).map_err(|e| {
        let keys: Vec<String> = top
            .entries
            .iter()
            .take(8)
            .map(|(k, _)| match k {
                Value::Str(s) => format!("`{s}`"),
                other => describe(pickle, other),
            })
            .collect();
        format!("a dict (keys {}) whose {e}", keys.join(", "))
    })
}

fn tensor_entries(
    pickle: &Pickle,
    entries: &[(Value, Value)],
) -> Result<Vec<(String, usize)>, String> {
    entries
        .iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => Ok((name.to_string(), *t)),
            (Value::Str(name), other) => Err(format!(
                "entry `{name}` is {}, not a tensor",
                describe(pickle, other)
            )),
            (other, _) => Err(format!("key {} is not a string", describe(pickle, other))),
        })
        .collect()
}

fn describe(pickle: &Pickle, value: &Value) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(b) => format!("the bool {b}"),
        Value::Int(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Str(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::Object(i) => match &pickle.objects[*i] {
            Object::Tuple(items) => format!("a tuple of {}", items.len()),
            Object::List(items) => format!("a list of {}", items.len()),
            Object::Dict(dict) => format!("a dict of {} entries", dict.entries.len()),
        },
        Value::Global(_) => "a python type".into(),
        Value::Storage(_) => "a bare storage".into(),
        Value::Tensor(_) => "a tensor".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Dtype;
    use super::super::pickle::StorageRef;
    use super::*;

    #[test]
    fn expanded_or_repeated_views_may_not_ask_for_unbounded_memory() {
        // Found by fuzz/param_file: a 1.5 KB file with `torch.zeros(1).expand(2**30)` made the
        // reader allocate 4 GiB for one tensor.
        let storage = |numel| StorageRef {
            key: "0".into(),
            dtype: Dtype::F32,
            numel,
        };
        let view = |size: i64, stride: i64| TensorRef {
            storage: 0,
            offset: 0,
            size: vec![size],
            stride: vec![stride],
        };
        let pickle = |numel, views: Vec<TensorRef>| Pickle {
            storages: vec![storage(numel)],
            tensors: views,
            ..Pickle::default()
        };
        let expanded = pickle(1, vec![view(1 << 30, 0)]);
        let error = check_expansion(&expanded, &[("w".into(), 0)]).expect_err("refused");
        assert!(error.contains("4294967296 bytes once built"), "{error}");
        // The same storage under many names counts each time.
        let big = pickle(1 << 24, vec![view(1 << 24, 1)]);
        let repeated: Vec<(String, usize)> = (0..8).map(|i| (format!("w{i}"), 0)).collect();
        assert!(check_expansion(&big, &repeated).is_err());
        // Tied weights (twice) and a small expanded buffer are fine.
        assert_eq!(check_expansion(&big, &repeated[..2]), Ok(()));
        let small = pickle(1, vec![view(1000, 0)]);
        assert_eq!(check_expansion(&small, &[("b".into(), 0)]), Ok(()));
    }

    #[test]
    fn contiguity() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(is_contiguous(&[1, 3], &[99, 1]));
        assert!(!is_contiguous(&[3, 2], &[1, 3]));
        assert!(!is_contiguous(&[2, 3], &[0, 1]));
    }
}
