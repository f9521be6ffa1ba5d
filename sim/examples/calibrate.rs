//! Fits the server model's calibration to the published measurements and prints the best fit
//! and the figures it reproduces:
//!
//! ```sh
//! cargo run --release -p wva-sim --example calibrate
//! ```
//!
//! Paste the printed constants into `sim/src/profiles.rs` (`CALIBRATION`) and the table into
//! `docs/simulation.md`. To recalibrate against other runs, add them to `sim/data/`.

use wva_sim::calibration::{Benchmark, compare, worst_error};
use wva_sim::profiles::{A100_SXM, CALIBRATION, Calibration, H100_SXM};

fn main() {
    let benchmark = match Benchmark::llama3_8b() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("calibrate: the embedded measurements do not parse: {e}");
            std::process::exit(1);
        }
    };
    let cards = [A100_SXM, H100_SXM];
    let mut best = (f64::INFINITY, CALIBRATION);
    // A coarse grid, then a finer one around its best point.
    let grid = |best: &mut (f64, Calibration),
                bw: &[f64],
                over: &[f64],
                dec: &[f64],
                seq: &[f64],
                pre: &[f64]| {
        for &bandwidth_efficiency in bw {
            for &step_overhead_ms in over {
                for &decode_efficiency in dec {
                    for &per_seq_overhead_ms in seq {
                        for &prefill_efficiency in pre {
                            let c = Calibration {
                                bandwidth_efficiency,
                                step_overhead_ms,
                                decode_efficiency,
                                per_seq_overhead_ms,
                                prefill_efficiency,
                            };
                            let e = worst_error(&compare(&benchmark, &cards, &c));
                            if e < best.0 {
                                *best = (e, c);
                            }
                        }
                    }
                }
            }
        }
    };
    let range = |from: f64, to: f64, n: usize| -> Vec<f64> {
        (0..n)
            .map(|i| from + (to - from) * i as f64 / (n - 1) as f64)
            .collect()
    };
    grid(
        &mut best,
        &range(0.5, 0.9, 9),
        &range(0.0, 3.0, 4),
        &range(0.1, 0.7, 4),
        &range(0.0, 0.09, 4),
        &range(0.3, 0.9, 4),
    );
    let c = best.1;
    grid(
        &mut best,
        &range(
            (c.bandwidth_efficiency - 0.05).max(0.3),
            (c.bandwidth_efficiency + 0.05).min(0.9),
            6,
        ),
        &range(
            (c.step_overhead_ms - 0.5).max(0.0),
            c.step_overhead_ms + 0.5,
            5,
        ),
        &range(
            (c.decode_efficiency - 0.1).max(0.02),
            (c.decode_efficiency + 0.1).min(1.0),
            5,
        ),
        &range(
            (c.per_seq_overhead_ms - 0.015).max(0.0),
            c.per_seq_overhead_ms + 0.015,
            5,
        ),
        &range(
            (c.prefill_efficiency - 0.1).max(0.1),
            (c.prefill_efficiency + 0.1).min(1.0),
            5,
        ),
    );
    let (error, c) = best;
    println!("{}\n{}\n", benchmark.source, benchmark.engine);
    println!(
        "best fit (worst relative error {:.1} %):\n{c:#?}\n",
        error * 100.0
    );
    println!(
        "{:<6} {:>7} {:>14} {:>14} {:>16} {:>16} {:>13} {:>13}",
        "GPU",
        "prompts",
        "TPOT meas. ms",
        "TPOT model ms",
        "tok/s measured",
        "tok/s model",
        "TTFT meas.",
        "TTFT model"
    );
    for (m, r) in compare(&benchmark, &cards, &c) {
        println!(
            "{:<6} {:>7} {:>14.2} {:>14.2} {:>16.0} {:>16.0} {:>13} {:>13.0}",
            m.accelerator,
            m.prompts,
            m.median_tpot_ms,
            r.median_tpot_ms,
            m.output_tokens_per_s,
            r.output_tokens_per_s,
            m.mean_ttft_ms
                .map_or("-".to_string(), |t| format!("{t:.0}")),
            r.mean_ttft_ms
        );
    }
}
