//! RFC 3339 UTC timestamps with millisecond precision, without a date-time crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// `(year, month, day)` of a day count since 1970-01-01 (proleptic Gregorian calendar;
/// Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-26T17:11:50.123Z`.
pub(crate) fn format_rfc3339_millis(unix_ms: u64) -> String {
    let millis = unix_ms % 1000;
    let seconds = unix_ms / 1000;
    let days = (seconds / 86_400) as i64;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// Parses exactly the form [`format_rfc3339_millis`] writes.
pub(crate) fn parse_rfc3339_millis(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ];
    if separators.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u64> {
        let digits = &b[from..to];
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
        })
    };
    let year = number(0, 4)?;
    let month = u32::try_from(number(5, 7)?).ok()?;
    let day = u32::try_from(number(8, 10)?).ok()?;
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let millis = number(20, 23)?;
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    // Rejects days past the end of the month (2026-02-30 would become March 2nd).
    if day == 0 || civil_from_days(days) != (year as i64, month, day) {
        return None;
    }
    let seconds = days as u64 * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The millisecond counts come from Python's `datetime(..., tzinfo=timezone.utc)`.
    const VECTORS: [(u64, &str); 5] = [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_795_713_110_123, "2026-11-26T17:11:50.123Z"),
        (951_868_799_999, "2000-02-29T23:59:59.999Z"),
        (4_107_542_400_001, "2100-03-01T00:00:00.001Z"),
        (86_399_999, "1970-01-01T23:59:59.999Z"),
    ];

    #[test]
    fn formats_known_instants() {
        for (millis, text) in VECTORS {
            assert_eq!(format_rfc3339_millis(millis), text);
            assert_eq!(parse_rfc3339_millis(text), Some(millis), "{text}");
        }
    }

    #[test]
    fn round_trips_every_day_for_three_centuries() {
        for days in 0..(300 * 366) {
            let millis = days * 86_400_000 + 45_296_789;
            let text = format_rfc3339_millis(millis);
            assert_eq!(parse_rfc3339_millis(&text), Some(millis), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_and_impossible_dates() {
        for bad in [
            "2026-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-00-01T00:00:00.000Z",
            "2026-01-00T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:60:00.000Z",
            "2026-01-01 00:00:00.000Z",
            "2026-01-01T00:00:00.000",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:0a.000Z",
            "1969-12-31T23:59:59.999Z",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
        assert!(parse_rfc3339_millis("2024-02-29T00:00:00.000Z").is_some());
    }
}
