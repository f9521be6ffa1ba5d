//! VA status and Events, pure: what the actors decided becomes the four conditions and the
//! `desiredOptimizedAlloc` of a VA (typed, as `crd::VariantAutoscalingStatus`), and the Events a
//! user sees in `kubectl describe`. `status_writer` writes them.

use std::collections::HashMap;

use serde_json::{Value, json};
use wva_actors::messages::{MetricsState, OptimizationState, StatusUpdate, Timestamp};
use wva_actors::policy::outputs::PoolState;

use super::owners::OwnerRef;
use crate::crd::{Condition, CurrentAlloc, OptimizedAlloc, VariantAutoscalingStatus};

/// Field manager of the status writes.
pub const STATUS_FIELD_MANAGER: &str = "wva-controller-status";

/// One condition as computed, before transition times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondSpec {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

fn cond(type_: &'static str, status: bool, reason: &str, message: impl Into<String>) -> CondSpec {
    CondSpec {
        type_,
        status,
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// What a VA's status says, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct VaStatus {
    /// `None`: `desiredOptimizedAlloc: {}` (no target).
    pub desired: Option<(u32, String, Timestamp)>,
    pub current: Option<(u32, String)>,
    pub conditions: Vec<CondSpec>,
}

/// The summary condition: True only when the three others are; else the first failing one's
/// reason, with `DeploymentNotFound` for a missing target.
fn ready(conditions: &[CondSpec], target_missing: Option<String>) -> CondSpec {
    if let Some(message) = target_missing {
        return cond("Ready", false, "DeploymentNotFound", message);
    }
    match conditions.iter().find(|c| !c.status) {
        None => cond("Ready", true, "Ready", "the variant is being autoscaled"),
        Some(c) => cond("Ready", false, &c.reason, c.message.clone()),
    }
}

/// The status of a VA from the decisions of its variants (one, or several in discovery mode:
/// desired and current add up) and its configuration problem, if any.
pub fn decided_status(decided: &[&StatusUpdate], problem: Option<&str>) -> Option<VaStatus> {
    let mut desired = 0;
    let mut current = 0;
    let mut accelerators: Vec<&str> = Vec::new();
    let mut at = Timestamp(0);
    let mut metrics = None;
    let mut optimization = None;
    for update in decided {
        let StatusUpdate::Decided {
            desired: d,
            current: c,
            accelerator,
            metrics: m,
            optimization: o,
            at: t,
            ..
        } = update
        else {
            continue;
        };
        desired += d;
        current += c;
        if !accelerators.contains(&accelerator.as_str()) {
            accelerators.push(accelerator);
        }
        at = at.max(*t);
        if metrics.is_none() || *m != MetricsState::Found {
            metrics = Some(m.clone());
        }
        if optimization.is_none() || *o != OptimizationState::Succeeded {
            optimization = Some(o.clone());
        }
    }
    let (metrics, optimization) = (metrics?, optimization?);
    let accelerator = accelerators.join(",");
    let metrics_cond = match &metrics {
        MetricsState::Found => cond(
            "MetricsAvailable",
            true,
            "MetricsFound",
            "vLLM metrics are available",
        ),
        MetricsState::Missing { hint } => cond(
            "MetricsAvailable",
            false,
            "MetricsMissing",
            missing_message(hint.as_deref()),
        ),
        MetricsState::Stale { newest_age_s } => cond(
            "MetricsAvailable",
            false,
            "MetricsStale",
            format!("the newest vLLM sample is {newest_age_s}s old"),
        ),
        // Anyone who can read the VA reads this: the error's words (URLs, Prometheus's own
        // text) stay in the controller's log.
        MetricsState::PrometheusError(_) => cond(
            "MetricsAvailable",
            false,
            "PrometheusError",
            "the vLLM metrics could not be read from Prometheus; the controller's log has the error",
        ),
    };
    let optimization_cond = match (&optimization, problem) {
        (
            OptimizationState::SafetyNet {
                source,
                blind: None,
            },
            _,
        ) => cond(
            "OptimizationReady",
            false,
            "SafetyNetActive",
            format!("analysis could not run; emitting {desired} replicas ({source})"),
        ),
        // The words are the policy's own (counts of replicas), never an error's text.
        (
            OptimizationState::SafetyNet {
                source,
                blind: Some(why),
            },
            _,
        ) => cond(
            "OptimizationReady",
            false,
            "SafetyNetActive",
            format!("not scaled to zero: {why}; emitting {desired} replicas ({source})"),
        ),
        (OptimizationState::InvalidConfiguration(m), _) => cond(
            "OptimizationReady",
            false,
            "InvalidConfiguration",
            m.clone(),
        ),
        (
            OptimizationState::Succeeded
            | OptimizationState::ModelAbstained(_)
            | OptimizationState::SaturationFallback(_),
            Some(p),
        ) => cond("OptimizationReady", false, "InvalidConfiguration", p),
        // Decided, but not the way the mode promises: say why the optimizer stayed out.
        (OptimizationState::ModelAbstained(why), None) => cond(
            "OptimizationReady",
            true,
            "ModelBasedAbstained",
            format!(
                "desired {desired} replicas on {accelerator} from the capacity analyzer alone; the model-based optimizer proposed nothing: {why}"
            ),
        ),
        // Decided, by the saturation analysis where the default could not size: say which.
        (OptimizationState::SaturationFallback(which), None) => cond(
            "OptimizationReady",
            true,
            "SaturationFallback",
            format!(
                "desired {desired} replicas on {accelerator}; slo-capacity cannot size {which}, so the saturation analysis decides it, up and down"
            ),
        ),
        (OptimizationState::Succeeded, None) => cond(
            "OptimizationReady",
            true,
            "OptimizationSucceeded",
            format!("desired {desired} replicas on {accelerator}"),
        ),
    };
    let mut conditions = vec![
        cond(
            "TargetResolved",
            true,
            "TargetFound",
            "the target Deployment exists",
        ),
        metrics_cond,
        optimization_cond,
    ];
    conditions.push(ready(&conditions, None));
    // Not part of Ready: a variant cut short by the pool is still being autoscaled.
    conditions.extend(pool_condition(pool_of(decided)));
    Some(VaStatus {
        desired: Some((desired, accelerator.clone(), at)),
        current: Some((current, accelerator)),
        conditions,
    })
}

/// How the VA's variants stood against the pool: a cut says most, then a pool with room.
fn pool_of(decided: &[&StatusUpdate]) -> PoolState {
    let mut pool = PoolState::Unlimited;
    for update in decided {
        if let StatusUpdate::Decided { pool: p, .. } = update {
            match (&pool, p) {
                (PoolState::Cut(_), _) | (_, PoolState::Unlimited) => {}
                _ => pool = p.clone(),
            }
        }
    }
    pool
}

/// `AcceleratorsAvailable`, where the variant's accelerator type is limited.
fn pool_condition(pool: PoolState) -> Option<CondSpec> {
    match pool {
        PoolState::Unlimited => None,
        PoolState::Fits => Some(cond(
            "AcceleratorsAvailable",
            true,
            "PoolFits",
            "the accelerator pool has room for the replicas the model wants",
        )),
        PoolState::Cut(why) => Some(cond("AcceleratorsAvailable", false, "PoolExhausted", why)),
    }
}

/// The status of a VA whose target is missing: never existed, deleted, or (discovery) none
/// matches.
pub fn missing_target_status(message: &str, problem: Option<&str>) -> VaStatus {
    let mut conditions = vec![
        cond("TargetResolved", false, "TargetNotFound", message),
        cond(
            "MetricsAvailable",
            false,
            "MetricsMissing",
            "no target Deployment",
        ),
        match problem {
            Some(p) => cond("OptimizationReady", false, "InvalidConfiguration", p),
            None => cond(
                "OptimizationReady",
                false,
                "OptimizationFailed",
                "no target Deployment",
            ),
        },
    ];
    conditions.push(ready(&conditions, Some(message.to_string())));
    VaStatus {
        desired: None,
        current: None,
        conditions,
    }
}

/// The status of a VA that cannot be acted on at all (its target kind is wrong, say).
pub fn invalid_status(problem: &str) -> VaStatus {
    let mut conditions = vec![
        cond(
            "TargetResolved",
            false,
            "TargetNotFound",
            "the target cannot be resolved",
        ),
        cond(
            "MetricsAvailable",
            false,
            "MetricsMissing",
            "not read for an invalid VA",
        ),
        cond("OptimizationReady", false, "InvalidConfiguration", problem),
    ];
    conditions.push(ready(&conditions, None));
    VaStatus {
        desired: None,
        current: None,
        conditions,
    }
}

/// Transition times per condition type, kept across writes so that an unchanged condition
/// keeps its time.
pub type Transitions = HashMap<&'static str, (bool, String)>;

/// The typed status of a VA. A condition keeps its transition time unless its status changed.
pub fn typed_status(
    va: &OwnerRef,
    status: &VaStatus,
    transitions: &mut Transitions,
    now: &str,
) -> VariantAutoscalingStatus {
    let conditions = status
        .conditions
        .iter()
        .map(|c| {
            let time = match transitions.get(c.type_) {
                Some((s, t)) if *s == c.status => t.clone(),
                _ => {
                    transitions.insert(c.type_, (c.status, now.to_string()));
                    now.to_string()
                }
            };
            Condition {
                type_: c.type_.to_string(),
                status: if c.status { "True" } else { "False" }.to_string(),
                reason: c.reason.clone(),
                message: truncate(&c.message, 1024),
                last_transition_time: Some(time),
                observed_generation: va.generation,
            }
        })
        .collect();
    let desired_optimized_alloc = match &status.desired {
        Some((n, acc, at)) => OptimizedAlloc {
            num_replicas: Some(count(*n)),
            accelerator: Some(acc.clone()),
            last_run_time: Some(crate::timefmt::format_time(*at)),
        },
        None => OptimizedAlloc::default(),
    };
    VariantAutoscalingStatus {
        desired_optimized_alloc,
        current_alloc: status.current.as_ref().map(|(n, acc)| CurrentAlloc {
            num_replicas: count(*n),
            accelerator: Some(acc.clone()),
        }),
        conditions,
    }
}

/// A replica count as the API's int32.
fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The server-side-apply patch of a VA's status subresource.
pub fn apply_patch(va: &OwnerRef, status: &VariantAutoscalingStatus) -> Value {
    json!({
        "apiVersion": "llmd.ai/v1alpha1",
        "kind": "VariantAutoscaling",
        "metadata": {"name": va.name, "namespace": va.namespace},
        "status": status,
    })
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// An Event to publish about a VA (or a ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl EventSpec {
    pub fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            note: note.into(),
        }
    }
}

