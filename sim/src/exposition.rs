//! The emulated server's metrics in vLLM's Prometheus text exposition, in either generation of
//! vLLM's metric names, so a real Prometheus scraping `wva emulate` sees what it would see on a
//! cluster.

use std::fmt::Write as _;

use super::server::{Completed, Server};

/// Which generation of vLLM metric names to expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricNames {
    /// `vllm:kv_cache_usage_perc`, `vllm:inter_token_latency_seconds` (vLLM V1 engine).
    Current,
    /// `vllm:gpu_cache_usage_perc`, `vllm:time_per_output_token_seconds` (before the V1 engine).
    Legacy,
}

impl MetricNames {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "current" | "new" | "v1" => Ok(Self::Current),
            "legacy" | "old" | "v0" => Ok(Self::Legacy),
            other => Err(format!("expected current or legacy, got {other:?}")),
        }
    }

    fn kv_usage(self) -> &'static str {
        match self {
            Self::Current => "vllm:kv_cache_usage_perc",
            Self::Legacy => "vllm:gpu_cache_usage_perc",
        }
    }

    fn inter_token(self) -> &'static str {
        match self {
            Self::Current => "vllm:inter_token_latency_seconds",
            Self::Legacy => "vllm:time_per_output_token_seconds",
        }
    }
}

/// A cumulative histogram with fixed upper bounds, as Prometheus client libraries keep them.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound; `+Inf` is `count`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

// vLLM's own bucket bounds for these histograms (seconds, and tokens).
const TTFT_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const ITL_BOUNDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
const TOKEN_BOUNDS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter_mut()) {
            if value <= *bound {
                *bucket += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {bucket}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The latency and length histograms of one server, fed by its finished requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHistograms {
    pub ttft_s: Histogram,
    pub itl_s: Histogram,
    pub e2e_s: Histogram,
    pub prompt_tokens: Histogram,
    pub generation_tokens: Histogram,
}

impl Default for RequestHistograms {
    fn default() -> Self {
        Self {
            ttft_s: Histogram::new(TTFT_BOUNDS),
            itl_s: Histogram::new(ITL_BOUNDS),
            e2e_s: Histogram::new(TTFT_BOUNDS),
            prompt_tokens: Histogram::new(TOKEN_BOUNDS),
            generation_tokens: Histogram::new(TOKEN_BOUNDS),
        }
    }
}

impl RequestHistograms {
    /// Records one finished request. ITL is observed once per output token after the first,
    /// as vLLM does.
    pub fn record(&mut self, done: &Completed) {
        self.ttft_s.observe(done.ttft_ms / 1e3);
        for _ in 1..done.output_tokens {
            self.itl_s.observe(done.itl_ms / 1e3);
        }
        self.e2e_s
            .observe((done.finish_ms - done.arrival_ms).max(0.0) / 1e3);
        self.prompt_tokens.observe(f64::from(done.prompt_tokens));
        self.generation_tokens
            .observe(f64::from(done.output_tokens));
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, labels: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

fn counter(out: &mut String, name: &str, labels: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// The `/metrics` page of one emulated vLLM server serving `model_name`.
pub fn render(
    server: &Server,
    histograms: &RequestHistograms,
    model_name: &str,
    names: MetricNames,
) -> String {
    let labels = format!("model_name=\"{}\"", escape_label(model_name));
    let mut out = String::with_capacity(8 * 1024);
    let c = &server.counters;
    gauge(
        &mut out,
        "vllm:num_requests_running",
        &labels,
        "Requests in the running batch.",
        server.running() as f64,
    );
    gauge(
        &mut out,
        "vllm:num_requests_waiting",
        &labels,
        "Requests waiting to be scheduled.",
        server.waiting() as f64,
    );
    gauge(
        &mut out,
        names.kv_usage(),
        &labels,
        "KV-cache usage, 1 means 100 percent.",
        server.kv_usage(),
    );
    counter(
        &mut out,
        "vllm:num_preemptions_total",
        &labels,
        "Preempted sequences.",
        c.preemptions as f64,
    );
    counter(
        &mut out,
        "vllm:prompt_tokens_total",
        &labels,
        "Prefilled prompt tokens.",
        c.prompt_tokens as f64,
    );
    counter(
        &mut out,
        "vllm:generation_tokens_total",
        &labels,
        "Generated tokens.",
        c.generation_tokens as f64,
    );
    let _ = writeln!(out, "# HELP vllm:request_success_total Finished requests.");
    let _ = writeln!(out, "# TYPE vllm:request_success_total counter");
    let _ = writeln!(
        out,
        "vllm:request_success_total{{{labels},finished_reason=\"length\"}} {}",
        c.request_success
    );
    histograms.ttft_s.write(
        &mut out,
        "vllm:time_to_first_token_seconds",
        &labels,
        "Time to first token.",
    );
    histograms.itl_s.write(
        &mut out,
        names.inter_token(),
        &labels,
        "Time between output tokens.",
    );
    histograms.e2e_s.write(
        &mut out,
        "vllm:e2e_request_latency_seconds",
        &labels,
        "End-to-end request latency.",
    );
    histograms.prompt_tokens.write(
        &mut out,
        "vllm:request_prompt_tokens",
        &labels,
        "Prompt tokens per request.",
    );
    histograms.generation_tokens.write(
        &mut out,
        "vllm:request_generation_tokens",
        &labels,
        "Generated tokens per request.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::profiles::h100;
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0, 5.0]);
        for v in [0.5, 1.5, 1.7, 10.0] {
            h.observe(v);
        }
        assert_eq!(h.buckets, vec![1, 3, 3]);
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 13.7).abs() < 1e-9);
    }

    #[test]
    fn both_name_generations_render() {
        let server = Server::new(h100(), 0.0);
        let mut histograms = RequestHistograms::default();
        histograms.record(&Completed {
            id: 1,
            arrival_ms: 0.0,
            finish_ms: 500.0,
            ttft_ms: 100.0,
            itl_ms: 10.0,
            prompt_tokens: 300,
            output_tokens: 41,
        });
        let current = render(&server, &histograms, "m\"x", MetricNames::Current);
        assert!(current.contains("vllm:kv_cache_usage_perc{model_name=\"m\\\"x\"} 0"));
        assert!(
            current.contains("vllm:inter_token_latency_seconds_count{model_name=\"m\\\"x\"} 40")
        );
        assert!(
            current.contains("vllm:time_to_first_token_seconds_sum{model_name=\"m\\\"x\"} 0.1")
        );
        assert!(!current.contains("gpu_cache_usage_perc"));
        let legacy = render(&server, &histograms, "m", MetricNames::Legacy);
        assert!(legacy.contains("vllm:gpu_cache_usage_perc{model_name=\"m\"} 0"));
        assert!(legacy.contains("vllm:time_per_output_token_seconds_count{model_name=\"m\"} 40"));
        assert!(legacy.contains("vllm:request_prompt_tokens_sum{model_name=\"m\"} 300"));
        assert!(MetricNames::parse("bogus").is_err());
    }
}
