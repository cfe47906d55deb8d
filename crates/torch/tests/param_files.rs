//! Param files against real PyTorch: fixtures written by `fixtures/make_fixtures.py`, and
//! Python run through `FEDENGINE_PYTHON` (set by the generated `.cargo/config.toml`).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::{fixtures, max_abs_diff, python, tensor};
use fl_package::ParamFormat;
use fl_torch::{
    ParamError, ResNetDepth, load_strict, named_tensors, read_param_file, read_params, resnet,
    small_cnn, write_safetensors,
};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Runs `make_fixtures.py` with `args`; returns its stdout.
fn make_fixtures(args: &[&str]) -> String {
    let output = Command::new(python())
        .arg(fixtures().join("make_fixtures.py"))
        .args(args)
        .output()
        .expect("FEDENGINE_PYTHON cannot be started");
    assert!(
        output.status.success(),
        "make_fixtures.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn small_cnn_state_dict_loads_strictly_and_matches_pytorch_logits() {
    let file = read_param_file(fixtures().join("small_cnn_state_dict.pt")).expect("readable");
    assert_eq!(file.format, ParamFormat::PytorchZip);
    assert_eq!(file.wrapper_key, None);
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 16);
    assert_eq!(
        &names[..7],
        [
            "conv1.weight",
            "conv1.bias",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked"
        ],
        "state-dict order"
    );

    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = small_cnn(&vs.root(), 1, 10);
    let report = load_strict(&mut vs, &file.tensors).expect("strict load");
    assert_eq!(report.loaded, 14);
    assert_eq!(
        report.ignored,
        ["bn1.num_batches_tracked", "bn2.num_batches_tracked"]
    );
    assert!(report.converted.is_empty());

    let io = read_params(fixtures().join("small_cnn_io.safetensors")).expect("io");
    let logits = net.forward_t(&tensor(&io, "input"), false);
    let diff = max_abs_diff(&logits, &tensor(&io, "logits"));
    eprintln!("small_cnn .pt: max abs logit difference vs PyTorch = {diff:e}");
    assert!(diff < 1e-5, "max abs difference {diff}");
}

/// Loads torchvision's `arch` (made by PyTorch, BatchNorm statistics stirred) strictly into
/// the engine's ResNet and compares eval logits.
fn torchvision_resnet_matches_pytorch(arch: &str, depth: ResNetDepth, keys: usize, bns: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 tempdir");
    make_fixtures(&[&format!("--{arch}"), out]);
    let tensors = read_params(dir.path().join(format!("{arch}_state_dict.pt"))).expect("readable");
    assert_eq!(tensors.len(), keys);

    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = resnet(&vs.root(), depth, 3, 5);
    let report = load_strict(&mut vs, &tensors).expect("strict load");
    assert_eq!(report.loaded, keys - bns);
    assert_eq!(
        report.ignored.len(),
        bns,
        "num_batches_tracked of every BatchNorm"
    );

    let io = read_params(dir.path().join(format!("{arch}_io.safetensors"))).expect("io");
    let logits = net.forward_t(&tensor(&io, "input"), false);
    let diff = max_abs_diff(&logits, &tensor(&io, "logits"));
    eprintln!("{arch} .pt: max abs logit difference vs PyTorch = {diff:e}");
    assert!(diff < 1e-4, "max abs difference {diff}");
}

#[test]
fn torchvision_resnet18_loads_strictly_and_matches_pytorch_logits() {
    torchvision_resnet_matches_pytorch("resnet18", ResNetDepth::R18, 122, 20);
}

#[test]
fn torchvision_resnet50_loads_strictly_and_matches_pytorch_logits() {
    torchvision_resnet_matches_pytorch("resnet50", ResNetDepth::R50, 320, 53);
}

