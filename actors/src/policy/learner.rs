//! Online estimation of a variant's latency parameters from what its servers report: the decode
//! step against the batch size, and the prefill time against the prompt length.
//!
//! Each relation is a line fitted by recursive least squares with a forgetting factor, so the
//! estimate follows a server whose behaviour drifts (new vLLM version, other traffic mix).
//! - **Bootstrap**: the first observation seeds the line through a prior slope (a decode step
//!   grows about 2 % per request in the batch; prefill is mostly per token), with a wide
//!   covariance so that later data moves it freely. Until [`MIN_SAMPLES`] observations have
//!   been accepted for both lines the parameters are not used ([`LatencyLearner::converged`]).
//! - **Outliers**: once warmed up, an observation whose residual exceeds four running standard
//!   deviations (and 25 % of the prediction) is rejected and counted, not learned. A run of
//!   [`RESEED_AFTER`] rejections in a row means the line is wrong, not the data (a bad first
//!   window, a server that changed): the line is seeded again from the latest observation.
//! - **Physical bounds**: intercepts and slopes never go negative; a step that would take the
//!   intercept below zero holds it at zero and keeps the line through the value fitted at that
//!   load.
//! - **Queueing taken out of TTFT**: a request's TTFT is its wait in the queue plus its prefill.
//!   The wait is the mean queue over the window divided by the rate (Little's law), subtracted
//!   before the prefill line learns; windows where the wait is most of the TTFT teach nothing.
//! - **A prior after a bounded time**: traffic that queues in every window would keep the
//!   prefill line from ever converging (and the optimizer out for good). After
//!   [`PREFILL_PRIOR_AFTER`] decode windows the prefill line is used as it stands, seeded from
//!   the best window seen, and [`LatencyLearner::prefill_on_prior`] says so.

use serde::{Deserialize, Serialize};

use super::queueing::LatencyParams;

/// Accepted observations per line before the parameters are used.
pub const MIN_SAMPLES: u32 = 5;
/// Share of the first TTFT attributed to per-token prefill work.
const PREFILL_SLOPE_SHARE: f64 = 0.9;
/// Weight kept by the past at each new observation (an effective memory of ~30 cycles).
const FORGETTING: f64 = 0.97;
const PRIOR_VARIANCE: f64 = 1e4;
/// Decode windows after which an unconverged prefill line is used as a prior.
pub const PREFILL_PRIOR_AFTER: u32 = 15;
/// The largest share of a window's TTFT the queueing wait may take for the window to teach
/// the prefill line.
const MAX_QUEUE_SHARE: f64 = 0.5;
/// Consecutive rejections after which a line starts over.
pub const RESEED_AFTER: u32 = 3;

/// One line `y = a + b·x`, fitted online.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineFit {
    pub intercept: f64,
    pub slope: f64,
    /// Covariance of (intercept, slope), row-major.
    pub covariance: [f64; 4],
    /// Running mean of squared residuals.
    pub residual_variance: f64,
    pub accepted: u32,
    pub rejected: u32,
    /// Rejections since the last accepted observation.
    pub rejected_in_a_row: u32,
}

impl LineFit {
    pub(crate) fn seeded(x: f64, y: f64, prior_slope_share: f64) -> Self {
        // Split y between intercept and slope·x: the slope carries `prior_slope_share` of it.
        let slope = if x > 0.0 {
            y * prior_slope_share / x
        } else {
            0.0
        };
        Self {
            intercept: (y - slope * x).max(0.0),
            slope,
            covariance: [
                PRIOR_VARIANCE,
                0.0,
                0.0,
                PRIOR_VARIANCE / x.max(1.0).powi(2),
            ],
            residual_variance: (0.1 * y).powi(2),
            accepted: 1,
            rejected: 0,
            rejected_in_a_row: 0,
        }
    }

    pub fn predict(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }

