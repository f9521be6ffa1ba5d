//! The registry: routes events by model to one supervisor per model, starting and stopping
//! supervisors as variants come and go, and drives the cycle. Every effect the supervisors
//! return is applied here, through [`Effects::apply`]: the one way out of a decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use wva_storage::LastGood;

use crate::effects::{EarlyAppends, Effects, Ports};
use crate::lifeline::PartGuard;
use crate::log_actor::EnforceRetention;
use crate::messages::{
    DeploymentState, Metrics, ModelKey, PolicySettings, StatusUpdate, Timestamp, VariantKey,
    VariantSpec,
};
use crate::policy::scarcity::{Claim, Pool};
use crate::pool::{Fitted, PendingClaims};
use crate::publisher::Unpublish;
use crate::shards::ShardFilter;
use crate::supervisor::{
    AddVariant, Crash, DeploymentUpdate, DropVariant, Granted, Hang, ModelCycle, ModelOutcome,
    ModelSupervisor, Restarts, Resume, RunCycle, SetSettings, UpdateVariant,
};

/// Records of a cycle sent to the log ahead of the rest, at a time, once twice as many are in.
const EARLY_APPEND_RECORDS: usize = 1024;

/// One model's cycle, at most: past it the model's supervisor is taken as stuck, its cycle is
/// lost (its counts hold) and a fresh one replaces it, so one model cannot hold up the rest.
/// A model decides in milliseconds; this is for a defect, not for load.
pub const MODEL_CYCLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How a model's supervisor failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// It panicked (its mailbox closed).
    Panicked,
    /// It did not answer within [`MODEL_CYCLE_TIMEOUT`].
    TimedOut,
}

impl Fault {
    /// The `fault` label of `wva_model_faults_total`.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Panicked => "panicked",
            Fault::TimedOut => "timed_out",
        }
    }
}

/// The root actor.
#[derive(Debug)]
pub struct Registry {
    supervisors: HashMap<ModelKey, Addr<ModelSupervisor>>,
    /// Each variant's spec (its model and Deployment among it), to route events, notice moves,
    /// and hand a fresh supervisor its variants when one fails.
    variants: HashMap<VariantKey, Arc<VariantSpec>>,
    /// Latest known state of every Deployment seen, so a VA created after its Deployment starts
    /// with the replicas at once.
    deployments: HashMap<(String, String), DeploymentState>,
    /// Last good desired counts recovered from the log at start, handed out as variants appear.
    recovered: HashMap<VariantKey, u32>,
    settings: Arc<PolicySettings>,
    ports: Ports,
    /// The models this replica decides (all, unless replicas share them by shard).
    filter: ShardFilter,
    /// Threads the model supervisors (and their variant actors) run on, a model always on the
    /// same one; none: the registry's own.
    workers: Vec<Arbiter>,
    /// Says the registry is gone when it is dropped (see [`crate::lifeline`]).
    alive: Option<PartGuard>,
    /// How long a cycle waits for its models ([`MODEL_CYCLE_TIMEOUT`]; shorter in tests).
    cycle_timeout: std::time::Duration,
    /// The accelerators the managed variants may hold, when limited.
    pool: Option<Pool>,
    /// The last fit's claims (each wanting what it was granted), while a pool limits anything:
    /// decisions made by events before the next cycle are fitted against them.
    settled: Option<PendingClaims>,
}

impl Registry {
    /// A registry whose supervisors run on `model_threads` threads of their own (on the
    /// caller's when 1 or 0): a cycle decides models in parallel on as many cores.
    pub fn new(
        ports: Ports,
        settings: PolicySettings,
        recovered: BTreeMap<VariantKey, LastGood>,
        model_threads: usize,
    ) -> Self {
        let workers = if model_threads > 1 {
            (0..model_threads).map(|_| Arbiter::new()).collect()
        } else {
            Vec::new()
        };
        Self {
            supervisors: HashMap::new(),
            variants: HashMap::new(),
            deployments: HashMap::new(),
            recovered: recovered.into_iter().map(|(k, v)| (k, v.desired)).collect(),
            settings: Arc::new(settings),
            ports,
            filter: ShardFilter::all(),
            workers,
            alive: None,
            cycle_timeout: MODEL_CYCLE_TIMEOUT,
            pool: None,
            settled: None,
        }
    }

