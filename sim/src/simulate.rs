//! `wva simulate`: the autoscaler against the emulated cluster, in virtual time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::RunOptions;
use crate::frontier::{FrontierRequest, WorkloadFrontier};
use crate::policy::Policy;
use crate::profiles::Engine;
use crate::report::{Summary, summarize, table, write};
use crate::results::RunResult;
use crate::results::SloTargets;
use crate::scenario::Scenario;
use crate::workloads::{WorkloadSet, WorkloadSource};

/// What `wva simulate` was asked to do.
#[derive(Debug, Clone)]
pub struct SimulateRequest {
    pub seed: u64,
    pub duration_s: Option<f64>,
    /// Workloads by name or path: `builtin`, `zoo:NAME`, a trace of the split by name, or a
    /// trace file; none: the built-in load. One run takes at most one; a frontier or a
    /// comparison takes each as a workload.
    pub trace: Vec<PathBuf>,
    /// A whole set of workloads (before those of `trace`).
    pub workloads: Option<WorkloadSet>,
    /// Where the split's traces are read from.
    pub traces_dir: PathBuf,
    pub trace_speedup: f64,
    pub report: PathBuf,
    pub options: RunOptions,
    /// Price per replica-hour by accelerator, replacing the scenario's where given (the
    /// user's accelerator-cost ConfigMap).
    pub prices: BTreeMap<String, f64>,
    /// Which vLLM the emulated servers behave like.
    pub engine: Engine,
    /// Drive the cluster with the demand this decision log recorded (its data directory), of
    /// this model when the log holds several: the one workload.
    pub from_log: Option<(PathBuf, Option<String>)>,
}

/// The name that stands for the built-in load where a trace is expected.
pub const BUILTIN: &str = crate::workloads::BUILTIN;

/// The scenario a single run's request describes.
pub fn scenario_for(req: &SimulateRequest) -> Result<Scenario, String> {
    match workloads(req)?.as_slice() {
        [(_, scenario)] => Ok(scenario.clone()),
        _ => Err(
            "--trace: one run replays one workload (several only with --frontier or --compare)"
                .into(),
        ),
    }
}

fn priced(mut scenario: Scenario, prices: &BTreeMap<String, f64>) -> Scenario {
    for v in &mut scenario.variants {
        if let Some(&price) = prices.get(&v.accelerator) {
            v.cost_per_hour = price;
        }
    }
    scenario
}

/// Every workload of a request: a set, then each named one, or the built-in load alone.
pub fn workloads(req: &SimulateRequest) -> Result<Vec<(String, Scenario)>, String> {
    let source = WorkloadSource {
        traces_dir: req.traces_dir.clone(),
        seed: req.seed,
        duration_s: req.duration_s,
        trace_speedup: req.trace_speedup,
    };
    if let Some((dir, model)) = &req.from_log {
        let log = wva_storage::datadir::open_for_reading(dir)
            .map_err(|e| format!("--from-log {}: {e}", dir.display()))?;
        let history = wva_actors::compact::read_history(&log.log, &Default::default())
            .map_err(|e| format!("--from-log {}: {e}", dir.display()))?;
        let demand = crate::recorded::from_records(&history.records, model.as_deref())
            .map_err(|e| format!("--from-log {}: {e}", dir.display()))?;
        let mut scenario = demand.scenario(req.seed, req.duration_s);
        scenario.engine = req.engine;
        return Ok(vec![("from-log".into(), priced(scenario, &req.prices))]);
    }
    let mut out = match req.workloads {
        Some(set) => crate::workloads::of_set(&source, set)
            .map_err(|e| format!("--workloads {}: {e}", set.as_str()))?,
        None => Vec::new(),
    };
    for name in &req.trace {
        let name = name.to_string_lossy();
        out.push(crate::workloads::workload(&source, &name).map_err(|e| format!("--trace {e}"))?);
    }
    if out.is_empty() {
        out.push(crate::workloads::workload(&source, BUILTIN)?);
    }
    Ok(out
        .into_iter()
        .map(|(name, mut s)| {
            s.engine = req.engine;
            (name, priced(s, &req.prices))
        })
        .collect())
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
    let result = system.block_on(crate::bound::run_policy(scenario, options))?;
    let summary = summarize(options.policy.name(), &result, SloTargets::default());
    write(report, &summary, &result)?;
    Ok((summary, result))
}

/// Where `compare` draws the policies over each other, under the report directory.
pub const COMPARE_DIR: &str = "compare";

/// The same scenario (the same requests) through each policy; reports go to
/// `<report>/<policy>/`, and figures with one line per policy to `<report>/compare/` (under
/// `<report>/<workload>/` when there are several workloads). One list of summaries per
/// workload, with its name.
pub fn compare(
    req: &SimulateRequest,
    policies: &[Policy],
) -> Result<Vec<(String, Vec<Summary>)>, String> {
    let all = workloads(req)?;
    let several = all.len() > 1;
    all.into_iter()
        .map(|(name, scenario)| {
            let report = if several {
                req.report.join(name.replace(':', "-"))
            } else {
                req.report.clone()
            };
            let runs = policies
                .iter()
                .map(|policy| {
                    let options = RunOptions {
                        policy: *policy,
                        progress: false,
                        ..req.options.clone()
                    };
                    run_one(&scenario, &options, &report.join(policy.name()))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let pairs: Vec<(&Summary, &RunResult)> = runs.iter().map(|(s, r)| (s, r)).collect();
            crate::report::write_figures(
                &report.join(COMPARE_DIR),
                &crate::report::compare_figures(&pairs),
            )?;
            Ok((name, runs.into_iter().map(|(s, _)| s).collect()))
        })
        .collect()
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
    if summaries.iter().any(|s| s.pending_replica_hours > 0.0) {
        row("Pending (replica-h)", &|s| {
            format!("{:.2}", s.pending_replica_hours)
        });
    }
    row("scaling actions", &|s| s.scaling_actions.to_string());
    row("misses: trigger", &|s| s.misses.trigger.to_string());
    row("misses: ask", &|s| s.misses.ask.to_string());
    row("misses: grant", &|s| s.misses.grant.to_string());
    row("misses: warm-up", &|s| s.misses.warm_up.to_string());
    row("misses: never asked", &|s| s.misses.never_asked.to_string());
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
