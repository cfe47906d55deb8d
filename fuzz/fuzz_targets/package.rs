//! The text files of a model package, as a user writes them: the input is parsed as
//! `config.json` (`fl_package::parse_config`, which also reads the hyper-parameters),
//! `preprocessor_config.json` (`parse_preprocessor`) and the Model Card `README.md`
//! (`parse_card`); when it is a JSON object its hyper-parameters are also read alone, in
//! both scopes (`HyperParameterValues::from_json`), as a workflow's `training` section is.
//! Every problem found is rendered, as the CLI prints them, and valid hyper-parameters are
//! resolved into the effective settings a run prints.

#![no_main]

use fl_package::{
    HyperParameterValues, HyperParameters, ModelCatalog, Origin, Problems, Scope, parse_card,
    parse_config, parse_preprocessor,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Files are read as UTF-8; a file that is not is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut catalog = ModelCatalog::new();
    catalog.register("fedengine.vision", "SmallCnn");

    let mut problems = Problems::default();
    let config = parse_config(text, &catalog, &mut problems);
    assert_eq!(config.is_some(), !problems.has_errors());
    if let Some(config) = &config {
        let _ = config.hyper_parameters.to_json();
    }
    let _ = problems.to_string();

    let mut problems = Problems::default();
    if let Some(preprocessor) = parse_preprocessor(text, &mut problems) {
        let _ = preprocessor.augmentation();
    }
    let _ = problems.to_string();

    let mut problems = Problems::default();
    let card = parse_card(text, &mut problems);
    assert_eq!(card.is_some(), !problems.has_errors());
    let _ = problems.to_string();

    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
        for scope in [Scope::Anywhere, Scope::PackageOnly] {
            let Ok(values) = HyperParameterValues::from_json(&map, scope) else {
                continue;
            };
            let _ = values.to_json();
            // What a run prints and uses: the effective settings and each epoch's rate.
            let workflow = HyperParameterValues::default();
            let layers = [(Origin::Workflow, &workflow), (Origin::Package, &values)];
            if let Ok(resolved) = HyperParameters::resolve(&layers) {
                for setting in resolved.settings(true) {
                    let _ = setting.shown();
                }
                for epoch in [0, 1, 7, 1 << 20, u64::MAX] {
                    let _ = resolved.values.learning_rate_at(epoch);
                }
            }
        }
    }
});
