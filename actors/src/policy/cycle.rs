//! One model's whole decision in one cycle, in every mode: the capacity analyzer (or the safety
//! net), the model-based optimizer and its arbitration, and scale to zero. The supervisor runs
//! it live; `replay` runs it on recorded inputs. Pure.

use serde::{Deserialize, Serialize};

use super::decision::{Action, ModelDecision, VariantInput, VariantTarget};
use super::model_based::{
    Arbitration, ModelProposal, ModelVariantInput, Winner, arbitrate, optimize,
};
use super::queueing::{LatencyTargets, Workload};
use super::roles::Role;
use super::saturation::CapacityAnalysis;
use super::scale_to_zero::{RequestCount, Sight, ZeroVerdict, scale_to_zero};
use super::slo_capacity::{
    CapacityEstimate, CapacityVariant, SloCapacityConfig, decide_slo_capacity,
};
use super::targets::{decide_capacity, nothing_measured};
use super::{Analyzer, OperatingMode, Thresholds, safety_net_decision};

/// The model-based optimizer's inputs for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelBasedInputs {
    pub workload: Option<Workload>,
    pub targets: LatencyTargets,
    /// In the same order as the capacity inputs.
    pub variants: Vec<ModelVariantInput>,
}

/// What the model-based side did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelBasedOutcome {
    pub proposal: ModelProposal,
    pub arbitration: Vec<Arbitration>,
}

/// Everything decided for one model in one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CycleDecision {
    /// The final targets (after arbitration and scale to zero) with the capacity analysis.
    pub decision: ModelDecision,
    pub model_based: Option<ModelBasedOutcome>,
    /// Why every variant went to 0, when scale to zero applied.
    pub scaled_to_zero: Option<String>,
    /// Why the model held its last good counts instead of going to zero: it may be idle, but
    /// part of it cannot be seen (CONTRACT section 7).
    pub blind: Option<String>,
    /// What the `slo-capacity` analyzer saw, when it decided.
    pub slo_capacity: Option<SloCapacityOutcome>,
}

/// The `slo-capacity` analyzer's view of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloCapacityOutcome {
    pub demand_rps: f64,
    pub estimates: Vec<CapacityEstimate>,
    /// Variants the saturation analysis decided instead, with why.
    pub fallback: Vec<String>,
}

impl CycleDecision {
    /// A short, fixed code for why desired counts changed (a metric label).
    pub fn cause(&self) -> &'static str {
        if self.scaled_to_zero.is_some() {
            return "scale-to-zero";
        }
        let model_won = self.model_based.as_ref().is_some_and(|m| {
            m.arbitration
                .iter()
                .any(|a| a.winner == Winner::Model && a.target != a.capacity_target)
        });
        if model_won {
            "model-based"
        } else {
            self.decision.cause()
        }
    }
}

/// The inputs of one model's cycle.
#[derive(Debug, Clone, Copy)]
pub struct CycleInputs<'a> {
    pub mode: OperatingMode,
    pub thresholds: &'a Thresholds,
    pub variants: &'a [VariantInput],
    /// Why the metrics cannot be used this cycle, if they cannot.
    pub metrics_error: Option<&'a str>,
    /// Present in hybrid and model-only modes.
    pub model_based: Option<&'a ModelBasedInputs>,
    pub scale_to_zero: bool,
    pub request_count: Option<&'a RequestCount>,
    /// The analyzer of capacity mode, with the `slo-capacity` view of the variants (in the same
    /// order as `variants`) when it decides.
    pub analyzer: Analyzer,
    pub slo_capacity: Option<(&'a [CapacityVariant], &'a SloCapacityConfig)>,
    /// Requests the llm-d scheduler holds for the model in its flow-control queue (EPP), when
    /// read: demand that no pod reports yet.
    pub held_requests: Option<f64>,
    /// The role of each variant (same order as `variants`); empty when none has one.
    pub roles: &'a [Role],
}

impl<'a> CycleInputs<'a> {
    /// Capacity mode with `saturation-v1` on the measured signals and nothing else: the base
    /// a caller adjusts with struct update syntax (`CycleInputs { held_requests, ..base }`).
    pub fn capacity(thresholds: &'a Thresholds, variants: &'a [VariantInput]) -> Self {
        Self {
            mode: OperatingMode::CapacityOnly,
            thresholds,
            variants,
            metrics_error: None,
            model_based: None,
            scale_to_zero: false,
            request_count: None,
            analyzer: Analyzer::SaturationV1,
            slo_capacity: None,
            held_requests: None,
            roles: &[],
        }
    }
}

