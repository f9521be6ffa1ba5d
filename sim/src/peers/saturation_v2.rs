//! Upstream WVA v0.9's default analyzer, `saturation-v2` (token-based), with its cost-aware
//! optimizer, as its source describes them:
//!
//! - per replica, demand = KV tokens in use + queued requests × mean prompt tokens;
//! - per replica, capacity = min(k1, k2): k1 = KV capacity × `kvCacheThreshold`; k2, the
//!   compute bound, is the tokens in use observed while the queue is at its threshold (and the
//!   rolling average of those observations), else derived from the engine's settings as
//!   `min(B·O/(I+O), S) · (I + O/2)` (B the batched-token budget, S `max-num-seqs`, I and O
//!   the mean prompt and output lengths), else k1;
//! - per variant, the median capacity of its ready replicas; the model's supply is ready
//!   replicas × capacity, its anticipated supply counts pending replicas too;
//! - required = demand / scale-up threshold − anticipated supply; spare = supply − demand /
//!   scale-down boundary;
//! - scale-up adds `ceil(required / capacity)` replicas to the variant with the lowest cost per
//!   capacity; scale-down removes `floor(spare / capacity)` from the most expensive first,
//!   keeping the cheapest at one only when no other variant has replicas.

use std::collections::{HashMap, VecDeque};

use crate::autoscaler::{Actuation, Autoscaler, View};
use crate::cluster::Cluster;
use crate::peers::RecentRequests;
use crate::profiles::BLOCK_TOKENS;

/// The analyzer's settings: upstream's defaults, the scale-up threshold being the knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaturationV2Config {
    pub kv_cache_threshold: f64,
    pub queue_length_threshold: f64,
    pub scale_up_threshold: f64,
    pub scale_down_boundary: f64,
}

impl SaturationV2Config {
    /// Upstream's defaults: up above 0.85 utilisation, down below 0.70.
    pub fn with_scale_up(scale_up_threshold: f64) -> Self {
        Self {
            kv_cache_threshold: 0.8,
            queue_length_threshold: 5.0,
            scale_up_threshold,
            scale_down_boundary: (scale_up_threshold - 0.15).max(0.05),
        }
    }
}

/// Rolling average of observed compute capacity, per (accelerator, output bucket).
const HISTORY: usize = 10;

/// The analyzer's memory: the observed k2 values.
#[derive(Debug, Default)]
pub struct SaturationV2 {
    history: HashMap<(String, &'static str), VecDeque<f64>>,
}

fn output_bucket(mean_output: f64) -> &'static str {
    if mean_output < 128.0 {
        "short"
    } else if mean_output < 512.0 {
        "medium"
    } else {
        "long"
    }
}

/// One variant's capacity as the analyzer sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct VariantCapacity {
    per_replica: f64,
    ready: u32,
    pending: u32,
    demand: f64,
    cost: f64,
}

impl SaturationV2 {
    /// The desired replicas of every variant of the model at `now_ms`, from the current ones.
    pub fn desired(
        &mut self,
        now_ms: f64,
        cluster: &Cluster,
        recent: &[RecentRequests],
        config: &SaturationV2Config,
    ) -> Vec<u32> {
        let caps: Vec<VariantCapacity> = cluster
            .variants
            .iter()
            .zip(recent)
            .map(|(v, recent)| {
                let (input, output) = recent.mean_lengths().unwrap_or((0.0, 0.0));
                let p = &v.profile;
                let mut capacities = Vec::new();
                let mut demand = 0.0;
                for s in v.servers.iter().filter(|s| s.is_ready(now_ms)) {
                    let in_use = f64::from(s.used_blocks() * BLOCK_TOKENS);
                    let queue = s.waiting() as f64;
                    demand += in_use + queue * input;
                    let k1 = f64::from(p.kv_tokens()) * config.kv_cache_threshold;
                    let key = (p.name.to_string(), output_bucket(output));
                    let k2 = if queue >= config.queue_length_threshold && in_use > 0.0 {
                        let h = self.history.entry(key).or_default();
                        h.push_back(in_use);
                        while h.len() > HISTORY {
                            h.pop_front();
                        }
                        in_use
                    } else if let Some(h) = self.history.get(&key).filter(|h| !h.is_empty()) {
                        h.iter().sum::<f64>() / h.len() as f64
                    } else if output > 0.0 {
                        let b = f64::from(p.max_batched_tokens);
                        let steady = (b * output / (input + output)).min(f64::from(p.max_num_seqs));
                        steady * (input + output / 2.0)
                    } else {
                        k1
                    };
                    capacities.push(k1.min(k2));
                }
                capacities.sort_by(f64::total_cmp);
                let per_replica = capacities.get(capacities.len() / 2).copied().unwrap_or(0.0);
                let ready = v.ready(now_ms);
                VariantCapacity {
                    per_replica,
                    ready,
                    pending: v.replicas() - ready,
                    demand,
                    cost: v.cost_per_hour,
                }
            })
            .collect();
        plan(&caps, config)
    }
}

