//! What a decided cycle means for the world: the series to publish, the statuses to write, and
//! which desired counts changed (and why, as a short label). Pure: the supervisor hands over the
//! decision and what it knows of each variant; the effects then leave in one batch, in the order
//! log, publish, status.

use wva_storage::{Timestamp, VariantKey};

use super::cycle::CycleDecision;
use super::decision::{FallbackSource, VariantTarget};
use super::scaling_config::InvalidOverride;

/// A change of desired count, for the scaling counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingChange {
    /// `up` or `down`.
    pub direction: &'static str,
    /// A short, fixed reason code (never free text: it is a label).
    pub reason: &'static str,
}

/// Which life of a variant decided a value. A variant retired (its VA deleted, its Deployment
/// gone) and created again under the same name starts a new life, numbered after every life
/// begun before it in the process; the publisher never lets an ended life's values back (a cycle
/// still in flight when its variant was retired would otherwise bring back its series for good).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Life(pub u64);

impl Life {
    /// A life numbered after every one begun before it in this process.
    pub fn begin() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// One variant's published values.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub variant: VariantKey,
    /// Which life of the variant decided them (its supervisor's slot stamps it).
    pub life: Life,
    pub accelerator: String,
    pub desired: u32,
    pub current: u32,
    /// What the change is counted against: the previous desired count, else the replicas.
    pub baseline: u32,
    pub change: Option<ScalingChange>,
    /// The safety net chose the desired count (`wva_safety_net_active`).
    pub safety_net: bool,
    /// No series matched the variant's pods (`wva_metrics_missing`).
    pub metrics_missing: bool,
}

/// How the metrics of a variant stood in a cycle (the `MetricsAvailable` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsState {
    Found,
    /// No series for the variant's pods; the hint says where its pods' series went, or which
    /// `model_name` values do have series in the namespace (the usual cause: a label or model
    /// id that does not match, which would otherwise be a silent no-op).
    Missing {
        hint: Option<String>,
    },
    /// The variant's pods have series, but the newest sample is this many seconds old.
    Stale {
        newest_age_s: u64,
    },
    /// The query failed.
    PrometheusError(String),
}

impl MetricsState {
    /// The state of one variant: the read failed, or its pods reported, or they did not (stale
    /// when series exist outside the read window).
    pub fn of(
        prometheus_error: Option<&str>,
        reported: bool,
        stale_age_s: Option<u64>,
        missing_hint: impl FnOnce() -> Option<String>,
    ) -> Self {
        match (prometheus_error, reported, stale_age_s) {
            (Some(e), _, _) => Self::PrometheusError(e.to_string()),
            (None, true, _) => Self::Found,
            (None, false, Some(newest_age_s)) => Self::Stale { newest_age_s },
            (None, false, None) => Self::Missing {
                hint: missing_hint(),
            },
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing { .. })
    }
}

/// How the decision of a variant was made (the `OptimizationReady` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptimizationState {
    Succeeded,
    /// The safety net chose the count; `blind` says why when the model was held instead of
    /// going to zero because part of it could not be seen.
    SafetyNet {
        source: FallbackSource,
        blind: Option<String>,
    },
    /// Decided on the default thresholds because the model's override is invalid.
    InvalidConfiguration(String),
    /// Hybrid or model-only mode, but the model-based optimizer proposed nothing (why): the
    /// capacity analyzer decided alone.
    ModelAbstained(String),
    /// `slo-capacity` could not learn the capacity of some variants (which, and why): the
    /// saturation analysis decided them, in both directions (CONTRACT section 12).
    SaturationFallback(String),
}

impl OptimizationState {
    fn of(
        decided: &CycleDecision,
        fallback: Option<FallbackSource>,
        problems: &[&InvalidOverride],
    ) -> Self {
        let abstained = decided
            .model_based
            .as_ref()
            .filter(|m| m.proposal.variants.iter().all(|v| v.target.is_none()));
        match (fallback, problems.first(), abstained) {
            (Some(source), _, _) if decided.decision.safety_net => Self::SafetyNet {
                source,
                blind: decided.blind.clone(),
            },
            (_, Some(problem), _) => Self::InvalidConfiguration(problem.message.clone()),
            (_, _, Some(m)) => Self::ModelAbstained(m.proposal.reason.clone()),
            _ => match decided
                .slo_capacity
                .as_ref()
                .filter(|o| !o.fallback.is_empty())
            {
                Some(o) => Self::SaturationFallback(o.fallback.join("; ")),
                None => Self::Succeeded,
            },
        }
    }
}