/// Decides one model's cycle: each role apart when its variants have roles (prefill, decode),
/// else the model as a whole.
pub fn decide_cycle(i: CycleInputs<'_>) -> CycleDecision {
    let zero = zero_verdict(&i);
    if let ZeroVerdict::Blind(why) = &zero {
        return CycleDecision {
            decision: safety_net_decision(i.variants, why),
            model_based: None,
            scaled_to_zero: None,
            blind: Some(why.clone()),
            slo_capacity: None,
        };
    }
    let split = i.roles.len() == i.variants.len() && i.roles.iter().any(|r| *r != Role::Both);
    if split {
        decide_by_role(i, &zero)
    } else {
        decide_with_held(CycleInputs { roles: &[], ..i }, &zero)
    }
}

/// Scale to zero's verdict on the whole model (every role together): only when the metrics
/// were read, and never while the scheduler holds requests for it (it is not idle).
fn zero_verdict(i: &CycleInputs<'_>) -> ZeroVerdict {
    if i.metrics_error.is_some() {
        return ZeroVerdict::Keep("metrics unavailable; the safety net decides".into());
    }
    if i.held_requests.is_some_and(|q| q.is_finite() && q > 0.0) {
        return ZeroVerdict::Keep("requests wait in the llm-d scheduler's queue".into());
    }
    scale_to_zero(i.scale_to_zero, i.request_count, Sight::of(i.variants))
}

/// Each role's variants decided as a model of their own, on the role's signals: by
/// `slo-capacity` on the bound of the role's phase (prefill servers on the prefill line, decode
/// servers on the ITL line) when it is the analyzer in capacity mode, else by the capacity
/// analysis; requests held by the scheduler go to the role that takes new requests (prefill,
/// else `both`), or to every role when the whole model is at zero.
fn decide_by_role(i: CycleInputs<'_>, zero: &ZeroVerdict) -> CycleDecision {
    let has = |role: Role| i.roles.contains(&role);
    let at_zero = i.variants.iter().all(|v| v.current_replicas == 0);
    let entry = if has(Role::Prefill) {
        Role::Prefill
    } else if has(Role::Both) {
        Role::Both
    } else {
        Role::Decode
    };
    let mut targets: Vec<Option<VariantTarget>> = vec![None; i.variants.len()];
    let mut parts: Vec<(Role, CycleDecision)> = Vec::new();
    for role in [Role::Prefill, Role::Decode, Role::Both] {
        let members: Vec<usize> = (0..i.variants.len())
            .filter(|&k| i.roles[k] == role)
            .collect();
        if members.is_empty() {
            continue;
        }
        let variants: Vec<VariantInput> = members
            .iter()
            .map(|&k| role.signals(&i.variants[k]))
            .collect();
        let views: Option<(Vec<CapacityVariant>, &SloCapacityConfig)> =
            match (i.analyzer, i.mode, i.slo_capacity) {
                (Analyzer::SloCapacity, OperatingMode::CapacityOnly, Some((vs, config))) => {
                    let mine: Vec<CapacityVariant> = members
                        .iter()
                        .zip(&variants)
                        .filter_map(|(&k, input)| {
                            let name = &i.variants[k].name;
                            vs.iter().find(|v| &v.input.name == name).map(|v| {
                                let mut v = v.clone();
                                v.input = input.clone();
                                v.role = role;
                                v
                            })
                        })
                        .collect();
                    (mine.len() == members.len()).then_some((mine, config))
                }
                _ => None,
            };
        let part = decide_with_held(
            CycleInputs {
                variants: &variants,
                roles: &[],
                mode: OperatingMode::CapacityOnly,
                model_based: None,
                analyzer: if views.is_some() {
                    Analyzer::SloCapacity
                } else {
                    Analyzer::SaturationV1
                },
                slo_capacity: views.as_ref().map(|(vs, c)| (vs.as_slice(), *c)),
                held_requests: i.held_requests.filter(|_| at_zero || role == entry),
                ..i
            },
            zero,
        );
        for (&k, t) in members.iter().zip(&part.decision.variants) {
            let mut t = t.clone();
            t.reason = format!("{}: {}", role.as_str(), t.reason);
            targets[k] = Some(t);
        }
        parts.push((role, part));
    }
    let analyses = parts.iter().map(|(_, p)| &p.decision.analysis);
    let analysis = CapacityAnalysis {
        total_replicas: analyses.clone().map(|a| a.total_replicas).sum(),
        non_saturated_replicas: analyses.clone().map(|a| a.non_saturated_replicas).sum(),
        avg_spare_kv: analyses
            .clone()
            .map(|a| a.avg_spare_kv)
            .fold(f64::INFINITY, f64::min),
        avg_spare_queue: analyses
            .clone()
            .map(|a| a.avg_spare_queue)
            .fold(f64::INFINITY, f64::min),
        should_scale_up: analyses.clone().any(|a| a.should_scale_up),
        scale_down_safe: analyses.clone().all(|a| a.scale_down_safe),
        reason: parts
            .iter()
            .map(|(role, p)| format!("{}: {}", role.as_str(), p.decision.analysis.reason))
            .collect::<Vec<_>>()
            .join("; "),
    };
    CycleDecision {
        decision: ModelDecision {
            analysis,
            in_transition: parts.iter().any(|(_, p)| p.decision.in_transition),
            safety_net: parts.iter().any(|(_, p)| p.decision.safety_net),
            variants: targets.into_iter().flatten().collect(),
        },
        model_based: None,
        scaled_to_zero: parts.iter().find_map(|(_, p)| p.scaled_to_zero.clone()),
        blind: None,
        slo_capacity: merged_capacity(&parts),
    }
}

