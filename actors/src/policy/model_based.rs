//! The model-based optimizer (hybrid and model-only modes): replicas per variant from the
//! queueing model and the learned latency parameters, at least cost; its arbitration with the
//! capacity analyzer (CONTRACT section 4).

use serde::{Deserialize, Serialize};

use super::OperatingMode;
use super::decision::{Action, ModelDecision};
use super::queueing::{
    LatencyParams, LatencyTargets, OperatingPoint, Workload, max_rate_per_replica,
};

/// Share of a replica's SLO-bound rate that is planned for, leaving room for bursts within a
/// cycle and for the estimate's error.
pub const HEADROOM: f64 = 0.85;

/// What the optimizer knows of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelVariantInput {
    pub name: String,
    pub cost: f64,
    /// `max-num-seqs` of the variant's servers (`modelProfile.accelerators[].maxBatchSize`).
    pub max_batch: u32,
    /// Learned parameters; `None` while the learner bootstraps.
    pub params: Option<LatencyParams>,
    /// Accepted observations so far (for the "learning" reason).
    pub samples: u32,
}

/// The optimizer's answer for one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProposedTarget {
    pub name: String,
    /// `None` when the optimizer makes no proposal for the model.
    pub target: Option<u32>,
    /// The SLO-bound operating point of one replica of this variant.
    pub per_replica: Option<OperatingPoint>,
}

/// The optimizer's answer for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelProposal {
    pub variants: Vec<ProposedTarget>,
    pub reason: String,
}

impl ModelProposal {
    fn abstain(variants: &[ModelVariantInput], reason: String) -> Self {
        Self {
            variants: variants
                .iter()
                .map(|v| ProposedTarget {
                    name: v.name.clone(),
                    target: None,
                    per_replica: None,
                })
                .collect(),
            reason,
        }
    }

    pub fn has_targets(&self) -> bool {
        self.variants.iter().any(|v| v.target.is_some())
    }
}

/// Replicas per variant so that the model's demand is served within its targets at least cost.
///
/// Demand goes to the variant with the lowest cost per unit of SLO-bound throughput; when the
/// last replica of that variant would be mostly idle, a cheaper replica of another variant that
/// covers the remainder replaces it. Variants that get no demand get 0; the model keeps at least
/// one replica in total (scale to zero is decided separately).
pub fn optimize(
    workload: Option<&Workload>,
    targets: &LatencyTargets,
    variants: &[ModelVariantInput],
) -> ModelProposal {
    let Some(w) = workload.filter(|w| {
        [w.arrival_rps, w.mean_input_tokens, w.mean_output_tokens]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
    }) else {
        return ModelProposal::abstain(
            variants,
            "no workload signals (request rate and token counts)".into(),
        );
    };
    if let Some(v) = variants.iter().find(|v| v.params.is_none()) {
        return ModelProposal::abstain(
            variants,
            format!(
                "learning latency parameters of {} ({}/{} observations)",
                v.name,
                v.samples,
                super::learner::MIN_SAMPLES
            ),
        );
    }
    let input = w.mean_input_tokens.max(1.0);
    let output = w.mean_output_tokens.max(1.0);
    let capacity: Vec<Option<OperatingPoint>> = variants
        .iter()
        .map(|v| {
            v.params.as_ref().and_then(|p| {
                max_rate_per_replica(p, v.max_batch.max(1), input, output, targets)
                    .filter(|op| op.rate_rps > 0.0)
            })
        })
        .collect();
    // Cheapest per unit of throughput first; ties by name.
    let mut order: Vec<usize> = (0..variants.len())
        .filter(|&i| capacity[i].is_some())
        .collect();
    let rate = |i: usize| capacity[i].map_or(0.0, |op| op.rate_rps * HEADROOM);
    order.sort_by(|&a, &b| {
        (variants[a].cost / rate(a))
            .total_cmp(&(variants[b].cost / rate(b)))
            .then(variants[a].name.cmp(&variants[b].name))
    });
    let Some(&best) = order.first() else {
        return ModelProposal::abstain(
            variants,
            format!(
                "the targets (TTFT {} ms, ITL {} ms) are out of reach on every variant",
                targets.ttft_ms, targets.itl_ms
            ),
        );
    };
    let mut counts = vec![0u32; variants.len()];
    let demand = w.arrival_rps;
    let needed = (demand / rate(best)).ceil().max(1.0);
    counts[best] = needed.min(f64::from(u32::MAX)) as u32;
    let remainder = demand - f64::from(counts[best] - 1) * rate(best);
    let swap = order
        .iter()
        .copied()
        .filter(|&i| i != best && rate(i) >= remainder && variants[i].cost < variants[best].cost)
        .min_by(|&a, &b| variants[a].cost.total_cmp(&variants[b].cost));
    let mut reason = format!(
        "{:.2} req/s at {:.0}/{:.0} tokens: {} serves {:.2} req/s per replica within TTFT {} ms and ITL {} ms",
        demand,
        input,
        output,
        variants[best].name,
        rate(best),
        targets.ttft_ms,
        targets.itl_ms
    );
    if let Some(i) = swap {
        counts[best] -= 1;
        counts[i] += 1;
        reason.push_str(&format!(
            "; the last {:.2} req/s go to a cheaper {} replica",
            remainder, variants[i].name
        ));
    }
    ModelProposal {
        variants: variants
            .iter()
            .zip(&capacity)
            .zip(&counts)
            .map(|((v, op), n)| ProposedTarget {
                name: v.name.clone(),
                target: Some(*n),
                per_replica: *op,
            })
            .collect(),
        reason,
    }
}

