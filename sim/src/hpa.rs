//! An emulated HorizontalPodAutoscaler (autoscaling/v2), following the published algorithm:
//! the replica count that brings the metric to its target, no change within the tolerance
//! (10 %), stabilization windows per direction (the highest recommendation of the scale-down
//! window, the lowest of the scale-up window), then rate policies over their periods, and the
//! min/max bounds. Synced every 15 s by the caller. A KEDA-like wrapper adds scaling from and
//! to zero.
//!
//! `inferno_desired_replicas` is consumed as an External metric with target `AverageValue: 1`:
//! the usage ratio is metric / (target × current), so the HPA converges on the published count.

use std::collections::VecDeque;

/// How a policy limits change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

/// One rate policy: at most `value` pods or percent per `period_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingPolicy {
    pub kind: PolicyKind,
    pub value: u32,
    pub period_s: u32,
}

/// Which policy applies when several do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The one allowing the most change (the default).
    Max,
    /// The one allowing the least change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// Scaling rules of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingRules {
    pub stabilization_window_s: u32,
    pub select: SelectPolicy,
    pub policies: Vec<ScalingPolicy>,
}

/// `spec.behavior`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
}

impl Default for Behavior {
    /// Kubernetes' defaults.
    fn default() -> Self {
        Self {
            scale_up: ScalingRules {
                stabilization_window_s: 0,
                select: SelectPolicy::Max,
                policies: vec![
                    ScalingPolicy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period_s: 15,
                    },
                    ScalingPolicy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period_s: 15,
                    },
                ],
            },
            scale_down: ScalingRules {
                stabilization_window_s: 300,
                select: SelectPolicy::Max,
                policies: vec![ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period_s: 15,
                }],
            },
        }
    }
}

/// The HPA object, as far as the algorithm reads it.
impl Behavior {
    /// The behaviour the chart renders: scale up at once, scale down after two minutes, ten
    /// pods per 15 s either way.
    pub fn chart() -> Self {
        let rules = |window: u32| ScalingRules {
            stabilization_window_s: window,
            select: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyKind::Pods,
                value: 10,
                period_s: 15,
            }],
        };
        Self {
            scale_up: rules(0),
            scale_down: rules(120),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HpaSpec {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// External metric target `AverageValue`.
    pub target_average_value: f64,
    /// The controller manager's `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    pub behavior: Behavior,
}

impl Default for HpaSpec {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 10,
            target_average_value: 1.0,
            tolerance: 0.1,
            behavior: Behavior::default(),
        }
    }
}

/// The HPA's memory between syncs: recent recommendations and scale events.
#[derive(Debug, Clone)]
pub struct Hpa {
    pub spec: HpaSpec,
    recommendations: VecDeque<(f64, u32)>,
    /// (time, replicas added: positive up, negative down)
    events: VecDeque<(f64, i64)>,
}

