//! The model supervisor: owns the variant actors of one model, runs the policy over all of them
//! each cycle, and returns what is to be done as [`Effects`] (the registry applies them). A
//! variant actor that stops on an error is restarted here; what it learned comes back from the
//! decision log.
//!
//! A cycle is atomic: while it runs (its variant actors are asked for their signals), no other
//! message of this supervisor is handled, so a variant added or dropped meanwhile waits for the
//! cycle to end and is never overwritten by it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use tracing::Instrument;
use wva_storage::{DemandRecord, ForecastRecord, Record, RequestSeriesMissingRecord, RolesRecord};

use crate::policy::roles::Role;

use crate::compact::Compactor;
use crate::effects::{Effects, Ports};
use crate::log_actor::{LastGoodOf, LearnerOf};
use crate::messages::{
    DeploymentState, Metrics, ModelKey, PodSample, PolicySettings, StatusUpdate, Timestamp,
    VariantKey, VariantSpec,
};
use crate::policy::cycle::{CycleDecision, CycleInputs, ModelBasedInputs, decide_cycle};
use crate::policy::learner::LatencyLearner;
use crate::policy::model_based::ModelVariantInput;
use crate::policy::outputs::{Life, MetricsState, VariantFacts, cycle_outputs};
use crate::policy::queueing::Workload;
use crate::policy::scale_to_zero::RequestCount;
use crate::policy::slo_capacity::{CapacityVariant, DemandTrend, SloCapacityConfig, model_demand};
use crate::policy::startup::StartupClock;
use crate::policy::{OperatingMode, VariantInput};
use crate::publisher::Retire;
use crate::record::{
    CycleFacts, cycle_record, learner_of, model_based_record, slo_capacity_records,
};
use crate::telemetry::Telemetry;
use crate::variant::{Observation, Observe, RestoreLearner, StopVariant, UpdateSpec, VariantActor};

/// One managed variant.
#[derive(Debug)]
struct Slot {
    addr: Addr<VariantActor>,
    /// Which life of the variant this is (a new one when its Deployment is deleted): stamped on
    /// what it publishes, and ended when it is retired.
    life: Life,
    /// Shared with each cycle's plan, which reads it without copying its strings.
    spec: Arc<VariantSpec>,
    deployment: Option<DeploymentState>,
    /// The last desired count decided for it (in this process, or recovered from the log).
    last_desired: Option<u32>,
    /// The `slo-capacity` recommendations of the last cycles (its scale-down window).
    recent: VecDeque<u32>,
    /// The desired count the Deployment has not reached, and since when.
    unreached: Option<(u32, Timestamp)>,
    /// While the safety net decides for it: since when, for how many cycles, and when that
    /// was last logged.
    safety_net: Option<SafetyNetRun>,
    /// How long its replicas take to start (the forecast's horizon).
    startup: StartupClock,
}

/// A stretch of cycles decided by the safety net, for logging it without a line per cycle.
#[derive(Debug, Clone, Copy)]
struct SafetyNetRun {
    since: Timestamp,
    cycles: u32,
    logged: Timestamp,
}

/// While the safety net keeps deciding a variant, it is logged again at most this often (of
/// the cycles' own time, so a simulation's virtual hours log as real ones would).
pub const SAFETY_NET_LOG_EVERY_MS: i64 = 5 * 60 * 1_000;

/// What the safety net emitted for one variant in one cycle.
#[derive(Debug, Clone)]
struct Fallback {
    variant: String,
    current: u32,
    desired: u32,
    accelerator: String,
    source: &'static str,
}

/// How long a variant may stay short of (or above) its desired count before the policy stops
/// waiting for it: longer than any start-up or HPA window, short enough that a clamp (an HPA
/// `minReplicas` above the desired count, a quota) cannot freeze the model.
pub const TRANSITION_TIMEOUT_MS: i64 = 10 * 60 * 1_000;

impl Slot {
    /// The previous desired count the policy sees: the decision log's (or this process's),
    /// else the VA status, brought within the scaler's bounds when they are known (the count
    /// the Deployment can actually reach).
    fn previous_desired(&self) -> Option<u32> {
        self.last_desired
            .or(self.spec.status_desired)
            .map(|d| self.spec.bounds.clamp(d))
    }

    /// Whether the previous desired count has gone unreached for longer than the timeout at
    /// `at` (as of the last cycle's view of the Deployment), and which count that was.
    fn stalled(&self, at: Timestamp) -> Option<u32> {
        let current = self.deployment?.replicas;
        let desired = self.previous_desired().filter(|&d| d != current)?;
        self.unreached
            .filter(|&(d, since)| {
                d == desired && at.millis() - since.millis() > TRANSITION_TIMEOUT_MS
            })
            .map(|(d, _)| d)
    }

    /// Starts or stops the clock of an unreached desired count.
    fn track_transition(&mut self, at: Timestamp) {
        let current = self.deployment.map(|d| d.replicas);
        self.unreached = match (self.previous_desired(), current) {
            (Some(d), Some(c)) if d != c => match self.unreached {
                Some((same, since)) if same == d => Some((same, since)),
                _ => Some((d, at)),
            },
            _ => None,
        };
    }

