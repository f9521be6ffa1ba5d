//! The outcome of a simulation: a summary (requests, latency percentiles, SLO attainment,
//! GPU-hours and cost, scaling), and a report directory with the numbers as JSON, the final
//! published metrics, and plots over time as SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::plot::{Figure, Plot, Series};
use super::results::{
    MissBreakdown, ModelBasedTally, RunResult, Sample, SloTargets, VariantResult, VariantSample,
    percentile,
};

/// The numbers of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub policy: String,
    pub requests: usize,
    pub completed: usize,
    /// Failed (timed out at the gateway, or never fitting) plus unfinished at the end.
    pub failed: u64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p99_ms: f64,
    /// Share of all requests that finished within both targets.
    pub slo_attainment: f64,
    pub slo: SloTargets,
    pub gpu_hours: f64,
    pub cost: f64,
    /// Replica-hours spent Pending for want of an accelerator (a finite `--pool` only).
    pub pending_replica_hours: f64,
    pub scaling_actions: u32,
    pub peak_replicas: u32,
    pub cycles: usize,
    pub safety_net_cycles: usize,
    /// Hybrid and model-only runs: cycles in which the model-based optimizer proposed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_based: Option<ModelBasedTally>,
    /// The requests that missed an objective, by the stage of scaling they waited on.
    pub misses: MissBreakdown,
    pub variants: Vec<VariantResult>,
    /// What the decision log kept (runs with `--data-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_log: Option<crate::results::LogFootprint>,
}

pub fn summarize(policy: &str, result: &RunResult, slo: SloTargets) -> Summary {
    let c = &result.completed;
    let within = c
        .iter()
        .filter(|r| r.ttft_ms <= slo.ttft_ms && r.itl_ms <= slo.itl_ms)
        .count();
    let failed = result.failed + result.unfinished as u64;
    let requests = c.len() + failed as usize;
    let p = |values: Vec<f64>, q| percentile(values, q).unwrap_or(0.0);
    Summary {
        policy: policy.to_string(),
        requests,
        completed: c.len(),
        failed,
        ttft_p50_ms: p(c.iter().map(|r| r.ttft_ms).collect(), 0.5),
        ttft_p99_ms: p(c.iter().map(|r| r.ttft_ms).collect(), 0.99),
        itl_p50_ms: p(
            c.iter()
                .filter(|r| r.output_tokens > 1)
                .map(|r| r.itl_ms)
                .collect(),
            0.5,
        ),
        itl_p99_ms: p(
            c.iter()
                .filter(|r| r.output_tokens > 1)
                .map(|r| r.itl_ms)
                .collect(),
            0.99,
        ),
        slo_attainment: if requests == 0 {
            1.0
        } else {
            within as f64 / requests as f64
        },
        slo,
        gpu_hours: result.variants.iter().map(|v| v.gpu_hours).sum(),
        cost: result.variants.iter().map(|v| v.cost).sum(),
        pending_replica_hours: result
            .variants
            .iter()
            .map(|v| v.pending_replica_hours)
            .sum(),
        scaling_actions: result.variants.iter().map(|v| v.scaling_actions).sum(),
        peak_replicas: result.variants.iter().map(|v| v.peak_replicas).sum(),
        cycles: result.cycles,
        safety_net_cycles: result.safety_net_cycles,
        model_based: result.model_based.clone(),
        misses: result.misses,
        variants: result.variants.clone(),
        decision_log: result.decision_log,
    }
}

