//! Pure decision policy: plain data in, plain data out, no clocks and no IO.
//!
//! - [`thresholds`]: the four saturation thresholds, their validation and partial overrides.
//! - [`saturation`]: per-replica saturation and the model-level capacity analysis.
//! - [`scaling_config`]: the resolved per-model configuration and its lookup.
//! - [`decision`]: what the policy knows of a variant and what it decides (shared vocabulary).
//! - [`targets`]: replica targets across the variants of one model (the capacity analyzer).
//! - [`mode`]: which analyzers decide.
//! - [`outputs`]: a decision mapped to the series to publish and the statuses to write.
//! - [`safety_net`]: what to emit when the analysis cannot run.
//! - [`cycle`]: one model's whole decision in a cycle, in every mode.
//! - [`queueing`]: the queueing model of a continuous-batching server.
//! - [`serving`]: what a variant's servers served over the last window, pooled.
//! - [`learner`]: online estimation of a variant's latency parameters.
//! - [`slo_capacity`]: the default analyzer: demand against learned per-replica capacity at
//!   a share of the latency objectives, cost-aware placement, stabilised scale-down.
//! - [`model_based`]: the model-based optimizer and its arbitration with the capacity analyzer.
//! - [`scale_to_zero`]: when a model may go to zero, and when the controller cannot tell.
//! - [`roles`]: prefill and decode variants, decided apart.
//! - [`scarcity`]: every model's wanted replicas fitted into a finite pool of accelerators.
//! - [`startup`]: how long a variant's replicas take to start, measured from its Deployment.

pub mod cycle;
pub mod decision;
pub mod learner;
pub mod mode;
pub mod model_based;
pub mod outputs;
pub mod queueing;
pub mod roles;
pub mod safety_net;
pub mod saturation;
pub mod scale_to_zero;
pub mod scaling_config;
pub mod scarcity;
pub mod serving;
pub mod slo_capacity;
pub mod startup;
pub mod targets;
pub mod thresholds;

pub use decision::{Action, FallbackSource, ModelDecision, VariantInput, VariantTarget};
pub use mode::{Analyzer, OperatingMode};
pub use safety_net::{Fallback, fallback_desired, safety_net_decision};
pub use saturation::{
    CapacityAnalysis, ReplicaAssessment, ReplicaSignals, analyze_capacity, assess_replica,
};
pub use scaling_config::{InvalidOverride, ModelOverride, ModelScalingConfig, ScalingConfig};
pub use targets::decide_capacity;
#[cfg(test)]
pub(crate) use targets::test_variant;
pub use thresholds::{ThresholdError, ThresholdOverrides, Thresholds};

/// Tolerance for comparing spare capacity with a trigger. Spare values are differences of
/// decimal fractions (0.8 - 0.7), so an exact comparison would flip on the last bit; a
/// billionth is far below anything a metric can resolve.
pub(crate) const EPSILON: f64 = 1e-9;
