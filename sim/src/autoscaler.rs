//! How each policy acts on the emulated cluster, behind one trait, so that the engine's loop
//! knows none of them by name: what the autoscaler reads at its moments (the cluster, what the
//! gateway saw finish, what this controller published) and how its answer reaches the
//! Deployments (an HPA per variant on a metric, or replica counts set directly).

use crate::cluster::Cluster;
use crate::hpa::Behavior;
use crate::peers::RecentRequests;

/// What an autoscaler sees when it acts.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub now_ms: f64,
    pub cluster: &'a Cluster,
    /// What each variant's servers finished over the last minute.
    pub recent: &'a [RecentRequests],
    /// The desired count this controller's publisher holds for each variant (none before its
    /// first decision).
    pub published: &'a [Option<u32>],
}

/// How an autoscaler's answer reaches the Deployments.
#[derive(Debug, Clone, PartialEq)]
pub enum Actuation {
    /// An HPA per variant on the autoscaler's metric, with this `AverageValue` target and
    /// behaviour (the HPA syncs every control interval, offset by half of it).
    Hpa {
        target_average_value: f64,
        behavior: Behavior,
    },
    /// The autoscaler sets the replicas itself, every `interval_ms`.
    Direct { interval_ms: f64 },
}

/// One autoscaler on one run. Every method has a default that does nothing, so each
/// autoscaler states only the moments it acts at.
pub trait Autoscaler {
    /// How its answers reach the Deployments.
    fn actuation(&self) -> Actuation;

    /// At each of this controller's cycles, after its decision (autoscalers that decide on the
    /// same scrape).
    fn on_cycle(&mut self, _view: &View<'_>) {}

    /// The HPA's metric for each variant, in order (`Actuation::Hpa`); `None` for a variant is
    /// "no value", on which the HPA keeps its count.
    fn hpa_metrics(&mut self, _view: &View<'_>) -> Vec<Option<f64>> {
        Vec::new()
    }

    /// What it asks its scaler for, in total over the variants, when that differs from what
    /// the scaler then does (this controller's published counts, an analyzer's desired
    /// counts); `None` when asking and scaling are one act (an HPA on a metric, direct
    /// scaling), or before its first answer.
    fn asked(&self, _view: &View<'_>) -> Option<u32> {
        None
    }

    /// For an autoscaler that sets replicas at moments of its own rather than every interval
    /// (a replayed schedule): its first moment after `after_ms`; `None` to act every interval.
    fn next_moment(&self, _after_ms: f64) -> Option<f64> {
        None
    }

    /// The replicas each variant should have now, in order (`Actuation::Direct`).
    fn direct_targets(&mut self, view: &View<'_>) -> Vec<u32> {
        view.cluster.variants.iter().map(|v| v.replicas()).collect()
    }
}

/// This controller (any analyzer or mode): its actors decide on every cycle, and an HPA per
/// variant acts on the published `inferno_desired_replicas` with the chart's behaviour.
#[derive(Debug)]
pub struct ThisController {
    pub actuation: Actuation,
}

impl Autoscaler for ThisController {
    fn actuation(&self) -> Actuation {
        self.actuation.clone()
    }

    fn hpa_metrics(&mut self, view: &View<'_>) -> Vec<Option<f64>> {
        view.published.iter().map(|d| d.map(f64::from)).collect()
    }

    fn asked(&self, view: &View<'_>) -> Option<u32> {
        view.published.iter().copied().sum()
    }
}

/// A plain HPA on the KV-cache use of each variant's ready pods (summed: the HPA averages over
/// the pods), as Kubernetes defaults its behaviour.
#[derive(Debug)]
pub struct HpaOnKvCache {
    pub target: f64,
}

impl Autoscaler for HpaOnKvCache {
    fn actuation(&self) -> Actuation {
        Actuation::Hpa {
            target_average_value: self.target,
            behavior: Behavior::default(),
        }
    }

    fn hpa_metrics(&mut self, view: &View<'_>) -> Vec<Option<f64>> {
        view.cluster
            .variants
            .iter()
            .map(|v| {
                Some(
                    v.servers
                        .iter()
                        .filter(|s| s.is_ready(view.now_ms))
                        .map(|s| s.kv_usage())
                        .sum::<f64>(),
                )
            })
            .collect()
    }
}
