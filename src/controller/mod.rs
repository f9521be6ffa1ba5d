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

use std::collections::BTreeMap;
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
use wva_actors::log_actor::{Flush, LogActor};
use wva_actors::messages::{ModelKey, PolicySettings};
use wva_actors::policy::OperatingMode;
use wva_actors::publisher::{Publisher, PublisherConfig, SetActive};
use wva_actors::registry::{
    DeploymentEvent, Registry, RemoveVariant, Tick, UpdateSettings, UpsertVariant,
};
use wva_actors::supervisor::Ports;
use wva_storage::{DecisionLog, MemoryLog, Retention, SledLog};

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
    let now = wall_clock().millis().max(0) as u64 / 1000;
    match SledLog::open(dir, Retention::default(), now) {
        Ok((log, report)) => {
            if let Some(aside) = report.moved_aside {
                tracing::error!(
                    data_dir = %dir.display(),
                    moved_to = %aside.display(),
                    reason = report.reason.unwrap_or_default(),
                    "the decision log was unusable and was moved aside; the safety net falls back to the VA statuses"
                );
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

    // Configuration first, so the first cycle already uses it.
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.pod_namespace);
    let mut config = ConfigData::new();
    for name in WATCHED_CONFIG_MAPS {
        match cm_api.get_opt(name).await {
            Ok(Some(cm)) => {
                config.insert(name, cm.data.unwrap_or_default());
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(config_map = name, error = %e, "cannot read a ConfigMap; using built-in values until the watch delivers it")
            }
        }
    }
    let (policy, costs, problems) = policy_settings(&settings, &config);
    for p in &problems {
        tracing::warn!(problem = %p, "configuration");
    }
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
    let writer = StatusWriter::start(client.clone(), reporter.clone(), *leader_rx.borrow());
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
        reporter,
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
    reporter: Reporter,
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
        use watcher::Event as E;
        let changes = {
            let mut inv = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
            let changes = match event {
                Watched::Va(e) => match e {
                    E::Init => {
                        inv.relist_started(Kind::VariantAutoscaling);
                        Vec::new()
                    }
                    E::InitApply(va) | E::Apply(va) => inv.va_applied(va),
                    E::InitDone => inv.relist_done(Kind::VariantAutoscaling),
                    E::Delete(va) => {
                        let meta = match &va.0 {
                            Ok(v) => &v.metadata,
                            Err(i) => &i.metadata,
                        };
                        inv.va_deleted(
                            meta.namespace.as_deref().unwrap_or_default(),
                            meta.name.as_deref().unwrap_or_default(),
                        )
                    }
                },
                Watched::Deployment(e) => match *e {
                    E::Init => {
                        inv.relist_started(Kind::Deployment);
                        Vec::new()
                    }
                    E::InitApply(d) | E::Apply(d) => inv.deployment_applied(&d),
                    E::InitDone => inv.relist_done(Kind::Deployment),
                    E::Delete(d) => inv.deployment_deleted(
                        d.metadata.namespace.as_deref().unwrap_or_default(),
                        d.metadata.name.as_deref().unwrap_or_default(),
                    ),
                },
                Watched::Pod(e) => match e {
                    E::Init => {
                        inv.relist_started(Kind::Pod);
                        Vec::new()
                    }
                    E::InitApply(p) | E::Apply(p) => {
                        inv.pod_applied(&p.metadata);
                        Vec::new()
                    }
                    E::InitDone => inv.relist_done(Kind::Pod),
                    E::Delete(p) => {
                        inv.pod_deleted(
                            p.metadata.namespace.as_deref().unwrap_or_default(),
                            p.metadata.name.as_deref().unwrap_or_default(),
                        );
                        Vec::new()
                    }
                },
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
        let (name, data) = match event {
            E::Init | E::InitDone => return,
            E::InitApply(cm) | E::Apply(cm) => (
                cm.metadata.name.clone().unwrap_or_default(),
                Some(cm.data.unwrap_or_default()),
            ),
            E::Delete(cm) => (cm.metadata.name.clone().unwrap_or_default(), None),
        };
        let Some(known) = WATCHED_CONFIG_MAPS.iter().find(|n| **n == name) else {
            return;
        };
        if self.config.get(known) == data.as_ref() {
            return;
        }
        match data {
            Some(d) => self.config.insert(known, d),
            None => self.config.remove(known),
        };
        let (policy, costs, problems) = policy_settings(&self.settings, &self.config);
        tracing::info!(config_map = name, version = %policy.scaling.version, "configuration changed; applies from the next cycle");
        for p in &problems {
            tracing::warn!(problem = %p, "configuration");
        }
        self.config_events(&name, &problems).await;
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy.clone();
        let _ = self.registry.send(UpdateSettings(policy)).await;
        let changes = self
            .inventory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_costs(costs);
        self.apply(changes).await;
    }

    /// Warning Events on a ConfigMap for its invalid entries.
    async fn config_events(&self, name: &str, problems: &[String]) {
        let mine: Vec<&String> = problems.iter().filter(|p| p.starts_with(name)).collect();
        let leading = self.health.lock().unwrap_or_else(|p| p.into_inner()).leader;
        if mine.is_empty() || !leading {
            return;
        }
        let recorder =
            kube::runtime::events::Recorder::new(self.client.clone(), self.reporter.clone());
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(name.to_string()),
            namespace: Some(self.settings.pod_namespace.clone()),
            ..Default::default()
        };
        for p in mine {
            let event = kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Warning,
                reason: "InvalidConfiguration".into(),
                note: Some(p.chars().take(1000).collect()),
                action: "LoadConfiguration".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "cannot publish a ConfigMap Event");
            }
        }
    }
}
