//! Prints what one replica of each accelerator carries within the objectives for a workload:
//! `cargo run --release -p wva-sim --example capacity [TRACE.csv]` (the built-in mix without a
//! trace).

use wva_sim::capacity::sustainable_rate;
use wva_sim::profiles::{a100, h100};
use wva_sim::results::SloTargets;

fn main() {
    let mix: Vec<(u32, u32)> = match std::env::args().nth(1) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            wva_sim::load::parse_trace(&text, 1.0)
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.prompt_tokens, r.output_tokens))
                .collect()
        }
        None => wva_sim::scenario::builtin_load(3600.0)
            .generate(3600.0, 42)
            .into_iter()
            .map(|r| (r.prompt_tokens, r.output_tokens))
            .collect(),
    };
    let mean = |f: &dyn Fn(&(u32, u32)) -> u32| {
        mix.iter().map(|m| f64::from(f(m))).sum::<f64>() / mix.len().max(1) as f64
    };
    println!(
        "{} requests, mean prompt {:.0}, mean output {:.0}",
        mix.len(),
        mean(&|m| m.0),
        mean(&|m| m.1)
    );
    for profile in [a100(), h100()] {
        for share in [0.95, 0.99] {
            let r = sustainable_rate(&profile, &mix, SloTargets::default(), share, 7);
            println!(
                "{} at {:.0} %: {r:.2} requests/s",
                profile.name,
                share * 100.0
            );
        }
    }
}
