//! The Model Card: `README.md` with YAML front matter between two lines of exactly `---`,
//! followed by free Markdown.

use std::fmt;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::problem::{Position, Problem, Problems};
use crate::values::{describe, non_empty_string, string_list};

/// The Model Card's file name inside a package.
pub const CARD_FILE: &str = "README.md";

/// Tasks a model can declare in its card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Task {
    /// Assigning one label to a whole image.
    #[serde(rename = "image-classification")]
    ImageClassification,
}

impl Task {
    /// Every known task, as written in a card.
    pub const KNOWN: &'static [&'static str] = &["image-classification"];

    fn parse(text: &str) -> Option<Self> {
        match text {
            "image-classification" => Some(Self::ImageClassification),
            _ => None,
        }
    }

    /// The task as written in a card.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageClassification => "image-classification",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, valid Model Card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCard {
    /// `name`: the model's identifier.
    pub name: String,
    /// `display-name`, or `name` when absent.
    pub display_name: String,
    /// `tasks`: at least one.
    pub tasks: Vec<Task>,
    /// `license`.
    pub license: String,
    /// `author`.
    pub author: String,
    /// `framework`, normalised to `PyTorch` when given.
    pub framework: Option<String>,
    /// `tags`.
    pub tags: Vec<String>,
    /// `is-federated`.
    pub is_federated: bool,
    /// Keys the engine does not know, kept in order with their values.
    pub unknown: Vec<(String, Value)>,
    /// The front matter text exactly as written, without the `---` lines.
    #[serde(skip)]
    pub front_matter: String,
    /// The Markdown after the closing `---` line, exactly as written.
    #[serde(skip)]
    pub body: String,
}

const KNOWN_KEYS: &[&str] = &[
    "name",
    "display-name",
    "tasks",
    "license",
    "framework",
    "tags",
    "author",
    "is-federated",
];

/// The front matter's mapping, each key and value with its position.
struct SpannedMap(Vec<(Spanned<String>, Spanned<Value>)>);