    /// The policy's input for this variant, before its actor adds the signals of its pods.
    fn input(&self) -> VariantInput {
        let d = self.deployment.unwrap_or(DeploymentState {
            replicas: 0,
            ready: 0,
        });
        VariantInput {
            name: self.spec.key.name.clone(),
            cost: self.spec.cost,
            accelerator: self.spec.accelerator.clone(),
            current_replicas: d.replicas,
            ready_replicas: d.ready.min(d.replicas),
            previous_desired: self.previous_desired(),
            replicas: Vec::new(),
        }
    }
}

/// Supervisor of one model's variants.
#[derive(Debug)]
pub struct ModelSupervisor {
    model: ModelKey,
    /// Boxed: a B-tree node holds room for eleven entries, and most models have one or two
    /// variants (unboxed, the nodes took 15 MB at 10,000 variants).
    slots: BTreeMap<String, Box<Slot>>,
    settings: Arc<PolicySettings>,
    ports: Ports,
    /// The latest metrics read, for cycles triggered by a Deployment event between ticks.
    last_metrics: Option<Metrics>,
    /// The latest time a cycle decided at here: a variant retired is forgotten up to it.
    decided_up_to: Option<Timestamp>,
    restarts: u64,
    /// The model's demand trend (`slo-capacity` with the forecast on).
    trend: Option<DemandTrend>,
    /// Writes the model's cycles in the log's compact form where that reads back identical.
    compactor: Compactor,
}

impl ModelSupervisor {
    pub fn new(model: ModelKey, settings: Arc<PolicySettings>, ports: Ports) -> Self {
        Self {
            model,
            slots: BTreeMap::new(),
            settings,
            ports,
            last_metrics: None,
            decided_up_to: None,
            restarts: 0,
            trend: None,
            compactor: Compactor::default(),
        }
    }

    /// Starts a variant's actor: on a new VA, and again after the actor stopped on bad input. In
    /// the model-based modes, what the variant learned before comes back from the decision log;
    /// it arrives while the actor already runs, and is kept only if it knows more.
    fn start_variant(&self, spec: Arc<VariantSpec>) -> Addr<VariantActor> {
        let key = spec.key.clone();
        let actor = VariantActor::new(spec).start();
        if self.settings.mode != OperatingMode::CapacityOnly {
            let (log, restored) = (self.ports.log.clone(), actor.clone());
            actix::spawn(async move {
                if let Ok(Ok(Some(learned))) = log.send(LearnerOf(key)).await {
                    restored.do_send(RestoreLearner(learner_of(&learned)));
                }
            });
        }
        actor
    }

    /// What a cycle needs, taken from the supervisor's state when it starts.
    fn plan(&self, at: Timestamp, metrics: Metrics, trigger: &'static str) -> CyclePlan {
        CyclePlan {
            model: self.model.clone(),
            variants: self
                .slots
                .values()
                .filter(|s| s.deployment.is_some())
                .map(|s| {
                    let stalled = s.stalled(at);
                    let mut input = s.input();
                    // A desired count the Deployment has not reached in the timeout is no
                    // longer waited for: the policy decides from what is there.
                    if stalled.is_some() {
                        input.previous_desired = None;
                    }
                    PlannedVariant {
                        addr: s.addr.clone(),
                        spec: Arc::clone(&s.spec),
                        input,
                        recent: s.recent.iter().copied().collect(),
                        stalled,
                    }
                })
                .collect(),
            settings: Arc::clone(&self.settings),
            trend: self.trend,
            // The longest start-up of the model's variants measured so far.
            horizon_s: self
                .slots
                .values()
                .filter_map(|s| s.startup.seconds())
                .reduce(f64::max),
            at,
            metrics,
            trigger,
            statuses: self.ports.status.is_some(),
            telemetry: self.ports.telemetry.clone(),
        }
    }

    /// Takes the cycle's result into the supervisor's state: desired counts, restarted actors.
    fn settle(&mut self, ran: &RanCycle, at: Timestamp) {
        self.log_safety_net(&ran.fallbacks, at);
        for (name, desired) in &ran.desired {
            if let Some(slot) = self.slots.get_mut(name) {
                slot.last_desired = Some(*desired);
            }
        }
        for slot in self.slots.values_mut() {
            slot.track_transition(at);
            if let Some(d) = slot.deployment {
                slot.startup.observe(d.replicas, d.ready, at.millis());
            }
        }
        if ran.trend.is_some() {
            self.trend = ran.trend;
        }
        let window = self.settings.slo_capacity.stabilization_cycles;
        for (name, recommended) in &ran.recommended {
            if let Some(slot) = self.slots.get_mut(name) {
                slot.recent.push_back(*recommended);
                while slot.recent.len() > window {
                    slot.recent.pop_front();
                }
            }
        }
        for name in &ran.faulted {
            let Some(spec) = self.slots.get(name).map(|s| Arc::clone(&s.spec)) else {
                continue;
            };
            let addr = self.start_variant(spec);
            if let Some(slot) = self.slots.get_mut(name) {
                slot.addr.do_send(StopVariant);
                slot.addr = addr;
                self.restarts += 1;
            }
        }
    }

