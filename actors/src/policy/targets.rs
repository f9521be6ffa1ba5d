//! Replica targets across the variants of one model, from the pooled capacity analysis.

use std::cmp::Ordering;

use super::decision::{Action, FallbackSource, ModelDecision, VariantInput, VariantTarget};
use super::safety_net::hold_targets;
#[cfg(test)]
use super::saturation::ReplicaSignals;
use super::saturation::{ReplicaAssessment, SpareCapacity, analyze_capacity, assess_replica};
use super::thresholds::Thresholds;

/// A rule that gives one variant its target, the reason, and the fallback source if any.
type ChooseTarget<'a> = &'a dyn Fn(&VariantInput) -> (u32, String, Option<FallbackSource>);

/// Replicas of a variant that report at least one saturation signal.
fn reporting_replicas(v: &VariantInput, t: &Thresholds) -> u32 {
    v.replicas
        .iter()
        .filter(|r| assess_replica(t, r) != ReplicaAssessment::NoSignals)
        .count() as u32
}

/// Why the variant is in transition, if it is: the controller asked for a count the
/// Deployment has not reached yet, or not every replica reports metrics yet. A scale-down still
/// pending while the model needs more replicas is not waited for: holding it would hold a
/// saturated model (and a scaler whose minimum is above it would hold it for good).
fn transition(v: &VariantInput, t: &Thresholds, scale_up_needed: bool) -> Option<String> {
    if let Some(desired) = v
        .previous_desired
        .filter(|&d| d != v.current_replicas)
        .filter(|&d| !(scale_up_needed && d < v.current_replicas))
    {
        return Some(format!(
            "{} has {} replicas, previous desired is {}",
            v.name, v.current_replicas, desired
        ));
    }
    let reporting = reporting_replicas(v, t);
    (reporting != v.current_replicas).then(|| {
        format!(
            "{} has {} replicas, {} report metrics",
            v.name, v.current_replicas, reporting
        )
    })
}

/// Replicas exist but none reports a usable signal: nothing to decide from, for any analyzer
/// (the safety net holds the last decision).
pub fn nothing_measured(t: &Thresholds, variants: &[VariantInput]) -> bool {
    variants.iter().any(|v| v.current_replicas > 0)
        && variants
            .iter()
            .flat_map(|v| v.replicas.iter())
            .all(|r| assess_replica(t, r) == ReplicaAssessment::NoSignals)
}

