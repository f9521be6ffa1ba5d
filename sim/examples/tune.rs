//! Explores the `slo-capacity` analyzer's fixed settings (stabilisation cycles, drain time, the
//! share of the TTFT budget from which the prefill line is trusted) over the knob's sweep on
//! the training loads only (the built-in hour and the training traces of the split, read from
//! `WVA_TRACES_DIR` or `../shared/traces`), printing each combination's cost at 95 %
//! attainment per workload and the worst ratio to the best combination's, by which a setting
//! is chosen: `cargo run --release -p wva-sim --example tune`, or with
//! `TUNE=stabilisation:drain:trust,...` (e.g. `20:60:0.25,20:150:0.5`). The validation traces
//! and the zoo are never read here.

use std::path::PathBuf;

use wva_actors::policy::slo_capacity::SloCapacityConfig;
use wva_sim::engine::RunOptions;
use wva_sim::frontier::{FrontierRequest, measure};
use wva_sim::policy::Policy;
use wva_sim::results::SloTargets;
use wva_sim::simulate::{SimulateRequest, workloads};
use wva_sim::workloads::{WorkloadSet, default_traces_dir};

fn main() -> Result<(), String> {
    let request = SimulateRequest {
        seed: 42,
        duration_s: None,
        trace: Vec::new(),
        workloads: Some(WorkloadSet::Training),
        traces_dir: default_traces_dir(),
        trace_speedup: 1.0,
        report: PathBuf::from("unused"),
        options: RunOptions::default(),
        prices: Default::default(),
        engine: Default::default(),
        from_log: None,
    };
    let workloads = workloads(&request)?;
    let defaults = SloCapacityConfig::default();
    let combos: Vec<(usize, f64, f64)> = std::env::var("TUNE")
        .unwrap_or_else(|_| "20:150:0.25,20:60:0.25,20:150:0.5,12:150:0.25".into())
        .split(',')
        .map(|c| {
            let mut parts = c.split(':');
            let mut next = |default: f64| {
                parts
                    .next()
                    .and_then(|p| p.parse::<f64>().ok())
                    .unwrap_or(default)
            };
            (
                next(defaults.stabilization_cycles as f64) as usize,
                next(defaults.drain_s),
                next(defaults.prefill_trusted_from),
            )
        })
        .collect();
    // Cost at 95 % per combination and workload; a combination is judged by its worst ratio to
    // the best combination on each workload (never by the mean, so no load is sacrificed).
    let mut costs: Vec<Vec<Option<f64>>> = Vec::new();
    for &(stabilization, drain, trust) in &combos {
        let mut options = RunOptions::default();
        options.settings.slo_capacity.stabilization_cycles = stabilization;
        options.settings.slo_capacity.drain_s = drain;
        options.settings.slo_capacity.prefill_trusted_from = trust;
        let req = FrontierRequest {
            workloads: workloads.clone(),
            policies: vec![Policy::default()],
            options,
            slo: SloTargets::default(),
            target_attainment: 0.95,
            reference: Policy::default(),
        };
        let frontiers = measure(&req, |_, _| {})?;
        println!(
            "stabilization {stabilization} cycles, drain {drain} s, prefill line trusted from {trust} of its budget"
        );
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
        costs.push(
            frontiers
                .iter()
                .map(|f| f.summaries[0].cost_at_target)
                .collect(),
        );
    }
    println!(
        "\nworst ratio to the best combination, per combination (lower is better; unreached counts as infinite):"
    );
    for (k, &(stabilization, drain, trust)) in combos.iter().enumerate() {
        let worst = (0..workloads.len())
            .map(|w| {
                let best = costs
                    .iter()
                    .filter_map(|c| c[w])
                    .fold(f64::INFINITY, f64::min);
                costs[k][w].map_or(f64::INFINITY, |c| c / best)
            })
            .fold(1.0, f64::max);
        println!("  {stabilization}:{drain}:{trust}  {worst:.3}");
    }
    Ok(())
}
