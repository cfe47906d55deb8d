//! AlphaMed's `annotation.json`: `{"labels": [...], "Train": [...], "Validation": [...],
//! "Test": [...]}`, each sample `{"path": "images/x.png", "tags": [{"label": "a", "source":
//! "manual"}]}`.

use std::path::Path;

use serde_json::{Map, Value};

use crate::annotation::{Annotations, Entry};
use crate::error::DataError;
use crate::report::Split;

/// The AlphaMed annotation file name.
pub const ANNOTATION_JSON: &str = "annotation.json";

const SAMPLE_EXPECTED: &str = "an object such as {\"path\": \"images/x.png\", \"tags\": [{\"label\": \"a\", \"source\": \"manual\"}]}";

/// Parses the text of `annotation.json`; `file` is only used in errors.
pub(crate) fn parse_annotation_json(file: &Path, text: &str) -> Result<Annotations, DataError> {
    let root = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(malformed(
                file,
                "(top level)",
                &other,
                "a JSON object with `labels` and `Train`, `Validation`, `Test` lists",
            ));
        }
        Err(error) => {
            return Err(DataError::Syntax {
                file: file.to_owned(),
                line: error.line(),
                column: error.column(),
                message: format!("is not valid JSON: {error}"),
            });
        }
    };
    let mut annotations = Annotations {
        labels: parse_labels(file, &root)?,
        ..Annotations::default()
    };

    let mut seen: Vec<(Split, &str)> = Vec::new();
    for (key, value) in &root {
        if key == "labels" {
            continue;
        }
        let Some(split) = Split::from_name(key) else {
            annotations.ignored_keys.push(key.clone());
            continue;
        };
        if let Some((_, other)) = seen.iter().find(|(s, _)| *s == split) {
            return Err(DataError::Malformed {
                file: file.to_owned(),
                key: key.clone(),
                problem: format!("names the same split as `{other}`"),
                expected: format!("one `{}` list", split.name()),
            });
        }
        seen.push((split, key));
        let items = match value {
            Value::Null => continue,
            Value::Array(items) => items,
            other => return Err(malformed(file, key, other, "a list of samples, or null")),
        };
        for (i, item) in items.iter().enumerate() {
            annotations
                .entries
                .push(parse_sample(file, split, &format!("{key}[{i}]"), item)?);
        }
    }
    Ok(annotations)
}

/// `labels`: a non-empty list of distinct, non-empty strings.
fn parse_labels(file: &Path, root: &Map<String, Value>) -> Result<Vec<String>, DataError> {
    const EXPECTED: &str = "a list of distinct class names, such as [\"benign\", \"malignant\"]";
    let Some(value) = root.get("labels") else {
        return Err(DataError::Malformed {
            file: file.to_owned(),
            key: "labels".into(),
            problem: "is missing".into(),
            expected: EXPECTED.into(),
        });
    };
    let Value::Array(items) = value else {
        return Err(malformed(file, "labels", value, EXPECTED));
    };
    if items.is_empty() {
        return Err(malformed(file, "labels", value, EXPECTED));
    }
    let mut labels: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("labels[{i}]");
        let label = match item {
            Value::String(s) if !s.trim().is_empty() => s,
            other => return Err(malformed(file, &key, other, "a non-empty string")),
        };
        if let Some(j) = labels.iter().position(|l| l == label) {
            return Err(DataError::Malformed {
                file: file.to_owned(),
                key,
                problem: format!("repeats \"{label}\" (already labels[{j}])"),
                expected: EXPECTED.into(),
            });
        }
        labels.push(label.clone());
    }
    Ok(labels)
}