/// Runs the capacity policy over all variants of one model.
pub fn decide_capacity(t: &Thresholds, variants: &[VariantInput]) -> ModelDecision {
    let analysis = analyze_capacity(t, variants.iter().flat_map(|v| v.replicas.iter()));
    let targets = |f: ChooseTarget<'_>| {
        variants
            .iter()
            .map(|v| {
                let (target, reason, fallback_source) = f(v);
                VariantTarget {
                    name: v.name.clone(),
                    accelerator: v.accelerator.clone(),
                    current_replicas: v.current_replicas,
                    saturated_replicas: saturated_pods(t, v),
                    target,
                    action: Action::between(v.current_replicas, target),
                    reason,
                    fallback_source,
                }
            })
            .collect::<Vec<_>>()
    };
    let decision = |in_transition, safety_net, variants| ModelDecision {
        analysis: analysis.clone(),
        in_transition,
        safety_net,
        variants,
    };

    let all_idle = variants.iter().all(|v| v.current_replicas == 0);
    let transitions: Vec<String> = variants
        .iter()
        .filter_map(|v| transition(v, t, analysis.should_scale_up))
        .collect();

    // Replicas exist but none can be measured: nothing to decide from, hold the last decision.
    if nothing_measured(t, variants) {
        return decision(!transitions.is_empty(), true, hold_targets(variants));
    }

    if !transitions.is_empty() {
        let why = transitions.join("; ");
        let vs = targets(&|v| {
            let hold = v.previous_desired.unwrap_or(v.current_replicas);
            (
                hold,
                format!("model in transition ({why}); holding {hold}"),
                None,
            )
        });
        return decision(true, false, vs);
    }

    if all_idle {
        let mut vs = targets(&|_| (0, "no replicas".to_string(), None));
        if let Some(i) = cheapest(variants) {
            vs[i].target = 1;
            vs[i].action = Action::ScaleUp;
            vs[i].reason =
                "no variant has replicas; the cheapest keeps the model at one replica".into();
        }
        return decision(false, false, vs);
    }

    // Per-variant reasons say what happened to the variant; the model-level why is in the
    // analysis (recorded once, not once per variant).
    let mut vs = targets(&|v| (reporting_replicas(v, t), "no change".to_string(), None));
    let spare: Vec<f64> = variants
        .iter()
        .map(|v| SpareCapacity::of(t, &v.replicas).avg_spare_kv)
        .collect();

    if analysis.should_scale_up {
        let pick = (0..variants.len())
            .filter(|&i| variants[i].current_replicas >= 1 && variants[i].pending_replicas() == 0)
            .min_by(|&a, &b| {
                cost_cmp(&variants[a], &variants[b])
                    .then(spare[b].total_cmp(&spare[a]))
                    .then(variants[a].name.cmp(&variants[b].name))
            });
        match pick {
            Some(i) => {
                for (j, v) in vs.iter_mut().enumerate() {
                    if j != i {
                        v.reason = format!("scale-up goes to {}", variants[i].name);
                    }
                }
                vs[i].target += 1;
                vs[i].reason = format!(
                    "scale-up: cheapest variant without pending replicas (cost {})",
                    variants[i].cost
                );
            }
            None => {
                for v in vs.iter_mut() {
                    v.reason =
                        "scale-up needed, but every active variant has pending replicas: waiting for them"
                            .to_string();
                }
            }
        }
    } else if analysis.scale_down_safe {
        let pick = (0..variants.len())
            .filter(|&i| vs[i].target > 1)
            .min_by(|&a, &b| {
                cost_cmp(&variants[b], &variants[a])
                    .then(spare[b].total_cmp(&spare[a]))
                    .then(variants[b].name.cmp(&variants[a].name))
            });
        if let Some(i) = pick {
            for (j, v) in vs.iter_mut().enumerate() {
                if j != i {
                    v.reason = format!("scale-down comes from {}", variants[i].name);
                }
            }
            vs[i].target -= 1;
            vs[i].reason = format!(
                "scale-down: most expensive variant above one replica (cost {})",
                variants[i].cost
            );
        } else {
            for v in vs.iter_mut() {
                v.reason = "no change: scale-down would be safe, but every variant is already at one replica, the least the capacity analyzer keeps".into();
            }
        }
    }
    for (v, input) in vs.iter_mut().zip(variants) {
        v.action = Action::between(input.current_replicas, v.target);
    }
    decision(false, false, vs)
}

fn saturated_pods(t: &Thresholds, v: &VariantInput) -> Vec<String> {
    v.replicas
        .iter()
        .filter(|r| assess_replica(t, r) == ReplicaAssessment::Saturated)
        .map(|r| r.pod.clone())
        .collect()
}

fn cost_cmp(a: &VariantInput, b: &VariantInput) -> Ordering {
    a.cost.total_cmp(&b.cost)
}

/// The cheapest variant, ties broken by the smallest name.
fn cheapest(variants: &[VariantInput]) -> Option<usize> {
    (0..variants.len()).min_by(|&a, &b| {
        cost_cmp(&variants[a], &variants[b]).then(variants[a].name.cmp(&variants[b].name))
    })
}