/// How a variant stood against a finite accelerator pool in a cycle (the
/// `AcceleratorsAvailable` condition).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PoolState {
    /// Its accelerator is not limited (no pool configured, or not this type).
    #[default]
    Unlimited,
    /// The pool had room for what its model wanted.
    Fits,
    /// It got fewer replicas than its model wanted; why, naming who holds the pool.
    Cut(String),
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
        /// Whether a finite accelerator pool gave it what its model wanted.
        pool: PoolState,
    },
    /// The target Deployment does not exist (never did, or was deleted).
    TargetMissing {
        variant: VariantKey,
        at: Timestamp,
        deployment: String,
        /// True when it existed before: "no longer exists" rather than "not found".
        deleted: bool,
    },
    /// Deciding the variant's model failed this cycle (its supervisor panicked or hung): its
    /// count holds and a fresh supervisor takes over. A Warning Event on the VA says so.
    Faulted {
        variant: VariantKey,
        at: Timestamp,
        message: String,
    },
}

/// What the cycle knew of one variant besides the policy's input, in decision order.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantFacts {
    pub key: VariantKey,
    /// The desired count before this cycle (decision log or process, else VA status).
    pub previous_desired: Option<u32>,
    pub metrics: MetricsState,
}

/// The outputs of one model's cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleOutputs {
    pub published: Vec<Published>,
    /// Empty unless statuses were asked for.
    pub statuses: Vec<StatusUpdate>,
    /// Variants whose desired count changed.
    pub changed: usize,
}

/// Maps a model's decision to its outputs. `variants` are in the decision's order;
/// `statuses` says whether anyone writes statuses (the simulator does not).
pub fn cycle_outputs(
    at: Timestamp,
    decided: &CycleDecision,
    variants: &[VariantFacts],
    problems: &[&InvalidOverride],
    statuses: bool,
) -> CycleOutputs {
    let decision = &decided.decision;
    let cause = decided.cause();
    let mut out = CycleOutputs::default();
    for (facts, target) in variants.iter().zip(&decision.variants) {
        let change = scaling_change(facts.previous_desired, target, cause);
        out.changed += usize::from(change.is_some());
        if statuses {
            out.statuses.push(StatusUpdate::Decided {
                variant: facts.key.clone(),
                at,
                desired: target.target,
                previous_desired: facts.previous_desired,
                current: target.current_replicas,
                accelerator: target.accelerator.clone(),
                metrics: facts.metrics.clone(),
                optimization: OptimizationState::of(decided, target.fallback_source, problems),
                reason: target.reason.clone(),
                pool: PoolState::Unlimited,
            });
        }
        out.published.push(Published {
            variant: facts.key.clone(),
            life: Life::default(),
            accelerator: target.accelerator.clone(),
            desired: target.target,
            current: target.current_replicas,
            baseline: facts.previous_desired.unwrap_or(target.current_replicas),
            change,
            safety_net: decision.safety_net && target.fallback_source.is_some(),
            metrics_missing: facts.metrics.is_missing(),
        });
    }
    out
}

/// A change against the previous desired count (the current count when there is none).
fn scaling_change(
    previous_desired: Option<u32>,
    target: &VariantTarget,
    cause: &'static str,
) -> Option<ScalingChange> {
    ScalingChange::between(
        previous_desired.unwrap_or(target.current_replicas),
        target.target,
        cause,
    )
}