    /// Logs the safety net once when it starts deciding a variant, again every
    /// [`SAFETY_NET_LOG_EVERY_MS`] while it goes on (with how long), and once when it stops:
    /// an outage of hours is a handful of lines per variant, not one per cycle.
    fn log_safety_net(&mut self, fallbacks: &[Fallback], at: Timestamp) {
        let (namespace, model) = (&self.model.namespace, &self.model.model_id);
        for (name, slot) in &mut self.slots {
            let Some(f) = fallbacks.iter().find(|f| f.variant == *name) else {
                if let Some(run) = slot.safety_net.take() {
                    tracing::info!(
                        %namespace, %model, variant = %name, cycles = run.cycles,
                        durationS = (at.millis() - run.since.millis()) / 1_000,
                        "Safety net released: decisions from metrics again"
                    );
                }
                continue;
            };
            let (run, message) = match slot.safety_net {
                None => (
                    SafetyNetRun {
                        since: at,
                        cycles: 1,
                        logged: at,
                    },
                    Some("Safety net activated: emitted fallback metrics"),
                ),
                Some(mut run) => {
                    run.cycles += 1;
                    let remind = at.millis() - run.logged.millis() >= SAFETY_NET_LOG_EVERY_MS;
                    if remind {
                        run.logged = at;
                    }
                    (
                        run,
                        remind.then_some("Safety net still active: emitted fallback metrics"),
                    )
                }
            };
            if let Some(message) = message {
                tracing::warn!(
                    %namespace, %model, variant = %f.variant,
                    currentReplicas = f.current,
                    desiredReplicas = f.desired,
                    accelerator = %f.accelerator,
                    fallbackSource = f.source,
                    cycles = run.cycles,
                    durationS = (at.millis() - run.since.millis()) / 1_000,
                    "{message}"
                );
            }
            slot.safety_net = Some(run);
        }
    }

    /// Runs a cycle atomically; the supervisor's state is updated from it before any other
    /// message is handled.
    fn atomic_cycle(
        &mut self,
        at: Timestamp,
        metrics: Metrics,
        trigger: &'static str,
        mut effects: Effects,
    ) -> AtomicResponse<Self, ModelCycle> {
        self.last_metrics = Some(metrics.clone());
        self.decided_up_to = self.decided_up_to.max(Some(at));
        let plan = self.plan(at, metrics, trigger);
        let span = tracing::info_span!(
            "model",
            namespace = %self.model.namespace,
            model = %self.model.model_id,
            trigger
        );
        AtomicResponse::new(Box::pin(
            run_cycle(plan)
                .instrument(span)
                .into_actor(self)
                .map(move |mut ran, act, _| {
                    act.settle(&ran, at);
                    for published in &mut ran.effects.published {
                        if let Some(slot) = act.slots.get(&published.variant.name) {
                            published.life = slot.life;
                        }
                    }
                    let records = std::mem::take(&mut ran.effects.records);
                    ran.effects.records = act.compactor.compact(records);
                    effects.merge(ran.effects);
                    ModelCycle {
                        outcome: ran.outcome,
                        effects,
                    }
                }),
        ))
    }
}

impl Actor for ModelSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
    }
}

/// What one model's cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelOutcome {
    /// Variants that got a decision (those whose Deployment exists).
    pub decided: usize,
    pub safety_net: bool,
    /// Variants whose desired count changed.
    pub changed: usize,
    /// Variant actors restarted during the cycle.
    pub restarted: usize,
}

/// The result of one model's cycle (or of an event that may have run one).
#[derive(Debug, Default)]
pub struct ModelCycle {
    pub outcome: ModelOutcome,
    pub effects: Effects,
}

impl<A: Actor, M: Message<Result = ModelCycle>> actix::dev::MessageResponse<A, M> for ModelCycle {
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<ModelCycle>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

impl<A: Actor, M: Message<Result = Effects>> actix::dev::MessageResponse<A, M> for Effects {
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<Effects>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

/// Start managing a variant.
#[derive(Debug, Message)]
#[rtype(result = "Effects")]
pub struct AddVariant {
    /// Shared with the registry and the variant's actor: one copy per variant.
    pub spec: Arc<VariantSpec>,
    pub deployment: Option<DeploymentState>,
    /// Last good desired count recovered from the decision log.
    pub last_good: Option<u32>,
    /// Look the last good count up in the decision log before deciding anything (a fresh
    /// supervisor replacing one that failed).
    pub recall: bool,
    pub at: Timestamp,
}

impl Handler<AddVariant> for ModelSupervisor {
    type Result = Effects;
    fn handle(&mut self, msg: AddVariant, ctx: &mut Context<Self>) -> Effects {
        let name = msg.spec.key.name.clone();
        if msg.recall {
            // `wait`: no cycle runs before the answer is in, so the first decision of a fresh
            // supervisor starts from the last good count, as the failed one would have.
            let (log, key, slot) = (self.ports.log.clone(), msg.spec.key.clone(), name.clone());
            ctx.wait(
                async move { log.send(LastGoodOf(key)).await }
                    .into_actor(self)
                    .map(move |found, sup, _| {
                        if let Ok(Ok(Some(last))) = found
                            && let Some(s) = sup.slots.get_mut(&slot)
                        {
                            s.last_desired.get_or_insert(last.desired);
                        }
                    }),
            );
        }
        if let Some(old) = self.slots.remove(&name) {
            old.addr.do_send(StopVariant);
        }
        let mut effects = Effects::default();
        if msg.deployment.is_none() {
            effects.statuses.push(StatusUpdate::TargetMissing {
                variant: msg.spec.key.clone(),
                at: msg.at,
                deployment: msg.spec.deployment.clone(),
                deleted: false,
            });
        }
        let addr = self.start_variant(msg.spec.clone());
        self.slots.insert(
            name,
            Box::new(Slot {
                addr,
                life: Life::begin(),
                spec: msg.spec,
                deployment: msg.deployment,
                last_desired: msg.last_good,
                recent: VecDeque::new(),
                unreached: None,
                safety_net: None,
                startup: StartupClock::default(),
            }),
        );
        effects
    }
}

/// Test hook: panics, as a defect in the policy would (see the registry's `CrashForTest`).
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Crash;

impl Handler<Crash> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!(
            "test hook: model {} was asked to crash",
            self.model.model_id
        );
    }
}

