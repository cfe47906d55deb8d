//! TorchScript entry files against real PyTorch: fixtures written by
//! `fixtures/make_torchscript_fixtures.py`, Python run through `FEDENGINE_PYTHON`, and the
//! example package through the `engine` binary is in `crates/cli/tests/torchscript_package.rs`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{fixtures, max_abs_diff, python, tensor};
use fl_package::ModelPackage;
use fl_torch::{
    Classifier, HeadPlan, HeadRule, HyperParameters, LabelPlan, ModelError, Origin,
    build_optimizer, builtin_catalog, read_params, write_safetensors,
};
use tch::{Device, Kind, Tensor};

const CARD: &str = "---\nname: scripted-fixture\ntasks:\n  - image-classification\n\
    license: Apache-2.0\nframework: PyTorch\nauthor: fedengine tests\n---\n\n# Fixture\n";
const LABELS: [&str; 4] = ["a", "b", "c", "d"];

/// Writes a package into `dir` with `entry` as `model.ts` and `weights` as `param_name`, and
/// opens it. `extra` is merged into config.json.
fn package_with(
    dir: &Path,
    entry: &Path,
    class: &str,
    weights: &Path,
    param_name: &str,
    extra: serde_json::Value,
) -> ModelPackage {
    fs::create_dir_all(dir).expect("package dir");
    fs::copy(entry, dir.join("model.ts")).expect("copy entry file");
    fs::copy(weights, dir.join(param_name)).expect("copy weights");
    fs::write(dir.join("README.md"), CARD).expect("card");
    let id2label: serde_json::Map<String, serde_json::Value> = LABELS
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), serde_json::Value::from(*l)))
        .collect();
    let mut config = serde_json::json!({
        "entry_file": "model.ts",
        "entry_class": class,
        "param_file": param_name,
        "in_channels": 3,
        "id2label": id2label,
        "learning_rate": 0.01,
        "optimizer": "adam",
    });
    for (k, v) in extra.as_object().expect("object") {
        config[k] = v.clone();
    }
    fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).expect("json"),
    )
    .expect("config");
    fs::write(
        dir.join("preprocessor_config.json"),
        r#"{"size": 8, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#,
    )
    .expect("preprocessor");
    ModelPackage::open(dir, &builtin_catalog()).expect("a valid package")
}

/// The fixture package: `scripted_cnn.ts` with the *other* weights of
/// `scripted_cnn_state_dict.pt` (a `torch.save(model.state_dict())` OrderedDict).
fn fixture_package(dir: &Path) -> ModelPackage {
    package_with(
        dir,
        &fixtures().join("scripted_cnn.ts"),
        "ScriptedCnn",
        &fixtures().join("scripted_cnn_state_dict.pt"),
        "weights.pt",
        serde_json::json!({}),
    )
}

fn labels() -> Vec<String> {
    LABELS.map(String::from).to_vec()
}

fn io() -> Vec<(String, Tensor)> {
    read_params(fixtures().join("scripted_cnn_io.safetensors")).expect("io fixture")
}

fn eval_logits(model: &Classifier, xs: &Tensor) -> Tensor {
    tch::no_grad(|| model.forward(xs, false))
}

fn names(tensors: &[(String, Tensor)]) -> Vec<String> {
    let mut names: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names
}

#[test]
fn untrained_module_and_state_dict_param_file_give_pytorchs_eval_logits() {
    let io = io();
    let xs = tensor(&io, "input");

    // The module as saved, with its own weights and BatchNorm statistics.
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let module = fl_torch::torchscript::ScriptedModule::load(
        &fixtures().join("scripted_cnn.ts"),
        "ScriptedCnn",
        &vs,
    )
    .expect("loads");
    assert_eq!(module.type_name(), "__torch__.ScriptedCnn");
    let logits = tch::no_grad(|| module.try_forward(&xs, false)).expect("forward");
    let diff = max_abs_diff(&logits, &tensor(&io, "logits_module"));
    println!("module as saved: max |engine - PyTorch| eval logit = {diff:e}");
    assert!(diff <= 1e-5, "module as saved differs by {diff}");

    // A package: the same module with other weights loaded strictly by name from an
    // OrderedDict state dict, BatchNorm statistics and counters included.
    let dir = tempfile::tempdir().expect("tempdir");
    let package = fixture_package(dir.path());
    let (model, change) =
        Classifier::from_package(&package, Some(&labels()), HeadRule::Keep, 1).expect("built");
    assert!(matches!(change.head, HeadPlan::Keep { .. }), "{change}");
    assert_eq!((model.spec.in_channels, model.spec.num_classes), (3, 4));
    let logits = eval_logits(&model, &xs);
    let diff = max_abs_diff(&logits, &tensor(&io, "logits_state_dict"));
    println!("state-dict param file: max |engine - PyTorch| eval logit = {diff:e}");
    assert!(diff <= 1e-5, "state-dict weights differ by {diff}");
    assert!(
        max_abs_diff(&logits, &tensor(&io, "logits_module")) > 1e-3,
        "the param file's weights replaced the module's own"
    );

    // The store holds exactly PyTorch's state-dict names, and the file's values.
    let file = read_params(&package.param_path).expect("state dict");
    let snapshot = model.snapshot();
    assert_eq!(names(&snapshot), names(&file));
    for name in [
        "block.0.weight",
        "block.1.running_var",
        "bn1.num_batches_tracked",
    ] {
        assert!(
            tensor(&snapshot, name).equal(&tensor(&file, name)),
            "{name} loaded"
        );
    }
    let scripted = model.scripted().expect("a TorchScript classifier");
    assert_eq!(scripted.buffer_names().len(), 6);
    let trainable = model.var_store().trainable_variables().len();
    assert_eq!(trainable, scripted.parameter_names().len());
    assert_eq!(trainable, 10);
}

