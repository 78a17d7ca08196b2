//! Timestamps on the wire: RFC 3339, UTC, millisecond precision (`2026-11-25T20:00:00.123Z`).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset, macros::format_description};

/// Now, formatted for the wire.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Formats a moment for the wire.
pub fn format(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses any RFC 3339 timestamp.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

/// Wire format for a Unix time in milliseconds.
pub fn from_unix_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_times_have_milliseconds_and_parse_back() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_764_100_800_123_456_789).unwrap();
        let s = format(t);
        assert_eq!(s.len(), "2026-11-25T20:00:00.123Z".len());
        assert!(s.ends_with('Z'));
        assert_eq!(unix_ms(parse(&s).unwrap()), 1_764_100_800_123);
        assert_eq!(from_unix_ms(1_764_100_800_123), s);
    }
}
