use serde_json::json;

use super::*;

fn values(raw: Value, scope: Scope) -> Result<HyperParameterValues, Vec<KeyProblem>> {
    HyperParameterValues::from_json(raw.as_object().expect("object"), scope)
}

#[test]
fn defaults_are_the_documented_ones_and_no_schedule_applies_by_default() {
    let resolved = HyperParameters::resolve(&[]).expect("defaults");
    let v = &resolved.values;
    assert_eq!(v.optimizer, Optimizer::Adam);
    assert_eq!(
        (v.learning_rate, v.weight_decay, v.momentum),
        (1e-3, 5e-4, 0.0)
    );
    assert_eq!((v.batch_size, v.epochs), (32, 10));
    assert_eq!(v.lr_schedule, LrSchedule::Constant);
    for epoch in [0, 9, 10, 100] {
        assert_eq!(v.learning_rate_at(epoch), 1e-3);
    }
    // Every default printed is the one the spec documents.
    for setting in resolved.settings(true) {
        let spec = key_spec(&setting.key).expect("spec");
        assert_eq!(setting.source, Origin::Default);
        let documented = spec.default.split(' ').next().expect("a default");
        match &setting.value {
            Value::String(s) => assert_eq!(s, documented, "{}", setting.key),
            Value::Object(o) => assert_eq!(o["kind"], documented, "{}", setting.key),
            other => assert_eq!(
                other.as_f64(),
                documented.parse::<f64>().ok(),
                "{}: {other} vs {}",
                setting.key,
                spec.default
            ),
        }
    }
}

#[test]
fn later_layers_win_and_origins_are_recorded() {
    let package = values(
        json!({"optimizer": "SGD", "learning_rate": 0.05, "batch_size": 16, "epochs": 3}),
        Scope::PackageOnly,
    )
    .expect("package");
    let workflow = values(json!({"learning_rate": 0.01}), Scope::Anywhere).expect("workflow");
    let resolved =
        HyperParameters::resolve(&[(Origin::Package, &package), (Origin::Workflow, &workflow)])
            .expect("resolved");
    let v = &resolved.values;
    assert_eq!(
        (v.optimizer, v.learning_rate, v.batch_size),
        (Optimizer::Sgd, 0.01, 16)
    );
    assert_eq!(v.weight_decay, 0.0, "SGD's default weight decay");
    let o = &resolved.origins;
    assert_eq!(
        (o.optimizer, o.learning_rate, o.weight_decay, o.epochs),
        (
            Origin::Package,
            Origin::Workflow,
            Origin::Default,
            Origin::Package
        )
    );
    let settings = resolved.settings(false);
    assert_eq!(settings.len(), HYPER_PARAMETERS.len() - 1, "{settings:?}");
    assert_eq!(
        (settings[1].key.as_str(), settings[1].source),
        ("learning_rate", Origin::Workflow)
    );
    assert_eq!(settings[2].shown(), "constant");
}

#[test]
fn schedules_follow_pytorch() {
    let step = LrSchedule::Step {
        step_size: 5,
        gamma: 0.5,
    };
    assert_eq!(step.rate_at(0.1, 4), 0.1);
    assert_eq!(step.rate_at(0.1, 5), 0.05);
    assert_eq!(step.rate_at(0.1, 10), 0.025);
    let cosine = LrSchedule::Cosine {
        t_max: 10,
        eta_min: 0.0,
    };
    assert_eq!(cosine.rate_at(0.1, 0), 0.1);
    assert!((cosine.rate_at(0.1, 5) - 0.05).abs() < 1e-15);
    assert!(cosine.rate_at(0.1, 10).abs() < 1e-15);

    let parsed = values(
        json!({"lr_schedule": {"kind": "step", "step_size": 10}}),
        Scope::Anywhere,
    )
    .expect("step");
    assert_eq!(
        parsed.lr_schedule,
        Some(LrSchedule::Step {
            step_size: 10,
            gamma: 0.1
        })
    );
    let parsed = values(json!({"lr_schedule": "constant"}), Scope::Anywhere).expect("constant");
    assert_eq!(parsed.lr_schedule, Some(LrSchedule::Constant));
    // What is written back reads back the same.
    let resolved = HyperParameters::resolve(&[(
        Origin::Package,
        &values(
            json!({"lr_schedule": {"kind": "cosine", "t_max": 20, "eta_min": 0.001}}),
            Scope::Anywhere,
        )
        .expect("cosine"),
    )])
    .expect("resolved");
    let written = resolved.values.to_config_json();
    let reread = values(Value::Object(written), Scope::PackageOnly).expect("reread");
    assert_eq!(reread.lr_schedule, Some(resolved.values.lr_schedule));
}

