//! The simulation engine: the real Registry, supervisors, policy, decision log and publisher
//! driven by the emulated cluster in virtual time.
//!
//! Events, in time order: request arrivals, server iterations ending, replicas becoming ready,
//! this controller's cycle (every `control_interval`, on a Prometheus-like scrape of the last
//! minute), and the autoscaler's actuation: an HPA's sync (same period, offset by half of it,
//! since the two controllers run independently in a cluster) or its own direct scaling. A
//! [`Run`] holds the state and takes one step per event time; which autoscaler acts, and how,
//! is behind [`crate::autoscaler::Autoscaler`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use actix::Addr;
use indicatif::{ProgressBar, ProgressStyle};
use wva_actors::log_actor::LogActor;
use wva_actors::messages::{
    DEFAULT_MAX_BATCH, DeploymentState, Metrics, MetricsSnapshot, ModelKey, PodSample,
    PolicySettings, ReplicaBounds, Timestamp, VariantKey, VariantSpec,
};
use wva_actors::policy::scale_to_zero::RequestCount;
use wva_actors::policy::scarcity::Pool;
use wva_actors::publisher::{Gather, Publisher, PublisherConfig, ReadDesired};
use wva_actors::registry::{DeploymentEvent, Registry, SetPool, Tick, UpsertVariant};
use wva_actors::system::SystemConfig;
use wva_actors::telemetry::Telemetry;
use wva_storage::{DecisionLog, MemoryLog, Retention};

use crate::autoscaler::{Actuation, Autoscaler, View};
use crate::cluster::{Cluster, Variant, schedule};
use crate::hpa::{Hpa, HpaSpec};
use crate::misses::{Timeline, attribute};
use crate::peers::RecentRequests;
use crate::peers::hindsight::MissTable;
use crate::policy::{Policy, autoscaler, policy_settings};
use crate::results::{
    LogFootprint, ModelBasedTally, RunResult, Sample, ScalingEvent, SloTargets, VariantResult,
    VariantSample, percentile,
};
use crate::scenario::Scenario;
use crate::scrape::Scrapes;

/// Virtual time starts here (2026-01-01T00:00:00Z), so recorded times read as dates.
pub const VIRTUAL_EPOCH_MS: i64 = 1_767_225_600_000;

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
    /// The hindsight bound's measured misses, when already measured (a frontier measures them
    /// once per workload for all its settings).
    pub hindsight: Option<Arc<MissTable>>,
    /// The policies whose runs the bound replays (`BoundTarget::Replayed` indexes them).
    pub replay_seeds: Vec<Policy>,
    /// `settings` are the user's configuration: the `wva` policy runs them as they are.
    pub configured: bool,
    /// Accelerators per type the emulated nodes have (empty: unlimited). Replicas beyond them
    /// are Pending.
    pub pool: BTreeMap<String, u32>,
    /// What keeps the models' counts within the pool.
    pub limiter: Limiter,
}

/// What keeps the published counts within a finite pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limiter {
    /// This controller is told the pool, as `wva run` reads it from the nodes: priorities,
    /// max-min fair shares, spill-over.
    #[default]
    ThisController,
    /// Nothing: every model asks for itself and the scheduler binds Pending replicas first come,
    /// first served.
    None,
    /// WVA v0.9's GPU limiter: scale-ups only, the most saturated variant first, each given what
    /// its accelerator type has free (no priorities, no spill-over, nothing scaled down).
    GreedyBySaturation,
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

