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
    /// The window's highest waiting queue, averaged over servers.
    #[serde(default)]
    pub waiting_peak: f64,
}

impl ServingSummary {
    /// Requests per second arriving at these servers: what they complete, plus how fast their
    /// queue grows (a queue growing steadily over the window peaks half a window above its
    /// mean), plus the standing queue served within `drain_s`.
    pub fn demand_rps(&self, window_s: f64, drain_s: f64) -> f64 {
        let pods = self.pods as f64;
        let growth = (self.waiting_peak - self.waiting).max(0.0) / (window_s / 2.0).max(1.0);
        let backlog = self.waiting_peak.max(self.waiting) / drain_s.max(1.0);
        self.rate_rps + pods * (growth + backlog)
    }
}