impl Hpa {
    pub fn new(spec: HpaSpec) -> Self {
        Self {
            spec,
            recommendations: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// One sync at `now_ms`: the replica count to set. `metric` is the External metric's total
    /// value (the published desired count); `None` (no metric) leaves the count alone.
    pub fn sync(&mut self, now_ms: f64, current: u32, metric: Option<f64>) -> u32 {
        let Some(metric) = metric.filter(|m| m.is_finite()) else {
            return current;
        };
        if current == 0 {
            // An HPA does not act on a workload scaled to zero.
            return 0;
        }
        // Replica calculator: ratio of the per-pod value to the target, with tolerance.
        let ratio = metric / (self.spec.target_average_value * f64::from(current));
        let proposed = if (ratio - 1.0).abs() <= self.spec.tolerance {
            current
        } else {
            (metric / self.spec.target_average_value).ceil().max(0.0) as u32
        };
        let desired = self.normalize(now_ms, current, proposed);
        if desired != current {
            self.events
                .push_back((now_ms, i64::from(desired) - i64::from(current)));
        }
        desired
    }

    fn normalize(&mut self, now_ms: f64, current: u32, proposed: u32) -> u32 {
        // Stabilization: remember every recommendation; scale down no lower than the highest
        // of the scale-down window, up no higher than the lowest of the scale-up window.
        let b = &self.spec.behavior;
        let longest = f64::from(
            b.scale_up
                .stabilization_window_s
                .max(b.scale_down.stabilization_window_s),
        ) * 1e3;
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t < now_ms - longest)
        {
            self.recommendations.pop_front();
        }
        let (mut up, mut down) = (proposed, proposed);
        let up_cut = now_ms - f64::from(b.scale_up.stabilization_window_s) * 1e3;
        let down_cut = now_ms - f64::from(b.scale_down.stabilization_window_s) * 1e3;
        for &(t, r) in &self.recommendations {
            if t > up_cut {
                up = up.min(r);
            }
            if t > down_cut {
                down = down.max(r);
            }
        }
        self.recommendations.push_back((now_ms, proposed));
        let mut stabilized = current;
        if stabilized < up {
            stabilized = up;
        }
        if stabilized > down {
            stabilized = down;
        }

        // Rate policies, then bounds.
        let desired = if stabilized > current {
            let limit = self.scale_up_limit(now_ms, current);
            stabilized.min(limit).min(self.spec.max_replicas)
        } else if stabilized < current {
            let limit = self.scale_down_limit(now_ms, current);
            stabilized.max(limit).max(self.spec.min_replicas)
        } else {
            stabilized
        };
        desired.clamp(
            self.spec
                .min_replicas
                .min(current.max(self.spec.min_replicas)),
            self.spec.max_replicas,
        )
    }

    fn changed_within(&self, now_ms: f64, period_s: u32, up: bool) -> i64 {
        let cut = now_ms - f64::from(period_s) * 1e3;
        self.events
            .iter()
            .filter(|(t, _)| *t > cut)
            .map(|(_, d)| *d)
            .filter(|d| if up { *d > 0 } else { *d < 0 })
            .map(i64::abs)
            .sum()
    }

    fn scale_up_limit(&self, now_ms: f64, current: u32) -> u32 {
        let rules = &self.spec.behavior.scale_up;
        if rules.select == SelectPolicy::Disabled {
            return current;
        }
        let limits = rules.policies.iter().map(|p| {
            let start =
                (i64::from(current) - self.changed_within(now_ms, p.period_s, true)).max(0) as f64;
            match p.kind {
                PolicyKind::Pods => start as u32 + p.value,
                PolicyKind::Percent => (start * (1.0 + f64::from(p.value) / 100.0)).ceil() as u32,
            }
        });
        match rules.select {
            SelectPolicy::Min => limits.min(),
            _ => limits.max(),
        }
        .unwrap_or(u32::MAX)
    }

    fn scale_down_limit(&self, now_ms: f64, current: u32) -> u32 {
        let rules = &self.spec.behavior.scale_down;
        if rules.select == SelectPolicy::Disabled {
            return current;
        }
        let limits = rules.policies.iter().map(|p| {
            let start = i64::from(current) + self.changed_within(now_ms, p.period_s, false);
            match p.kind {
                PolicyKind::Pods => (start - i64::from(p.value)).max(0) as u32,
                PolicyKind::Percent => {
                    (start as f64 * (1.0 - f64::from(p.value) / 100.0)).max(0.0) as u32
                }
            }
        });
        // Max selects the policy allowing the most change: the lowest floor.
        match rules.select {
            SelectPolicy::Min => limits.max(),
            _ => limits.min(),
        }
        .unwrap_or(0)
    }
}

/// KEDA's scaling on top of its HPA: from zero to one as soon as the metric is positive, and to
/// zero after the metric has been zero for the cooldown period.
#[derive(Debug, Clone)]
pub struct Keda {
    pub hpa: Hpa,
    pub cooldown_s: u32,
    last_active_ms: Option<f64>,
}

impl Keda {
    pub fn new(hpa: HpaSpec, cooldown_s: u32) -> Self {
        Self {
            hpa: Hpa::new(HpaSpec {
                min_replicas: hpa.min_replicas.max(1),
                ..hpa
            }),
            cooldown_s,
            last_active_ms: None,
        }
    }