/// Which side set a variant's target in hybrid mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Winner {
    Capacity,
    Model,
    /// Neither: the target holds.
    Hold,
}

impl Winner {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::Model => "model",
            Self::Hold => "hold",
        }
    }
}

/// The arbitrated target of one variant, with which side won and the rule that decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arbitration {
    pub name: String,
    pub capacity_target: u32,
    pub model_target: Option<u32>,
    pub target: u32,
    pub winner: Winner,
    /// The rule, as a fixed code: `capacity-veto`, `safety-block`, `capacity-up`,
    /// `model-up`, `model-down`, `no-change`, `model-only`, `no-model-proposal`.
    pub rule: String,
}

/// Arbitrates each variant between the capacity decision and the model proposal, in the order
/// of CONTRACT section 4. `baselines` are the counts a "no change" keeps (previous desired,
/// else current replicas), in the decision's variant order.
pub fn arbitrate(
    mode: OperatingMode,
    capacity: &ModelDecision,
    proposal: &ModelProposal,
    baselines: &[u32],
) -> Vec<Arbitration> {
    capacity
        .variants
        .iter()
        .zip(baselines)
        .map(|(cap, &baseline)| {
            let model = proposal
                .variants
                .iter()
                .find(|p| p.name == cap.name)
                .and_then(|p| p.target);
            let (target, winner, rule) = match (mode, model) {
                (OperatingMode::CapacityOnly, _) | (_, None) => {
                    (cap.target, Winner::Capacity, "no-model-proposal")
                }
                (OperatingMode::ModelOnly, Some(m)) => (m, Winner::Model, "model-only"),
                (OperatingMode::Hybrid, Some(m)) => {
                    let capacity_up = cap.target > baseline;
                    let model_dir = Action::between(baseline, m);
                    if capacity_up && model_dir == Action::ScaleDown {
                        (baseline, Winner::Hold, "capacity-veto")
                    } else if model_dir == Action::ScaleDown && !capacity.analysis.scale_down_safe {
                        (baseline, Winner::Hold, "safety-block")
                    } else if capacity_up && model_dir == Action::NoChange {
                        (cap.target, Winner::Capacity, "capacity-up")
                    } else if model_dir == Action::ScaleUp {
                        (m, Winner::Model, "model-up")
                    } else if model_dir == Action::ScaleDown {
                        (m, Winner::Model, "model-down")
                    } else {
                        (baseline, Winner::Hold, "no-change")
                    }
                }
            };
            Arbitration {
                name: cap.name.clone(),
                capacity_target: cap.target,
                model_target: model,
                target,
                winner,
                rule: rule.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::decision::VariantTarget;
    use super::super::saturation::CapacityAnalysis;
    use super::*;

    const FAST: LatencyParams = LatencyParams {
        alpha_ms: 8.0,
        beta_ms: 0.2,
        gamma_ms: 10.0,
        delta_ms: 0.04,
    };
    const SLOW: LatencyParams = LatencyParams {
        alpha_ms: 14.0,
        beta_ms: 0.35,
        gamma_ms: 15.0,
        delta_ms: 0.12,
    };

    fn input(name: &str, cost: f64, params: Option<LatencyParams>) -> ModelVariantInput {
        ModelVariantInput {
            name: name.into(),
            cost,
            max_batch: 256,
            params,
            samples: if params.is_some() { 10 } else { 2 },
        }
    }

    fn workload(rps: f64) -> Workload {
        Workload {
            arrival_rps: rps,
            mean_input_tokens: 800.0,
            mean_output_tokens: 200.0,
        }
    }

    fn targets(p: &ModelProposal) -> Vec<Option<u32>> {
        p.variants.iter().map(|v| v.target).collect()
    }

    #[test]
    fn replicas_are_demand_over_per_replica_rate() {
        let t = LatencyTargets::default();
        let vs = [input("h100", 6.9, Some(FAST))];
        let per = max_rate_per_replica(&FAST, 256, 800.0, 200.0, &t).expect("reachable");
        let rate = per.rate_rps * HEADROOM;
        for demand in [0.0, rate * 0.5, rate * 2.5, rate * 7.0] {
            let p = optimize(Some(&workload(demand)), &t, &vs);
            let want = ((demand / rate).ceil() as u32).max(1);
            assert_eq!(
                targets(&p),
                vec![Some(want)],
                "demand {demand}: {}",
                p.reason
            );
        }
    }

    #[test]
    fn the_cheapest_throughput_wins_and_a_cheap_replica_takes_the_remainder() {
        let t = LatencyTargets::default();
        let fast = max_rate_per_replica(&FAST, 256, 800.0, 200.0, &t)
            .expect("fast")
            .rate_rps;
        let slow = max_rate_per_replica(&SLOW, 256, 800.0, 200.0, &t)
            .expect("slow")
            .rate_rps;
        // Price the slow card so it is worse per request but cheaper per replica.
        let slow_cost = 6.9 * slow / fast * 1.2;
        let vs = [
            input("fast", 6.9, Some(FAST)),
            input("slow", slow_cost, Some(SLOW)),
        ];
        // 2.1 fast replicas of demand: 2 fast + the remainder (0.1 of a fast replica) on one slow.
        let p = optimize(Some(&workload(2.1 * fast * HEADROOM)), &t, &vs);
        assert_eq!(targets(&p), vec![Some(2), Some(1)], "{}", p.reason);
        // 2.9: the remainder is more than a slow replica holds: 3 fast.
        let p = optimize(Some(&workload(2.9 * fast * HEADROOM)), &t, &vs);
        assert_eq!(targets(&p), vec![Some(3), Some(0)], "{}", p.reason);
    }

    #[test]
    fn no_proposal_while_learning_or_without_workload() {
        let t = LatencyTargets::default();
        let vs = [input("a", 1.0, Some(FAST)), input("b", 2.0, None)];
        let p = optimize(Some(&workload(3.0)), &t, &vs);
        assert!(!p.has_targets());
        assert!(
            p.reason.contains("learning latency parameters of b (2/5"),
            "{}",
            p.reason
        );
        let p = optimize(None, &t, &vs[..1]);
        assert!(!p.has_targets() && p.reason.contains("no workload"));
        let bad = Workload {
            arrival_rps: f64::NAN,
            ..workload(1.0)
        };
        assert!(!optimize(Some(&bad), &t, &vs[..1]).has_targets());
    }

    #[test]
    fn unreachable_targets_give_no_proposal() {
        let strict = LatencyTargets {
            ttft_ms: 5.0,
            itl_ms: 5.0,
        };
        let p = optimize(
            Some(&workload(1.0)),
            &strict,
            &[input("a", 1.0, Some(FAST))],
        );
        assert!(!p.has_targets());
        assert!(p.reason.contains("out of reach"), "{}", p.reason);
    }

    fn capacity(targets: &[u32], scale_down_safe: bool, up: bool) -> ModelDecision {
        ModelDecision {
            analysis: CapacityAnalysis {
                total_replicas: 2,
                non_saturated_replicas: 2,
                avg_spare_kv: 0.3,
                avg_spare_queue: 3.0,
                should_scale_up: up,
                scale_down_safe,
                reason: String::new(),
            },
            in_transition: false,
            safety_net: false,
            variants: targets
                .iter()
                .enumerate()
                .map(|(i, t)| VariantTarget {
                    name: format!("v{i}"),
                    accelerator: "A100".into(),
                    current_replicas: 2,
                    saturated_replicas: vec![],
                    target: *t,
                    action: Action::between(2, *t),
                    reason: String::new(),
                    fallback_source: None,
                })
                .collect(),
        }
    }

    fn proposal(targets: &[Option<u32>]) -> ModelProposal {
        ModelProposal {
            variants: targets
                .iter()
                .enumerate()
                .map(|(i, t)| ProposedTarget {
                    name: format!("v{i}"),
                    target: *t,
                    per_replica: None,
                })
                .collect(),
            reason: String::new(),
        }
    }

    fn one(mode: OperatingMode, cap: u32, model: Option<u32>, safe: bool) -> (u32, Winner, String) {
        let a = arbitrate(
            mode,
            &capacity(&[cap], safe, cap > 2),
            &proposal(&[model]),
            &[2],
        );
        (a[0].target, a[0].winner, a[0].rule.clone())
    }

    #[test]
    fn every_arbitration_row() {
        use OperatingMode::*;
        let row = |t: u32, w: Winner, r: &str| (t, w, r.to_string());
        // Capacity says up, model says down: capacity veto, no change.
        assert_eq!(
            one(Hybrid, 3, Some(1), true),
            row(2, Winner::Hold, "capacity-veto")
        );
        // Model says down, scale-down not safe: safety block, no change.
        assert_eq!(
            one(Hybrid, 2, Some(1), false),
            row(2, Winner::Hold, "safety-block")
        );
        // Capacity up, model unchanged: the capacity target.
        assert_eq!(
            one(Hybrid, 3, Some(2), true),
            row(3, Winner::Capacity, "capacity-up")
        );
        // Model up (capacity unchanged or up): the model target.
        assert_eq!(
            one(Hybrid, 2, Some(5), false),
            row(5, Winner::Model, "model-up")
        );
        assert_eq!(
            one(Hybrid, 3, Some(5), true),
            row(5, Winner::Model, "model-up")
        );
        // Model down and safe: the model target.
        assert_eq!(
            one(Hybrid, 2, Some(1), true),
            row(1, Winner::Model, "model-down")
        );
        // Model unchanged, capacity down or unchanged: no change.
        assert_eq!(
            one(Hybrid, 1, Some(2), true),
            row(2, Winner::Hold, "no-change")
        );
        assert_eq!(
            one(Hybrid, 2, Some(2), true),
            row(2, Winner::Hold, "no-change")
        );
        // Model-only: the model target alone, even against capacity.
        assert_eq!(
            one(ModelOnly, 3, Some(1), false),
            row(1, Winner::Model, "model-only")
        );
        // No proposal (learning): capacity decides, in either mode.
        assert_eq!(
            one(Hybrid, 3, None, true),
            row(3, Winner::Capacity, "no-model-proposal")
        );
        assert_eq!(
            one(ModelOnly, 1, None, true),
            row(1, Winner::Capacity, "no-model-proposal")
        );
    }
}