    /// The latest state of the Deployment a variant scales.
    fn deployment_of(&self, spec: &VariantSpec) -> Option<DeploymentState> {
        self.deployments
            .get(&(spec.key.namespace.clone(), spec.deployment.clone()))
            .copied()
    }

    /// The last fit's claims with each variant's replicas as they stand now, when a pool limits
    /// anything.
    fn settled_now(&self) -> Option<PendingClaims> {
        let mut settled = self.settled.clone()?;
        for claim in &mut settled.claims {
            if let Some(d) = self
                .variants
                .get(&claim.variant)
                .and_then(|spec| self.deployment_of(spec))
            {
                claim.current = d.replicas;
            }
        }
        Some(settled)
    }

    /// The claims of this cycle's models on the pool, when one limits anything.
    fn pending_claims(&self) -> Option<PendingClaims> {
        let pool = self.pool.as_ref().filter(|p| p.is_limited())?;
        let mut claims: Vec<Claim> = self
            .variants
            .values()
            .filter(|s| self.filter.holds(&s.model))
            .map(|s| {
                let running = self.deployment_of(s).map_or(0, |d| d.replicas);
                Claim {
                    variant: s.key.clone(),
                    model: s.model.clone(),
                    accelerator: s.accelerator.clone(),
                    gpus_per_replica: s.gpus_per_replica,
                    priority: self.settings.priority_of(&s.model.model_id),
                    wanted: running,
                    floor: s.bounds.min.unwrap_or(0),
                    current: running,
                }
            })
            .filter(|c| pool.limits(c))
            .collect();
        claims.sort_by(|a, b| a.variant.cmp(&b.variant));
        Some(PendingClaims {
            pool: pool.clone(),
            claims,
        })
    }

    /// The registry with the guard that reports its end.
    pub fn guarded(mut self, guard: PartGuard) -> Self {
        self.alive = Some(guard);
        self
    }

    fn supervisor(&mut self, model: &ModelKey) -> Addr<ModelSupervisor> {
        if let Some(sup) = self.supervisors.get(model) {
            return sup.clone();
        }
        let sup = ModelSupervisor::new(
            model.clone(),
            Arc::clone(&self.settings),
            self.ports.clone(),
        );
        let addr = if self.workers.is_empty() {
            sup.start()
        } else {
            let worker = wva_storage::keys::model_hash(model) % self.workers.len() as u64;
            ModelSupervisor::start_in_arbiter(&self.workers[worker as usize].handle(), |_| sup)
        };
        self.supervisors.insert(model.clone(), addr.clone());
        addr
    }

    /// Removes a variant from its supervisor; stops the supervisor when it was the last.
    fn detach(&mut self, key: &VariantKey) -> Option<Request<ModelSupervisor, DropVariant>> {
        let model = self.variants.remove(key)?.model.clone();
        let sup = self.supervisors.get(&model)?.clone();
        let request = sup.send(DropVariant(key.clone()));
        let still_used = self.variants.values().any(|s| s.model == model);
        if !still_used {
            // The supervisor stops once its last address is gone and its mailbox drained.
            self.supervisors.remove(&model);
        }
        Some(request)
    }

    /// Replaces a model's failed supervisor with a fresh one that gets every variant of the
    /// model, its Deployment's latest state, and its last good count and learned lines from the
    /// decision log (looked up before it decides anything). Counts the fault and returns a
    /// Warning for each of the model's variants. Until the fresh one decides, the published
    /// counts stay where they were: the last good.
    fn revive(&mut self, model: &ModelKey, fault: Fault, at: Timestamp) -> Effects {
        self.supervisors.remove(model);
        self.ports
            .telemetry
            .model_faults
            .with_label_values(&[fault.label()])
            .inc();
        tracing::error!(
            model = %model.model_id,
            namespace = %model.namespace,
            fault = fault.label(),
            "a model's supervisor failed: its cycle is lost, its counts hold at last good, and a fresh supervisor restored from the decision log takes over"
        );
        let mut specs: Vec<Arc<VariantSpec>> = self
            .variants
            .values()
            .filter(|s| s.model == *model)
            .cloned()
            .collect();
        specs.sort_by(|a, b| a.key.cmp(&b.key));
        let sup = self.supervisor(model);
        let mut effects = Effects::default();
        let how = match fault {
            Fault::Panicked => "its supervisor panicked",
            Fault::TimedOut => "it did not finish in time",
        };
        let message = format!(
            "deciding this model failed ({how}); the desired counts hold at their last good values and a fresh supervisor, restored from the decision log, decides from the next cycle"
        );
        // Only the holder of the model's shard tells its VAs.
        let tell = self.filter.holds(model);
        for spec in specs {
            if tell {
                effects.statuses.push(StatusUpdate::Faulted {
                    variant: spec.key.clone(),
                    at,
                    message: message.clone(),
                });
            }
            let deployment = self.deployment_of(&spec);
            // Queued in order before anything else the registry sends it.
            sup.do_send(AddVariant {
                spec,
                deployment,
                last_good: None,
                recall: true,
                at,
            });
        }
        effects
    }