#[test]
fn trains_through_torchscript_and_pytorch_loads_the_result_with_the_same_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = fixture_package(&dir.path().join("package"));
    let (mut model, _) =
        Classifier::from_package(&package, Some(&labels()), HeadRule::Keep, 3).expect("built");
    let hp = HyperParameters::resolve(&[(Origin::Package, &package.config.hyper_parameters)])
        .expect("hyper-parameters")
        .values;
    let mut optimizer = build_optimizer(&hp, model.var_store()).expect("optimizer");

    tch::manual_seed(11);
    let xs = Tensor::randn([16, 3, 8, 8], (Kind::Float, Device::Cpu));
    let ys = Tensor::randint(4, [16], (Kind::Int64, Device::Cpu));
    let eval_loss = |model: &Classifier| {
        eval_logits(model, &xs)
            .cross_entropy_for_logits(&ys)
            .double_value(&[])
    };
    let before = model.snapshot();
    let loss_before = eval_loss(&model);
    let steps = 25;
    for _ in 0..steps {
        let loss = model.forward(&xs, true).cross_entropy_for_logits(&ys);
        optimizer.backward_step(&loss);
    }
    let loss_after = eval_loss(&model);
    println!("eval loss on the batch: {loss_before:.4} -> {loss_after:.4} after {steps} steps");
    assert!(
        loss_after < loss_before * 0.8,
        "loss {loss_before} -> {loss_after}"
    );
    let after = model.snapshot();
    for name in ["conv1.weight", "block.0.bias", "fc.weight", "bn1.weight"] {
        let change = max_abs_diff(&tensor(&before, name), &tensor(&after, name));
        assert!(change > 1e-4, "parameter {name} changed by {change}");
    }
    // Buffers are the module's own: training-mode BatchNorm moved them.
    for name in ["bn1.running_mean", "block.1.running_var"] {
        let change = max_abs_diff(&tensor(&before, name), &tensor(&after, name));
        assert!(change > 1e-4, "buffer {name} changed by {change}");
    }
    let counter =
        |s: &[(String, Tensor)]| tensor(s, "block.1.num_batches_tracked").int64_value(&[]);
    assert_eq!(counter(&after) - counter(&before), steps);

    // Saved with PyTorch's names, the weights load strictly into the eager model and into the
    // scripted module in PyTorch, and both give the engine's eval logits.
    let weights = dir.path().join("trained.safetensors");
    model.save_safetensors(&weights).expect("saved");
    let probe = Tensor::randn([5, 3, 8, 8], (Kind::Float, Device::Cpu));
    let (keys, pytorch) = pytorch_logits(dir.path(), &weights, &probe);
    assert_eq!(keys, names(&after), "state-dict names");
    let engine = eval_logits(&model, &probe);
    for kind in ["eager", "scripted", "traced"] {
        let diff = max_abs_diff(&engine, &tensor(&pytorch, kind));
        println!("trained, PyTorch {kind}: max |engine - PyTorch| eval logit = {diff:e}");
        assert!(diff <= 1e-5, "{kind} differs by {diff}");
    }

    // A package of the entry file and the saved weights loads again with the same logits.
    let again = package_with(
        &dir.path().join("result"),
        &fixtures().join("scripted_cnn.ts"),
        "ScriptedCnn",
        &weights,
        "model.safetensors",
        serde_json::json!({}),
    );
    let (reloaded, _) = Classifier::from_package(&again, None, HeadRule::Keep, 0).expect("reloads");
    let diff = max_abs_diff(&eval_logits(&reloaded, &probe), &engine);
    assert_eq!(diff, 0.0, "reloaded weights give other logits");

    // Restoring the first snapshot brings back parameters and buffers.
    model.restore(&before).expect("restored");
    let (fresh, _) =
        Classifier::from_package(&package, Some(&labels()), HeadRule::Keep, 3).expect("built");
    assert_eq!(
        max_abs_diff(&eval_logits(&model, &probe), &eval_logits(&fresh, &probe)),
        0.0
    );
}

