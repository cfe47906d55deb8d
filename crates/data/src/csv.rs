//! A small RFC 4180 CSV reader: comma-separated fields, records ended by CRLF, LF or CR,
//! fields in double quotes may hold commas, line breaks and doubled quotes (`""`).

/// One record and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvRecord {
    /// The 1-based line where the record starts.
    pub line: usize,
    /// Its fields, unquoted, in order.
    pub fields: Vec<String>,
}

/// Why CSV text cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvSyntaxError {
    /// The 1-based line of the problem.
    pub line: usize,
    /// What is wrong, e.g. `quoted field is not closed`.
    pub problem: String,
}

/// Parses `text` into records, dropping a leading byte order mark and blank lines.
///
/// A quote inside an unquoted field is kept as a character (as most spreadsheets write
/// it); text between a closing quote and the next separator is an error, as is a quoted
/// field left open at the end.
pub(crate) fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, CsvSyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted_any = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if field.is_empty() => {
                    quoted_any = true;
                    read_quoted(&mut chars, &mut field, &mut line)?;
                    match chars.peek() {
                        None | Some(',' | '\n' | '\r') => {}
                        Some(c) => {
                            return Err(CsvSyntaxError {
                                line,
                                problem: format!(
                                    "unexpected `{c}` after a closing quote; expected a comma or the end of the line (write a quote inside a quoted field as \"\")"
                                ),
                            });
                        }
                    }
                }
                Some(',') => fields.push(std::mem::take(&mut field)),
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        let blank = !quoted_any && fields.len() == 1 && fields[0].is_empty();
        if !blank {
            records.push(CsvRecord {
                line: start,
                fields,
            });
        }
    }
    Ok(records)
}

/// Reads a quoted field after its opening quote, up to and including the closing quote.
fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    field: &mut String,
    line: &mut usize,
) -> Result<(), CsvSyntaxError> {
    let opened = *line;
    loop {
        match chars.next() {
            None => {
                return Err(CsvSyntaxError {
                    line: opened,
                    problem: "quoted field is not closed; expected a closing \" before the end of the file".into(),
                });
            }
            Some('"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            Some('"') => return Ok(()),
            Some(c) => {
                // A line break inside quotes is part of the field but still a new line.
                if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
                    *line += 1;
                }
                field.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse_csv(text)
            .expect("valid CSV")
            .into_iter()
            .map(|r| r.fields)
            .collect()
    }

    #[test]
    fn reads_quotes_commas_line_breaks_and_blank_lines() {
        let text = "\u{feff}path,label\r\n\"a,b.png\",\"say \"\"hi\"\"\"\n\nc.png,x/y\r\"multi\nline\",\n,\n";
        assert_eq!(
            fields(text),
            vec![
                vec!["path", "label"],
                vec!["a,b.png", "say \"hi\""],
                vec!["c.png", "x/y"],
                vec!["multi\nline", ""],
                vec!["", ""],
            ]
        );
        let lines: Vec<usize> = parse_csv(text)
            .expect("valid")
            .iter()
            .map(|r| r.line)
            .collect();
        assert_eq!(lines, [1, 2, 4, 5, 7]);
        assert_eq!(fields("a,b"), vec![vec!["a", "b"]], "no final line break");
        assert_eq!(
            fields("a\"b,c"),
            vec![vec!["a\"b", "c"]],
            "stray quote kept"
        );
        assert_eq!(
            fields("\"\"\n"),
            vec![vec![""]],
            "a quoted empty field is a record"
        );
        assert!(fields("").is_empty());
    }

    #[test]
    fn malformed_quotes_name_the_line() {
        let open = parse_csv("path,label\n\"a.png,x\n").expect_err("unclosed");
        assert_eq!(open.line, 2);
        assert!(open.problem.contains("not closed"), "{}", open.problem);
        let after = parse_csv("path,label\na.png,\"x\"y\n").expect_err("text after quote");
        assert_eq!(after.line, 2);
        assert!(
            after.problem.contains("after a closing quote"),
            "{}",
            after.problem
        );
    }
}
