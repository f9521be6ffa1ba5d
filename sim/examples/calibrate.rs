//! Fits the server model's calibration to the published measurements of one engine generation
//! and prints the best fit and the figures it reproduces:
//!
//! ```sh
//! cargo run --release -p wva-sim --example calibrate               # vLLM 0.5.4
//! cargo run --release -p wva-sim --example calibrate -- vllm-v1    # vLLM's V1 engine (0.15.1)
//! ```
//!
//! Paste the printed constants into `sim/src/profiles.rs` (the engine's calibration) and the
//! table into `docs/simulation.md`. To recalibrate against other runs, add them to `sim/data/`.

use wva_sim::calibration::{
    Benchmark, StagedBenchmark, compare, compare_staged, worst_error, worst_staged_error,
};
use wva_sim::profiles::{A100_SXM, Calibration, Engine, H100_SXM};

/// Coordinate descent over the constants from `start`: each in turn moved up or down by
/// its step while that lowers the error, the steps halved when nothing moves, until they are
/// small. A few hundred evaluations instead of a grid's thousands.
fn fit(start: Calibration, error: &dyn Fn(&Calibration) -> f64) -> (f64, Calibration) {
    let mut best = (error(&start), start);
    let mut steps = [0.1, 1.0, 0.2, 0.01, 0.1, 10.0];
    let bounds = [
        (0.3, 0.98),
        (0.0, 8.0),
        (0.02, 1.0),
        (0.0, 0.2),
        (0.1, 1.0),
        (0.0, 100.0),
    ];
    let get = |c: &Calibration, i: usize| match i {
        0 => c.bandwidth_efficiency,
        1 => c.step_overhead_ms,
        2 => c.decode_efficiency,
        3 => c.per_seq_overhead_ms,
        4 => c.prefill_efficiency,
        _ => c.request_overhead_ms,
    };
    let set = |c: &mut Calibration, i: usize, v: f64| match i {
        0 => c.bandwidth_efficiency = v,
        1 => c.step_overhead_ms = v,
        2 => c.decode_efficiency = v,
        3 => c.per_seq_overhead_ms = v,
        4 => c.prefill_efficiency = v,
        _ => c.request_overhead_ms = v,
    };
    for _ in 0..6 {
        let mut moved = true;
        while moved {
            moved = false;
            // vLLM 0.5.4's fit has no API-server share.
            for i in 0..if start.request_overhead_ms > 0.0 {
                6
            } else {
                5
            } {
                for sign in [1.0, -1.0] {
                    let mut c = best.1;
                    let v = (get(&c, i) + sign * steps[i]).clamp(bounds[i].0, bounds[i].1);
                    set(&mut c, i, v);
                    let e = error(&c);
                    if e < best.0 - 1e-6 {
                        best = (e, c);
                        moved = true;
                    }
                }
            }
        }
        for s in &mut steps {
            *s /= 2.0;
        }
    }
    best
}

fn vllm_05() -> Result<(), String> {
    let benchmark = Benchmark::llama3_8b().map_err(|e| e.to_string())?;
    let cards = [A100_SXM, H100_SXM];
    let (error, c) = fit(Engine::Vllm05.calibration(), &|c| {
        worst_error(&compare(&benchmark, &cards, c))
    });
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
    Ok(())
}

fn vllm_v1() -> Result<(), String> {
    let benchmark = StagedBenchmark::llama31_8b_v1().map_err(|e| e.to_string())?;
    let (error, c) = fit(Engine::VllmV1.calibration(), &|c| {
        worst_staged_error(&compare_staged(&benchmark, &H100_SXM, c))
    });
    println!("{}\n{}\n", benchmark.source, benchmark.engine);
    println!(
        "best fit (worst relative error {:.1} %):\n{c:#?}\n",
        error * 100.0
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "run", "TTFT meas", "TTFT model", "ITL meas", "ITL model", "E2E meas", "E2E model"
    );
    for (r, m) in compare_staged(&benchmark, &H100_SXM, &c) {
        println!(
            "{:<36} {:>10.1} {:>10.1} {:>10.2} {:>10.2} {:>11.0} {:>11.0}",
            r.name,
            r.measured.ttft_mean_ms,
            m.ttft_mean_ms,
            r.measured.itl_mean_ms,
            m.itl_mean_ms,
            r.measured.e2e_mean_ms,
            m.e2e_mean_ms
        );
    }
    Ok(())
}

fn main() {
    let engine = std::env::args().nth(1).unwrap_or_else(|| "vllm-0.5".into());
    let result = match engine.as_str() {
        "vllm-0.5" => vllm_05(),
        "vllm-v1" => vllm_v1(),
        other => Err(format!("expected vllm-0.5 or vllm-v1, got {other:?}")),
    };
    if let Err(e) = result {
        eprintln!("calibrate: {e}");
        std::process::exit(1);
    }
}
