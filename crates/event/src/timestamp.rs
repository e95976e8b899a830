//! Event time: `@timestamp` to Unix nanoseconds, with a fast path for the canonical
//! `YYYY-MM-DDTHH:MM:SS.fffffffffZ` form and `time`'s RFC 3339 parser for anything else.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch.
pub fn parse_nanos(text: &str) -> Option<i64> {
    parse_canonical(text.as_bytes()).or_else(|| {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        i64::try_from(parsed.unix_timestamp_nanos()).ok()
    })
}

/// [`parse_nanos`] that remembers the last canonical timestamp's second: events arrive in
/// time order, many within the same second, and then only the nine fraction digits are read.
#[derive(Debug, Clone, Default)]
pub struct NanosParser {
    /// `YYYY-MM-DDTHH:MM:SS.` of the last canonical timestamp, and that second in nanoseconds.
    second: Option<([u8; 20], i64)>,
}

impl NanosParser {
    /// Parses like [`parse_nanos`].
    pub fn parse(&mut self, text: &str) -> Option<i64> {
        let bytes = text.as_bytes();
        if let Some((prefix, second_ns)) = &self.second {
            if bytes.len() == 30 && bytes[29] == b'Z' && bytes[..20] == prefix[..] {
                if let Some(fraction) = digits(&bytes[20..29]) {
                    return Some(second_ns + fraction);
                }
            }
        }
        let Some(nanos) = parse_canonical(bytes) else {
            return parse_nanos(text);
        };
        let mut prefix = [0u8; 20];
        prefix.copy_from_slice(&bytes[..20]);
        self.second = Some((prefix, nanos - nanos.rem_euclid(1_000_000_000)));
        Some(nanos)
    }
}

/// ASCII digits as a number; `None` if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

/// Formats nanoseconds since the epoch like event timestamps.
pub fn format_nanos(nanos: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    crate::format_timestamp(at)
}

fn parse_canonical(bytes: &[u8]) -> Option<i64> {
    // 2026-11-25T09:25:33.123456789Z
    if bytes.len() != 30
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
        || bytes[19] != b'.'
        || bytes[29] != b'Z'
    {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| digits(&bytes[range]);
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let second = digits(17..19)?;
    let nanos = digits(20..29)?;
    // Anything the `time` crate would treat specially (a day past the month's end, a leap
    // second) leaves the fast path, so both paths agree on every input.
    // Years 1678-2261 fit i64 nanoseconds whatever the rest; anything outside goes to the
    // `time` crate, whose result is range-checked.
    if !(1678..=2261).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000_000 + second * 1_000_000_000 + nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn other_rfc3339_forms_are_accepted() {
        assert_eq!(parse_nanos("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_nanos("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_nanos("yesterday"), None);
    }

    #[test]
    fn the_parser_reuses_the_second_and_still_reads_anything() {
        let mut parser = NanosParser::default();
        for text in [
            "2026-11-25T09:25:33.123456789Z",
            "2026-11-25T09:25:33.999999999Z",
            "2026-11-25T09:25:33.000000000Z",
            "2026-11-25T09:25:34.000000001Z",
            "2026-11-25T09:25:34.00000000xZ",
            "2026-11-25T09:25:34+01:00",
            "1969-12-31T23:59:59.500000000Z",
            "1969-12-31T23:59:59.250000000Z",
            "yesterday",
        ] {
            assert_eq!(parser.parse(text), parse_nanos(text), "{text}");
        }
    }

    fn by_time_crate(text: &str) -> Option<i64> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        i64::try_from(parsed.unix_timestamp_nanos()).ok()
    }

    #[test]
    fn impossible_dates_and_leap_seconds_leave_the_fast_path() {
        for text in [
            "2026-02-29T00:00:00.000000000Z",
            "2026-04-31T00:00:00.000000000Z",
            "2026-12-31T23:59:60.000000000Z",
            "2026-13-01T00:00:00.000000000Z",
        ] {
            assert_eq!(parse_canonical(text.as_bytes()), None, "{text}");
            assert_eq!(parse_nanos(text), by_time_crate(text), "{text}");
        }
        assert!(parse_canonical(b"2024-02-29T00:00:00.000000000Z").is_some());
        // Past what i64 nanoseconds hold: refused, not wrapped.
        for text in [
            "2263-01-01T00:00:00.000000000Z",
            "9999-12-31T00:00:00.000000000Z",
            "1600-01-01T00:00:00.000000000Z",
        ] {
            assert_eq!(parse_nanos(text), None, "{text}");
        }
        assert!(parse_nanos("2261-12-31T23:59:59.999999999Z").is_some());
        assert!(parse_nanos("1678-01-01T00:00:00.000000000Z").is_some());
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_the_time_crate(nanos in 0i64..4_000_000_000_000_000_000) {
            let text = format_nanos(nanos);
            prop_assert_eq!(parse_canonical(text.as_bytes()), Some(nanos));
        }

        #[test]
        fn any_canonical_shaped_text_parses_as_the_time_crate_does(
            year in 0i64..10_000, month in 0i64..14, day in 0i64..33,
            hour in 0i64..25, minute in 0i64..61, second in 0i64..62, fraction in 0i64..1_000_000_000,
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{fraction:09}Z");
            prop_assert_eq!(parse_nanos(&text), by_time_crate(&text), "{}", text);
        }
    }
}