/// Runs the fixture script's `--logits` on engine-written `weights` and a probe batch: the
/// state-dict keys PyTorch saw and its logits by model kind.
fn pytorch_logits(
    dir: &Path,
    weights: &Path,
    probe: &Tensor,
) -> (Vec<String>, Vec<(String, Tensor)>) {
    let input = dir.join("input.safetensors");
    write_safetensors(&input, &[("input".to_owned(), probe.shallow_clone())]).expect("input");
    let out = dir.join("pytorch.safetensors");
    let output = Command::new(python())
        .arg(fixtures().join("make_torchscript_fixtures.py"))
        .arg("--logits")
        .args([weights, &input, &out])
        .output()
        .expect("FEDENGINE_PYTHON starts");
    assert!(
        output.status.success(),
        "PyTorch could not load the engine's weights:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keys: Vec<String> = serde_json::from_slice(&output.stdout).expect("keys json");
    (keys, read_params(&out).expect("PyTorch logits"))
}

#[test]
fn a_traced_module_predicts_fine_tunes_and_loads_back_into_pytorch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = package_with(
        &dir.path().join("package"),
        &fixtures().join("traced_cnn.ts"),
        "ScriptedCnn",
        &fixtures().join("scripted_cnn_state_dict.pt"),
        "weights.pt",
        serde_json::json!({}),
    );
    let (model, change) =
        Classifier::from_package(&package, Some(&labels()), HeadRule::Keep, 3).expect("built");
    assert!(matches!(change.head, HeadPlan::Keep { .. }), "{change}");
    let scripted = model.scripted().expect("a TorchScript classifier");
    assert_eq!(
        scripted.buffer_names().len(),
        6,
        "{:?}",
        scripted.buffer_names()
    );

    let io = io();
    let xs = tensor(&io, "input");
    let logits = eval_logits(&model, &xs);
    for reference in ["logits_traced", "logits_state_dict"] {
        let diff = max_abs_diff(&logits, &tensor(&io, reference));
        println!("traced: max |engine - PyTorch {reference}| = {diff:e}");
        assert!(diff <= 1e-5, "{reference} differs by {diff}");
    }

    let hp = HyperParameters::resolve(&[(Origin::Package, &package.config.hyper_parameters)])
        .expect("hyper-parameters")
        .values;
    let mut optimizer = build_optimizer(&hp, model.var_store()).expect("optimizer");
    let before = model.snapshot();
    tch::manual_seed(5);
    let batch = Tensor::randn([16, 3, 8, 8], (Kind::Float, Device::Cpu));
    let ys = Tensor::randint(4, [16], (Kind::Int64, Device::Cpu));
    for _ in 0..10 {
        let loss = model.forward(&batch, true).cross_entropy_for_logits(&ys);
        optimizer.backward_step(&loss);
    }
    let after = model.snapshot();
    for name in ["conv1.weight", "fc.weight", "bn1.weight"] {
        let change = max_abs_diff(&tensor(&before, name), &tensor(&after, name));
        assert!(change > 1e-4, "parameter {name} changed by {change}");
    }
    // Traced in evaluation mode, the module keeps computing with its running statistics.
    assert_eq!(
        max_abs_diff(
            &tensor(&before, "bn1.running_mean"),
            &tensor(&after, "bn1.running_mean")
        ),
        0.0
    );

    let weights = dir.path().join("trained.safetensors");
    model.save_safetensors(&weights).expect("saved");
    let probe = Tensor::randn([5, 3, 8, 8], (Kind::Float, Device::Cpu));
    let (keys, pytorch) = pytorch_logits(dir.path(), &weights, &probe);
    assert_eq!(
        keys,
        names(&after),
        "every parameter and buffer, counters included"
    );
    let engine = eval_logits(&model, &probe);
    for kind in ["eager", "scripted", "traced"] {
        let diff = max_abs_diff(&engine, &tensor(&pytorch, kind));
        println!("fine-tuned traced, PyTorch {kind}: max |engine - PyTorch| = {diff:e}");
        assert!(diff <= 1e-5, "{kind} differs by {diff}");
    }
}

