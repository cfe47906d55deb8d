//! Timeouts written with units: `500ms`, `30s`, `5m`, `1h`, `1h30m`; `0` means no limit.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};

/// The units a timeout may use, largest first, with their length in milliseconds.
const UNITS: &[(&str, u64)] = &[("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// What a timeout accepts, for messages.
pub(crate) const TIMEOUT_ACCEPTED: &str = "a duration with units such as `500ms`, `30s`, `5m`, `1h` or `1h30m` (units ms, s, m, h), or 0 for no limit";

/// A wait bounded by a duration; zero means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timeout(Duration);

impl Timeout {
    /// No limit.
    pub const NONE: Self = Self(Duration::ZERO);

    /// A timeout of whole milliseconds (0: no limit).
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The limit, or `None` when there is none.
    pub fn limit(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }

    /// Whole milliseconds (0: no limit).
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutParseError(String);

impl TimeoutParseError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

impl fmt::Display for TimeoutParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimeoutParseError {}

impl FromStr for Timeout {
    type Err = TimeoutParseError;

    /// Parses `0` or a sequence of `<whole number><unit>` terms, spaces allowed between
    /// terms (`1h30m`, `1h 30m`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TimeoutParseError("is empty".to_owned()));
        }
        if text == "0" {
            return Ok(Self::NONE);
        }
        let mut rest = text;
        let mut millis: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(TimeoutParseError(format!(
                    "`{text}` is not a duration: expected a number at `{rest}`"
                )));
            }
            let (number, after) = rest.split_at(digits);
            let after = if after.starts_with(['.', ',']) {
                after
            } else {
                after.trim_start()
            };
            let letters = after.len()
                - after
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .len();
            let (unit, after) = after.split_at(letters);
            let Some(&(_, unit_millis)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                let message = if after.starts_with(['.', ',']) && unit.is_empty() {
                    format!("`{text}` has a fraction; write whole numbers, such as `1h30m`")
                } else if unit.is_empty() {
                    format!("`{text}` has a number without a unit")
                } else {
                    format!("`{text}` has an unknown unit `{unit}`")
                };
                return Err(TimeoutParseError(message));
            };
            let term = number
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(unit_millis));
            millis = term
                .and_then(|t| millis.checked_add(t))
                .ok_or_else(|| TimeoutParseError(format!("`{text}` is too long")))?;
            rest = after.trim_start();
        }
        Ok(Self::from_millis(millis))
    }
}

impl fmt::Display for Timeout {
    /// Writes the canonical form: `0`, or the largest units first (`90s` is `1m30s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = self.as_millis();
        if millis == 0 {
            return f.write_str("0");
        }
        for &(unit, length) in UNITS {
            if millis >= length {
                write!(f, "{}{unit}", millis / length)?;
                millis %= length;
            }
        }
        Ok(())
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for Timeout {
    fn schema_name() -> Cow<'static, str> {
        "Timeout".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration with units: `500ms`, `30s`, `5m`, `1h`, `1h30m` (units ms, s, m, h; whole numbers). `0` means no limit.",
            "anyOf": [
                {
                    "type": "string",
                    "pattern": "^\\s*(0|([0-9]+(ms|s|m|h)\\s*)+)$"
                },
                { "type": "integer", "enum": [0] }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<u64, String> {
        text.parse::<Timeout>()
            .map(Timeout::as_millis)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_units_and_sums_terms() {
        assert_eq!(parse("500ms"), Ok(500));
        assert_eq!(parse("30s"), Ok(30_000));
        assert_eq!(parse("5m"), Ok(300_000));
        assert_eq!(parse("1h"), Ok(3_600_000));
        assert_eq!(parse("1h30m"), Ok(5_400_000));
        assert_eq!(parse(" 1h 30m 5s "), Ok(5_405_000));
        assert_eq!(parse("5 m"), Ok(300_000));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("0s"), Ok(0));
        assert!(Timeout::NONE.limit().is_none());
        assert_eq!(
            Timeout::from_millis(1500).limit(),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        assert_eq!(parse("30"), Err("`30` has a number without a unit".into()));
        assert_eq!(
            parse("5 min"),
            Err("`5 min` has an unknown unit `min`".into())
        );
        assert_eq!(
            parse("1.5h"),
            Err("`1.5h` has a fraction; write whole numbers, such as `1h30m`".into())
        );
        assert!(parse("").is_err());
        assert!(parse("s").is_err());
        assert!(parse("-5s").is_err());
        assert_eq!(
            parse("99999999999999999999h"),
            Err("`99999999999999999999h` is too long".into())
        );
    }

    #[test]
    fn displays_the_canonical_form() {
        for (text, canonical) in [
            ("0", "0"),
            ("90s", "1m30s"),
            ("60m", "1h"),
            ("1500ms", "1s500ms"),
            ("1h 0m", "1h"),
        ] {
            let timeout: Timeout = text.parse().expect("valid");
            assert_eq!(timeout.to_string(), canonical);
            assert_eq!(canonical.parse::<Timeout>(), Ok(timeout));
        }
    }
}
