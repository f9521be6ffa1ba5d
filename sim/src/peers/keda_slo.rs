//! The SLO-aware KEDA setup of llm-d's autoscaling guide: every polling interval, the ratio of
//! each objective's P90 to the objective (TTFT and ITL over the last minute), the larger of the
//! two, capped at 2.0 and smoothed over 45 s, drives KEDA's HPA with a target of 0.55 per
//! replica and does not scale down until it falls below 0.40 (hysteresis). The metric is a
//! per-replica ratio over all current replicas, so replicas that are still starting are
//! credited: a burst is not answered twice.
//!
//! A variant that finished nothing in the window (idle, or so overloaded that nothing
//! completes) has no P90: `histogram_quantile` over all-zero rates is NaN, and an average over
//! a window holding a NaN stays NaN while it is in the window. KEDA's Prometheus scaler
//! rejects only an empty answer (unless `ignoreNullValues`, its default, turns that into 0) and
//! ±Inf; a NaN goes through, and the HPA reads it as no load. Either way the HPA sees nothing
//! to carry and goes down to its minimum at the pace its behaviour allows, which is what is
//! emulated here: a metric of 0 while a NaN is in the smoothing window.

use std::collections::VecDeque;

use crate::autoscaler::{Actuation, Autoscaler, View};
use crate::hpa::Behavior;
use crate::peers::RecentRequests;
use crate::results::SloTargets;

/// The guide's numbers; the target is the knob, the scale-down threshold keeps its ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KedaSloConfig {
    pub target: f64,
    pub scale_down_below: f64,
    pub cap: f64,
    pub smoothing_ms: f64,
    pub quantile: f64,
}

impl KedaSloConfig {
    pub fn with_target(target: f64) -> Self {
        Self {
            target,
            scale_down_below: target * 0.40 / 0.55,
            cap: 2.0,
            smoothing_ms: 45_000.0,
            quantile: 0.9,
        }
    }
}

/// One variant's smoothing window: the ratio at each poll, `None` where it was NaN (nothing
/// finished in the window).
#[derive(Debug, Default)]
pub struct KedaSlo {
    ratios: VecDeque<(f64, Option<f64>)>,
}

impl KedaSlo {
    /// The metric value KEDA hands its HPA for a variant with `current` replicas: the total
    /// that makes the HPA's `ceil(total / target)` the wanted count (the current count inside
    /// the hysteresis band).
    pub fn metric(
        &mut self,
        now_ms: f64,
        recent: &RecentRequests,
        slo: SloTargets,
        current: u32,
        config: &KedaSloConfig,
    ) -> Option<f64> {
        let ratio = recent
            .latency_quantiles(config.quantile)
            .map(|(ttft, itl)| (ttft / slo.ttft_ms).max(itl / slo.itl_ms).min(config.cap));
        self.ratios.push_back((now_ms, ratio));
        while self
            .ratios
            .front()
            .is_some_and(|(t, _)| *t < now_ms - config.smoothing_ms)
        {
            self.ratios.pop_front();
        }
        // A NaN in the window: the HPA reads no load.
        let Some(sum) = self.ratios.iter().map(|r| r.1).sum::<Option<f64>>() else {
            return Some(0.0);
        };
        let smoothed = sum / self.ratios.len() as f64;
        let per_replica = if smoothed > config.target || smoothed < config.scale_down_below {
            smoothed
        } else {
            config.target
        };
        Some(per_replica * f64::from(current))
    }
}

/// The setup as an autoscaler: KEDA's HPA per variant, on the per-replica ratio, with the
/// chart's behaviour.
#[derive(Debug)]
pub struct KedaSloScaler {
    config: KedaSloConfig,
    windows: Vec<KedaSlo>,
    behavior: Behavior,
}

impl KedaSloScaler {
    pub fn new(target: f64, variants: usize, behavior: Behavior) -> Self {
        Self {
            config: KedaSloConfig::with_target(target),
            windows: (0..variants).map(|_| KedaSlo::default()).collect(),
            behavior,
        }
    }
}