#[test]
fn a_batch_the_module_refuses_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = fixture_package(dir.path());
    let (model, _) = Classifier::from_package(&package, None, HeadRule::Keep, 0).expect("built");
    // A 1x1 image cannot be max-pooled by 2.
    let tiny = Tensor::zeros([1, 3, 1, 1], (Kind::Float, Device::Cpu));
    let text = model
        .try_forward(&tiny, false)
        .expect_err("refused")
        .to_string();
    assert!(
        text.contains("could not run on a batch of shape [1, 3, 1, 1]"),
        "{text}"
    );
    // Wrong channels, in training mode.
    let grey = Tensor::zeros([2, 1, 8, 8], (Kind::Float, Device::Cpu));
    let text = model
        .try_forward(&grey, true)
        .expect_err("refused")
        .to_string();
    assert!(text.contains("[2, 1, 8, 8]"), "{text}");
    // The module still works afterwards.
    assert_eq!(
        eval_logits(&model, &tensor(&io(), "input")).size(),
        vec![4, 4]
    );
}

#[test]
fn train_and_eval_modes_reach_the_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let package = fixture_package(dir.path());
    let (model, _) = Classifier::from_package(&package, None, HeadRule::Keep, 5).expect("built");
    assert_eq!(model.labels, labels());
    let xs = tensor(&io(), "input");
    let mean = |m: &Classifier| tensor(&m.snapshot(), "bn1.running_mean");

    let before = mean(&model);
    let (a, b) = (eval_logits(&model, &xs), eval_logits(&model, &xs));
    assert!(a.equal(&b), "eval mode is deterministic");
    assert!(
        mean(&model).equal(&before),
        "eval mode leaves statistics alone"
    );

    let (c, d) = tch::no_grad(|| (model.forward(&xs, true), model.forward(&xs, true)));
    assert!(
        max_abs_diff(&c, &d) > 1e-4,
        "Dropout is active in training mode"
    );
    assert!(
        max_abs_diff(&mean(&model), &before) > 1e-4,
        "training mode updates statistics"
    );
    assert!(max_abs_diff(&a, &eval_logits(&model, &xs)) > 1e-6);
}

fn error_of(result: Result<(Classifier, LabelPlan), ModelError>) -> String {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unusable_modules_labels_and_weights_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dict = fixtures().join("scripted_cnn_state_dict.pt");

    // A pickled Python module is not TorchScript.
    let package = package_with(
        &dir.path().join("pickled"),
        &fixtures().join("pickled_module.pt"),
        "ScriptedCnn",
        &state_dict,
        "weights.pt",
        serde_json::json!({}),
    );
    let text = error_of(Classifier::from_package(&package, None, HeadRule::Keep, 0));
    assert!(
        text.contains("has no TorchScript code")
            && text.contains("torch.jit.script(model).save(path)"),
        "{text}"
    );

    // entry_class must name the module's class.
    let package = package_with(
        &dir.path().join("wrong-class"),
        &fixtures().join("scripted_cnn.ts"),
        "ResNet",
        &state_dict,
        "weights.pt",
        serde_json::json!({}),
    );
    let text = error_of(Classifier::from_package(&package, None, HeadRule::Keep, 0));
    assert!(
        text.contains("key `entry_class`") && text.contains("`__torch__.ScriptedCnn`"),
        "{text}"
    );

    // Labels are matched by name: other names are refused under `head: keep`, and a scripted
    // head cannot be reset or extended.
    let package = fixture_package(&dir.path().join("labels"));
    let three: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
    let text = error_of(Classifier::from_package(
        &package,
        Some(&three),
        HeadRule::Keep,
        0,
    ));
    assert!(
        text.contains("not in the package's id2label: `x`, `y`, `z` (id2label: a, b, c, d)"),
        "{text}"
    );
    for rule in [HeadRule::Reset, HeadRule::Extend] {
        let text = error_of(Classifier::from_package(&package, Some(&three), rule, 0));
        assert!(
            text.contains("cannot rebuild the head of a TorchScript module"),
            "{text}"
        );
    }
    let shuffled: Vec<String> = ["c", "a", "d", "b"].map(String::from).to_vec();
    let (model, plan) =
        Classifier::from_package(&package, Some(&shuffled), HeadRule::Keep, 0).expect("built");
    assert_eq!(
        plan.head,
        HeadPlan::Keep {
            reordered: true,
            unused: vec![]
        }
    );
    assert_eq!(model.labels, labels(), "the package's order is the model's");

    // id2label must agree with the module's outputs.
    let package = package_with(
        &dir.path().join("id2label"),
        &fixtures().join("scripted_cnn.ts"),
        "ScriptedCnn",
        &state_dict,
        "weights.pt",
        serde_json::json!({"id2label": {"0": "a", "1": "b"}}),
    );
    let text = error_of(Classifier::from_package(&package, None, HeadRule::Keep, 0));
    assert!(
        text.contains("has 2 labels but the TorchScript module outputs 4 classes"),
        "{text}"
    );

    // in_channels is checked by running the module once.
    let package = package_with(
        &dir.path().join("channels"),
        &fixtures().join("scripted_cnn.ts"),
        "ScriptedCnn",
        &state_dict,
        "weights.pt",
        serde_json::json!({"in_channels": 1}),
    );
    let text = error_of(Classifier::from_package(&package, None, HeadRule::Keep, 0));
    assert!(text.contains("[2, 1, 8, 8]"), "{text}");

    // The param file is strict: a missing buffer and an unknown name are both named.
    let mut tensors = read_params(&state_dict).expect("state dict");
    tensors.retain(|(n, _)| n != "block.1.running_var");
    tensors.push((
        "head.weight".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    ));
    let partial = dir.path().join("partial.safetensors");
    write_safetensors(&partial, &tensors).expect("written");
    let package = package_with(
        &dir.path().join("partial"),
        &fixtures().join("scripted_cnn.ts"),
        "ScriptedCnn",
        &partial,
        "weights.safetensors",
        serde_json::json!({}),
    );
    let text = error_of(Classifier::from_package(&package, None, HeadRule::Keep, 0));
    assert!(
        text.contains("1 missing: `block.1.running_var`")
            && text.contains("1 unexpected: `head.weight`"),
        "{text}"
    );
}

