//! `wva run`: the controller against a real cluster. The watchers feed the [`Inventory`], whose
//! changes go to the actors at once (a Deployment created or deleted is handled on its watch
//! event, not at the next cycle); the cycle loop reads Prometheus once per cycle for every model
//! and drives the actors; the status writer and the publisher act only while this instance
//! leads.

pub mod http;
pub mod inventory;
pub mod leader;
pub mod rbac;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::events::Reporter;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use wva_actors::effects::Ports;
use wva_actors::log_actor::{Flush, LogActor};
use wva_actors::messages::{ModelKey, PolicySettings};
use wva_actors::policy::OperatingMode;
use wva_actors::publisher::{Publisher, PublisherConfig, SetActive};
use wva_actors::registry::{
    DeploymentEvent, Registry, RemoveVariant, Tick, UpdateSettings, UpsertVariant,
};
use wva_storage::{DecisionLog, MemoryLog, Retention};

use crate::config::settings::Settings;
use crate::config::{
    ACCELERATOR_COST_CONFIG_MAP, AcceleratorCosts, CAPACITY_CONFIG_MAP, CapacityScalingConfig,
    SERVICE_CLASS_CONFIG_MAP, ServiceClasses,
};
use crate::crd::VariantAutoscaling;
use crate::poller::{PodIndex, PollPlan, PollReport};
use crate::timefmt::wall_clock;
use http::{Health, SharedHealth};
use inventory::{Change, Inventory, Kind, Scope};
use status::{StatusWriter, WriterNote};

/// Resolves when the stop signal turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Where the cycle's metrics come from: Prometheus in production, a script in tests.
pub type MetricsSource =
    Arc<dyn Fn(PollPlan, PodIndex) -> BoxFuture<'static, PollReport> + Send + Sync>;

/// A metrics source reading a Prometheus.
pub fn prometheus_source(client: Arc<crate::prometheus_api::PrometheusClient>) -> MetricsSource {
    Arc::new(move |plan, pods| {
        let client = Arc::clone(&client);
        Box::pin(async move {
            let now_s = wall_clock().millis() as f64 / 1e3;
            crate::poller::poll(&client, &plan, &pods, now_s).await
        })
    })
}

/// What the controller runs with, besides the API client.
#[derive(Clone)]
pub struct ControllerOptions {
    pub settings: Settings,
    /// Decision log directory; in memory when absent (tests).
    pub data_dir: Option<PathBuf>,
    pub metrics: MetricsSource,
    /// Leader election: (Lease name, identity, timing). Always the leader when absent.
    pub leader_election: Option<(String, String, leader::LeaseTiming)>,
    /// Reporting instance in Events (the pod name).
    pub instance: String,
}

impl std::fmt::Debug for ControllerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerOptions")
            .field("settings", &self.settings.redacted())
            .field("data_dir", &self.data_dir)
            .field("leader_election", &self.leader_election)
            .finish_non_exhaustive()
    }
}

/// A started controller.
#[derive(Debug)]
pub struct Running {
    pub registry: Addr<Registry>,
    pub publisher: Addr<Publisher>,
    pub health: SharedHealth,
    pub leader: watch::Receiver<bool>,
    log: Addr<LogActor>,
    cycle: Arc<CycleRunner>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Runs one cycle now (tests; the loop runs them on the interval).
    pub async fn cycle_now(&self) {
        self.cycle.run_once().await;
    }

