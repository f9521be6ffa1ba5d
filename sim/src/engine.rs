//! The simulation engine: the real Registry, supervisors, policy, decision log and publisher
//! driven by the emulated cluster in virtual time.
//!
//! Events, in time order: request arrivals, server iterations ending, replicas becoming ready,
//! the autoscaler's cycle (every `control_interval`, on a Prometheus-like scrape of the last
//! minute), and the HPA's sync (same period, offset by half of it, since the two controllers run
//! independently in a cluster).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;

use wva_actors::messages::{
    DEFAULT_MAX_BATCH, DeploymentState, Metrics, MetricsSnapshot, ModelKey, PodSample,
    PolicySettings, ReplicaBounds, ServingStats, Timestamp, VariantKey, VariantSpec,
};
use wva_actors::policy::scale_to_zero::RequestCount;
use wva_actors::policy::slo_capacity::DEFAULT_BUDGET_SHARE;
use wva_actors::policy::{Analyzer, OperatingMode};
use wva_actors::publisher::{Gather, PublisherConfig, ReadDesired};
use wva_actors::registry::{DeploymentEvent, Tick, UpsertVariant};
use wva_actors::system::SystemConfig;
use wva_actors::telemetry::Telemetry;
use wva_storage::{DecisionLog, MemoryLog, Retention};

use super::capacity::sustainable_rate;
use super::cluster::{Cluster, Variant};
use super::hpa::{Behavior, Hpa, HpaSpec};
use super::peers::RecentRequests;
use super::peers::clairvoyant::{PlannedVariant, Schedule, plan};
use super::peers::keda_slo::{KedaSlo, KedaSloConfig};
use super::peers::kpa::KpaState;
use super::peers::saturation_v2::{SaturationV2, SaturationV2Config};
use super::profiles;
use super::report::SloTargets;
use super::server::{Completed, Counters, Request, Server};

/// Virtual time starts here (2026-01-01T00:00:00Z), so recorded times read as dates.
pub const VIRTUAL_EPOCH_MS: i64 = 1_767_225_600_000;

/// One variant of the simulated model.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantScenario {
    pub name: String,
    pub accelerator: String,
    /// Cost of one replica per hour; also the VA's `variantCost`.
    pub cost_per_hour: f64,
    pub initial_replicas: u32,
    pub max_replicas: u32,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub namespace: String,
    pub model_id: String,
    pub variants: Vec<VariantScenario>,
    pub requests: Vec<Request>,
    pub duration_s: f64,
    pub startup_s: f64,
    pub control_interval_s: f64,
    pub hpa: HpaSpec,
}

/// Which autoscaler drives the replicas, with its one aggressiveness knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// This controller with its default analyzer (`slo-capacity`), through an HPA on
    /// `inferno_desired_replicas` with the chart's behaviour; the knob is the share of the
    /// latency objectives the mean may use.
    Wva { budget_share: f64 },
    /// This controller with the seeds' saturation analyzer (CONTRACT section 3); the knob is
    /// `kvCacheThreshold`.
    WvaV1 { kv_cache_threshold: f64 },
    /// This controller in hybrid mode: the capacity analyzer arbitrated with the model-based
    /// optimizer.
    WvaHybrid,
    /// Upstream WVA v0.9's token-based analyzer with its cost-aware optimizer, through the
    /// chart's HPA; the knob is the scale-up threshold.
    SaturationV2 { scale_up_threshold: f64 },
    /// llm-d's SLO-aware KEDA setup; the knob is the target ratio.
    KedaSlo { target: f64 },
    /// A plain HPA on the mean KV-cache use of each variant's pods.
    HpaKv { target: f64 },
    /// Knative's pod autoscaler, on concurrency per pod.
    Kpa { target_concurrency: f64 },
    /// The schedule computed from the known future load; the knob is how full it fills each
    /// replica's measured capacity.
    Clairvoyant { utilization: f64 },
}

impl Default for Policy {
    fn default() -> Self {
        Self::Wva {
            budget_share: DEFAULT_BUDGET_SHARE,
        }
    }
}