    /// Revives every supervisor found gone since the last look (a panic in any handler).
    fn revive_the_dead(&mut self, at: Timestamp) -> Effects {
        let mut dead: Vec<ModelKey> = self
            .supervisors
            .iter()
            .filter(|(_, s)| !s.connected())
            .map(|(m, _)| m.clone())
            .collect();
        dead.sort();
        let mut effects = Effects::default();
        for model in dead {
            effects.merge(self.revive(&model, Fault::Panicked, at));
        }
        effects
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The supervisors' threads go with the registry that started them.
        for worker in &self.workers {
            worker.stop();
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// A VA (or discovered Deployment) appeared or changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpsertVariant {
    pub spec: VariantSpec,
    pub at: Timestamp,
}

impl Handler<UpsertVariant> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: UpsertVariant, ctx: &mut Context<Self>) -> Self::Result {
        // One copy per variant, shared by the registry, its supervisor and its actor.
        let spec = Arc::new(msg.spec);
        let key = spec.key.clone();
        let same_place = self
            .variants
            .get(&key)
            .is_some_and(|s| s.model == spec.model && s.deployment == spec.deployment);
        if same_place {
            self.variants.insert(key, Arc::clone(&spec));
            let sup = self.supervisor(&spec.model);
            return Box::pin(async move {
                let _ = sup.send(UpdateVariant(spec)).await;
            });
        }
        // New, or moved to another model or Deployment: (re)attach.
        let detached = self.detach(&key);
        let deployment = self.deployment_of(&spec);
        let last_good = self.recovered.remove(&key);
        self.variants.insert(key, Arc::clone(&spec));
        let sup = self.supervisor(&spec.model);
        let (at, ports) = (msg.at, self.ports.clone());
        let ours = self.filter.holds(&spec.model);
        let settled = self.settled_now();
        let registry = ctx.address();
        Box::pin(async move {
            let mut effects = Effects::default();
            if let Some(d) = detached {
                effects.merge(d.await.unwrap_or_default());
            }
            let added = sup
                .send(AddVariant {
                    spec,
                    deployment,
                    last_good,
                    recall: false,
                    at,
                })
                .await
                .unwrap_or_default();
            if ours {
                effects.merge(added);
            }
            fit_between_cycles(settled, &mut effects, &ports, &registry, at);
            effects.apply(&ports).await;
        })
    }
}

/// A VA was deleted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RemoveVariant(pub VariantKey);

impl Handler<RemoveVariant> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: RemoveVariant, _: &mut Context<Self>) -> Self::Result {
        let detached = self.detach(&msg.0);
        let ports = self.ports.clone();
        Box::pin(async move {
            if let Some(d) = detached {
                d.await.unwrap_or_default().apply(&ports).await;
            }
        })
    }
}

/// A Deployment was created, changed or deleted (`state: None`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DeploymentEvent {
    pub namespace: String,
    pub name: String,
    pub state: Option<DeploymentState>,
    pub at: Timestamp,
}

