//! `wva simulate`: the autoscaler against the emulated cluster, in virtual time.

use std::path::PathBuf;
use std::process::ExitCode;

use wva_sim::engine::RunOptions;
use wva_sim::policy::Policy;
use wva_sim::simulate::{SimulateRequest, compare, compare_table, frontier, render, simulate};
use wva_sim::workloads::WorkloadSet;

use std::collections::BTreeMap;

use wva_actors::messages::PolicySettings;

use crate::config::manifest::parse_config_maps;
use crate::config::settings::{DEFAULT_CONFIG_MAP_NAME, SettingsArgs};
use crate::controller::config_maps::ConfigData;
use crate::exit::{INVALID_INPUT, fail};

/// Run the autoscaler against an emulated cluster in virtual time and report how it did. With no
/// arguments: two variants of one model (A100 and H100) through a bursty day compressed into an
/// hour.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Seed of the generated load; the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Virtual duration, e.g. 1h or 20m [default: 1h, or the trace's span].
    #[arg(long)]
    pub duration: Option<String>,
    /// Replay a CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens) instead of the built-in load.
    /// TIMESTAMP is `YYYY-MM-DD HH:MM:SS[.fffffff]` (UTC) or RFC 3339 (`2023-11-16T18:17:03Z`);
    /// rows sorted by time. Also a workload by name: `builtin` (the built-in load), `zoo:NAME`
    /// (a synthetic shape: zoo:prefill-heavy-surge, zoo:decode-heavy, zoo:long-context,
    /// zoo:bursty-chat, zoo:ramp, zoo:sharp-surge, zoo:diurnal, zoo:mix) or one of the split's
    /// traces by name (read from --traces-dir). With --frontier or --compare it may be given
    /// several times.
    #[arg(long)]
    pub trace: Vec<PathBuf>,
    /// Run a whole set of workloads (with --frontier or --compare): training (the loads settings
    /// are chosen on), validation (real traces no setting was chosen on), zoo (synthetic shapes
    /// no setting was chosen on) or all.
    #[arg(long)]
    pub workloads: Option<String>,
    /// Which vLLM the emulated servers behave like: vllm-v1 (the V1 engine, calibrated on vLLM
    /// 0.15.1) or vllm-0.5 (calibrated on vLLM 0.5.4).
    #[arg(long, default_value = "vllm-v1")]
    pub engine: String,
    /// Drive the emulated cluster with the demand a decision log recorded (its data directory,
    /// from `wva run` or `wva simulate --data-dir`): per cycle, the served request rate and mean
    /// token lengths, on the log's variants. What it cannot rebuild (burstiness within a cycle,
    /// the spread of lengths, demand that was not served) is said in docs/simulation.md.
    #[arg(long)]
    pub from_log: Option<PathBuf>,
    /// The model of --from-log (namespace/modelID, or a modelID) when the log holds several.
    #[arg(long, requires = "from_log")]
    pub from_log_model: Option<String>,
    /// Where the split's traces are read from.
    #[arg(long, env = "WVA_TRACES_DIR", default_value = "../shared/traces")]
    pub traces_dir: PathBuf,
    /// Divide the trace's inter-arrival times by this.
    #[arg(long, default_value_t = 1.0)]
    pub trace_speedup: f64,
    /// Where the report (summary.json, metrics.prom, plots) goes.
    #[arg(long, default_value = "wva-simulation-report")]
    pub report: PathBuf,
    /// Keep the decision log here, for `wva history` and `wva replay`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A finite pool of accelerators, e.g. `H100=4,A100=6` (one per replica): replicas beyond
    /// it stay Pending until one frees, and the report counts their Pending time. This
    /// controller is told the pool, as `wva run` reads it from the nodes; a type not listed is
    /// not limited.
    #[arg(long, conflicts_with = "shared_pool")]
    pub pool: Option<String>,
    /// Several models share one finite pool: `builtin` (three models of synthetic loads) or
    /// `traces` (three traces of --traces-dir), with priorities. Runs them with an unlimited
    /// pool, sets the pool at --pool-share of the accelerators they held at once, at most, and
    /// compares what keeps the counts within it: this controller, no limiter, and WVA v0.9's
    /// greedy-by-saturation limiter; writes shared-pool.json and a plot of the replicas each model
    /// held (shared-pool.svg, .png) into --report. With --data-dir, each run keeps its decision
    /// log in a directory named after its limiter (`unlimited`, `wva`, `no-limiter`,
    /// `greedy-by-saturation`), for `wva history` and `wva replay`.
    #[arg(long, conflicts_with_all = ["compare", "frontier", "trace", "workloads", "from_log"])]
    pub shared_pool: Option<String>,
    /// With --shared-pool: the pool as a share of the unlimited peak.
    #[arg(long, default_value_t = 0.6, requires = "shared_pool")]
    pub pool_share: f64,
    /// Emulate a Prometheus outage: every metrics read fails (the safety net decides).
    #[arg(long)]
    pub metrics_outage: bool,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Run virtual time at most this many times faster than real time (e.g. 60: an hour
    /// in a minute) instead of as fast as possible.
    #[arg(long)]
    pub pace: Option<f64>,
    /// The autoscaler to drive the replicas: wva (this controller, its default slo-capacity
    /// analyzer), wva-v1 (this controller, saturation-v1 analyzer), wva-hybrid (hybrid mode),
    /// saturation-v2 (upstream v0.9's analyzer), keda-slo (llm-d's SLO-aware KEDA setup),
    /// hpa-kv (an HPA on KV-cache use), kpa (Knative's concurrency autoscaler) or hindsight
    /// (the bound: the schedule chosen with the whole load known in advance).
    #[arg(long, default_value = "wva")]
    pub policy: String,
    /// Run the same load through several policies and print them side by side
    /// [default list: every policy].
    #[arg(long, num_args = 0..=1, default_missing_value = "wva,wva-v1,wva-hybrid,saturation-v2,keda-slo,hpa-kv,kpa,hindsight", value_delimiter = ',')]
    pub compare: Option<Vec<String>>,
    /// Measure the cost–SLO frontier: each policy (default: every one with a knob) at every
    /// setting of its knob, on the built-in load or each --trace; prints every point with the
    /// Pareto-optimal ones marked and, per policy, the cost at 95 % attainment and the
    /// attainment at wva-v1's cost; writes frontier.json and plots into --report.
    #[arg(long, num_args = 0..=1, default_missing_value = "wva,wva-v1,saturation-v2,keda-slo,hpa-kv,kpa,hindsight", value_delimiter = ',', conflicts_with_all = ["compare", "data_dir"])]
    pub frontier: Option<Vec<String>>,
    /// ConfigMap manifests to run this controller with, as `wva run` reads them: the main
    /// ConfigMap (mode, analyzer), capacity-scaling-config, the accelerator costs (which also
    /// price the report) and the service classes (the objectives). May be given several times;
    /// a file may hold several documents. The `wva` policy then runs that configuration as it
    /// is (its knob is not applied).
    #[arg(long = "config-map")]
    pub config_maps: Vec<PathBuf>,
    /// As for `wva run`: on, off or model-only.
    #[arg(long)]
    pub experimental_hybrid_optimization: Option<String>,
    /// As for `wva run`: slo-capacity or saturation-v1.
    #[arg(long)]
    pub scaling_analyzer: Option<String>,
    /// As for `wva run`: the share of the latency objectives slo-capacity sizes for.
    #[arg(long)]
    pub slo_budget_share: Option<String>,
    /// As for `wva run`: scale to zero for models without their own setting.
    #[arg(long)]
    pub scale_to_zero: Option<bool>,
    /// As for `wva run`: slo-capacity also sizes for its demand forecast.
    #[arg(long)]
    pub slo_forecast: Option<bool>,
}

