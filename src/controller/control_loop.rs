//! The control loop: the one owner of the controller's view of the cluster. It holds the
//! inventory, the ConfigMaps' data and the policy settings, and selects on the watch streams,
//! the ticker, leadership changes, test commands and the stop token. Nothing here is shared
//! behind a lock: the loop hands the actors messages and publishes its health on a channel.
//!
//! A cycle's Prometheus read runs beside the loop (the watches keep flowing meanwhile, so a
//! deleted Deployment is still handled at once); when it completes, the loop sends the tick,
//! and the cycle's decision runs beside the loop too: a Lease lost meanwhile is passed on to the
//! publisher and the status writer at once, not after the cycle (the effects check it as well,
//! see `wva_actors::authority`). A cycle counts in `/readyz` once it is done.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use kube::runtime::watcher;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wva_actors::messages::{Metrics, ModelKey, PolicySettings};
use wva_actors::publisher::SetActive;
use wva_actors::registry::{
    CycleSummary, DeploymentEvent, RemoveVariant, SetPool, SetShards, Tick, UpdateSettings,
    UpsertVariant,
};
use wva_actors::system::ActorSystem;

use super::config_maps::ConfigData;
use super::health::{Health, HealthSender};
use super::inventory::{Change, Inventory, Kind};
use super::ops::Ops;
use super::pool::{PoolTracker, ours};
use super::status_writer::{StatusWriter, WriterNote};
use super::watches::{
    BOUND_PODS, NODES, Unlisted, WatchStream, Watched, expired, optional_kind, to_inventory,
    unlisted, unreachable,
};
use super::{MetricsSource, tasks::TaskEnded};
use crate::config::settings::Settings;
use crate::poller::{PollPlan, PollReport};
use crate::timefmt::wall_clock;

/// Requests from outside the loop (tests).
#[derive(Debug)]
pub enum Command {
    /// Run a cycle now; answered when it is decided and published.
    CycleNow(oneshot::Sender<()>),
}

/// Everything the loop owns.
pub struct ControlLoop {
    pub settings: Settings,
    pub inventory: Inventory,
    pub config: ConfigData,
    pub policy: PolicySettings,
    pub actors: ActorSystem,
    pub writer: actix::Addr<StatusWriter>,
    pub metrics: MetricsSource,
    pub health: HealthSender,
    pub leader: watch::Receiver<bool>,
    /// The shards this replica holds (all of them without sharding).
    pub shards: watch::Receiver<wva_actors::shards::ShardFilter>,
    pub ops: Ops,
    /// Optional APIs (by resource) last seen not served, so that is said once per absence.
    pub absent: std::collections::BTreeSet<&'static str>,
    /// The accelerator pool: its watches' view, its configuration, what the registry has.
    pub pool: PoolTracker,
}

impl std::fmt::Debug for ControlLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlLoop").finish_non_exhaustive()
    }
}

/// A metrics read in flight, and who waits for the cycle it starts.
struct Read {
    report: BoxFuture<'static, PollReport>,
    started: Instant,
    waiters: Vec<oneshot::Sender<()>>,
}

/// A cycle being decided, and who waits for it.
struct Deciding {
    summary: BoxFuture<'static, Result<CycleSummary, actix::MailboxError>>,
    started: Instant,
    status: &'static str,
    waiters: Vec<oneshot::Sender<()>>,
}

