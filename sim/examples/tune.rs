//! Explores the `slo-capacity` analyzer's fixed settings (stabilisation, drain time) over the
//! knob's sweep on the training loads only (the built-in hour and the training traces of the
//! split, read from `WVA_TRACES_DIR` or `../shared/traces`), printing each combination's cost
//! at 95 % attainment per workload and the worst ratio to the best combination's, by which a
//! setting is chosen: `cargo run --release -p wva-sim --example tune`. The validation traces
//! and the zoo are never read here.

use std::path::PathBuf;

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
    let combos: Vec<(usize, f64)> = std::env::var("TUNE")
        .unwrap_or_else(|_| "4:60,12:60,40:60,12:30".into())
        .split(',')
        .map(|c| {
            let (s, d) = c.split_once(':').unwrap_or((c, "60"));
            (s.parse().unwrap_or(12), d.parse().unwrap_or(60.0))
        })
        .collect();
    // Cost at 95 % per combination and workload; a combination is judged by its worst ratio to
    // the best combination on each workload (never by the mean, so no load is sacrificed).
    let mut costs: Vec<Vec<Option<f64>>> = Vec::new();
    for &(stabilization, drain) in &combos {
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
    for (k, &(stabilization, drain)) in combos.iter().enumerate() {
        let worst = (0..workloads.len())
            .map(|w| {
                let best = costs
                    .iter()
                    .filter_map(|c| c[w])
                    .fold(f64::INFINITY, f64::min);
                costs[k][w].map_or(f64::INFINITY, |c| c / best)
            })
            .fold(1.0, f64::max);
        println!("  {stabilization}:{drain}  {worst:.3}");
    }
    Ok(())
}