impl Autoscaler for KedaSloScaler {
    fn actuation(&self) -> Actuation {
        Actuation::Hpa {
            target_average_value: self.config.target,
            behavior: self.behavior.clone(),
        }
    }

    fn hpa_metrics(&mut self, view: &View<'_>) -> Vec<Option<f64>> {
        self.windows
            .iter_mut()
            .zip(view.recent)
            .zip(&view.cluster.variants)
            .map(|((window, recent), v)| {
                window.metric(
                    view.now_ms,
                    recent,
                    SloTargets::default(),
                    v.replicas(),
                    &self.config,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Completed;

    fn recent(ttft: f64, itl: f64) -> RecentRequests {
        let mut r = RecentRequests::default();
        for i in 0..20 {
            r.record(&Completed {
                id: i,
                arrival_ms: 0.0,
                finish_ms: 1_000.0,
                ttft_ms: ttft,
                itl_ms: itl,
                prompt_tokens: 100,
                output_tokens: 50,
            });
        }
        r
    }

    #[test]
    fn the_ratio_is_capped_smoothed_and_held_inside_the_band() {
        let config = KedaSloConfig::with_target(0.55);
        let slo = SloTargets::default();
        let mut k = KedaSlo::default();
        // ITL at 40 of 50 ms: 0.8 > 0.55, so 2 replicas × 0.8 = 1.6 → ceil(1.6/0.55) = 3.
        let m = k
            .metric(0.0, &recent(100.0, 40.0), slo, 2, &config)
            .expect("data");
        assert!((m - 1.6).abs() < 1e-9, "{m}");
        // TTFT at 5 s: capped at 2.0, smoothed with the 0.8 before: 1.4.
        let m = k
            .metric(15_000.0, &recent(5_000.0, 10.0), slo, 2, &config)
            .expect("data");
        assert!((m - 2.8).abs() < 1e-9, "{m}");
        // Inside the band (0.40..0.55): the metric says "as many as now".
        let mut calm = KedaSlo::default();
        let m = calm
            .metric(0.0, &recent(100.0, 24.0), slo, 3, &config)
            .expect("data");
        assert!((m - 0.55 * 3.0).abs() < 1e-9, "{m}");
        // Below the band: down.
        let mut idle = KedaSlo::default();
        let m = idle
            .metric(0.0, &recent(100.0, 10.0), slo, 3, &config)
            .expect("data");
        assert!(m < 0.40 * 3.0, "{m}");
    }

    /// Nothing finished in the window: the guide's query is NaN, which KEDA passes on and the
    /// HPA reads as no load, for as long as the NaN stays in the smoothing window.
    #[test]
    fn an_idle_variant_reads_as_no_load_until_the_window_forgets_it() {
        let config = KedaSloConfig::with_target(0.55);
        let slo = SloTargets::default();
        let mut k = KedaSlo::default();
        let busy = recent(100.0, 40.0);
        assert!(k.metric(0.0, &busy, slo, 3, &config).expect("value") > 0.0);
        let idle = RecentRequests::default();
        assert_eq!(k.metric(15_000.0, &idle, slo, 3, &config), Some(0.0));
        // Busy again, but the NaN of 15 s is still within the 45 s window.
        assert_eq!(k.metric(30_000.0, &busy, slo, 3, &config), Some(0.0));
        assert_eq!(k.metric(60_000.0, &busy, slo, 3, &config), Some(0.0));
        // Once it has left the window, the ratio is back.
        let m = k.metric(75_000.0, &busy, slo, 3, &config).expect("value");
        assert!((m - 0.8 * 3.0).abs() < 1e-9, "{m}");
        // The HPA the chart renders takes a metric of 0 down to its minimum, after its
        // scale-down window.
        let mut hpa = crate::hpa::Hpa::new(crate::hpa::HpaSpec {
            behavior: crate::hpa::Behavior::chart(),
            ..Default::default()
        });
        let mut replicas = 4;
        for i in 0..20 {
            replicas = hpa.sync(f64::from(i) * 15_000.0, replicas, Some(0.0));
        }
        assert_eq!(replicas, 1);
    }
}