    /// Waits until the watches are synced, or `limit` passes.
    pub async fn synced(&self, limit: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while start.elapsed() < limit {
            if self
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .watches_synced
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The stop signal, for servers that should end with the controller.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Graceful stop: no new cycle starts, the one in flight finishes, the decision log is
    /// flushed and the Lease released.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
        match self.log.send(Flush).await {
            Ok(Ok(())) => tracing::info!("decision log flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "decision log: flush failed"),
            Err(e) => tracing::warn!(error = %e, "decision log: unavailable at shutdown"),
        }
    }
}

fn open_log(dir: Option<&PathBuf>) -> Box<dyn DecisionLog> {
    let Some(dir) = dir else {
        return Box::new(MemoryLog::in_memory(Retention::default()));
    };
    match wva_storage::datadir::open_for_writing(dir) {
        Ok((log, moved)) => {
            if let Some(moved) = moved {
                tracing::error!("{moved}; the safety net falls back to the VA statuses");
            }
            Box::new(log)
        }
        Err(e) => {
            // Never stop the controller over its log: decide without history.
            tracing::error!(data_dir = %dir.display(), error = %e, "cannot open the decision log; running with an in-memory log (no restart recovery)");
            Box::new(MemoryLog::in_memory(Retention::default()))
        }
    }
}

/// The policy settings from the process settings and the three ConfigMaps' data.
fn policy_settings(
    settings: &Settings,
    config: &ConfigData,
) -> (PolicySettings, AcceleratorCosts, Vec<String>) {
    let capacity = CapacityScalingConfig::from_data(config.get(CAPACITY_CONFIG_MAP));
    let costs = AcceleratorCosts::from_data(config.get(ACCELERATOR_COST_CONFIG_MAP));
    let classes = ServiceClasses::from_data(config.get(SERVICE_CLASS_CONFIG_MAP));
    let mut problems: Vec<String> = capacity.warnings.clone();
    problems.extend(capacity.issues.iter().map(ToString::to_string));
    problems.extend(costs.issues.iter().map(ToString::to_string));
    problems.extend(classes.issues.iter().map(ToString::to_string));
    (
        PolicySettings {
            scaling: capacity.scaling,
            mode: settings.mode,
            latency_targets: classes.latency_targets(),
            scale_to_zero: settings.scale_to_zero,
        },
        costs,
        problems,
    )
}

type ConfigData = BTreeMap<&'static str, BTreeMap<String, String>>;

const WATCHED_CONFIG_MAPS: [&str; 3] = [
    CAPACITY_CONFIG_MAP,
    ACCELERATOR_COST_CONFIG_MAP,
    SERVICE_CLASS_CONFIG_MAP,
];

/// Starts the controller. Must run inside an actix System on a tokio runtime.
pub async fn start(client: kube::Client, options: ControllerOptions) -> Result<Running, String> {
    let settings = options.settings.clone();
    let scope = Scope {
        instance: settings.controller_instance.clone(),
        namespace: settings.watch_namespace.clone(),
    };
    let (stop, _) = watch::channel(false);

    // The ConfigMaps arrive with their watch's initial list, before the first cycle can run
    // (the inventory is not ready until every initial list is in).
    let config = ConfigData::new();
    let (policy, costs, _) = policy_settings(&settings, &config);
    let policy_shared = Arc::new(Mutex::new(policy.clone()));

    let log = open_log(options.data_dir.as_ref());
    let recovered = log.last_good().map_err(|e| e.to_string()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the last good decisions; the safety net falls back to the VA statuses");
        Default::default()
    });
    let log = LogActor::start(log);
    let publisher = Publisher::new(&PublisherConfig {
        prefix: settings.metrics_prefix.as_str().to_string(),
        controller_instance: settings.controller_instance.clone(),
    })
    .map_err(|e| format!("metrics registry: {e}"))?
    .start();

    let (leader_tx, leader_rx) = watch::channel(options.leader_election.is_none());
    let reporter = Reporter {
        controller: "wva-controller".into(),
        instance: Some(options.instance.clone()),
    };
    let writer = StatusWriter::start(client.clone(), reporter, *leader_rx.borrow());
    publisher.do_send(SetActive(*leader_rx.borrow()));
    let registry = Registry::new(
        Ports {
            log: log.clone(),
            publisher: publisher.clone(),
            status: Some(writer.clone().recipient()),
        },
        policy,
        recovered,
    )
    .start();

    let mut inventory = Inventory::new(scope);
    let _ = inventory.set_costs(costs);
    let inventory = Arc::new(Mutex::new(inventory));
    let health: SharedHealth = Arc::new(Mutex::new(Health {
        leader: *leader_rx.borrow(),
        ..Default::default()
    }));

    let mut tasks = Vec::new();
    // Leadership: tell the publisher and the status writer at once.
    if let Some((lease, identity, timing)) = &options.leader_election {
        let elector = leader::Elector::new(
            client.clone(),
            &settings.pod_namespace,
            lease,
            identity,
            *timing,
        );
        tasks.push(tokio::spawn(elector.run(leader_tx, stop.subscribe())));
    }
    {
        let (mut rx, publisher, writer, health) = (
            leader_rx.clone(),
            publisher.clone(),
            writer.clone(),
            Arc::clone(&health),
        );
        let mut stop_rx = stop.subscribe();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    _ = crate::controller::stopped(&mut stop_rx) => break,
                }
                let leading = *rx.borrow_and_update();
                let _ = publisher.send(SetActive(leading)).await;
                let _ = writer.send(WriterNote::Leader(leading)).await;
                health.lock().unwrap_or_else(|p| p.into_inner()).leader = leading;
            }
        }));
    }

    let watch = Watches {
        client: client.clone(),
        settings: settings.clone(),
        inventory: Arc::clone(&inventory),
        registry: registry.clone(),
        writer: writer.clone(),
        health: Arc::clone(&health),
        policy: Arc::clone(&policy_shared),
        config,
        config_relist: None,
    };
    tasks.push(tokio::spawn(watch.run(stop.subscribe())));

    let cycle = Arc::new(CycleRunner {
        registry: registry.clone(),
        inventory,
        policy: policy_shared,
        metrics: options.metrics.clone(),
        health: Arc::clone(&health),
        leader: leader_rx.clone(),
        namespaces: settings.watch_namespace.iter().cloned().collect(),
    });
    {
        let (cycle, interval) = (Arc::clone(&cycle), settings.reconciliation_interval);
        let mut stop_rx = stop.subscribe();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = crate::controller::stopped(&mut stop_rx) => break,
                }
                // A cycle in flight is finished even when the stop arrives meanwhile.
                cycle.run_once().await;
            }
        }));
    }

    Ok(Running {
        registry,
        publisher,
        health,
        leader: leader_rx,
        log,
        cycle,
        stop,
        tasks,
    })
}

