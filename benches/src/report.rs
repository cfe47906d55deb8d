//! BENCHMARKS.md: sections between `<!-- bench:NAME -->` markers, replaced in place; the
//! machine, the date and the command are recorded with each.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Median, min and max of repeated measurements.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarises measurements (at least one).
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        }
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            self.median, self.min, self.max
        )
    }
}

/// The machine, for the record: cores and memory.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("unknown memory".to_owned(), |kb| {
            format!("{:.0} GiB", kb / 1024.0 / 1024.0)
        });
    format!("{cores} cores, {memory}")
}

/// Today's date (UTC), from the system clock.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Replaces (or appends) the section `name` of the Markdown file at `path`.
pub fn write_section(path: &Path, name: &str, body: &str) -> Result<()> {
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let mut text = fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nMeasured by `./scripts/bench` (fedbench); every figure is a ratio against a \
         baseline measured in the same run, interleaved, as the median of repeated runs with \
         min–max. Absolute times on shared machines are noise; ratios are the result.\n"
            .to_owned()
    });
    let block = format!("{start}\n{}\n{end}", body.trim_end());
    match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => text.replace_range(a..b + end.len(), &block),
        _ => {
            text.push('\n');
            text.push_str(&block);
            text.push('\n');
        }
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_sections() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        let dir = std::env::temp_dir().join(format!("fedbench-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("B.md");
        write_section(&file, "a", "one").expect("write");
        write_section(&file, "b", "two").expect("write");
        write_section(&file, "a", "three").expect("write");
        let text = fs::read_to_string(&file).expect("read");
        assert!(text.contains("<!-- bench:a -->\nthree\n<!-- /bench:a -->"));
        assert!(text.contains("two") && !text.contains("one\n"));
        assert_eq!(today().len(), 10);
        fs::remove_dir_all(dir).expect("cleanup");
    }
}
