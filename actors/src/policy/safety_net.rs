//! What a variant's desired count is when its model cannot be analyzed.

use serde::{Deserialize, Serialize};

use super::decision::{Action, FallbackSource, ModelDecision, VariantInput, VariantTarget};
use super::saturation::CapacityAnalysis;

/// A desired count chosen by the safety net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    pub desired: u32,
    pub source: FallbackSource,
}

/// Chooses the fallback for one variant. The decision log is preferred over the VA status because
/// it is written on every successful cycle, while the status may lag behind a failed write.
pub fn fallback_desired(
    last_good_from_log: Option<u32>,
    status_desired: Option<u32>,
    current_replicas: u32,
) -> Fallback {
    match last_good_from_log.or(status_desired) {
        Some(desired) => Fallback {
            desired,
            source: FallbackSource::PreviousDesired,
        },
        None => Fallback {
            desired: current_replicas,
            source: FallbackSource::CurrentReplicas,
        },
    }
}

/// The decision for a model whose analysis cannot run (metrics unreachable or unusable): every
/// variant holds its previous desired count (`previous_desired` already prefers the decision log
/// over the VA status), else its current count.
pub fn safety_net_decision(variants: &[VariantInput], why: &str) -> ModelDecision {
    ModelDecision {
        analysis: CapacityAnalysis {
            total_replicas: 0,
            non_saturated_replicas: 0,
            avg_spare_kv: 0.0,
            avg_spare_queue: 0.0,
            should_scale_up: false,
            scale_down_safe: false,
            reason: format!("analysis could not run: {why}"),
        },
        in_transition: false,
        safety_net: true,
        variants: hold_targets(variants),
    }
}

/// Every variant holds its previous desired count, else its current count.
pub(crate) fn hold_targets(variants: &[VariantInput]) -> Vec<VariantTarget> {
    variants
        .iter()
        .map(|v| {
            let f = fallback_desired(v.previous_desired, None, v.current_replicas);
            VariantTarget {
                name: v.name.clone(),
                accelerator: v.accelerator.clone(),
                current_replicas: v.current_replicas,
                saturated_replicas: Vec::new(),
                target: f.desired,
                action: Action::between(v.current_replicas, f.desired),
                reason: format!("safety net holds {} ({})", f.desired, f.source),
                fallback_source: Some(f.source),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_net_decision_holds_previous_else_current() {
        let v = |name: &str, current, previous| VariantInput {
            name: name.into(),
            cost: 10.0,
            accelerator: "A100".into(),
            current_replicas: current,
            ready_replicas: current,
            previous_desired: previous,
            replicas: Vec::new(),
        };
        let d = safety_net_decision(
            &[v("a", 2, Some(5)), v("b", 3, None)],
            "Prometheus unreachable",
        );
        assert!(d.safety_net);
        assert_eq!(d.variants[0].target, 5);
        assert_eq!(
            d.variants[0].fallback_source,
            Some(FallbackSource::PreviousDesired)
        );
        assert_eq!(d.variants[0].action, Action::ScaleUp);
        assert_eq!(d.variants[1].target, 3);
        assert_eq!(
            d.variants[1].fallback_source,
            Some(FallbackSource::CurrentReplicas)
        );
        assert!(d.analysis.reason.contains("Prometheus unreachable"));
    }

    #[test]
    fn log_wins_over_status() {
        let f = fallback_desired(Some(4), Some(2), 3);
        assert_eq!(f.desired, 4);
        assert_eq!(f.source, FallbackSource::PreviousDesired);
    }

    #[test]
    fn status_when_log_is_empty() {
        let f = fallback_desired(None, Some(2), 3);
        assert_eq!(f.desired, 2);
        assert_eq!(f.source, FallbackSource::PreviousDesired);
    }

    #[test]
    fn current_replicas_when_nothing_is_known() {
        let f = fallback_desired(None, None, 3);
        assert_eq!(f.desired, 3);
        assert_eq!(f.source, FallbackSource::CurrentReplicas);
        assert_eq!(f.source.to_string(), "current-replicas");
    }
}
