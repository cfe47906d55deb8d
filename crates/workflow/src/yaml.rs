//! The YAML document as a tree of nodes, each with its position, so that every problem can be
//! located and all of them reported together (a typed `Deserialize` stops at the first).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::Position;

/// A YAML value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub at: Position,
}

/// A YAML value: scalars as YAML 1.2 core types, then sequences and mappings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order, duplicates kept (they are reported by the checker).
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// Describes the value for a message: ``the string `abc` ``, `a list`, ...
    pub fn describe(&self) -> String {
        match self {
            Self::Null => "empty (null)".to_owned(),
            Self::Bool(b) => format!("the boolean `{b}`"),
            Self::Int(i) => format!("the number `{i}`"),
            Self::Float(x) => format!("the number `{x}`"),
            Self::Str(s) if s.chars().count() > 60 => "a long string".to_owned(),
            Self::Str(s) => format!("the string `{s}`"),
            Self::Seq(_) => "a list".to_owned(),
            Self::Map(_) => "a mapping".to_owned(),
        }
    }
}

impl Node {
    /// The value as JSON (for checks shared with JSON files); a non-finite number becomes
    /// null, which no check accepts.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match &self.value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                (Ok(n), _) => Json::from(n),
                (_, Ok(n)) => Json::from(n),
                _ => serde_json::Number::from_f64(*i as f64).map_or(Json::Null, Json::Number),
            },
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
            Value::Str(s) => Json::String(s.clone()),
            Value::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (key, value) in entries {
                    let key = match &key.value {
                        Value::Str(s) => s.clone(),
                        _ => key.to_json().to_string(),
                    };
                    map.entry(key).or_insert_with(|| value.to_json());
                }
                Json::Object(map)
            }
        }
    }

    /// The node at a path of mapping keys below this one, or this one for an empty path;
    /// `None` when a key is not there.
    pub fn find<'a>(&self, mut path: impl Iterator<Item = &'a str>) -> Option<&Node> {
        let Some(key) = path.next() else {
            return Some(self);
        };
        let Value::Map(entries) = &self.value else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| k.value == Value::Str(key.to_owned()))
            .and_then(|(_, v)| v.find(path))
    }
}

/// Converts the parser's location; locations it does not know become 1:1.
fn position(location: &serde_saphyr::Location) -> Position {
    Position {
        line: location.line().max(1),
        column: location.column().max(1),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            at: position(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// A YAML syntax (or structure) error: the parser's message and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub at: Option<Position>,
}

/// Parses a YAML document into a tree. Duplicate keys are kept (the checker reports them
/// with both positions); only YAML 1.2 spellings are booleans, so `no` stays a string.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|error| {
        let at = error.location().map(|l| position(&l));
        SyntaxError {
            message: message_without_position(&error.without_snippet().to_string()),
            at,
        }
    })
}

/// The parser's message on one line, without its own `at line L column C` suffix (the
/// position is reported separately).
fn message_without_position(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = match line.rfind(" at line ") {
        Some(i) => &line[..i],
        None => line,
    };
    if line.starts_with("multiple YAML documents") {
        // The library's advice names its own functions; say it in the user's terms.
        return "has more than one YAML document (`---` starts another); a workflow is one document"
            .to_owned();
    }
    line.trim_end_matches(['.', ',']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64, column: u64) -> Position {
        Position { line, column }
    }

    #[test]
    fn nodes_carry_the_position_of_their_value() {
        let node = parse("a: 1\nb:\n  c: [x, 2.5]\n  d: ~\ne: true\nf: no\n").expect("valid");
        let Value::Map(entries) = &node.value else {
            panic!("a mapping: {node:?}");
        };
        let keys: Vec<_> = entries
            .iter()
            .map(|(k, _)| (k.value.clone(), k.at))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Value::Str("a".into()), at(1, 1)),
                (Value::Str("b".into()), at(2, 1)),
                (Value::Str("e".into()), at(5, 1)),
                (Value::Str("f".into()), at(6, 1)),
            ]
        );
        assert_eq!(
            entries[0].1,
            Node {
                value: Value::Int(1),
                at: at(1, 4)
            }
        );
        let Value::Map(b) = &entries[1].1.value else {
            panic!("b is a mapping");
        };
        assert_eq!(b[0].0.at, at(3, 3));
        let Value::Seq(items) = &b[0].1.value else {
            panic!("c is a list");
        };
        assert_eq!(
            items[0],
            Node {
                value: Value::Str("x".into()),
                at: at(3, 7)
            }
        );
        assert_eq!(
            items[1],
            Node {
                value: Value::Float(2.5),
                at: at(3, 10)
            }
        );
        assert_eq!(b[1].1.value, Value::Null);
        assert_eq!(entries[2].1.value, Value::Bool(true));
        assert_eq!(entries[3].1.value, Value::Str("no".into()));
    }

    #[test]
    fn duplicate_keys_are_kept_and_syntax_errors_located() {
        let node = parse("a: 1\na: 2\n").expect("valid");
        let Value::Map(entries) = &node.value else {
            panic!("a mapping");
        };
        assert_eq!(entries.len(), 2);
        let error = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(error.at.is_some(), "{error:?}");
        assert!(!error.message.contains(" at line "), "{error:?}");
        let error = parse("a: 1\n---\na: 2\n").expect_err("two documents");
        assert!(
            error.message.starts_with("has more than one YAML document"),
            "{error:?}"
        );
        assert_eq!(error.at.map(|p| p.line), Some(3));
    }
}
