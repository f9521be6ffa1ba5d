//! The model supervisor: owns the variant actors of one model, runs the policy over all of them
//! each cycle, records inputs and decision in the log, then tells the publisher and the status
//! port. A variant actor that stops on an error is restarted here from the decision log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use wva_storage::Record;

use crate::log_actor::{AppendBatch, Flush, Forget, LastGoodOf, LearnerOf, LogActor};
use crate::messages::{
    DeploymentState, Metrics, MetricsState, ModelKey, OptimizationState, PodSample, PolicySettings,
    StatusBatch, StatusUpdate, Timestamp, VariantKey, VariantSpec,
};
use crate::policy::cycle::{CycleInputs, ModelBasedInputs, decide_cycle};
use crate::policy::model_based::ModelVariantInput;
use crate::policy::queueing::Workload;
use crate::policy::{FallbackSource, ModelDecision, OperatingMode};
use crate::publisher::{Publish, Published, Publisher, ScalingChange, Unpublish};
use crate::record::{CycleFacts, cycle_record, learner_of, model_based_record};
use crate::variant::{
    Decided, DeploymentChanged, Observe, RestoreLearner, ServingPool, UpdateSpec, VariantActor,
    VariantView,
};

/// Where decisions go.
#[derive(Debug, Clone)]
pub struct Ports {
    pub log: Addr<LogActor>,
    pub publisher: Addr<Publisher>,
    /// The VA status writer (or the simulator's recorder); none in tests that do not need it.
    pub status: Option<Recipient<StatusBatch>>,
}

/// What a cycle wants done, in the order it must happen: records made durable, then metrics
/// published, then statuses written. Cycles of many models are merged and applied at once.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<Record>,
    pub published: Vec<Published>,
    pub statuses: Vec<StatusUpdate>,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.records.extend(other.records);
        self.published.extend(other.published);
        self.statuses.extend(other.statuses);
    }

    /// Appends and flushes the records, then publishes, then sends the statuses. A log failure
    /// is reported but does not hold back the decision: the safety net prefers a published
    /// decision to none.
    pub async fn apply(self, ports: &Ports) {
        if !self.records.is_empty() {
            let appended = ports.log.send(AppendBatch(self.records)).await;
            let flushed = ports.log.send(Flush).await;
            for result in [appended.map(|r| r.map(|_| ())), flushed] {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "decision log: write failed"),
                    Err(e) => tracing::warn!(error = %e, "decision log: unavailable"),
                }
            }
        }
        if !self.published.is_empty() {
            let _ = ports.publisher.send(Publish(self.published)).await;
        }
        if let Some(status) = &ports.status
            && !self.statuses.is_empty()
        {
            let _ = status.send(StatusBatch(self.statuses)).await;
        }
    }
}

#[derive(Debug)]
struct Slot {
    addr: Addr<VariantActor>,
    spec: VariantSpec,
    deployment: Option<DeploymentState>,
}

/// Supervisor of one model's variants.
#[derive(Debug)]
pub struct ModelSupervisor {
    model: ModelKey,
    slots: BTreeMap<String, Slot>,
    settings: Arc<PolicySettings>,
    ports: Ports,
    /// The latest metrics read, for cycles triggered by a Deployment event between ticks.
    last_metrics: Option<Metrics>,
    restarts: u64,
}

impl ModelSupervisor {
    pub fn new(model: ModelKey, settings: Arc<PolicySettings>, ports: Ports) -> Self {
        Self {
            model,
            slots: BTreeMap::new(),
            settings,
            ports,
            last_metrics: None,
            restarts: 0,
        }
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
    /// Variant actors restarted from the log during the cycle.
    pub restarted: usize,
}

/// Start managing a variant.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AddVariant {
    pub spec: VariantSpec,
    pub deployment: Option<DeploymentState>,
    /// Last good desired count recovered from the decision log.
    pub last_good: Option<u32>,
    pub at: Timestamp,
}

