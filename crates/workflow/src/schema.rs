//! The JSON Schema of the workflow format, generated from the types the parser fills in, for
//! editors (e.g. the YAML language server's `# yaml-language-server: $schema=...`).

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::workflow::Workflow;

/// Returns the JSON Schema (draft-07, which editors support best) of version 1 of the
/// workflow format, with every key's description and default.
pub fn json_schema() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<Workflow>();
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_describes_defaults() {
        let schema = json_schema();
        let max_rounds = &schema["properties"]["max_rounds"];
        assert_eq!(max_rounds["default"], 20, "{max_rounds}");
        assert!(
            max_rounds["description"]
                .as_str()
                .is_some_and(|d| d.contains("Default: 20")),
            "{max_rounds}"
        );
        let required: Vec<&str> = schema["required"]
            .as_array()
            .expect("required keys")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["version", "name", "model", "initiator"]);
        assert_eq!(schema["additionalProperties"], false);
    }
}
