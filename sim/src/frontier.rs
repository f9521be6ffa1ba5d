//! The cost–SLO frontier: every policy run at each setting of its one aggressiveness knob on the
//! same requests, so that policies are compared by the curve they can reach rather than by one
//! arbitrary setting each.
//!
//! Per workload it reports every point (cost, attainment, latency tails, scaling actions), marks
//! the Pareto-optimal ones (no other point is as cheap and as good, and better in one), and sums
//! each policy up in two figures read off its *envelope* (the best attainment it reaches at or
//! below each cost):
//! - the cost at which it first reaches the attainment target (interpolated between the two
//!   settings around it; `None` when no setting reaches it);
//! - its attainment at a reference cost (the cost the reference policy spends at its default
//!   setting), interpolated likewise; `None` when even its cheapest setting costs more.

use std::path::Path;

use serde::Serialize;

use crate::engine::RunOptions;
use crate::peers::hindsight::MissTable;
use crate::plot::Plot;
use crate::policy::{BoundTarget, Policy};
use crate::report::{Summary, summarize};
use crate::results::SloTargets;
use crate::scenario::Scenario;

/// One run of one policy at one knob setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontierPoint {
    pub policy: String,
    pub knob: Option<String>,
    pub setting: Option<f64>,
    /// The bound's rounds: how many times its plan had been mended for this point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mended: Option<u32>,
    pub cost: f64,
    pub gpu_hours: f64,
    pub slo_attainment: f64,
    /// Requests the attainment is a share of.
    pub requests: usize,
    pub ttft_p99_ms: f64,
    pub itl_p99_ms: f64,
    pub scaling_actions: u32,
    pub peak_replicas: u32,
    /// No other point of the workload is at most as dear and at least as good, and better in one.
    pub pareto: bool,
}

impl FrontierPoint {
    fn of(policy: &Policy, s: &Summary) -> Self {
        let knob = policy.knob();
        Self {
            policy: policy.name().into(),
            knob: knob.map(|(name, _)| name.into()),
            setting: knob.map(|(_, v)| v),
            mended: match policy {
                Policy::Hindsight { mended, .. } => Some(*mended),
                _ => None,
            },
            cost: s.cost,
            gpu_hours: s.gpu_hours,
            slo_attainment: s.slo_attainment,
            requests: s.requests,
            ttft_p99_ms: s.ttft_p99_ms,
            itl_p99_ms: s.itl_p99_ms,
            scaling_actions: s.scaling_actions,
            peak_replicas: s.peak_replicas,
            pareto: false,
        }
    }
}

/// A policy's two summary figures on one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    pub policy: String,
    /// Cost at which the envelope first reaches the attainment target.
    pub cost_at_target: Option<f64>,
    /// Envelope attainment at the reference cost.
    pub attainment_at_reference: Option<f64>,
    /// Scaling actions of the cheapest setting that reaches the target.
    pub actions_at_target: Option<u32>,
}

/// One workload's frontier.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadFrontier {
    pub workload: String,
    pub target_attainment: f64,
    pub reference_policy: String,
    /// What the reference policy spends at its default setting.
    pub reference_cost: Option<f64>,
    pub points: Vec<FrontierPoint>,
    pub summaries: Vec<PolicySummary>,
    /// Points of other policies that the hindsight bound does not dominate (no bound point as
    /// cheap and as good); empty when the bound was measured and holds, or was not measured.
    pub beyond_bound: Vec<FrontierPoint>,
}

/// What a frontier measures.
#[derive(Debug, Clone)]
pub struct FrontierRequest {
    pub workloads: Vec<(String, Scenario)>,
    pub policies: Vec<Policy>,
    /// The options every run shares (the policy and knob are set per run).
    pub options: RunOptions,
    pub slo: SloTargets,
    /// Attainment the first summary figure is read at (0.95).
    pub target_attainment: f64,
    /// The policy whose default setting's cost the second figure is read at.
    pub reference: Policy,
}

/// Every setting a policy is run at: its sweep, and its default setting if the sweep misses it.
pub fn settings_of(policy: &Policy) -> Vec<Policy> {
    let mut settings: Vec<Policy> = policy
        .sweep()
        .into_iter()
        .map(|k| policy.with_knob(k))
        .collect();
    if !settings.contains(policy) {
        settings.push(*policy);
    }
    settings
}

