use super::*;
use crate::params::Dtype;

/// A tiny pickle writer for hand-made cases.
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn new() -> Self {
        Self(vec![0x80, 2])
    }
    fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(self, text: &str) -> Self {
        let len = (text.len() as u32).to_le_bytes();
        self.op(b"X").op(&len).op(text.as_bytes())
    }
    fn int(self, v: u8) -> Self {
        self.op(&[b'K', v])
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(b"c")
            .op(module.as_bytes())
            .op(b"\n")
            .op(name.as_bytes())
            .op(b"\n")
    }
    fn ints(self, values: &[u8]) -> Self {
        values.iter().fold(self.op(b"("), |p, &v| p.int(v)).op(b"t")
    }
    /// `_rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, size, stride,
    /// False, OrderedDict())`
    fn tensor(self, key: &str, numel: u8, offset: u8, size: &[u8], stride: &[u8]) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b"tQ")
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(&[0x89])
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
    fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

fn run(bytes: &[u8]) -> Result<(Pickle, Value), PickleError> {
    unpickle(bytes)
}

fn dict_entries<'p>(pickle: &'p Pickle, value: &Value) -> &'p [(Value, Value)] {
    match value {
        Value::Object(i) => match &pickle.objects[*i] {
            Object::Dict(d) => &d.entries,
            other => panic!("not a dict: {other:?}"),
        },
        other => panic!("not an object: {other:?}"),
    }
}

#[test]
fn reads_an_ordered_dict_of_tensors_sharing_a_storage() {
    let bytes = P::new()
        .global("collections", "OrderedDict")
        .op(b")R(")
        .str("b.weight")
        .tensor("0", 12, 0, &[3, 4], &[4, 1])
        .str("a.view")
        .tensor("0", 12, 5, &[2, 2], &[1, 4])
        .op(b"u}")
        .str("_metadata")
        .op(b"}s")
        .op(b"b")
        .stop();
    let (pickle, root) = run(&bytes).expect("valid");
    let entries = dict_entries(&pickle, &root);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].0, Value::Str("b.weight".into()));
    assert_eq!(entries[1].1, Value::Tensor(1));
    assert_eq!(pickle.storages.len(), 1, "one storage, shared");
    assert_eq!(pickle.storages[0].dtype, Dtype::F32);
    assert_eq!(pickle.storages[0].numel, 12);
    let view = &pickle.tensors[1];
    assert_eq!(
        (view.offset, &view.size, &view.stride),
        (5, &vec![2, 2], &vec![1, 4])
    );
}

