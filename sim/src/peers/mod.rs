//! The autoscalers this controller is measured against, each faithful to its published
//! algorithm, all reading the emulated cluster as their real counterparts read a cluster:
//!
//! - [`saturation_v2`]: upstream WVA v0.9's token-based analyzer and cost-aware optimizer,
//!   through an HPA on its desired count.
//! - [`keda_slo`]: the SLO-aware KEDA setup of llm-d's guide: P90 TTFT and ITL over their
//!   objectives, capped, smoothed, with hysteresis, through KEDA's HPA.
//! - [`kpa`]: Knative's concurrency autoscaler.
//! - [`hindsight`]: the schedule chosen with the whole load known in advance: the bound the
//!   others are measured against.
//! - [`replay`]: another run's schedule replayed, then improved with hindsight: the bound's
//!   answer where a policy's steady headroom beats the schedules it plans.
//!
//! The plain HPA on KV-cache use needs no state beyond the HPA's ([`crate::hpa`]).

pub mod hindsight;
pub mod keda_slo;
pub mod kpa;
pub mod replay;
pub mod saturation_v2;

use std::collections::VecDeque;

use crate::server::Completed;

/// What a variant's servers finished over the last minute, as Prometheus' `[1m]` windows see
/// it: (finish time, TTFT ms, mean ITL ms, prompt tokens, output tokens).
#[derive(Debug, Clone, Default)]
pub struct RecentRequests {
    done: VecDeque<(f64, f64, f64, u32, u32)>,
}

/// The window of [`RecentRequests`].
pub const WINDOW_MS: f64 = 60_000.0;

impl RecentRequests {
    pub fn record(&mut self, c: &Completed) {
        self.done.push_back((
            c.finish_ms,
            c.ttft_ms,
            c.itl_ms,
            c.prompt_tokens,
            c.output_tokens,
        ));
    }

    /// Forgets what finished before the window ending at `now_ms`.
    pub fn trim(&mut self, now_ms: f64) {
        while self.done.front().is_some_and(|d| d.0 < now_ms - WINDOW_MS) {
            self.done.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Mean prompt and output tokens; `None` when nothing finished.
    pub fn mean_lengths(&self) -> Option<(f64, f64)> {
        if self.done.is_empty() {
            return None;
        }
        let n = self.done.len() as f64;
        let input = self.done.iter().map(|d| f64::from(d.3)).sum::<f64>() / n;
        let output = self.done.iter().map(|d| f64::from(d.4)).sum::<f64>() / n;
        Some((input, output))
    }

    /// The `q` quantile of TTFT and of ITL (requests with more than one output token).
    pub fn latency_quantiles(&self, q: f64) -> Option<(f64, f64)> {
        let ttft = crate::results::percentile(self.done.iter().map(|d| d.1).collect(), q)?;
        let itl = crate::results::percentile(
            self.done.iter().filter(|d| d.4 > 1).map(|d| d.2).collect(),
            q,
        )
        .unwrap_or(0.0);
        Some((ttft, itl))
    }
}