/// Runs every policy at every setting on every workload, on as many threads as the machine
/// has cores (each run is its own single-threaded actor system, so results do not depend on the
/// thread count). `progress` is told after each run with the runs done and the total.
pub fn measure(
    req: &FrontierRequest,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Vec<WorkloadFrontier>, String> {
    let mut settings: Vec<Policy> = req.policies.iter().flat_map(settings_of).collect();
    if !settings.contains(&req.reference) {
        settings.push(req.reference);
    }
    let bound = settings
        .iter()
        .any(|p| matches!(p, Policy::Hindsight { .. }));
    let tables = miss_tables(req, bound)?;
    // The bound's prices are chosen per workload, where its schedules differ.
    let jobs: Vec<(usize, Policy)> = tables
        .iter()
        .enumerate()
        .flat_map(|(w, table)| {
            let mut mine: Vec<Policy> = settings
                .iter()
                .filter(|p| table.is_none() || !matches!(p, Policy::Hindsight { .. }))
                .copied()
                .collect();
            if let Some(t) = table {
                let first = req.workloads[w].1.initial_replicas();
                mine.extend(t.spanning_prices(&first, BOUND_POINTS).into_iter().map(
                    |miss_price| Policy::Hindsight {
                        target: BoundTarget::Price(miss_price),
                        mended: crate::policy::MENDED,
                    },
                ));
            }
            mine.into_iter().map(move |p| (w, p))
        })
        .collect();
    let mut options_by_workload: Vec<RunOptions> = tables
        .into_iter()
        .map(|hindsight| RunOptions {
            hindsight,
            ..req.options.clone()
        })
        .collect();
    let mut runs_by_workload: Vec<Vec<(Policy, FrontierPoint)>> =
        vec![Vec::new(); req.workloads.len()];
    for ((w, policy), point) in run_jobs(req, &jobs, &options_by_workload, &progress)? {
        runs_by_workload[w].push((policy, point));
    }
    refine_bound(req, &mut runs_by_workload, &options_by_workload, &progress)?;
    replay_beyond(
        req,
        &mut runs_by_workload,
        &mut options_by_workload,
        &progress,
    )?;
    Ok(req
        .workloads
        .iter()
        .zip(runs_by_workload)
        .map(|((name, _), runs)| {
            assess(
                name,
                runs,
                &req.policies,
                &req.reference,
                req.target_attainment,
            )
        })
        .collect())
}

/// The hindsight bound's misses per minute and fleet for each workload, when the bound runs:
/// measured once per workload and shared by all its settings, one thread per workload.
fn miss_tables(
    req: &FrontierRequest,
    bound: bool,
) -> Result<Vec<Option<std::sync::Arc<MissTable>>>, String> {
    if !bound {
        return Ok(vec![None; req.workloads.len()]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = req
            .workloads
            .iter()
            .map(|(_, scenario)| scope.spawn(|| MissTable::measure(scenario, req.slo)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "the hindsight bound's measurement panicked".to_string())?
                    .map(|t| Some(std::sync::Arc::new(t)))
            })
            .collect()
    })
}