/// The policy settings `wva run` would build, and the price of each accelerator.
type Configuration = (PolicySettings, BTreeMap<String, f64>);

/// The user's configuration, when any was given, from the same ConfigMaps and flags as
/// `wva run` reads.
fn configuration(args: &SimulateArgs) -> Result<Option<Configuration>, String> {
    let flags = [
        &args.experimental_hybrid_optimization,
        &args.scaling_analyzer,
        &args.slo_budget_share,
    ];
    if args.config_maps.is_empty()
        && flags.iter().all(|f| f.is_none())
        && args.scale_to_zero.is_none()
        && args.slo_forecast.is_none()
    {
        return Ok(None);
    }
    let mut maps = Vec::new();
    for path in &args.config_maps {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config-map {}: {e}", path.display()))?;
        let parsed = parse_config_maps(&text)
            .map_err(|e| format!("--config-map {}: {e}", path.display()))?;
        maps.extend(parsed);
    }
    let main = maps.iter().find(|m| m.name == DEFAULT_CONFIG_MAP_NAME);
    let settings = SettingsArgs {
        // Never contacted: the simulation is its own Prometheus.
        prometheus_base_url: Some("http://127.0.0.1:9090".into()),
        prometheus_allow_http: Some(true),
        experimental_hybrid_optimization: args.experimental_hybrid_optimization.clone(),
        scaling_analyzer: args.scaling_analyzer.clone(),
        slo_budget_share: args.slo_budget_share.clone(),
        scale_to_zero: args.scale_to_zero,
        slo_forecast: args.slo_forecast,
        ..Default::default()
    }
    .resolve(main.map(|m| &m.data))
    .map_err(|e| e.to_string())?;
    let data = ConfigData::from_maps(
        maps.iter()
            .filter(|m| m.name != DEFAULT_CONFIG_MAP_NAME)
            .map(|m| (m.name.as_str(), &m.data)),
    )
    .map_err(|e| format!("--config-map: {e}"))?;
    let config = data.policy(&settings);
    for problem in &config.problems {
        eprintln!("wva simulate: warning: {problem} (entry skipped)");
    }
    let prices = config
        .costs
        .by_name
        .values()
        .map(|c| (c.name.clone(), c.cost))
        .collect();
    Ok(Some((config.policy, prices)))
}