impl ScalingChange {
    /// The change from `baseline` to `desired`, if any, for `cause`.
    pub fn between(baseline: u32, desired: u32, cause: &'static str) -> Option<Self> {
        (desired != baseline).then_some(Self {
            direction: if desired > baseline { "up" } else { "down" },
            reason: cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Thresholds;
    use super::super::cycle::{CycleInputs, decide_cycle};
    use super::super::test_variant as variant;
    use super::*;

    fn facts(name: &str, previous: Option<u32>, metrics: MetricsState) -> VariantFacts {
        VariantFacts {
            key: VariantKey::new("ns", name),
            previous_desired: previous,
            metrics,
        }
    }

    fn decide(variants: &[super::super::VariantInput], error: Option<&str>) -> CycleDecision {
        decide_cycle(CycleInputs {
            metrics_error: error,
            ..CycleInputs::capacity(&Thresholds::default(), variants)
        })
    }

    #[test]
    fn a_scale_up_publishes_every_variant_and_counts_one_change() {
        let hot = [(0.76, 2.0), (0.75, 2.0)];
        let vs = [variant("cheap", 5.0, &hot), variant("dear", 20.0, &hot)];
        let decided = decide(&vs, None);
        let out = cycle_outputs(
            Timestamp(1),
            &decided,
            &[
                facts("cheap", None, MetricsState::Found),
                facts("dear", None, MetricsState::Found),
            ],
            &[],
            true,
        );
        assert_eq!(out.changed, 1);
        assert_eq!(out.published.len(), 2);
        assert_eq!(out.published[0].desired, 3);
        assert_eq!(
            out.published[0].change,
            Some(ScalingChange {
                direction: "up",
                reason: "saturation"
            })
        );
        assert_eq!(out.published[1].change, None);
        let StatusUpdate::Decided {
            optimization,
            previous_desired,
            ..
        } = &out.statuses[0]
        else {
            panic!("a decided status");
        };
        assert_eq!(*optimization, OptimizationState::Succeeded);
        assert_eq!(*previous_desired, None);
    }

    #[test]
    fn the_change_is_measured_against_the_previous_desired_count() {
        let mut v = variant("v", 5.0, &[(0.5, 1.0), (0.5, 1.0)]);
        v.previous_desired = Some(2);
        let decided = decide(std::slice::from_ref(&v), None);
        // Previously 4 was published (the Deployment never got there): now 2 is a change down.
        let out = cycle_outputs(
            Timestamp(1),
            &decided,
            &[facts("v", Some(4), MetricsState::Found)],
            &[],
            false,
        );
        assert_eq!(out.published[0].desired, 2);
        assert_eq!(
            out.published[0].change.as_ref().map(|c| c.direction),
            Some("down")
        );
        assert!(out.statuses.is_empty(), "no status port, no statuses");
    }

    #[test]
    fn the_safety_net_and_invalid_overrides_name_the_optimization_state() {
        let mut v = variant("v", 5.0, &[]);
        v.current_replicas = 2;
        v.previous_desired = Some(3);
        let decided = decide(std::slice::from_ref(&v), Some("Prometheus unreachable"));
        let problem = InvalidOverride {
            entry: "bad".into(),
            model_id: "m".into(),
            namespace: None,
            message: "kvCacheThreshold: expected 0..1".into(),
        };
        let out = cycle_outputs(
            Timestamp(1),
            &decided,
            &[facts(
                "v",
                Some(3),
                MetricsState::of(Some("Prometheus unreachable"), false, None, || None),
            )],
            &[&problem],
            true,
        );
        let StatusUpdate::Decided {
            optimization,
            metrics,
            desired,
            ..
        } = &out.statuses[0]
        else {
            panic!("a decided status");
        };
        assert_eq!(*desired, 3);
        assert_eq!(
            *optimization,
            OptimizationState::SafetyNet {
                source: FallbackSource::PreviousDesired,
                blind: None
            }
        );
        assert_eq!(
            *metrics,
            MetricsState::PrometheusError("Prometheus unreachable".into())
        );
        // Not on the safety net: the invalid override is what the condition says.
        let ok = decide(&[variant("v", 5.0, &[(0.5, 1.0)])], None);
        let out = cycle_outputs(
            Timestamp(1),
            &ok,
            &[facts("v", None, MetricsState::Found)],
            &[&problem],
            true,
        );
        assert!(matches!(
            &out.statuses[0],
            StatusUpdate::Decided { optimization: OptimizationState::InvalidConfiguration(m), .. } if m.contains("kvCacheThreshold")
        ));
    }

    #[test]
    fn metrics_state_prefers_the_error_then_the_pods_then_staleness() {
        assert_eq!(
            MetricsState::of(Some("down"), true, Some(3), || None),
            MetricsState::PrometheusError("down".into())
        );
        assert_eq!(
            MetricsState::of(None, true, Some(3), || None),
            MetricsState::Found
        );
        assert_eq!(
            MetricsState::of(None, false, Some(400), || None),
            MetricsState::Stale { newest_age_s: 400 }
        );
        assert_eq!(
            MetricsState::of(None, false, None, || Some("h".into())),
            MetricsState::Missing {
                hint: Some("h".into())
            }
        );
    }
}