/// Runs the bound again where a point of another policy lies beyond it.
fn refine_bound(
    req: &FrontierRequest,
    runs_by_workload: &mut [Vec<(Policy, FrontierPoint)>],
    options_by_workload: &[RunOptions],
    progress: &(impl Fn(usize, usize) + Sync),
) -> Result<(), String> {
    // Where a point lies beyond the bound's, the bound is also run within that point's budget
    // (its frontier sampled where it is compared), the budget corrected by what the last try
    // cost; above the bound's best, with headroom.
    let mut tried: Vec<(usize, f64, f64)> = Vec::new();
    for round in 0..REFINE_ROUNDS {
        let mut closer: Vec<(usize, Policy)> = Vec::new();
        for (w, runs) in runs_by_workload.iter().enumerate() {
            if options_by_workload[w].hindsight.is_none() {
                continue;
            }
            let points: Vec<FrontierPoint> = runs.iter().map(|(_, p)| p.clone()).collect();
            let best = points
                .iter()
                .filter(|p| p.policy == BOUND)
                .map(|p| p.slo_attainment)
                .fold(0.0, f64::max);
            for p in beyond_bound(&points) {
                let mut targets: Vec<BoundTarget> = Vec::new();
                if p.slo_attainment > best {
                    targets.push(BoundTarget::Headroom(1 << round));
                }
                let shares: &[f64] = if round == 0 {
                    &[0.95, 0.98, 1.0]
                } else {
                    &[1.0]
                };
                for &share in shares {
                    // A budget whose plan cost more than planned is scaled down by as much.
                    let drift = tried
                        .iter()
                        .filter(|(tw, b, _)| *tw == w && *b <= p.cost)
                        .map(|(_, b, cost)| cost / b)
                        .fold(1.0, f64::max);
                    let budget = round_to(share * p.cost / drift, 4);
                    targets.push(BoundTarget::Budget(budget));
                    if round > 0 {
                        targets.push(BoundTarget::BudgetWithHeadroom(budget));
                        targets.push(BoundTarget::BudgetHeld(budget));
                    }
                }
                if round == 1 {
                    targets.push(BoundTarget::Searched(round_to(p.cost, 4)));
                }
                for target in targets {
                    let mended = match target {
                        BoundTarget::Searched(_) => SEARCH_STEPS,
                        _ => crate::policy::MENDED,
                    };
                    let setting = (w, Policy::Hindsight { target, mended });
                    if !closer.contains(&setting) && !runs.iter().any(|(q, _)| *q == setting.1) {
                        closer.push(setting);
                    }
                }
            }
        }
        if closer.is_empty() {
            break;
        }
        for ((w, policy), point) in run_jobs(req, &closer, options_by_workload, progress)? {
            if let Policy::Hindsight {
                target: BoundTarget::Budget(b),
                mended: 0,
            } = policy
            {
                tried.push((w, b, point.cost));
            }
            runs_by_workload[w].push((policy, point));
        }
    }
    Ok(())
}

/// Where a point still lies beyond the bound's, the bound replays that point's own run and
/// improves it with hindsight ([`crate::peers::replay`]): its frontier is then never behind it.
fn replay_beyond(
    req: &FrontierRequest,
    runs_by_workload: &mut [Vec<(Policy, FrontierPoint)>],
    options_by_workload: &mut [RunOptions],
    progress: &(impl Fn(usize, usize) + Sync),
) -> Result<(), String> {
    let mut jobs: Vec<(usize, Policy)> = Vec::new();
    for (w, runs) in runs_by_workload.iter().enumerate() {
        if options_by_workload[w].hindsight.is_none() {
            continue;
        }
        let points: Vec<FrontierPoint> = runs.iter().map(|(_, p)| p.clone()).collect();
        for beyond in beyond_bound(&points) {
            let Some((seed, _)) = runs
                .iter()
                .find(|(q, p)| !matches!(q, Policy::Hindsight { .. }) && *p == beyond)
            else {
                continue;
            };
            let seeds = &mut options_by_workload[w].replay_seeds;
            let index = seeds.len() as u32;
            seeds.push(*seed);
            jobs.push((
                w,
                Policy::Hindsight {
                    target: BoundTarget::Replayed(index),
                    mended: crate::policy::MENDED,
                },
            ));
        }
    }
    for ((w, policy), point) in run_jobs(req, &jobs, options_by_workload, progress)? {
        runs_by_workload[w].push((policy, point));
    }
    Ok(())
}

/// A point of a workload (by index) with the setting it was run at.
type WorkloadPoint = ((usize, Policy), FrontierPoint);

/// Runs every (workload, setting) on as many threads as the machine has cores.
fn run_jobs(
    req: &FrontierRequest,
    jobs: &[(usize, Policy)],
    options_by_workload: &[RunOptions],
    progress: &(impl Fn(usize, usize) + Sync),
) -> Result<Vec<WorkloadPoint>, String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    type Points = Vec<(Policy, FrontierPoint)>;
    let results: std::sync::Mutex<Vec<Option<Result<Points, String>>>> =
        std::sync::Mutex::new(vec![None; jobs.len()]);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&(w, policy)) = jobs.get(i) else {
                        break;
                    };
                    let (name, scenario) = &req.workloads[w];
                    let options = RunOptions {
                        policy,
                        progress: false,
                        data_dir: None,
                        ..options_by_workload[w].clone()
                    };
                    let system = actix::System::new();
                    let point = system
                        .block_on(crate::bound::run_rounds(scenario, &options))
                        .map(|rounds| {
                            rounds
                                .into_iter()
                                .map(|(setting, result)| {
                                    let summary = summarize(setting.name(), &result, req.slo);
                                    (setting, FrontierPoint::of(&setting, &summary))
                                })
                                .collect::<Vec<_>>()
                        })
                        .map_err(|e| format!("{name}, {}: {e}", policy.name()));
                    if let Ok(mut results) = results.lock() {
                        results[i] = Some(point);
                    }
                    let finished = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    progress(finished, jobs.len());
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| "a frontier run panicked".to_string())?;
    let mut out = Vec::new();
    for (&(w, policy), result) in jobs.iter().zip(results) {
        let points = result.ok_or_else(|| format!("{}: a run did not finish", policy.name()))??;
        out.extend(points.into_iter().map(|(setting, p)| ((w, setting), p)));
    }
    Ok(out)
}

