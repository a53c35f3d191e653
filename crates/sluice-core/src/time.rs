//! Timestamp parsing and the one output format sluice writes.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Parses the ISO-8601 shapes that Segment libraries send: RFC 3339 with `Z` or an offset, with
/// any number of fractional digits, and (seen from older server libraries) a naive date-time,
/// which is read as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    // RFC 3339 requires the `T`; some clients send a space.
    if let Ok(parsed) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(parsed.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// `at - span`, clamped to the earliest representable time: a window configured as good as
/// "forever" (say `100000000d`) must mean "keep everything", not an overflow.
pub fn time_before(at: DateTime<Utc>, span: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|span| at.checked_sub_signed(span))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Formats a timestamp the way sluice stores it: UTC, millisecond precision, `Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Appends `"<format_timestamp(at)>"` without allocating (the normaliser writes up to four per
/// event). The date-and-time part is cached per thread by whole second, since the events of one
/// request mostly share their seconds.
pub fn push_timestamp(out: &mut String, at: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let year = at.year();
    if !(0..=9999).contains(&year) {
        out.push('"');
        out.push_str(&format_timestamp(at));
        out.push('"');
        return;
    }
    out.push('"');
    SECOND.with_borrow_mut(|(cached_second, prefix)| {
        if *cached_second != at.timestamp() {
            prefix.clear();
            let parts: [(u32, usize, char); 6] = [
                (year as u32, 4, '-'),
                (at.month(), 2, '-'),
                (at.day(), 2, 'T'),
                (at.hour(), 2, ':'),
                (at.minute(), 2, ':'),
                (at.second(), 2, '.'),
            ];
            for (value, width, separator) in parts {
                push_digits(prefix, value, width);
                prefix.push(separator);
            }
            *cached_second = at.timestamp();
        }
        out.push_str(prefix);
    });
    // A leap second reports 1000+ milliseconds; cap it as a valid RFC 3339 fraction.
    push_digits(out, at.timestamp_subsec_millis().min(999), 3);
    out.push_str("Z\"");
}

/// Appends `value` as exactly `width` (≤ 4) decimal digits, zero-padded.
fn push_digits(out: &mut String, value: u32, width: usize) {
    let mut buffer = [b'0'; 4];
    let mut rest = value;
    for slot in buffer[..width].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    buffer[..width]
        .iter()
        .for_each(|&b| out.push(char::from(b)));
}

/// `serialize_with` helper writing [`format_timestamp`].
pub fn serialize<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(*at))
}

/// `serialize_with` helper for an optional timestamp (`null` when absent).
pub fn serialize_option<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_shape() {
        let expected = "2026-12-04T19:34:12.441Z";
        for input in [
            "2026-12-04T19:34:12.441Z",
            "2026-12-04T19:34:12.441000+00:00",
            "2026-12-04T20:34:12.441+01:00",
            "2026-12-04T19:34:12.441693+00:00",
            "2026-12-04 19:34:12.441+00:00",
            "2026-12-04T19:34:12.441",
        ] {
            let parsed = parse_timestamp(input).unwrap_or_else(|| panic!("{input} did not parse"));
            assert_eq!(format_timestamp(parsed), expected, "{input}");
        }
    }

    #[test]
    fn push_matches_format() {
        for input in [
            "2026-12-04T19:34:12.441Z",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "2024-02-29T08:05:09.007Z",
            "2024-02-29T08:05:09.999Z",
            "2024-02-29T08:05:10.000Z",
        ] {
            let at = parse_timestamp(input).unwrap();
            let mut out = String::new();
            push_timestamp(&mut out, at);
            assert_eq!(out, format!("\"{}\"", format_timestamp(at)));
        }
    }

    #[test]
    fn time_before_clamps_instead_of_overflowing() {
        let at = parse_timestamp("2026-12-04T12:00:00Z").unwrap();
        assert_eq!(
            format_timestamp(time_before(at, std::time::Duration::from_secs(3600))),
            "2026-12-04T11:00:00.000Z"
        );
        assert_eq!(
            time_before(at, std::time::Duration::MAX),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            time_before(at, std::time::Duration::from_secs(100_000_000 * 86_400)),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn rejects_garbage() {
        for input in ["", "yesterday", "2026-13-45T00:00:00Z", "1733340852"] {
            assert!(parse_timestamp(input).is_none(), "{input} parsed");
        }
    }
}