/// Test hook: stops answering for good, as a defect that never returns would (see the
/// registry's `HangForTest`).
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Hang;

impl Handler<Hang> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, _: Hang, ctx: &mut Context<Self>) {
        ctx.wait(actix::fut::wrap_future(std::future::pending::<()>()));
    }
}

/// This replica takes the model over from another (shards): what it decided before it gave the
/// model up is stale; the VA status, kept by the other holder, says where the model stands.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Resume;

impl Handler<Resume> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, _: Resume, _: &mut Context<Self>) {
        self.trend = None;
        for slot in self.slots.values_mut() {
            slot.last_desired = None;
            slot.recent.clear();
            slot.unreached = None;
            slot.safety_net = None;
        }
    }
}

/// The counts a finite accelerator pool let the model's variants publish, where they differ
/// from what its cycle decided: the next cycle starts from what was published.
///
/// A variant given more than it asked for (replicas in place of another variant whose
/// accelerators are full) counts that grant as its recommendation in the stabilisation window:
/// the spilled replicas are the model's plan as much as its own, and are held as long as any
/// recommendation is. Without this they went the first cycle the full variant asked for one
/// fewer, and came back a few cycles later after a start-up (on the shared-pool `traces`
/// scenario, `code`'s A100 replicas dropped from 4 to 3 for minutes at a time). A cut variant
/// keeps what it wanted in the window, as before: the window holds recommendations, the pool
/// bounds what is published.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Granted(pub Vec<(String, u32)>);

impl Handler<Granted> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Granted, _: &mut Context<Self>) {
        for (name, granted) in msg.0 {
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.last_desired = Some(granted);
                if let Some(last) = slot.recent.back_mut() {
                    *last = (*last).max(granted);
                }
            }
        }
    }
}

/// The VA of a variant changed, but not its model or Deployment.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateVariant(pub Arc<VariantSpec>);

impl Handler<UpdateVariant> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, msg: UpdateVariant, _: &mut Context<Self>) {
        if let Some(slot) = self.slots.get_mut(&msg.0.key.name) {
            slot.spec = Arc::clone(&msg.0);
            slot.addr.do_send(UpdateSpec(msg.0));
        }
    }
}

/// Stop managing a variant: its series go, and its last-good entry is forgotten.
#[derive(Debug, Message)]
#[rtype(result = "Effects")]
pub struct DropVariant(pub VariantKey);

impl Handler<DropVariant> for ModelSupervisor {
    type Result = Effects;
    fn handle(&mut self, msg: DropVariant, _: &mut Context<Self>) -> Effects {
        // Without a slot nothing of it was published from here: removing its series suffices.
        let life = self
            .slots
            .remove(&msg.0.name)
            .map_or(Life::default(), |slot| {
                slot.addr.do_send(StopVariant);
                slot.life
            });
        let mut effects = Effects::default();
        effects.retired.push(Retire {
            variant: msg.0,
            life,
            decided_up_to: self.decided_up_to,
        });
        effects
    }
}

/// A Deployment this model's variants may target changed (`None`: deleted). A deleted one
/// retires its variants at once; a created one is decided for at once, on the last metrics.
#[derive(Debug, Message)]
#[rtype(result = "ModelCycle")]
pub struct DeploymentUpdate {
    pub deployment: String,
    pub state: Option<DeploymentState>,
    pub at: Timestamp,
}

impl Handler<DeploymentUpdate> for ModelSupervisor {
    type Result = AtomicResponse<Self, ModelCycle>;

    fn handle(&mut self, msg: DeploymentUpdate, _: &mut Context<Self>) -> Self::Result {
        let mut created = false;
        let mut effects = Effects::default();
        for slot in self
            .slots
            .values_mut()
            .filter(|s| s.spec.deployment == msg.deployment)
        {
            let deleted = slot.deployment.is_some() && msg.state.is_none();
            created |= slot.deployment.is_none() && msg.state.is_some();
            if deleted {
                // Gone: nothing decided for it carries over, not even the VA status.
                Arc::make_mut(&mut slot.spec).status_desired = None;
                slot.last_desired = None;
                effects.retired.push(Retire {
                    variant: slot.spec.key.clone(),
                    life: std::mem::replace(&mut slot.life, Life::begin()),
                    decided_up_to: self.decided_up_to,
                });
                effects.statuses.push(StatusUpdate::TargetMissing {
                    variant: slot.spec.key.clone(),
                    at: msg.at,
                    deployment: msg.deployment.clone(),
                    deleted: true,
                });
            }
            slot.deployment = msg.state;
        }
        match self.last_metrics.clone().filter(|_| created) {
            Some(metrics) => self.atomic_cycle(msg.at, metrics, "deployment-created", effects),
            None => AtomicResponse::new(Box::pin(actix::fut::ready(ModelCycle {
                outcome: ModelOutcome::default(),
                effects,
            }))),
        }
    }
}