/// Every policy by name, in the order comparisons list them.
pub const POLICY_NAMES: [&str; 8] = [
    "wva",
    "wva-v1",
    "wva-hybrid",
    "saturation-v2",
    "keda-slo",
    "hpa-kv",
    "kpa",
    "clairvoyant",
];

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Wva { .. } => "wva",
            Self::WvaV1 { .. } => "wva-v1",
            Self::WvaHybrid => "wva-hybrid",
            Self::SaturationV2 { .. } => "saturation-v2",
            Self::KedaSlo { .. } => "keda-slo",
            Self::HpaKv { .. } => "hpa-kv",
            Self::Kpa { .. } => "kpa",
            Self::Clairvoyant { .. } => "clairvoyant",
        }
    }

    /// A policy by name, with its default knob, or `name=setting` with another.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((name, setting)) = text.split_once('=') else {
            return Self::parse_name(text);
        };
        let policy = Self::parse_name(name)?;
        let Some((knob, _)) = policy.knob() else {
            return Err(format!(
                "{} has no setting to give, got {text:?}",
                policy.name()
            ));
        };
        match setting.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(policy.with_knob(v)),
            _ => Err(format!(
                "expected {name}=<{knob}, a number above 0>, got {text:?}"
            )),
        }
    }

    fn parse_name(name: &str) -> Result<Self, String> {
        match name.trim() {
            "wva" => Ok(Self::default()),
            "wva-v1" => Ok(Self::WvaV1 {
                kv_cache_threshold: 0.8,
            }),
            "wva-hybrid" => Ok(Self::WvaHybrid),
            "saturation-v2" => Ok(Self::SaturationV2 {
                scale_up_threshold: 0.85,
            }),
            "keda-slo" => Ok(Self::KedaSlo { target: 0.55 }),
            "hpa-kv" => Ok(Self::HpaKv { target: 0.6 }),
            "kpa" => Ok(Self::Kpa {
                target_concurrency: 48.0,
            }),
            "clairvoyant" => Ok(Self::Clairvoyant { utilization: 0.9 }),
            other => Err(format!(
                "expected one of {}, got {other:?}",
                POLICY_NAMES.join(", ")
            )),
        }
    }

    /// The knob's name and value (`None` for a policy without one).
    pub fn knob(&self) -> Option<(&'static str, f64)> {
        match *self {
            Self::Wva { budget_share } => Some(("budget share", budget_share)),
            Self::WvaV1 { kv_cache_threshold } => Some(("kvCacheThreshold", kv_cache_threshold)),
            Self::WvaHybrid => None,
            Self::SaturationV2 { scale_up_threshold } => {
                Some(("scale-up threshold", scale_up_threshold))
            }
            Self::KedaSlo { target } => Some(("target ratio", target)),
            Self::HpaKv { target } => Some(("KV target", target)),
            Self::Kpa { target_concurrency } => Some(("target concurrency", target_concurrency)),
            Self::Clairvoyant { utilization } => Some(("utilization", utilization)),
        }
    }

    /// The same policy with another knob setting.
    pub fn with_knob(self, k: f64) -> Self {
        match self {
            Self::Wva { .. } => Self::Wva { budget_share: k },
            Self::WvaV1 { .. } => Self::WvaV1 {
                kv_cache_threshold: k,
            },
            Self::WvaHybrid => Self::WvaHybrid,
            Self::SaturationV2 { .. } => Self::SaturationV2 {
                scale_up_threshold: k,
            },
            Self::KedaSlo { .. } => Self::KedaSlo { target: k },
            Self::HpaKv { .. } => Self::HpaKv { target: k },
            Self::Kpa { .. } => Self::Kpa {
                target_concurrency: k,
            },
            Self::Clairvoyant { .. } => Self::Clairvoyant { utilization: k },
        }
    }

    /// The knob settings a frontier sweeps, from the most careful to the boldest.
    pub fn sweep(&self) -> Vec<f64> {
        match self {
            Self::Wva { .. } => vec![0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0],
            Self::WvaV1 { .. } => vec![0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
            Self::WvaHybrid => vec![],
            Self::SaturationV2 { .. } => vec![0.45, 0.55, 0.65, 0.75, 0.85, 0.95],
            Self::KedaSlo { .. } => vec![0.25, 0.35, 0.45, 0.55, 0.7, 0.85],
            Self::HpaKv { .. } => vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            Self::Kpa { .. } => vec![8.0, 16.0, 24.0, 32.0, 48.0, 64.0],
            Self::Clairvoyant { .. } => vec![0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        }
    }

    /// Whether this controller's actors decide (and an HPA acts on what they publish).
    pub fn is_wva(&self) -> bool {
        matches!(
            self,
            Self::Wva { .. } | Self::WvaV1 { .. } | Self::WvaHybrid
        )
    }
}

/// How to run it.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub policy: Policy,
    /// Keep the decision log here (sled) instead of in memory.
    pub data_dir: Option<PathBuf>,
    /// Every metrics read fails, as if Prometheus were down.
    pub metrics_outage: bool,
    pub settings: PolicySettings,
    /// Draw a progress bar on stderr when it is a terminal.
    pub progress: bool,
    /// Run virtual time at most this many times faster than real time (`None`: as fast as
    /// possible). Lets a run be watched, scraped or interrupted while it goes.
    pub pace: Option<f64>,
    /// The clairvoyant bound's per-replica capacities, when already measured (a frontier
    /// measures them once for all its settings).
    pub clairvoyant_capacity: Option<Vec<f64>>,
    /// `settings` are the user's configuration: the `wva` policy runs them as they are.
    pub configured: bool,
}