/// One model of a run: its load, its emulated cluster, the autoscaler that acts on its
/// Deployments, and what is recorded along the way.
struct Lane<'a> {
    scenario: &'a Scenario,
    model: ModelKey,
    cluster: Cluster,
    autoscaler: Box<dyn Autoscaler>,
    /// One HPA per variant when the autoscaler acts through HPAs.
    hpas: Vec<Hpa>,
    /// What each variant's servers finished over the last minute.
    recent: Vec<RecentRequests>,
    scrapes: Scrapes,
    /// The Deployment state last told to the registry, per variant.
    reported: Vec<Option<DeploymentState>>,
    /// (time, successes so far) over the scale-to-zero retention window.
    successes: VecDeque<(f64, usize)>,
    scale_to_zero: bool,
    retention_ms: f64,
    /// The next request to arrive, as an index into the scenario's requests.
    next_request: usize,
    next_hpa: f64,
    next_direct: f64,
    direct_interval: f64,
    samples: Vec<Sample>,
    done_since_sample: usize,
    /// What the autoscaler observed, asked for and got, for the attribution of misses.
    timeline: Timeline,
    scaling: Vec<ScalingEvent>,
    /// What a limiter outside this controller let the HPAs see this cycle, when one does.
    limited: Option<Vec<Option<u32>>>,
}

/// A run in progress: this controller's actors, deciding every model at once, and one
/// [`Lane`] per model, all on the same nodes.
struct Run<'a> {
    options: &'a RunOptions,
    registry: Addr<Registry>,
    publisher: Addr<Publisher>,
    log: Addr<LogActor>,
    lanes: Vec<Lane<'a>>,
    end_ms: f64,
    interval_ms: f64,
    next_control: f64,
    last_t: f64,
    cycles: usize,
    safety_net_cycles: usize,
    progress: ProgressBar,
    wall_start: std::time::Instant,
}

/// Runs a scenario to the end under its policy. Must be called inside an actix System.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunResult, String> {
    let autoscaler = autoscaler(options.policy, scenario, options.hindsight.as_deref())?;
    run_with(scenario, options, autoscaler).await
}

/// Runs a scenario to the end with this autoscaler acting on the Deployments (this
/// controller's actors decide in every run, under `options.policy`'s settings).
pub async fn run_with(
    scenario: &Scenario,
    options: &RunOptions,
    autoscaler: Box<dyn Autoscaler>,
) -> Result<RunResult, String> {
    let mut results = run_models(vec![(scenario, autoscaler)], options).await?;
    results
        .pop()
        .ok_or_else(|| "a run of one model gave no result".into())
}

/// Runs several models to the end on the same nodes (`options.pool`), each with its autoscaler,
/// all decided by one instance of this controller; a result per model, in their order. The
/// models share the scenario's timing (the first one's duration and control interval).
pub async fn run_models(
    models: Vec<(&Scenario, Box<dyn Autoscaler>)>,
    options: &RunOptions,
) -> Result<Vec<RunResult>, String> {
    // Log lines carry the run's virtual time while it goes, the host's again after.
    struct VirtualTime;
    impl Drop for VirtualTime {
        fn drop(&mut self) {
            crate::clock::set(None);
        }
    }
    let _virtual_time = VirtualTime;
    crate::clock::set(Some(VIRTUAL_EPOCH_MS));
    let mut run = Run::start(models, options).await?;
    loop {
        let t = run.next_event();
        if t >= run.end_ms {
            run.account_replicas(run.end_ms);
            break;
        }
        run.step(t).await?;
    }
    run.drain();
    run.finish().await
}

/// How long requests that arrived before the end of a run may take to finish after it.
const DRAIN_LIMIT_MS: f64 = 600_000.0;

