//! The data that flows between the adapters and the actors. Plain `Send` data; time is always
//! carried in, never read from a clock.

use std::collections::HashMap;
use std::sync::Arc;

pub use wva_storage::{ModelKey, Timestamp, VariantKey};

use crate::policy::{FallbackSource, OperatingMode, ScalingConfig};

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
}

/// Replicas of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentState {
    /// `status.replicas`, else `spec.replicas`.
    pub replicas: u32,
    pub ready: u32,
}

/// One pod's saturation signals, already matched to the Deployment that owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub pod: String,
    pub deployment: String,
    pub kv_cache_usage: Option<f64>,
    pub queue_length: Option<f64>,
}

/// One batched read of all signals, grouped by model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub by_model: HashMap<ModelKey, Vec<PodSample>>,
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
}

/// How the metrics of a variant stood in a cycle (the `MetricsAvailable` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsState {
    Found,
    /// No series for the variant's pods.
    Missing,
    /// The query failed.
    PrometheusError(String),
}

/// How the decision of a variant was made (the `OptimizationReady` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptimizationState {
    Succeeded,
    SafetyNet(FallbackSource),
    /// Decided on the default thresholds because the model's override is invalid.
    InvalidConfiguration(String),
}

/// What the status port (VA status writer, or the simulator) is told.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusUpdate {
    Decided {
        variant: VariantKey,
        at: Timestamp,
        desired: u32,
        previous_desired: Option<u32>,
        current: u32,
        accelerator: String,
        metrics: MetricsState,
        optimization: OptimizationState,
        reason: String,
    },
    /// The target Deployment does not exist (never did, or was deleted).
    TargetMissing {
        variant: VariantKey,
        at: Timestamp,
        deployment: String,
        /// True when it existed before: "no longer exists" rather than "not found".
        deleted: bool,
    },
}

/// Status updates of one cycle (or one event), delivered together.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusBatch(pub Vec<StatusUpdate>);

impl actix::Message for StatusBatch {
    type Result = ();
}