#[test]
fn refuses_names_outside_the_allowed_few() {
    for (module, name) in [
        ("os", "system"),
        ("builtins", "eval"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_qtensor"),
        ("collections", "defaultdict"),
    ] {
        let bytes = P::new()
            .global(module, name)
            .str("echo pwned")
            .op(&[0x85])
            .op(b"R")
            .stop();
        assert_eq!(
            run(&bytes).expect_err("forbidden"),
            PickleError::Forbidden(format!("{module}.{name}"))
        );
    }
    let stack_global = P::new()
        .op(&[0x8c, 8])
        .op(b"builtins")
        .op(&[0x8c, 4])
        .op(b"exec")
        .op(&[0x93])
        .stop();
    assert_eq!(
        run(&stack_global).expect_err("forbidden"),
        PickleError::Forbidden("builtins.exec".into())
    );
}

#[test]
fn refuses_object_building_opcodes_and_truncation() {
    // NEWOBJ, INST, OBJ, EXT1, PERSID (text), GET (text).
    for op in [0x81u8, b'i', b'o', 0x82, b'P', b'g'] {
        let err = run(&P::new().op(b"N)").op(&[op]).stop()).expect_err("refused");
        assert!(
            matches!(&err, PickleError::Invalid { reason, .. } if reason.contains("not accepted")),
            "0x{op:02x}: {err:?}"
        );
    }
    let full = P::new().str("abc").stop();
    for cut in 1..full.len() {
        let err = run(&full[..cut]).expect_err("truncated");
        assert!(
            matches!(&err, PickleError::Invalid { reason, .. } if reason.contains("truncated")),
            "cut at {cut}: {err:?}"
        );
    }
    let huge_len = P::new().op(b"X").op(&u32::MAX.to_le_bytes()).stop();
    assert!(run(&huge_len).is_err());
}

#[test]
fn refuses_tensors_outside_their_storage() {
    for (offset, size, stride) in [
        (0u8, &[3u8, 5][..], &[5u8, 1][..]),
        (10, &[3], &[1]),
        (0, &[2, 2], &[11, 1]),
    ] {
        let bytes = P::new()
            .op(b"}")
            .str("w")
            .tensor("0", 12, offset, size, stride)
            .op(b"s")
            .stop();
        let err = run(&bytes).expect_err("out of bounds");
        assert!(
            matches!(&err, PickleError::Invalid { reason, .. } if reason.contains("reaches past")),
            "{err:?}"
        );
    }
    // Zero-sized tensors touch nothing, wherever they start.
    let empty = P::new()
        .op(b"}")
        .str("w")
        .tensor("0", 0, 0, &[0, 3], &[3, 1])
        .op(b"s")
        .stop();
    assert!(run(&empty).is_ok());
}

#[test]
fn handles_numbers_memo_replacement_and_cycles() {
    let bytes = P::new()
        .op(b"}q\x00(")
        .op(&[b'K', 1])
        .op(b"J")
        .op(&(-5i32).to_le_bytes())
        .op(&[0x8a, 2, 0x00, 0x80]) // LONG1 -32768
        .op(b"G")
        .op(&1.5f64.to_be_bytes())
        .op(&[b'K', 1])
        .op(&[0x88]) // key 1 again: replaced, order kept
        .op(b"u")
        .str("self")
        .op(b"]q\x01h\x01a") // a list containing itself
        .op(b"s")
        .stop();
    let (pickle, root) = run(&bytes).expect("valid");
    let entries = dict_entries(&pickle, &root);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0], (Value::Int(1), Value::Bool(true)));
    assert_eq!(entries[1], (Value::Int(-32768), Value::Float(1.5)));
    assert_eq!(entries[2].0, Value::Str("self".into()));
    let list = entries[2].1.clone();
    let Value::Object(i) = list else {
        panic!("not a list")
    };
    assert!(
        matches!(&pickle.objects[i], Object::List(items) if items == std::slice::from_ref(&list))
    );

    let unhashable = P::new().op(b"}]N").op(b"s").stop();
    assert!(run(&unhashable).is_err());
    let early_get = P::new().op(b"h\x07").stop();
    assert!(
        matches!(run(&early_get), Err(PickleError::Invalid { reason, .. }) if reason.contains("memo"))
    );
    let wrong_tag = P::new()
        .op(b"(")
        .str("module")
        .global("torch", "FloatStorage")
        .str("0")
        .str("cpu")
        .int(1)
        .op(b"tQ")
        .stop();
    assert!(run(&wrong_tag).is_err());
}

#[test]
fn deep_nesting_is_harmless() {
    let mut p = P::new().op(b")");
    for _ in 0..200_000 {
        p = p.op(&[0x85]);
    }
    let (pickle, _) = run(&p.stop()).expect("valid");
    assert_eq!(pickle.objects.len(), 200_001);
}

#[test]
fn costly_keys_and_shapes_are_refused() {
    // A key of nested tuples, each holding its child ten times: 10^8 nodes if walked naively.
    let mut p = P::new().op(b"}").op(b")");
    for _ in 0..8 {
        p = p.op(b"q\x00(");
        for _ in 0..10 {
            p = p.op(b"h\x00");
        }
        p = p.op(b"t");
    }
    let err = run(&p.op(b"Ns").stop()).expect_err("refused");
    assert!(
        matches!(&err, PickleError::Invalid { reason, .. } if reason.contains("small tuple")),
        "{err:?}"
    );
    let dims = [1u8; 65];
    let bytes = P::new()
        .op(b"}")
        .str("w")
        .tensor("0", 1, 0, &dims, &dims)
        .op(b"s")
        .stop();
    let err = run(&bytes).expect_err("refused");
    assert!(
        matches!(&err, PickleError::Invalid { reason, .. } if reason.contains("at most 64")),
        "{err:?}"
    );
}

#[test]
fn mutated_real_pickles_never_panic() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/strided.pt");
    let file = std::fs::File::open(path).expect("fixture");
    let mut zip = zip::ZipArchive::new(file).expect("zip");
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(
        &mut zip.by_name("strided/data.pkl").expect("entry"),
        &mut pkl,
    )
    .expect("read");
    assert!(run(&pkl).is_ok());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut bytes = pkl.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        let cut = bytes.len() - (next() % 3) as usize;
        let _ = run(&bytes[..cut]);
    }
}