    /// Learns from (x, y) unless it is an outlier; returns whether it was accepted.
    pub(crate) fn observe(&mut self, x: f64, y: f64, prior_slope_share: f64) -> bool {
        let predicted = self.predict(x);
        let residual = y - predicted;
        if self.accepted >= MIN_SAMPLES {
            let limit = (4.0 * self.residual_variance.sqrt()).max(0.25 * predicted.abs());
            if residual.abs() > limit {
                self.rejected += 1;
                self.rejected_in_a_row += 1;
                if self.rejected_in_a_row >= RESEED_AFTER {
                    let rejected = self.rejected;
                    *self = Self::seeded(x, y, prior_slope_share);
                    self.rejected = rejected;
                    return true;
                }
                return false;
            }
        }
        self.rejected_in_a_row = 0;
        // Recursive least squares with forgetting: gain k = P·φ / (λ + φᵀ·P·φ), φ = (1, x).
        let [p00, p01, p10, p11] = self.covariance;
        let pf0 = p00 + p01 * x;
        let pf1 = p10 + p11 * x;
        let denominator = FORGETTING + pf0 + x * pf1;
        let (k0, k1) = (pf0 / denominator, pf1 / denominator);
        self.intercept += k0 * residual;
        self.slope += k1 * residual;
        // P ← (P − k·φᵀ·P) / λ
        let (f0, f1) = (p00 + x * p10, p01 + x * p11);
        self.covariance = [
            (p00 - k0 * f0) / FORGETTING,
            (p01 - k0 * f1) / FORGETTING,
            (p10 - k1 * f0) / FORGETTING,
            (p11 - k1 * f1) / FORGETTING,
        ];
        let fitted = self.predict(x).max(0.0);
        if self.slope < 0.0 {
            self.slope = 0.0;
        }
        // An intercept the step took below zero is held at zero and the slope keeps the line
        // through the value the step fitted at this load: clamping the intercept alone moved
        // the line away from the data, and the residuals that followed, widening the outlier
        // bound, let it run off (the prefill line of an H100 at a near-constant load reached an
        // intercept of seconds for a TTFT of 33 ms). A slope held at zero keeps its intercept:
        // the line then stays above the data rather than flat through it, and the next steps
        // bring the slope back (a flat decode line would say a batch costs nothing).
        if self.intercept < 0.0 {
            self.intercept = 0.0;
            self.slope = if x > 0.0 { fitted / x } else { 0.0 };
        }
        self.residual_variance = 0.9 * self.residual_variance + 0.1 * residual * residual;
        self.accepted += 1;
        true
    }
}

/// What one variant's servers showed over the last window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyObservation {
    /// Mean requests in the batch per replica.
    pub batch: f64,
    /// Requests per second per replica.
    pub rate_rps: f64,
    pub mean_input_tokens: f64,
    /// Mean inter-token latency, ms.
    pub itl_ms: f64,
    /// Mean time to first token, ms.
    pub ttft_ms: f64,
    /// Mean waiting requests per replica over the window; the wait it implies is taken out of
    /// the TTFT before the prefill line learns.
    pub waiting: f64,
}

impl LatencyObservation {
    /// A pooled window as the learner reads it: only windows that served something teach
    /// latencies.
    pub fn of(s: &super::serving::ServingSummary) -> Option<Self> {
        (s.rate_rps > 0.0 && s.itl_ms > 0.0 && s.ttft_ms > 0.0 && s.pods > 0).then(|| Self {
            batch: s.batch,
            rate_rps: s.rate_rps / s.pods as f64,
            mean_input_tokens: s.mean_input_tokens,
            itl_ms: s.itl_ms,
            ttft_ms: s.ttft_ms,
            waiting: s.waiting,
        })
    }

    fn usable(&self) -> bool {
        [
            self.batch,
            self.rate_rps,
            self.mean_input_tokens,
            self.itl_ms,
            self.ttft_ms,
            self.waiting,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
            && self.itl_ms > 0.0
            && self.ttft_ms > 0.0
    }
}

/// The learner of one variant: decode step ~ batch, prefill ~ prompt tokens.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyLearner {
    pub decode: Option<LineFit>,
    pub prefill: Option<LineFit>,
}

