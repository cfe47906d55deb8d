//! CVAT "for images 1.1" XML exports: labels from `<meta><task|project|job><labels><label>
//! <name>`, samples from `<image name subset><tag label/></image>`.

use std::path::Path;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::annotation::{Annotations, Entry, line_column};
use crate::error::DataError;
use crate::report::Split;

/// CVAT annotation file names, in the order they are looked for.
pub const CVAT_XML: [&str; 2] = ["annotations.xml", "annotation.xml"];

/// Parses the text of a CVAT XML export; `file` is only used in errors.
pub(crate) fn parse_cvat_xml(file: &Path, text: &str) -> Result<Annotations, DataError> {
    let mut reader = Reader::from_str(text);
    let syntax = |offset: u64, message: String| {
        let (line, column) = line_column(text.as_bytes(), offset as usize);
        DataError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    };
    let mut stack: Vec<String> = Vec::new();
    let mut annotations = Annotations::default();
    // The text of the `<label><name>` being read, if any.
    let mut label_name: Option<String> = None;
    // The `<image>` being read, if any.
    let mut image: Option<Entry> = None;
    let mut root_seen = false;

    loop {
        let position = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            syntax(
                reader.error_position(),
                format!("is not well-formed XML: {e}"),
            )
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if stack.is_empty() && root_seen => {
                return Err(syntax(position, "has a second root element".into()));
            }
            Event::Start(e) => {
                let name = element_name(&e);
                root_seen = true;
                open_element(file, &stack, &name, &e, &mut image, &mut label_name)?;
                stack.push(name);
            }
            Event::Empty(e) => {
                let name = element_name(&e);
                root_seen = true;
                open_element(file, &stack, &name, &e, &mut image, &mut label_name)?;
                close_element(&name, &mut annotations, &mut image, &mut label_name);
            }
            Event::End(_) => {
                if let Some(name) = stack.pop() {
                    close_element(&name, &mut annotations, &mut image, &mut label_name);
                }
            }
            Event::Text(t) => {
                if let Some(buffer) = label_name.as_mut() {
                    buffer.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(buffer) = label_name.as_mut() {
                    buffer.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(buffer) = label_name.as_mut() {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => match resolve_predefined_entity(&r.xml10_content()) {
                            Some(s) => s.to_owned(),
                            None => {
                                return Err(syntax(
                                    position,
                                    format!("uses the unknown entity `&{};`", r.xml10_content()),
                                ));
                            }
                        },
                    };
                    buffer.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() || !root_seen {
        return Err(syntax(
            text.len() as u64,
            "ends before its root element is closed".into(),
        ));
    }
    if annotations.labels.is_empty() {
        return Err(DataError::Malformed {
            file: file.to_owned(),
            key: "meta/task/labels".into(),
            problem: "has no <label>".into(),
            expected: "<meta><task><labels><label><name>NAME</name></label>...</labels> (or <project> in place of <task>), as CVAT exports it".into(),
        });
    }
    Ok(annotations)
}

fn element_name(e: &BytesStart<'_>) -> String {
    e.local_name().as_ref().to_owned()
}

/// Whether the element being opened, under `stack`, is `<name>` of a `<label>` in `<meta>`.
fn is_label_name(stack: &[String], name: &str) -> bool {
    let n = stack.len();
    name == "name"
        && n >= 4
        && stack[n - 1] == "label"
        && stack[n - 2] == "labels"
        && stack.iter().any(|s| s == "meta")
}

fn open_element(
    file: &Path,
    stack: &[String],
    name: &str,
    e: &BytesStart<'_>,
    image: &mut Option<Entry>,
    label_name: &mut Option<String>,
) -> Result<(), DataError> {
    if is_label_name(stack, name) {
        *label_name = Some(String::new());
    } else if name == "image" && stack.len() == 1 {
        let path = attribute(file, e, "name")?.unwrap_or_default();
        let subset = attribute(file, e, "subset")?.unwrap_or_default();
        let split = Split::from_name(&subset).ok_or_else(|| subset.clone());
        // CVAT puts exported images under `images/` (project exports: `images/<subset>/`).
        let mut alternatives = vec![format!("images/{path}")];
        if !subset.trim().is_empty() {
            alternatives.push(format!("images/{}/{path}", subset.trim()));
        }
        *image = Some(Entry {
            split,
            path,
            alternatives,
            labels: Vec::new(),
        });
    } else if name == "tag"
        && let Some(entry) = image.as_mut()
        && stack.last().map(String::as_str) == Some("image")
    {
        match attribute(file, e, "label")? {
            Some(label) if !label.trim().is_empty() => entry.add_label(&label),
            _ => {
                return Err(DataError::Malformed {
                    file: file.to_owned(),
                    key: format!("image[name=\"{}\"]/tag/@label", entry.path),
                    problem: "is missing or empty".into(),
                    expected: "<tag label=\"NAME\" source=\"manual\"/> naming one of the labels"
                        .into(),
                });
            }
        }
    }
    Ok(())
}

fn close_element(
    name: &str,
    annotations: &mut Annotations,
    image: &mut Option<Entry>,
    label_name: &mut Option<String>,
) {
    if name == "name"
        && let Some(label) = label_name.take()
    {
        let label = label.trim().to_owned();
        // Project exports can list the same labels more than once; CVAT names are unique.
        if !label.is_empty() && !annotations.labels.contains(&label) {
            annotations.labels.push(label);
        }
    } else if name == "image"
        && let Some(entry) = image.take()
    {
        annotations.entries.push(entry);
    }
}

fn attribute(file: &Path, e: &BytesStart<'_>, key: &str) -> Result<Option<String>, DataError> {
    for attr in e.attributes() {
        let attr = attr.map_err(|error| DataError::Malformed {
            file: file.to_owned(),
            key: element_name(e),
            problem: format!("has a malformed attribute: {error}"),
            expected: "attributes written as name=\"value\"".into(),
        })?;
        if attr.key.local_name().as_ref() == key {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|error| DataError::Malformed {
                    file: file.to_owned(),
                    key: format!("{}/@{key}", element_name(e)),
                    problem: format!("cannot be unescaped: {error}"),
                    expected: "a value using only the predefined XML entities".into(),
                })?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>1</id>
      <name>skin &amp; bones</name>
      <labels>
        <label><name>benign</name><color>#aa0000</color>
          <attributes><attribute><name>ignored</name></attribute></attributes></label>
        <label><name>mal&amp;ignant</name><color>#00aa00</color><attributes/></label>
      </labels>
    </task>
  </meta>
  <image id="0" name="images/a.png" subset="Train" width="8" height="8">
    <tag label="benign" source="manual"></tag>
  </image>
  <image id="1" name="b.png" subset="validation" width="8" height="8">
    <tag label="mal&amp;ignant" source="manual"/>
    <box label="benign" xtl="0" ytl="0" xbr="1" ybr="1"/>
  </image>
  <image id="2" name="c.png" subset="Test"/>
  <image id="3" name="d.png" subset="default"><tag label="benign"/></image>
  <image id="4" name="e.png"><tag label="benign"/><tag label="mal&amp;ignant"/></image>
</annotations>"#;

    #[test]
    fn parses_labels_images_subsets_and_tags() {
        let a = parse_cvat_xml(Path::new("annotations.xml"), EXPORT).expect("valid");
        assert_eq!(a.labels, ["benign", "mal&ignant"]);
        let summary: Vec<_> = a
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.split.clone(), e.labels.len()))
            .collect();
        assert_eq!(
            summary,
            [
                ("images/a.png", Ok(Split::Train), 1),
                ("b.png", Ok(Split::Validation), 1),
                ("c.png", Ok(Split::Test), 0),
                ("d.png", Err("default".to_owned()), 1),
                ("e.png", Err(String::new()), 2),
            ]
        );
        assert_eq!(a.entries[1].labels, ["mal&ignant"]);
        assert_eq!(
            a.entries[1].alternatives,
            ["images/b.png", "images/validation/b.png"]
        );
    }

    #[test]
    fn project_exports_are_accepted() {
        let text = r#"<annotations><meta><project><labels><label><name>x</name></label>
            </labels></project></meta><image name="p.jpg" subset="Train"><tag label="x"/></image>
            </annotations>"#;
        let a = parse_cvat_xml(Path::new("annotations.xml"), text).expect("valid");
        assert_eq!(a.labels, ["x"]);
        assert_eq!(a.entries.len(), 1);
    }

    #[test]
    fn malformed_exports_are_errors_with_positions() {
        let e = parse_cvat_xml(
            Path::new("annotations.xml"),
            "<annotations>\n<meta></wrong></annotations>",
        )
        .expect_err("mismatched");
        assert!(matches!(e, DataError::Syntax { line: 2, .. }), "{e}");
        let e = parse_cvat_xml(
            Path::new("annotations.xml"),
            "<annotations><meta/></annotations>",
        )
        .expect_err("no labels");
        assert!(e.to_string().contains("has no <label>"), "{e}");
        let e = parse_cvat_xml(
            Path::new("annotations.xml"),
            "<annotations><meta><task><labels><label><name>x</name></label></labels></task></meta><image name=\"a\"><tag/></image></annotations>",
        )
        .expect_err("tag without label");
        assert!(e.to_string().contains("tag/@label"), "{e}");
        assert!(parse_cvat_xml(Path::new("a.xml"), "").is_err());
        assert!(parse_cvat_xml(Path::new("a.xml"), "<annotations>").is_err());
    }
}