pub fn main(args: SimulateArgs) -> ExitCode {
    match request(&args) {
        Ok((request, task)) => run(&request, &task),
        Err(e) => fail("simulate", &e, INVALID_INPUT),
    }
}

/// What the arguments ask for beyond one run.
#[derive(Debug, Clone, PartialEq)]
enum Task {
    One,
    Compare(Vec<Policy>),
    Frontier(Vec<Policy>),
    SharedPool(String, f64),
}

fn policies(names: &[String], flag: &str) -> Result<Vec<Policy>, String> {
    names
        .iter()
        .map(|n| Policy::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag}: {e}"))
}

/// The request the arguments describe, and what to do with it.
fn request(args: &SimulateArgs) -> Result<(SimulateRequest, Task), String> {
    let policy = Policy::parse(&args.policy).map_err(|e| format!("--policy: {e}"))?;
    let task = match (&args.compare, &args.frontier, &args.shared_pool) {
        (Some(names), ..) => Task::Compare(policies(names, "--compare")?),
        (None, Some(names), _) => Task::Frontier(policies(names, "--frontier")?),
        (None, None, Some(name)) => {
            if !(args.pool_share > 0.0 && args.pool_share <= 1.0) {
                return Err(format!(
                    "--pool-share: expected a share in (0, 1], got {}",
                    args.pool_share
                ));
            }
            Task::SharedPool(name.clone(), args.pool_share)
        }
        (None, None, None) => Task::One,
    };
    let workload_set = args
        .workloads
        .as_deref()
        .map(|w| {
            WorkloadSet::parse(w).ok_or_else(|| {
                format!("--workloads: expected training, validation, zoo or all, got {w:?}")
            })
        })
        .transpose()?;
    if (args.trace.len() > 1 || workload_set.is_some()) && matches!(task, Task::One) {
        return Err(
            "--trace, --workloads: several workloads only with --frontier or --compare".into(),
        );
    }
    if args.from_log.is_some() && (!args.trace.is_empty() || workload_set.is_some()) {
        return Err(
            "--from-log: the recorded demand is the workload; drop --trace and --workloads".into(),
        );
    }
    if args.from_log.is_some() && args.from_log == args.data_dir {
        return Err(
            "--data-dir: the run would write into the log it reads (--from-log); give another directory".into(),
        );
    }
    if matches!(task, Task::Compare(_)) && args.data_dir.is_some() {
        return Err(
            "--compare: cannot keep one decision log for several policies; drop --data-dir".into(),
        );
    }
    if args.pace.is_some_and(|p| !(p.is_finite() && p > 0.0)) {
        return Err("--pace: expected a number > 0".into());
    }
    let duration_s = args
        .duration
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| format!("--duration: {e}"))?
        .map(|d| d.as_secs_f64());
    if let Some(d) = duration_s.filter(|d| *d < 60.0) {
        return Err(format!(
            "--duration: expected at least 1m, got {} (a number without a unit is seconds)",
            crate::config::format_duration(std::time::Duration::from_secs_f64(d))
        ));
    }
    if let Some(dir) = &args.data_dir {
        super::check_writable_data_dir(dir)?;
    }
    let configured = configuration(args)?;
    let (settings, prices) = configured.clone().unwrap_or_default();
    let request = SimulateRequest {
        seed: args.seed,
        duration_s,
        trace: args.trace.clone(),
        workloads: workload_set,
        traces_dir: args.traces_dir.clone(),
        trace_speedup: args.trace_speedup,
        report: args.report.clone(),
        options: RunOptions {
            policy,
            data_dir: args.data_dir.clone(),
            metrics_outage: args.metrics_outage,
            settings,
            progress: !args.no_progress,
            pace: args.pace,
            hindsight: None,
            replay_seeds: Vec::new(),
            configured: configured.is_some(),
            pool: match &args.pool {
                Some(text) => parse_pool(text)?,
                None => Default::default(),
            },
            limiter: Default::default(),
        },
        prices,
        engine: wva_sim::profiles::Engine::parse(&args.engine)
            .map_err(|e| format!("--engine: {e}"))?,
        from_log: args
            .from_log
            .clone()
            .map(|dir| (dir, args.from_log_model.clone())),
    };
    // A trace that cannot be read is bad input, said before anything runs.
    wva_sim::simulate::workloads(&request)?;
    Ok((request, task))
}

