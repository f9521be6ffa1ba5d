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
        let change = (self.waiting_end - self.waiting) / (window_s / 2.0).max(1.0);
        let backlog = self.waiting_end.max(0.0) / drain_s.max(1.0);
        (self.rate_rps + pods * (change + backlog)).max(0.0)
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
    fn demand_is_never_negative() {
        let mut idle = window(0.0);
        idle.rate_rps = 0.5;
        assert_eq!(idle.demand_rps(60.0, 150.0), 0.0);
    }
}
