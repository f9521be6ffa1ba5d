//! The outcome of a simulation: a summary (requests, latency percentiles, SLO attainment,
//! GPU-hours and cost, scaling), and a report directory with the numbers as JSON, the final
//! published metrics, and plots over time as SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::{ModelBasedTally, RunResult, Sample, VariantResult, percentile};
use super::plot::Plot;

/// Latency objectives a request is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SloTargets {
    pub ttft_ms: f64,
    pub itl_ms: f64,
}

impl Default for SloTargets {
    fn default() -> Self {
        Self {
            ttft_ms: 1_000.0,
            itl_ms: 50.0,
        }
    }
}

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
    pub scaling_actions: u32,
    pub peak_replicas: u32,
    pub cycles: usize,
    pub safety_net_cycles: usize,
    /// Hybrid and model-only runs: cycles in which the model-based optimizer proposed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_based: Option<ModelBasedTally>,
    pub variants: Vec<VariantResult>,
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
        scaling_actions: result.variants.iter().map(|v| v.scaling_actions).sum(),
        peak_replicas: result.variants.iter().map(|v| v.peak_replicas).sum(),
        cycles: result.cycles,
        safety_net_cycles: result.safety_net_cycles,
        model_based: result.model_based.clone(),
        variants: result.variants.clone(),
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

/// Writes `summary.json`, `metrics.prom` and the SVG plots into `dir`.
pub fn write(dir: &Path, summary: &Summary, result: &RunResult) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let mut put = |name: &str, body: Vec<u8>| -> Result<(), String> {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    let json = serde_json::to_string_pretty(&ReportJson {
        summary,
        samples: &result.samples,
    })
    .map_err(|e| e.to_string())?;
    put("summary.json", json.into_bytes())?;
    put("metrics.prom", result.metrics_text.clone().into_bytes())?;

    let s = &result.samples;
    let names: Vec<String> = s
        .first()
        .map(|x| x.variants.keys().cloned().collect())
        .unwrap_or_default();
    let mut replicas = Vec::new();
    for name in &names {
        replicas.push((
            format!("{name} replicas"),
            s.iter()
                .map(|x| (x.t_s, f64::from(x.variants[name].0)))
                .collect(),
        ));
        replicas.push((
            format!("{name} desired"),
            s.iter()
                .filter_map(|x| x.variants[name].2.map(|d| (x.t_s, f64::from(d))))
                .collect(),
        ));
    }
    let plots = [
        (
            "replicas",
            Plot::new("Replicas per variant", "replicas", replicas).integers(),
        ),
        (
            "queue",
            Plot::new(
                "Waiting requests",
                "requests",
                vec![(
                    "waiting".into(),
                    s.iter().map(|x| (x.t_s, x.waiting as f64)).collect(),
                )],
            ),
        ),
        (
            "kv",
            Plot::new(
                "Mean KV-cache use (ready replicas)",
                "fraction",
                vec![("kv".into(), s.iter().map(|x| (x.t_s, x.kv)).collect())],
            ),
        ),
        (
            "ttft",
            Plot::new(
                "TTFT p50 per cycle",
                "ms",
                vec![(
                    "ttft p50".into(),
                    s.iter()
                        .filter_map(|x| x.ttft_p50_ms.map(|v| (x.t_s, v)))
                        .collect(),
                )],
            ),
        ),
    ];
    let mut pngs = Vec::new();
    for (name, plot) in plots {
        put(&format!("{name}.svg"), plot.to_svg()?.into_bytes())?;
        pngs.push((dir.join(format!("{name}.png")), plot));
    }
    for (path, plot) in pngs {
        plot.write_png(&path)?;
        written.push(path);
    }
    Ok(written)
}
