//! Typed reads of loosely typed values (YAML front matter and JSON share `serde_json::Value`),
//! describing what was found when it is not what is accepted.

use serde_json::Value;

/// Names the JSON/YAML type of `value` for messages (`a number`, `a list`, ...).
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// Returns the string if `value` is a non-empty string (after trimming).
pub fn non_empty_string(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.trim().is_empty())
}

/// Returns the list of strings if `value` is a list whose items are all non-empty strings.
pub fn string_list(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| non_empty_string(item).map(str::to_owned))
        .collect()
}

/// Returns the integer if `value` is a whole number at least `min`.
pub fn integer_at_least(value: &Value, min: i64) -> Option<i64> {
    value.as_i64().filter(|n| *n >= min)
}

/// Returns the number if `value` is a finite number within `range` (inclusive).
pub fn number_in(value: &Value, lo: f64, hi: f64) -> Option<f64> {
    value
        .as_f64()
        .filter(|x| x.is_finite() && *x >= lo && *x <= hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_only_what_is_accepted() {
        assert_eq!(non_empty_string(&json!("a")), Some("a"));
        assert_eq!(non_empty_string(&json!("  ")), None);
        assert_eq!(non_empty_string(&json!(1)), None);
        assert_eq!(
            string_list(&json!(["a", "b"])),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(string_list(&json!(["a", 2])), None);
        assert_eq!(string_list(&json!("a")), None);
        assert_eq!(integer_at_least(&json!(3), 1), Some(3));
        assert_eq!(integer_at_least(&json!(0), 1), None);
        assert_eq!(integer_at_least(&json!(1.5), 1), None);
        assert_eq!(number_in(&json!(0.5), 0.0, 1.0), Some(0.5));
        assert_eq!(number_in(&json!(1.5), 0.0, 1.0), None);
        assert_eq!(describe(&json!([1])), "a list");
        assert_eq!(describe(&json!("")), "an empty string");
    }
}
