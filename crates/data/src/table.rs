//! Plain-text tables for reports: a left-aligned first column, right-aligned numbers, and
//! a rule above the totals row.

use std::fmt;

/// Writes `header`, `rows` and `totals` as aligned columns, each line indented by two
/// spaces and ended by a newline.
pub(crate) fn write_table(
    f: &mut fmt::Formatter<'_>,
    header: &[String],
    rows: &[Vec<String>],
    totals: &[String],
) -> fmt::Result {
    let width = |cells: &[String], i: usize| cells.get(i).map_or(0, |c| c.chars().count());
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| width(r, i))
                .chain([width(header, i), width(totals, i)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
        write!(f, " ")?;
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            // Pads by characters, not bytes, so that accented labels line up.
            let pad = w.saturating_sub(cell.chars().count());
            if i == 0 {
                write!(f, " {cell}{}", " ".repeat(pad))?;
            } else {
                write!(f, "  {}{cell}", " ".repeat(pad))?;
            }
        }
        writeln!(f)
    };
    line(f, header)?;
    for row in rows {
        line(f, row)?;
    }
    let rule = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    writeln!(f, "  {}", "-".repeat(rule))?;
    line(f, totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Demo;

    impl fmt::Display for Demo {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let s = |v: &[&str]| v.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
            write_table(
                f,
                &s(&["label", "site-1"]),
                &[s(&["Mélanome", "3"]), s(&["b", "12"])],
                &s(&["total", "15"]),
            )
        }
    }

    #[test]
    fn columns_line_up_by_characters() {
        let text = Demo.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "  label     site-1",
                "  Mélanome       3",
                "  b             12",
                "  ----------------",
                "  total         15",
            ]
        );
    }
}