/// The summary as a table for a terminal.
pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy              {}", s.policy);
    let _ = writeln!(
        out,
        "requests            {} ({} completed, {} failed or unfinished)",
        s.requests, s.completed, s.failed
    );
    let _ = writeln!(
        out,
        "TTFT p50 / p99      {:.0} ms / {:.0} ms",
        s.ttft_p50_ms, s.ttft_p99_ms
    );
    let _ = writeln!(
        out,
        "ITL p50 / p99       {:.1} ms / {:.1} ms",
        s.itl_p50_ms, s.itl_p99_ms
    );
    let _ = writeln!(
        out,
        "SLO attainment      {:.1} % (TTFT <= {:.0} ms and ITL <= {:.0} ms)",
        s.slo_attainment * 100.0,
        s.slo.ttft_ms,
        s.slo.itl_ms
    );
    let _ = writeln!(
        out,
        "GPU-hours / cost    {:.2} / {:.2}",
        s.gpu_hours, s.cost
    );
    if s.pending_replica_hours > 0.0 {
        let _ = writeln!(
            out,
            "Pending             {:.2} replica-hours (replicas the pool had no accelerator for)",
            s.pending_replica_hours
        );
    }
    let _ = writeln!(
        out,
        "scaling actions     {} (peak replicas {})",
        s.scaling_actions, s.peak_replicas
    );
    let _ = writeln!(
        out,
        "autoscaler cycles   {} ({} on the safety net)",
        s.cycles, s.safety_net_cycles
    );
    let m = &s.misses;
    let _ = writeln!(
        out,
        "misses by cause     trigger {}, ask {}, grant {}, warm-up {}, never asked {}",
        m.trigger, m.ask, m.grant, m.warm_up, m.never_asked
    );
    if let Some(l) = &s.decision_log {
        let _ = writeln!(
            out,
            "decision log        {} records, {:.0} KB ({:.0} KB per variant-day)",
            l.records,
            l.bytes as f64 / 1e3,
            l.bytes_per_variant_day / 1e3
        );
    }
    if let Some(m) = &s.model_based {
        let _ = writeln!(
            out,
            "model-based         proposed in {} of {} cycles{}",
            m.proposed,
            m.cycles,
            m.first_abstention
                .as_ref()
                .map_or(String::new(), |why| format!(" (first abstained: {why})"))
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<6} {:>9} {:>8} {:>8} {:>6} {:>10}",
        "VARIANT", "ACCEL", "GPU-HOURS", "COST", "ACTIONS", "PEAK", "COMPLETED"
    );
    for v in &s.variants {
        let _ = writeln!(
            out,
            "{:<16} {:<6} {:>9.2} {:>8.2} {:>8} {:>6} {:>10}",
            v.name,
            v.accelerator,
            v.gpu_hours,
            v.cost,
            v.scaling_actions,
            v.peak_replicas,
            v.completed
        );
    }
    out
}

#[derive(Serialize)]
struct ReportJson<'a> {
    summary: &'a Summary,
    samples: &'a [Sample],
}

