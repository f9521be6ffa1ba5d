//! What one replica can carry: the highest steady request rate at which one emulated server
//! keeps a given share of requests within the latency objectives, for a given mix of request
//! lengths. The hindsight bound orders its fleets with it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};

use crate::profiles::AcceleratorProfile;
use crate::results::SloTargets;
use crate::server::{Completed, Request, Server};

/// How long each trial rate runs, and the warm-up it discards.
const TRIAL_S: f64 = 600.0;
const WARMUP_S: f64 = 60.0;

/// The share of requests within both objectives at a steady Poisson `rate_rps`, with lengths
/// drawn from `mix` (prompt, output) pairs.
pub fn attainment_at(
    profile: &AcceleratorProfile,
    mix: &[(u32, u32)],
    rate_rps: f64,
    slo: SloTargets,
    seed: u64,
) -> f64 {
    if mix.is_empty() || rate_rps <= 0.0 {
        return 1.0;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(gap) = Exp::new(rate_rps / 1e3) else {
        return 1.0;
    };
    let mut server = Server::new(profile.clone(), 0.0);
    let (mut now, mut next, mut id) = (0.0f64, gap.sample(&mut rng), 0u64);
    let mut arrived_in_window = 0usize;
    let end = TRIAL_S * 1e3;
    let mut done: Vec<Completed> = Vec::new();
    while now < end {
        while next <= now {
            let (prompt, output) = mix[rng.random_range(0..mix.len())];
            if next >= WARMUP_S * 1e3 {
                arrived_in_window += 1;
            }
            server.enqueue(Request {
                id,
                arrival_ms: next,
                prompt_tokens: prompt.max(1),
                output_tokens: output.max(1),
            });
            id += 1;
            next += gap.sample(&mut rng);
        }
        now = match server.step(now, &mut done) {
            Some(t) => t,
            None => next,
        };
    }
    let arrived = (WARMUP_S * 1e3, end);
    let counted: Vec<&Completed> = done
        .iter()
        .filter(|c| c.arrival_ms >= arrived.0 && c.arrival_ms < arrived.1)
        .collect();
    // Requests that arrived in the window but have not finished count as misses.
    let expected = arrived_in_window.max(counted.len()) as f64;
    let within = counted
        .iter()
        .filter(|c| c.ttft_ms <= slo.ttft_ms && c.itl_ms <= slo.itl_ms)
        .count();
    within as f64 / expected.max(1.0)
}

/// The highest steady rate (requests/s) one replica carries with `share` of requests within the
/// objectives (bisection over rates, each trial ten minutes of emulated traffic).
pub fn sustainable_rate(
    profile: &AcceleratorProfile,
    mix: &[(u32, u32)],
    slo: SloTargets,
    share: f64,
    seed: u64,
) -> f64 {
    let meets = |rate: f64| attainment_at(profile, mix, rate, slo, seed) >= share;
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while meets(hi) && hi < 1e4 {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..12 {
        let mid = (lo + hi) / 2.0;
        if meets(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::{a100, h100};

    #[test]
    fn a_faster_card_carries_more_and_more_load_meets_fewer_objectives() {
        let mix = [(800, 220), (200, 50), (1_600, 400)];
        let slo = SloTargets::default();
        let light = attainment_at(&h100(), &mix, 1.0, slo, 1);
        let heavy = attainment_at(&h100(), &mix, 200.0, slo, 1);
        assert!(light > 0.99 && heavy < 0.5, "{light} {heavy}");
        let a = sustainable_rate(&a100(), &mix, slo, 0.99, 1);
        let h = sustainable_rate(&h100(), &mix, slo, 0.99, 1);
        assert!(a > 1.0 && h > 1.5 * a, "A100 {a:.1} rps, H100 {h:.1} rps");
    }
}
