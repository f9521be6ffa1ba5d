//! `wva simulate`: the autoscaler against the emulated cluster, in virtual time.

use std::path::PathBuf;

use crate::sim::engine::{RunOptions, RunResult, Scenario, run};
use crate::sim::load::parse_trace;
use crate::sim::report::{SloTargets, Summary, summarize, table, write};
use crate::sim::scenario;

/// What `wva simulate` was asked to do.
#[derive(Debug, Clone)]
pub struct SimulateRequest {
    pub seed: u64,
    pub duration_s: Option<f64>,
    pub trace: Option<PathBuf>,
    pub trace_speedup: f64,
    pub report: PathBuf,
    pub options: RunOptions,
}

/// The scenario a request describes.
pub fn scenario_for(req: &SimulateRequest) -> Result<Scenario, String> {
    match &req.trace {
        None => Ok(scenario::builtin(
            req.duration_s.unwrap_or(3_600.0),
            req.seed,
        )),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--trace {}: {e}", path.display()))?;
            let requests = parse_trace(&text, req.trace_speedup)
                .map_err(|e| format!("--trace {}: {e}", path.display()))?;
            Ok(scenario::trace(requests, req.duration_s))
        }
    }
}

/// Runs the simulation, writes the report, and returns the summary and the full result.
pub fn simulate(req: &SimulateRequest) -> Result<(Summary, RunResult), String> {
    let scenario = scenario_for(req)?;
    let system = actix::System::new();
    let result = system.block_on(run(&scenario, &req.options))?;
    let summary = summarize("wva-v1", &result, SloTargets::default());
    write(&req.report, &summary, &result)?;
    Ok((summary, result))
}

/// The text printed at the end of a run.
pub fn render(summary: &Summary, report: &std::path::Path) -> String {
    format!("{}\nreport: {}\n", table(summary), report.display())
}