    pub fn sync(&mut self, now_ms: f64, current: u32, metric: Option<f64>) -> u32 {
        let Some(value) = metric.filter(|m| m.is_finite()) else {
            return current;
        };
        if value > 0.0 {
            self.last_active_ms = Some(now_ms);
            if current == 0 {
                return 1;
            }
            return self.hpa.sync(now_ms, current, Some(value));
        }
        let idle_for = self.last_active_ms.map_or(f64::INFINITY, |t| now_ms - t);
        if current > 0 && idle_for >= f64::from(self.cooldown_s) * 1e3 {
            return 0;
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa() -> Hpa {
        Hpa::new(HpaSpec {
            max_replicas: 20,
            ..HpaSpec::default()
        })
    }

    #[test]
    fn follows_the_published_count_outside_the_tolerance() {
        let mut h = hpa();
        assert_eq!(h.sync(0.0, 10, Some(10.5)), 10, "ratio 1.05 is within 10 %");
        assert_eq!(
            h.sync(15_000.0, 10, Some(11.5)),
            12,
            "ratio 1.15: ceil(11.5)"
        );
        assert_eq!(h.sync(30_000.0, 12, None), 12, "no metric, no change");
    }

    #[test]
    fn scale_up_rate_is_the_larger_of_100_percent_and_4_pods() {
        let mut h = hpa();
        // From 2: 100 % allows 4, 4 pods allow 6; Max picks 6.
        assert_eq!(h.sync(0.0, 2, Some(15.0)), 6);
        // Within the same 15 s period, the 4 added count against both policies: start 2 again.
        assert_eq!(h.sync(5_000.0, 6, Some(15.0)), 6);
        // A new period starts from 6: 100 % allows 12, 4 pods allow 10.
        assert_eq!(h.sync(20_000.0, 6, Some(15.0)), 12);
        assert_eq!(h.sync(40_000.0, 12, Some(15.0)), 15);
    }

    #[test]
    fn scale_down_waits_out_the_stabilization_window() {
        let mut h = hpa();
        assert_eq!(h.sync(0.0, 8, Some(8.0)), 8);
        // The metric drops to 2: the highest recommendation of the last 300 s is still 8.
        for t in (15..300).step_by(15) {
            assert_eq!(h.sync(f64::from(t) * 1e3, 8, Some(2.0)), 8, "t={t}");
        }
        // A recommendation counts while strictly after the window's start: at 300 s the 8 of
        // t=0 has left it.
        assert_eq!(h.sync(300_000.0, 8, Some(2.0)), 2);
    }

    #[test]
    fn scale_down_policies_limit_the_rate() {
        let mut spec = HpaSpec {
            max_replicas: 20,
            ..HpaSpec::default()
        };
        spec.behavior.scale_down = ScalingRules {
            stabilization_window_s: 0,
            select: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                kind: PolicyKind::Pods,
                value: 1,
                period_s: 60,
            }],
        };
        let mut h = Hpa::new(spec);
        assert_eq!(h.sync(0.0, 10, Some(3.0)), 9);
        assert_eq!(h.sync(15_000.0, 9, Some(3.0)), 9, "one pod per 60 s");
        assert_eq!(h.sync(61_000.0, 9, Some(3.0)), 8);
    }

    #[test]
    fn disabled_direction_and_bounds() {
        let mut spec = HpaSpec {
            min_replicas: 2,
            max_replicas: 5,
            ..HpaSpec::default()
        };
        spec.behavior.scale_down.select = SelectPolicy::Disabled;
        spec.behavior.scale_down.stabilization_window_s = 0;
        let mut h = Hpa::new(spec);
        assert_eq!(h.sync(0.0, 4, Some(50.0)), 5, "max bound");
        assert_eq!(h.sync(15_000.0, 5, Some(1.0)), 5, "scale-down disabled");
        let mut h = Hpa::new(HpaSpec {
            min_replicas: 2,
            max_replicas: 5,
            ..HpaSpec::default()
        });
        h.spec.behavior.scale_down.stabilization_window_s = 0;
        assert_eq!(h.sync(0.0, 4, Some(1.0)), 2, "min bound");
    }

    #[test]
    fn keda_scales_from_and_to_zero() {
        let mut k = Keda::new(
            HpaSpec {
                min_replicas: 0,
                ..HpaSpec::default()
            },
            300,
        );
        assert_eq!(k.sync(0.0, 0, Some(0.0)), 0);
        assert_eq!(k.sync(15_000.0, 0, Some(1.0)), 1, "activation");
        assert_eq!(k.sync(30_000.0, 1, Some(3.0)), 3);
        assert_eq!(k.sync(45_000.0, 3, Some(0.0)), 3, "cooling down");
        assert_eq!(
            k.sync(330_000.0, 3, Some(0.0)),
            0,
            "idle for the cooldown period"
        );
    }
}
