//! The vocabulary of a decision, shared by every analyzer and the safety net: what the policy
//! knows of a variant, and what it decides for it and for the model.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::saturation::{CapacityAnalysis, ReplicaSignals};

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

/// Everything the policy needs to know about one variant for one cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantInput {
    pub name: String,
    /// Cost of one replica.
    pub cost: f64,
    pub accelerator: String,
    /// Replicas of the Deployment (status, else spec).
    pub current_replicas: u32,
    /// Replicas that are ready; the rest are pending.
    pub ready_replicas: u32,
    /// The last desired count emitted for this variant, if any.
    pub previous_desired: Option<u32>,
    /// Signals of the live pods of the variant.
    pub replicas: Vec<ReplicaSignals>,
}

impl VariantInput {
    pub fn pending_replicas(&self) -> u32 {
        self.current_replicas.saturating_sub(self.ready_replicas)
    }
}

/// What a target means for the Deployment, compared with its current replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    ScaleUp,
    ScaleDown,
    NoChange,
}

impl Action {
    /// What moving from `current` to `target` is.
    pub fn between(current: u32, target: u32) -> Self {
        match target.cmp(&current) {
            Ordering::Greater => Self::ScaleUp,
            Ordering::Less => Self::ScaleDown,
            Ordering::Equal => Self::NoChange,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleUp => "scale-up",
            Self::ScaleDown => "scale-down",
            Self::NoChange => "no-change",
        }
    }
}

/// The decision for one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantTarget {
    pub name: String,
    pub accelerator: String,
    pub current_replicas: u32,
    /// Pods of this variant at or above a saturation threshold.
    pub saturated_replicas: Vec<String>,
    pub target: u32,
    pub action: Action,
    pub reason: String,
    /// Set when the safety net chose the target.
    pub fallback_source: Option<FallbackSource>,
}

/// The decision for one model in one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDecision {
    pub analysis: CapacityAnalysis,
    /// Some variant is still moving towards an earlier decision; every variant holds.
    pub in_transition: bool,
    /// No replica reported usable signals; targets are the safety-net fallbacks.
    pub safety_net: bool,
    pub variants: Vec<VariantTarget>,
}

impl ModelDecision {
    /// A short, fixed code for why desired counts changed: a metric label, never free text.
    pub fn cause(&self) -> &'static str {
        if self.safety_net {
            "safety-net"
        } else if self.in_transition {
            "transition"
        } else if self.analysis.has_no_signals() {
            "minimum-replicas"
        } else if self.analysis.should_scale_up {
            "saturation"
        } else if self.analysis.scale_down_safe {
            "spare-capacity"
        } else {
            "steady"
        }
    }
}