/// Replace the policy settings (a ConfigMap changed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetSettings(pub Arc<PolicySettings>);

impl Handler<SetSettings> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, msg: SetSettings, _: &mut Context<Self>) {
        self.settings = msg.0;
    }
}

/// How many variant actors this supervisor has restarted.
#[derive(Debug, Message)]
#[rtype(result = "u64")]
pub struct Restarts;

impl Handler<Restarts> for ModelSupervisor {
    type Result = u64;
    fn handle(&mut self, _: Restarts, _: &mut Context<Self>) -> u64 {
        self.restarts
    }
}

/// Run the policy for this model on a tick.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ModelCycle")]
pub struct RunCycle {
    pub at: Timestamp,
    pub metrics: Metrics,
}

impl Handler<RunCycle> for ModelSupervisor {
    type Result = AtomicResponse<Self, ModelCycle>;

    fn handle(&mut self, msg: RunCycle, _: &mut Context<Self>) -> Self::Result {
        self.atomic_cycle(msg.at, msg.metrics, "tick", Effects::default())
    }
}

/// A variant as the cycle starts: its actor, its spec, and its input without pod signals.
struct PlannedVariant {
    addr: Addr<VariantActor>,
    spec: Arc<VariantSpec>,
    input: VariantInput,
    recent: Vec<u32>,
    /// The desired count that went unreached past the transition timeout.
    stalled: Option<u32>,
}

struct CyclePlan {
    model: ModelKey,
    /// The variants whose Deployment exists, by name order.
    variants: Vec<PlannedVariant>,
    settings: Arc<PolicySettings>,
    /// The model's demand trend before this cycle, and how far ahead it looks.
    trend: Option<DemandTrend>,
    horizon_s: Option<f64>,
    at: Timestamp,
    metrics: Metrics,
    /// What started the cycle, recorded in the log: `tick`, `deployment-created`.
    trigger: &'static str,
    /// Whether anyone writes statuses (the simulator does not).
    statuses: bool,
    telemetry: Telemetry,
}

/// What a cycle hands back to the supervisor's state.
#[derive(Default)]
struct RanCycle {
    outcome: ModelOutcome,
    effects: Effects,
    /// Desired count decided per variant name.
    desired: Vec<(String, u32)>,
    /// The `slo-capacity` recommendation per variant name, for its scale-down window.
    recommended: Vec<(String, u32)>,
    /// Variants whose actor stopped on bad input (restarted by `settle`).
    faulted: Vec<String>,
    /// What the safety net emitted (logged by `settle`, which knows how long it has lasted).
    fallbacks: Vec<Fallback>,
    /// The model's demand trend after this cycle, when the forecast ran.
    trend: Option<DemandTrend>,
}

