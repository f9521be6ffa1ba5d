//! The data that flows between the adapters and the actors. Plain `Send` data; time is always
//! carried in, never read from a clock.

use std::collections::HashMap;
use std::sync::Arc;

pub use wva_storage::{ModelKey, Timestamp, VariantKey};

pub use crate::policy::outputs::{MetricsState, OptimizationState, StatusUpdate};
use crate::policy::queueing::LatencyTargets;
use crate::policy::scale_to_zero::RequestCount;
use crate::policy::slo_capacity::SloCapacityConfig;
use crate::policy::{Analyzer, OperatingMode, ScalingConfig};

/// `max-num-seqs` assumed when the VA's model profile does not give `maxBatchSize` (vLLM's
/// default).
pub const DEFAULT_MAX_BATCH: u32 = 256;

/// What the controller knows about a variant from its VA (or from discovery).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSpec {
    pub key: VariantKey,
    pub model: ModelKey,
    /// The Deployment this variant scales, in the variant's namespace.
    pub deployment: String,
    /// Cost of one replica.
    pub cost: f64,
    pub accelerator: String,
    /// Desired count stored in the VA status: the safety net's fallback when the log has none.
    pub status_desired: Option<u32>,
    /// `max-num-seqs` of the servers, for the model-based optimizer.
    pub max_batch: u32,
    /// Bounds of the HPA or ScaledObject that scales the variant, when known.
    pub bounds: ReplicaBounds,
    /// Prefill, decode, or both (`llm-d.ai/role` on its target).
    pub role: crate::policy::roles::Role,
    /// Accelerators (GPUs) one replica holds: what a finite pool is counted in.
    pub gpus_per_replica: u32,
}

/// The replica range a variant's scaler allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaBounds {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

impl ReplicaBounds {
    /// The count the scaler can actually reach when asked for `n`.
    pub fn clamp(&self, n: u32) -> u32 {
        let n = self.min.map_or(n, |min| n.max(min));
        self.max.map_or(n, |max| n.min(max))
    }
}

/// Replicas of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentState {
    /// `status.replicas`, else `spec.replicas`.
    pub replicas: u32,
    pub ready: u32,
}

/// One pod's signals, already matched to the Deployment that owns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSample {
    pub pod: String,
    pub deployment: String,
    pub kv_cache_usage: Option<f64>,
    pub queue_length: Option<f64>,
    /// Mean requests in the running batch over the window.
    pub running: Option<f64>,
    /// What the pod served over the window (the model-based optimizer's inputs).
    pub serving: Option<ServingStats>,
}

/// Rates and means of one pod over the last window (`rate(...[1m])` and sum/count ratios).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServingStats {
    /// Successful requests per second.
    pub request_rate_rps: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
    pub ttft_ms: f64,
    pub itl_ms: f64,
    /// Mean waiting requests over the window (`avg_over_time`), where the saturation signal
    /// takes the maximum: the queue requests really stood in, for the latency learners.
    pub mean_waiting: f64,
    /// Waiting requests at the window's end (`last_over_time`): with the mean, which way the
    /// queue went. The maximum cannot say: a queue draining peaks at the window's start as far
    /// above its mean as one growing does at its end.
    pub last_waiting: f64,
}

impl ServingStats {
    pub fn is_valid(&self) -> bool {
        [
            self.request_rate_rps,
            self.mean_input_tokens,
            self.mean_output_tokens,
            self.ttft_ms,
            self.itl_ms,
            self.mean_waiting,
            self.last_waiting,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
    }
}

/// One batched read of all signals, grouped by model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub by_model: HashMap<ModelKey, Vec<PodSample>>,
    /// Successful requests over each model's scale-to-zero retention window; only read for
    /// models where scale to zero is on.
    pub request_counts: HashMap<ModelKey, RequestCount>,
    /// Age in seconds of the newest sample of Deployments (by namespace and name) whose live
    /// pods have series, but none inside the read window: the `MetricsStale` condition.
    pub stale: HashMap<(String, String), u64>,
    /// Requests the llm-d scheduler (EPP) holds in its flow-control queue, per model, where it
    /// reports any.
    pub held_requests: HashMap<ModelKey, f64>,
}

/// The outcome of the cycle's metrics read.
#[derive(Debug, Clone, PartialEq)]
pub enum Metrics {
    Read(Arc<MetricsSnapshot>),
    /// The read failed (Prometheus unreachable, query error); the reason is logged and recorded.
    Failed(String),
}

