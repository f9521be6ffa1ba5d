//! A queueing model of one continuous-batching server, and the largest arrival rate one replica
//! can take while the service-class targets hold.
//!
//! The server holds up to `max_batch` requests at once (vLLM's `max-num-seqs`). A request
//! occupies a batch slot from admission to its last token: its prefill, then one decode step per
//! further output token. So the batch behaves like `max_batch` parallel servers (M/M/c), and:
//!
//! - decode step at batch `n`: `alpha + beta·n` ms, stretched by the prefill work that chunked
//!   prefill mixes into the same iterations: with prompt tokens arriving at `λ·I` per second and
//!   `delta` ms per prompt token, a share `ρp = λ·I·delta/1000` of every second goes to prefill,
//!   so `ITL(n) = (alpha + beta·n) / (1 − ρp)`;
//! - service time of a request: `S = prefill + (O − 1)·ITL(n)`, `prefill = gamma + delta·I`;
//! - Little's law gives the mean batch: `n = λ·S/1000`, a fixed point solved in closed form
//!   (S is linear in n);
//! - waiting for a slot: Erlang C with `c = max_batch` servers and offered load `a = n`:
//!   `Wq = C(c, a)·S/(c − a)`; TTFT = `Wq + prefill`.
//!
//! Everything is in milliseconds and requests per second.

use serde::{Deserialize, Serialize};

/// Per-variant latency parameters (what the learner estimates).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyParams {
    /// Decode step at an empty batch, ms.
    pub alpha_ms: f64,
    /// Added to a decode step per request in the batch, ms.
    pub beta_ms: f64,
    /// Fixed part of a prefill, ms.
    pub gamma_ms: f64,
    /// Prefill time per prompt token, ms.
    pub delta_ms: f64,
}

/// What the model serves: demand and mean request shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Requests per second arriving for the whole model.
    pub arrival_rps: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
}

/// Service-class targets of a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyTargets {
    pub ttft_ms: f64,
    pub itl_ms: f64,
}

impl Default for LatencyTargets {
    /// The targets used when no service class names the model.
    fn default() -> Self {
        Self {
            ttft_ms: 1_000.0,
            itl_ms: 50.0,
        }
    }
}

/// The steady state of one replica at an arrival rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatingPoint {
    pub rate_rps: f64,
    /// Mean requests in the batch.
    pub batch: f64,
    pub itl_ms: f64,
    pub ttft_ms: f64,
}

/// Erlang C: the probability that an arrival waits, with `c` servers and offered load `a`
/// erlangs (`a < c`). Computed through the Erlang B recursion, which stays stable for hundreds
/// of servers.
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if a <= 0.0 {
        return 0.0;
    }
    let cf = f64::from(c);
    if a >= cf {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    (cf * b / (cf - a * (1.0 - b))).clamp(0.0, 1.0)
}

/// The steady state of one replica serving `rate_rps`, or `None` when it cannot keep up (the
/// batch would fill, or prefill alone would take all its time).
pub fn operating_point(
    p: &LatencyParams,
    max_batch: u32,
    rate_rps: f64,
    input_tokens: f64,
    output_tokens: f64,
) -> Option<OperatingPoint> {
    if rate_rps < 0.0 || !rate_rps.is_finite() {
        return None;
    }
    let prefill = p.gamma_ms + p.delta_ms * input_tokens;
    let prefill_share = rate_rps * input_tokens * p.delta_ms / 1e3;
    if prefill_share >= 1.0 {
        return None;
    }
    let stretch = 1.0 / (1.0 - prefill_share);
    let decodes = (output_tokens - 1.0).max(0.0);
    // n = λ/1000 · (prefill + decodes·stretch·(alpha + beta·n)), solved for n.
    let k = rate_rps / 1e3;
    let denominator = 1.0 - k * decodes * stretch * p.beta_ms;
    if denominator <= 0.0 {
        return None;
    }
    let batch = k * (prefill + decodes * stretch * p.alpha_ms) / denominator;
    if batch >= f64::from(max_batch) {
        return None;
    }
    let itl = stretch * (p.alpha_ms + p.beta_ms * batch);
    let service = prefill + decodes * itl;
    let wait = if batch > 0.0 {
        erlang_c(max_batch, batch) * service / (f64::from(max_batch) - batch)
    } else {
        0.0
    };
    Some(OperatingPoint {
        rate_rps,
        batch,
        itl_ms: itl,
        ttft_ms: wait + prefill,
    })
}

