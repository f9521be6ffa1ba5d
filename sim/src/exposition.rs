//! The emulated server's metrics in vLLM's Prometheus exposition, in either generation of vLLM's
//! metric names, so a real Prometheus scraping `wva emulate` sees what it would see on a
//! cluster. The series live in a `prometheus` registry per server: the histograms are fed by
//! finished requests, and the gauges and counters are brought up to the server's state when the
//! page is rendered.

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder,
};

use crate::server::{Completed, Counters, Server};

/// Which generation of vLLM metric names to expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricNames {
    /// `vllm:kv_cache_usage_perc`, `vllm:inter_token_latency_seconds` (vLLM V1 engine).
    Current,
    /// `vllm:gpu_cache_usage_perc`, `vllm:time_per_output_token_seconds` (before the V1 engine).
    Legacy,
    /// The current names without the latency histograms (TTFT, ITL, end-to-end): servers
    /// behind an exporter that keeps only the gauges and counters.
    NoLatency,
}

impl MetricNames {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "current" | "new" | "v1" => Ok(Self::Current),
            "legacy" | "old" | "v0" => Ok(Self::Legacy),
            "no-latency" => Ok(Self::NoLatency),
            other => Err(format!(
                "expected current, legacy or no-latency, got {other:?}"
            )),
        }
    }

    fn kv_usage(self) -> &'static str {
        match self {
            Self::Current | Self::NoLatency => "vllm:kv_cache_usage_perc",
            Self::Legacy => "vllm:gpu_cache_usage_perc",
        }
    }

    fn inter_token(self) -> &'static str {
        match self {
            Self::Current | Self::NoLatency => "vllm:inter_token_latency_seconds",
            Self::Legacy => "vllm:time_per_output_token_seconds",
        }
    }

    /// The llm-d scheduler's flow-control queue gauge: `llm_d_epp_` since llm-d renamed the
    /// family, `inference_extension_` before.
    fn epp_queue(self) -> &'static str {
        match self {
            Self::Current | Self::NoLatency => "llm_d_epp_flow_control_queue_size",
            Self::Legacy => "inference_extension_flow_control_queue_size",
        }
    }
}

/// The `/metrics` page of an emulated llm-d scheduler (EPP) in front of the servers: the
/// requests its flow control holds, labelled as the EPP labels them.
#[derive(Debug, Clone)]
pub struct EppMetrics {
    registry: Registry,
    queue: GaugeVec,
    model_name: String,
}

impl EppMetrics {
    pub fn new(model_name: &str, names: MetricNames) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let queue = GaugeVec::new(
            Opts::new(
                names.epp_queue(),
                "Requests currently held in the flow-control queue.",
            ),
            &[
                "fairness_id",
                "priority",
                "inference_pool",
                "model_name",
                "target_model_name",
            ],
        )?;
        registry.register(Box::new(queue.clone()))?;
        Ok(Self {
            registry,
            queue,
            model_name: model_name.to_string(),
        })
    }

    /// The page with `held` requests in the queue.
    pub fn render(&self, held: usize) -> String {
        let model = self.model_name.as_str();
        self.queue
            .with_label_values(&["default", "0", "emulated-pool", model, model])
            .set(held as f64);
        let mut buf = Vec::new();
        match TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            Ok(()) => String::from_utf8(buf).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
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

/// The `/metrics` page of one emulated vLLM server serving `model_name`.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    registry: Registry,
    model_name: String,
    running: GaugeVec,
    waiting: GaugeVec,
    kv_usage: GaugeVec,
    preemptions: CounterVec,
    prompt_tokens: CounterVec,
    generation_tokens: CounterVec,
    success: CounterVec,
    /// The latency histograms (none with [`MetricNames::NoLatency`]).
    ttft: Option<HistogramVec>,
    itl: Option<HistogramVec>,
    e2e: Option<HistogramVec>,
    request_prompt_tokens: HistogramVec,
    request_generation_tokens: HistogramVec,
    /// The server's counters as last exposed, so that the exposed counters only move forward
    /// by what the server added since.
    exposed: Counters,
}