/// Writes `summary.json`, `metrics.prom` and the plots (SVG and PNG) into `dir`.
pub fn write(dir: &Path, summary: &Summary, result: &RunResult) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(&ReportJson {
        summary,
        samples: &result.samples,
    })
    .map_err(|e| e.to_string())?;
    for (name, body) in [
        ("summary.json", json),
        ("metrics.prom", result.metrics_text.clone()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    written.extend(write_figures(dir, &figures(summary, result))?);
    Ok(written)
}

/// The figures of one run, by file name: replicas against desired per variant (desired dashed,
/// so a line lying on the other still shows), KV-cache use and waiting requests with one panel
/// per variant and the saturation threshold drawn, and p99 TTFT per cycle on a log axis
/// against the SLO.
pub fn figures(summary: &Summary, result: &RunResult) -> Vec<(&'static str, Figure)> {
    let s = &result.samples;
    let names: Vec<String> = s
        .first()
        .map(|x| x.variants.keys().cloned().collect())
        .unwrap_or_default();
    let of = |name: &str, f: &dyn Fn(&VariantSample) -> Option<f64>| -> Vec<(f64, f64)> {
        s.iter()
            .filter_map(|x| x.variants.get(name).and_then(f).map(|v| (x.t_s, v)))
            .collect()
    };
    let mut replicas = Plot::new("Replicas per variant", "replicas", Vec::new()).integers();
    for name in &names {
        replicas.series.push((
            format!("{name} replicas"),
            of(name, &|v| Some(f64::from(v.replicas))),
        ));
        let desired = format!("{name} desired");
        replicas
            .series
            .push((desired.clone(), of(name, &|v| v.desired.map(f64::from))));
        replicas = replicas.dash(&desired);
    }
    let t = result.thresholds;
    let panel = |title: String, unit: &str, series: Series, reference: (&str, f64)| {
        Plot::new(&title, unit, vec![series]).reference(reference.0, reference.1)
    };
    let kv = names
        .iter()
        .map(|name| {
            panel(
                format!("KV-cache use, {name} (mean over ready replicas)"),
                "fraction",
                ("kv".into(), of(name, &|v| Some(v.kv))),
                ("kvCacheThreshold", t.kv_cache_threshold),
            )
        })
        .collect();
    let queue = names
        .iter()
        .map(|name| {
            panel(
                format!("Waiting requests, {name}"),
                "requests",
                ("waiting".into(), of(name, &|v| Some(v.waiting as f64))),
                ("queueLengthThreshold", t.queue_length_threshold),
            )
        })
        .collect();
    let ttft = Plot::new(
        "TTFT per cycle",
        "ms (log)",
        vec![
            (
                "p99".into(),
                s.iter()
                    .filter_map(|x| x.ttft_p99_ms.map(|v| (x.t_s, v)))
                    .collect(),
            ),
            (
                "p50".into(),
                s.iter()
                    .filter_map(|x| x.ttft_p50_ms.map(|v| (x.t_s, v)))
                    .collect(),
            ),
        ],
    )
    .log()
    .dash("p50")
    .reference("SLO", summary.slo.ttft_ms);
    vec![
        ("replicas", Figure::single(replicas)),
        ("kv", Figure::panels(kv)),
        ("queue", Figure::panels(queue)),
        ("ttft", Figure::single(ttft)),
    ]
}

/// Figures comparing runs of several policies on one load: one figure per measure, one line
/// per policy (total replicas, waiting requests, p99 TTFT per cycle against the SLO).
pub fn compare_figures(runs: &[(&Summary, &RunResult)]) -> Vec<(&'static str, Figure)> {
    let line = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<Series> {
        runs.iter()
            .map(|(summary, result)| {
                (
                    summary.policy.clone(),
                    result
                        .samples
                        .iter()
                        .filter_map(|x| f(x).map(|v| (x.t_s, v)))
                        .collect(),
                )
            })
            .collect()
    };
    let slo = runs.first().map_or(0.0, |(s, _)| s.slo.ttft_ms);
    vec![
        (
            "replicas",
            Figure::single(
                Plot::new(
                    "Replicas of the model, by policy",
                    "replicas",
                    line(&|x| Some(x.variants.values().map(|v| f64::from(v.replicas)).sum())),
                )
                .integers(),
            ),
        ),
        (
            "queue",
            Figure::single(Plot::new(
                "Waiting requests, by policy",
                "requests",
                line(&|x| Some(x.waiting as f64)),
            )),
        ),
        (
            "ttft",
            Figure::single(
                Plot::new(
                    "p99 TTFT per cycle, by policy",
                    "ms (log)",
                    line(&|x| x.ttft_p99_ms),
                )
                .log()
                .reference("SLO", slo),
            ),
        ),
    ]
}

/// Writes `figures` as SVG and PNG into `dir`; returns the files written.
pub fn write_figures(dir: &Path, figures: &[(&str, Figure)]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, figure) in figures {
        let svg = dir.join(format!("{name}.svg"));
        std::fs::write(&svg, figure.to_svg()?).map_err(|e| format!("{}: {e}", svg.display()))?;
        let png = dir.join(format!("{name}.png"));
        figure.write_png(&png)?;
        written.extend([svg, png]);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::VariantSample;
    use std::collections::BTreeMap;

    /// A run of two variants over ten minutes: the H100 one follows its desired count with a
    /// lag, the A100 one sits at one replica the whole time.
    fn run() -> RunResult {
        let samples = (1..=40)
            .map(|i| {
                let t_s = f64::from(i) * 15.0;
                let desired = if i < 10 { 1 } else { 3 };
                let replicas = if i < 14 { 1 } else { 3 };
                let variant = |replicas, desired, kv| VariantSample {
                    replicas,
                    ready: replicas,
                    desired: Some(desired),
                    kv,
                    waiting: (i % 7) as usize,
                };
                Sample {
                    t_s,
                    variants: BTreeMap::from([
                        ("a100".to_string(), variant(1, 1, 0.3)),
                        ("h100".to_string(), variant(replicas, desired, 0.6)),
                    ]),
                    waiting: (i % 7) as usize * 2,
                    kv: 0.45,
                    ttft_p50_ms: Some(40.0),
                    ttft_p99_ms: Some(if i < 12 { 9_000.0 } else { 300.0 }),
                }
            })
            .collect();
        RunResult {
            completed: Vec::new(),
            failed: 0,
            unfinished: 0,
            variants: Vec::new(),
            samples,
            metrics_text: String::new(),
            cycles: 40,
            safety_net_cycles: 0,
            model_based: None,
            decision_log: None,
            thresholds: wva_actors::policy::Thresholds::default(),
            misses: Default::default(),
            scaling: Vec::new(),
        }
    }

    fn named<'a>(figures: &'a [(&str, Figure)], name: &str) -> &'a Figure {
        &figures.iter().find(|(n, _)| *n == name).expect(name).1
    }

    fn series_names(plot: &Plot) -> Vec<&str> {
        plot.series.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Issue 18: the plots of a run, checked by what they draw.
    #[test]
    fn a_run_s_figures_compare_what_matters() {
        let result = run();
        let summary = summarize("wva", &result, SloTargets::default());
        let figures = figures(&summary, &result);

        // Replicas: each variant's replicas and its desired count, the desired dashed (it
        // lies on the replicas most of the time); whole-number round ticks; minutes.
        let replicas = &named(&figures, "replicas").panels[0];
        assert_eq!(
            series_names(replicas),
            [
                "a100 replicas",
                "a100 desired",
                "h100 replicas",
                "h100 desired"
            ]
        );
        assert!(
            replicas.dashed.contains("a100 desired") && replicas.dashed.contains("h100 desired")
        );
        assert!(!replicas.dashed.contains("h100 replicas"));
        assert_eq!(replicas.y_ticks(), [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(replicas.x_ticks(), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);

        // KV and queue: a panel per variant, each with the threshold it is judged against.
        for (name, reference, value) in [
            ("kv", "kvCacheThreshold", 0.8),
            ("queue", "queueLengthThreshold", 5.0),
        ] {
            let figure = named(&figures, name);
            assert_eq!(figure.panels.len(), 2, "{name}");
            assert!(figure.panels[0].title.contains("a100"));
            assert!(figure.panels[1].title.contains("h100"));
            for panel in &figure.panels {
                assert_eq!(panel.references, [(reference.to_string(), value)]);
                let ticks = panel.y_ticks();
                assert!(*ticks.last().expect("ticks") >= value, "{ticks:?}");
            }
        }

        // TTFT: p99 on a log axis with the SLO line, decades for ticks.
        let ttft = &named(&figures, "ttft").panels[0];
        assert!(ttft.log_y);
        assert_eq!(series_names(ttft), ["p99", "p50"]);
        assert_eq!(ttft.references, [("SLO".to_string(), summary.slo.ttft_ms)]);
        assert_eq!(ttft.y_ticks(), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn compare_figures_draw_one_line_per_policy() {
        let (a, b) = (run(), run());
        let (sa, sb) = (
            summarize("wva", &a, SloTargets::default()),
            summarize("hpa-kv", &b, SloTargets::default()),
        );
        let figures = compare_figures(&[(&sa, &a), (&sb, &b)]);
        let names: Vec<&str> = figures.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["replicas", "queue", "ttft"]);
        for (_, figure) in &figures {
            assert_eq!(series_names(&figure.panels[0]), ["wva", "hpa-kv"]);
        }
        // The model's replicas: both variants summed.
        let total = &named(&figures, "replicas").panels[0].series[0].1;
        assert_eq!(total.last().map(|p| p.1), Some(4.0));
    }
}