impl<'a> Lane<'a> {
    fn new(
        scenario: &'a Scenario,
        options: &RunOptions,
        autoscaler: Box<dyn Autoscaler>,
        interval_ms: f64,
    ) -> Result<Self, String> {
        let model = ModelKey::new(scenario.namespace.clone(), scenario.model_id.clone());
        let (scale_to_zero, retention) = options.settings.scale_to_zero_for(&model);
        let variants = scenario
            .variants
            .iter()
            .zip(scenario.profiles()?)
            .map(|(v, profile)| {
                Variant::new(
                    &v.name,
                    profile,
                    v.cost_per_hour,
                    scenario.startup_s * 1e3,
                    v.initial_replicas,
                )
            })
            .collect();
        let (hpas, direct_interval) = match autoscaler.actuation() {
            Actuation::Hpa {
                target_average_value,
                behavior,
            } => (
                scenario
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
                    .collect(),
                f64::INFINITY,
            ),
            Actuation::Direct { interval_ms } => (Vec::new(), interval_ms),
        };
        let first_direct = autoscaler.next_moment(0.0).unwrap_or(direct_interval);
        let mut lane = Self {
            scenario,
            model,
            cluster: Cluster::new(variants),
            autoscaler,
            // Without HPAs the autoscaler scales the Deployments itself.
            next_hpa: if hpas.is_empty() {
                f64::INFINITY
            } else {
                interval_ms / 2.0
            },
            hpas,
            recent: scenario
                .variants
                .iter()
                .map(|_| RecentRequests::default())
                .collect(),
            scrapes: Scrapes::default(),
            reported: vec![None; scenario.variants.len()],
            successes: VecDeque::new(),
            scale_to_zero,
            retention_ms: retention.as_secs_f64() * 1e3,
            next_request: 0,
            next_direct: first_direct,
            direct_interval,
            samples: Vec::new(),
            done_since_sample: 0,
            timeline: Timeline::default(),
            scaling: Vec::new(),
            limited: None,
        };
        let total = lane.cluster.variants.iter().map(|v| v.replicas()).sum();
        lane.timeline.grant(0.0, total);
        Ok(lane)
    }

    fn key(&self, name: &str) -> VariantKey {
        VariantKey::new(self.scenario.namespace.clone(), name)
    }