fn parse_sample(file: &Path, split: Split, key: &str, item: &Value) -> Result<Entry, DataError> {
    let Value::Object(sample) = item else {
        return Err(malformed(file, key, item, SAMPLE_EXPECTED));
    };
    let path = match sample.get("path") {
        Some(Value::String(path)) => path.clone(),
        Some(other) => {
            return Err(malformed(
                file,
                &format!("{key}.path"),
                other,
                "a path relative to the dataset directory, such as \"images/x.png\"",
            ));
        }
        None => {
            return Err(DataError::Malformed {
                file: file.to_owned(),
                key: format!("{key}.path"),
                problem: "is missing".into(),
                expected: SAMPLE_EXPECTED.into(),
            });
        }
    };
    let mut entry = Entry {
        split: Ok(split),
        path,
        alternatives: Vec::new(),
        labels: Vec::new(),
    };
    let tags = match sample.get("tags") {
        None | Some(Value::Null) => return Ok(entry),
        Some(Value::Array(tags)) => tags,
        Some(other) => {
            return Err(malformed(
                file,
                &format!("{key}.tags"),
                other,
                "a list of tags such as [{\"label\": \"a\", \"source\": \"manual\"}]",
            ));
        }
    };
    for (j, tag) in tags.iter().enumerate() {
        let label = match tag {
            Value::Object(tag) => match tag.get("label") {
                Some(Value::String(label)) => label,
                Some(other) => {
                    return Err(malformed(
                        file,
                        &format!("{key}.tags[{j}].label"),
                        other,
                        "a class name from `labels`",
                    ));
                }
                None => {
                    return Err(DataError::Malformed {
                        file: file.to_owned(),
                        key: format!("{key}.tags[{j}].label"),
                        problem: "is missing".into(),
                        expected: "a class name from `labels`".into(),
                    });
                }
            },
            Value::String(label) => label,
            other => {
                return Err(malformed(
                    file,
                    &format!("{key}.tags[{j}]"),
                    other,
                    "a tag such as {\"label\": \"a\", \"source\": \"manual\"}",
                ));
            }
        };
        entry.add_label(label);
    }
    Ok(entry)
}

fn malformed(file: &Path, key: &str, found: &Value, expected: &str) -> DataError {
    DataError::Malformed {
        file: file.to_owned(),
        key: key.to_owned(),
        problem: format!("is {}", describe(found)),
        expected: expected.to_owned(),
    }
}

/// Says what kind of JSON value `v` is, quoting short scalars.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string \"{s}\""),
        Value::String(_) => "a string".into(),
        Value::Array(a) if a.is_empty() => "an empty list".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Annotations, DataError> {
        parse_annotation_json(Path::new("d/annotation.json"), text)
    }

    #[test]
    fn parses_labels_splits_tags_and_null_or_absent_splits() {
        let a = parse(
            r#"{"labels": ["a", "b"], "Train": [
                 {"path": "x.png", "tags": [{"label": "b", "source": "manual"}]},
                 {"path": "y.png", "tags": [{"label": "a"}, {"label": "a"}, "b"]},
                 {"path": "z.png"}],
               "Validation": null, "extra": 1}"#,
        )
        .expect("valid");
        assert_eq!(a.labels, ["a", "b"]);
        assert_eq!(a.entries.len(), 3);
        assert_eq!(a.entries[0].split, Ok(Split::Train));
        assert_eq!(a.entries[0].labels, ["b"]);
        assert_eq!(a.entries[1].labels, ["a", "b"]);
        assert!(a.entries[2].labels.is_empty());
        assert_eq!(a.ignored_keys, ["extra"]);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = parse("{\"labels\": [\"a\"],\n \"Train\": [,]}").expect_err("invalid");
        match e {
            DataError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 12)),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn wrong_types_name_the_key_and_what_is_accepted() {
        let cases = [
            (r#"[1]"#, "(top level)"),
            (r#"{"Train": []}"#, "labels"),
            (r#"{"labels": "a"}"#, "labels"),
            (r#"{"labels": []}"#, "labels"),
            (r#"{"labels": ["a", 2]}"#, "labels[1]"),
            (r#"{"labels": ["a", "a"]}"#, "labels[1]"),
            (r#"{"labels": ["a"], "Train": {}}"#, "Train"),
            (r#"{"labels": ["a"], "Test": [3]}"#, "Test[0]"),
            (
                r#"{"labels": ["a"], "Test": [{"tags": []}]}"#,
                "Test[0].path",
            ),
            (
                r#"{"labels": ["a"], "Test": [{"path": 1}]}"#,
                "Test[0].path",
            ),
            (
                r#"{"labels": ["a"], "Test": [{"path": "x", "tags": "a"}]}"#,
                "Test[0].tags",
            ),
            (
                r#"{"labels": ["a"], "Test": [{"path": "x", "tags": [{"label": 1}]}]}"#,
                "Test[0].tags[0].label",
            ),
            (r#"{"labels": ["a"], "Train": [], "train": []}"#, "train"),
        ];
        for (text, expected_key) in cases {
            match parse(text) {
                Err(DataError::Malformed { key, file, .. }) => {
                    assert_eq!(key, expected_key, "{text}");
                    assert_eq!(file, Path::new("d/annotation.json"));
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let message = parse(r#"{"labels": ["a", "a"]}"#)
            .expect_err("duplicate")
            .to_string();
        assert!(message.contains("repeats \"a\""), "{message}");
        assert!(message.contains("distinct class names"), "{message}");
    }
}
