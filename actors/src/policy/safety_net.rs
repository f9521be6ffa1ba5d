//! What a variant's desired count is when its model cannot be analyzed.

use serde::{Deserialize, Serialize};

/// Where a fallback desired count came from; logged and recorded as `fallbackSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FallbackSource {
    /// The last desired count the controller emitted from a successful analysis.
    PreviousDesired,
    /// No previous desired count is known: the current replica count, so the output is a no-op.
    CurrentReplicas,
}

impl FallbackSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreviousDesired => "previous-desired",
            Self::CurrentReplicas => "current-replicas",
        }
    }
}

impl std::fmt::Display for FallbackSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A desired count chosen by the safety net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    pub desired: u32,
    pub source: FallbackSource,
}

/// Chooses the fallback for one variant. The decision log is preferred over the VA status because
/// it is written on every successful cycle, while the status may lag behind a failed write.
pub fn fallback_desired(
    last_good_from_log: Option<u32>,
    status_desired: Option<u32>,
    current_replicas: u32,
) -> Fallback {
    match last_good_from_log.or(status_desired) {
        Some(desired) => Fallback {
            desired,
            source: FallbackSource::PreviousDesired,
        },
        None => Fallback {
            desired: current_replicas,
            source: FallbackSource::CurrentReplicas,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_wins_over_status() {
        let f = fallback_desired(Some(4), Some(2), 3);
        assert_eq!(f.desired, 4);
        assert_eq!(f.source, FallbackSource::PreviousDesired);
    }

    #[test]
    fn status_when_log_is_empty() {
        let f = fallback_desired(None, Some(2), 3);
        assert_eq!(f.desired, 2);
        assert_eq!(f.source, FallbackSource::PreviousDesired);
    }

    #[test]
    fn current_replicas_when_nothing_is_known() {
        let f = fallback_desired(None, None, 3);
        assert_eq!(f.desired, 3);
        assert_eq!(f.source, FallbackSource::CurrentReplicas);
        assert_eq!(f.source.to_string(), "current-replicas");
    }
}