    /// The variants as VAs, each with the bounds of the HPA that acts on it.
    async fn register_variants(&self, registry: &Addr<Registry>) -> Result<(), String> {
        for v in &self.scenario.variants {
            let spec = VariantSpec {
                key: self.key(&v.name),
                model: self.model.clone(),
                deployment: v.name.clone(),
                cost: v.cost_per_hour,
                accelerator: v.accelerator.clone(),
                status_desired: None,
                max_batch: DEFAULT_MAX_BATCH,
                bounds: ReplicaBounds {
                    min: Some(self.scenario.hpa.min_replicas),
                    max: Some(v.max_replicas),
                },
                role: Default::default(),
                // The emulated servers each run on one accelerator.
                gpus_per_replica: 1,
            };
            registry
                .send(UpsertVariant {
                    spec,
                    at: Timestamp(VIRTUAL_EPOCH_MS),
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn next_arrival(&self) -> f64 {
        self.scenario
            .requests
            .get(self.next_request)
            .map_or(f64::INFINITY, |r| r.arrival_ms)
    }

    fn next_ready(&self, after: f64) -> f64 {
        self.cluster
            .variants
            .iter()
            .flat_map(|v| v.servers.iter().map(|s| s.ready_at_ms))
            .filter(|&r| r > after)
            .fold(f64::INFINITY, f64::min)
    }

    /// Routes every request that has arrived by `t`.
    fn arrive(&mut self, t: f64, end_ms: f64) {
        let requests = &self.scenario.requests;
        while let Some(r) = requests
            .get(self.next_request)
            .filter(|r| r.arrival_ms <= t && r.arrival_ms < end_ms)
        {
            self.cluster.route(r.clone(), t);
            self.next_request += 1;
        }
    }

    fn advance(&mut self, t: f64) {
        let (recent, done) = (&mut self.recent, &mut self.done_since_sample);
        self.cluster.advance(t, |vi, _, c| {
            *done += 1;
            recent[vi].record(c);
        });
    }

    /// Tells the registry of every Deployment whose replicas or readiness changed.
    async fn report_deployments(
        &mut self,
        registry: &Addr<Registry>,
        now: f64,
    ) -> Result<(), String> {
        for (i, v) in self.cluster.variants.iter().enumerate() {
            let state = DeploymentState {
                replicas: v.replicas(),
                ready: v.ready(now),
            };
            if self.reported[i] != Some(state) {
                self.reported[i] = Some(state);
                registry
                    .send(DeploymentEvent {
                        namespace: self.scenario.namespace.clone(),
                        name: v.name.clone(),
                        state: Some(state),
                        at: Timestamp(VIRTUAL_EPOCH_MS + now as i64),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// What this controller published for each variant, in order.
    async fn published(&self, publisher: &Addr<Publisher>) -> Result<Vec<Option<u32>>, String> {
        let mut out = Vec::with_capacity(self.cluster.variants.len());
        for v in &self.cluster.variants {
            out.push(
                publisher
                    .send(ReadDesired(self.key(&v.name)))
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(out)
    }

    /// The emulated Prometheus's answer for the model: its ready pods' signals, and its request
    /// count over the retention window when scale to zero is on.
    fn scrape(&mut self, t: f64) -> (Vec<PodSample>, Option<RequestCount>) {
        let mut samples_for_model = Vec::new();
        for v in &self.cluster.variants {
            for (s, pod) in v.servers.iter().zip(&v.pod_names) {
                if s.is_ready(t) {
                    self.scrapes.record(pod, t, s);
                    samples_for_model.extend(self.scrapes.sample(pod, &v.name));
                }
            }
        }
        if !self.scale_to_zero {
            return (samples_for_model, None);
        }
        // sum(increase(vllm:request_success_total[retention])) over the model.
        let total = self.cluster.completed.len();
        self.successes.push_back((t, total));
        while self
            .successes
            .front()
            .is_some_and(|(at, _)| *at < t - self.retention_ms)
        {
            self.successes.pop_front();
        }
        let before = self.successes.front().map_or(0, |(_, n)| *n);
        (
            samples_for_model,
            Some(RequestCount::Read((total - before) as f64)),
        )
    }

    /// The autoscaler's view of this cycle, then a sample of the time series.
    fn observe(&mut self, t: f64, published: &[Option<u32>]) {
        for r in &mut self.recent {
            r.trim(t);
        }
        let view = View {
            now_ms: t,
            cluster: &self.cluster,
            recent: &self.recent,
            published,
        };
        self.autoscaler.on_cycle(&view);
        // An autoscaler that asks observes at this cycle; one that does not, when it scales.
        if let Some(asked) = self.autoscaler.asked(&view) {
            self.timeline.observations.push(t);
            self.timeline.ask(t, asked);
        }
        self.sample(t, published);
    }

    /// One point of the time series.
    fn sample(&mut self, t: f64, published: &[Option<u32>]) {
        let mean = |kv: &[f64]| {
            if kv.is_empty() {
                0.0
            } else {
                kv.iter().sum::<f64>() / kv.len() as f64
            }
        };
        let mut per_variant = BTreeMap::new();
        for (v, desired) in self.cluster.variants.iter().zip(published) {
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
                    desired: *desired,
                    kv: mean(&ready_kv),
                    waiting: v.servers.iter().map(|s| s.waiting()).sum(),
                },
            );
        }
        let ready: Vec<f64> = self
            .cluster
            .variants
            .iter()
            .flat_map(|v| {
                v.servers
                    .iter()
                    .filter(|s| s.is_ready(t))
                    .map(|s| s.kv_usage())
            })
            .collect();
        let completed = &self.cluster.completed;
        let finished = &completed[completed.len() - self.done_since_sample..];
        self.samples.push(Sample {
            t_s: t / 1e3,
            variants: per_variant,
            waiting: self.cluster.gateway.len()
                + self
                    .cluster
                    .variants
                    .iter()
                    .flat_map(|v| &v.servers)
                    .map(|s| s.waiting())
                    .sum::<usize>(),
            kv: mean(&ready),
            ttft_p50_ms: percentile(finished.iter().map(|c| c.ttft_ms).collect(), 0.5),
            ttft_p99_ms: percentile(finished.iter().map(|c| c.ttft_ms).collect(), 0.99),
        });
        self.done_since_sample = 0;
    }

    /// Sets a variant's replicas, noting what the model got and what starts. Replicas added
    /// are Pending until [`Run::schedule`] binds them.
    fn scale(&mut self, vi: usize, target: u32, t: f64) {
        let before = self.cluster.variants[vi].replicas();
        self.cluster.scale(vi, target, t);
        let after = self.cluster.variants[vi].replicas();
        if after != before {
            self.scaling.push(ScalingEvent {
                t_ms: t,
                variant: vi,
                replicas: after,
            });
        }
        let startup_ms = self.scenario.startup_s * 1e3;
        for _ in before..target {
            self.timeline.starting.push((t, t + startup_ms));
        }
        let total = self.cluster.variants.iter().map(|v| v.replicas()).sum();
        self.timeline.grant(t, total);
    }

    /// What the run produced for this model.
    fn result(
        self,
        metrics_text: String,
        model_based: Option<ModelBasedTally>,
        (cycles, safety_net_cycles): (usize, usize),
        thresholds: wva_actors::policy::Thresholds,
    ) -> RunResult {
        let requests = &self.scenario.requests[..self.next_request];
        let misses = attribute(
            requests,
            &self.cluster.completed,
            SloTargets::default(),
            &self.timeline,
        );
        let cluster = self.cluster;
        let servers = || {
            cluster.variants.iter().flat_map(|v| {
                v.servers
                    .iter()
                    .chain(v.terminating.iter().map(|t| &t.server))
            })
        };
        let unfinished = cluster.gateway.len() + servers().map(|s| s.in_system()).sum::<usize>();
        let failed = cluster.failed + servers().map(|s| s.counters.request_failed).sum::<u64>();
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
                    pending_replica_hours: v.pending_ms / 3_600_000.0,
                }
            })
            .collect();
        RunResult {
            completed: cluster.completed,
            failed,
            unfinished,
            variants,
            samples: self.samples,
            metrics_text,
            cycles,
            safety_net_cycles,
            model_based,
            thresholds,
            misses,
            scaling: self.scaling,
            decision_log: None,
        }
    }
}

impl<'a> Run<'a> {
    async fn start(
        models: Vec<(&'a Scenario, Box<dyn Autoscaler>)>,
        options: &'a RunOptions,
    ) -> Result<Self, String> {
        let Some(first) = models.first().map(|(s, _)| *s) else {
            return Err("a run needs at least one model".into());
        };
        let settings = policy_settings(&options.settings, options.policy, options.configured);
        let system = wva_actors::system::start(SystemConfig {
            log: open_log(options)?,
            publisher: PublisherConfig::default(),
            status: None,
            settings,
            telemetry: Telemetry::unregistered().map_err(|e| e.to_string())?,
            model_threads: 1,
            authority: wva_actors::authority::Authority::unconditional(),
        })
        .map_err(|e| e.to_string())?;
        if let Some(problem) = system.recovery_problem {
            return Err(format!("decision log: {problem}"));
        }
        let interval_ms = first.control_interval_s * 1e3;
        let lanes = models
            .into_iter()
            .map(|(scenario, autoscaler)| Lane::new(scenario, options, autoscaler, interval_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let end_ms = first.duration_s * 1e3;
        // Progress in virtual minutes; drawn only on a terminal.
        let progress = if options.progress && std::io::stderr().is_terminal() {
            ProgressBar::new(end_ms.max(0.0) as u64 / 1_000)
        } else {
            ProgressBar::hidden()
        };
        progress.set_style(
            ProgressStyle::with_template("{bar:25} {percent:>3}%  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if !options.pool.is_empty() && options.limiter == Limiter::ThisController {
            system
                .registry
                .send(SetPool(Some(Pool {
                    gpus: options.pool.clone(),
                    ..Default::default()
                })))
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut run = Self {
            options,
            registry: system.registry,
            publisher: system.publisher,
            log: system.log,
            lanes,
            end_ms,
            interval_ms,
            next_control: interval_ms,
            last_t: 0.0,
            cycles: 0,
            safety_net_cycles: 0,
            progress,
            wall_start: std::time::Instant::now(),
        };
        let registry = run.registry.clone();
        for lane in &mut run.lanes {
            lane.report_deployments(&registry, 0.0).await?;
            lane.register_variants(&registry).await?;
        }
        Ok(run)
    }

    /// The time of the next event: an arrival, an iteration ending, a replica becoming ready,
    /// a control cycle, an HPA sync or a direct scaling.
    fn next_event(&self) -> f64 {
        self.lanes
            .iter()
            .map(|l| {
                l.next_arrival()
                    .min(l.cluster.next_step())
                    .min(l.next_ready(self.last_t))
                    .min(l.next_hpa)
                    .min(l.next_direct)
            })
            .fold(self.next_control, f64::min)
    }

    /// Replica-time up to `t`: every replica counts, starting, ready or terminating; and the
    /// time Pending ones waited.
    fn account_replicas(&mut self, t: f64) {
        for lane in &mut self.lanes {
            for v in &mut lane.cluster.variants {
                v.replica_ms += f64::from(v.allocated()) * (t - self.last_t);
                v.pending_ms += v.pending.len() as f64 * (t - self.last_t);
            }
        }
    }

    /// Binds Pending replicas of every model on the nodes, the oldest first.
    fn schedule(&mut self, t: f64) {
        let mut clusters: Vec<&mut Cluster> =
            self.lanes.iter_mut().map(|l| &mut l.cluster).collect();
        schedule(&mut clusters, &self.options.pool, t);
    }

    /// Everything that happens at `t`, in order.
    async fn step(&mut self, t: f64) -> Result<(), String> {
        let due: Vec<(f64, f64)> = self
            .lanes
            .iter()
            .map(|l| (l.next_arrival(), l.next_ready(self.last_t)))
            .collect();
        self.account_replicas(t);
        self.last_t = t;
        crate::clock::set(Some(VIRTUAL_EPOCH_MS + t as i64));
        self.progress.set_position(t as u64 / 1_000);
        self.progress
            .set_message(format!("{:.1} min", t / 60_000.0));
        let registry = self.registry.clone();
        for (lane, (next_arrival, next_ready)) in self.lanes.iter_mut().zip(due) {
            if next_arrival <= t {
                lane.arrive(t, self.end_ms);
            }
            if next_ready <= t {
                lane.cluster.release_gateway(t);
                lane.report_deployments(&registry, t).await?;
            }
            // Servers whose iteration ended run the next one; idle servers that got work start.
            lane.advance(t);
        }
        // Accelerators freed by replicas that finished terminating go to Pending ones.
        self.schedule(t);
        if self.next_control <= t {
            self.next_control += self.interval_ms;
            self.control_cycle(t).await?;
        }
        for li in 0..self.lanes.len() {
            let lane = &mut self.lanes[li];
            if lane.next_direct <= t {
                lane.next_direct = lane
                    .autoscaler
                    .next_moment(t)
                    .unwrap_or(lane.next_direct + lane.direct_interval);
                self.scale_directly(li, t).await?;
            }
        }
        for li in 0..self.lanes.len() {
            let lane = &mut self.lanes[li];
            if lane.next_hpa <= t {
                lane.next_hpa += self.interval_ms;
                self.sync_hpas(li, t).await?;
            }
        }
        // Requests handed back or released by the steps above start now, not at the next event.
        for lane in &mut self.lanes {
            lane.advance(t);
        }
        Ok(())
    }

    /// After the end: the requests that arrived before it finish on the replicas there are, with
    /// no new arrivals and no decisions, so that the run's last seconds are judged like the
    /// others rather than cut off. The replicas' time after the end is not counted: the load,
    /// and what it costs to serve, ends there.
    fn drain(&mut self) {
        self.last_t = self.end_ms;
        loop {
            let t = self
                .lanes
                .iter()
                .map(|l| l.cluster.next_step().min(l.next_ready(self.last_t)))
                .fold(f64::INFINITY, f64::min);
            if !t.is_finite() || t > self.end_ms + DRAIN_LIMIT_MS {
                break;
            }
            self.last_t = t;
            for lane in &mut self.lanes {
                lane.cluster.release_gateway(t);
                lane.advance(t);
            }
        }
    }

    /// One cycle of this controller on a scrape of every model's ready pods, then each
    /// model's autoscaler on the same moment, then a sample of each time series.
    async fn control_cycle(&mut self, t: f64) -> Result<(), String> {
        if let Some(pace) = self.options.pace.filter(|p| *p > 0.0) {
            let due = std::time::Duration::from_secs_f64(t / 1e3 / pace);
            if let Some(wait) = due.checked_sub(self.wall_start.elapsed()) {
                actix::clock::sleep(wait).await;
            }
        }
        let mut by_model = HashMap::new();
        let mut request_counts = HashMap::new();
        for lane in &mut self.lanes {
            lane.cluster.release_gateway(t);
            let (samples, count) = lane.scrape(t);
            by_model.insert(lane.model.clone(), samples);
            if let Some(count) = count {
                request_counts.insert(lane.model.clone(), count);
            }
        }
        let metrics = if self.options.metrics_outage {
            Metrics::Failed("emulated Prometheus outage: connection refused".into())
        } else {
            Metrics::Read(Arc::new(MetricsSnapshot {
                by_model,
                request_counts,
                ..Default::default()
            }))
        };
        let summary = self
            .registry
            .send(Tick {
                now: Timestamp(VIRTUAL_EPOCH_MS + t as i64),
                metrics,
            })
            .await
            .map_err(|e| e.to_string())?;
        self.cycles += 1;
        self.safety_net_cycles += summary.safety_net_models;
        let publisher = self.publisher.clone();
        let mut published = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            published.push(lane.published(&publisher).await?);
        }
        if self.options.limiter == Limiter::GreedyBySaturation && !self.options.pool.is_empty() {
            let clusters: Vec<&Cluster> = self.lanes.iter().map(|l| &l.cluster).collect();
            let limited = greedy_by_saturation(&clusters, &published, &self.options.pool, t);
            for (lane, limited) in self.lanes.iter_mut().zip(&limited) {
                lane.limited = Some(limited.clone());
            }
            published = limited;
        }
        for (lane, published) in self.lanes.iter_mut().zip(&published) {
            lane.observe(t, published);
        }
        Ok(())
    }

    /// A model whose autoscaler sets the replicas itself (Knative's, a schedule).
    async fn scale_directly(&mut self, li: usize, t: f64) -> Result<(), String> {
        let lane = &mut self.lanes[li];
        let targets = lane.autoscaler.direct_targets(&View {
            now_ms: t,
            cluster: &lane.cluster,
            recent: &lane.recent,
            published: &[],
        });
        lane.timeline.observations.push(t);
        for (vi, target) in targets.into_iter().enumerate() {
            lane.scale(vi, target, t);
        }
        self.settle_scaling(li, t).await
    }

    /// A model's HPAs on its autoscaler's metric.
    async fn sync_hpas(&mut self, li: usize, t: f64) -> Result<(), String> {
        let publisher = self.publisher.clone();
        let lane = &mut self.lanes[li];
        let published = match &lane.limited {
            Some(limited) => limited.clone(),
            None => lane.published(&publisher).await?,
        };
        let metrics = lane.autoscaler.hpa_metrics(&View {
            now_ms: t,
            cluster: &lane.cluster,
            recent: &lane.recent,
            published: &published,
        });
        if lane.timeline.asked.is_empty() {
            lane.timeline.observations.push(t);
        }
        for vi in 0..lane.hpas.len() {
            let current = lane.cluster.variants[vi].replicas();
            let target = lane.hpas[vi].sync(t, current, metrics.get(vi).copied().flatten());
            lane.scale(vi, target, t);
        }
        self.settle_scaling(li, t).await
    }

    /// After a model scaled: what can be bound is, held requests go to ready replicas, and the
    /// registry hears of the Deployments.
    async fn settle_scaling(&mut self, li: usize, t: f64) -> Result<(), String> {
        self.schedule(t);
        let registry = self.registry.clone();
        let lane = &mut self.lanes[li];
        lane.cluster.release_gateway(t);
        lane.report_deployments(&registry, t).await
    }

    /// The results, once the run has reached its end: one per model.
    async fn finish(self) -> Result<Vec<RunResult>, String> {
        self.progress.finish_and_clear();
        let metrics_text = self
            .publisher
            .send(Gather)
            .await
            .map_err(|e| e.to_string())?;
        let thresholds = policy_settings(
            &self.options.settings,
            self.options.policy,
            self.options.configured,
        )
        .scaling
        .default
        .thresholds;
        let decision_log = match &self.options.data_dir {
            Some(_) => Some(self.log_footprint().await?),
            None => None,
        };
        let mut results = Vec::with_capacity(self.lanes.len());
        for lane in self.lanes {
            let model_based = model_based_tally(&self.log, &lane.model).await?;
            let mut result = lane.result(
                metrics_text.clone(),
                model_based,
                (self.cycles, self.safety_net_cycles),
                thresholds,
            );
            result.decision_log = decision_log;
            results.push(result);
        }
        Ok(results)
    }

    /// What the decision log keeps, per variant and day of the run.
    async fn log_footprint(&self) -> Result<LogFootprint, String> {
        let stats = self
            .log
            .send(wva_actors::log_actor::Stats)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let variants: usize = self.lanes.iter().map(|l| l.scenario.variants.len()).sum();
        let days = self
            .lanes
            .first()
            .map_or(0.0, |l| l.scenario.duration_s / 86_400.0);
        Ok(LogFootprint {
            records: stats.records,
            bytes: stats.bytes,
            bytes_per_variant_day: stats.bytes as f64 / (variants.max(1) as f64 * days.max(1e-9)),
        })
    }
}

/// WVA v0.9's GPU limiter over every model's published counts: a count at or below its
/// variant's replicas passes; scale-ups are served the most saturated variant first (the highest
/// mean KV-cache use of its ready replicas), each given at most what its accelerator type has
/// free now, and the rest held back.
fn greedy_by_saturation(
    clusters: &[&Cluster],
    published: &[Vec<Option<u32>>],
    pool: &BTreeMap<String, u32>,
    t: f64,
) -> Vec<Vec<Option<u32>>> {
    let mut free: BTreeMap<&str, i64> = pool
        .iter()
        .map(|(acc, &n)| (acc.as_str(), i64::from(n)))
        .collect();
    for c in clusters {
        for v in &c.variants {
            if let Some(left) = free.get_mut(v.profile.name) {
                *left -= i64::from(v.allocated());
            }
        }
    }
    let mut out: Vec<Vec<Option<u32>>> = published.to_vec();
    let mut ups: Vec<(f64, usize, usize, u32, u32)> = Vec::new();
    for (ci, c) in clusters.iter().enumerate() {
        for (vi, v) in c.variants.iter().enumerate() {
            let Some(wanted) = published[ci].get(vi).copied().flatten() else {
                continue;
            };
            let current = v.replicas();
            if wanted <= current || !free.contains_key(v.profile.name) {
                continue;
            }
            let kv: Vec<f64> = v
                .servers
                .iter()
                .filter(|s| s.is_ready(t))
                .map(|s| s.kv_usage())
                .collect();
            let saturation = if kv.is_empty() {
                1.0
            } else {
                kv.iter().sum::<f64>() / kv.len() as f64
            };
            ups.push((saturation, ci, vi, current, wanted));
        }
    }
    ups.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    for (_, ci, vi, current, wanted) in ups {
        let left = free
            .get_mut(clusters[ci].variants[vi].profile.name)
            .expect("only limited types are queued");
        let granted = i64::from(wanted - current).min((*left).max(0));
        *left -= granted;
        out[ci][vi] = Some(current + granted as u32);
    }
    out
}

/// How often the model-based optimizer proposed, from the decision log.
async fn model_based_tally(
    log: &Addr<LogActor>,
    model: &ModelKey,
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
        if m.mode == "capacity-only" || m.model != *model {
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