#[test]
fn engine_safetensors_load_strictly_into_pytorch_and_give_the_same_logits() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = small_cnn(&vs.root(), 1, 10);
    let mut opt = nn::Adam::default().build(&vs, 1e-2).expect("optimizer");
    for _ in 0..5 {
        let xs = Tensor::randn([16, 1, 8, 8], (Kind::Float, Device::Cpu));
        let ys = Tensor::randint(10, [16], (Kind::Int64, Device::Cpu));
        let loss = net.forward_t(&xs, true).cross_entropy_for_logits(&ys);
        opt.backward_step(&loss);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = dir.path().join("small_cnn.safetensors");
    let input = dir.path().join("input.safetensors");
    let tensors = named_tensors(&vs);
    assert!(
        tensors.windows(2).all(|w| w[0].0 < w[1].0),
        "named_tensors is sorted"
    );
    write_safetensors(&weights, &tensors).expect("write weights");
    let xs = Tensor::randn([3, 1, 8, 8], (Kind::Float, Device::Cpu));
    write_safetensors(&input, &[("input", xs.shallow_clone())]).expect("write input");
    let ours = net.forward_t(&xs, false);

    let printed = make_fixtures(&[
        "--logits",
        weights.to_str().expect("utf-8"),
        input.to_str().expect("utf-8"),
    ]);
    let rows: Vec<Vec<f64>> = serde_json::from_str(printed.trim()).expect("JSON logits");
    let flat: Vec<f64> = rows.concat();
    let theirs = Tensor::from_slice(&flat)
        .reshape([3, 10])
        .to_kind(Kind::Float);
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("engine safetensors in PyTorch: max abs logit difference = {diff:e}");
    assert!(diff < 1e-5, "max abs difference {diff}");

    // And back: the engine reads what it wrote, unchanged and in the same order.
    let back = read_params(&weights).expect("read back");
    assert_eq!(back.len(), tensors.len());
    for ((n0, t0), (n1, t1)) in tensors.iter().zip(&back) {
        assert_eq!(n0, n1);
        assert!(t0.equal(t1), "{n0}");
    }
}

#[test]
fn strided_and_shared_storages_are_rebuilt_like_pytorch() {
    let expected = read_params(fixtures().join("strided_expected.safetensors")).expect("expected");
    for fixture in ["strided.pt", "strided_protocol4.pt"] {
        let file = read_param_file(fixtures().join(fixture)).expect("readable");
        assert_eq!(file.tensors.len(), expected.len(), "{fixture}");
        let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            &names[..3],
            ["transposed", "row", "block"],
            "{fixture}: dict order"
        );
        for (name, want) in &expected {
            let got = tensor(&file.tensors, name);
            assert_eq!(got.kind(), want.kind(), "{fixture}: {name}");
            assert_eq!(got.size(), want.size(), "{fixture}: {name}");
            assert!(got.equal(want), "{fixture}: {name}: {got:?} != {want:?}");
            assert!(got.is_contiguous(), "{fixture}: {name}");
        }
        // Views of one storage come back as independent tensors.
        let mut row = tensor(&file.tensors, "row");
        let _ = row.fill_(-1.0);
        assert!(tensor(&file.tensors, "transposed").min().double_value(&[]) >= 0.0);
        assert_eq!(tensor(&file.tensors, "scalar").size(), Vec::<i64>::new());
    }
}

#[test]
fn checkpoint_wrapper_is_unwrapped_and_named() {
    let file = read_param_file(fixtures().join("checkpoint.pt")).expect("readable");
    assert_eq!(file.wrapper_key.as_deref(), Some("state_dict"));
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["fc.weight", "fc.bias"]);
    let weight = Tensor::from_slice(&[0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5]).reshape([2, 3]);
    assert!(max_abs_diff(&tensor(&file.tensors, "fc.weight"), &weight) < 1e-7);
}

#[test]
fn a_pickle_calling_os_system_is_refused() {
    let path = fixtures().join("evil.pt");
    let err = read_params(&path).expect_err("refused");
    assert!(
        matches!(&err, ParamError::ForbiddenGlobal { name, .. } if name.ends_with(".system")),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("evil.pt") && text.contains("refused"),
        "{text}"
    );
    assert!(
        text.contains("collections.OrderedDict"),
        "says what is allowed: {text}"
    );
}