/// The largest rate one replica takes with both targets met, and its operating point; `None`
/// when even an idle replica misses a target (the targets are out of this accelerator's reach).
pub fn max_rate_per_replica(
    p: &LatencyParams,
    max_batch: u32,
    input_tokens: f64,
    output_tokens: f64,
    targets: &LatencyTargets,
) -> Option<OperatingPoint> {
    let meets = |rate: f64| {
        operating_point(p, max_batch, rate, input_tokens, output_tokens)
            .filter(|op| op.itl_ms <= targets.itl_ms && op.ttft_ms <= targets.ttft_ms)
    };
    let idle = meets(0.0)?;
    // Grow an upper bound until the targets break, then bisect. Both loops are bounded.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut best = idle;
    for _ in 0..40 {
        match meets(hi) {
            Some(op) => {
                best = op;
                lo = hi;
                hi *= 2.0;
            }
            None => break,
        }
    }
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        match meets(mid) {
            Some(op) => {
                best = op;
                lo = mid;
            }
            None => hi = mid,
        }
        if hi - lo < 1e-6 * hi.max(1e-9) {
            break;
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LatencyParams = LatencyParams {
        alpha_ms: 10.0,
        beta_ms: 0.1,
        gamma_ms: 20.0,
        delta_ms: 0.05,
    };

    #[test]
    fn erlang_c_matches_hand_worked_values() {
        // One server: C = a (M/M/1 waits with probability ρ).
        assert!((erlang_c(1, 0.5) - 0.5).abs() < 1e-12);
        // Two servers, a = 1: B(2,1) = 0.2, C = 2·0.2/(2 − 1·0.8) = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(erlang_c(4, 0.0), 0.0);
        assert_eq!(erlang_c(4, 4.0), 1.0);
        // Many servers at moderate load almost never wait.
        assert!(erlang_c(256, 128.0) < 1e-12);
    }

    #[test]
    fn operating_point_by_hand() {
        // λ = 2/s, I = 200, O = 101: prefill = 20 + 0.05·200 = 30 ms; ρp = 2·200·0.05/1000
        // = 0.02, stretch = 1/0.98; decodes = 100. n = 0.002·(30 + 100·10/0.98) /
        // (1 − 0.002·100·0.1/0.98) = 0.002·1050.408 / 0.979592 = 2.14458.
        let op = operating_point(&P, 256, 2.0, 200.0, 101.0).expect("stable");
        let stretch = 1.0 / 0.98;
        let n = 0.002 * (30.0 + 100.0 * 10.0 * stretch) / (1.0 - 0.002 * 100.0 * 0.1 * stretch);
        assert!((op.batch - n).abs() < 1e-9, "{op:?}");
        assert!((op.itl_ms - stretch * (10.0 + 0.1 * n)).abs() < 1e-9);
        // Little's law closes: n = λ·S.
        let service = 30.0 + 100.0 * op.itl_ms;
        assert!((op.batch - 2.0 * service / 1e3).abs() < 1e-9);
        // No queueing for slots at n ≈ 2 of 256: TTFT is the prefill.
        assert!((op.ttft_ms - 30.0).abs() < 1e-9);
    }

    #[test]
    fn overload_has_no_operating_point() {
        // Prefill alone: 1000 requests/s of 200 tokens at 0.05 ms each is 10 s of work a second.
        assert!(operating_point(&P, 256, 1_000.0, 200.0, 10.0).is_none());
        // A batch limit of 2 cannot hold n ≈ 2.14.
        assert!(operating_point(&P, 2, 2.0, 200.0, 101.0).is_none());
    }

    #[test]
    fn the_itl_target_binds_where_the_formula_says() {
        // ITL target 20 ms, no prefill stretch to speak of (I = 1): the batch may reach
        // n = (20·(1 − ρp) − 10)/0.1 ≈ 100; the rate that gives it follows from Little's law.
        let p = LatencyParams { delta_ms: 0.0, ..P };
        let targets = LatencyTargets {
            ttft_ms: 10_000.0,
            itl_ms: 20.0,
        };
        let best = max_rate_per_replica(&p, 256, 1.0, 101.0, &targets).expect("reachable");
        assert!((best.itl_ms - 20.0).abs() < 1e-3, "{best:?}");
        assert!((best.batch - 100.0).abs() < 0.05, "{best:?}");
        // n = λ·(20 + 100·20)/1000 → λ = 100/2.02 ≈ 49.5/s.
        assert!((best.rate_rps - 100.0 / 2.02).abs() < 0.05, "{best:?}");
    }

    #[test]
    fn the_ttft_target_binds_through_slot_queueing() {
        // A tiny batch (4 slots) makes slot waiting the limit, not ITL.
        let targets = LatencyTargets {
            ttft_ms: 200.0,
            itl_ms: 1_000.0,
        };
        let best = max_rate_per_replica(&P, 4, 200.0, 101.0, &targets).expect("reachable");
        assert!((best.ttft_ms - 200.0).abs() < 0.01, "{best:?}");
        assert!(best.batch < 4.0);
        // Out of reach: prefill alone exceeds the TTFT target.
        let strict = LatencyTargets {
            ttft_ms: 25.0,
            itl_ms: 1_000.0,
        };
        assert!(max_rate_per_replica(&P, 256, 200.0, 101.0, &strict).is_none());
    }

    #[test]
    fn capacity_falls_as_requests_grow() {
        let t = LatencyTargets::default();
        let short = max_rate_per_replica(&P, 256, 200.0, 100.0, &t).expect("short");
        let long = max_rate_per_replica(&P, 256, 2_000.0, 400.0, &t).expect("long");
        assert!(long.rate_rps < short.rate_rps);
    }
}