/// One decision cycle: read the metrics of every managed model in one batch, then tick.
struct CycleRunner {
    registry: Addr<Registry>,
    inventory: Arc<Mutex<Inventory>>,
    policy: Arc<Mutex<PolicySettings>>,
    metrics: MetricsSource,
    health: SharedHealth,
    leader: watch::Receiver<bool>,
    namespaces: Vec<String>,
}

impl std::fmt::Debug for CycleRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleRunner").finish_non_exhaustive()
    }
}

impl CycleRunner {
    async fn run_once(&self) {
        // Followers neither read nor decide: the leader's log is the one that counts.
        if !*self.leader.borrow() {
            return;
        }
        let (pods, models, ready) = {
            let inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
            (inv.pod_index(), inv.models(), inv.ready())
        };
        if !ready {
            return;
        }
        let policy = self
            .policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let plan = PollPlan {
            namespaces: self.namespaces.clone(),
            serving: policy.mode != OperatingMode::CapacityOnly,
            request_counts: models
                .iter()
                .filter_map(|m: &ModelKey| {
                    let (on, retention) = policy.scale_to_zero_for(m);
                    on.then(|| (m.clone(), retention))
                })
                .collect(),
        };
        let span = tracing::info_span!("cycle", models = models.len());
        let _enter = span.enter();
        let report = (self.metrics)(plan, pods).await;
        for w in &report.warnings {
            tracing::warn!(warning = %w, "metrics read");
        }
        {
            let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
            h.cycles += 1;
            match &report.metrics {
                wva_actors::messages::Metrics::Read(_) => {
                    h.prometheus_ok = true;
                    h.prometheus_error = None;
                }
                wva_actors::messages::Metrics::Failed(e) => {
                    tracing::warn!(error = %e, "metrics read failed; the safety net decides this cycle");
                    h.prometheus_ok = false;
                    h.prometheus_error = Some(e.clone());
                }
            }
        }
        if !report.kv_sources.is_empty() {
            tracing::debug!(sources = ?report.kv_sources, "KV-cache metric names found");
        }
        match self
            .registry
            .send(Tick {
                now: wall_clock(),
                metrics: report.metrics,
            })
            .await
        {
            Ok(summary) => tracing::info!(
                models = summary.models,
                variants = summary.variants,
                changed = summary.changed,
                safety_net_models = summary.safety_net_models,
                "cycle done"
            ),
            Err(e) => tracing::error!(error = %e, "cycle: the registry is gone"),
        }
    }
}

