//! Knative's pod autoscaler: concurrency per pod averaged over a 60 s stable window and a 6 s
//! panic window (entered when the panic window wants twice the ready pods), sampled every 2 s,
//! scaling down at most by half at a time.

use std::collections::VecDeque;

use crate::autoscaler::{Actuation, Autoscaler, View};

/// Knative's windows over one variant's concurrency samples.
#[derive(Debug, Default)]
pub struct KpaState {
    samples: VecDeque<(f64, f64)>,
    panic_until: f64,
}

impl KpaState {
    const STABLE_MS: f64 = 60_000.0;
    const PANIC_MS: f64 = 6_000.0;
    /// How often the autoscaler samples.
    pub const INTERVAL_MS: f64 = 2_000.0;

    pub fn desired(
        &mut self,
        t: f64,
        concurrency: f64,
        target: f64,
        current: u32,
        ready: u32,
        max: u32,
    ) -> u32 {
        self.samples.push_back((t, concurrency));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| *at <= t - Self::STABLE_MS)
        {
            self.samples.pop_front();
        }
        let mean = |window: f64| {
            let w: Vec<f64> = self
                .samples
                .iter()
                .filter(|(at, _)| *at > t - window)
                .map(|s| s.1)
                .collect();
            w.iter().sum::<f64>() / w.len().max(1) as f64
        };
        let stable = (mean(Self::STABLE_MS) / target).ceil() as u32;
        let panic = (mean(Self::PANIC_MS) / target).ceil() as u32;
        if ready > 0 && f64::from(panic) / f64::from(ready) >= 2.0 {
            self.panic_until = t + Self::STABLE_MS;
        }
        let desired = if t < self.panic_until {
            panic.max(current)
        } else {
            stable
        };
        // At most halve the ready pods per decision (max-scale-down-rate 2).
        desired.max(ready.div_ceil(2)).clamp(1, max)
    }
}

/// Knative's autoscaler on every variant: it sets the replicas itself every two seconds.
#[derive(Debug)]
pub struct KpaScaler {
    target_concurrency: f64,
    states: Vec<KpaState>,
    max_replicas: Vec<u32>,
}

impl KpaScaler {
    pub fn new(target_concurrency: f64, max_replicas: Vec<u32>) -> Self {
        Self {
            target_concurrency,
            states: max_replicas.iter().map(|_| KpaState::default()).collect(),
            max_replicas,
        }
    }
}

impl Autoscaler for KpaScaler {
    fn actuation(&self) -> Actuation {
        Actuation::Direct {
            interval_ms: KpaState::INTERVAL_MS,
        }
    }

    fn direct_targets(&mut self, view: &View<'_>) -> Vec<u32> {
        let t = view.now_ms;
        // Requests held at the gateway (Knative's activator) count for every revision.
        let held = view.cluster.gateway.len() as f64 / view.cluster.variants.len() as f64;
        self.states
            .iter_mut()
            .zip(&view.cluster.variants)
            .zip(&self.max_replicas)
            .map(|((state, v), &max)| {
                let concurrency = v
                    .servers
                    .iter()
                    .filter(|s| s.is_ready(t))
                    .map(|s| s.in_system() as f64)
                    .sum::<f64>()
                    + held;
                state.desired(
                    t,
                    concurrency,
                    self.target_concurrency,
                    v.replicas(),
                    v.ready(t),
                    max,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_panics_and_the_stable_window_brings_it_down_by_halves() {
        let mut k = KpaState::default();
        // 10 concurrent on a target of 5 with one ready pod: panic, 2 pods at once.
        assert_eq!(k.desired(0.0, 10.0, 5.0, 1, 1, 10), 2);
        // A burst to 40: the panic window follows it, never below current.
        assert_eq!(k.desired(2_000.0, 40.0, 5.0, 2, 2, 10), 5);
        // Long after, idle: the stable window decides, halving at most.
        let mut t = 2_000.0;
        let mut current = 8;
        while t < 200_000.0 {
            t += 2_000.0;
            current = k.desired(t, 0.0, 5.0, current, current, 10);
        }
        assert_eq!(current, 1);
    }
}