/// Marks the Pareto points and reads each policy's figures off its runs.
pub fn assess(
    workload: &str,
    runs: Vec<(Policy, FrontierPoint)>,
    policies: &[Policy],
    reference: &Policy,
    target_attainment: f64,
) -> WorkloadFrontier {
    let reference_cost = runs
        .iter()
        .find(|(p, _)| p == reference)
        .map(|(_, point)| point.cost);
    let mut points: Vec<FrontierPoint> = runs
        .into_iter()
        .filter(|(p, _)| policies.iter().any(|q| q.name() == p.name()))
        .map(|(_, point)| point)
        .collect();
    let dominated: Vec<bool> = points
        .iter()
        .map(|a| {
            points.iter().any(|b| {
                b.cost <= a.cost
                    && b.slo_attainment >= a.slo_attainment
                    && (b.cost < a.cost || b.slo_attainment > a.slo_attainment)
            })
        })
        .collect();
    for (p, d) in points.iter_mut().zip(dominated) {
        p.pareto = !d;
    }
    // Where no policy reaches the target, the figures are read two points under the best
    // attainment any policy reaches (the bound is the yardstick, not one of them), so that the
    // load still ranks them.
    let only_bound = points.iter().all(|p| p.policy == BOUND);
    let best = points
        .iter()
        .filter(|p| only_bound || p.policy != BOUND)
        .map(|p| p.slo_attainment)
        .fold(0.0, f64::max);
    let target_attainment = if best >= target_attainment {
        target_attainment
    } else {
        best - 0.02
    };
    let summaries = policies
        .iter()
        .map(|policy| {
            let mine: Vec<&FrontierPoint> = points
                .iter()
                .filter(|p| p.policy == policy.name())
                .collect();
            let envelope = envelope(&mine);
            let cost_at_target = cost_at(&envelope, target_attainment);
            PolicySummary {
                policy: policy.name().into(),
                cost_at_target,
                attainment_at_reference: reference_cost.and_then(|c| attainment_at(&envelope, c)),
                actions_at_target: mine
                    .iter()
                    .filter(|p| p.slo_attainment >= target_attainment)
                    .min_by(|a, b| a.cost.total_cmp(&b.cost))
                    .map(|p| p.scaling_actions),
            }
        })
        .collect();
    let beyond_bound = beyond_bound(&points);
    WorkloadFrontier {
        workload: workload.into(),
        target_attainment,
        reference_policy: reference.name().into(),
        reference_cost,
        points,
        summaries,
        beyond_bound,
    }
}

/// `x` to `digits` significant digits (settings that read as settings).
fn round_to(x: f64, digits: i32) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

/// How many runs a searched plan of the bound takes at most.
const SEARCH_STEPS: u32 = 10;

/// How many times the frontier samples the bound again where a point is not yet dominated.
const REFINE_ROUNDS: u32 = 4;

/// How many settings of the hindsight bound a frontier runs per workload.
pub const BOUND_POINTS: usize = 16;

/// The name the hindsight bound's points carry.
pub const BOUND: &str = "hindsight";

/// How far a point's attainment may lie above the bound's before it counts as beyond it: the
/// sampling noise of an attainment measured over `requests` requests (two binomial standard
/// deviations), and never less than one request. Two schedules of equal cost differ by that
/// much in which requests the router happens to put together; a point beyond the bound by less
/// says nothing.
pub fn attainment_noise(attainment: f64, requests: usize) -> f64 {
    let n = requests.max(1) as f64;
    (2.0 * (attainment * (1.0 - attainment) / n).sqrt()).max(1.0 / n)
}