impl<'de> Deserialize<'de> for SpannedMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = SpannedMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of keys to values")
            }
            fn visit_unit<E>(self) -> Result<SpannedMap, E> {
                Ok(SpannedMap(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpannedMap, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<Value>>()?;
                    entries.push((key, value));
                }
                Ok(SpannedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

/// Splits a card into its front matter and body; `Err` says what is wrong (on line 1).
fn split_front_matter(text: &str) -> Result<(&str, &str), &'static str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end_matches(['\r', '\n']) != "---" {
        return Err("does not start with YAML front matter");
    }
    let start = first.len();
    let mut offset = start;
    for line in lines {
        if line.trim_end_matches(['\r', '\n']) == "---" {
            return Ok((&text[start..offset], &text[offset + line.len()..]));
        }
        offset += line.len();
    }
    Err("the front matter opened on line 1 is never closed")
}

/// Parses and checks a Model Card, adding every problem to `problems`. Returns the card
/// when it has no error.
pub fn parse_card(text: &str, problems: &mut Problems) -> Option<ModelCard> {
    let (front_matter, body) = match split_front_matter(text) {
        Ok(parts) => parts,
        Err(message) => {
            problems.push(Problem::error(CARD_FILE, message).line(1).expected(
                "a first line of exactly `---`, the YAML keys, then a line of exactly `---`",
            ));
            return None;
        }
    };
    // The YAML's line 1 is the file's line 2.
    let position = |s: &Spanned<Value>| file_position(s.referenced.line(), s.referenced.column());
    // Duplicate keys reach the visitor, so that they are reported like every other problem.
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    let map = match serde_saphyr::from_str_with_options::<SpannedMap>(front_matter, options) {
        Ok(map) => map,
        Err(error) => {
            let at = error
                .location()
                .and_then(|l| file_position(l.line(), l.column()));
            problems.push(
                Problem::error(
                    CARD_FILE,
                    format!(
                        "the front matter is not valid YAML: {}",
                        first_line(&error.without_snippet().to_string())
                    ),
                )
                .at(at),
            );
            return None;
        }
    };

    let errors_before = problems.error_count();
    let mut card = ModelCard {
        name: String::new(),
        display_name: String::new(),
        tasks: Vec::new(),
        license: String::new(),
        author: String::new(),
        framework: None,
        tags: Vec::new(),
        is_federated: false,
        unknown: Vec::new(),
        front_matter: front_matter.to_owned(),
        body: body.to_owned(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in &map.0 {
        let name = key.value.as_str();
        let at = position(value);
        let problem = |message: String, expected: &str| {
            Problem::error(CARD_FILE, message)
                .key(name)
                .at(at)
                .expected(expected)
        };
        if seen.contains(&name) {
            problems.push(
                Problem::error(CARD_FILE, "is given more than once")
                    .key(name)
                    .at(file_position(
                        key.referenced.line(),
                        key.referenced.column(),
                    )),
            );
            continue;
        }
        seen.push(name);
        let v = &value.value;
        match name {
            "name" | "display-name" | "license" | "author" => match non_empty_string(v) {
                Some(s) => {
                    let s = s.trim().to_owned();
                    match name {
                        "name" => card.name = s,
                        "display-name" => card.display_name = s,
                        "license" => card.license = s,
                        _ => card.author = s,
                    }
                }
                None => problems.push(problem(format!("is {}", describe(v)), "a non-empty string")),
            },
            "tasks" => match string_list(v) {
                Some(tasks) if !tasks.is_empty() => {
                    for task in tasks {
                        match Task::parse(&task) {
                            Some(t) if !card.tasks.contains(&t) => card.tasks.push(t),
                            Some(_) => {}
                            None => problems.push(problem(
                                format!("unknown task `{task}`"),
                                &Task::KNOWN.join(", "),
                            )),
                        }
                    }
                }
                _ => problems.push(problem(
                    format!("is {}", describe(v)),
                    "a non-empty list of tasks, such as [image-classification]",
                )),
            },
            "framework" => match v.as_str() {
                Some(f) if f.trim().eq_ignore_ascii_case("pytorch") => {
                    card.framework = Some("PyTorch".to_owned());
                }
                _ => problems.push(problem(
                    format!("unsupported framework: {}", describe(v)),
                    "PyTorch (any letter case)",
                )),
            },
            "tags" => match v {
                Value::Null => {}
                _ => match string_list(v) {
                    Some(tags) => card.tags = tags,
                    None => problems.push(problem(
                        format!("is {}", describe(v)),
                        "a list of non-empty strings",
                    )),
                },
            },
            "is-federated" => match v {
                Value::Bool(b) => card.is_federated = *b,
                _ => problems.push(problem(format!("is {}", describe(v)), "true or false")),
            },
            _ => {
                problems.push(
                    Problem::warning(CARD_FILE, "is not a Model Card key; it is kept but ignored")
                        .key(name)
                        .at(file_position(
                            key.referenced.line(),
                            key.referenced.column(),
                        ))
                        .expected(KNOWN_KEYS.join(", ")),
                );
                card.unknown.push((name.to_owned(), v.clone()));
            }
        }
    }
    for required in ["name", "tasks", "license", "author"] {
        if !seen.contains(&required) {
            let expected = if required == "tasks" {
                "a non-empty list of tasks, such as [image-classification]"
            } else {
                "a non-empty string"
            };
            problems.push(
                Problem::error(CARD_FILE, "is required but missing from the front matter")
                    .key(required)
                    .expected(expected),
            );
        }
    }
    if problems.error_count() > errors_before {
        return None;
    }
    if card.display_name.is_empty() {
        card.display_name = card.name.clone();
    }
    Some(card)
}

/// Maps a position in the front matter to the position in `README.md` (one line down).
fn file_position(line: u64, column: u64) -> Option<Position> {
    (line > 0).then_some(Position {
        line: line + 1,
        column,
    })
}

/// The parser's message without its trailing position, which counts lines from the start
/// of the front matter rather than of the file.
fn first_line(message: &str) -> &str {
    let line = message.lines().next().unwrap_or(message).trim();
    match line.rfind(" at line ") {
        Some(i) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<ModelCard>, Problems) {
        let mut problems = Problems::default();
        let card = parse_card(text, &mut problems);
        (card, problems)
    }

    #[test]
    fn parses_a_complete_card_and_keeps_body_and_unknown_keys() {
        let text = "---\nname: skin\ndisplay-name: Skin lesions\ntasks:\n  - image-classification\n\
                    license: Apache-2.0\nframework: pytorch\ntags: [dermatology, resnet]\n\
                    author: Jane\nis-federated: true\nsource: hospital\n---\n# Skin\n\nBody text.\n";
        let (card, problems) = parse(text);
        let card = card.expect("valid card");
        assert_eq!(card.name, "skin");
        assert_eq!(card.display_name, "Skin lesions");
        assert_eq!(card.tasks, vec![Task::ImageClassification]);
        assert_eq!(card.framework.as_deref(), Some("PyTorch"));
        assert_eq!(card.tags, vec!["dermatology", "resnet"]);
        assert!(card.is_federated);
        assert_eq!(card.body, "# Skin\n\nBody text.\n");
        assert_eq!(
            card.unknown,
            vec![("source".to_owned(), Value::from("hospital"))]
        );
        assert_eq!(problems.len(), 1);
        let warning = &problems.as_slice()[0];
        assert!(!warning.is_error());
        assert_eq!(warning.key.as_deref(), Some("source"));
        assert_eq!(warning.position.map(|p| p.line), Some(11));
    }

    #[test]
    fn display_name_defaults_to_name() {
        let (card, problems) =
            parse("---\nname: a\ntasks: [image-classification]\nlicense: MIT\nauthor: b\n---\n");
        assert!(problems.is_empty(), "{problems}");
        let card = card.expect("valid");
        assert_eq!(card.display_name, "a");
        assert!(!card.is_federated);
        assert_eq!(card.body, "");
    }

    #[test]
    fn yaml_syntax_errors_report_the_file_line() {
        let (card, problems) =
            parse("---\nname: a\ntasks: [image-classification\nlicense: MIT\n---\nbody\n");
        assert!(card.is_none());
        assert_eq!(problems.len(), 1);
        let p = &problems.as_slice()[0];
        assert!(
            p.message.starts_with("the front matter is not valid YAML"),
            "{p}"
        );
        let line = p.position.expect("position").line;
        assert!((3..=5).contains(&line), "{p}");
        // The parser's own position (relative to the front matter) is not repeated.
        assert!(!p.message.contains(" at line "), "{p}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (card, problems) = parse(
            "---\nname: a\nname: b\ntasks: [image-classification]\nlicense: MIT\nauthor: b\n---\n",
        );
        assert!(card.is_none());
        assert!(
            problems.iter().any(|p| p.key.as_deref() == Some("name")),
            "{problems}"
        );
    }
}