/// The configuration the policy runs with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicySettings {
    pub scaling: ScalingConfig,
    pub mode: OperatingMode,
    /// The analyzer of capacity mode.
    pub analyzer: Analyzer,
    /// The `slo-capacity` analyzer's settings (its objectives are the model's service class).
    pub slo_capacity: SloCapacityConfig,
    /// Service-class targets by model ID; models not listed get [`LatencyTargets::default`].
    pub latency_targets: HashMap<String, LatencyTargets>,
    /// The global scale-to-zero switch (a model's `enableScaleToZero` overrides it).
    pub scale_to_zero: bool,
    /// Service-class priority by model ID (lower first when accelerators are scarce); models
    /// not listed come after every class ([`UNCLASSED_PRIORITY`]).
    pub priorities: HashMap<String, i64>,
}

/// The priority of a model no service class lists: after all of them.
pub const UNCLASSED_PRIORITY: i64 = i64::MAX;

impl PolicySettings {
    /// A model's priority when accelerators are scarce.
    pub fn priority_of(&self, model_id: &str) -> i64 {
        self.priorities
            .get(model_id)
            .copied()
            .unwrap_or(UNCLASSED_PRIORITY)
    }

    pub fn targets_for(&self, model_id: &str) -> LatencyTargets {
        self.latency_targets
            .get(model_id)
            .copied()
            .unwrap_or_default()
    }

    /// Whether the variants learn and report what their servers served (model-based modes, and
    /// the `slo-capacity` analyzer).
    pub fn reads_serving(&self) -> bool {
        self.mode != OperatingMode::CapacityOnly || self.analyzer.reads_serving()
    }

    /// The `slo-capacity` settings for a model: its service class gives the objectives.
    pub fn slo_capacity_for(&self, model_id: &str) -> SloCapacityConfig {
        SloCapacityConfig {
            slo: self.targets_for(model_id),
            ..self.slo_capacity
        }
    }

    /// Whether scale to zero is on for a model, and its retention window.
    pub fn scale_to_zero_for(&self, model: &ModelKey) -> (bool, std::time::Duration) {
        let (config, _) = self.scaling.for_model(&model.namespace, &model.model_id);
        (
            config.enable_scale_to_zero.unwrap_or(self.scale_to_zero),
            config.scale_to_zero_retention,
        )
    }
}

/// Status updates of one cycle (or one event), delivered together.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusBatch(pub Vec<StatusUpdate>);

impl actix::Message for StatusBatch {
    type Result = ();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::{ModelOverride, ModelScalingConfig};

    #[test]
    fn a_models_switch_overrides_the_global_scale_to_zero_and_retention_defaults_to_10m() {
        let model_override = |model: &str, enable: Option<bool>| ModelOverride {
            entry: model.into(),
            model_id: model.into(),
            namespace: None,
            config: ModelScalingConfig {
                enable_scale_to_zero: enable,
                scale_to_zero_retention: Duration::from_secs(300),
                ..Default::default()
            },
        };
        let settings = |global: bool| PolicySettings {
            scale_to_zero: global,
            scaling: ScalingConfig {
                overrides: vec![
                    model_override("on", Some(true)),
                    model_override("off", Some(false)),
                    model_override("unset", None),
                ],
                ..Default::default()
            },
            ..Default::default()
        };
        let key = |m: &str| ModelKey::new("ns", m);
        for global in [false, true] {
            let s = settings(global);
            assert_eq!(
                s.scale_to_zero_for(&key("on")),
                (true, Duration::from_secs(300))
            );
            assert!(!s.scale_to_zero_for(&key("off")).0);
            assert_eq!(
                s.scale_to_zero_for(&key("unset")).0,
                global,
                "inherits the global switch"
            );
            assert_eq!(
                s.scale_to_zero_for(&key("other")),
                (global, Duration::from_secs(600)),
                "no override: the global switch and the 10m default"
            );
        }
        assert!(!PolicySettings::default().scale_to_zero, "off by default");
    }

    #[test]
    fn models_without_a_service_class_get_the_default_targets() {
        let mut s = PolicySettings::default();
        s.latency_targets.insert(
            "m".into(),
            LatencyTargets {
                ttft_ms: 500.0,
                itl_ms: 24.0,
            },
        );
        assert_eq!(s.targets_for("m").itl_ms, 24.0);
        assert_eq!(s.targets_for("other"), LatencyTargets::default());
        assert_eq!(LatencyTargets::default().ttft_ms, 1000.0);
        assert_eq!(LatencyTargets::default().itl_ms, 50.0);
    }
}
