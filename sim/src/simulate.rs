//! `wva simulate`: the autoscaler against the emulated cluster, in virtual time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::{RunOptions, run};
use crate::frontier::{FrontierRequest, WorkloadFrontier};
use crate::load::parse_trace;
use crate::policy::Policy;
use crate::report::{Summary, summarize, table, write};
use crate::results::RunResult;
use crate::results::SloTargets;
use crate::scenario;
use crate::scenario::Scenario;

/// What `wva simulate` was asked to do.
#[derive(Debug, Clone)]
pub struct SimulateRequest {
    pub seed: u64,
    pub duration_s: Option<f64>,
    /// Traces to replay (`builtin` names the built-in load); none: the built-in load. One run
    /// takes at most one; a frontier takes each as a workload.
    pub trace: Vec<PathBuf>,
    pub trace_speedup: f64,
    pub report: PathBuf,
    pub options: RunOptions,
    /// Price per replica-hour by accelerator, replacing the scenario's where given (the
    /// user's accelerator-cost ConfigMap).
    pub prices: BTreeMap<String, f64>,
}

/// The name that stands for the built-in load where a trace is expected.
pub const BUILTIN: &str = "builtin";

/// The scenario a single run's request describes.
pub fn scenario_for(req: &SimulateRequest) -> Result<Scenario, String> {
    match req.trace.as_slice() {
        [] => Ok(builtin(req)),
        [path] => workload(req, path).map(|(_, s)| s),
        _ => Err("--trace: one run replays one trace (several only with --frontier)".into()),
    }
}

fn builtin(req: &SimulateRequest) -> Scenario {
    priced(
        scenario::builtin(req.duration_s.unwrap_or(3_600.0), req.seed),
        &req.prices,
    )
}

fn priced(mut scenario: Scenario, prices: &BTreeMap<String, f64>) -> Scenario {
    for v in &mut scenario.variants {
        if let Some(&price) = prices.get(&v.accelerator) {
            v.cost_per_hour = price;
        }
    }
    scenario
}

/// One workload by path (or [`BUILTIN`]), named by its file stem.
fn workload(req: &SimulateRequest, path: &Path) -> Result<(String, Scenario), String> {
    if path.as_os_str() == BUILTIN {
        return Ok((BUILTIN.into(), builtin(req)));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--trace {}: {e}", path.display()))?;
    let requests = parse_trace(&text, req.trace_speedup)
        .map_err(|e| format!("--trace {}: {e}", path.display()))?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into(),
    );
    Ok((
        name,
        priced(scenario::trace(requests, req.duration_s), &req.prices),
    ))
}

/// Every workload of a request: each trace, or the built-in load.
pub fn workloads(req: &SimulateRequest) -> Result<Vec<(String, Scenario)>, String> {
    if req.trace.is_empty() {
        return Ok(vec![(BUILTIN.into(), builtin(req))]);
    }
    req.trace.iter().map(|p| workload(req, p)).collect()
}

/// The cost–SLO frontier of `policies` on every workload of the request, against `wva-v1`'s
/// default setting; writes `frontier.json` and the plots into the report directory.
pub fn frontier(
    req: &SimulateRequest,
    policies: &[Policy],
) -> Result<Vec<WorkloadFrontier>, String> {
    let request = FrontierRequest {
        workloads: workloads(req)?,
        policies: policies.to_vec(),
        options: req.options.clone(),
        slo: SloTargets::default(),
        target_attainment: 0.95,
        reference: Policy::parse("wva-v1")?,
    };
    let bar = req.options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "frontier {wide_bar} {pos}/{len} runs, {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let frontiers = crate::frontier::measure(&request, |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    crate::frontier::write(&req.report, &frontiers)?;
    Ok(frontiers)
}

/// Runs the simulation, writes the report, and returns the summary and the full result.
pub fn simulate(req: &SimulateRequest) -> Result<(Summary, RunResult), String> {
    let scenario = scenario_for(req)?;
    run_one(&scenario, &req.options, &req.report)
}

fn run_one(
    scenario: &Scenario,
    options: &RunOptions,
    report: &std::path::Path,
) -> Result<(Summary, RunResult), String> {
    let system = actix::System::new();
    let result = system.block_on(run(scenario, options))?;
    let summary = summarize(options.policy.name(), &result, SloTargets::default());
    write(report, &summary, &result)?;
    Ok((summary, result))
}

/// Where `compare` draws the policies over each other, under the report directory.
pub const COMPARE_DIR: &str = "compare";

/// The same scenario (the same requests) through each policy; reports go to
/// `<report>/<policy>/`, and figures with one line per policy to `<report>/compare/`.
pub fn compare(req: &SimulateRequest, policies: &[Policy]) -> Result<Vec<Summary>, String> {
    let scenario = scenario_for(req)?;
    let runs = policies
        .iter()
        .map(|policy| {
            let options = RunOptions {
                policy: *policy,
                progress: false,
                ..req.options.clone()
            };
            run_one(&scenario, &options, &req.report.join(policy.name()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let pairs: Vec<(&Summary, &RunResult)> = runs.iter().map(|(s, r)| (s, r)).collect();
    crate::report::write_figures(
        &req.report.join(COMPARE_DIR),
        &crate::report::compare_figures(&pairs),
    )?;
    Ok(runs.into_iter().map(|(s, _)| s).collect())
}

/// Summaries side by side, one column per policy.
pub fn compare_table(summaries: &[Summary]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![(
        "policy".into(),
        summaries.iter().map(|s| s.policy.clone()).collect(),
    )];
    let mut row = |name: &str, f: &dyn Fn(&Summary) -> String| {
        rows.push((name.to_string(), summaries.iter().map(f).collect()))
    };
    row("requests", &|s| s.requests.to_string());
    row("failed/unfinished", &|s| s.failed.to_string());
    row("TTFT p50 (ms)", &|s| format!("{:.0}", s.ttft_p50_ms));
    row("TTFT p99 (ms)", &|s| format!("{:.0}", s.ttft_p99_ms));
    row("ITL p50 (ms)", &|s| format!("{:.1}", s.itl_p50_ms));
    row("ITL p99 (ms)", &|s| format!("{:.1}", s.itl_p99_ms));
    row("SLO attainment", &|s| {
        format!("{:.1} %", s.slo_attainment * 100.0)
    });
    row("GPU-hours", &|s| format!("{:.2}", s.gpu_hours));
    row("cost", &|s| format!("{:.2}", s.cost));
    row("scaling actions", &|s| s.scaling_actions.to_string());
    row("peak replicas", &|s| s.peak_replicas.to_string());
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let col = rows
        .iter()
        .flat_map(|(_, c)| c.iter().map(String::len))
        .max()
        .unwrap_or(0)
        .max(8);
    let mut out = String::new();
    for (name, cells) in rows {
        out.push_str(&format!("{name:<width$}"));
        for c in cells {
            out.push_str(&format!("  {c:>col$}"));
        }
        out.push('\n');
    }
    out
}

/// The text printed at the end of a run.
pub fn render(summary: &Summary, report: &std::path::Path) -> String {
    format!("{}\nreport: {}\n", table(summary), report.display())
}