/// One point of the time series, per autoscaler cycle.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub t_s: f64,
    pub variants: BTreeMap<String, VariantSample>,
    /// Requests waiting in servers and at the gateway.
    pub waiting: usize,
    /// Mean KV-cache use over ready replicas.
    pub kv: f64,
    /// Median TTFT of the requests that finished since the last sample, ms.
    pub ttft_p50_ms: Option<f64>,
    /// 99th-percentile TTFT of the requests that finished since the last sample, ms.
    pub ttft_p99_ms: Option<f64>,
}

/// One variant at one sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantSample {
    pub replicas: u32,
    pub ready: u32,
    /// The desired count published for it (none before the first decision).
    pub desired: Option<u32>,
    /// Mean KV-cache use over its ready replicas (0 with none ready).
    pub kv: f64,
    /// Requests waiting in its servers.
    pub waiting: usize,
}

/// Per-variant totals.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantResult {
    pub name: String,
    pub accelerator: String,
    pub gpu_hours: f64,
    pub cost: f64,
    pub scaling_actions: u32,
    pub peak_replicas: u32,
    pub completed: usize,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub completed: Vec<Completed>,
    pub failed: u64,
    pub unfinished: usize,
    pub variants: Vec<VariantResult>,
    pub samples: Vec<Sample>,
    /// The publisher's metrics at the end of the run, in the Prometheus text format.
    pub metrics_text: String,
    pub cycles: usize,
    pub safety_net_cycles: usize,
    /// Hybrid and model-only runs: how often the optimizer proposed.
    pub model_based: Option<ModelBasedTally>,
    /// The saturation thresholds the run's configuration set (drawn on the plots).
    pub thresholds: wva_actors::policy::Thresholds,
}

/// One scrape of one pod.
#[derive(Debug, Clone)]
struct ScrapePoint {
    t: f64,
    kv: f64,
    queue: f64,
    running: f64,
    counters: Counters,
}

/// Per-pod scrapes of the last minute: `max_over_time(...[1m])` for the saturation signals,
/// `rate(...[1m])` and sum/count ratios for what the pod served.
#[derive(Debug, Default)]
struct Scrapes {
    by_pod: HashMap<String, VecDeque<ScrapePoint>>,
}

impl Scrapes {
    fn record(&mut self, pod: &str, t: f64, server: &Server) {
        let window = self.by_pod.entry(pod.to_string()).or_default();
        window.push_back(ScrapePoint {
            t,
            kv: server.kv_usage(),
            queue: server.waiting() as f64,
            running: server.running() as f64,
            counters: server.counters.clone(),
        });
        while window.front().is_some_and(|p| p.t < t - 60_000.0) {
            window.pop_front();
        }
    }