impl Handler<DeploymentEvent> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: DeploymentEvent, ctx: &mut Context<Self>) -> Self::Result {
        let id = (msg.namespace.clone(), msg.name.clone());
        match msg.state {
            Some(state) => self.deployments.insert(id, state),
            None => self.deployments.remove(&id),
        };
        let mut models: Vec<ModelKey> = self
            .variants
            .iter()
            .filter(|(k, s)| k.namespace == msg.namespace && s.deployment == msg.name)
            .map(|(_, s)| s.model.clone())
            .collect();
        models.sort();
        models.dedup();
        // Every supervisor learns the Deployment's state; only the models this replica decides
        // act on it.
        let sups: Vec<_> = models
            .iter()
            .filter_map(|m| Some((self.supervisors.get(m)?.clone(), self.filter.holds(m))))
            .collect();
        let ports = self.ports.clone();
        // Only a model this replica decides publishes anything to fit: the copy of the last
        // fit's claims is skipped for the many Deployments no such model scales.
        let settled = if sups.iter().any(|(_, ours)| *ours) {
            self.settled_now()
        } else {
            None
        };
        let registry = ctx.address();
        let at = msg.at;
        Box::pin(async move {
            let mut effects = Effects::default();
            for (sup, ours) in sups {
                if let Ok(cycle) = sup
                    .send(DeploymentUpdate {
                        deployment: msg.name.clone(),
                        state: msg.state,
                        at: msg.at,
                    })
                    .await
                {
                    if ours {
                        effects.merge(cycle.effects);
                    } else {
                        effects.retired.extend(cycle.effects.retired);
                    }
                }
            }
            fit_between_cycles(settled, &mut effects, &ports, &registry, at);
            effects.apply(&ports).await;
        })
    }
}

/// The configuration changed; applies from the next cycle.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateSettings(pub PolicySettings);

impl Handler<UpdateSettings> for Registry {
    type Result = ();
    fn handle(&mut self, msg: UpdateSettings, _: &mut Context<Self>) {
        self.settings = Arc::new(msg.0);
        for sup in self.supervisors.values() {
            sup.do_send(SetSettings(Arc::clone(&self.settings)));
        }
    }
}

/// One decision cycle at `now`, on one batched metrics read.
#[derive(Debug, Message)]
#[rtype(result = "CycleSummary")]
pub struct Tick {
    pub now: Timestamp,
    pub metrics: Metrics,
}

/// What a cycle did, over all models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleSummary {
    pub models: usize,
    pub variants: usize,
    pub safety_net_models: usize,
    pub changed: usize,
    pub restarted: usize,
}

impl Handler<Tick> for Registry {
    type Result = ResponseFuture<CycleSummary>;

    fn handle(&mut self, msg: Tick, ctx: &mut Context<Self>) -> Self::Result {
        // A supervisor that panicked since the last cycle (in any handler) is replaced first.
        let effects = self.revive_the_dead(msg.now);
        let (models, runs): (Vec<_>, Vec<_>) = self
            .supervisors
            .iter()
            .filter(|(model, _)| self.filter.holds(model))
            .enumerate()
            .map(|(i, (model, s))| {
                let run = s.send(RunCycle {
                    at: msg.now,
                    metrics: msg.metrics.clone(),
                });
                ((model.clone(), s.clone()), async move { (i, run.await) })
            })
            .unzip();
        let mut gathering = Gathering {
            outcomes: Vec::with_capacity(models.len()),
            pending: self.pending_claims(),
            effects,
            early: EarlyAppends::default(),
            ports: self.ports.clone(),
            registry: ctx.address(),
            at: msg.now,
        };
        let timeout = self.cycle_timeout;
        Box::pin(async move {
            // Every model decides at once; results are taken in a fixed order (the records'
            // sequence follows it), each as soon as it and those before it are in. One deadline
            // for all: a model not in by then loses the cycle, and no other model anything.
            let mut results: Vec<Option<Result<ModelCycle, MailboxError>>> =
                std::iter::repeat_with(|| None).take(models.len()).collect();
            let mut running: FuturesUnordered<_> = runs.into_iter().collect();
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut next = 0;
            loop {
                tokio::select! {
                    done = running.next() => match done {
                        Some((i, result)) => results[i] = Some(result),
                        None => break,
                    },
                    () = &mut deadline => break,
                }
                while let Some(result) = results.get_mut(next).and_then(Option::take) {
                    gathering.take(&models[next], Some(result));
                    next += 1;
                }
            }
            for (i, model) in models.iter().enumerate().skip(next) {
                gathering.take(model, results[i].take());
            }
            gathering.finish().await
        })
    }
}

/// A cycle's results as they come in, in the models' order.
struct Gathering {
    outcomes: Vec<ModelOutcome>,
    /// The cycle's claims on a limited accelerator pool.
    pending: Option<PendingClaims>,
    effects: Effects,
    early: EarlyAppends,
    ports: Ports,
    registry: Addr<Registry>,
    at: Timestamp,
}