#[test]
fn a_module_without_buffers_loads_with_its_parameters_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let module = fl_torch::torchscript::ScriptedModule::load(
        &fixtures().join("scripted_mlp.ts"),
        "Mlp",
        &vs,
    )
    .expect("loads");
    assert!(module.buffer_names().is_empty());
    let mut weights: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        names(&weights),
        ["hidden.bias", "hidden.weight", "out.bias", "out.weight"]
    );
    let file = dir.path().join("mlp.safetensors");
    write_safetensors(&file, &weights).expect("written");
    let package = package_with(
        &dir.path().join("mlp"),
        &fixtures().join("scripted_mlp.ts"),
        "Mlp",
        &file,
        "model.safetensors",
        serde_json::json!({"id2label": {"0": "a", "1": "b", "2": "c"}}),
    );
    // 3 x 2 x 2 images flatten to the 12 inputs of the first layer.
    fs::write(
        package.root.join("preprocessor_config.json"),
        r#"{"size": 2}"#,
    )
    .expect("preprocessor");
    let package = ModelPackage::open(&package.root, &builtin_catalog()).expect("valid");
    let (model, change) =
        Classifier::from_package(&package, None, HeadRule::Keep, 0).expect("built");
    assert!(matches!(change.head, HeadPlan::Keep { .. }), "{change}");
    assert_eq!(model.spec.num_classes, 3);
    assert_eq!(model.var_store().trainable_variables().len(), 4);
}

#[test]
fn a_buffer_the_module_replaces_is_followed() {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let module = fl_torch::torchscript::ScriptedModule::load(
        &fixtures().join("scripted_counting.ts"),
        "Counting",
        &vs,
    )
    .expect("loads");
    assert_eq!(module.buffer_names(), ["seen"]);
    let seen = |vs: &tch::nn::VarStore| vs.variables()["seen"].double_value(&[]);
    let xs = Tensor::ones([4, 3, 2, 2], (Kind::Float, Device::Cpu));
    let _ = tch::no_grad(|| module.try_forward(&xs, true)).expect("forward");
    // forward assigned a new tensor to `seen`: the registered one is stale until refreshed.
    assert_eq!(seen(&vs), 0.0);
    module.refresh_buffers(&vs).expect("refreshed");
    assert_eq!(seen(&vs), 4.0);
    // Writing through the store reaches the module's current buffer.
    let _ = tch::no_grad(|| vs.variables()["seen"].shallow_clone().fill_(10.0));
    let _ = tch::no_grad(|| module.try_forward(&xs, true)).expect("forward");
    module.refresh_buffers(&vs).expect("refreshed");
    assert_eq!(seen(&vs), 14.0);
}
