//! Per-replica saturation and the model-level capacity analysis (scale up? scale down safely?).

use serde::{Deserialize, Serialize};

use super::EPSILON;
use super::thresholds::Thresholds;

/// The saturation signals of one replica (pod), each the maximum over the last minute.
/// `None` means the replica did not report that signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSignals {
    pub pod: String,
    pub kv_cache_usage: Option<f64>,
    pub queue_length: Option<f64>,
}

/// How one replica stands against the thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplicaAssessment {
    /// The replica reported neither signal: it takes no part in the analysis.
    NoSignals,
    /// KV-cache or queue at or above its threshold.
    Saturated,
    /// Room left before saturation, as KV fraction and queue slots.
    Spare { kv: f64, queue: f64 },
}

/// Assesses one replica. A replica that reports only one of the two signals takes 0 for the
/// other, so a missing queue metric never hides a full KV cache (and the reverse).
pub fn assess_replica(t: &Thresholds, r: &ReplicaSignals) -> ReplicaAssessment {
    if r.kv_cache_usage.is_none() && r.queue_length.is_none() {
        return ReplicaAssessment::NoSignals;
    }
    let kv = r.kv_cache_usage.unwrap_or(0.0);
    let queue = r.queue_length.unwrap_or(0.0);
    if kv >= t.kv_cache_threshold || queue >= t.queue_length_threshold {
        ReplicaAssessment::Saturated
    } else {
        ReplicaAssessment::Spare {
            kv: t.kv_cache_threshold - kv,
            queue: t.queue_length_threshold - queue,
        }
    }
}

/// Mean spare capacity over the non-saturated replicas of a set (a model or one variant).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpareCapacity {
    /// Replicas that reported at least one signal.
    pub analyzed: usize,
    /// Of those, the ones that are not saturated.
    pub non_saturated: usize,
    /// Mean spare KV fraction over the non-saturated replicas; 0 when there are none.
    pub avg_spare_kv: f64,
    /// Mean spare queue room over the non-saturated replicas; 0 when there are none.
    pub avg_spare_queue: f64,
}

impl SpareCapacity {
    pub fn of<'a>(t: &Thresholds, replicas: impl IntoIterator<Item = &'a ReplicaSignals>) -> Self {
        let (mut analyzed, mut n, mut kv_sum, mut queue_sum) = (0usize, 0usize, 0.0, 0.0);
        for r in replicas {
            match assess_replica(t, r) {
                ReplicaAssessment::NoSignals => {}
                ReplicaAssessment::Saturated => analyzed += 1,
                ReplicaAssessment::Spare { kv, queue } => {
                    analyzed += 1;
                    n += 1;
                    kv_sum += kv;
                    queue_sum += queue;
                }
            }
        }
        let mean = |sum: f64| if n == 0 { 0.0 } else { sum / n as f64 };
        Self {
            analyzed,
            non_saturated: n,
            avg_spare_kv: mean(kv_sum),
            avg_spare_queue: mean(queue_sum),
        }
    }
}

/// The capacity analysis of one model: all replicas of all its variants pooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityAnalysis {
    /// Replicas that reported at least one saturation signal.
    pub total_replicas: u32,
    pub non_saturated_replicas: u32,
    pub avg_spare_kv: f64,
    pub avg_spare_queue: f64,
    pub should_scale_up: bool,
    pub scale_down_safe: bool,
    pub reason: String,
}

impl CapacityAnalysis {
    /// True when no replica reported a usable signal: there is nothing to decide from.
    pub fn has_no_signals(&self) -> bool {
        self.total_replicas == 0
    }
}

