//! The outcome of a simulation: a summary (requests, latency percentiles, SLO attainment,
//! GPU-hours and cost, scaling), and a report directory with the numbers as JSON, the final
//! published metrics, and plots over time as SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::{RunResult, Sample, VariantResult, percentile};

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
    let mut put = |name: &str, body: String| -> Result<(), String> {
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
    put("summary.json", json)?;
    put("metrics.prom", result.metrics_text.clone())?;

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
    put(
        "replicas.svg",
        svg_plot("Replicas per variant", "replicas", &replicas),
    )?;
    put(
        "queue.svg",
        svg_plot(
            "Waiting requests",
            "requests",
            &[(
                "waiting".into(),
                s.iter().map(|x| (x.t_s, x.waiting as f64)).collect(),
            )],
        ),
    )?;
    put(
        "kv.svg",
        svg_plot(
            "Mean KV-cache use (ready replicas)",
            "fraction",
            &[("kv".into(), s.iter().map(|x| (x.t_s, x.kv)).collect())],
        ),
    )?;
    put(
        "ttft.svg",
        svg_plot(
            "TTFT p50 per cycle",
            "ms",
            &[(
                "ttft p50".into(),
                s.iter()
                    .filter_map(|x| x.ttft_p50_ms.map(|v| (x.t_s, v)))
                    .collect(),
            )],
        ),
    )?;
    Ok(written)
}

type Series = (String, Vec<(f64, f64)>);

/// A line plot as a standalone SVG document.
pub fn svg_plot(title: &str, y_label: &str, series: &[Series]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 360.0;
    const L: f64 = 70.0;
    const R: f64 = 20.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    const COLORS: [&str; 6] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    ];
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let sx = |x: f64| L + x / x_max * (W - L - R);
    let sy = |y: f64| H - B - y / y_max * (H - T - B);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    let _ = write!(
        out,
        r#"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        H - B,
        W - R,
        H - B
    );
    let _ = write!(
        out,
        r#"<line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>"#,
        H - B
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let x = x_max * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            L - 6.0,
            sy(y) + 4.0,
            short(y)
        );
        let _ = write!(
            out,
            r##"<line x1="{L}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/>"##,
            sy(y),
            W - R
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            sx(x),
            H - B + 16.0,
            short(x / 60.0)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">minutes</text>"#,
        (L + W - R) / 2.0,
        H - 12.0
    );
    let _ = write!(
        out,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#,
        H / 2.0,
        H / 2.0,
        escape(y_label)
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            path.join(" ")
        );
        let ly = T + 14.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/>"#,
            W - R - 190.0,
            ly - 9.0
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{ly}">{}</text>"#,
            W - R - 175.0,
            escape(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
