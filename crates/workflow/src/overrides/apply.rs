//! Writing overrides into the parsed document, before it is checked.
//!
//! Every node an override writes carries an origin position instead of a file position: line
//! 0, which no parsed node has (lines start at 1), and the override's number as the column.
//! The checker reports a problem at such a position as the override's
//! ([`origin_index`]), so a bad value, an unknown key or a missing key below a section an
//! override created names the override.

use crate::error::Position;
use crate::paths;
use crate::quote::yaml_string;
use crate::yaml::{Node, Value};

use super::Overrides;

/// What applying the overrides gave.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// How each override is named in problems (`--set KEY=VALUE`, `--output DIR`), by the
    /// number in its origin position.
    pub origins: Vec<String>,
    /// The applied overrides as `KEY=VALUE`, in order (`--output` as `output=ABSOLUTE_DIR`).
    pub texts: Vec<String>,
    /// Overrides that could not be written into the document.
    pub problems: Vec<Problem>,
}

/// An override that could not be written into the document.
#[derive(Debug)]
pub(crate) struct Problem {
    /// The override's origin position.
    pub at: Position,
    /// The key path where it failed.
    pub key: String,
    pub message: String,
    pub expected: String,
}

/// The origin position of override number `index`.
pub(crate) fn origin_at(index: usize) -> Position {
    Position {
        line: 0,
        column: index as u64 + 1,
    }
}

/// The number of the override that wrote a node at `at`, when an override did.
pub(crate) fn origin_index(at: Position) -> Option<usize> {
    if at.line != 0 {
        return None;
    }
    at.column
        .checked_sub(1)
        .and_then(|i| usize::try_from(i).ok())
}

/// Writes `overrides` into the document `root`: each `--set` in order, then `--output`. A
/// document that is not a mapping (nor empty) is left alone: the checker reports it.
pub(crate) fn apply(root: &mut Node, overrides: &Overrides) -> Applied {
    let mut applied = Applied::default();
    if overrides.is_empty() {
        return applied;
    }
    match root.value {
        Value::Null => root.value = Value::Map(Vec::new()),
        Value::Map(_) => {}
        _ => return applied,
    }
    for set in overrides.sets() {
        let at = origin_at(applied.origins.len());
        applied.origins.push(format!("--set {set}"));
        let mut value = set.node().clone();
        stamp(&mut value, at);
        match write(root, set.path(), value, at) {
            Ok(()) => applied.texts.push(set.to_string()),
            Err(problem) => applied.problems.push(problem),
        }
    }
    if let Some(dir) = overrides.output() {
        let at = origin_at(applied.origins.len());
        applied.origins.push(format!("--output {}", dir.display()));
        let absolute = paths::absolute(dir).map_err(|e| e.to_string());
        let text = absolute.and_then(|path| {
            path.to_str()
                .map(str::to_owned)
                .ok_or_else(|| "is not UTF-8 text".to_owned())
        });
        match text {
            Ok(text) => {
                applied.texts.push(format!("output={}", yaml_string(&text)));
                let value = Node {
                    value: Value::Str(text),
                    at,
                };
                let output = ["output".to_owned()];
                if let Err(problem) = write(root, &output, value, at) {
                    applied.problems.push(problem);
                }
            }
            Err(message) => applied.problems.push(Problem {
                at,
                key: "output".to_owned(),
                message: format!("{}: {message}", dir.display()),
                expected: "a directory path, relative to the current directory".to_owned(),
            }),
        }
    }
    applied
}

/// Gives `node` and everything below it the position `at`.
fn stamp(node: &mut Node, at: Position) {
    node.at = at;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|item| stamp(item, at)),
        Value::Map(entries) => entries.iter_mut().for_each(|(key, value)| {
            stamp(key, at);
            stamp(value, at);
        }),
        _ => {}
    }
}

/// Puts `value` at `path` below `root`, creating what is missing on the way.
fn write(root: &mut Node, path: &[String], value: Node, at: Position) -> Result<(), Problem> {
    let mut node = root;
    for (depth, part) in path.iter().enumerate() {
        node = child(node, part, at).map_err(|(message, expected)| Problem {
            at,
            key: key_path(&path[..depth]),
            message,
            expected,
        })?;
    }
    *node = value;
    Ok(())
}