impl Gathering {
    /// One model's result: its cycle, or `None` when it did not answer in time.
    fn take(
        &mut self,
        (model, sup): &(ModelKey, Addr<ModelSupervisor>),
        result: Option<Result<ModelCycle, MailboxError>>,
    ) {
        let fault = match result {
            Some(Ok(cycle)) => {
                self.outcomes.push(cycle.outcome);
                self.effects.merge_for(model.clone(), cycle.effects);
                // The log's thread encodes records while later models are still deciding; the
                // last part always goes with the cycle's own append and flush.
                if self.effects.records.len() >= 2 * EARLY_APPEND_RECORDS {
                    let ahead = self.effects.records.drain(..EARLY_APPEND_RECORDS).collect();
                    self.early.send(&self.ports, ahead);
                }
                return;
            }
            Some(Err(_)) => Fault::Panicked,
            None => Fault::TimedOut,
        };
        // The model loses this cycle; a fresh supervisor takes it over.
        self.registry.do_send(Revive {
            model: model.clone(),
            failed: sup.clone(),
            fault,
            at: self.at,
        });
    }

    /// Logs, publishes and writes what the cycle decided, and sums it up.
    async fn finish(self) -> CycleSummary {
        let Self {
            outcomes,
            pending,
            mut effects,
            early,
            ports,
            at,
            registry,
        } = self;
        // Every model has decided: what they want is fitted into the pool before it goes out,
        // and the registry learns what was cut before its next message.
        if let Some(pending) = pending {
            registry.do_send(PoolFitted(pending.fit(&mut effects, &ports.telemetry, at)));
        }
        // Every model's record is appended and flushed before anything is published: a
        // decision that acted is always in the log.
        early.settle(&ports).await;
        effects.apply(&ports).await;
        // Housekeeping (sealing a journal slot, retention) runs on the log's thread after the
        // cycle, off its path: nothing published waits for it, and the log's next append is
        // queued behind it.
        let retention = ports.log.send(EnforceRetention(at));
        actix::spawn(async move {
            match tokio::time::timeout(crate::effects::LOG_WRITE_TIMEOUT, retention).await {
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "decision log: retention failed")
                }
                Err(_) => {
                    tracing::warn!("decision log: retention timed out; the next cycle retries")
                }
                _ => {}
            }
        });
        CycleSummary {
            models: outcomes.len(),
            variants: outcomes.iter().map(|o| o.decided).sum(),
            safety_net_models: outcomes.iter().filter(|o| o.safety_net).count(),
            changed: outcomes.iter().map(|o| o.changed).sum(),
            restarted: outcomes.iter().map(|o| o.restarted).sum(),
        }
    }
}

/// Fits a decision made by an event between cycles (a Deployment created or changed, a VA
/// added) into the pool, the other models keeping what the last fit gave them: logged and told
/// like a cycle's fit, so replay and the safety net see what was published.
fn fit_between_cycles(
    settled: Option<PendingClaims>,
    effects: &mut Effects,
    ports: &Ports,
    registry: &Addr<Registry>,
    at: Timestamp,
) {
    if let Some(settled) = settled
        && !effects.published.is_empty()
    {
        registry.do_send(PoolFitted(settled.fit(effects, &ports.telemetry, at)));
    }
}

/// The accelerators the managed variants may hold changed (`None`: not limited). Applies from
/// the next cycle.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetPool(pub Option<Pool>);

impl Handler<SetPool> for Registry {
    type Result = ();
    fn handle(&mut self, msg: SetPool, _: &mut Context<Self>) {
        if msg.0.as_ref().is_none_or(|p| !p.is_limited()) {
            self.settled = None;
            // Nothing is limited: no pool series stand for one.
            let telemetry = &self.ports.telemetry;
            telemetry.pool_gpus.reset();
            telemetry.pool_granted_gpus.reset();
            telemetry.scarcity_cut.reset();
        }
        self.pool = msg.0;
    }
}

/// What a cycle's fit into the pool cut: kept for the decisions events make before the next
/// cycle, and told to the models' supervisors so they go on from what was published.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct PoolFitted(Fitted);

