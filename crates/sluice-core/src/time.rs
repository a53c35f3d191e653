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

/// Formats a timestamp the way sluice stores it: UTC, millisecond precision, `Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `serialize_with` helper writing [`format_timestamp`].
pub fn serialize<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(*at))
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
    fn rejects_garbage() {
        for input in ["", "yesterday", "2026-13-45T00:00:00Z", "1733340852"] {
            assert!(parse_timestamp(input).is_none(), "{input} parsed");
        }
    }
}