/// The watchers and what they feed.
struct Watches {
    client: kube::Client,
    settings: Settings,
    inventory: Arc<Mutex<Inventory>>,
    registry: Addr<Registry>,
    writer: Addr<StatusWriter>,
    health: SharedHealth,
    policy: Arc<Mutex<PolicySettings>>,
    config: ConfigData,
    /// ConfigMaps seen since their watch's list started.
    config_relist: Option<BTreeSet<&'static str>>,
}

enum Watched {
    Va(watcher::Event<DeserializeGuard<VariantAutoscaling>>),
    Deployment(Box<watcher::Event<Deployment>>),
    Pod(watcher::Event<kube::core::PartialObjectMeta<Pod>>),
    ConfigMap(watcher::Event<ConfigMap>),
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl Watches {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let ns = self.settings.watch_namespace.clone();
        let ns = ns.as_deref();
        let config = watcher::Config::default();
        let vas = watcher(
            scoped::<DeserializeGuard<VariantAutoscaling>>(&self.client, ns),
            config.clone(),
        )
        .default_backoff()
        .map(|e| e.map(Watched::Va))
        .boxed();
        let deployments = watcher(scoped::<Deployment>(&self.client, ns), config.clone())
            .default_backoff()
            .map(|e| e.map(|d| Watched::Deployment(Box::new(d))))
            .boxed();
        let pods = watcher(
            scoped::<kube::core::PartialObjectMeta<Pod>>(&self.client, ns),
            config.clone(),
        )
        .default_backoff()
        .map(|e| e.map(Watched::Pod))
        .boxed();
        let config_maps = watcher(
            Api::<ConfigMap>::namespaced(self.client.clone(), &self.settings.pod_namespace),
            config,
        )
        .default_backoff()
        .map(|e| e.map(Watched::ConfigMap))
        .boxed();
        let mut all = stream::select_all([vas, deployments, pods, config_maps]);
        loop {
            let next = tokio::select! {
                next = all.next() => next,
                _ = crate::controller::stopped(&mut stop) => return,
            };
            match next {
                None => {
                    tracing::error!("the watches ended");
                    return;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watch error; retrying with backoff"),
                Some(Ok(event)) => self.handle(event).await,
            }
        }
    }

    async fn handle(&mut self, event: Watched) {
        let changes = {
            let mut inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
            let changes = match event {
                Watched::Va(e) => lifecycle(
                    &mut inv,
                    Kind::VariantAutoscaling,
                    e,
                    Inventory::va_applied,
                    |inv, va| {
                        let (ns, name) = guarded_id(&va);
                        inv.va_deleted(&ns, &name)
                    },
                ),
                Watched::Deployment(e) => lifecycle(
                    &mut inv,
                    Kind::Deployment,
                    *e,
                    |inv, d| inv.deployment_applied(&d),
                    |inv, d| {
                        let (ns, name) = inventory::id(&d.metadata);
                        inv.deployment_deleted(&ns, &name)
                    },
                ),
                Watched::Pod(e) => lifecycle(
                    &mut inv,
                    Kind::Pod,
                    e,
                    |inv, p| {
                        inv.pod_applied(&p.metadata);
                        Vec::new()
                    },
                    |inv, p| {
                        let (ns, name) = inventory::id(&p.metadata);
                        inv.pod_deleted(&ns, &name);
                        Vec::new()
                    },
                ),
                Watched::ConfigMap(e) => {
                    drop(inv);
                    return self.config_map_event(e).await;
                }
            };
            self.health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .watches_synced = inv.ready();
            changes
        };
        self.apply(changes).await;
    }

    async fn apply(&self, changes: Vec<Change>) {
        let at = wall_clock();
        for change in changes {
            match change {
                Change::Deployment {
                    namespace,
                    name,
                    state,
                } => {
                    let _ = self
                        .registry
                        .send(DeploymentEvent {
                            namespace,
                            name,
                            state,
                            at,
                        })
                        .await;
                }
                Change::Upsert(spec, va) => {
                    let _ = self
                        .writer
                        .send(WriterNote::Bind(spec.key.clone(), Some(va)))
                        .await;
                    let _ = self.registry.send(UpsertVariant { spec, at }).await;
                }
                Change::Remove(key) => {
                    let _ = self.registry.send(RemoveVariant(key.clone())).await;
                    let _ = self.writer.send(WriterNote::Bind(key, None)).await;
                }
                Change::Problem(va, problem) => {
                    let _ = self.writer.send(WriterNote::Problem(va, problem)).await;
                }
                Change::Deprecated(va) => {
                    let _ = self.writer.send(WriterNote::Deprecated(va)).await;
                }
                Change::NoTargets(va, why) => {
                    let _ = self.writer.send(WriterNote::NoTargets(va, why)).await;
                }
            }
        }
    }

    async fn config_map_event(&mut self, event: watcher::Event<ConfigMap>) {
        use watcher::Event as E;
        let mut updates: Vec<(&'static str, Option<BTreeMap<String, String>>)> = Vec::new();
        let known = |cm: &ConfigMap| {
            WATCHED_CONFIG_MAPS
                .into_iter()
                .find(|n| cm.metadata.name.as_deref() == Some(*n))
        };
        match event {
            E::Init => self.config_relist = Some(BTreeSet::new()),
            E::InitApply(cm) | E::Apply(cm) => {
                if let Some(name) = known(&cm) {
                    if let Some(seen) = &mut self.config_relist {
                        seen.insert(name);
                    }
                    updates.push((name, Some(cm.data.unwrap_or_default())));
                }
            }
            E::Delete(cm) => updates.extend(known(&cm).map(|name| (name, None))),
            E::InitDone => {
                let seen = self.config_relist.take().unwrap_or_default();
                updates.extend(
                    WATCHED_CONFIG_MAPS
                        .into_iter()
                        .filter(|n| !seen.contains(n) && self.config.contains_key(n))
                        .map(|n| (n, None)),
                );
                for missing in WATCHED_CONFIG_MAPS
                    .into_iter()
                    .filter(|n| !seen.contains(n))
                {
                    tracing::warn!(config_map = missing, namespace = %self.settings.pod_namespace, "ConfigMap not found: using the built-in values");
                }
                let changes = self
                    .inventory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .relist_done(Kind::ConfigMap);
                self.apply(changes).await;
            }
        }
        for (name, data) in updates {
            self.config_changed(name, data).await;
        }
        let ready = self
            .inventory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ready();
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .watches_synced = ready;
    }

    /// One configuration ConfigMap changed (`None`: deleted): the policy settings and the
    /// accelerator prices are rebuilt, and skipped entries reported.
    async fn config_changed(&mut self, name: &'static str, data: Option<BTreeMap<String, String>>) {
        if self.config.get(name) == data.as_ref() {
            return;
        }
        match data {
            Some(d) => self.config.insert(name, d),
            None => self.config.remove(name),
        };
        let (policy, costs, problems) = policy_settings(&self.settings, &self.config);
        tracing::info!(config_map = name, version = %policy.scaling.version, "configuration changed; applies from the next cycle");
        for p in &problems {
            tracing::warn!(problem = %p, "configuration");
        }
        let mine: Vec<String> = problems
            .into_iter()
            .filter(|p| p.starts_with(name))
            .collect();
        if !mine.is_empty() {
            let _ = self
                .writer
                .send(WriterNote::ConfigProblems {
                    namespace: self.settings.pod_namespace.clone(),
                    config_map: name.to_string(),
                    problems: mine,
                })
                .await;
        }
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy.clone();
        let _ = self.registry.send(UpdateSettings(policy)).await;
        let changes = self
            .inventory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_costs(costs);
        self.apply(changes).await;
    }
}

/// Feeds one watch event of a kind to the inventory: list start and end mark the relist, and
/// `applied`/`deleted` handle the object.
fn lifecycle<K>(
    inv: &mut Inventory,
    kind: Kind,
    event: watcher::Event<K>,
    applied: impl FnOnce(&mut Inventory, K) -> Vec<Change>,
    deleted: impl FnOnce(&mut Inventory, K) -> Vec<Change>,
) -> Vec<Change> {
    use watcher::Event as E;
    match event {
        E::Init => {
            inv.relist_started(kind);
            Vec::new()
        }
        E::InitApply(obj) | E::Apply(obj) => applied(inv, obj),
        E::InitDone => inv.relist_done(kind),
        E::Delete(obj) => deleted(inv, obj),
    }
}

fn guarded_id(va: &DeserializeGuard<VariantAutoscaling>) -> (String, String) {
    match &va.0 {
        Ok(v) => inventory::id(&v.metadata),
        Err(i) => inventory::id(&i.metadata),
    }
}