impl ControlLoop {
    /// Runs until `stop`; returns an error when the watches end, which never happens while the
    /// API server answers (they retry with backoff), so an end means the loop cannot see the
    /// cluster any more and the process should be restarted.
    pub async fn run(
        mut self,
        mut watches: WatchStream,
        mut commands: mpsc::Receiver<Command>,
        stop: CancellationToken,
    ) -> Result<(), TaskEnded> {
        let mut ticker = tokio::time::interval(self.settings.reconciliation_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Worded as controller-runtime words it: the install guides users follow grep for it.
        tracing::info!(controller = "variantautoscaling", "Starting workers");
        let mut read: Option<Read> = None;
        let mut deciding: Option<Deciding> = None;
        let mut queued: Vec<oneshot::Sender<()>> = Vec::new();
        let mut leader = self.leader.clone();
        let leading = *leader.borrow_and_update();
        let mut shards = self.shards.clone();
        let held = shards.borrow_and_update().clone();
        let _ = self.actors.registry.send(SetShards(held)).await;
        self.leadership(leading).await;
        let mut sharded = true;
        // Without leader election nobody sends on the channel: stop listening to it.
        let mut elected = true;
        let mut commanded = true;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                changed = leader.changed(), if elected => {
                    if changed.is_err() {
                        // No elector (always the leader), or it is gone: then the process
                        // ends through its critical set.
                        elected = false;
                        continue;
                    }
                    let leading = *leader.borrow_and_update();
                    self.leadership(leading).await;
                }
                changed = shards.changed(), if sharded => {
                    if changed.is_err() {
                        sharded = false;
                        continue;
                    }
                    let held = shards.borrow_and_update().clone();
                    let _ = self.actors.registry.send(SetShards(held)).await;
                    // Statuses of models taken over were written by another replica since:
                    // the next status of every VA is written whatever this one wrote last.
                    let leading = *self.leader.borrow();
                    let _ = self.writer.send(WriterNote::Leader(leading)).await;
                }
                report = async { (&mut read.as_mut().expect("guarded").report).await }, if read.is_some() => {
                    let Read { started, waiters, .. } = read.take().expect("guarded");
                    deciding = Some(self.decide(report, started, waiters));
                }
                summary = async { (&mut deciding.as_mut().expect("guarded").summary).await }, if deciding.is_some() => {
                    let done = deciding.take().expect("guarded");
                    self.cycle_done(summary, done)?;
                    if !queued.is_empty() {
                        read = self.start_read(std::mem::take(&mut queued));
                    }
                }
                command = commands.recv(), if commanded => match command {
                    // One cycle at a time: a request during one gets the next.
                    Some(Command::CycleNow(done)) => if read.is_some() || deciding.is_some() {
                        queued.push(done);
                    } else {
                        read = self.start_read(vec![done]);
                    },
                    None => commanded = false,
                },
                _ = ticker.tick() => {
                    if read.is_none() && deciding.is_none() {
                        read = self.start_read(Vec::new());
                    }
                }
                event = watches.next() => match event {
                    Some(Ok(event)) => {
                        self.health.send_if_modified(|h| h.api_unreachable_since.take().is_some());
                        self.handle(event).await;
                    }
                    Some(Err(e)) if expired(&e.error) => {
                        // A fresh list follows at once (see watches::resilient).
                        self.ops.watch_errors.with_label_values(&[e.resource]).inc();
                        tracing::info!(resource = e.resource, "watch expired (410); listing again");
                    }
                    Some(Err(e)) if (optional_kind(e.resource).is_some() || [NODES, BOUND_PODS].contains(&e.resource)) && unlisted(&e.error).is_some() => {
                        // A CRD that is not installed (or was removed), or a kind the RBAC does
                        // not grant: none of its objects. The watch keeps retrying and lists
                        // them once it can.
                        if self.absent.insert(e.resource) {
                            match unlisted(&e.error) {
                                Some(Unlisted::Forbidden) => tracing::warn!(resource = e.resource, "not allowed to list this resource; grant list and watch on it (see the RBAC rules in docs/running.md) to use it"),
                                _ => tracing::info!(resource = e.resource, "this API is not served (its CRD is not installed); its objects are picked up once it is"),
                            }
                        }
                        if let Some(kind) = optional_kind(e.resource) {
                            let changes = self.inventory.kind_absent(kind);
                            self.apply(changes).await;
                        } else {
                            // The pool cannot be read from the nodes: the quotas alone apply.
                            self.pool.view.unavailable();
                        }
                        self.note_synced();
                    }
                    Some(Err(e)) => {
                        self.ops.watch_errors.with_label_values(&[e.resource]).inc();
                        tracing::warn!(resource = e.resource, error = %e.error, "watch error; retrying with backoff");
                        if unreachable(&e.error) {
                            self.health.send_if_modified(|h| {
                                let first = h.api_unreachable_since.is_none();
                                if first {
                                    h.api_unreachable_since =
                                        Some(crate::timefmt::format_time(wall_clock()));
                                }
                                first
                            });
                        }
                    }
                    None => {
                        return Err(TaskEnded {
                            task: "control-loop",
                            how: "lost its watches".into(),
                        });
                    }
                },
            }
        }
        // A cycle in flight is finished before stopping: its decision is logged and published.
        if let Some(Read {
            report,
            started,
            waiters,
        }) = read
        {
            deciding = Some(self.decide(report.await, started, waiters));
        }
        if let Some(mut done) = deciding {
            let summary = (&mut done.summary).await;
            self.cycle_done(summary, done)?;
        }
        Ok(())
    }

    async fn leadership(&mut self, leading: bool) {
        let _ = self.actors.publisher.send(SetActive(leading)).await;
        let _ = self.writer.send(WriterNote::Leader(leading)).await;
        self.health.send_modify(|h| h.leader = leading);
    }

    /// Starts a cycle's metrics read, unless this instance follows or the view is not synced.
    fn start_read(&self, waiters: Vec<oneshot::Sender<()>>) -> Option<Read> {
        // Followers neither read nor decide: the leader's log is the one that counts.
        if !*self.leader.borrow() || !self.synced() {
            for w in waiters {
                let _ = w.send(());
            }
            return None;
        }
        let models = self.inventory.models();
        let plan = PollPlan {
            namespaces: self.settings.watch_namespace.iter().cloned().collect(),
            serving: self.policy.reads_serving(),
            request_counts: models
                .iter()
                .filter_map(|m: &ModelKey| {
                    let (on, retention) = self.policy.scale_to_zero_for(m);
                    on.then(|| (m.clone(), retention))
                })
                .collect(),
        };
        let span = tracing::info_span!("metrics_read", models = models.len());
        Some(Read {
            report: Box::pin((self.metrics)(plan, self.inventory.pod_index()).instrument(span)),
            started: Instant::now(),
            waiters,
        })
    }

    /// Starts deciding every model on a finished read, and publishes the read's health.
    fn decide(
        &mut self,
        report: PollReport,
        started: Instant,
        waiters: Vec<oneshot::Sender<()>>,
    ) -> Deciding {
        self.ops
            .read_seconds
            .observe(started.elapsed().as_secs_f64());
        for w in &report.warnings {
            tracing::warn!(warning = %w, "metrics read");
        }
        for failure in &report.failures {
            self.ops
                .read_errors
                .with_label_values(&[failure.query_type, failure.reason])
                .inc();
        }
        let status = match &report.metrics {
            Metrics::Read(_) => "success",
            Metrics::Failed(e) => {
                tracing::warn!(error = %e, "metrics read failed; the safety net decides this cycle");
                "error"
            }
        };
        self.health.send_modify(|h: &mut Health| {
            h.prometheus_ok = status == "success";
            h.prometheus_error = match &report.metrics {
                Metrics::Failed(e) => Some(e.clone()),
                Metrics::Read(_) => None,
            };
        });
        if !report.kv_sources.is_empty() {
            tracing::debug!(sources = ?report.kv_sources, "KV-cache metric names found");
        }
        // The pool as it stands now (pods started or gone since), in before the tick.
        self.refresh_pool();
        let tick = Tick {
            now: wall_clock(),
            metrics: report.metrics,
        };
        let span = tracing::info_span!("cycle", status);
        Deciding {
            summary: Box::pin(self.actors.registry.send(tick).instrument(span)),
            started,
            status,
            waiters,
        }
    }

    /// Counts a finished cycle (in `/readyz` too) and answers who waited for it; the registry
    /// gone ends the loop, and with it the process.
    fn cycle_done(
        &self,
        summary: Result<CycleSummary, actix::MailboxError>,
        done: Deciding,
    ) -> Result<(), TaskEnded> {
        let Deciding {
            started,
            status,
            waiters,
            ..
        } = done;
        let summary = summary.map_err(|e| TaskEnded {
            task: "control-loop",
            how: format!("lost the registry ({e})"),
        })?;
        self.health.send_modify(|h| h.cycles += 1);
        self.ops
            .cycle_seconds
            .with_label_values(&[status])
            .observe(started.elapsed().as_secs_f64());
        self.ops.models.set(summary.models as i64);
        self.ops.variants.set(summary.variants as i64);
        tracing::info!(
            models = summary.models,
            variants = summary.variants,
            changed = summary.changed,
            safety_net_models = summary.safety_net_models,
            "cycle done"
        );
        for w in waiters {
            let _ = w.send(());
        }
        Ok(())
    }

    async fn handle(&mut self, event: Watched) {
        if self.absent.remove(event.resource()) {
            tracing::info!(
                resource = event.resource(),
                "this API is served now: watching it"
            );
        }
        let changes = match event {
            Watched::ConfigMap(e) => self.config_map_event(e).await,
            Watched::Node(e) => {
                // A Node gone (or cordoned) shrinks the pool for the very next decision.
                self.pool.view.node_event(*e);
                self.refresh_pool();
                Vec::new()
            }
            Watched::BoundPod(e) => {
                self.pool.view.pod_event(*e);
                Vec::new()
            }
            other => to_inventory(&mut self.inventory, other),
        };
        self.apply(changes).await;
        self.note_synced();
    }

    /// Whether every watch has listed: the inventory's, and the pool's when it is read from the
    /// nodes (a first decision on a pool not yet known could publish what cannot be scheduled).
    fn synced(&self) -> bool {
        self.inventory.ready() && (!self.settings.accelerator_pool || self.pool.view.settled())
    }

    /// Tells the registry the accelerator pool when it changed.
    fn refresh_pool(&mut self) {
        let discover = self.settings.accelerator_pool;
        // Which pods are this replica's matters only to a pool read from the nodes.
        let pod_models = if discover {
            self.inventory.pod_models()
        } else {
            Default::default()
        };
        let shards = self.shards.borrow().clone();
        let ours = ours(&pod_models, |m| shards.holds(m));
        if let Some(pool) = self.pool.changed(self.inventory.costs(), &ours, discover) {
            match &pool {
                Some(p) => {
                    tracing::info!(pool = ?p.gpus, quotas = ?p.namespace_gpus, "accelerator pool changed")
                }
                None => tracing::info!("accelerators are not limited any more"),
            }
            self.actors.registry.do_send(SetPool(pool));
        }
    }

    /// Publishes whether every watch has listed.
    fn note_synced(&self) {
        let synced = self.synced();
        self.health.send_if_modified(|h| {
            let changed = h.watches_synced != synced;
            h.watches_synced = synced;
            changed
        });
    }

    /// Hands the inventory's changes to the actors and the status writer, in order.
    async fn apply(&self, changes: Vec<Change>) {
        let at = wall_clock();
        let registry = &self.actors.registry;
        for change in changes {
            match change {
                Change::Deployment {
                    namespace,
                    name,
                    state,
                } => {
                    let _ = registry
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
                    let _ = registry.send(UpsertVariant { spec, at }).await;
                }
                Change::Remove(key) => {
                    let _ = registry.send(RemoveVariant(key.clone())).await;
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

    /// A ConfigMap watch event: the policy settings and prices are rebuilt when a watched
    /// ConfigMap changed, and skipped entries reported on it.
    async fn config_map_event(&mut self, event: watcher::Event<ConfigMap>) -> Vec<Change> {
        let outcome = self.config.apply(event);
        for missing in &outcome.missing {
            if *missing == crate::config::POOL_CONFIG_MAP {
                // Optional: without it the pool, if watched, is read with the defaults.
                tracing::debug!(config_map = missing, "ConfigMap not found: no quotas");
                continue;
            }
            tracing::warn!(config_map = missing, namespace = %self.settings.pod_namespace, "ConfigMap not found: using the built-in values");
        }
        let mut changes = if outcome.relist_done {
            self.inventory.relist_done(Kind::ConfigMap)
        } else {
            Vec::new()
        };
        if outcome.changed.is_empty() {
            return changes;
        }
        let built = self.config.policy(&self.settings);
        for name in &outcome.changed {
            tracing::info!(config_map = name, version = %built.policy.scaling.version, "configuration changed; applies from the next cycle");
            let mine: Vec<String> = built
                .problems
                .iter()
                .filter(|p| p.starts_with(name))
                .cloned()
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
        }
        for p in &built.problems {
            tracing::warn!(problem = %p, "configuration");
        }
        self.policy = built.policy.clone();
        let _ = self
            .actors
            .registry
            .send(UpdateSettings(built.policy))
            .await;
        changes.extend(self.inventory.set_costs(built.costs));
        changes.extend(self.inventory.set_gpu_resource(&built.pool.resource_name));
        self.pool.config = built.pool;
        self.refresh_pool();
        changes
    }
}

use k8s_openapi::api::core::v1::ConfigMap;

/// How long the loop waits, at most, for a cycle requested by a test.
pub const CYCLE_NOW_LIMIT: Duration = Duration::from_secs(60);
