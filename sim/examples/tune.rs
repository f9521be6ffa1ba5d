//! Explores the `slo-capacity` analyzer's fixed settings (stabilisation, drain time) over the
//! knob's sweep on the built-in load and the traces given as arguments, printing each
//! combination's cost at 95 % attainment per workload. How the defaults were chosen:
//! `cargo run --release -p wva-sim --example tune -- ../shared/traces/*.csv`.

use std::path::PathBuf;

use wva_sim::engine::RunOptions;
use wva_sim::frontier::{FrontierRequest, measure};
use wva_sim::policy::Policy;
use wva_sim::results::SloTargets;
use wva_sim::simulate::{SimulateRequest, workloads};

fn main() -> Result<(), String> {
    let traces: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let mut all = vec![PathBuf::from("builtin")];
    all.extend(traces);
    let request = SimulateRequest {
        seed: 42,
        duration_s: None,
        trace: all,
        trace_speedup: 1.0,
        report: PathBuf::from("unused"),
        options: RunOptions::default(),
        prices: Default::default(),
    };
    let workloads = workloads(&request)?;
    let combos: Vec<(usize, f64)> = std::env::var("TUNE")
        .unwrap_or_else(|_| "4:60,12:60,40:60,12:30".into())
        .split(',')
        .map(|c| {
            let (s, d) = c.split_once(':').unwrap_or((c, "60"));
            (s.parse().unwrap_or(12), d.parse().unwrap_or(60.0))
        })
        .collect();
    for (stabilization, drain) in combos {
        let mut options = RunOptions::default();
        options.settings.slo_capacity.stabilization_cycles = stabilization;
        options.settings.slo_capacity.drain_s = drain;
        let req = FrontierRequest {
            workloads: workloads.clone(),
            policies: vec![Policy::default()],
            options,
            slo: SloTargets::default(),
            target_attainment: 0.95,
            reference: Policy::default(),
        };
        let frontiers = measure(&req, |_, _| {})?;
        println!("stabilization {stabilization} cycles, drain {drain} s");
        for f in &frontiers {
            let pts: Vec<String> = f
                .points
                .iter()
                .map(|p| format!("{:.1}/{:.1}%", p.cost, p.slo_attainment * 100.0))
                .collect();
            println!(
                "  {:<24} cost@95 {:>8}  {}",
                f.workload,
                f.summaries[0]
                    .cost_at_target
                    .map_or("-".into(), |c| format!("{c:.2}")),
                pts.join(" ")
            );
        }
    }
    Ok(())
}
