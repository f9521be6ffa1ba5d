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
    PolicySettings, ServingStats, Timestamp, VariantKey, VariantSpec,
};
use wva_actors::policy::OperatingMode;
use wva_actors::policy::model_based::RequestCount;
use wva_actors::publisher::{Gather, PublisherConfig, ReadDesired};
use wva_actors::registry::{DeploymentEvent, Tick, UpsertVariant};
use wva_actors::system::SystemConfig;
use wva_actors::telemetry::Telemetry;
use wva_storage::{DecisionLog, MemoryLog, Retention};

use super::cluster::{Cluster, Variant};
use super::hpa::{Hpa, HpaSpec};
use super::profiles;
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

/// Which autoscaler drives the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Policy {
    /// This controller (capacity analyzer, CONTRACT section 3) through an HPA on
    /// `inferno_desired_replicas` with `AverageValue: 1`.
    #[default]
    WvaV1,
    /// This controller in hybrid mode: the capacity analyzer arbitrated with the model-based
    /// optimizer (queueing model, learned latency parameters, service-class targets).
    WvaHybrid,
    /// A plain HPA on the mean KV-cache use of each variant's pods.
    HpaKv { target: f64 },
    /// Knative's pod autoscaler: concurrency per pod averaged over a 60 s stable window and a
    /// 6 s panic window (entered when the panic window wants twice the ready pods), sampled
    /// every 2 s, scaling down at most by half at a time.
    Kpa { target_concurrency: f64 },
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Self::WvaV1 => "wva-v1",
            Self::WvaHybrid => "wva-hybrid",
            Self::HpaKv { .. } => "hpa-kv",
            Self::Kpa { .. } => "kpa",
        }
    }

    /// A policy by name, with the defaults used in comparisons.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.trim() {
            "wva-v1" => Ok(Self::WvaV1),
            "wva-hybrid" => Ok(Self::WvaHybrid),
            "hpa-kv" => Ok(Self::HpaKv { target: 0.6 }),
            "kpa" => Ok(Self::Kpa {
                target_concurrency: 48.0,
            }),
            other => Err(format!(
                "expected wva-v1, wva-hybrid, hpa-kv or kpa, got {other:?}"
            )),
        }
    }
}

/// Knative's windows over one variant's concurrency samples.
#[derive(Debug, Default)]
struct KpaState {
    samples: VecDeque<(f64, f64)>,
    panic_until: f64,
}

impl KpaState {
    const STABLE_MS: f64 = 60_000.0;
    const PANIC_MS: f64 = 6_000.0;

    fn desired(
        &mut self,
        t: f64,
        concurrency: f64,
        target: f64,
        current: u32,
        ready: u32,
        max: u32,
    ) -> u32 {
        self.samples.push_back((t, concurrency));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| *at <= t - Self::STABLE_MS)
        {
            self.samples.pop_front();
        }
        let mean = |window: f64| {
            let w: Vec<f64> = self
                .samples
                .iter()
                .filter(|(at, _)| *at > t - window)
                .map(|s| s.1)
                .collect();
            w.iter().sum::<f64>() / w.len().max(1) as f64
        };
        let stable = (mean(Self::STABLE_MS) / target).ceil() as u32;
        let panic = (mean(Self::PANIC_MS) / target).ceil() as u32;
        if ready > 0 && f64::from(panic) / f64::from(ready) >= 2.0 {
            self.panic_until = t + Self::STABLE_MS;
        }
        let desired = if t < self.panic_until {
            panic.max(current)
        } else {
            stable
        };
        // At most halve the ready pods per decision (max-scale-down-rate 2).
        desired.max(ready.div_ceil(2)).clamp(1, max)
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
}

/// One point of the time series, per autoscaler cycle.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub t_s: f64,
    /// Per variant: (replicas, ready, published desired).
    pub variants: BTreeMap<String, (u32, u32, Option<u32>)>,
    /// Requests waiting in servers and at the gateway.
    pub waiting: usize,
    /// Mean KV-cache use over ready replicas.
    pub kv: f64,
    /// Median TTFT of the requests that finished since the last sample, ms.
    pub ttft_p50_ms: Option<f64>,
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

/// Runs a scenario to the end. Must be called inside an actix System.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunResult, String> {
    let mut settings = options.settings.clone();
    if options.policy == Policy::WvaHybrid {
        settings.mode = OperatingMode::Hybrid;
    }
    let system = wva_actors::system::start(SystemConfig {
        log: open_log(options)?,
        publisher: PublisherConfig::default(),
        status: None,
        settings,
        telemetry: Telemetry::unregistered().map_err(|e| e.to_string())?,
    })
    .map_err(|e| e.to_string())?;
    if let Some(problem) = system.recovery_problem {
        return Err(format!("decision log: {problem}"));
    }
    let (registry, publisher) = (system.registry, system.publisher);
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
    let target_average_value = match options.policy {
        Policy::HpaKv { target } => target,
        _ => scenario.hpa.target_average_value,
    };
    let mut hpas: Vec<Hpa> = scenario
        .variants
        .iter()
        .map(|v| {
            Hpa::new(HpaSpec {
                max_replicas: v.max_replicas,
                target_average_value,
                ..scenario.hpa.clone()
            })
        })
        .collect();
    let mut kpas: Vec<KpaState> = scenario
        .variants
        .iter()
        .map(|_| KpaState::default())
        .collect();
    let kpa_interval = 2_000.0;
    let mut next_kpa = match options.policy {
        Policy::Kpa { .. } => kpa_interval,
        _ => f64::INFINITY,
    };
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
    // Under KPA there is no HPA: Knative scales the Deployment itself.
    let mut next_hpa = if matches!(options.policy, Policy::Kpa { .. }) {
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
            .min(next_hpa);
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
        cluster.advance(t, |_, _, _| done_since_sample += 1);

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

            let mut per_variant = BTreeMap::new();
            for v in &cluster.variants {
                let desired = publisher
                    .send(ReadDesired(key(&v.name)))
                    .await
                    .map_err(|e| e.to_string())?;
                per_variant.insert(v.name.clone(), (v.replicas(), v.ready(t), desired));
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
            let recent = &cluster.completed[cluster.completed.len() - done_since_sample..];
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
                ttft_p50_ms: percentile(recent.iter().map(|c| c.ttft_ms).collect(), 0.5),
            });
            done_since_sample = 0;
        }

        if let Policy::Kpa { target_concurrency } = options.policy
            && next_kpa <= t
        {
            next_kpa += kpa_interval;
            // Requests held at the gateway (Knative's activator) count for every revision.
            let held = cluster.gateway.len() as f64 / cluster.variants.len() as f64;
            for (vi, kpa) in kpas.iter_mut().enumerate() {
                let v = &cluster.variants[vi];
                let concurrency = v
                    .servers
                    .iter()
                    .filter(|s| s.is_ready(t))
                    .map(|s| s.in_system() as f64)
                    .sum::<f64>()
                    + held;
                let max = scenario.variants[vi].max_replicas;
                let desired = kpa.desired(
                    t,
                    concurrency,
                    target_concurrency,
                    v.replicas(),
                    v.ready(t),
                    max,
                );
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
    })
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