/// A variant whose current replicas all report (kv, queue), for the policy's tests.
#[cfg(test)]
pub(crate) fn test_variant(name: &str, cost: f64, signals: &[(f64, f64)]) -> VariantInput {
    VariantInput {
        name: name.into(),
        cost,
        accelerator: "A100".into(),
        current_replicas: signals.len() as u32,
        ready_replicas: signals.len() as u32,
        previous_desired: None,
        replicas: signals
            .iter()
            .enumerate()
            .map(|(i, &(kv, q))| ReplicaSignals {
                pod: format!("{name}-{i}"),
                kv_cache_usage: Some(kv),
                queue_length: Some(q),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_variant as variant;
    use super::*;

    fn targets(d: &ModelDecision) -> Vec<(&str, u32)> {
        d.variants
            .iter()
            .map(|v| (v.name.as_str(), v.target))
            .collect()
    }

    const HOT: [(f64, f64); 2] = [(0.75, 2.0), (0.76, 2.0)];
    const COLD: [(f64, f64); 2] = [(0.10, 0.0), (0.15, 0.0)];

    #[test]
    fn scale_up_goes_to_the_cheapest_variant() {
        let vs = [
            variant("expensive", 20.0, &HOT),
            variant("cheap", 5.0, &HOT),
            variant("medium", 15.0, &HOT),
        ];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert!(d.analysis.should_scale_up);
        assert_eq!(targets(&d), [("expensive", 2), ("cheap", 3), ("medium", 2)]);
        assert_eq!(d.variants[1].action, Action::ScaleUp);
        assert_eq!(d.variants[0].action, Action::NoChange);
    }

    #[test]
    fn scale_down_comes_from_the_most_expensive_variant() {
        let vs = [
            variant("expensive", 20.0, &COLD),
            variant("cheap", 5.0, &COLD),
            variant("medium", 15.0, &COLD),
        ];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert!(d.analysis.scale_down_safe);
        assert_eq!(targets(&d), [("expensive", 1), ("cheap", 2), ("medium", 2)]);
        assert_eq!(d.variants[0].action, Action::ScaleDown);
    }

    #[test]
    fn scale_down_skips_variants_at_one_replica() {
        let vs = [
            variant("expensive", 20.0, &[(0.1, 0.0)]),
            variant("cheap", 5.0, &COLD),
        ];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert!(d.analysis.scale_down_safe);
        assert_eq!(targets(&d), [("expensive", 1), ("cheap", 1)]);
    }

    /// Issue 18: a model idling at the minimum says why nothing moves.
    #[test]
    fn every_variant_at_one_says_so() {
        let vs = [
            variant("expensive", 20.0, &[(0.1, 0.0)]),
            variant("cheap", 5.0, &[(0.1, 0.0)]),
        ];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert!(d.analysis.scale_down_safe);
        assert_eq!(targets(&d), [("expensive", 1), ("cheap", 1)]);
        for v in &d.variants {
            assert!(
                v.reason.contains("every variant is already at one replica"),
                "{}",
                v.reason
            );
        }
    }

    #[test]
    fn scale_up_ties_prefer_more_spare_then_smallest_name() {
        // Same cost; "b" has more spare KV, so it wins over "a".
        let vs = [
            variant("a", 10.0, &[(0.75, 2.0), (0.76, 2.0)]),
            variant("b", 10.0, &[(0.70, 2.0), (0.72, 2.0)]),
        ];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert_eq!(targets(&d), [("a", 2), ("b", 3)]);
        // Same cost, same spare: the smallest name.
        let vs = [variant("b", 10.0, &HOT), variant("a", 10.0, &HOT)];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert_eq!(targets(&d), [("b", 2), ("a", 3)]);
    }

    #[test]
    fn scale_down_ties_prefer_more_spare_then_largest_name() {
        let vs = [
            variant("a", 10.0, &[(0.05, 0.0), (0.05, 0.0)]),
            variant("b", 10.0, &[(0.20, 0.0), (0.20, 0.0)]),
        ];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert_eq!(targets(&d), [("a", 1), ("b", 2)]);
        let vs = [variant("a", 10.0, &COLD), variant("b", 10.0, &COLD)];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert_eq!(targets(&d), [("a", 2), ("b", 1)]);
    }

    #[test]
    fn scale_up_skips_variants_with_pending_replicas() {
        let mut cheap = variant("cheap", 5.0, &HOT);
        cheap.ready_replicas = 1;
        let vs = [cheap, variant("pricey", 50.0, &HOT)];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert_eq!(targets(&d), [("cheap", 2), ("pricey", 3)]);
    }

    #[test]
    fn scale_up_waits_when_every_variant_is_pending() {
        let mut only = variant("only", 5.0, &HOT);
        only.ready_replicas = 1;
        let d = decide_capacity(&Thresholds::default(), &[only]);
        assert!(d.analysis.should_scale_up);
        assert_eq!(targets(&d), [("only", 2)]);
        assert!(
            d.variants[0].reason.contains("pending"),
            "{}",
            d.variants[0].reason
        );
    }

    #[test]
    fn scale_up_skips_inactive_variants() {
        let mut idle = variant("idle", 1.0, &[]);
        idle.current_replicas = 0;
        let vs = [idle, variant("busy", 10.0, &HOT)];
        let d = decide_capacity(&Thresholds::default(), &vs);
        assert_eq!(targets(&d), [("idle", 0), ("busy", 3)]);
    }

    #[test]
    fn a_previous_desired_not_reached_freezes_every_variant() {
        let mut moving = variant("moving", 5.0, &HOT);
        moving.previous_desired = Some(3);
        let mut other = variant("other", 20.0, &COLD);
        other.previous_desired = Some(2);
        let d = decide_capacity(&Thresholds::default(), &[moving, other]);
        assert!(d.in_transition);
        assert!(!d.safety_net);
        assert_eq!(targets(&d), [("moving", 3), ("other", 2)]);
        assert!(d.variants[1].reason.contains("transition"));
    }

    #[test]
    fn a_pending_scale_down_never_holds_a_saturated_model() {
        // An HPA whose minReplicas is 2 keeps the Deployment at 2 while 1 is desired; both
        // replicas saturate: the model scales up instead of holding (or repeating) 1.
        let mut clamped = variant("clamped", 5.0, &[(0.9, 20.0), (0.9, 20.0)]);
        clamped.previous_desired = Some(1);
        let d = decide_capacity(&Thresholds::default(), &[clamped]);
        assert!(!d.in_transition);
        assert_eq!(targets(&d), [("clamped", 3)]);
        assert_eq!(d.variants[0].action, Action::ScaleUp);
        // Without saturation the pending scale-down is still waited for (CONTRACT section 3).
        let mut calm = variant("clamped", 5.0, &COLD);
        calm.previous_desired = Some(1);
        let d = decide_capacity(&Thresholds::default(), &[calm]);
        assert!(d.in_transition);
        assert_eq!(targets(&d), [("clamped", 1)]);
    }

    #[test]
    fn replicas_without_metrics_freeze_the_model() {
        let mut starting = variant("starting", 5.0, &HOT);
        starting.current_replicas = 3; // one replica does not report yet
        starting.ready_replicas = 3;
        let steady = variant("steady", 20.0, &COLD);
        let d = decide_capacity(&Thresholds::default(), &[starting, steady]);
        assert!(d.in_transition);
        // No previous desired: each holds its current count.
        assert_eq!(targets(&d), [("starting", 3), ("steady", 2)]);
    }

    #[test]
    fn no_metrics_at_all_is_the_safety_net() {
        let mut v = variant("v", 10.0, &[]);
        v.current_replicas = 2;
        v.ready_replicas = 2;
        v.previous_desired = Some(4);
        let d = decide_capacity(&Thresholds::default(), &[v.clone()]);
        assert!(d.safety_net);
        assert!(!d.analysis.should_scale_up && !d.analysis.scale_down_safe);
        assert_eq!(d.variants[0].target, 4);
        assert_eq!(
            d.variants[0].fallback_source,
            Some(FallbackSource::PreviousDesired)
        );
        v.previous_desired = None;
        let d = decide_capacity(&Thresholds::default(), &[v]);
        assert_eq!(d.variants[0].target, 2);
        assert_eq!(
            d.variants[0].fallback_source,
            Some(FallbackSource::CurrentReplicas)
        );
        assert_eq!(d.variants[0].action, Action::NoChange);
    }

    #[test]
    fn a_model_without_replicas_keeps_one_on_the_cheapest_variant() {
        let mut a = variant("b-cheap", 5.0, &[]);
        a.current_replicas = 0;
        let mut b = variant("a-cheap", 5.0, &[]);
        b.current_replicas = 0;
        let mut c = variant("pricey", 50.0, &[]);
        c.current_replicas = 0;
        let d = decide_capacity(&Thresholds::default(), &[a, b, c]);
        assert!(!d.safety_net);
        assert_eq!(targets(&d), [("b-cheap", 0), ("a-cheap", 1), ("pricey", 0)]);
    }

    #[test]
    fn comfortable_load_changes_nothing() {
        let d = decide_capacity(
            &Thresholds::default(),
            &[variant("v", 10.0, &[(0.5, 1.0), (0.5, 1.0)])],
        );
        assert_eq!(targets(&d), [("v", 2)]);
        assert_eq!(d.variants[0].action, Action::NoChange);
    }

    #[test]
    fn saturated_pods_are_listed_per_variant() {
        let d = decide_capacity(
            &Thresholds::default(),
            &[variant("v", 10.0, &[(0.9, 0.0), (0.2, 6.0), (0.1, 0.0)])],
        );
        assert_eq!(d.variants[0].saturated_replicas, ["v-0", "v-1"]);
    }
}
