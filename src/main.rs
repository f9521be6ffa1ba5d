use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wva::config::CAPACITY_CONFIG_MAP;
use wva::config::CapacityScalingConfig;
use wva::config::manifest::parse_config_maps;
use wva::config::settings::SettingsArgs;
use wva::exit::{INVALID_INPUT, fail};
use wva::history::OutputFormat;
use wva::replay::ReplayOptions;
use wva::telemetry::{self, LogFormat};
use wva::timefmt::{parse_time, wall_clock};
use wva::{analyze, crdgen, datadir, history, replay};
use wva_actors::policy::OperatingMode;
use wva_storage::HistoryFilter;

/// Autoscaler for LLM inference servers: decides how many replicas each model variant needs from
/// vLLM's KV-cache and queue saturation, and publishes the answer for HPA or KEDA.
#[derive(Debug, Parser)]
#[command(name = "wva", version)]
struct Cli {
    /// Log level or filter (e.g. debug, or wva=debug,kube=info) [default: RUST_LOG, else info].
    #[arg(long, global = true, env = "LOG_LEVEL")]
    log_level: Option<String>,
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller against the cluster of KUBECONFIG (or the in-cluster service
    /// account): watch VariantAutoscalings, read Prometheus every cycle, publish the desired
    /// replicas on the metrics endpoint, and write each VA's status. Every flag can also be set by
    /// the environment variable shown with it.
    Run(Box<wva::run::RunArgs>),
    /// Run the autoscaler against an emulated cluster in virtual time and report how it did.
    /// With no arguments: two variants of one model (A100 and H100) through a bursty day
    /// compressed into an hour.
    Simulate {
        /// Seed of the generated load; the same seed gives the same run.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Virtual duration, e.g. 1h or 20m [default: 1h, or the trace's span].
        #[arg(long)]
        duration: Option<String>,
        /// Replay a CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens) instead of the built-in load.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Divide the trace's inter-arrival times by this.
        #[arg(long, default_value_t = 1.0)]
        trace_speedup: f64,
        /// Where the report (summary.json, metrics.prom, plots) goes.
        #[arg(long, default_value = "wva-simulation-report")]
        report: PathBuf,
        /// Keep the decision log here, for `wva history` and `wva replay`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Emulate a Prometheus outage: every metrics read fails (the safety net decides).
        #[arg(long)]
        metrics_outage: bool,
        /// Do not draw the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Run virtual time at most this many times faster than real time (e.g. 60: an hour
        /// in a minute) instead of as fast as possible.
        #[arg(long)]
        pace: Option<f64>,
        /// The autoscaler to drive the replicas: wva-v1 (this controller, capacity analyzer),
        /// wva-hybrid (this controller in hybrid mode), hpa-kv (an HPA on
        /// KV-cache use) or kpa (Knative's concurrency autoscaler).
        #[arg(long, default_value = "wva-v1")]
        policy: String,
        /// Run the same load through several policies and print them side by side
        /// [default list: wva-v1,wva-hybrid,hpa-kv,kpa].
        #[arg(long, num_args = 0..=1, default_missing_value = "wva-v1,wva-hybrid,hpa-kv,kpa", value_delimiter = ',')]
        compare: Option<Vec<String>>,
    },
    /// Serve emulated vLLM servers on local ports: `/metrics` for a real Prometheus to scrape and
    /// `/v1/completions` answering after the modelled latency, kept busy by a load shape or a
    /// trace. Prints the endpoints as one JSON line once every port is bound.
    Emulate(EmulateArgs),
    /// Decide one model from its numbers: JSON in (a file, or - for stdin), decision JSON out.
    Analyze {
        /// Input file, or - to read standard input.
        input: String,
    },
    /// Write the VariantAutoscaling CRD to crds/ and to the Helm chart.
    Crdgen {
        /// Only check that the committed files match the types; exit 1 when they drift.
        #[arg(long)]
        check: bool,
        /// Repository root to write under.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// What was decided, when, from which inputs and why, newest last.
    History {
        /// Data directory of the decision log.
        #[arg(long)]
        data_dir: PathBuf,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this model (modelID).
        #[arg(long)]
        model: Option<String>,
        /// Only this variant (VA name).
        #[arg(long)]
        va: Option<String>,
        /// From this time: RFC 3339, or a duration ago such as 2h.
        #[arg(long)]
        since: Option<String>,
        /// Until this time: RFC 3339, or a duration ago.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Feed the recorded inputs through today's policy (or another configuration or mode) and
    /// show every decision that would differ.
    Replay {
        /// Data directory of the decision log.
        #[arg(long)]
        data_dir: PathBuf,
        /// A capacity-scaling-config ConfigMap manifest whose thresholds replace the recorded ones.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Decide in this mode instead of the recorded one.
        #[arg(long, value_parser = ["capacity-only", "hybrid"])]
        mode: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Print the process settings the controller would run with, resolved from flags,
    /// environment and (optionally) the main ConfigMap; the bearer token is redacted.
    Settings {
        /// A manifest of the main ConfigMap, as you would kubectl apply it.
        #[arg(long)]
        config_map: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_level.as_deref(), cli.log_format);
    match cli.command {
        Command::Simulate {
            seed,
            duration,
            trace,
            trace_speedup,
            report,
            data_dir,
            metrics_outage,
            no_progress,
            pace,
            policy,
            compare,
        } => {
            let policy = match wva::sim::engine::Policy::parse(&policy) {
                Ok(p) => p,
                Err(e) => return fail("simulate", &format!("--policy: {e}"), INVALID_INPUT),
            };
            let compare = match compare
                .map(|names| {
                    names
                        .iter()
                        .map(|n| wva::sim::engine::Policy::parse(n))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
            {
                Ok(c) => c,
                Err(e) => return fail("simulate", &format!("--compare: {e}"), INVALID_INPUT),
            };
            if compare.is_some() && data_dir.is_some() {
                return fail(
                    "simulate",
                    "--compare: cannot keep one decision log for several policies; drop --data-dir",
                    INVALID_INPUT,
                );
            }
            if pace.is_some_and(|p| !(p.is_finite() && p > 0.0)) {
                return fail("simulate", "--pace: expected a number > 0", INVALID_INPUT);
            }
            let duration_s = match duration
                .as_deref()
                .map(wva::config::parse_duration)
                .transpose()
            {
                Ok(d) => d.map(|d| d.as_secs_f64()),
                Err(e) => return fail("simulate", &format!("--duration: {e}"), INVALID_INPUT),
            };
            if duration_s.is_some_and(|d| d < 60.0) {
                return fail(
                    "simulate",
                    "--duration: expected at least 1m",
                    INVALID_INPUT,
                );
            }
            let request = wva::simulate::SimulateRequest {
                seed,
                duration_s,
                trace,
                trace_speedup,
                report: report.clone(),
                options: wva::sim::engine::RunOptions {
                    policy,
                    data_dir,
                    metrics_outage,
                    settings: Default::default(),
                    progress: !no_progress,
                    pace,
                },
            };
            if let Some(policies) = compare {
                return match wva::simulate::compare(&request, &policies) {
                    Ok(summaries) => print_out(&format!(
                        "{}\nreports: {}/<policy>\n",
                        wva::simulate::compare_table(&summaries),
                        report.display()
                    )),
                    Err(e) => fail("simulate", &e, 1),
                };
            }
            match wva::simulate::simulate(&request) {
                Ok((summary, _)) => print_out(&wva::simulate::render(&summary, &report)),
                Err(e) => fail("simulate", &e, 1),
            }
        }
        Command::Run(args) => wva::run::main(*args),
        Command::Emulate(args) => match emulate_options(&args) {
            Ok(options) => run_emulate(options),
            Err(e) => fail("emulate", &e, INVALID_INPUT),
        },
        Command::Analyze { input } => run_analyze(&input),
        Command::Crdgen { check, root } => run_crdgen(check, &root),
        Command::Settings {
            config_map,
            settings,
        } => run_settings(config_map.as_deref(), &settings),
        Command::History {
            data_dir,
            namespace,
            model,
            va,
            since,
            until,
            format,
        } => {
            let now = wall_clock();
            let time = |t: Option<String>| t.map(|t| parse_time(&t, now)).transpose();
            let filter = match (time(since), time(until)) {
                (Ok(since), Ok(until)) => HistoryFilter {
                    namespace,
                    model_id: model,
                    variant: va,
                    since,
                    until,
                },
                (Err(e), _) => return fail("history", &format!("--since: {e}"), INVALID_INPUT),
                (_, Err(e)) => return fail("history", &format!("--until: {e}"), INVALID_INPUT),
            };
            match datadir::open_for_reading(&data_dir)
                .and_then(|r| history::render(&r.log, &filter, format))
            {
                Ok(text) => print_out(&text),
                Err(e) => fail("history", &e, 1),
            }
        }
        Command::Replay {
            data_dir,
            config,
            mode,
            format,
        } => {
            let options = match replay_options(config.as_deref(), mode.as_deref()) {
                Ok(o) => o,
                Err(e) => return fail("replay", &e, INVALID_INPUT),
            };
            match datadir::open_for_reading(&data_dir)
                .and_then(|r| replay::replay(&r.log, &options))
                .and_then(|report| replay::render(&report, format))
            {
                Ok(text) => print_out(&text),
                Err(e) => fail("replay", &e, 1),
            }
        }
    }
}

/// The arguments of `wva emulate`.
#[derive(Debug, clap::Args)]
struct EmulateArgs {
    /// Number of servers (replicas); server i listens on --base-port + i.
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Accelerator profile: H100, A100 or L40S.
    #[arg(long, default_value = "H100")]
    accelerator: String,
    /// The `model_name` label and the model the completions endpoint serves.
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    model: String,
    /// vLLM metric-name generation: current (kv_cache_usage_perc, inter_token_latency) or
    /// legacy (gpu_cache_usage_perc, time_per_output_token).
    #[arg(long, default_value = "current")]
    metric_names: String,
    /// Background load: constant:RPS, ramp:FROM:TO, square:LOW:HIGH:PERIOD_S[:DUTY],
    /// diurnal:MEAN:AMPLITUDE:PERIOD_S, or none.
    #[arg(long, default_value = "constant:2")]
    load: String,
    /// Replay a CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens) as the background load.
    #[arg(long, conflicts_with = "load")]
    trace: Option<PathBuf>,
    /// Divide the trace's inter-arrival times by this.
    #[arg(long, default_value_t = 1.0)]
    trace_speedup: f64,
    /// Mean prompt length of the generated load, in tokens.
    #[arg(long, default_value_t = 800.0)]
    prompt_tokens: f64,
    /// Mean output length of the generated load, in tokens.
    #[arg(long, default_value_t = 220.0)]
    output_tokens: f64,
    /// How long to serve (wall clock), e.g. 10m; the process exits at the end.
    #[arg(long, default_value = "1h")]
    duration: String,
    /// Run the servers' clock this many times faster than the wall clock.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    listen: std::net::IpAddr,
    /// First port (0: any free ports).
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Seed of the generated load.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn emulate_options(spec: &EmulateArgs) -> Result<wva::emulate::EmulateOptions, String> {
    use wva::sim::load::{Arrivals, RateShape, SyntheticLoad, TokenLengths};
    let profile = wva::sim::profiles::by_name(&spec.accelerator).ok_or_else(|| {
        format!(
            "--accelerator: expected H100, A100 or L40S, got {:?}",
            spec.accelerator
        )
    })?;
    let names = wva::sim::exposition::MetricNames::parse(&spec.metric_names)
        .map_err(|e| format!("--metric-names: {e}"))?;
    let duration_s = wva::config::parse_duration(&spec.duration)
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
            wva::sim::load::parse_trace(&text, spec.trace_speedup)
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
    Ok(wva::emulate::EmulateOptions {
        servers: spec.servers,
        profile,
        model_name: spec.model.clone(),
        names,
        load,
        duration_s: Some(duration_s),
        speed: spec.speed,
        listen: spec.listen,
        base_port: spec.base_port,
    })
}

fn run_emulate(options: wva::emulate::EmulateOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail("emulate", &format!("cannot start the runtime: {e}"), 1),
    };
    let model = options.model_name.clone();
    let result = runtime.block_on(wva::emulate::serve(options, |endpoints| {
        let line = serde_json::json!({"model": model, "servers": endpoints});
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

fn replay_options(
    config: Option<&std::path::Path>,
    mode: Option<&str>,
) -> Result<ReplayOptions, String> {
    let config = match config {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--config {}: {e}", path.display()))?;
            let maps = parse_config_maps(&text)
                .map_err(|e| format!("--config {}: {e}", path.display()))?;
            let map = match maps.iter().find(|m| m.name == CAPACITY_CONFIG_MAP) {
                Some(m) => m,
                None if maps.len() == 1 => &maps[0],
                None => {
                    return Err(format!(
                        "--config {}: expected a ConfigMap named {CAPACITY_CONFIG_MAP}",
                        path.display()
                    ));
                }
            };
            let parsed = CapacityScalingConfig::from_data(Some(&map.data));
            for issue in &parsed.issues {
                eprintln!("wva replay: warning: {issue} (entry skipped)");
            }
            Some(parsed.scaling)
        }
    };
    let mode = match mode {
        None => None,
        Some("capacity-only") => Some(OperatingMode::CapacityOnly),
        Some("hybrid") => Some(OperatingMode::Hybrid),
        Some(other) => {
            return Err(format!(
                "--mode: expected capacity-only or hybrid, got {other:?}"
            ));
        }
    };
    Ok(ReplayOptions { config, mode })
}

fn print_out(text: &str) -> ExitCode {
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    ExitCode::SUCCESS
}

fn run_analyze(input: &str) -> ExitCode {
    let text = if input == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .map(|_| buf)
            .map_err(|e| format!("cannot read standard input: {e}"))
    } else {
        std::fs::read_to_string(input).map_err(|e| format!("cannot read {input}: {e}"))
    };
    match text.and_then(|t| analyze::run(&t)) {
        Ok(json) => print_out(&json),
        Err(message) => fail("analyze", &message, INVALID_INPUT),
    }
}

fn run_crdgen(check: bool, root: &std::path::Path) -> ExitCode {
    if !check {
        return match crdgen::write(root) {
            Ok(paths) => print_out(
                &paths
                    .iter()
                    .map(|p| format!("wrote {}\n", p.display()))
                    .collect::<String>(),
            ),
            Err(e) => fail("crdgen", &e, 1),
        };
    }
    match crdgen::drifted(root) {
        Ok(drift) if drift.is_empty() => ExitCode::SUCCESS,
        Ok(drift) => {
            for p in drift {
                eprintln!(
                    "wva crdgen: {} differs from the types; run `wva crdgen`",
                    p.display()
                );
            }
            ExitCode::FAILURE
        }
        Err(e) => fail("crdgen", &e, 1),
    }
}

fn run_settings(config_map: Option<&std::path::Path>, args: &SettingsArgs) -> ExitCode {
    let data = match config_map {
        None => None,
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_config_maps(&t));
            match parsed {
                Ok(mut cms) => Some(cms.swap_remove(0).data),
                Err(e) => {
                    return fail(
                        "settings",
                        &format!("{}: {e}", path.display()),
                        INVALID_INPUT,
                    );
                }
            }
        }
    };
    match args.resolve(data.as_ref()) {
        Ok(settings) => match serde_json::to_string_pretty(&settings.redacted()) {
            Ok(json) => print_out(&json),
            Err(e) => fail("settings", &e.to_string(), 1),
        },
        Err(e) => fail("settings", &e.to_string(), INVALID_INPUT),
    }
}