/// The cost-aware optimizer over the analysis.
fn plan(caps: &[VariantCapacity], config: &SaturationV2Config) -> Vec<u32> {
    let supply: f64 = caps
        .iter()
        .map(|c| f64::from(c.ready) * c.per_replica)
        .sum();
    let anticipated: f64 = caps
        .iter()
        .map(|c| f64::from(c.ready + c.pending) * c.per_replica)
        .sum();
    let demand: f64 = caps.iter().map(|c| c.demand).sum();
    let required = (demand / config.scale_up_threshold - anticipated).max(0.0);
    let spare = (supply - demand / config.scale_down_boundary).max(0.0);
    let mut targets: Vec<u32> = caps.iter().map(|c| c.ready + c.pending).collect();
    let efficiency = |c: &VariantCapacity| {
        if c.per_replica > 0.0 {
            c.cost / c.per_replica
        } else {
            f64::MAX
        }
    };
    if required > 0.0 {
        let mut order: Vec<usize> = (0..caps.len()).collect();
        order.sort_by(|&a, &b| efficiency(&caps[a]).total_cmp(&efficiency(&caps[b])));
        let mut remaining = required;
        for i in order {
            if remaining <= 0.0 {
                break;
            }
            if caps[i].per_replica <= 0.0 {
                continue;
            }
            let needed = (remaining / caps[i].per_replica).ceil();
            targets[i] += needed as u32;
            remaining -= needed * caps[i].per_replica;
        }
    } else if spare > 0.0 {
        let mut order: Vec<usize> = (0..caps.len()).collect();
        order.sort_by(|&a, &b| caps[b].cost.total_cmp(&caps[a].cost));
        let cheapest = (0..caps.len()).min_by(|&a, &b| caps[a].cost.total_cmp(&caps[b].cost));
        let mut remaining = spare;
        for i in order {
            if remaining <= 0.0 {
                break;
            }
            if caps[i].per_replica <= 0.0 {
                continue;
            }
            let others = (0..caps.len()).any(|j| j != i && targets[j] > 0);
            let min = u32::from(Some(i) == cheapest && !others);
            let removable = targets[i].saturating_sub(min);
            let remove = ((remaining / caps[i].per_replica).floor() as u32).min(removable);
            if remove == 0 {
                continue;
            }
            targets[i] -= remove;
            remaining -= f64::from(remove) * caps[i].per_replica;
        }
    }
    targets
}

/// The analyzer as an autoscaler: it decides on this controller's cycle, and an HPA with the
/// chart's behaviour acts on its desired counts.
#[derive(Debug)]
pub struct SaturationV2Scaler {
    analyzer: SaturationV2,
    config: SaturationV2Config,
    desired: Vec<Option<u32>>,
    actuation: Actuation,
}

impl SaturationV2Scaler {
    pub fn new(scale_up_threshold: f64, variants: usize, actuation: Actuation) -> Self {
        Self {
            analyzer: SaturationV2::default(),
            config: SaturationV2Config::with_scale_up(scale_up_threshold),
            desired: vec![None; variants],
            actuation,
        }
    }
}

impl Autoscaler for SaturationV2Scaler {
    fn actuation(&self) -> Actuation {
        self.actuation.clone()
    }

    fn on_cycle(&mut self, view: &View<'_>) {
        let desired = self
            .analyzer
            .desired(view.now_ms, view.cluster, view.recent, &self.config);
        self.desired = desired.into_iter().map(Some).collect();
    }

    fn hpa_metrics(&mut self, _view: &View<'_>) -> Vec<Option<f64>> {
        self.desired.iter().map(|d| d.map(f64::from)).collect()
    }

    fn asked(&self, _view: &View<'_>) -> Option<u32> {
        self.desired.iter().copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(per_replica: f64, ready: u32, demand: f64, cost: f64) -> VariantCapacity {
        VariantCapacity {
            per_replica,
            ready,
            pending: 0,
            demand,
            cost,
        }
    }

    #[test]
    fn scale_up_goes_by_cost_per_capacity_in_whole_steps() {
        let config = SaturationV2Config::with_scale_up(0.85);
        // Demand 300k tokens; supply 2 × 100k: required 300/0.85 − 200 = 152.9k tokens →
        // ceil(152.9/200) = 1 replica of the efficient (200k for 6.9) variant.
        let caps = [
            cap(100_000.0, 1, 150_000.0, 3.7),
            cap(200_000.0, 1, 150_000.0, 6.9),
        ];
        assert_eq!(plan(&caps, &config), [1, 2]);
        // Pending replicas count as anticipated supply: nothing more.
        let pending = [
            cap(100_000.0, 1, 150_000.0, 3.7),
            VariantCapacity {
                pending: 1,
                ..cap(200_000.0, 1, 150_000.0, 6.9)
            },
        ];
        assert_eq!(plan(&pending, &config), [1, 2]);
    }

    #[test]
    fn scale_down_takes_from_the_most_expensive_and_keeps_the_cheapest_only_alone() {
        let config = SaturationV2Config::with_scale_up(0.85);
        // Demand 70k over 4 × 200k + 1 × 100k: spare = 900 − 70/0.7 = 800k, all of it from
        // the dearer variant.
        let caps = [
            cap(100_000.0, 1, 10_000.0, 3.7),
            cap(200_000.0, 4, 60_000.0, 6.9),
        ];
        assert_eq!(plan(&caps, &config), [1, 0]);
        // Alone, the cheapest keeps one.
        let alone = [cap(100_000.0, 3, 10_000.0, 3.7)];
        assert_eq!(plan(&alone, &config), [1]);
        // Between the thresholds: nothing moves.
        let steady = [cap(100_000.0, 2, 150_000.0, 3.7)];
        assert_eq!(plan(&steady, &config), [2]);
        assert_eq!(output_bucket(50.0), "short");
    }
}