#[test]
fn strict_load_names_every_problem_and_copies_nothing() {
    let mut tensors = read_params(fixtures().join("small_cnn_state_dict.pt")).expect("readable");
    tensors.retain(|(n, _)| n != "bn2.running_var");
    tensors.push((
        "head.weight".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ));
    for (name, t) in &mut tensors {
        if name == "fc.bias" {
            *t = Tensor::zeros([1], (Kind::Float, Device::Cpu)); // broadcastable, still refused
        }
    }
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = small_cnn(&vs.root(), 1, 10);
    let before = named_tensors(&vs);
    let err = load_strict(&mut vs, &tensors).expect_err("mismatch");
    let text = err.to_string();
    for part in [
        "1 missing: `bn2.running_var`",
        "1 unexpected: `head.weight`",
        "`fc.bias` (model [10], file [1])",
        "nothing was loaded",
    ] {
        assert!(text.contains(part), "`{part}` not in: {text}");
    }
    for ((name, a), (_, b)) in before.iter().zip(named_tensors(&vs)) {
        assert!(a.equal(&b), "{name} changed although the load failed");
    }
}

#[test]
fn truncated_and_damaged_files_are_reported_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pt = std::fs::read(fixtures().join("small_cnn_state_dict.pt")).expect("fixture");
    for cut in [10, pt.len() / 2, pt.len() - 10] {
        let path = dir.path().join(format!("cut{cut}.pt"));
        std::fs::write(&path, &pt[..cut]).expect("write");
        let text = read_params(&path).expect_err("truncated").to_string();
        assert!(text.contains(&format!("cut{cut}.pt")), "{text}");
        assert!(text.contains("truncated or damaged"), "{text}");
    }

    // A complete zip whose storage entry is missing or short.
    for (skip, replace) in [(true, false), (false, true)] {
        let path = dir.path().join(format!("storage_{skip}.pt"));
        rewrite_zip(&pt, &path, "data/3", skip, replace);
        let text = read_params(&path).expect_err("damaged").to_string();
        assert!(text.contains(&format!("storage_{skip}.pt")), "{text}");
        let expected = if skip {
            "has no entry"
        } else {
            "holds 4 bytes"
        };
        assert!(text.contains(expected), "{text}");
    }

    let st = dir.path().join("w.safetensors");
    write_safetensors(
        &st,
        &[("w", Tensor::ones([64], (Kind::Float, Device::Cpu)))],
    )
    .expect("write");
    let bytes = std::fs::read(&st).expect("read");
    for cut in [12, 20, bytes.len() - 1] {
        let path = dir.path().join(format!("cut{cut}.safetensors"));
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let text = read_params(&path).expect_err("truncated").to_string();
        assert!(text.contains(&format!("cut{cut}.safetensors")), "{text}");
        assert!(text.contains("truncated"), "{text}");
    }

    let text_file = dir.path().join("weights.pt");
    std::fs::write(&text_file, "not weights at all").expect("write");
    let text = read_params(&text_file)
        .expect_err("unrecognised")
        .to_string();
    assert!(
        text.contains("weights.pt") && text.contains("accepted: safetensors"),
        "{text}"
    );
}

/// Copies the zip `bytes` to `path`, dropping (or shortening to 4 bytes) the entry ending in
/// `suffix`.
fn rewrite_zip(bytes: &[u8], path: &Path, suffix: &str, skip: bool, shorten: bool) {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let out = std::fs::File::create(path).expect("create");
    let mut writer = zip::ZipWriter::new(out);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).expect("entry");
        let name = entry.name().expect("name").into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        if name.ends_with(suffix) {
            if skip {
                continue;
            }
            if shorten {
                data.truncate(4);
            }
        }
        writer.start_file(name, options).expect("start");
        writer.write_all(&data).expect("write");
    }
    writer.finish().expect("finish");
}

#[test]
fn libtorch_ot_round_trips_and_converts_to_safetensors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ot = dir.path().join("w.ot");
    let originals = [
        (
            "layer1.0.conv.weight",
            Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu)),
        ),
        (
            "bn.running_var",
            Tensor::rand([4], (Kind::Double, Device::Cpu)),
        ),
        ("steps", Tensor::from_slice(&[3i64])),
    ];
    Tensor::save_multi(&originals, &ot).expect("save .ot");
    let file = read_param_file(&ot).expect("readable");
    assert_eq!(file.format, ParamFormat::LibtorchArchive);
    let st = dir.path().join("w.safetensors");
    write_safetensors(&st, &file.tensors).expect("write safetensors");
    let back = read_params(&st).expect("read safetensors");
    for (name, original) in &originals {
        for tensors in [&file.tensors, &back] {
            let t = tensor(tensors, name);
            assert_eq!(t.kind(), original.kind(), "{name}");
            assert!(t.equal(original), "{name}");
        }
    }
}
