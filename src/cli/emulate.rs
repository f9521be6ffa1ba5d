//! `wva emulate`: emulated vLLM servers on local ports, for a real Prometheus to scrape.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use wva_sim::emulate::{EmulateOptions, ServerRole};
use wva_sim::exposition::MetricNames;
use wva_sim::load::{Arrivals, RateShape, SyntheticLoad, TokenLengths};

use crate::exit::{INVALID_INPUT, fail};

pub fn main(args: EmulateArgs) -> ExitCode {
    match emulate_options(&args) {
        Ok(options) => serve(options),
        Err(e) => fail("emulate", &e, INVALID_INPUT),
    }
}

/// Serve emulated vLLM servers on local ports: `/metrics` for a real Prometheus to scrape and
/// `/v1/completions` answering after the modelled latency, kept busy by a load shape or a
/// trace. Prints the endpoints as one JSON line once every port is bound.
#[derive(Debug, clap::Args)]
pub struct EmulateArgs {
    /// Number of servers (replicas); server i listens on --base-port + i.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// Accelerator profile: H100, A100 or L40S.
    #[arg(long, default_value = "H100")]
    pub accelerator: String,
    /// The `model_name` label and the model the completions endpoint serves.
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    pub model: String,
    /// vLLM metric-name generation: current (kv_cache_usage_perc, inter_token_latency),
    /// legacy (gpu_cache_usage_perc, time_per_output_token), or no-latency (current names
    /// without the TTFT, ITL and end-to-end histograms).
    #[arg(long, default_value = "current")]
    pub metric_names: String,
    /// Background load: constant:RPS, ramp:FROM:TO, square:LOW:HIGH:PERIOD_S[:DUTY],
    /// diurnal:MEAN:AMPLITUDE:PERIOD_S, or none.
    #[arg(long, default_value = "constant:2")]
    pub load: String,
    /// Replay a CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens) as the background load.
    #[arg(long, conflicts_with = "load")]
    pub trace: Option<PathBuf>,
    /// Divide the trace's inter-arrival times by this.
    #[arg(long, default_value_t = 1.0)]
    pub trace_speedup: f64,
    /// Mean prompt length of the generated load, in tokens.
    #[arg(long, default_value_t = 800.0)]
    pub prompt_tokens: f64,
    /// Mean output length of the generated load, in tokens.
    #[arg(long, default_value_t = 220.0)]
    pub output_tokens: f64,
    /// How long to serve (wall clock), e.g. 10m; the process exits at the end.
    #[arg(long, default_value = "1h")]
    pub duration: String,
    /// Run the servers' clock this many times faster than the wall clock.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: std::net::IpAddr,
    /// First port (0: any free ports).
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
    /// Seed of the generated load.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Put an emulated llm-d scheduler (EPP) in front: its flow control holds requests while
    /// every server is saturated, and its /metrics shows the held count under the current
    /// (llm_d_epp_*) or legacy (inference_extension_*) name. With --servers 0 every request
    /// waits there (a model at zero).
    #[arg(long)]
    pub epp: Option<String>,
    /// The servers' part in disaggregated serving: both (a plain vLLM server), prefill (a
    /// request leaves with its first token) or decode (prompts arrive with their KV computed).
    #[arg(long, default_value = "both")]
    pub role: String,
}

fn emulate_options(spec: &EmulateArgs) -> Result<EmulateOptions, String> {
    let profile = wva_sim::profiles::by_name(&spec.accelerator).ok_or_else(|| {
        format!(
            "--accelerator: expected H100, A100 or L40S, got {:?}",
            spec.accelerator
        )
    })?;
    let names =
        MetricNames::parse(&spec.metric_names).map_err(|e| format!("--metric-names: {e}"))?;
    let duration_s = crate::config::parse_duration(&spec.duration)
        .map_err(|e| format!("--duration: {e}"))?
        .as_secs_f64();
    for (flag, mean) in [
        ("--prompt-tokens", spec.prompt_tokens),
        ("--output-tokens", spec.output_tokens),
    ] {
        if !(mean.is_finite() && (1.0..=100_000.0).contains(&mean)) {
            return Err(format!(
                "{flag}: expected a mean between 1 and 100000, got {mean}"
            ));
        }
    }
    let load = match (&spec.trace, spec.load.as_str()) {
        (Some(path), _) => {
            if !(spec.trace_speedup.is_finite() && spec.trace_speedup > 0.0) {
                return Err("--trace-speedup: expected a number > 0".into());
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--trace {}: {e}", path.display()))?;
            wva_sim::load::parse_trace(&text, spec.trace_speedup)
                .map_err(|e| format!("--trace {}: {e}", path.display()))?
        }
        (None, "none") => Vec::new(),
        (None, shape) => SyntheticLoad {
            shape: RateShape::parse(shape).map_err(|e| format!("--load: {e}"))?,
            arrivals: Arrivals::Poisson,
            prompt: TokenLengths {
                mean: spec.prompt_tokens,
                cv: 1.0,
                min: 4,
                max: 8_000,
            },
            output: TokenLengths {
                mean: spec.output_tokens,
                cv: 1.0,
                min: 1,
                max: 2_000,
            },
        }
        .generate(duration_s, spec.seed),
    };
    Ok(EmulateOptions {
        servers: spec.servers,
        profile,
        model_name: spec.model.clone(),
        names,
        load,
        duration_s: Some(duration_s),
        speed: spec.speed,
        listen: spec.listen,
        base_port: spec.base_port,
        role: ServerRole::parse(&spec.role).map_err(|e| format!("--role: {e}"))?,
        epp: spec
            .epp
            .as_deref()
            .map(|g| MetricNames::parse(g).map_err(|e| format!("--epp: {e}")))
            .transpose()?,
    })
}

fn serve(options: EmulateOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail("emulate", &format!("cannot start the runtime: {e}"), 1),
    };
    let model = options.model_name.clone();
    let result = runtime.block_on(wva_sim::emulate::serve(options, |endpoints, epp| {
        let mut line = serde_json::json!({"model": model, "servers": endpoints});
        if let Some(address) = epp {
            line["epp"] = serde_json::json!({
                "address": address,
                "metrics": format!("http://{address}/metrics"),
            });
        }
        // One line, flushed, so a test or script can read the ports before traffic starts.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("emulate", &e, 1),
    }
}