impl LatencyLearner {
    /// Learns from one window; returns whether anything was learned.
    pub fn observe(&mut self, o: &LatencyObservation) -> bool {
        if !o.usable() {
            return false;
        }
        let mut learned = false;
        // Prefill first: its slope removes the prefill stretch from the observed ITL.
        // Little's law: the mean wait in the queue is the mean queue over the arrival rate.
        let queue_wait_ms = if o.rate_rps > 0.0 {
            1e3 * o.waiting / o.rate_rps
        } else {
            f64::INFINITY
        };
        let prefill_ms = o.ttft_ms - queue_wait_ms;
        if queue_wait_ms <= MAX_QUEUE_SHARE * o.ttft_ms {
            learned |= match &mut self.prefill {
                Some(fit) => fit.observe(o.mean_input_tokens, prefill_ms, PREFILL_SLOPE_SHARE),
                None => {
                    self.prefill = Some(LineFit::seeded(
                        o.mean_input_tokens,
                        prefill_ms,
                        PREFILL_SLOPE_SHARE,
                    ));
                    true
                }
            };
        } else if prefill_ms > 0.0
            && self
                .prefill
                .is_none_or(|f| f.accepted == 0 && f.predict(o.mean_input_tokens) > prefill_ms)
        {
            // Only queued windows so far: keep the lowest prefill they imply as the prior
            // (the subtraction can only err towards too long a prefill).
            self.prefill = Some(LineFit {
                accepted: 0,
                ..LineFit::seeded(o.mean_input_tokens, prefill_ms, PREFILL_SLOPE_SHARE)
            });
            learned = true;
        }
        let delta = self.prefill.map_or(0.0, |f| f.slope);
        let prefill_share = (o.rate_rps * o.mean_input_tokens * delta / 1e3).clamp(0.0, 0.9);
        let decode_step = o.itl_ms * (1.0 - prefill_share);
        // About 2 % of a step per request in the batch.
        let share = 0.02 * o.batch / (1.0 + 0.02 * o.batch);
        learned |= match &mut self.decode {
            Some(fit) => fit.observe(o.batch, decode_step, share),
            None => {
                self.decode = Some(LineFit::seeded(o.batch, decode_step, share));
                true
            }
        };
        learned
    }

    pub fn converged(&self) -> bool {
        matches!((&self.decode, &self.prefill), (Some(d), Some(p)) if d.accepted >= MIN_SAMPLES
            && (p.accepted >= MIN_SAMPLES || d.accepted + d.rejected >= PREFILL_PRIOR_AFTER))
    }

    /// Whether the parameters in use take the prefill line as a prior (it has not converged
    /// within [`PREFILL_PRIOR_AFTER`] windows).
    pub fn prefill_on_prior(&self) -> bool {
        self.converged() && self.prefill.is_some_and(|p| p.accepted < MIN_SAMPLES)
    }

    /// The parameters, once converged.
    pub fn params(&self) -> Option<LatencyParams> {
        if !self.converged() {
            return None;
        }
        let (d, p) = (self.decode?, self.prefill?);
        Some(LatencyParams {
            alpha_ms: d.intercept,
            beta_ms: d.slope,
            gamma_ms: p.intercept,
            delta_ms: p.slope,
        })
    }

