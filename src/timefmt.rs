//! Times as users give them on the command line and read them in output.

use wva_storage::Timestamp;

use crate::config::parse_duration;

/// RFC 3339 with milliseconds, in UTC.
pub fn format_time(t: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(t.millis()) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => format!("@{}ms", t.millis()),
    }
}

/// An RFC 3339 time (`2026-11-22T10:00:00Z`), or a duration (`2h`, `30m`) meaning that long
/// before `now`.
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
    if let Ok(ts) = text.trim().parse::<jiff::Timestamp>() {
        return Ok(Timestamp(ts.as_millisecond()));
    }
    match parse_duration(text) {
        Ok(ago) => Ok(now.plus_millis(-(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX)))),
        Err(_) => Err(TimeError(text.to_string())),
    }
}

/// A text that is neither a time nor a duration ago.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected an RFC 3339 time such as 2026-11-22T10:00:00Z, or a duration ago such as 2h, got {0:?}"
)]
pub struct TimeError(pub String);

/// The wall clock, for commands that ask about "now" (never for decisions).
pub fn wall_clock() -> Timestamp {
    Timestamp(jiff::Timestamp::now().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_relative() {
        let t = parse_time("2026-11-22T10:00:00.250Z", Timestamp(0)).expect("parses");
        assert_eq!(format_time(t), "2026-11-22T10:00:00.250Z");
        assert_eq!(
            parse_time("2h", Timestamp(10_000_000)),
            Ok(Timestamp(10_000_000 - 7_200_000))
        );
        assert!(parse_time("yesterday", Timestamp(0)).is_err());
    }
}
