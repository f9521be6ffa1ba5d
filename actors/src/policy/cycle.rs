//! One model's whole decision in one cycle, in every mode: the capacity analyzer (or the safety
//! net), the model-based optimizer and its arbitration, and scale to zero. The supervisor runs
//! it live; `replay` runs it on recorded inputs. Pure.

use serde::{Deserialize, Serialize};

use super::decision::{Action, ModelDecision, VariantInput};
use super::model_based::{
    Arbitration, ModelProposal, ModelVariantInput, RequestCount, Winner, arbitrate, optimize,
    scale_to_zero,
};
use super::queueing::{LatencyTargets, Workload};
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
    /// What the `slo-capacity` analyzer saw, when it decided.
    pub slo_capacity: Option<SloCapacityOutcome>,
}

/// The `slo-capacity` analyzer's view of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloCapacityOutcome {
    pub demand_rps: f64,
    pub estimates: Vec<CapacityEstimate>,
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
}

pub fn decide_cycle(i: CycleInputs<'_>) -> CycleDecision {
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

    let (zero, why) = scale_to_zero(i.scale_to_zero, i.request_count);
    let scaled_to_zero = zero.then(|| {
        for t in decision.variants.iter_mut() {
            t.target = 0;
            t.reason = format!("scale to zero: {why}");
        }
        why
    });
    for (t, v) in decision.variants.iter_mut().zip(i.variants) {
        t.action = Action::between(v.current_replicas, t.target);
    }
    CycleDecision {
        decision,
        model_based,
        scaled_to_zero,
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
                        waiting_peak: 0.0,
                    }),
                    fit: ItlFit::default(),
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
}