    /// Accepted and rejected observations, for the log and the status.
    pub fn samples(&self) -> (u32, u32) {
        let count = |f: &Option<LineFit>| f.map_or((0, 0), |f| (f.accepted, f.rejected));
        let (da, dr) = count(&self.decode);
        let (pa, pr) = count(&self.prefill);
        (da.min(pa), dr + pr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observations from a server with known parameters, with deterministic ±3 % noise.
    fn observations(truth: LatencyParams, count: usize) -> Vec<LatencyObservation> {
        (0..count)
            .map(|i| {
                let batch = 4.0 + (i * 37 % 120) as f64;
                let input = 300.0 + (i * 53 % 900) as f64;
                let rate = 0.5 + (i % 7) as f64;
                let noise = 1.0 + 0.03 * (((i * 7919) % 13) as f64 / 6.0 - 1.0);
                let share = rate * input * truth.delta_ms / 1e3;
                LatencyObservation {
                    batch,
                    rate_rps: rate,
                    mean_input_tokens: input,
                    itl_ms: (truth.alpha_ms + truth.beta_ms * batch) / (1.0 - share) * noise,
                    ttft_ms: (truth.gamma_ms + truth.delta_ms * input) * noise,
                    waiting: 0.0,
                }
            })
            .collect()
    }

    const TRUTH: LatencyParams = LatencyParams {
        alpha_ms: 12.0,
        beta_ms: 0.3,
        gamma_ms: 15.0,
        delta_ms: 0.06,
    };

    #[test]
    fn converges_on_known_parameters() {
        let mut learner = LatencyLearner::default();
        for (i, o) in observations(TRUTH, 60).iter().enumerate() {
            learner.observe(o);
            if i + 1 < MIN_SAMPLES as usize {
                assert!(
                    learner.params().is_none(),
                    "not before {MIN_SAMPLES} samples"
                );
            }
        }
        let p = learner.params().expect("converged");
        let close = |got: f64, want: f64| (got - want).abs() / want < 0.1;
        assert!(close(p.alpha_ms, TRUTH.alpha_ms), "{p:?}");
        assert!(close(p.beta_ms, TRUTH.beta_ms), "{p:?}");
        assert!(close(p.gamma_ms, TRUTH.gamma_ms), "{p:?}");
        assert!(close(p.delta_ms, TRUTH.delta_ms), "{p:?}");
    }

    #[test]
    fn outliers_are_rejected_not_learned() {
        let mut learner = LatencyLearner::default();
        let obs = observations(TRUTH, 40);
        for o in &obs {
            learner.observe(o);
        }
        let before = learner.params().expect("converged");
        // A scrape glitch: ITL and TTFT ten times too high.
        let glitch = LatencyObservation {
            itl_ms: obs[3].itl_ms * 10.0,
            ttft_ms: obs[3].ttft_ms * 10.0,
            ..obs[3]
        };
        assert!(!learner.observe(&glitch));
        assert_eq!(learner.params(), Some(before));
        assert!(learner.samples().1 >= 2);
    }

    #[test]
    fn a_line_held_at_a_bound_stays_with_its_data() {
        // (prefill load, prefill ms) of an emulated H100 at a near-constant 17 rps: a narrow
        // spread of loads and a noisy TTFT, where a step takes the intercept below zero.
        // Clamping it alone once made the line run off to an intercept of hundreds of ms.
        let windows = [
            (0.336, 33.3),
            (0.331, 32.0),
            (0.334, 31.7),
            (0.328, 31.5),
            (0.332, 31.0),
            (0.334, 31.6),
            (0.234, 21.2),
            (0.229, 21.0),
            (0.234, 21.4),
            (0.229, 21.3),
            (0.163, 18.2),
            (0.26, 31.4),
            (0.221, 29.9),
            (0.199, 30.3),
            (0.209, 30.8),
            (0.203, 30.3),
            (0.193, 29.9),
            (0.187, 28.9),
            (0.186, 28.9),
            (0.171, 28.3),
            (0.184, 28.4),
            (0.184, 29.1),
            (0.196, 29.8),
            (0.215, 30.6),
            (0.202, 30.7),
            (0.207, 29.9),
            (0.216, 30.3),
            (0.249, 31.2),
            (0.296, 31.7),
            (0.215, 20.6),
            (0.245, 21.7),
            (0.267, 22.8),
            (0.298, 24.7),
            (0.298, 24.7),
            (0.419, 34.5),
            (0.412, 34.3),
            (0.37, 32.3),
            (0.366, 31.9),
            (0.391, 33.4),
            (0.384, 33.1),
        ];
        let share = |x: f64| x / (1.0 + x);
        let (x0, y0) = windows[0];
        let mut line = LineFit::seeded(x0, y0, share(x0));
        for &(x, y) in &windows[1..] {
            line.observe(x, y, share(x));
            assert!(line.intercept >= 0.0 && line.slope >= 0.0, "{line:?}");
            // Wherever the windows were, the line stays within the latencies they showed.
            for load in [0.2, 0.3, 0.4] {
                let at = line.predict(load);
                assert!((10.0..=45.0).contains(&at), "{at} ms at {load}: {line:?}");
            }
        }
    }

    #[test]
    fn a_wrong_start_is_unlearned() {
        // The first window came from a server still warming up: TTFT and ITL 50 times too high.
        let obs = observations(TRUTH, 80);
        let mut learner = LatencyLearner::default();
        for o in obs.iter().take(MIN_SAMPLES as usize) {
            learner.observe(&LatencyObservation {
                itl_ms: o.itl_ms * 50.0,
                ttft_ms: o.ttft_ms * 50.0,
                ..*o
            });
        }
        for o in &obs {
            learner.observe(o);
        }
        let p = learner.params().expect("converged");
        assert!(
            (p.alpha_ms - TRUTH.alpha_ms).abs() / TRUTH.alpha_ms < 0.15,
            "{p:?}"
        );
        assert!(
            (p.delta_ms - TRUTH.delta_ms).abs() / TRUTH.delta_ms < 0.15,
            "{p:?}"
        );
    }

    #[test]
    fn unusable_windows_teach_nothing() {
        let mut learner = LatencyLearner::default();
        let mut o = observations(TRUTH, 1)[0];
        o.itl_ms = f64::NAN;
        assert!(!learner.observe(&o));
        o.itl_ms = 0.0;
        assert!(!learner.observe(&o));
        assert_eq!(learner, LatencyLearner::default());
    }

    #[test]
    fn the_queueing_wait_is_taken_out_of_ttft() {
        let mut learner = LatencyLearner::default();
        for mut o in observations(TRUTH, 40) {
            // Every window queued for 20 ms on average (Little: queue = rate · wait).
            let wait_ms = 20.0;
            o.waiting = wait_ms * o.rate_rps / 1e3;
            o.ttft_ms += wait_ms;
            learner.observe(&o);
        }
        let p = learner.params().expect("converged");
        assert!(!learner.prefill_on_prior());
        let close = |got: f64, want: f64| (got - want).abs() / want < 0.1;
        assert!(close(p.gamma_ms, TRUTH.gamma_ms), "{p:?}");
        assert!(close(p.delta_ms, TRUTH.delta_ms), "{p:?}");
    }

    #[test]
    fn traffic_that_always_queues_gets_a_prior_after_a_bounded_time() {
        let mut learner = LatencyLearner::default();
        let windows = observations(TRUTH, PREFILL_PRIOR_AFTER as usize + 5);
        for (i, mut o) in windows.into_iter().enumerate() {
            // The wait is ten times the prefill: no window teaches the line.
            let wait_ms = 10.0 * o.ttft_ms;
            o.waiting = wait_ms * o.rate_rps / 1e3;
            o.ttft_ms += wait_ms;
            learner.observe(&o);
            if (i as u32) + 1 < PREFILL_PRIOR_AFTER {
                assert!(learner.params().is_none(), "window {i}");
            }
        }
        let p = learner.params().expect("a prior after a bounded time");
        assert!(learner.prefill_on_prior());
        // The prior comes from the least queued window and errs long, never short.
        let truth_at_600 = TRUTH.gamma_ms + TRUTH.delta_ms * 600.0;
        let prior_at_600 = p.gamma_ms + p.delta_ms * 600.0;
        assert!(prior_at_600 >= 0.9 * truth_at_600, "{p:?}");
    }
}