/// `--shared-pool`: the measurement, printed, and written as JSON into the report directory.
fn shared_pool(request: &SimulateRequest, name: &str, share: f64) -> Result<String, String> {
    use wva_sim::shared_pool;
    let source = wva_sim::workloads::WorkloadSource {
        traces_dir: request.traces_dir.clone(),
        seed: request.seed,
        duration_s: request.duration_s,
        trace_speedup: request.trace_speedup,
    };
    let scenario = shared_pool::scenario(name, &source)?;
    let report = shared_pool::measure(&scenario, &request.options, share)?;
    std::fs::create_dir_all(&request.report)
        .map_err(|e| format!("--report: {}: {e}", request.report.display()))?;
    let path = request.report.join("shared-pool.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    wva_sim::report::write_figures(
        &request.report,
        &[("shared-pool", shared_pool::figure(&report))],
    )?;
    Ok(format!(
        "{}\nreport: {} (and shared-pool.svg, .png: replicas held per model over time)\n",
        shared_pool::render(&report),
        path.display()
    ))
}

/// `--pool H100=4,A100=6`: accelerators per type.
fn parse_pool(text: &str) -> Result<std::collections::BTreeMap<String, u32>, String> {
    let mut pool = std::collections::BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let parsed = item.split_once('=').and_then(|(name, gpus)| {
            let gpus = gpus.trim().parse::<u32>().ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_string(), gpus))
        });
        let Some((name, gpus)) = parsed else {
            return Err(format!(
                "--pool: expected ACCELERATOR=GPUS items separated by commas (e.g. H100=4,A100=6), got {item:?}"
            ));
        };
        if wva_sim::profiles::by_name_for(Default::default(), &name).is_none() {
            return Err(format!(
                "--pool: {name}: expected an emulated accelerator (H100, A100 or L40S)"
            ));
        }
        pool.insert(name, gpus);
    }
    Ok(pool)
}

fn run(request: &SimulateRequest, task: &Task) -> ExitCode {
    match task {
        Task::Compare(policies) => match compare(request, policies) {
            Ok(by_workload) if by_workload.len() == 1 => super::print_out(&format!(
                "{}\nreports: {}/<policy>\npolicies over each other: {}/{}/\n",
                compare_table(&by_workload[0].1),
                request.report.display(),
                request.report.display(),
                wva_sim::simulate::COMPARE_DIR
            )),
            Ok(by_workload) => {
                let mut out = String::new();
                for (name, summaries) in &by_workload {
                    out.push_str(&format!("== {name} ==\n{}\n", compare_table(summaries)));
                }
                out.push_str(&format!(
                    "reports: {}/<workload>/<policy>\n",
                    request.report.display()
                ));
                super::print_out(&out)
            }
            Err(e) => fail("simulate", &e, 1),
        },
        Task::Frontier(policies) => match frontier(request, policies) {
            Ok(frontiers) => super::print_out(&format!(
                "{}frontier: {}/frontier.json\n",
                wva_sim::frontier::render(&frontiers),
                request.report.display()
            )),
            Err(e) => fail("simulate", &e, 1),
        },
        Task::SharedPool(name, share) => match shared_pool(request, name, *share) {
            Ok(text) => super::print_out(&text),
            Err(e) => fail("simulate", &e, 1),
        },
        Task::One => match simulate(request) {
            Ok((summary, _)) => super::print_out(&render(&summary, &request.report)),
            Err(e) => fail("simulate", &e, 1),
        },
    }
}