    fn sample(&self, pod: &str, deployment: &str) -> Option<PodSample> {
        let w = self.by_pod.get(pod)?;
        let (first, last) = (w.front()?, w.back()?);
        let kv = w.iter().map(|p| p.kv).fold(f64::NAN, f64::max);
        let queue = w.iter().map(|p| p.queue).fold(f64::NAN, f64::max);
        let running = w.iter().map(|p| p.running).sum::<f64>() / w.len() as f64;
        let mean_queue = w.iter().map(|p| p.queue).sum::<f64>() / w.len() as f64;
        let span_s = (last.t - first.t) / 1e3;
        let (a, b) = (&first.counters, &last.counters);
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        let done = (b.request_success - a.request_success) as f64;
        // Like Prometheus' rate(): needs two scrapes in the window.
        let serving = (span_s > 0.0).then(|| ServingStats {
            request_rate_rps: done / span_s,
            mean_input_tokens: ratio(
                (b.request_prompt_tokens_sum - a.request_prompt_tokens_sum) as f64,
                done,
            ),
            mean_output_tokens: ratio(
                (b.request_generation_tokens_sum - a.request_generation_tokens_sum) as f64,
                done,
            ),
            ttft_ms: 1e3
                * ratio(
                    b.ttft_sum_s - a.ttft_sum_s,
                    (b.ttft_count - a.ttft_count) as f64,
                ),
            itl_ms: 1e3
                * ratio(
                    b.itl_sum_s - a.itl_sum_s,
                    (b.itl_count - a.itl_count) as f64,
                ),
            mean_waiting: mean_queue,
        });
        (!kv.is_nan()).then(|| PodSample {
            pod: pod.to_string(),
            deployment: deployment.to_string(),
            kv_cache_usage: Some(kv),
            queue_length: Some(queue),
            running: Some(running),
            serving,
        })
    }
}

fn open_log(options: &RunOptions) -> Result<Box<dyn DecisionLog>, String> {
    match &options.data_dir {
        None => Ok(Box::new(MemoryLog::in_memory(Retention::default()))),
        Some(dir) => {
            let (log, moved) =
                wva_storage::datadir::open_for_writing(dir).map_err(|e| e.to_string())?;
            if let Some(moved) = moved {
                eprintln!("warning: {moved}");
            }
            Ok(Box::new(log))
        }
    }
}

/// The controller's settings under a policy: its analyzer or mode, and the knob.
fn policy_settings(base: &PolicySettings, policy: Policy, configured: bool) -> PolicySettings {
    let mut s = base.clone();
    match policy {
        Policy::Wva { .. } if configured => {}
        Policy::Wva { budget_share } => {
            s.analyzer = Analyzer::SloCapacity;
            s.slo_capacity.budget_share = budget_share;
        }
        Policy::WvaV1 { kv_cache_threshold } => {
            s.analyzer = Analyzer::SaturationV1;
            let t = &mut s.scaling.default.thresholds;
            t.kv_cache_threshold = kv_cache_threshold;
            t.kv_spare_trigger = t.kv_spare_trigger.min(kv_cache_threshold);
        }
        Policy::WvaHybrid => {
            s.analyzer = Analyzer::SaturationV1;
            s.mode = OperatingMode::Hybrid;
        }
        _ => {}
    }
    s
}

/// What one replica of each variant carries within the objectives, for the scenario's mix of
/// request lengths.
pub fn replica_capacities(scenario: &Scenario) -> Result<Vec<f64>, String> {
    let mix: Vec<(u32, u32)> = scenario
        .requests
        .iter()
        .map(|r| (r.prompt_tokens, r.output_tokens))
        .collect();
    scenario
        .variants
        .iter()
        .map(|v| {
            let profile = profiles::by_name(&v.accelerator)
                .ok_or_else(|| format!("variant {}: unknown accelerator", v.name))?;
            Ok(sustainable_rate(
                &profile,
                &mix,
                SloTargets::default(),
                CLAIRVOYANT_SHARE,
                7,
            ))
        })
        .collect()
}

/// The share of requests within the objectives the clairvoyant bound sizes replicas for.
pub const CLAIRVOYANT_SHARE: f64 = 0.95;

fn clairvoyant_schedule(
    scenario: &Scenario,
    utilization: f64,
    capacities: Option<&[f64]>,
) -> Result<Schedule, String> {
    let capacities = match capacities {
        Some(c) => c.to_vec(),
        None => replica_capacities(scenario)?,
    };
    let planned: Vec<PlannedVariant> = scenario
        .variants
        .iter()
        .zip(capacities)
        .map(|(v, capacity_rps)| PlannedVariant {
            capacity_rps,
            cost_per_hour: v.cost_per_hour,
            min_replicas: scenario.hpa.min_replicas,
            max_replicas: v.max_replicas,
        })
        .collect();
    Ok(plan(
        &scenario.requests,
        &planned,
        scenario.duration_s * 1e3,
        scenario.startup_s * 1e3,
        utilization,
        scenario.control_interval_s * 1e3,
    ))
}

