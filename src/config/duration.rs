//! Durations as users write them in ConfigMaps and environment variables: Go style (`15s`,
//! `1m30s`, `500ms`, `2h`), or a bare number of seconds. The parsing is jiff's.

use std::time::Duration;

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a duration such as 15s, 1m30s or 500ms, got {0:?}")]
pub struct DurationError(pub String);

/// Parses a duration; the error says what was expected. Go's forms are a subset of jiff's
/// "friendly" format, which reads them (and spaced forms such as `1h 30m`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let bad = || DurationError(text.to_string());
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let parsed: jiff::SignedDuration = s.parse().map_err(|_| bad())?;
    Duration::try_from(parsed).map_err(|_| bad())
}

/// Formats a duration the way it is parsed, for messages and `wva settings`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_and_bare_seconds() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration(" 60 "), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in ["", "s", "10x", "abc", "-5s", "1m-3s", "-1"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.to_string().contains("expected a duration"), "{err}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["15s", "1m", "1m30s", "2h", "1h0m5s", "250ms"] {
            let d = parse_duration(text).expect(text);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }
}