/// The roles' `slo-capacity` outcomes as one: every role sees the model's requests, so the
/// demand is the largest any saw; the estimates and fallbacks are all of theirs.
fn merged_capacity(parts: &[(Role, CycleDecision)]) -> Option<SloCapacityOutcome> {
    let outcomes: Vec<&SloCapacityOutcome> = parts
        .iter()
        .filter_map(|(_, p)| p.slo_capacity.as_ref())
        .collect();
    (!outcomes.is_empty()).then(|| SloCapacityOutcome {
        demand_rps: outcomes.iter().map(|o| o.demand_rps).fold(0.0, f64::max),
        estimates: outcomes.iter().flat_map(|o| o.estimates.clone()).collect(),
        fallback: outcomes.iter().flat_map(|o| o.fallback.clone()).collect(),
    })
}

/// Decides one model (or one role of it). Requests held in the scheduler's queue count as
/// waiting demand spread over the reporting replicas; a model at zero with requests held wakes
/// one replica of its cheapest variant, and is never scaled to zero while they wait.
fn decide_with_held(i: CycleInputs<'_>, zero: &ZeroVerdict) -> CycleDecision {
    let held = i.held_requests.filter(|q| q.is_finite() && *q > 0.0);
    let Some(held) = held.filter(|_| i.metrics_error.is_none()) else {
        return decide_measured(i, zero);
    };
    let variants = spread_held(i.variants, held);
    let views = i
        .slo_capacity
        .map(|(vs, config)| (spread_held_views(vs, &variants, held), config));
    // Requests are waiting: the model is not idle, whatever its success count says.
    let not_idle = ZeroVerdict::Keep("requests wait in the llm-d scheduler's queue".into());
    let mut cycle = decide_measured(
        CycleInputs {
            variants: &variants,
            slo_capacity: views.as_ref().map(|(vs, c)| (vs.as_slice(), *c)),
            ..i
        },
        &not_idle,
    );
    wake_from_zero(&mut cycle, i.variants, held);
    cycle
}

/// The variants with `held` requests added to their replicas' queues, evenly over the replicas
/// that report signals (none report at zero replicas: the inputs stay as they are).
fn spread_held(variants: &[VariantInput], held: f64) -> Vec<VariantInput> {
    let reporting = |r: &super::saturation::ReplicaSignals| {
        r.queue_length.is_some() || r.kv_cache_usage.is_some()
    };
    let n = variants
        .iter()
        .flat_map(|v| &v.replicas)
        .filter(|r| reporting(r))
        .count();
    let mut out = variants.to_vec();
    if n == 0 {
        return out;
    }
    let share = held / n as f64;
    for r in out.iter_mut().flat_map(|v| v.replicas.iter_mut()) {
        if reporting(r) {
            r.queue_length = Some(r.queue_length.unwrap_or(0.0) + share);
        }
    }
    out
}

/// The `slo-capacity` views with the spread inputs, and `held` added to the standing queue of
/// the servers that reported serving statistics.
fn spread_held_views(
    views: &[CapacityVariant],
    spread: &[VariantInput],
    held: f64,
) -> Vec<CapacityVariant> {
    let pods: usize = views.iter().filter_map(|v| v.serving).map(|s| s.pods).sum();
    views
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if let Some(input) = spread.iter().find(|s| s.name == v.input.name) {
                v.input = input.clone();
            }
            if let Some(s) = v.serving.as_mut().filter(|_| pods > 0) {
                let share = held / pods as f64;
                s.waiting += share;
                s.waiting_end += share;
            }
            v
        })
        .collect()
}

