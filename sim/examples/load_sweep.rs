//! One replica at steady rates: what its signals look like on the way to saturation.
//! `cargo run --release -p wva-sim --example load_sweep`

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use wva_sim::capacity::attainment_at;
use wva_sim::profiles::{a100, h100};
use wva_sim::results::SloTargets;
use wva_sim::server::{Request, Server};

fn main() {
    let mix: Vec<(u32, u32)> = wva_sim::scenario::builtin_load(3600.0)
        .generate(3600.0, 42)
        .into_iter()
        .map(|r| (r.prompt_tokens, r.output_tokens))
        .collect();
    for profile in [a100(), h100()] {
        println!(
            "{}: rate  running  kvmax  waitmax  itl  ttft  attain",
            profile.name
        );
        for rate in [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0,
        ] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            let gap = Exp::new(rate / 1e3).expect("rate");
            let mut server = Server::new(profile.clone(), 0.0);
            let (mut now, mut next, mut id) = (0.0f64, 0.0f64, 0u64);
            let mut done = Vec::new();
            let (mut run_area, mut last, mut kvmax, mut waitmax) = (0.0f64, 0.0f64, 0.0f64, 0usize);
            while now < 600_000.0 {
                while next <= now {
                    let (p, o) = mix[rng.random_range(0..mix.len())];
                    server.enqueue(Request {
                        id,
                        arrival_ms: next,
                        prompt_tokens: p,
                        output_tokens: o,
                    });
                    id += 1;
                    next += gap.sample(&mut rng);
                }
                if now > 60_000.0 {
                    run_area += server.running() as f64 * (now - last);
                    kvmax = kvmax.max(server.kv_usage());
                    waitmax = waitmax.max(server.waiting());
                }
                last = now;
                now = server.step(now, &mut done).unwrap_or(next);
            }
            let c = &server.counters;
            println!(
                "  {rate:>5.1} {:>8.1} {:>6.2} {:>8} {:>5.1} {:>5.0} {:>6.3}",
                run_area / 540_000.0,
                kvmax,
                waitmax,
                1e3 * c.itl_sum_s / c.itl_count.max(1) as f64,
                1e3 * c.ttft_sum_s / c.ttft_count.max(1) as f64,
                attainment_at(&profile, &mix, rate, SloTargets::default(), 3)
            );
            if server.waiting() > 200 {
                break;
            }
        }
    }
}