/// Why a variant has no metrics, with where its series are when that is known.
fn missing_message(hint: Option<&str>) -> String {
    let base = "no vLLM series for the live pods of the target Deployment";
    match hint {
        Some(h) => format!("{base}; {h}"),
        None => format!("{base}, nor for any model in its namespace"),
    }
}

/// The states a variant's last decided update was in, for the Warning Events that fire when a
/// variant enters one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entered {
    pub safety_net: bool,
    pub metrics_missing: bool,
    pub pool_cut: bool,
}

impl Entered {
    pub fn of(update: &StatusUpdate) -> Self {
        match update {
            StatusUpdate::Decided {
                optimization,
                metrics,
                pool,
                ..
            } => Self {
                safety_net: matches!(optimization, OptimizationState::SafetyNet { .. }),
                metrics_missing: metrics.is_missing(),
                pool_cut: matches!(pool, PoolState::Cut(_)),
            },
            StatusUpdate::TargetMissing { .. } | StatusUpdate::Faulted { .. } => Self::default(),
        }
    }
}

/// Events for a decided update: a change of desired count, and entering the safety net, the
/// missing-metrics state (the one a mistyped label or model id leads to, so it is not silent)
/// or a cut by the accelerator pool (the one place an annotated HPA or ScaledObject, which has
/// no status of ours, hears of it).
pub fn decision_events(update: &StatusUpdate, was: Entered) -> Vec<EventSpec> {
    let StatusUpdate::Decided {
        variant,
        desired,
        previous_desired,
        optimization,
        metrics,
        reason,
        pool,
        ..
    } = update
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(previous) = previous_desired
        && previous != desired
    {
        out.push(EventSpec {
            warning: false,
            reason: if desired > previous {
                "ScaledUp"
            } else {
                "ScaledDown"
            },
            note: format!(
                "{}: desired replicas {previous} -> {desired} ({reason})",
                variant.name
            ),
        });
    }
    if let MetricsState::Missing { hint } = metrics
        && !was.metrics_missing
    {
        out.push(EventSpec::warning(
            "MetricsMissing",
            format!("{}: {}", variant.name, missing_message(hint.as_deref())),
        ));
    }
    if let PoolState::Cut(why) = pool
        && !was.pool_cut
    {
        out.push(EventSpec::warning(
            "PoolExhausted",
            format!("{}: {why}", variant.name),
        ));
    }
    if let OptimizationState::SafetyNet { source, .. } = optimization
        && !was.safety_net
    {
        out.push(EventSpec::warning(
            "SafetyNetActive",
            format!(
                "{}: analysis could not run ({reason}); emitting {desired} replicas from {source}",
                variant.name
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wva_actors::messages::VariantKey;
    use wva_actors::policy::FallbackSource;

    fn decided(
        desired: u32,
        previous: Option<u32>,
        metrics: MetricsState,
        optimization: OptimizationState,
    ) -> StatusUpdate {
        StatusUpdate::Decided {
            variant: VariantKey::new("ns", "va"),
            at: Timestamp(1_700_000_000_000),
            desired,
            previous_desired: previous,
            current: 2,
            accelerator: "H100".into(),
            metrics,
            optimization,
            reason: "kv-saturated".into(),
            pool: PoolState::Unlimited,
        }
    }

    fn by_type<'a>(s: &'a VaStatus, t: &str) -> &'a CondSpec {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn a_cut_by_the_pool_is_a_condition_and_a_warning_once_but_not_unready() {
        let mut cut = decided(
            2,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        if let StatusUpdate::Decided { pool, .. } = &mut cut {
            *pool = PoolState::Cut("wanted 3 replicas, got 2: the H100 pool".into());
        }
        let s = decided_status(&[&cut], None).expect("status");
        let c = by_type(&s, "AcceleratorsAvailable");
        assert_eq!((c.status, c.reason.as_str()), (false, "PoolExhausted"));
        assert!(c.message.contains("wanted 3 replicas, got 2"));
        assert!(
            by_type(&s, "Ready").status,
            "a cut variant is still autoscaled"
        );
        let events = decision_events(&cut, Entered::default());
        assert!(
            events.iter().any(|e| e.warning
                && e.reason == "PoolExhausted"
                && e.note.contains("va: wanted 3")),
            "{events:?}"
        );
        // Said once on entering, not every cycle.
        assert!(decision_events(&cut, Entered::of(&cut)).is_empty());
        // Unlimited: no condition at all.
        let free = decided(
            2,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        let s = decided_status(&[&free], None).expect("status");
        assert!(
            s.conditions
                .iter()
                .all(|c| c.type_ != "AcceleratorsAvailable")
        );
    }

    #[test]
    fn ready_only_when_all_three_are_true_else_the_first_failing_reason() {
        let ok = decided(
            3,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        let s = decided_status(&[&ok], None).expect("status");
        assert!(by_type(&s, "Ready").status);
        assert_eq!(s.desired.as_ref().map(|d| d.0), Some(3));

        let stale = decided(
            2,
            None,
            MetricsState::Stale { newest_age_s: 400 },
            OptimizationState::SafetyNet {
                source: FallbackSource::PreviousDesired,
                blind: None,
            },
        );
        let s = decided_status(&[&stale], None).expect("status");
        assert_eq!(by_type(&s, "MetricsAvailable").reason, "MetricsStale");
        assert_eq!(by_type(&s, "OptimizationReady").reason, "SafetyNetActive");
        let r = by_type(&s, "Ready");
        assert!(!r.status);
        assert_eq!(r.reason, "MetricsStale");

        let s =
            decided_status(&[&ok], Some("spec.variantCost: expected a decimal")).expect("status");
        assert_eq!(
            by_type(&s, "OptimizationReady").reason,
            "InvalidConfiguration"
        );
        assert_eq!(by_type(&s, "Ready").reason, "InvalidConfiguration");
    }

    #[test]
    fn missing_metrics_say_where_the_series_are_once_on_entering() {
        let missing = decided(
            2,
            Some(2),
            MetricsState::Missing {
                hint: Some(
                    "its pods report model_name \"meta/llama\" while the model id is \"llama\""
                        .into(),
                ),
            },
            OptimizationState::Succeeded,
        );
        let s = decided_status(&[&missing], None).expect("status");
        let c = by_type(&s, "MetricsAvailable");
        assert_eq!((c.status, c.reason.as_str()), (false, "MetricsMissing"));
        assert!(c.message.contains("\"meta/llama\""), "{}", c.message);
        let events = decision_events(&missing, Entered::default());
        assert_eq!(events.len(), 1);
        assert!(events[0].warning);
        assert_eq!(events[0].reason, "MetricsMissing");
        assert!(
            events[0].note.contains("model id is \"llama\""),
            "{}",
            events[0].note
        );
        assert!(decision_events(&missing, Entered::of(&missing)).is_empty());
        let nothing = decided(
            2,
            Some(2),
            MetricsState::Missing { hint: None },
            OptimizationState::Succeeded,
        );
        let s = decided_status(&[&nothing], None).expect("status");
        assert!(
            by_type(&s, "MetricsAvailable")
                .message
                .contains("nor for any model in its namespace")
        );
    }

    #[test]
    fn an_optimizer_that_abstains_is_said_in_the_condition() {
        let learning = decided(
            3,
            Some(3),
            MetricsState::Found,
            OptimizationState::ModelAbstained(
                "learning latency parameters of v (2/5 observations)".into(),
            ),
        );
        let s = decided_status(&[&learning], None).expect("status");
        let c = by_type(&s, "OptimizationReady");
        assert!(c.status, "a decision was made");
        assert_eq!(c.reason, "ModelBasedAbstained");
        assert!(c.message.contains("2/5 observations"), "{}", c.message);
        assert!(
            c.message.contains("capacity analyzer alone"),
            "{}",
            c.message
        );
    }

    #[test]
    fn a_saturation_fallback_is_said_in_the_condition() {
        let blind = decided(
            5,
            Some(6),
            MetricsState::Found,
            OptimizationState::SaturationFallback("v (learning its latency (0/4 windows))".into()),
        );
        let s = decided_status(&[&blind], None).expect("status");
        let c = by_type(&s, "OptimizationReady");
        assert!(c.status, "a decision was made");
        assert_eq!(c.reason, "SaturationFallback");
        assert!(c.message.contains("0/4 windows"), "{}", c.message);
        assert!(c.message.contains("up and down"), "{}", c.message);
    }

    #[test]
    fn a_missing_target_reads_deployment_not_found_and_clears_the_desired_allocation() {
        let s = missing_target_status("Target deployment 'x' no longer exists", None);
        let r = by_type(&s, "Ready");
        assert_eq!((r.status, r.reason.as_str()), (false, "DeploymentNotFound"));
        assert_eq!(r.message, "Target deployment 'x' no longer exists");
        let va = OwnerRef {
            kind: super::super::owners::OwnerKind::VariantAutoscaling,
            namespace: "ns".into(),
            name: "va".into(),
            uid: None,
            generation: Some(4),
        };
        let typed = typed_status(&va, &s, &mut Transitions::new(), "2026-01-01T00:00:00Z");
        let body = apply_patch(&va, &typed);
        assert_eq!(body["status"]["desiredOptimizedAlloc"], json!({}));
        assert!(
            body["status"]["conditions"]
                .as_array()
                .expect("list")
                .iter()
                .all(|c| c["observedGeneration"] == 4)
        );
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let va = OwnerRef {
            kind: super::super::owners::OwnerKind::VariantAutoscaling,
            namespace: "ns".into(),
            name: "va".into(),
            uid: None,
            generation: Some(1),
        };
        let mut t = Transitions::new();
        let ok = decided(3, None, MetricsState::Found, OptimizationState::Succeeded);
        let s = decided_status(&[&ok], None).expect("status");
        typed_status(&va, &s, &mut t, "T1");
        let body = apply_patch(&va, &typed_status(&va, &s, &mut t, "T2"));
        assert_eq!(body["status"]["conditions"][0]["lastTransitionTime"], "T1");
        let err = decided(
            3,
            None,
            MetricsState::PrometheusError("down".into()),
            OptimizationState::SafetyNet {
                source: FallbackSource::CurrentReplicas,
                blind: None,
            },
        );
        let s = decided_status(&[&err], None).expect("status");
        let body = apply_patch(&va, &typed_status(&va, &s, &mut t, "T3"));
        assert_eq!(
            body["status"]["conditions"][0]["lastTransitionTime"], "T1",
            "TargetResolved did not change"
        );
        assert_eq!(body["status"]["conditions"][1]["lastTransitionTime"], "T3");
    }

    #[test]
    fn events_for_changes_of_desired_and_for_entering_the_safety_net() {
        let up = decided(
            4,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        let e = decision_events(&up, Entered::default());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].reason, "ScaledUp");
        assert!(e[0].note.contains("2 -> 4 (kv-saturated)"), "{}", e[0].note);
        let same = decided(
            2,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        assert!(decision_events(&same, Entered::default()).is_empty());
        let net = decided(
            2,
            Some(2),
            MetricsState::PrometheusError("x".into()),
            OptimizationState::SafetyNet {
                source: FallbackSource::PreviousDesired,
                blind: None,
            },
        );
        assert_eq!(
            decision_events(&net, Entered::default())[0].reason,
            "SafetyNetActive"
        );
        assert!(
            decision_events(&net, Entered::of(&net)).is_empty(),
            "only on entering"
        );
    }

    #[test]
    fn discovered_variants_add_up_in_their_va() {
        let a = decided(3, None, MetricsState::Found, OptimizationState::Succeeded);
        let mut b = decided(
            1,
            None,
            MetricsState::Missing { hint: None },
            OptimizationState::Succeeded,
        );
        if let StatusUpdate::Decided { accelerator, .. } = &mut b {
            *accelerator = "A100".into();
        }
        let s = decided_status(&[&a, &b], None).expect("status");
        assert_eq!(
            s.desired.as_ref().map(|d| (d.0, d.1.as_str())),
            Some((4, "H100,A100"))
        );
        assert_eq!(by_type(&s, "MetricsAvailable").reason, "MetricsMissing");
    }
}