/// A model at zero whose requests wait in the scheduler's queue gets one replica of its
/// cheapest variant (the one the cost preference adds first).
fn wake_from_zero(cycle: &mut CycleDecision, variants: &[VariantInput], held: f64) {
    if !variants.iter().all(|v| v.current_replicas == 0) {
        return;
    }
    let Some(cheapest) = variants
        .iter()
        .min_by(|a, b| a.cost.total_cmp(&b.cost).then(a.name.cmp(&b.name)))
    else {
        return;
    };
    let why = format!("{held:.0} requests wait in the llm-d scheduler's queue for a model at zero");
    let awake = cycle.decision.variants.iter().any(|t| t.target > 0);
    for t in cycle.decision.variants.iter_mut() {
        if awake && t.target > 0 {
            t.reason = format!("{why}; {}", t.reason);
        } else if !awake && t.name == cheapest.name {
            t.target = 1;
            t.action = Action::ScaleUp;
            t.fallback_source = None;
            t.reason = format!("{why}: one replica of its cheapest variant");
        }
    }
    cycle.decision.safety_net = false;
    cycle.scaled_to_zero = None;
}

fn decide_measured(i: CycleInputs<'_>, zero: &ZeroVerdict) -> CycleDecision {
    let mut slo_capacity = None;
    let mut decision = match i.metrics_error {
        Some(why) => safety_net_decision(i.variants, why),
        None => match (i.analyzer, i.mode, i.slo_capacity) {
            // No signals at all is the safety net's, whichever analyzer runs.
            (Analyzer::SloCapacity, OperatingMode::CapacityOnly, Some((vs, config)))
                if !nothing_measured(i.thresholds, i.variants) =>
            {
                let d = decide_slo_capacity(vs, i.thresholds, config);
                slo_capacity = Some(SloCapacityOutcome {
                    demand_rps: d.demand_rps,
                    estimates: d.estimates,
                    fallback: d.fallback,
                });
                d.decision
            }
            _ => decide_capacity(i.thresholds, i.variants),
        },
    };
    // The safety net holds: neither the optimizer nor scale to zero overrides it.
    if decision.safety_net {
        return CycleDecision {
            decision,
            model_based: None,
            scaled_to_zero: None,
            blind: None,
            slo_capacity: None,
        };
    }

    let model_based = match (i.mode, i.model_based) {
        (OperatingMode::CapacityOnly, _) | (_, None) => None,
        (mode, Some(m)) => {
            let proposal = optimize(m.workload.as_ref(), &m.targets, &m.variants);
            let baselines: Vec<u32> = i
                .variants
                .iter()
                .map(|v| v.previous_desired.unwrap_or(v.current_replicas))
                .collect();
            let arbitration = arbitrate(mode, &decision, &proposal, &baselines);
            for (target, a) in decision.variants.iter_mut().zip(&arbitration) {
                if a.winner != Winner::Capacity {
                    target.target = a.target;
                    target.reason = match a.winner {
                        Winner::Model => format!("{}: {}", a.rule, proposal.reason),
                        _ => format!(
                            "{}: capacity says {}, model says {}; holding {}",
                            a.rule,
                            a.capacity_target,
                            a.model_target.map_or("nothing".into(), |m| m.to_string()),
                            a.target
                        ),
                    };
                }
            }
            Some(ModelBasedOutcome {
                proposal,
                arbitration,
            })
        }
    };

    let scaled_to_zero = match zero {
        ZeroVerdict::Zero(why) => {
            for t in decision.variants.iter_mut() {
                t.target = 0;
                t.reason = format!("scale to zero: {why}");
            }
            Some(why.clone())
        }
        ZeroVerdict::Keep(_) | ZeroVerdict::Blind(_) => None,
    };
    for (t, v) in decision.variants.iter_mut().zip(i.variants) {
        t.action = Action::between(v.current_replicas, t.target);
    }
    CycleDecision {
        decision,
        model_based,
        scaled_to_zero,
        blind: None,
        slo_capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::super::queueing::LatencyParams;
    use super::super::test_variant as variant;
    use super::*;

    fn model_inputs(rps: f64) -> ModelBasedInputs {
        ModelBasedInputs {
            workload: Some(Workload {
                arrival_rps: rps,
                mean_input_tokens: 800.0,
                mean_output_tokens: 200.0,
            }),
            targets: LatencyTargets::default(),
            variants: vec![ModelVariantInput {
                name: "a".into(),
                cost: 5.0,
                max_batch: 256,
                params: Some(LatencyParams {
                    alpha_ms: 8.0,
                    beta_ms: 0.2,
                    gamma_ms: 10.0,
                    delta_ms: 0.04,
                }),
                samples: 9,
            }],
        }
    }

    fn run<'a>(
        mode: OperatingMode,
        variants: &'a [VariantInput],
        model: Option<&'a ModelBasedInputs>,
        zero: bool,
        count: Option<&'a RequestCount>,
        error: Option<&'a str>,
    ) -> CycleDecision {
        decide_cycle(CycleInputs {
            mode,
            thresholds: &Thresholds::default(),
            variants,
            metrics_error: error,
            model_based: model,
            scale_to_zero: zero,
            request_count: count,
            analyzer: Analyzer::SaturationV1,
            slo_capacity: None,
            held_requests: None,
            roles: &[],
        })
    }

    #[test]
    fn capacity_only_ignores_the_model_and_hybrid_follows_it_up() {
        let vs = [variant("a", 5.0, &[(0.6, 0.0), (0.6, 0.0)])];
        let m = model_inputs(40.0);
        let capacity = run(
            OperatingMode::CapacityOnly,
            &vs,
            Some(&m),
            false,
            None,
            None,
        );
        assert_eq!(capacity.decision.variants[0].target, 2);
        assert!(capacity.model_based.is_none());
        let hybrid = run(OperatingMode::Hybrid, &vs, Some(&m), false, None, None);
        let t = &hybrid.decision.variants[0];
        assert!(t.target > 2, "{t:?}");
        assert_eq!(t.action, Action::ScaleUp);
        assert!(t.reason.starts_with("model-up: "), "{}", t.reason);
        assert_eq!(hybrid.cause(), "model-based");
    }

    #[test]
    fn scale_to_zero_overrides_targets_but_not_the_safety_net() {
        let vs = [variant("a", 5.0, &[(0.1, 0.0)])];
        let zero = RequestCount::Read(0.0);
        let d = run(
            OperatingMode::CapacityOnly,
            &vs,
            None,
            true,
            Some(&zero),
            None,
        );
        assert_eq!(d.decision.variants[0].target, 0);
        assert_eq!(d.decision.variants[0].action, Action::ScaleDown);
        assert_eq!(d.cause(), "scale-to-zero");
        // Off: the minimum of one holds.
        let d = run(
            OperatingMode::CapacityOnly,
            &vs,
            None,
            false,
            Some(&zero),
            None,
        );
        assert_eq!(d.decision.variants[0].target, 1);
        // Query error: targets kept.
        let failed = RequestCount::Failed("timeout".into());
        let d = run(
            OperatingMode::CapacityOnly,
            &vs,
            None,
            true,
            Some(&failed),
            None,
        );
        assert_eq!(d.decision.variants[0].target, 1);
        // Metrics down: the safety net holds, even with a zero count.
        let d = run(
            OperatingMode::Hybrid,
            &vs,
            None,
            true,
            Some(&zero),
            Some("down"),
        );
        assert!(d.decision.safety_net && d.scaled_to_zero.is_none());
        assert_eq!(d.decision.variants[0].target, 1);
    }

    /// CONTRACT section 12 for slo-capacity: missing or erroring data never scales down (the
    /// safety net holds), whatever the analyzer's view says.
    #[test]
    fn slo_capacity_never_scales_down_from_missing_or_erroring_data() {
        use super::super::slo_capacity::{CapacityVariant, ItlFit, ServingSummary};
        let decide = |variants: &[VariantInput], error: Option<&str>| {
            // A view that on its own would take the variant down to one replica.
            let views: Vec<CapacityVariant> = variants
                .iter()
                .map(|v| CapacityVariant {
                    input: v.clone(),
                    serving: Some(ServingSummary {
                        pods: 4,
                        rate_rps: 0.1,
                        mean_input_tokens: 500.0,
                        mean_output_tokens: 100.0,
                        ttft_ms: 50.0,
                        itl_ms: 10.0,
                        batch: 1.0,
                        waiting: 0.0,
                        waiting_end: 0.0,
                    }),
                    fit: ItlFit::default(),
                    prefill_fit: Default::default(),
                    role: Default::default(),
                    max_batch: 256,
                    min_replicas: None,
                    max_replicas: None,
                    recent: Vec::new(),
                })
                .collect();
            decide_cycle(CycleInputs {
                mode: OperatingMode::CapacityOnly,
                thresholds: &Thresholds::default(),
                variants,
                metrics_error: error,
                model_based: None,
                scale_to_zero: false,
                request_count: None,
                analyzer: Analyzer::SloCapacity,
                slo_capacity: Some((&views, &SloCapacityConfig::default())),
                held_requests: None,
                roles: &[],
            })
        };
        let mut v = variant("a", 5.0, &[(0.1, 0.0); 4]);
        v.previous_desired = Some(4);
        let failed = decide(std::slice::from_ref(&v), Some("Prometheus unreachable"));
        assert!(failed.decision.safety_net);
        assert_eq!(failed.decision.variants[0].target, 4);
        assert!(failed.slo_capacity.is_none());
        // Replicas without any usable signal: the same.
        let mut silent = v.clone();
        for r in &mut silent.replicas {
            r.kv_cache_usage = None;
            r.queue_length = None;
        }
        let held = decide(&[silent], None);
        assert!(held.decision.safety_net);
        assert_eq!(held.decision.variants[0].target, 4);
        // With signals, slo-capacity decides (and records its view).
        let decided = decide(&[v], None);
        assert!(!decided.decision.safety_net);
        assert!(decided.slo_capacity.is_some());
    }

    fn with_held(
        variants: &[VariantInput],
        zero: bool,
        count: Option<&RequestCount>,
        held: Option<f64>,
        error: Option<&str>,
    ) -> CycleDecision {
        decide_cycle(CycleInputs {
            metrics_error: error,
            scale_to_zero: zero,
            request_count: count,
            held_requests: held,
            ..CycleInputs::capacity(&Thresholds::default(), variants)
        })
    }

    #[test]
    fn requests_held_by_the_scheduler_are_queue_demand_and_more_never_gives_fewer() {
        // Two replicas with room: steady without held requests.
        let vs = [variant("a", 5.0, &[(0.6, 0.0), (0.6, 0.0)])];
        let alone = with_held(&vs, false, None, None, None);
        assert_eq!(alone.decision.variants[0].target, 2);
        // Twenty requests held: five more per replica, past the queue threshold.
        let held = with_held(&vs, false, None, Some(20.0), None);
        assert!(held.decision.variants[0].target > 2, "{held:?}");
        // Monotone in the held queue.
        let mut last = 0;
        for q in [0.0, 1.0, 4.0, 8.0, 16.0, 64.0] {
            let t = with_held(&vs, false, None, Some(q), None).decision.variants[0].target;
            assert!(t >= last, "{q}: {t} < {last}");
            last = t;
        }
    }

    #[test]
    fn a_model_at_zero_wakes_on_held_requests_on_its_cheapest_variant() {
        let mut dear = variant("dear", 9.0, &[]);
        let mut cheap = variant("cheap", 3.0, &[]);
        for v in [&mut dear, &mut cheap] {
            v.current_replicas = 0;
            v.ready_replicas = 0;
            v.previous_desired = Some(0);
        }
        let vs = [dear, cheap];
        let idle = RequestCount::Read(0.0);
        // Without held requests: zero stays zero.
        let asleep = with_held(&vs, true, Some(&idle), None, None);
        assert!(asleep.decision.variants.iter().all(|t| t.target == 0));
        let woken = with_held(&vs, true, Some(&idle), Some(3.0), None);
        let by = |n: &str| {
            woken
                .decision
                .variants
                .iter()
                .find(|t| t.name == n)
                .map(|t| (t.target, t.reason.clone()))
        };
        assert_eq!(by("dear").map(|t| t.0), Some(0));
        let (target, reason) = by("cheap").expect("cheap");
        assert_eq!(target, 1);
        assert!(reason.contains("3 requests wait"), "{reason}");
        assert!(woken.scaled_to_zero.is_none());
        assert!(!woken.decision.safety_net);
        // A failed read is the safety net's: no wake from a queue that was not read.
        let failed = with_held(&vs, true, Some(&idle), Some(3.0), Some("down"));
        assert!(failed.decision.safety_net);
        assert!(failed.decision.variants.iter().all(|t| t.target == 0));
    }

    #[test]
    fn held_requests_keep_a_serving_model_from_scale_to_zero() {
        let vs = [variant("a", 5.0, &[(0.1, 0.0)])];
        let idle = RequestCount::Read(0.0);
        let zeroed = with_held(&vs, true, Some(&idle), None, None);
        assert!(zeroed.scaled_to_zero.is_some());
        let kept = with_held(&vs, true, Some(&idle), Some(2.0), None);
        assert!(kept.scaled_to_zero.is_none());
        assert!(kept.decision.variants[0].target >= 1);
    }

    /// CONTRACT section 7: a lost scrape is not an idle model. Six ready replicas serving, then
    /// their request series vanishes: the last good count holds and says why.
    #[test]
    fn a_missing_request_series_with_ready_replicas_holds_the_last_good_count() {
        let mut v = variant("a", 5.0, &[(0.3, 0.0); 6]);
        v.previous_desired = Some(6);
        let vs = [v];
        let d = with_held(&vs, true, Some(&RequestCount::NoSeries), None, None);
        assert!(d.decision.safety_net, "{d:?}");
        assert!(d.scaled_to_zero.is_none());
        assert_eq!(d.decision.variants[0].target, 6);
        let why = d.blind.as_deref().expect("blind says why");
        assert!(why.contains("6 replicas are ready"), "{why}");
        assert!(
            d.decision.analysis.reason.contains("cannot tell idle"),
            "{d:?}"
        );
        // Its other series gone too (the scrape failed for good): still held, never zero.
        let mut silent = vs[0].clone();
        silent.replicas.clear();
        let d = with_held(
            &[silent.clone()],
            true,
            Some(&RequestCount::NoSeries),
            None,
            None,
        );
        assert_eq!(d.decision.variants[0].target, 6);
        assert!(d.blind.is_some());
        // A flat count while one ready replica reports nothing: held as well.
        let mut partial = vs[0].clone();
        partial.replicas.pop();
        let idle = RequestCount::Read(0.0);
        let d = with_held(&[partial], true, Some(&idle), None, None);
        assert_eq!(d.decision.variants[0].target, 6);
        assert!(d.blind.as_deref().is_some_and(|w| w.contains("1 of 6")));
        // Flat and every ready replica seen: positive evidence, so zero.
        let d = with_held(&vs, true, Some(&idle), None, None);
        assert!(d.scaled_to_zero.is_some() && d.blind.is_none());
        assert_eq!(d.decision.variants[0].target, 0);
        // Scale to zero off: nothing is blind, the analysis decides as usual.
        let d = with_held(&vs, false, Some(&RequestCount::NoSeries), None, None);
        assert!(d.blind.is_none() && !d.decision.safety_net);
        // Requests held by the scheduler: not idle, so not blind either.
        let d = with_held(&vs, true, Some(&RequestCount::NoSeries), Some(2.0), None);
        assert!(d.blind.is_none() && !d.decision.safety_net, "{d:?}");
        assert!(d.decision.variants[0].target >= 1);
    }

    #[test]
    fn a_model_at_zero_with_no_series_stays_at_zero() {
        let mut v = variant("a", 5.0, &[]);
        v.current_replicas = 0;
        v.ready_replicas = 0;
        v.previous_desired = Some(0);
        let d = with_held(&[v], true, Some(&RequestCount::NoSeries), None, None);
        assert!(d.blind.is_none());
        assert_eq!(d.decision.variants[0].target, 0);
    }

    #[test]
    fn roles_are_judged_blind_or_idle_as_one_model() {
        let roles = [Role::Prefill, Role::Decode];
        let mut prefill = variant("prefill", 2.0, &[(0.1, 0.0)]);
        let mut decode = variant("decode", 9.0, &[(0.1, 0.0)]);
        prefill.previous_desired = Some(1);
        decode.previous_desired = Some(1);
        // The decode server is ready but unseen: the whole model holds, prefill included.
        decode.replicas.clear();
        let vs = [prefill, decode];
        let idle = RequestCount::Read(0.0);
        let d = decide_cycle(CycleInputs {
            scale_to_zero: true,
            request_count: Some(&idle),
            roles: &roles,
            ..CycleInputs::capacity(&Thresholds::default(), &vs)
        });
        assert!(d.blind.is_some(), "{d:?}");
        assert!(d.decision.variants.iter().all(|t| t.target == 1), "{d:?}");
    }

    fn with_roles(variants: &[VariantInput], roles: &[Role], held: Option<f64>) -> CycleDecision {
        decide_cycle(CycleInputs {
            analyzer: Analyzer::SloCapacity,
            held_requests: held,
            roles,
            ..CycleInputs::capacity(&Thresholds::default(), variants)
        })
    }

    fn target_of(d: &CycleDecision, name: &str) -> (u32, String) {
        d.decision
            .variants
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.target, t.reason.clone()))
            .expect("a target")
    }

    #[test]
    fn prefill_and_decode_are_decided_apart_on_their_own_signals() {
        // Every server's KV cache is nearly full; only the decode servers' says they are busy.
        let vs = [
            variant("prefill", 2.0, &[(0.95, 0.0), (0.95, 0.0)]),
            variant("decode", 9.0, &[(0.95, 0.0), (0.95, 0.0)]),
        ];
        let roles = [Role::Prefill, Role::Decode];
        let split = with_roles(&vs, &roles, None);
        let (prefill, why) = target_of(&split, "prefill");
        // Its queue is empty: no scale-up, whatever its KV cache holds.
        assert!(
            prefill <= 2,
            "a prefill server is judged on its queue: {why}"
        );
        assert!(why.starts_with("prefill: "), "{why}");
        let (decode, why) = target_of(&split, "decode");
        assert!(decode > 2, "{why}");
        assert!(why.starts_with("decode: "), "{why}");
        // Without roles the cheaper variant would take the extra capacity.
        let pooled = with_roles(&vs, &[], None);
        assert!(target_of(&pooled, "prefill").0 > 2);
        assert_eq!(target_of(&pooled, "decode").0, 2);
        // A long prompt queue is prefill's to answer.
        let queued = [
            variant("prefill", 2.0, &[(0.1, 9.0), (0.1, 9.0)]),
            variant("decode", 9.0, &[(0.3, 0.0), (0.3, 0.0)]),
        ];
        let d = with_roles(&queued, &roles, None);
        assert!(target_of(&d, "prefill").0 > 2);
        assert!(target_of(&d, "decode").0 <= 2);
    }

    #[test]
    fn the_default_analyzer_decides_each_role_with_its_views() {
        use super::super::slo_capacity::ServingSummary;
        let vs = [
            variant("prefill", 2.0, &[(0.1, 0.0), (0.1, 0.0)]),
            variant("decode", 9.0, &[(0.3, 0.0), (0.3, 0.0)]),
        ];
        let views: Vec<CapacityVariant> = vs
            .iter()
            .map(|v| CapacityVariant {
                input: v.clone(),
                serving: Some(ServingSummary {
                    pods: 2,
                    rate_rps: 4.0,
                    mean_input_tokens: 900.0,
                    mean_output_tokens: 120.0,
                    ttft_ms: 90.0,
                    itl_ms: 12.0,
                    batch: 4.0,
                    waiting: 0.0,
                    waiting_end: 0.0,
                }),
                fit: Default::default(),
                prefill_fit: Default::default(),
                role: Role::Both,
                max_batch: 256,
                min_replicas: Some(1),
                max_replicas: Some(8),
                recent: Vec::new(),
            })
            .collect();
        let config = SloCapacityConfig::default();
        let d = decide_cycle(CycleInputs {
            analyzer: Analyzer::SloCapacity,
            roles: &[Role::Prefill, Role::Decode],
            slo_capacity: Some((&views, &config)),
            ..CycleInputs::capacity(&Thresholds::default(), &vs)
        });
        // Nothing learned yet: each role's saturation analysis decides it, and says so.
        let outcome = d
            .slo_capacity
            .as_ref()
            .expect("slo-capacity decided the roles");
        assert_eq!(outcome.estimates.len(), 2);
        assert_eq!(outcome.fallback.len(), 2, "{:?}", outcome.fallback);
        let (_, why) = target_of(&d, "prefill");
        assert!(why.starts_with("prefill: demand"), "{why}");
        assert!(why.contains("saturation analysis"), "{why}");
        let (_, why) = target_of(&d, "decode");
        assert!(why.starts_with("decode: demand"), "{why}");
    }

    #[test]
    fn held_requests_go_to_prefill_and_a_disaggregated_model_wakes_whole() {
        let vs = [
            variant("prefill", 2.0, &[(0.1, 0.0)]),
            variant("decode", 9.0, &[(0.5, 0.0)]),
        ];
        let roles = [Role::Prefill, Role::Decode];
        let d = with_roles(&vs, &roles, Some(40.0));
        assert!(target_of(&d, "prefill").0 > 1);
        assert_eq!(target_of(&d, "decode").0, 1);
        let mut asleep = vs.clone();
        for v in &mut asleep {
            v.current_replicas = 0;
            v.ready_replicas = 0;
            v.replicas.clear();
            v.previous_desired = Some(0);
        }
        let d = with_roles(&asleep, &roles, Some(3.0));
        assert_eq!(target_of(&d, "prefill").0, 1);
        assert_eq!(target_of(&d, "decode").0, 1);
    }
}