impl Handler<AddVariant> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AddVariant, _: &mut Context<Self>) {
        let name = msg.spec.key.name.clone();
        if let Some(old) = self.slots.remove(&name) {
            old.addr.do_send(StopVariant);
        }
        let addr = start_variant(
            &self.ports,
            self.settings.mode,
            msg.spec.clone(),
            msg.deployment,
            msg.last_good,
        );
        if msg.deployment.is_none()
            && let Some(status) = &self.ports.status
        {
            status.do_send(StatusBatch(vec![StatusUpdate::TargetMissing {
                variant: msg.spec.key.clone(),
                at: msg.at,
                deployment: msg.spec.deployment.clone(),
                deleted: false,
            }]));
        }
        self.slots.insert(
            name,
            Slot {
                addr,
                spec: msg.spec,
                deployment: msg.deployment,
            },
        );
    }
}

/// The VA of a variant changed, but not its model or Deployment.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateVariant(pub VariantSpec);

impl Handler<UpdateVariant> for ModelSupervisor {
    type Result = ();
    fn handle(&mut self, msg: UpdateVariant, _: &mut Context<Self>) {
        if let Some(slot) = self.slots.get_mut(&msg.0.key.name) {
            slot.spec = msg.0.clone();
            slot.addr.do_send(UpdateSpec(msg.0));
        }
    }
}

/// Stop managing a variant: its series go, and its last-good entry is forgotten.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct DropVariant(pub VariantKey);

impl Handler<DropVariant> for ModelSupervisor {
    type Result = ResponseFuture<usize>;
    fn handle(&mut self, msg: DropVariant, _: &mut Context<Self>) -> Self::Result {
        if let Some(slot) = self.slots.remove(&msg.0.name) {
            slot.addr.do_send(StopVariant);
        }
        let remaining = self.slots.len();
        let ports = self.ports.clone();
        Box::pin(async move {
            retire(&ports, &msg.0).await;
            remaining
        })
    }
}

/// Starts a variant's actor: on a new VA, and again after the actor stopped on bad input. In
/// the model-based modes, what the variant learned before comes back from the decision log; it
/// arrives while the actor already runs, and is kept only if it knows more.
fn start_variant(
    ports: &Ports,
    mode: OperatingMode,
    spec: VariantSpec,
    deployment: Option<DeploymentState>,
    last_good: Option<u32>,
) -> Addr<VariantActor> {
    let key = spec.key.clone();
    let actor = VariantActor::new(spec, deployment, last_good).start();
    if mode != OperatingMode::CapacityOnly {
        let (log, restored) = (ports.log.clone(), actor.clone());
        actix::spawn(async move {
            if let Ok(Ok(Some(learned))) = log.send(LearnerOf(key)).await {
                restored.do_send(RestoreLearner(learner_of(&learned)));
            }
        });
    }
    actor
}

