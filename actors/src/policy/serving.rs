//! What a variant's servers served over the last window, pooled: the observation both latency
//! learners (the model-based optimizer's and `slo-capacity`'s lines) learn from, and the demand
//! it implies.

use serde::{Deserialize, Serialize};

/// What a variant's reporting servers did over the last window, pooled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServingSummary {
    /// Servers that reported.
    pub pods: usize,
    /// Requests per second, all of them together.
    pub rate_rps: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
    pub ttft_ms: f64,
    pub itl_ms: f64,
    /// Mean running batch per server.
    pub batch: f64,
    /// Mean waiting requests per server over the window.
    pub waiting: f64,
    /// Waiting requests at the window's end, averaged over servers.
    #[serde(default, alias = "waitingPeak")]
    pub waiting_end: f64,
}

impl ServingSummary {
    /// Requests per second arriving at these servers: what they complete, plus how fast their
    /// queue changed (a queue moving steadily over the window ends half a window's change away
    /// from its mean), plus the queue left at the window's end served within `drain_s`.
    ///
    /// The change is signed: a queue that drains was completed on top of what arrived, so it
    /// comes off. Read from the window's highest queue instead (as before), a queue draining
    /// counted three times, in the completions, as growth (it peaks at the window's start as
    /// far above its mean as a growing one does at its end) and as backlog: after the zoo's
    /// sharp surge the servers draining their backlog asked for 154 requests per second where
    /// 60 arrived.
    pub fn demand_rps(&self, window_s: f64, drain_s: f64) -> f64 {
        let pods = self.pods as f64;
        let change = self.queue_change_per_s(window_s);
        let backlog = self.waiting_end.max(0.0) / drain_s.max(1.0);
        (self.rate_rps + pods * (change + backlog)).max(0.0)
    }

    /// How fast the waiting queue changed at the window's end, requests per second per server.
    /// A queue moving steadily over the whole window ends half a window's change away from its
    /// mean, and its mean is at least half its end. A mean under half the end says the queue
    /// rose from empty within the window: rising at `g` for the last `τ` seconds it ends at
    /// `g·τ` with a mean of `g·τ²/(2·window)`, so `τ = 2·window·mean/end`. Read as spread over
    /// the whole window instead, a surge's first fifteen seconds gave under half its growth.
    /// `τ` is taken as at least a quarter window: the queue is sampled, and a rise seen in one
    /// sample says little of how fast it came. The mean is a mean of scrapes, which reads a
    /// rise as starting up to one scrape interval sooner than it did, so the pace errs low:
    /// with a scrape every 15 s a rise over the last 15 s reads as one over 24 to 30 s (five or
    /// four scrapes in the minute), five-eighths to half its pace, where the whole-window
    /// reading gave two-fifths to three-eighths.
    fn queue_change_per_s(&self, window_s: f64) -> f64 {
        let window = window_s.max(1.0);
        if self.waiting_end > 2.0 * self.waiting {
            let rising_for_s = (2.0 * window * self.waiting / self.waiting_end).max(window / 4.0);
            return self.waiting_end / rising_for_s;
        }
        (self.waiting_end - self.waiting) / (window / 2.0)
    }

    /// Whether the waiting queue drained over the window: it ended well under its mean (both
    /// per server; by half of it, and by more than one request, so that the odd request of a
    /// queue that stays near empty does not count).
    pub fn queue_drained(&self) -> bool {
        self.waiting - self.waiting_end > (0.5 * self.waiting).max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers that each completed 30 requests per second over a minute, with a mean
    /// queue of 100, read with a 60 s window and a 150 s drain.
    fn window(end: f64) -> ServingSummary {
        ServingSummary {
            pods: 2,
            rate_rps: 60.0,
            mean_input_tokens: 500.0,
            mean_output_tokens: 200.0,
            ttft_ms: 400.0,
            itl_ms: 20.0,
            batch: 100.0,
            waiting: 100.0,
            waiting_end: end,
        }
    }

    #[test]
    fn a_queue_growing_adds_its_growth_and_one_draining_takes_it_off() {
        let demand = |end: f64| window(end).demand_rps(60.0, 150.0);
        // Steady at 100: completions plus the standing queue over 150 s, per server.
        assert!((demand(100.0) - (60.0 + 2.0 * 100.0 / 150.0)).abs() < 1e-9);
        // Growing from 40 to 160 (mean 100, end 160): 2 requests a second more per server
        // arrive than complete, and the 160 left are backlog.
        let growing = demand(160.0);
        assert!(
            (growing - (60.0 + 2.0 * (2.0 + 160.0 / 150.0))).abs() < 1e-9,
            "{growing}"
        );
        // Draining from 160 to 40: the same window by its highest queue, but 2 a second per
        // server of what completed was the queue, not arrivals.
        let draining = demand(40.0);
        assert!(
            (draining - (60.0 + 2.0 * (-2.0 + 40.0 / 150.0))).abs() < 1e-9,
            "{draining}"
        );
        assert!(draining < demand(100.0) && demand(100.0) < growing);
    }

    #[test]
    fn a_queue_rising_from_empty_late_in_the_window_counts_at_its_pace() {
        let rising = |end: f64, mean: f64| ServingSummary {
            waiting: mean,
            waiting_end: end,
            ..window(end)
        };
        // Empty for 45 s, then 4 more a second than complete per server for the last 15 s: it
        // ends at 60 with a mean of 60·15/120 = 7.5. Read as a rise over the whole window it
        // was (60 − 7.5)/30 = 1.75 a second.
        let surge = rising(60.0, 7.5).demand_rps(60.0, 150.0);
        assert!(
            (surge - (60.0 + 2.0 * (4.0 + 60.0 / 150.0))).abs() < 1e-9,
            "{surge}"
        );
        // Seen in the last sample alone, the rise is taken as a quarter window's.
        let one_sample = rising(30.0, 0.0).demand_rps(60.0, 150.0);
        assert!(
            (one_sample - (60.0 + 2.0 * (30.0 / 15.0 + 30.0 / 150.0))).abs() < 1e-9,
            "{one_sample}"
        );
        // At a mean of half the end both readings agree: a steady rise from empty.
        let steady = rising(60.0, 30.0).demand_rps(60.0, 150.0);
        assert!(
            (steady - (60.0 + 2.0 * (1.0 + 60.0 / 150.0))).abs() < 1e-9,
            "{steady}"
        );
    }

    #[test]
    fn more_queue_at_the_windows_end_never_gives_less_demand() {
        // CONTRACT 12: monotone in every demand signal. Across the two readings of the change
        // (a rise over the whole window, a rise from empty within it) and the quarter-window
        // floor, for queues that were empty, near empty and long on average.
        for mean in [0.0, 0.2, 1.0, 7.5, 40.0, 300.0] {
            let mut before = f64::NEG_INFINITY;
            for step in 0..=4_000 {
                let end = f64::from(step) * 0.25;
                let demand = ServingSummary {
                    waiting: mean,
                    waiting_end: end,
                    ..window(end)
                }
                .demand_rps(60.0, 150.0);
                assert!(
                    demand >= before - 1e-9,
                    "mean {mean}: {demand} at end {end} < {before}"
                );
                before = demand;
            }
        }
    }

    #[test]
    fn demand_is_never_negative() {
        let mut idle = window(0.0);
        idle.rate_rps = 0.5;
        assert_eq!(idle.demand_rps(60.0, 150.0), 0.0);
    }
}