impl ServerMetrics {
    pub fn new(model_name: &str, names: MetricNames) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let labels = ["model_name"];
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(Opts::new(name, help), &labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter =
            |name: &str, help: &str, extra: &[&str]| -> Result<CounterVec, prometheus::Error> {
                let names: Vec<&str> = labels.iter().chain(extra).copied().collect();
                let c = CounterVec::new(Opts::new(name, help), &names)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, bounds: &[f64]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(bounds.to_vec()),
                    &labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let latency = names != MetricNames::NoLatency;
        Ok(Self {
            running: gauge(
                "vllm:num_requests_running",
                "Requests in the running batch.",
            )?,
            waiting: gauge(
                "vllm:num_requests_waiting",
                "Requests waiting to be scheduled.",
            )?,
            kv_usage: gauge(names.kv_usage(), "KV-cache usage, 1 means 100 percent.")?,
            preemptions: counter("vllm:num_preemptions_total", "Preempted sequences.", &[])?,
            prompt_tokens: counter("vllm:prompt_tokens_total", "Prefilled prompt tokens.", &[])?,
            generation_tokens: counter("vllm:generation_tokens_total", "Generated tokens.", &[])?,
            success: counter(
                "vllm:request_success_total",
                "Finished requests.",
                &["finished_reason"],
            )?,
            ttft: latency
                .then(|| {
                    histogram(
                        "vllm:time_to_first_token_seconds",
                        "Time to first token.",
                        TTFT_BOUNDS,
                    )
                })
                .transpose()?,
            itl: latency
                .then(|| {
                    histogram(
                        names.inter_token(),
                        "Time between output tokens.",
                        ITL_BOUNDS,
                    )
                })
                .transpose()?,
            e2e: latency
                .then(|| {
                    histogram(
                        "vllm:e2e_request_latency_seconds",
                        "End-to-end request latency.",
                        TTFT_BOUNDS,
                    )
                })
                .transpose()?,
            request_prompt_tokens: histogram(
                "vllm:request_prompt_tokens",
                "Prompt tokens per request.",
                TOKEN_BOUNDS,
            )?,
            request_generation_tokens: histogram(
                "vllm:request_generation_tokens",
                "Generated tokens per request.",
                TOKEN_BOUNDS,
            )?,
            registry,
            model_name: model_name.to_string(),
            exposed: Counters::default(),
        })
    }

    /// Records one finished request. ITL is observed once per output token after the first,
    /// as vLLM does.
    pub fn record(&self, done: &Completed) {
        let model = [self.model_name.as_str()];
        if let Some(ttft) = &self.ttft {
            ttft.with_label_values(&model).observe(done.ttft_ms / 1e3);
        }
        if let Some(itl) = &self.itl {
            let itl = itl.with_label_values(&model);
            for _ in 1..done.output_tokens {
                itl.observe(done.itl_ms / 1e3);
            }
        }
        if let Some(e2e) = &self.e2e {
            e2e.with_label_values(&model)
                .observe((done.finish_ms - done.arrival_ms).max(0.0) / 1e3);
        }
        self.request_prompt_tokens
            .with_label_values(&model)
            .observe(f64::from(done.prompt_tokens));
        self.request_generation_tokens
            .with_label_values(&model)
            .observe(f64::from(done.output_tokens));
    }

    /// The page: the gauges and counters brought up to the server's state, in the text format.
    pub fn render(&mut self, server: &Server) -> String {
        let model = [self.model_name.as_str()];
        self.running
            .with_label_values(&model)
            .set(server.running() as f64);
        self.waiting
            .with_label_values(&model)
            .set(server.waiting() as f64);
        self.kv_usage
            .with_label_values(&model)
            .set(server.kv_usage());
        let (now, before) = (&server.counters, &self.exposed);
        let forward = |c: &CounterVec, labels: &[&str], now: u64, before: u64| {
            c.with_label_values(labels)
                .inc_by(now.saturating_sub(before) as f64);
        };
        forward(
            &self.preemptions,
            &model,
            now.preemptions,
            before.preemptions,
        );
        forward(
            &self.prompt_tokens,
            &model,
            now.prompt_tokens,
            before.prompt_tokens,
        );
        forward(
            &self.generation_tokens,
            &model,
            now.generation_tokens,
            before.generation_tokens,
        );
        forward(
            &self.success,
            &[model[0], "length"],
            now.request_success,
            before.request_success,
        );
        self.exposed = now.clone();
        let mut buf = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode the emulated server's metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::h100;

    fn done(output_tokens: u32) -> Completed {
        Completed {
            id: 1,
            arrival_ms: 0.0,
            finish_ms: 500.0,
            ttft_ms: 100.0,
            itl_ms: 10.0,
            prompt_tokens: 300,
            output_tokens,
        }
    }

    #[test]
    fn both_name_generations_render_with_escaped_labels() {
        let mut server = Server::new(h100(), 0.0);
        let mut current = ServerMetrics::new("m\"x", MetricNames::Current).expect("metrics");
        current.record(&done(41));
        let page = current.render(&server);
        assert!(
            page.contains("vllm:kv_cache_usage_perc{model_name=\"m\\\"x\"} 0"),
            "{page}"
        );
        assert!(
            page.contains("vllm:inter_token_latency_seconds_count{model_name=\"m\\\"x\"} 40"),
            "{page}"
        );
        assert!(
            page.contains("vllm:time_to_first_token_seconds_sum{model_name=\"m\\\"x\"} 0.1"),
            "{page}"
        );
        assert!(page.contains("le=\"0.25\""), "vLLM's buckets: {page}");
        assert!(!page.contains("gpu_cache_usage_perc"));
        let mut legacy = ServerMetrics::new("m", MetricNames::Legacy).expect("metrics");
        legacy.record(&done(41));
        let page = legacy.render(&server);
        assert!(page.contains("vllm:gpu_cache_usage_perc{model_name=\"m\"} 0"));
        assert!(page.contains("vllm:time_per_output_token_seconds_count{model_name=\"m\"} 40"));
        // Without latency histograms: the gauges and counters, no TTFT, ITL or E2E.
        let mut bare = ServerMetrics::new("m", MetricNames::NoLatency).expect("metrics");
        bare.record(&done(41));
        let page = bare.render(&server);
        assert!(page.contains("vllm:kv_cache_usage_perc{model_name=\"m\"} 0"));
        assert!(page.contains("vllm:request_generation_tokens_count{model_name=\"m\"} 1"));
        assert!(
            !page.contains("latency_seconds") && !page.contains("first_token"),
            "{page}"
        );
        assert!(page.contains("vllm:request_prompt_tokens_sum{model_name=\"m\"} 300"));
        assert!(MetricNames::parse("bogus").is_err());

        // Counters follow the server's, and only forward.
        server.counters.request_success = 7;
        server.counters.prompt_tokens = 900;
        let page = legacy.render(&server);
        assert!(
            page.contains(
                "vllm:request_success_total{finished_reason=\"length\",model_name=\"m\"} 7"
            ),
            "{page}"
        );
        server.counters.request_success = 9;
        let page = legacy.render(&server);
        assert!(
            page.contains(
                "vllm:request_success_total{finished_reason=\"length\",model_name=\"m\"} 9"
            ),
            "{page}"
        );
        assert!(page.contains("vllm:prompt_tokens_total{model_name=\"m\"} 900"));
    }
}