async fn run_cycle(plan: CyclePlan) -> RanCycle {
    let CyclePlan {
        model,
        mut variants,
        settings,
        trend,
        horizon_s,
        at,
        metrics,
        trigger,
        statuses,
        telemetry,
    } = plan;
    let started = std::time::Instant::now();
    let mut ran = RanCycle::default();
    if variants.is_empty() {
        return ran;
    }
    let (snapshot, prometheus_error) = match &metrics {
        Metrics::Read(snapshot) => (Some(snapshot), None),
        Metrics::Failed(e) => (None, Some(e.as_str())),
    };
    let learn = settings.mode != OperatingMode::CapacityOnly;
    let fit_itl = settings.analyzer.reads_serving();
    let (scale_to_zero, _) = settings.scale_to_zero_for(&model);
    // 1. Fan the snapshot out to the variants; each answers with its signals, checked.
    let Gathered {
        inputs,
        facts,
        capacity_views,
        learners,
        served,
        fault,
    } = gather(
        &mut variants,
        &model,
        snapshot,
        prometheus_error,
        Asked {
            learn,
            fit_itl,
            pool: learn || scale_to_zero,
        },
        &mut ran,
    )
    .await;
    let mut slo_config = settings.slo_capacity_for(&model.model_id);
    let roles: Vec<Role> = variants.iter().map(|v| v.spec.role).collect();
    // A model with roles has each request counted by each role: it follows its load as it is.
    let forecast = (slo_config.forecast
        && fit_itl
        && prometheus_error.is_none()
        && roles.iter().all(|r| *r == Role::Both))
    .then(|| demand_forecast(&model, at, &capacity_views, &slo_config, trend, horizon_s));
    if let Some((next, record)) = &forecast {
        slo_config.forecast_rps = record.forecast_rps;
        ran.trend = Some(*next);
    }

    // 2. Decide.
    let (config, _) = settings
        .scaling
        .for_model(&model.namespace, &model.model_id);
    let thresholds = config.thresholds;
    let metrics_error = prometheus_error.map(str::to_string).or(fault);
    let specs: Vec<&VariantSpec> = variants.iter().map(|v| &*v.spec).collect();
    let model_inputs = (learn || scale_to_zero)
        .then(|| model_based_inputs(&settings, &model, &inputs, &specs, &learners, &served));
    let request_count = snapshot.and_then(|s| s.request_counts.get(&model).cloned());
    let held_requests = snapshot
        .and_then(|s| s.held_requests.get(&model).copied())
        .filter(|q| q.is_finite() && *q > 0.0);
    let mut decided = decide_cycle(CycleInputs {
        mode: settings.mode,
        thresholds: &thresholds,
        variants: &inputs,
        metrics_error: metrics_error.as_deref(),
        model_based: model_inputs.as_ref().filter(|_| learn),
        scale_to_zero,
        request_count: request_count.as_ref(),
        analyzer: settings.analyzer,
        slo_capacity: fit_itl.then_some((capacity_views.as_slice(), &slo_config)),
        held_requests,
        roles: &roles,
    });
    note_given_up(&mut decided, &variants, &inputs);
    if let Some(outcome) = &decided.slo_capacity {
        ran.recommended = outcome
            .estimates
            .iter()
            .map(|e| (e.name.clone(), e.recommended))
            .collect();
    }

    // 3. Record inputs and decision before anyone acts on it.
    ran.effects
        .records
        .push(Record::Cycle(cycle_record(CycleFacts {
            model: &model,
            at,
            mode: settings.mode,
            config_version: &settings.scaling.version,
            thresholds,
            metrics_error,
            inputs: &inputs,
            decision: &decided.decision,
            trigger,
        })));
    ran.effects.records.extend(model_side_records(
        &model,
        at,
        &variants,
        held_requests,
        scale_to_zero && request_count == Some(RequestCount::NoSeries),
    ));
    if let Some(outcome) = &decided.slo_capacity {
        ran.effects.records.extend(slo_capacity_records(
            &model,
            at,
            &capacity_views,
            &slo_config,
            outcome,
            forecast.map(|(_, record)| record),
        ));
    }
    if let Some(m) = &model_inputs {
        ran.effects
            .records
            .push(Record::ModelBased(model_based_record(
                &model,
                at,
                settings.mode,
                m,
                &learners_for_log(learners, inputs.len()),
                (scale_to_zero, request_count.as_ref()),
                &decided,
            )));
    }

    // 4. What to publish and which statuses to write.
    let problems = settings
        .scaling
        .problems_for_model(&model.namespace, &model.model_id);
    ran.take_outputs(
        cycle_outputs(at, &decided, &facts, &problems, statuses),
        &decided,
    );
    count(&telemetry, &model, &ran, &decided, started);
    ran
}

impl RanCycle {
    /// Takes what the cycle publishes and writes, what it decided per variant, and what the
    /// safety net emitted (for `settle` to log).
    fn take_outputs(
        &mut self,
        outputs: crate::policy::outputs::CycleOutputs,
        decided: &CycleDecision,
    ) {
        let decision = &decided.decision;
        self.fallbacks = decision
            .variants
            .iter()
            .filter_map(|t| {
                Some(Fallback {
                    variant: t.name.clone(),
                    current: t.current_replicas,
                    desired: t.target,
                    accelerator: t.accelerator.clone(),
                    source: t.fallback_source?.as_str(),
                })
            })
            .collect();
        self.effects.published = outputs.published;
        self.effects.statuses = outputs.statuses;
        self.desired = decision
            .variants
            .iter()
            .map(|t| (t.name.clone(), t.target))
            .collect();
        self.outcome.changed = outputs.changed;
        self.outcome.decided = decision.variants.len();
        self.outcome.safety_net = decision.safety_net;
    }
}

/// The cycle's health series: how long deciding took (never an input of a decision), actors
/// restarted, `slo-capacity` fallbacks and blind holds.
fn count(
    telemetry: &Telemetry,
    model: &ModelKey,
    ran: &RanCycle,
    decided: &CycleDecision,
    started: std::time::Instant,
) {
    telemetry
        .model_decision_seconds
        .observe(started.elapsed().as_secs_f64());
    telemetry
        .variant_restarts
        .inc_by(ran.outcome.restarted as u64);
    if let Some(o) = decided
        .slo_capacity
        .as_ref()
        .filter(|o| !o.fallback.is_empty())
    {
        telemetry.saturation_fallback.inc();
        tracing::debug!(model = %model, variants = %o.fallback.join("; "), "slo-capacity fell back to the saturation analysis");
    }
    if let Some(why) = &decided.blind {
        telemetry.scale_to_zero_blind.inc();
        tracing::warn!(model = %model, %why, "scale to zero held: the model cannot be seen whole");
    }
}

/// Says so where a desired count was given up on (the policy decided without it).
fn note_given_up(
    decided: &mut CycleDecision,
    variants: &[PlannedVariant],
    inputs: &[VariantInput],
) {
    for (v, input) in variants.iter().zip(inputs) {
        let Some(given_up) = v.stalled else { continue };
        if let Some(t) = decided
            .decision
            .variants
            .iter_mut()
            .find(|t| t.name == v.spec.key.name)
        {
            t.reason = format!(
                "{}; the Deployment stayed at {} instead of the desired {given_up} for over {} min (a scaler bound or a quota may hold it), so that count is no longer waited for",
                t.reason,
                input.current_replicas,
                TRANSITION_TIMEOUT_MS / 60_000
            );
        }
    }
}