/// Runs a scenario to the end. Must be called inside an actix System.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunResult, String> {
    // Log lines carry the run's virtual time while it goes, the host's again after.
    struct VirtualTime;
    impl Drop for VirtualTime {
        fn drop(&mut self) {
            crate::clock::set(None);
        }
    }
    let _virtual_time = VirtualTime;
    crate::clock::set(Some(VIRTUAL_EPOCH_MS));
    let settings = policy_settings(&options.settings, options.policy, options.configured);
    let thresholds = settings.scaling.default.thresholds;
    let system = wva_actors::system::start(SystemConfig {
        log: open_log(options)?,
        publisher: PublisherConfig::default(),
        status: None,
        settings,
        telemetry: Telemetry::unregistered().map_err(|e| e.to_string())?,
        model_threads: 1,
    })
    .map_err(|e| e.to_string())?;
    if let Some(problem) = system.recovery_problem {
        return Err(format!("decision log: {problem}"));
    }
    let (registry, publisher, log) = (system.registry, system.publisher, system.log);
    let model = ModelKey::new(scenario.namespace.clone(), scenario.model_id.clone());
    let (scale_to_zero, retention) = options.settings.scale_to_zero_for(&model);
    let retention_ms = retention.as_secs_f64() * 1e3;
    let mut successes: VecDeque<(f64, usize)> = VecDeque::new();
    let key = |name: &str| VariantKey::new(scenario.namespace.clone(), name);

    let mut variants = Vec::new();
    for v in &scenario.variants {
        let profile = profiles::by_name(&v.accelerator).ok_or_else(|| {
            format!(
                "variant {}: accelerator: expected H100, A100 or L40S, got {:?}",
                v.name, v.accelerator
            )
        })?;
        variants.push(Variant::new(
            &v.name,
            profile,
            v.cost_per_hour,
            scenario.startup_s * 1e3,
            v.initial_replicas,
        ));
    }
    let mut cluster = Cluster::new(variants);
    let (target_average_value, behavior) = match options.policy {
        // A plain HPA, as Kubernetes defaults it.
        Policy::HpaKv { target } => (target, Behavior::default()),
        // KEDA's HPA on the per-replica ratio.
        Policy::KedaSlo { target } => (target, scenario.hpa.behavior.clone()),
        _ => (
            scenario.hpa.target_average_value,
            scenario.hpa.behavior.clone(),
        ),
    };
    let mut hpas: Vec<Hpa> = scenario
        .variants
        .iter()
        .map(|v| {
            Hpa::new(HpaSpec {
                max_replicas: v.max_replicas,
                target_average_value,
                behavior: behavior.clone(),
                ..scenario.hpa.clone()
            })
        })
        .collect();
    let mut kpas: Vec<KpaState> = scenario
        .variants
        .iter()
        .map(|_| KpaState::default())
        .collect();
    let mut kedas: Vec<KedaSlo> = scenario
        .variants
        .iter()
        .map(|_| KedaSlo::default())
        .collect();
    let mut saturation_v2 = SaturationV2::default();
    let mut saturation_v2_desired: Vec<Option<u32>> = vec![None; scenario.variants.len()];
    let mut recent: Vec<RecentRequests> = scenario
        .variants
        .iter()
        .map(|_| RecentRequests::default())
        .collect();
    let schedule = match options.policy {
        Policy::Clairvoyant { utilization } => Some(clairvoyant_schedule(
            scenario,
            utilization,
            options.clairvoyant_capacity.as_deref(),
        )?),
        _ => None,
    };
    // Autoscalers that scale the Deployments themselves, and how often.
    let direct_interval = match options.policy {
        Policy::Kpa { .. } => KpaState::INTERVAL_MS,
        Policy::Clairvoyant { .. } => scenario.control_interval_s * 1e3,
        _ => f64::INFINITY,
    };
    let mut next_direct = direct_interval;
    let mut reported: Vec<Option<DeploymentState>> = vec![None; scenario.variants.len()];
    let send_deployments =
        |cluster: &Cluster, reported: &mut Vec<Option<DeploymentState>>, now: f64| {
            let mut events = Vec::new();
            for (i, v) in cluster.variants.iter().enumerate() {
                let state = DeploymentState {
                    replicas: v.replicas(),
                    ready: v.ready(now),
                };
                if reported[i] != Some(state) {
                    reported[i] = Some(state);
                    events.push(DeploymentEvent {
                        namespace: scenario.namespace.clone(),
                        name: v.name.clone(),
                        state: Some(state),
                        at: Timestamp(VIRTUAL_EPOCH_MS + now as i64),
                    });
                }
            }
            events
        };
    for e in send_deployments(&cluster, &mut reported, 0.0) {
        registry.send(e).await.map_err(|e| e.to_string())?;
    }
    for v in &scenario.variants {
        let spec = VariantSpec {
            key: key(&v.name),
            model: model.clone(),
            deployment: v.name.clone(),
            cost: v.cost_per_hour,
            accelerator: v.accelerator.clone(),
            status_desired: None,
            max_batch: DEFAULT_MAX_BATCH,
            // The controller knows the bounds of the HPA that acts on each variant.
            bounds: ReplicaBounds {
                min: Some(scenario.hpa.min_replicas),
                max: Some(v.max_replicas),
            },
            role: Default::default(),
        };
        registry
            .send(UpsertVariant {
                spec,
                at: Timestamp(VIRTUAL_EPOCH_MS),
            })
            .await
            .map_err(|e| e.to_string())?;
    }

    let end = scenario.duration_s * 1e3;
    let interval = scenario.control_interval_s * 1e3;
    let mut next_control = interval;
    // Under KPA and the clairvoyant schedule there is no HPA: they scale the Deployments.
    let mut next_hpa = if direct_interval.is_finite() {
        f64::INFINITY
    } else {
        interval / 2.0
    };
    let mut arrivals = scenario
        .requests
        .iter()
        .filter(|r| r.arrival_ms < end)
        .peekable();
    let mut scrapes = Scrapes::default();
    let mut samples = Vec::new();
    let (mut cycles, mut safety_net_cycles) = (0usize, 0usize);
    let mut last_t = 0.0f64;
    let mut done_since_sample = 0usize;
    // Progress in virtual minutes; drawn only on a terminal.
    let progress = if options.progress && std::io::stderr().is_terminal() {
        ProgressBar::new(end.max(0.0) as u64 / 1_000)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:25} {percent:>3}%  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let wall_start = std::time::Instant::now();

    loop {
        let next_arrival = arrivals.peek().map_or(f64::INFINITY, |r| r.arrival_ms);
        let next_step = cluster
            .variants
            .iter()
            .flat_map(|v| v.busy_until.iter().flatten())
            .fold(f64::INFINITY, |a, &b| a.min(b));
        let next_ready = cluster
            .variants
            .iter()
            .flat_map(|v| v.servers.iter().map(|s| s.ready_at_ms))
            .filter(|&r| r > last_t)
            .fold(f64::INFINITY, f64::min);
        let t = next_arrival
            .min(next_step)
            .min(next_ready)
            .min(next_control)
            .min(next_hpa)
            .min(next_direct);
        if t >= end {
            // The replicas count until the end of the run, not until the last event.
            for v in &mut cluster.variants {
                v.replica_ms += f64::from(v.replicas()) * (end - last_t);
            }
            break;
        }
        for v in &mut cluster.variants {
            v.replica_ms += f64::from(v.replicas()) * (t - last_t);
        }
        last_t = t;
        crate::clock::set(Some(VIRTUAL_EPOCH_MS + t as i64));
        progress.set_position(t as u64 / 1_000);
        progress.set_message(format!("{:.1} min", t / 60_000.0));

        if next_arrival <= t {
            while let Some(r) = arrivals.next_if(|r| r.arrival_ms <= t) {
                cluster.route(r.clone(), t);
            }
        }
        if next_ready <= t {
            cluster.release_gateway(t);
            for e in send_deployments(&cluster, &mut reported, t) {
                registry.send(e).await.map_err(|e| e.to_string())?;
            }
        }
        // Servers whose iteration ended run the next one; idle servers that got work start.
        cluster.advance(t, |vi, _, done| {
            done_since_sample += 1;
            recent[vi].record(done);
        });

        if next_control <= t {
            next_control += interval;
            if let Some(pace) = options.pace.filter(|p| *p > 0.0) {
                let due = std::time::Duration::from_secs_f64(t / 1e3 / pace);
                if let Some(wait) = due.checked_sub(wall_start.elapsed()) {
                    actix::clock::sleep(wait).await;
                }
            }
            cluster.release_gateway(t);
            let mut samples_for_model = Vec::new();
            for v in &cluster.variants {
                for (s, pod) in v.servers.iter().zip(&v.pod_names) {
                    if s.is_ready(t) {
                        scrapes.record(pod, t, s);
                        samples_for_model.extend(scrapes.sample(pod, &v.name));
                    }
                }
            }
            let metrics = if options.metrics_outage {
                Metrics::Failed("emulated Prometheus outage: connection refused".into())
            } else {
                let mut by_model = HashMap::new();
                by_model.insert(model.clone(), samples_for_model);
                let mut request_counts = HashMap::new();
                if scale_to_zero {
                    // sum(increase(vllm:request_success_total[retention])) over the model.
                    let total = cluster.completed.len();
                    successes.push_back((t, total));
                    while successes
                        .front()
                        .is_some_and(|(at, _)| *at < t - retention_ms)
                    {
                        successes.pop_front();
                    }
                    let before = successes.front().map_or(0, |(_, n)| *n);
                    request_counts
                        .insert(model.clone(), RequestCount::Read((total - before) as f64));
                }
                Metrics::Read(Arc::new(MetricsSnapshot {
                    by_model,
                    request_counts,
                    ..Default::default()
                }))
            };
            let summary = registry
                .send(Tick {
                    now: Timestamp(VIRTUAL_EPOCH_MS + t as i64),
                    metrics,
                })
                .await
                .map_err(|e| e.to_string())?;
            cycles += 1;
            safety_net_cycles += summary.safety_net_models;
            for r in &mut recent {
                r.trim(t);
            }
            if let Policy::SaturationV2 { scale_up_threshold } = options.policy {
                let desired = saturation_v2.desired(
                    t,
                    &cluster,
                    &recent,
                    &SaturationV2Config::with_scale_up(scale_up_threshold),
                );
                saturation_v2_desired = desired.into_iter().map(Some).collect();
            }

            let mut per_variant = BTreeMap::new();
            for v in &cluster.variants {
                let desired = publisher
                    .send(ReadDesired(key(&v.name)))
                    .await
                    .map_err(|e| e.to_string())?;
                let ready_kv: Vec<f64> = v
                    .servers
                    .iter()
                    .filter(|s| s.is_ready(t))
                    .map(|s| s.kv_usage())
                    .collect();
                per_variant.insert(
                    v.name.clone(),
                    VariantSample {
                        replicas: v.replicas(),
                        ready: v.ready(t),
                        desired,
                        kv: if ready_kv.is_empty() {
                            0.0
                        } else {
                            ready_kv.iter().sum::<f64>() / ready_kv.len() as f64
                        },
                        waiting: v.servers.iter().map(|s| s.waiting()).sum(),
                    },
                );
            }
            let ready: Vec<f64> = cluster
                .variants
                .iter()
                .flat_map(|v| {
                    v.servers
                        .iter()
                        .filter(|s| s.is_ready(t))
                        .map(|s| s.kv_usage())
                })
                .collect();
            let finished = &cluster.completed[cluster.completed.len() - done_since_sample..];
            samples.push(Sample {
                t_s: t / 1e3,
                variants: per_variant,
                waiting: cluster.gateway.len()
                    + cluster
                        .variants
                        .iter()
                        .flat_map(|v| &v.servers)
                        .map(|s| s.waiting())
                        .sum::<usize>(),
                kv: if ready.is_empty() {
                    0.0
                } else {
                    ready.iter().sum::<f64>() / ready.len() as f64
                },
                ttft_p50_ms: percentile(finished.iter().map(|c| c.ttft_ms).collect(), 0.5),
                ttft_p99_ms: percentile(finished.iter().map(|c| c.ttft_ms).collect(), 0.99),
            });
            done_since_sample = 0;
        }

        if next_direct <= t {
            next_direct += direct_interval;
            // Requests held at the gateway (Knative's activator) count for every revision.
            let held = cluster.gateway.len() as f64 / cluster.variants.len() as f64;
            for (vi, kpa) in kpas.iter_mut().enumerate() {
                let v = &cluster.variants[vi];
                let desired = match (options.policy, &schedule) {
                    (Policy::Kpa { target_concurrency }, _) => {
                        let concurrency = v
                            .servers
                            .iter()
                            .filter(|s| s.is_ready(t))
                            .map(|s| s.in_system() as f64)
                            .sum::<f64>()
                            + held;
                        kpa.desired(
                            t,
                            concurrency,
                            target_concurrency,
                            v.replicas(),
                            v.ready(t),
                            scenario.variants[vi].max_replicas,
                        )
                    }
                    (_, Some(schedule)) => schedule
                        .at(t)
                        .and_then(|targets| targets.get(vi).copied())
                        .unwrap_or(v.replicas()),
                    _ => v.replicas(),
                };
                cluster.scale(vi, desired, t);
            }
            cluster.release_gateway(t);
            for e in send_deployments(&cluster, &mut reported, t) {
                registry.send(e).await.map_err(|e| e.to_string())?;
            }
        }

        if next_hpa <= t {
            next_hpa += interval;
            for (vi, hpa) in hpas.iter_mut().enumerate() {
                let name = cluster.variants[vi].name.clone();
                let current = cluster.variants[vi].replicas();
                let metric = match options.policy {
                    Policy::HpaKv { .. } => {
                        let v = &cluster.variants[vi];
                        Some(
                            v.servers
                                .iter()
                                .filter(|s| s.is_ready(t))
                                .map(|s| s.kv_usage())
                                .sum::<f64>(),
                        )
                    }
                    Policy::SaturationV2 { .. } => saturation_v2_desired[vi].map(f64::from),
                    Policy::KedaSlo { target } => kedas[vi].metric(
                        t,
                        &recent[vi],
                        SloTargets::default(),
                        current,
                        &KedaSloConfig::with_target(target),
                    ),
                    _ => publisher
                        .send(ReadDesired(key(&name)))
                        .await
                        .map_err(|e| e.to_string())?
                        .map(f64::from),
                };
                let target = hpa.sync(t, current, metric);
                cluster.scale(vi, target, t);
            }
            cluster.release_gateway(t);
            for e in send_deployments(&cluster, &mut reported, t) {
                registry.send(e).await.map_err(|e| e.to_string())?;
            }
        }
        // Requests handed back or released by the steps above start now, not at the next event.
        cluster.advance(t, |_, _, _| done_since_sample += 1);
    }
    progress.finish_and_clear();

    let metrics_text = publisher.send(Gather).await.map_err(|e| e.to_string())?;
    let model_based = model_based_tally(&log).await?;
    let unfinished = cluster.gateway.len()
        + cluster
            .variants
            .iter()
            .flat_map(|v| &v.servers)
            .map(|s| s.in_system())
            .sum::<usize>();
    let failed = cluster.failed
        + cluster
            .variants
            .iter()
            .flat_map(|v| &v.servers)
            .map(|s| s.counters.request_failed)
            .sum::<u64>();
    let variants = cluster
        .variants
        .iter()
        .map(|v| {
            let gpu_hours = v.replica_ms / 3_600_000.0;
            VariantResult {
                name: v.name.clone(),
                accelerator: v.profile.name.to_string(),
                gpu_hours,
                cost: gpu_hours * v.cost_per_hour,
                scaling_actions: v.scaling_actions,
                peak_replicas: v.peak_replicas,
                completed: v.completed,
            }
        })
        .collect();
    Ok(RunResult {
        completed: cluster.completed,
        failed,
        unfinished,
        variants,
        samples,
        metrics_text,
        cycles,
        safety_net_cycles,
        model_based,
        thresholds,
    })
}

/// How often the model-based optimizer proposed, from the decision log.
async fn model_based_tally(
    log: &actix::Addr<wva_actors::log_actor::LogActor>,
) -> Result<Option<ModelBasedTally>, String> {
    let history = log
        .send(wva_actors::log_actor::ReadHistory(Default::default()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut tally: Option<ModelBasedTally> = None;
    for (_, record) in &history.records {
        let wva_storage::Record::ModelBased(m) = record else {
            continue;
        };
        if m.mode == "capacity-only" {
            continue;
        }
        let t = tally.get_or_insert_with(ModelBasedTally::default);
        t.cycles += 1;
        if m.variants.iter().any(|v| v.model_target.is_some()) {
            t.proposed += 1;
        } else if t.first_abstention.is_none() {
            t.first_abstention = Some(m.proposal_reason.clone());
        }
    }
    Ok(tally)
}

/// Cycles in which the model-based optimizer (hybrid, model-only) proposed targets.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelBasedTally {
    pub cycles: usize,
    pub proposed: usize,
    /// Why it abstained the first time it did.
    pub first_abstention: Option<String>,
}

/// The `q` quantile (0..=1) by nearest rank; `None` for no values.
pub fn percentile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}
