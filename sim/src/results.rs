//! What a run produces and how it is judged, shared by the engine, the report, the frontier,
//! the capacity measurement and the peers: the latency objectives, percentiles, the time series
//! and the per-variant totals.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::server::Completed;

/// Latency objectives a request is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SloTargets {
    pub ttft_ms: f64,
    pub itl_ms: f64,
}

impl Default for SloTargets {
    fn default() -> Self {
        Self {
            ttft_ms: 1_000.0,
            itl_ms: 50.0,
        }
    }
}

/// One point of the time series, per autoscaler cycle.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub t_s: f64,
    pub variants: BTreeMap<String, VariantSample>,
    /// Requests waiting in servers and at the gateway.
    pub waiting: usize,
    /// Mean KV-cache use over ready replicas.
    pub kv: f64,
    /// Median TTFT of the requests that finished since the last sample, ms.
    pub ttft_p50_ms: Option<f64>,
    /// 99th-percentile TTFT of the requests that finished since the last sample, ms.
    pub ttft_p99_ms: Option<f64>,
}

/// One variant at one sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantSample {
    pub replicas: u32,
    pub ready: u32,
    /// The desired count published for it (none before the first decision).
    pub desired: Option<u32>,
    /// Mean KV-cache use over its ready replicas (0 with none ready).
    pub kv: f64,
    /// Requests waiting in its servers.
    pub waiting: usize,
}

/// Per-variant totals.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantResult {
    pub name: String,
    pub accelerator: String,
    pub gpu_hours: f64,
    pub cost: f64,
    pub scaling_actions: u32,
    pub peak_replicas: u32,
    pub completed: usize,
    /// Replica-hours its Deployment's replicas spent Pending for want of an accelerator.
    pub pending_replica_hours: f64,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub completed: Vec<Completed>,
    pub failed: u64,
    pub unfinished: usize,
    pub variants: Vec<VariantResult>,
    pub samples: Vec<Sample>,
    /// The publisher's metrics at the end of the run, in the Prometheus text format.
    pub metrics_text: String,
    pub cycles: usize,
    pub safety_net_cycles: usize,
    /// Hybrid and model-only runs: how often the optimizer proposed.
    pub model_based: Option<ModelBasedTally>,
    /// The saturation thresholds the run's configuration set (drawn on the plots).
    pub thresholds: wva_actors::policy::Thresholds,
    /// Where the misses came from.
    pub misses: MissBreakdown,
    /// Every change of a Deployment's replicas, in order: the run's schedule, which the bound
    /// can replay.
    pub scaling: Vec<ScalingEvent>,
    /// What the decision log kept (runs with `--data-dir`).
    pub decision_log: Option<LogFootprint>,
}

/// What a run's decision log keeps, as the log counts its bytes (what its size cap bounds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFootprint {
    pub records: u64,
    pub bytes: u64,
    /// Bytes per variant per day of the run.
    pub bytes_per_variant_day: f64,
}

/// One change of one variant's replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingEvent {
    pub t_ms: f64,
    /// The variant's index in the scenario.
    pub variant: usize,
    pub replicas: u32,
}

/// Cycles in which the model-based optimizer (hybrid, model-only) proposed targets.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelBasedTally {
    pub cycles: usize,
    pub proposed: usize,
    /// Why it abstained the first time it did.
    pub first_abstention: Option<String>,
}

/// The `q` quantile (0..=1) by nearest rank; `None` for no values.
pub fn percentile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// The misses of a run by cause (how each is attributed: the `misses` module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MissBreakdown {
    pub trigger: usize,
    pub ask: usize,
    pub grant: usize,
    pub warm_up: usize,
    pub never_asked: usize,
}

impl MissBreakdown {
    pub fn total(&self) -> usize {
        self.trigger + self.ask + self.grant + self.warm_up + self.never_asked
    }
}