/// The learners to log, one per variant: fresh ones when a faulted variant left a gap.
fn learners_for_log(learners: Vec<LatencyLearner>, variants: usize) -> Vec<LatencyLearner> {
    if learners.len() == variants {
        learners
    } else {
        vec![LatencyLearner::default(); variants]
    }
}

/// What the cycle asks of its variants: whether they feed the latency learner, fit their
/// latency lines, and whether the pods they accept are pooled for the model's workload.
#[derive(Debug, Clone, Copy)]
struct Asked {
    learn: bool,
    fit_itl: bool,
    pool: bool,
}

/// What the variants answered: each one's input and facts, the `slo-capacity` views, the
/// learners, the pods accepted for the model's workload, and the fault of an actor that
/// refused its signals.
struct Gathered<'a> {
    inputs: Vec<VariantInput>,
    facts: Vec<VariantFacts>,
    capacity_views: Vec<CapacityVariant>,
    learners: Vec<LatencyLearner>,
    served: Vec<&'a PodSample>,
    fault: Option<String>,
}

/// Fans the snapshot out to the variants (every one asked at once, the answers taken in
/// order); a variant whose actor refuses its signals is noted for a restart in `ran`.
async fn gather<'a>(
    variants: &mut [PlannedVariant],
    model: &ModelKey,
    snapshot: Option<&'a Arc<crate::messages::MetricsSnapshot>>,
    prometheus_error: Option<&str>,
    asked: Asked,
    ran: &mut RanCycle,
) -> Gathered<'a> {
    let model_samples: &[PodSample] = snapshot
        .and_then(|s| s.by_model.get(model))
        .map_or(&[], Vec::as_slice);
    // A Deployment's pods go to the first variant on it, once.
    let mut given: Vec<&str> = Vec::with_capacity(variants.len());

    let Asked {
        learn,
        fit_itl,
        pool,
    } = asked;
    let mut capacity_views: Vec<CapacityVariant> = Vec::new();
    let mut inputs: Vec<VariantInput> = Vec::with_capacity(variants.len());
    let mut learners: Vec<LatencyLearner> = Vec::new();
    let mut facts: Vec<VariantFacts> = Vec::with_capacity(variants.len());
    // Every pod the variants accepted, pooled for the model's workload.
    let mut served: Vec<&PodSample> = Vec::new();
    let mut fault = None;
    // Every variant is asked at once; the answers are taken in order.
    let answers: Vec<_> = variants
        .iter()
        .map(|PlannedVariant { addr, spec, .. }| {
            let mine: Vec<&PodSample> = if given.contains(&spec.deployment.as_str()) {
                Vec::new()
            } else {
                given.push(spec.deployment.as_str());
                model_samples
                    .iter()
                    .filter(|p| p.deployment == spec.deployment)
                    .collect()
            };
            let samples = mine.iter().map(|&p| p.clone()).collect();
            // The model's workload pools what the variants accepted (model-based inputs).
            let accepted = if pool { mine } else { Vec::new() };
            let observed = addr.send(Observe {
                variant: spec.key.clone(),
                samples,
                learn,
                fit_itl,
            });
            (observed, accepted)
        })
        .collect();
    for (
        PlannedVariant {
            spec,
            input,
            recent,
            ..
        },
        (observed, accepted),
    ) in variants.iter_mut().zip(answers)
    {
        let observation = match observed.await {
            Ok(Ok(o)) => {
                served.extend(accepted);
                o
            }
            Ok(Err(f)) => faulted(ran, &mut fault, model, spec, f.to_string(), learn),
            Err(e) => {
                let problem = format!("variant {}: actor unavailable ({e})", spec.key);
                faulted(ran, &mut fault, model, spec, problem, learn)
            }
        };
        // Taken, not copied: the plan's input is not read again.
        let mut input = std::mem::take(input);
        input.replicas = observation.replicas;
        let stale = snapshot.filter(|s| !s.stale.is_empty()).and_then(|s| {
            s.stale
                .get(&(spec.key.namespace.clone(), spec.deployment.clone()))
                .copied()
        });
        facts.push(VariantFacts {
            key: spec.key.clone(),
            previous_desired: input.previous_desired,
            metrics: MetricsState::of(prometheus_error, !input.replicas.is_empty(), stale, || {
                snapshot.and_then(|s| missing_hint(s, model, spec))
            }),
        });
        if fit_itl {
            capacity_views.push(CapacityVariant {
                input: input.clone(),
                serving: observation.serving,
                fit: observation.itl_fit.unwrap_or_default(),
                prefill_fit: observation.ttft_fit.unwrap_or_default(),
                role: spec.role,
                max_batch: spec.max_batch,
                min_replicas: spec.bounds.min,
                max_replicas: spec.bounds.max,
                recent: recent.clone(),
            });
        }
        inputs.push(input);
        learners.extend(observation.learner);
    }
    Gathered {
        inputs,
        facts,
        capacity_views,
        learners,
        served,
        fault,
    }
}