/// The value under `part` of the mapping or list `node`, added (null) when missing. A value
/// on the way that is neither (absent, null, a scalar) becomes the container `part` needs: a
/// list for an index, else a mapping.
fn child<'n>(
    node: &'n mut Node,
    part: &str,
    at: Position,
) -> Result<&'n mut Node, (String, String)> {
    let index = part.parse::<usize>().ok();
    if !matches!(node.value, Value::Map(_) | Value::Seq(_)) {
        node.value = match index {
            Some(_) => Value::Seq(Vec::new()),
            None => Value::Map(Vec::new()),
        };
        node.at = at;
    }
    let placeholder = Node {
        value: Value::Null,
        at,
    };
    match &mut node.value {
        Value::Map(entries) => {
            let key = Value::Str(part.to_owned());
            let i = match entries.iter().position(|(k, _)| k.value == key) {
                Some(i) => i,
                None => {
                    entries.push((Node { value: key, at }, placeholder));
                    entries.len() - 1
                }
            };
            Ok(&mut entries[i].1)
        }
        Value::Seq(items) => {
            let len = items.len();
            let expected = format!("an index from 0 to {len} ({len} adds an item)");
            match index {
                Some(i) if i < len => Ok(&mut items[i]),
                Some(i) if i == len => {
                    items.push(placeholder);
                    Ok(&mut items[i])
                }
                Some(i) => Err((format!("is a list of {len} items: no index {i}"), expected)),
                None => Err((format!("is a list: `{part}` is not an index"), expected)),
            }
        }
        // Made a mapping or a list above.
        other => Err((
            format!("is {}", other.describe()),
            "a mapping or a list".to_owned(),
        )),
    }
}

/// The key path of `parts` as the checker writes it: `participants[0].data`.
fn key_path(parts: &[String]) -> String {
    let mut key = String::new();
    for part in parts {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::Override;
    use crate::yaml;

    fn overrides(sets: &[&str]) -> Overrides {
        Overrides::from_sets(sets).expect("valid overrides")
    }

    #[test]
    fn writes_replaces_and_creates_along_the_path() {
        let mut root = yaml::parse("a: 1\nb:\nlist: [x, {k: v}]\n").expect("yaml");
        let applied = apply(
            &mut root,
            &overrides(&["a=2", "b.c.d=3", "list.1.k=w", "list.2=z", "new.0=q"]),
        );
        assert!(applied.problems.is_empty(), "{:?}", applied.problems);
        assert_eq!(
            applied.texts,
            ["a=2", "b.c.d=3", "list.1.k=w", "list.2=z", "new.0=q"]
        );
        assert_eq!(applied.origins[1], "--set b.c.d=3");
        let expected =
            yaml::parse("a: 2\nb: {c: {d: 3}}\nlist: [x, {k: w}, z]\nnew: [q]\n").expect("yaml");
        assert_eq!(root.to_json(), expected.to_json());
        // Nodes the overrides wrote carry their origin; the file's keep their positions.
        let b = root.find(["b", "c", "d"].into_iter()).expect("b.c.d");
        assert_eq!(origin_index(b.at), Some(1));
        let Value::Map(entries) = &root.value else {
            panic!("a mapping");
        };
        assert_eq!(entries[0].0.at, Position { line: 1, column: 1 });
        assert_eq!(origin_index(entries[0].1.at), Some(0));
        assert_eq!(origin_index(Position { line: 1, column: 1 }), None);
    }

    #[test]
    fn reports_what_cannot_be_written() {
        let mut root = yaml::parse("list: [x]\n").expect("yaml");
        let applied = apply(&mut root, &overrides(&["list.5=y", "list.k=y", "ok=1"]));
        let problems: Vec<_> = applied
            .problems
            .iter()
            .map(|p| (origin_index(p.at), p.key.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (Some(0), "list", "is a list of 1 items: no index 5"),
                (Some(1), "list", "is a list: `k` is not an index"),
            ]
        );
        assert_eq!(applied.texts, ["ok=1"]);
        // A document that is not a mapping is the checker's to report.
        let mut root = yaml::parse("[1]").expect("yaml");
        let applied = apply(&mut root, &overrides(&["a=1"]));
        assert!(applied.origins.is_empty() && applied.problems.is_empty());
        assert_eq!(key_path(&["p".into(), "0".into(), "d".into()]), "p[0].d");
        let set = Override::parse("x=1").expect("valid");
        let mut root = yaml::parse("").expect("yaml");
        let applied = apply(&mut root, &Overrides::new().with_set(set));
        assert_eq!(applied.texts, ["x=1"]);
    }
}