/// A variant that stops being decided for (VA removed, or Deployment gone): its series go, and
/// its last-good entry is forgotten so that a recreated one starts fresh.
async fn retire(ports: &Ports, variant: &VariantKey) {
    let _ = ports.publisher.send(Unpublish(variant.clone())).await;
    if let Ok(Err(e)) = ports.log.send(Forget(variant.clone())).await {
        tracing::warn!(%variant, error = %e, "decision log: cannot forget a retired variant");
    }
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct StopVariant;

impl Handler<StopVariant> for VariantActor {
    type Result = ();
    fn handle(&mut self, _: StopVariant, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A Deployment this model's variants may target changed (`None`: deleted).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DeploymentUpdate {
    pub deployment: String,
    pub state: Option<DeploymentState>,
    pub at: Timestamp,
}

impl Handler<DeploymentUpdate> for ModelSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: DeploymentUpdate, _: &mut Context<Self>) -> Self::Result {
        let mut created = false;
        // (variant actor, variant, whether its Deployment is gone)
        let mut changed = Vec::new();
        for slot in self
            .slots
            .values_mut()
            .filter(|s| s.spec.deployment == msg.deployment)
        {
            let deleted = slot.deployment.is_some() && msg.state.is_none();
            created |= slot.deployment.is_none() && msg.state.is_some();
            if deleted {
                // Gone: nothing decided for it carries over, not even the VA status.
                slot.spec.status_desired = None;
            }
            slot.deployment = msg.state;
            changed.push((slot.addr.clone(), slot.spec.key.clone(), deleted));
        }
        let (ports, state, deployment, at) =
            (self.ports.clone(), msg.state, msg.deployment, msg.at);
        Box::pin(
            async move {
                for (addr, key, deleted) in changed {
                    let _ = addr.send(DeploymentChanged(state)).await;
                    if deleted {
                        retire(&ports, &key).await;
                        if let Some(status) = &ports.status {
                            let _ = status
                                .send(StatusBatch(vec![StatusUpdate::TargetMissing {
                                    variant: key,
                                    at,
                                    deployment: deployment.clone(),
                                    deleted: true,
                                }]))
                                .await;
                        }
                    }
                }
            }
            .into_actor(self)
            .map(move |(), act, ctx| {
                // A new Deployment is decided for at once, not at the next tick.
                if created && let Some(metrics) = act.last_metrics.clone() {
                    ctx.notify(RunCycle {
                        at,
                        metrics,
                        trigger: "deployment-created",
                        defer_effects: false,
                    });
                }
            }),
        )
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

/// Run the policy for this model.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ModelCycle")]
pub struct RunCycle {
    pub at: Timestamp,
    pub metrics: Metrics,
    /// What started the cycle, recorded in the log: `tick`, `deployment-created`.
    pub trigger: &'static str,
    /// Return the effects for the caller to apply with other models' (a tick); otherwise the
    /// supervisor applies them itself (a cycle triggered by an event).
    pub defer_effects: bool,
}

/// The result of one model's cycle.
#[derive(Debug, Default)]
pub struct ModelCycle {
    pub outcome: ModelOutcome,
    /// Empty unless the cycle was asked to defer its effects.
    pub effects: Effects,
}

impl<A: Actor, M: Message<Result = ModelCycle>> actix::dev::MessageResponse<A, M> for ModelCycle {
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<ModelCycle>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

impl Handler<RunCycle> for ModelSupervisor {
    type Result = ResponseActFuture<Self, ModelCycle>;

    fn handle(&mut self, msg: RunCycle, _: &mut Context<Self>) -> Self::Result {
        self.last_metrics = Some(msg.metrics.clone());
        let plan = CyclePlan {
            model: self.model.clone(),
            slots: self
                .slots
                .iter()
                .filter(|(_, s)| s.deployment.is_some())
                .map(|(name, s)| (name.clone(), s.addr.clone(), s.spec.clone(), s.deployment))
                .collect(),
            settings: Arc::clone(&self.settings),
            ports: self.ports.clone(),
            cycle: msg,
        };
        let defer = plan.cycle.defer_effects;
        let ports = self.ports.clone();
        Box::pin(
            async move {
                let (outcome, effects, replaced) = run_cycle(plan).await;
                if defer {
                    (ModelCycle { outcome, effects }, replaced)
                } else {
                    effects.apply(&ports).await;
                    let effects = Effects::default();
                    (ModelCycle { outcome, effects }, replaced)
                }
            }
            .into_actor(self)
            .map(|(cycle, replaced), act, _| {
                for (name, addr) in replaced {
                    if let Some(slot) = act.slots.get_mut(&name) {
                        slot.addr = addr;
                        act.restarts += 1;
                    }
                }
                cycle
            }),
        )
    }
}

struct CyclePlan {
    model: ModelKey,
    slots: Vec<(
        String,
        Addr<VariantActor>,
        VariantSpec,
        Option<DeploymentState>,
    )>,
    settings: Arc<PolicySettings>,
    ports: Ports,
    cycle: RunCycle,
}

type Replaced = Vec<(String, Addr<VariantActor>)>;

async fn run_cycle(plan: CyclePlan) -> (ModelOutcome, Effects, Replaced) {
    let CyclePlan {
        model,
        slots,
        settings,
        ports,
        cycle,
    } = plan;
    let mut outcome = ModelOutcome::default();
    let mut effects = Effects::default();
    if slots.is_empty() {
        return (outcome, effects, Vec::new());
    }
    let mut by_deployment: HashMap<&str, Vec<PodSample>> = HashMap::new();
    if let Metrics::Read(snapshot) = &cycle.metrics
        && let Some(samples) = snapshot.by_model.get(&model)
    {
        for s in samples {
            by_deployment
                .entry(s.deployment.as_str())
                .or_default()
                .push(s.clone());
        }
    }

    // 1. Fan the snapshot out to the variants and collect their views.
    let learn = settings.mode != OperatingMode::CapacityOnly;
    let mut views: Vec<(Addr<VariantActor>, VariantView)> = Vec::with_capacity(slots.len());
    let mut replaced = Vec::new();
    let mut fault = None;
    for (name, addr, spec, deployment) in slots {
        let samples = by_deployment
            .remove(spec.deployment.as_str())
            .unwrap_or_default();
        let observed = addr
            .send(Observe {
                variant: spec.key.clone(),
                samples,
                learn,
            })
            .await;
        let problem = match observed {
            Ok(Ok(view)) => {
                views.push((addr, view));
                continue;
            }
            Ok(Err(f)) => f.to_string(),
            Err(e) => format!("variant {}: actor unavailable ({e})", spec.key),
        };
        // The actor stopped: restart it from the decision log and decide this model on the
        // safety net this cycle, since its signals cannot be trusted.
        let last_good = match ports.log.send(LastGoodOf(spec.key.clone())).await {
            Ok(Ok(v)) => v.map(|lg| lg.desired),
            _ => None,
        };
        tracing::warn!(model = %model, %problem, last_good = ?last_good, "variant actor stopped; restarted from the decision log");
        let fresh = start_variant(&ports, settings.mode, spec.clone(), deployment, last_good);
        if let Ok(Ok(view)) = fresh
            .send(Observe {
                variant: spec.key.clone(),
                samples: Vec::new(),
                learn: false,
            })
            .await
        {
            views.push((fresh.clone(), view));
        }
        replaced.push((name, fresh));
        outcome.restarted += 1;
        fault = Some(problem);
    }

    // 2. Decide.
    let (config, _) = settings
        .scaling
        .for_model(&model.namespace, &model.model_id);
    let thresholds = config.thresholds;
    let inputs: Vec<_> = views.iter().map(|(_, v)| v.input()).collect();
    let metrics_error = match &cycle.metrics {
        Metrics::Failed(e) => Some(e.clone()),
        Metrics::Read(_) => fault,
    };
    let (scale_to_zero, _) = settings.scale_to_zero_for(&model);
    let model_inputs =
        (learn || scale_to_zero).then(|| model_based_inputs(&settings, &model, &views));
    let request_count = match &cycle.metrics {
        Metrics::Read(snapshot) => snapshot.request_counts.get(&model).cloned(),
        Metrics::Failed(_) => None,
    };
    let decided = decide_cycle(CycleInputs {
        mode: settings.mode,
        thresholds: &thresholds,
        variants: &inputs,
        metrics_error: metrics_error.as_deref(),
        model_based: model_inputs.as_ref().filter(|_| learn),
        scale_to_zero,
        request_count: request_count.as_ref(),
    });
    let decision = &decided.decision;

    // 3. Record inputs and decision before anyone acts on it.
    let record = cycle_record(CycleFacts {
        model: &model,
        at: cycle.at,
        mode: settings.mode,
        config_version: &settings.scaling.version,
        thresholds,
        metrics_error: metrics_error.clone(),
        inputs: &inputs,
        decision,
        trigger: cycle.trigger,
    });
    effects.records.push(Record::Cycle(record));
    if let Some(m) = &model_inputs {
        let learners: Vec<_> = views.iter().map(|(_, v)| v.learner.clone()).collect();
        effects.records.push(Record::ModelBased(model_based_record(
            &model,
            cycle.at,
            settings.mode,
            m,
            &learners,
            (scale_to_zero, request_count.as_ref()),
            &decided,
        )));
    }
    let cause = decided.cause();

    // 4. Tell the variants; collect what to publish and which statuses to write.
    let problems = settings
        .scaling
        .problems_for_model(&model.namespace, &model.model_id);
    for ((addr, view), target) in views.iter().zip(&decision.variants) {
        addr.do_send(Decided(target.target));
        let previous = view.previous_desired();
        let baseline = previous.unwrap_or(target.current_replicas);
        let change = (target.target != baseline).then_some(ScalingChange {
            direction: if target.target > baseline {
                "up"
            } else {
                "down"
            },
            reason: cause,
        });
        outcome.changed += usize::from(change.is_some());
        if let Some(source) = target.fallback_source {
            tracing::warn!(
                variant = %view.spec.key,
                currentReplicas = target.current_replicas,
                desiredReplicas = target.target,
                accelerator = %target.accelerator,
                fallbackSource = source.as_str(),
                "Safety net activated: emitted fallback metrics"
            );
        }
        if ports.status.is_some() {
            effects.statuses.push(StatusUpdate::Decided {
                variant: view.spec.key.clone(),
                at: cycle.at,
                desired: target.target,
                previous_desired: previous,
                current: target.current_replicas,
                accelerator: target.accelerator.clone(),
                metrics: metrics_state(&cycle.metrics, view),
                optimization: optimization_state(decision, target.fallback_source, &problems),
                reason: target.reason.clone(),
            });
        }
        effects.published.push(Published {
            variant: view.spec.key.clone(),
            accelerator: target.accelerator.clone(),
            desired: target.target,
            current: target.current_replicas,
            change,
        });
    }
    outcome.decided = decision.variants.len();
    outcome.safety_net = decision.safety_net;
    (outcome, effects, replaced)
}

fn metrics_state(metrics: &Metrics, view: &VariantView) -> MetricsState {
    match metrics {
        Metrics::Failed(e) => MetricsState::PrometheusError(e.clone()),
        Metrics::Read(snapshot) if view.pods.is_empty() => snapshot
            .stale
            .get(&(
                view.spec.key.namespace.clone(),
                view.spec.deployment.clone(),
            ))
            .map_or(MetricsState::Missing, |&newest_age_s| MetricsState::Stale {
                newest_age_s,
            }),
        Metrics::Read(_) => MetricsState::Found,
    }
}

fn optimization_state(
    decision: &ModelDecision,
    fallback: Option<FallbackSource>,
    problems: &[&crate::policy::InvalidOverride],
) -> OptimizationState {
    match (fallback, problems.first()) {
        (Some(source), _) if decision.safety_net => OptimizationState::SafetyNet(source),
        (_, Some(problem)) => OptimizationState::InvalidConfiguration(problem.message.clone()),
        _ => OptimizationState::Succeeded,
    }
}

/// The model-based optimizer's inputs from the variants' views: the model's demand and request
/// shape pooled over every variant, and each variant's learned parameters.
fn model_based_inputs(
    settings: &PolicySettings,
    model: &ModelKey,
    views: &[(Addr<VariantActor>, VariantView)],
) -> ModelBasedInputs {
    // Every pod of the model pooled: rates add up, means are weighted by each pod's rate.
    let workload = ServingPool::of(views.iter().flat_map(|(_, v)| &v.pods)).map(|pool| {
        // Requests still queued are demand the completion rate does not show yet: count the
        // queue as arriving within the next minute.
        let queued = pool.waiting * pool.pods as f64;
        Workload {
            arrival_rps: pool.request_rate_rps + queued / 60.0,
            mean_input_tokens: pool.mean_input_tokens,
            mean_output_tokens: pool.mean_output_tokens,
        }
    });
    ModelBasedInputs {
        workload,
        targets: settings.targets_for(&model.model_id),
        variants: views
            .iter()
            .map(|(_, v)| ModelVariantInput {
                name: v.spec.key.name.clone(),
                cost: v.spec.cost,
                max_batch: v.spec.max_batch,
                params: v.learner.params(),
                samples: v.learner.samples().0,
            })
            .collect(),
    }
}