/// The points the bound does not dominate: for each, no bound point is at most as dear and at
/// least as good, within the attainment's sampling noise (a bound point is taken as it was
/// measured, never interpolated). Empty when the bound was not run.
pub fn beyond_bound(points: &[FrontierPoint]) -> Vec<FrontierPoint> {
    let bound: Vec<&FrontierPoint> = points.iter().filter(|p| p.policy == BOUND).collect();
    if bound.is_empty() {
        return Vec::new();
    }
    points
        .iter()
        .filter(|p| p.policy != BOUND)
        .filter(|p| {
            let noise = attainment_noise(p.slo_attainment, p.requests);
            !bound
                .iter()
                .any(|b| b.cost <= p.cost + 1e-9 && b.slo_attainment >= p.slo_attainment - noise)
        })
        .cloned()
        .collect()
}

/// The best a policy can reach at each cost: the upper concave hull of its points, cheapest
/// first, attainment rising. Spending more never makes a policy's best worse, and running one
/// setting for part of the time and another for the rest reaches any point on the line between
/// them, so a setting under that line is never the best at its cost. Reading figures off the
/// hull rather than off the straight lines between neighbouring settings makes them monotone in
/// the points: a setting that gets cheaper, or better, can never raise a policy's cost at a
/// target (between neighbours it could: a new setting just under the old line cut the line).
pub fn envelope(points: &[&FrontierPoint]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points.iter().map(|p| (p.cost, p.slo_attainment)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(sorted.len());
    for point in sorted {
        if hull.last().is_some_and(|last| point.1 <= last.1) {
            // No better than something as cheap or cheaper.
            continue;
        }
        while let [.., (c0, a0), (c1, a1)] = hull[..] {
            // The middle point is dropped when it lies on or under the line from the one
            // before it to this one.
            if (a1 - a0) * (point.0 - c0) <= (point.1 - a0) * (c1 - c0) {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(point);
    }
    hull
}

/// The cost at which the envelope reaches `target`, interpolated linearly.
pub fn cost_at(envelope: &[(f64, f64)], target: f64) -> Option<f64> {
    let i = envelope.iter().position(|&(_, a)| a >= target)?;
    if i == 0 {
        return Some(envelope[0].0);
    }
    let ((c0, a0), (c1, a1)) = (envelope[i - 1], envelope[i]);
    Some(c0 + (c1 - c0) * (target - a0) / (a1 - a0))
}

/// The envelope's attainment at `cost`, interpolated linearly; `None` below its cheapest point.
pub fn attainment_at(envelope: &[(f64, f64)], cost: f64) -> Option<f64> {
    let first = envelope.first()?;
    if cost < first.0 {
        return None;
    }
    let i = envelope.iter().position(|&(c, _)| c > cost);
    match i {
        None => envelope.last().map(|&(_, a)| a),
        Some(i) => {
            let ((c0, a0), (c1, a1)) = (envelope[i - 1], envelope[i]);
            Some(a0 + (a1 - a0) * (cost - c0) / (c1 - c0))
        }
    }
}

/// The frontier of each workload as text: every point, then the two figures per policy.
pub fn render(frontiers: &[WorkloadFrontier]) -> String {
    let mut out = String::new();
    for f in frontiers {
        out.push_str(&format!("== {} ==\n", f.workload));
        out.push_str(&format!(
            "{:<14} {:>20} {:>8} {:>10} {:>10} {:>10} {:>8} {:>7}\n",
            "policy", "setting", "cost", "SLO att.", "TTFT p99", "ITL p99", "actions", "pareto"
        ));
        for p in &f.points {
            let setting = match (&p.knob, p.setting, p.mended) {
                (Some(k), Some(v), Some(m)) if m > 0 => format!("{k} {v} +{m}"),
                (Some(k), Some(v), _) => format!("{k} {v}"),
                _ => "-".into(),
            };
            out.push_str(&format!(
                "{:<14} {:>20} {:>8.2} {:>9.1}% {:>8.0}ms {:>8.1}ms {:>8} {:>7}\n",
                p.policy,
                setting,
                p.cost,
                p.slo_attainment * 100.0,
                p.ttft_p99_ms,
                p.itl_p99_ms,
                p.scaling_actions,
                if p.pareto { "*" } else { "" }
            ));
        }
        let reference = f
            .reference_cost
            .map_or("unknown".into(), |c| format!("{c:.2}"));
        out.push_str(&format!(
            "\n{:<14} {:>22} {:>28} {:>18}\n",
            "policy",
            format!("cost at {:.1} %", f.target_attainment * 100.0),
            format!("attainment at cost {reference}"),
            "actions at target"
        ));
        for s in &f.summaries {
            out.push_str(&format!(
                "{:<14} {:>22} {:>28} {:>18}\n",
                s.policy,
                s.cost_at_target
                    .map_or("not reached".into(), |c| format!("{c:.2}")),
                s.attainment_at_reference
                    .map_or("dearer".into(), |a| format!("{:.1} %", a * 100.0)),
                s.actions_at_target.map_or("-".into(), |a| a.to_string()),
            ));
        }
        if f.points.iter().any(|p| p.policy == BOUND) {
            if f.beyond_bound.is_empty() {
                out.push_str(
                    "the hindsight bound dominates every other point (within the attainment's sampling noise)\n",
                );
            }
            for p in &f.beyond_bound {
                out.push_str(&format!(
                    "BEYOND THE BOUND: {} {} at {:.2} for {:.1} %\n",
                    p.policy,
                    p.setting.map_or("-".into(), |v| v.to_string()),
                    p.cost,
                    p.slo_attainment * 100.0
                ));
            }
        }
        out.push('\n');
    }
    out
}

/// Writes `frontier.json` and, per workload, `frontier-<workload>.svg` and `.png`.
pub fn write(
    dir: &Path,
    frontiers: &[WorkloadFrontier],
) -> Result<Vec<std::path::PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let json = dir.join("frontier.json");
    let text = serde_json::to_string_pretty(frontiers).map_err(|e| e.to_string())?;
    std::fs::write(&json, text).map_err(|e| format!("{}: {e}", json.display()))?;
    written.push(json);
    for f in frontiers {
        let plot = plot(f);
        let stem = format!("frontier-{}", slug(&f.workload));
        let svg = dir.join(format!("{stem}.svg"));
        std::fs::write(&svg, plot.to_svg()?).map_err(|e| format!("{}: {e}", svg.display()))?;
        let png = dir.join(format!("{stem}.png"));
        plot.write_png(&png)?;
        written.extend([svg, png]);
    }
    Ok(written)
}

/// Attainment (%) against cost, one curve per policy through its settings by cost; the
/// bound's as its envelope (the best it reaches at or below each cost), its many samples being
/// one frontier.
pub fn plot(f: &WorkloadFrontier) -> Plot {
    let mut names: Vec<&str> = f.points.iter().map(|p| p.policy.as_str()).collect();
    names.dedup();
    let series = names
        .iter()
        .map(|name| {
            let mine: Vec<&FrontierPoint> = f.points.iter().filter(|p| p.policy == *name).collect();
            let mut points: Vec<(f64, f64)> = if *name == BOUND {
                envelope(&mine)
            } else {
                mine.iter().map(|p| (p.cost, p.slo_attainment)).collect()
            };
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let points = points.into_iter().map(|(c, a)| (c, a * 100.0)).collect();
            (name.to_string(), points)
        })
        .collect();
    Plot::new(
        &format!("SLO attainment against cost: {}", f.workload),
        "SLO attainment (%)",
        series,
    )
    .against("cost", 1.0)
    .with_markers()
    .zoomed_below(100.0)
}

/// A file-name-safe form of a workload name.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(policy: &str, setting: f64, cost: f64, attainment: f64) -> FrontierPoint {
        FrontierPoint {
            policy: policy.into(),
            knob: Some("k".into()),
            setting: Some(setting),
            mended: None,
            cost,
            gpu_hours: cost,
            slo_attainment: attainment,
            requests: 10_000,
            ttft_p99_ms: 0.0,
            itl_p99_ms: 0.0,
            scaling_actions: (cost * 10.0) as u32,
            peak_replicas: 0,
            pareto: false,
        }
    }

    #[test]
    fn the_envelope_never_falls_as_cost_grows() {
        let a = point("a", 1.0, 10.0, 0.8);
        let b = point("a", 2.0, 20.0, 0.7);
        let c = point("a", 3.0, 30.0, 0.99);
        let d = point("a", 4.0, 30.0, 0.9);
        let env = envelope(&[&c, &a, &b, &d]);
        assert_eq!(env, vec![(10.0, 0.8), (30.0, 0.99)]);
    }

    #[test]
    fn the_envelope_is_the_hull_a_mix_of_two_settings_reaches() {
        // (20, 0.85) lies under the line from (10, 0.8) to (30, 0.99): running the cheap
        // setting half the time and the dear one the other half does better at that cost.
        let points = [
            point("a", 1.0, 10.0, 0.8),
            point("a", 2.0, 20.0, 0.85),
            point("a", 3.0, 30.0, 0.99),
        ];
        let env = envelope(&points.iter().collect::<Vec<_>>());
        assert_eq!(env, vec![(10.0, 0.8), (30.0, 0.99)]);
        // A point above that line stays.
        let above = point("a", 4.0, 20.0, 0.95);
        let with_above: Vec<&FrontierPoint> = points.iter().chain([&above]).collect();
        assert_eq!(
            envelope(&with_above),
            vec![(10.0, 0.8), (20.0, 0.95), (30.0, 0.99)]
        );
    }

    #[test]
    fn a_setting_that_gets_cheaper_never_raises_the_cost_at_a_target() {
        // The case that made neighbour-to-neighbour lines misread a policy: a setting moving
        // from 51.76 to 47.60 at the same attainment cut the line the target was read on.
        let before = [
            point("a", 0.1, 40.49, 0.90),
            point("a", 0.15, 51.75, 0.97),
            point("a", 0.2, 51.76, 0.924),
        ];
        let after = [
            point("a", 0.1, 40.49, 0.90),
            point("a", 0.15, 51.75, 0.97),
            point("a", 0.2, 47.60, 0.924),
        ];
        let at = |points: &[FrontierPoint]| {
            cost_at(&envelope(&points.iter().collect::<Vec<_>>()), 0.95).expect("reached")
        };
        assert!(
            at(&after) <= at(&before),
            "{} > {}",
            at(&after),
            at(&before)
        );
    }

    #[test]
    fn figures_are_interpolated_between_settings() {
        let env = vec![(10.0, 0.85), (20.0, 0.95), (30.0, 0.99)];
        assert_eq!(cost_at(&env, 0.95), Some(20.0));
        let c = cost_at(&env, 0.90).expect("reached");
        assert!((c - 15.0).abs() < 1e-9, "{c}");
        assert_eq!(cost_at(&env, 0.999), None, "never reached");
        assert_eq!(cost_at(&env, 0.5), Some(10.0), "already at the cheapest");
        let a = attainment_at(&env, 25.0).expect("in range");
        assert!((a - 0.97).abs() < 1e-9, "{a}");
        assert_eq!(attainment_at(&env, 5.0), None, "cheaper than any setting");
        assert_eq!(attainment_at(&env, 50.0), Some(0.99));
    }

    #[test]
    fn pareto_points_are_those_nothing_beats() {
        let wva = Policy::parse("wva").expect("policy");
        let v1 = Policy::parse("wva-v1").expect("policy");
        let runs = vec![
            (wva, point("wva", 0.5, 10.0, 0.96)),
            (wva.with_knob(0.7), point("wva", 0.7, 8.0, 0.90)),
            (v1, point("wva-v1", 0.8, 12.0, 0.60)),
            (v1.with_knob(0.3), point("wva-v1", 0.3, 30.0, 0.96)),
        ];
        let f = assess("w", runs, &[wva, v1], &v1, 0.95);
        let pareto: Vec<(String, f64)> = f
            .points
            .iter()
            .filter(|p| p.pareto)
            .map(|p| (p.policy.clone(), p.cost))
            .collect();
        assert_eq!(pareto, vec![("wva".into(), 10.0), ("wva".into(), 8.0)]);
        assert_eq!(f.reference_cost, Some(12.0));
        let wva_summary = &f.summaries[0];
        // Between 8 (90 %) and 10 (96 %): 95 % is five sixths of the way.
        let cost = wva_summary.cost_at_target.expect("reached");
        assert!((cost - (8.0 + 2.0 * 5.0 / 6.0)).abs() < 1e-9, "{cost}");
        assert_eq!(wva_summary.attainment_at_reference, Some(0.96));
        assert_eq!(wva_summary.actions_at_target, Some(100));
        let v1_summary = &f.summaries[1];
        assert_eq!(v1_summary.cost_at_target, Some(12.0 + 18.0 * 35.0 / 36.0));
        assert_eq!(v1_summary.attainment_at_reference, Some(0.60));
        let text = render(&[f]);
        assert!(text.contains("== w =="), "{text}");
        assert!(text.contains("attainment at cost 12.00"), "{text}");
    }
}