#[test]
fn bad_values_name_the_key_and_what_is_accepted() {
    let cases = [
        (
            json!({"optimizer": "rmsprop"}),
            "optimizer",
            "`adam` or `sgd`",
        ),
        (json!({"batch_size": 0}), "batch_size", "at least 1"),
        (
            json!({"learning_rate": 0}),
            "learning_rate",
            "greater than 0",
        ),
        (json!({"momentum": 1.0}), "momentum", "below 1"),
        (json!({"weight_decay": -1}), "weight_decay", "from 0"),
        (
            json!({"lr_step_size": 10}),
            "lr_step_size",
            "lr_schedule: {kind: step",
        ),
        (
            json!({"lr_schedule": {"kind": "poly"}}),
            "lr_schedule.kind",
            "`cosine`",
        ),
        (
            json!({"lr_schedule": {"kind": "step"}}),
            "lr_schedule.step_size",
            "at least 1",
        ),
        (
            json!({"lr_schedule": {"kind": "step", "step_size": 2, "gamma": 2}}),
            "lr_schedule.gamma",
            "at most 1",
        ),
        (
            json!({"lr_schedule": {"kind": "cosine", "t_max": 5, "step_size": 2}}),
            "lr_schedule.step_size",
            "`t_max`",
        ),
        (
            json!({"optimizer": "adam", "momentum": 0.9}),
            "momentum",
            "optimizer: sgd",
        ),
        (json!({"epochs": 3}), "epochs", "merge_epochs"),
    ];
    for (raw, key, expected) in cases {
        let problems = values(raw.clone(), Scope::Anywhere).expect_err(&raw.to_string());
        assert_eq!(problems.len(), 1, "{raw}: {problems:?}");
        assert_eq!(problems[0].key, key, "{raw}");
        assert!(
            problems[0].expected.contains(expected),
            "{raw}: {problems:?}"
        );
    }
    // Every problem at once.
    let problems = values(
        json!({"batch_size": 0, "learning_rate": -1}),
        Scope::Anywhere,
    )
    .expect_err("two problems");
    assert_eq!(problems.len(), 2);
}

#[test]
fn momentum_with_adam_across_layers_names_both_sources() {
    let package = values(
        json!({"optimizer": "sgd", "momentum": 0.9}),
        Scope::PackageOnly,
    )
    .expect("package");
    let workflow = values(json!({"optimizer": "adam"}), Scope::Anywhere).expect("workflow");
    let error =
        HyperParameters::resolve(&[(Origin::Package, &package), (Origin::Workflow, &workflow)])
            .expect_err("adam with momentum");
    let message = error.to_string();
    assert!(message.contains("from config.json"), "{message}");
    assert!(message.contains("from workflow"), "{message}");
}

#[test]
fn the_markdown_table_lists_every_key() {
    let table = markdown_table();
    for spec in HYPER_PARAMETERS {
        assert!(
            table.contains(&format!("| `{}` | {} |", spec.key, spec.default)),
            "{table}"
        );
    }
}

/// docs/TRAINING.md holds the table [`markdown_table`] writes, between its markers. To
/// regenerate it after changing the spec: `FEDENGINE_WRITE_DOCS=1 cargo test -p fl-package
/// docs_table`.
#[test]
fn docs_table_is_the_spec_s() {
    const BEGIN: &str = "<!-- BEGIN hyper-parameters";
    const END: &str = "<!-- END hyper-parameters -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/TRAINING.md");
    let text = std::fs::read_to_string(&path).expect("docs/TRAINING.md");
    let begin = text.find(BEGIN).expect("begin marker");
    let begin = begin + text[begin..].find('\n').expect("end of the marker line") + 1;
    let end = text.find(END).expect("end marker");
    let wanted = markdown_table();
    if std::env::var_os("FEDENGINE_WRITE_DOCS").is_some() {
        let updated = format!("{}{wanted}{}", &text[..begin], &text[end..]);
        std::fs::write(&path, updated).expect("write docs/TRAINING.md");
        return;
    }
    assert_eq!(
        &text[begin..end],
        wanted,
        "docs/TRAINING.md's table differs from the spec; regenerate it with \
         FEDENGINE_WRITE_DOCS=1 cargo test -p fl-package docs_table"
    );
}
