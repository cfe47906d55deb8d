//! Writing strings as YAML scalars that read back as the same string.

use crate::yaml::{self, Value};

/// Returns `text` as a YAML scalar that reads back as exactly `text`: plain when it is made of
/// ASCII letters, digits, `_`, `-`, `.` and `/` and reads back as that string (not as a
/// number, boolean or null), otherwise double-quoted with escapes. Paths with spaces, `:`,
/// `#` or non-ASCII characters are therefore quoted.
pub fn yaml_string(text: &str) -> String {
    if plain(text) {
        return text.to_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            // Control characters, line separators and non-characters YAML does not allow
            // in a file, or reads as line breaks.
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                let code = u32::from(c);
                if code <= 0xffff {
                    quoted.push_str(&format!("\\u{code:04X}"));
                } else {
                    quoted.push_str(&format!("\\U{code:08X}"));
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Whether `text` can be written unquoted: a conservative set of characters, and the parser
/// reads it back as the same string (`1.0`, `true`, `null`, `.inf` need quotes).
fn plain(text: &str) -> bool {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    safe && yaml::parse(text).is_ok_and(|node| node.value == Value::Str(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_back(scalar: &str) -> Value {
        let node = yaml::parse(&format!("key: {scalar}\n")).expect("valid YAML");
        node.find(std::iter::once("key"))
            .expect("key")
            .value
            .clone()
    }

    #[test]
    fn quotes_only_what_needs_it() {
        for plain in [
            "digits-fedavg",
            "../models/digits-cnn",
            "/abs/x.zip",
            "site_1",
        ] {
            assert_eq!(yaml_string(plain), plain);
        }
        for (text, quoted) in [
            ("", "\"\""),
            ("1", "\"1\""),
            ("1.5", "\"1.5\""),
            ("true", "\"true\""),
            ("null", "\"null\""),
            ("~", "\"~\""),
            (".inf", "\".inf\""),
            ("0x1f", "\"0x1f\""),
            ("my data", "\"my data\""),
            ("a: b", "\"a: b\""),
            ("#1", "\"#1\""),
            ("x #y", "\"x #y\""),
            ("- x", "\"- x\""),
            ("données/été", "\"données/été\""),
            ("say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""),
            ("a\nb\u{7}", "\"a\\nb\\u0007\""),
        ] {
            assert_eq!(yaml_string(text), quoted, "{text:?}");
            assert_eq!(read_back(&yaml_string(text)), Value::Str(text.to_owned()));
        }
    }

    proptest! {
        #[test]
        fn every_string_reads_back(text in any::<String>()) {
            prop_assert_eq!(read_back(&yaml_string(&text)), Value::Str(text));
        }

        #[test]
        fn path_like_strings_read_back(text in "[ -~äé€😀]{0,24}") {
            prop_assert_eq!(read_back(&yaml_string(&text)), Value::Str(text));
        }
    }
}