/// Analyzes the pooled replicas of one model.
pub fn analyze_capacity<'a>(
    t: &Thresholds,
    replicas: impl IntoIterator<Item = &'a ReplicaSignals>,
) -> CapacityAnalysis {
    let spare = SpareCapacity::of(t, replicas);
    let n = spare.non_saturated;
    let mut analysis = CapacityAnalysis {
        total_replicas: spare.analyzed as u32,
        non_saturated_replicas: n as u32,
        avg_spare_kv: spare.avg_spare_kv,
        avg_spare_queue: spare.avg_spare_queue,
        should_scale_up: false,
        scale_down_safe: false,
        reason: String::new(),
    };
    if spare.analyzed == 0 {
        analysis.reason = "no replica reports KV-cache or queue metrics".into();
        return analysis;
    }

    let kv_short = spare.avg_spare_kv < t.kv_spare_trigger - EPSILON;
    let queue_short = spare.avg_spare_queue < t.queue_spare_trigger - EPSILON;
    if n == 0 {
        analysis.should_scale_up = true;
        analysis.reason = format!("all {} replicas are saturated", spare.analyzed);
        return analysis;
    }
    if kv_short || queue_short {
        analysis.should_scale_up = true;
        let mut why = Vec::new();
        if kv_short {
            why.push(format!(
                "average spare KV {:.3} < trigger {}",
                spare.avg_spare_kv, t.kv_spare_trigger
            ));
        }
        if queue_short {
            why.push(format!(
                "average spare queue {:.2} < trigger {}",
                spare.avg_spare_queue, t.queue_spare_trigger
            ));
        }
        analysis.reason = format!(
            "{} ({} of {} replicas not saturated)",
            why.join(" and "),
            n,
            spare.analyzed
        );
        return analysis;
    }

    if n < 2 {
        analysis.reason = format!(
            "spare capacity is above the triggers (KV {:.3}, queue {:.2}); scale-down needs at least 2 non-saturated replicas, have {}",
            spare.avg_spare_kv, spare.avg_spare_queue, n
        );
        return analysis;
    }
    // Remove one replica and spread its load over the others: load per replica grows by N/(N-1).
    let grow = n as f64 / (n as f64 - 1.0);
    let kv_after = t.kv_cache_threshold - (t.kv_cache_threshold - spare.avg_spare_kv) * grow;
    let queue_after =
        t.queue_length_threshold - (t.queue_length_threshold - spare.avg_spare_queue) * grow;
    let kv_ok = kv_after >= t.kv_spare_trigger - EPSILON;
    let queue_ok = queue_after >= t.queue_spare_trigger - EPSILON;
    analysis.scale_down_safe = kv_ok && queue_ok;
    analysis.reason = if analysis.scale_down_safe {
        format!(
            "with one replica fewer the spare stays at or above the triggers (KV {:.3} >= {}, queue {:.2} >= {})",
            kv_after, t.kv_spare_trigger, queue_after, t.queue_spare_trigger
        )
    } else {
        let mut why = Vec::new();
        if !kv_ok {
            why.push(format!("KV spare {:.3} < {}", kv_after, t.kv_spare_trigger));
        }
        if !queue_ok {
            why.push(format!(
                "queue spare {:.2} < {}",
                queue_after, t.queue_spare_trigger
            ));
        }
        format!(
            "spare capacity is above the triggers (KV {:.3}, queue {:.2}) but one replica fewer would leave {}",
            spare.avg_spare_kv,
            spare.avg_spare_queue,
            why.join(" and ")
        )
    };
    analysis
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(signals: &[(f64, f64)]) -> Vec<ReplicaSignals> {
        signals
            .iter()
            .enumerate()
            .map(|(i, &(kv, q))| ReplicaSignals {
                pod: format!("p{i}"),
                kv_cache_usage: Some(kv),
                queue_length: Some(q),
            })
            .collect()
    }

    fn analyze(signals: &[(f64, f64)]) -> CapacityAnalysis {
        analyze_capacity(&Thresholds::default(), &pods(signals))
    }

    // The public example table of the contract, row by row.
    #[test]
    fn kv_trigger_scales_up() {
        let a = analyze(&[(0.75, 2.0), (0.76, 2.0)]);
        assert!(a.should_scale_up);
        assert!(!a.scale_down_safe);
        assert_eq!(a.non_saturated_replicas, 2);
        assert!((a.avg_spare_kv - 0.045).abs() < 1e-12);
        assert!((a.avg_spare_queue - 3.0).abs() < 1e-12);
        assert!(a.reason.contains("spare KV"), "{}", a.reason);
    }

    #[test]
    fn queue_trigger_scales_up() {
        let a = analyze(&[(0.50, 3.0), (0.50, 3.0)]);
        assert!(a.should_scale_up);
        assert!(a.reason.contains("spare queue"), "{}", a.reason);
    }

    #[test]
    fn comfortable_but_not_removable() {
        let a = analyze(&[(0.50, 1.0), (0.50, 1.0)]);
        assert!(!a.should_scale_up);
        assert!(!a.scale_down_safe);
    }

    #[test]
    fn light_load_is_safe_to_scale_down() {
        let a = analyze(&[(0.20, 1.0), (0.30, 1.0), (0.25, 1.0)]);
        assert!(!a.should_scale_up);
        assert!(a.scale_down_safe, "{}", a.reason);
    }

    #[test]
    fn high_kv_is_not_safe_to_scale_down() {
        let a = analyze(&[(0.70, 2.0), (0.75, 2.0)]);
        assert!(!a.scale_down_safe);
    }

    #[test]
    fn single_replica_is_never_scaled_down() {
        let a = analyze(&[(0.50, 2.0)]);
        assert!(!a.should_scale_up);
        assert!(!a.scale_down_safe);
        assert!(a.reason.contains("at least 2"), "{}", a.reason);
    }

    #[test]
    fn no_signals_means_no_decision() {
        let replicas = vec![
            ReplicaSignals {
                pod: "a".into(),
                kv_cache_usage: None,
                queue_length: None,
            };
            2
        ];
        let a = analyze_capacity(&Thresholds::default(), &replicas);
        assert!(a.has_no_signals());
        assert!(!a.should_scale_up);
        assert!(!a.scale_down_safe);
    }

    #[test]
    fn all_saturated_scales_up_with_zero_averages() {
        let a = analyze(&[(0.90, 0.0), (0.10, 6.0)]);
        assert_eq!(a.non_saturated_replicas, 0);
        assert_eq!(a.total_replicas, 2);
        assert_eq!(a.avg_spare_kv, 0.0);
        assert_eq!(a.avg_spare_queue, 0.0);
        assert!(a.should_scale_up);
    }

    #[test]
    fn saturation_is_at_or_above_threshold() {
        let t = Thresholds::default();
        let at = |kv, q| {
            assess_replica(
                &t,
                &ReplicaSignals {
                    pod: "p".into(),
                    kv_cache_usage: kv,
                    queue_length: q,
                },
            )
        };
        assert_eq!(at(Some(0.80), Some(0.0)), ReplicaAssessment::Saturated);
        assert_eq!(at(Some(0.10), Some(5.0)), ReplicaAssessment::Saturated);
        assert!(matches!(
            at(Some(0.79), Some(4.0)),
            ReplicaAssessment::Spare { .. }
        ));
        // A missing signal counts as 0.
        assert_eq!(at(Some(0.85), None), ReplicaAssessment::Saturated);
        assert_eq!(
            at(None, Some(1.0)),
            ReplicaAssessment::Spare {
                kv: 0.80,
                queue: 4.0
            }
        );
        assert_eq!(at(None, None), ReplicaAssessment::NoSignals);
    }

    #[test]
    fn saturated_replicas_are_left_out_of_the_averages() {
        let a = analyze(&[(0.95, 0.0), (0.20, 1.0), (0.30, 1.0)]);
        assert_eq!(a.total_replicas, 3);
        assert_eq!(a.non_saturated_replicas, 2);
        assert!((a.avg_spare_kv - 0.55).abs() < 1e-12);
    }

    #[test]
    fn spare_equal_to_trigger_does_not_scale_up() {
        // 0.8 - 0.7 is 0.10000000000000009 in binary; the trigger comparison must not flip on it.
        let a = analyze(&[(0.70, 0.0), (0.70, 0.0)]);
        assert!(!a.should_scale_up, "{}", a.reason);
    }
}
