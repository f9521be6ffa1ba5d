//! How long a variant's replicas take to start, measured from its Deployment: from the cycle
//! that first sees more replicas than are ready to the cycle that sees them all ready (pods
//! created → ready, at the cycles' resolution). The forecast looks this far ahead.

use serde::{Deserialize, Serialize};

/// A new measurement's weight in the running estimate.
const NEW_WEIGHT: f64 = 0.5;

/// The start-up clock of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StartupClock {
    /// Replicas waited for, and since when (ms).
    waiting: Option<(u32, i64)>,
    /// Seconds from created to ready, smoothed over the scale-ups seen.
    estimate_s: Option<f64>,
}

impl StartupClock {
    /// Takes the Deployment's replicas and ready replicas seen at `at_ms`.
    pub fn observe(&mut self, replicas: u32, ready: u32, at_ms: i64) {
        self.waiting = match self.waiting {
            // All that was waited for is ready: one measurement.
            Some((wanted, since)) if ready >= wanted => {
                let took = (at_ms - since) as f64 / 1e3;
                if took > 0.0 {
                    self.estimate_s = Some(match self.estimate_s {
                        Some(e) => NEW_WEIGHT * took + (1.0 - NEW_WEIGHT) * e,
                        None => took,
                    });
                }
                (ready < replicas).then_some((replicas, at_ms))
            }
            // Scaled down below what was waited for: that start-up is not timed.
            Some((wanted, _)) if replicas < wanted => {
                (ready < replicas).then_some((replicas, at_ms))
            }
            // More replicas asked for while waiting: wait for them from the start.
            Some((wanted, since)) => Some((wanted.max(replicas), since)),
            None => (ready < replicas).then_some((replicas, at_ms)),
        };
    }

    /// The measured start-up time, seconds; `None` before a scale-up was seen to finish.
    pub fn seconds(&self) -> Option<f64> {
        self.estimate_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_up_is_timed_from_created_to_ready() {
        let mut clock = StartupClock::default();
        clock.observe(1, 1, 0);
        assert_eq!(clock.seconds(), None);
        // Three more at 15 s, ready one by one, the last at 150 s.
        clock.observe(4, 1, 15_000);
        clock.observe(4, 2, 120_000);
        clock.observe(4, 3, 135_000);
        assert_eq!(clock.seconds(), None);
        clock.observe(4, 4, 150_000);
        assert_eq!(clock.seconds(), Some(135.0));
        // A second scale-up, faster: the estimate moves halfway.
        clock.observe(6, 4, 300_000);
        clock.observe(6, 6, 375_000);
        assert_eq!(clock.seconds(), Some(105.0));
        // A scale-down under what was waited for is not timed.
        clock.observe(8, 6, 400_000);
        clock.observe(5, 5, 420_000);
        assert_eq!(clock.seconds(), Some(105.0));
    }
}