/// The records beside a cycle that replay needs of the model as a whole: its variants' roles
/// (when any has one), the requests the scheduler held, and a request series found missing.
fn model_side_records(
    model: &ModelKey,
    at: Timestamp,
    variants: &[PlannedVariant],
    held_requests: Option<f64>,
    series_missing: bool,
) -> Vec<Record> {
    let mut records = Vec::new();
    if variants.iter().any(|v| v.spec.role != Role::Both) {
        records.push(Record::Roles(RolesRecord {
            model: model.clone(),
            at,
            roles: variants
                .iter()
                .map(|v| (v.spec.key.name.clone(), v.spec.role.as_str().to_string()))
                .collect(),
        }));
    }
    if let Some(epp_queue) = held_requests {
        records.push(Record::Demand(DemandRecord {
            model: model.clone(),
            at,
            epp_queue,
        }));
    }
    if series_missing {
        records.push(Record::RequestSeriesMissing(RequestSeriesMissingRecord {
            model: model.clone(),
            at,
        }));
    }
    records
}

/// The trend of the demand every variant of the model sees, after this cycle, and the record
/// of what it forecasts one start-up time ahead (nothing before a start-up was measured).
fn demand_forecast(
    model: &ModelKey,
    at: Timestamp,
    views: &[CapacityVariant],
    config: &SloCapacityConfig,
    trend: Option<DemandTrend>,
    horizon_s: Option<f64>,
) -> (DemandTrend, ForecastRecord) {
    let demand = model_demand(views, config);
    let next = DemandTrend::update(trend, demand, at.millis());
    let record = ForecastRecord {
        model: model.clone(),
        at,
        horizon_s,
        level_rps: next.level_rps,
        slope: next.slope,
        forecast_rps: horizon_s.map(|h| next.ahead(demand, h)),
    };
    (next, record)
}

/// A variant actor that refused its signals: noted for a restart, and its model goes to the
/// safety net this cycle.
fn faulted(
    ran: &mut RanCycle,
    fault: &mut Option<String>,
    model: &ModelKey,
    spec: &VariantSpec,
    problem: String,
    learn: bool,
) -> Observation {
    tracing::warn!(model = %model, %problem, "variant actor stopped; restarting it");
    ran.faulted.push(spec.key.name.clone());
    ran.outcome.restarted += 1;
    *fault = Some(problem);
    Observation {
        replicas: Vec::new(),
        learner: learn.then(LatencyLearner::default),
        serving: None,
        itl_fit: None,
        ttft_fit: None,
    }
}

/// Where a variant's series are, when none reached it: under another `model_name` (its pods
/// report one that is not the VA's model id), or which `model_name` values have series in its
/// namespace at all. `None` when the namespace has no vLLM series.
fn missing_hint(
    snapshot: &crate::messages::MetricsSnapshot,
    model: &ModelKey,
    spec: &VariantSpec,
) -> Option<String> {
    let mut elsewhere: Vec<&str> = snapshot
        .by_model
        .iter()
        .filter(|(m, samples)| {
            m.namespace == model.namespace
                && m.model_id != model.model_id
                && samples.iter().any(|s| s.deployment == spec.deployment)
        })
        .map(|(m, _)| m.model_id.as_str())
        .collect();
    elsewhere.sort_unstable();
    if !elsewhere.is_empty() {
        return Some(format!(
            "its pods report model_name {} while the model id is {:?}",
            elsewhere
                .iter()
                .map(|m| format!("{m:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            model.model_id
        ));
    }
    let mut present: Vec<&str> = snapshot
        .by_model
        .keys()
        .filter(|m| m.namespace == model.namespace)
        .map(|m| m.model_id.as_str())
        .collect();
    present.sort_unstable();
    present.dedup();
    (!present.is_empty()).then(|| {
        format!(
            "model_name values with series in namespace {}: {}",
            model.namespace,
            present
                .iter()
                .map(|m| format!("{m:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The model-based optimizer's inputs: the model's demand and request shape pooled over every
/// pod the variants accepted, and each variant's learned parameters.
fn model_based_inputs(
    settings: &PolicySettings,
    model: &ModelKey,
    inputs: &[VariantInput],
    specs: &[&VariantSpec],
    learners: &[LatencyLearner],
    served: &[&PodSample],
) -> ModelBasedInputs {
    // Every pod of the model pooled: rates add up, means are weighted by each pod's rate.
    let workload = crate::variant::pool(served.iter().copied()).map(|pool| {
        // Requests still queued are demand the completion rate does not show yet: count the
        // queue as arriving within the next minute.
        let queued = pool.waiting * pool.pods as f64;
        Workload {
            arrival_rps: pool.rate_rps + queued / 60.0,
            mean_input_tokens: pool.mean_input_tokens,
            mean_output_tokens: pool.mean_output_tokens,
        }
    });
    ModelBasedInputs {
        workload,
        targets: settings.targets_for(&model.model_id),
        variants: inputs
            .iter()
            .zip(specs)
            .enumerate()
            .map(|(i, (v, spec))| {
                let learner = learners.get(i);
                ModelVariantInput {
                    name: v.name.clone(),
                    cost: v.cost,
                    max_batch: spec.max_batch,
                    params: learner.and_then(LatencyLearner::params),
                    samples: learner.map_or(0, |l| l.samples().0),
                }
            })
            .collect(),
    }
}