impl Handler<PoolFitted> for Registry {
    type Result = ();
    fn handle(&mut self, msg: PoolFitted, _: &mut Context<Self>) {
        let Fitted { granted, settled } = msg.0;
        // A pool set back to unlimited meanwhile stays so.
        if self.pool.as_ref().is_some_and(Pool::is_limited) {
            self.settled = settled;
        }
        for (model, counts) in granted {
            if let Some(sup) = self.supervisors.get(&model) {
                sup.do_send(Granted(counts));
            }
        }
    }
}

/// A model's supervisor failed during a cycle: replace it (unless it was replaced already).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Revive {
    model: ModelKey,
    failed: Addr<ModelSupervisor>,
    fault: Fault,
    at: Timestamp,
}

impl Handler<Revive> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Revive, _: &mut Context<Self>) -> Self::Result {
        // Only the supervisor that failed is replaced; a model since removed, or already given
        // a fresh supervisor, is left as it is.
        let effects = if self.supervisors.get(&msg.model) == Some(&msg.failed) {
            self.revive(&msg.model, msg.fault, msg.at)
        } else {
            Effects::default()
        };
        let ports = self.ports.clone();
        Box::pin(async move { effects.apply(&ports).await })
    }
}

/// Test hook: makes one model's supervisor panic, as a defect in the policy would, or, with no
/// model, the registry itself.
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashForTest(pub Option<ModelKey>);

impl Handler<CrashForTest> for Registry {
    type Result = ();
    fn handle(&mut self, msg: CrashForTest, _: &mut Context<Self>) {
        match msg.0 {
            Some(model) => {
                if let Some(sup) = self.supervisors.get(&model) {
                    sup.do_send(Crash);
                }
            }
            None => panic!("test hook: the registry was asked to crash"),
        }
    }
}

/// Test hook: makes one model's supervisor stop answering, as a defect that never returns
/// would, and shortens the cycle's deadline to `cycle_timeout`.
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct HangForTest {
    pub model: ModelKey,
    pub cycle_timeout: std::time::Duration,
}

impl Handler<HangForTest> for Registry {
    type Result = ();
    fn handle(&mut self, msg: HangForTest, _: &mut Context<Self>) {
        self.cycle_timeout = msg.cycle_timeout;
        if let Some(sup) = self.supervisors.get(&msg.model) {
            sup.do_send(Hang);
        }
    }
}

/// Counts, for health reporting and tests.
#[derive(Debug, Message)]
#[rtype(result = "RegistryCounts")]
pub struct Counts;

/// How many models and variants are managed, and how many variant restarts happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryCounts {
    pub models: usize,
    pub variants: usize,
    pub restarts: u64,
}

impl Handler<Counts> for Registry {
    type Result = ResponseFuture<RegistryCounts>;
    fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> Self::Result {
        let sups: Vec<_> = self.supervisors.values().cloned().collect();
        let (models, variants) = (self.supervisors.len(), self.variants.len());
        Box::pin(async move {
            let restarts = join_all(sups.iter().map(|s| s.send(Restarts)))
                .await
                .into_iter()
                .flatten()
                .sum();
            RegistryCounts {
                models,
                variants,
                restarts,
            }
        })
    }
}

/// The shards this replica holds changed. Models it gave up stop being decided here and their
/// series go at once (the new holder publishes them); models it took over start afresh from
/// their VA status, which their previous holder kept up to date, not from what this replica
/// decided before it gave them up.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetShards(pub ShardFilter);

impl Handler<SetShards> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: SetShards, _: &mut Context<Self>) -> Self::Result {
        let before = std::mem::replace(&mut self.filter, msg.0);
        let lost: Vec<VariantKey> = self
            .variants
            .iter()
            .filter(|(_, s)| before.holds(&s.model) && !self.filter.holds(&s.model))
            .map(|(k, _)| k.clone())
            .collect();
        let gained: Vec<Addr<ModelSupervisor>> = self
            .supervisors
            .iter()
            .filter(|(m, _)| !before.holds(m) && self.filter.holds(m))
            .map(|(_, s)| s.clone())
            .collect();
        let publisher = self.ports.publisher.clone();
        Box::pin(async move {
            for variant in lost {
                let _ = publisher.send(Unpublish(variant)).await;
            }
            for sup in gained {
                let _ = sup.send(Resume).await;
            }
        })
    }
}
