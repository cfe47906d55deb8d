//! The JSON Schema is generated from the types the parser fills in; these tests check that
//! it lists exactly the keys the parser accepts, and that its defaults are the parser's.

use std::collections::BTreeSet;
use std::fs;

use fl_workflow::{Workflow, accepted_keys, json_schema};
use serde_json::Value;

/// Follows `$ref`s to `#/definitions/NAME`.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("unexpected reference {reference}"));
            resolve(&root["definitions"][name], root)
        }
        None => schema,
    }
}

/// Every key path the schema allows (`participants[].data`, `initiator.test.name`, ...).
fn schema_keys(schema: &Value, root: &Value, path: &str, keys: &mut BTreeSet<String>) {
    let schema = resolve(schema, root);
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for branch in schema[combinator].as_array().into_iter().flatten() {
            schema_keys(branch, root, path, keys);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_keys(items, root, &format!("{path}[]"), keys);
    }
    if let Some(properties) = schema["properties"].as_object() {
        assert_eq!(
            schema["additionalProperties"], false,
            "`{path}` must refuse unknown keys like the parser"
        );
        for (key, property) in properties {
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            keys.insert(key_path.clone());
            schema_keys(property, root, &key_path, keys);
        }
    }
}

#[test]
fn the_schema_lists_exactly_the_keys_the_parser_accepts() {
    let schema = json_schema();
    let mut from_schema = BTreeSet::new();
    schema_keys(&schema, &schema, "", &mut from_schema);
    let from_parser: BTreeSet<String> = accepted_keys().into_iter().collect();
    assert_eq!(from_schema, from_parser);
    assert!(from_schema.contains("max_rounds"));
    assert!(from_schema.contains("participants[].data.name"));
}

#[test]
fn every_key_is_described_and_every_default_is_the_parsers() {
    let schema = json_schema();
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["model", "data"] {
        fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    // Only the required keys: everything else takes its default.
    // The initiator trains, so that `participants` may be left out too.
    let minimal = "version: 1\nname: t\nmodel: model\n\
                   initiator: {node: hub, train: data, validation: data, test: data}\n";
    let path = dir.path().join("t.yaml");
    fs::write(&path, minimal).expect("write");
    let effective = serde_json::to_value(Workflow::load(&path).expect("valid")).expect("json");

    let properties = schema["properties"].as_object().expect("properties");
    for (key, property) in properties {
        let description = property["description"].as_str().unwrap_or_default();
        assert!(!description.is_empty(), "`{key}` has a description");
        if let Some(default) = property.get("default") {
            assert_eq!(&effective[key], default, "default of `{key}`");
        }
    }
    for key in [
        "seed",
        "max_rounds",
        "merge_epochs",
        "log_rounds",
        "aggregation",
        "early_stopping",
        "timeouts",
        "round_retries",
        "training",
        "threads",
        "transport",
    ] {
        assert!(
            properties[key].get("default").is_some(),
            "`{key}` states its default"
        );
    }
}
