//! Writes VA statuses and Events, only while this instance leads. The actor keeps the
//! bookkeeping (which VA a variant's status goes to, configuration problems, transition times,
//! who is on the safety net) and queues writes; a separate task sends them to the API server.
//!
//! The queue is bounded: statuses are coalesced per VA (a newer status replaces one not yet
//! written, so at most one is pending per VA), and Events wait in a FIFO of at most
//! [`MAX_PENDING_EVENTS`], the oldest dropped and counted when it is full. Each write has a
//! timeout. The write task is restarted (and counted) if it ever dies.
//!
//! A status is written only when it says something new: the same status as the last one
//! written (`lastRunTime` aside) is skipped until [`STATUS_REFRESH`] has passed, so a steady
//! fleet costs the API server a write per VA every few minutes, not one per cycle. A failed
//! write forgets what was written, so the next cycle tries again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wva_actors::messages::{StatusBatch, StatusUpdate, VariantKey};

use super::ops::Ops;
use super::owners::{OwnerId, OwnerRef};
use super::status::{
    Entered, EventSpec, Transitions, VaStatus, apply_patch, decided_status, decision_events,
    invalid_status, missing_target_status, truncate, typed_status,
};
use super::tasks::Current;
use crate::crd::{VariantAutoscaling, VariantAutoscalingStatus};

/// Field manager of the status writes.
pub const STATUS_FIELD_MANAGER: &str = "wva-controller-status";
/// Events waiting at most; past that the oldest is dropped (and counted).
pub const MAX_PENDING_EVENTS: usize = 1024;
/// One write to the API server, at most.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// An unchanged status is written again after this long, so `lastRunTime` is never older.
pub const STATUS_REFRESH: Duration = Duration::from_secs(300);

/// Writes waiting for the write task.
#[derive(Debug, Default)]
struct Pending {
    /// The newest status of each VA, in the order the VAs first got one.
    statuses: BTreeMap<(String, String), (OwnerRef, Value)>,
    events: VecDeque<(ObjectReference, EventSpec)>,
    /// Told once everything queued before them has been sent (tests wait on them instead of
    /// sleeping before they check that nothing was written).
    settled: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// The queue between the actor and the write task.
#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<Pending>,
    /// Per VA: the last status queued for writing (without `lastRunTime`) and when. The write
    /// task removes an entry whose write failed.
    written: Mutex<HashMap<(String, String), (VariantAutoscalingStatus, Instant)>>,
    ready: Notify,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves whole entries only; keep going.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn written(
        &self,
    ) -> MutexGuard<'_, HashMap<(String, String), (VariantAutoscalingStatus, Instant)>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `status` needs writing now: it says something the last one written did not
    /// (`lastRunTime` aside: it changes every cycle), or that one is [`STATUS_REFRESH`] old. If
    /// so, it is noted as written.
    fn claim_write(
        &self,
        key: &(String, String),
        status: &VariantAutoscalingStatus,
        now: Instant,
    ) -> bool {
        let mut said = status.clone();
        said.desired_optimized_alloc.last_run_time = None;
        let mut written = self.written();
        match written.get(key) {
            Some((last, at)) if *last == said && now.duration_since(*at) < STATUS_REFRESH => false,
            _ => {
                written.insert(key.clone(), (said, now));
                true
            }
        }
    }
}

/// The writer actor.
#[derive(Debug)]
pub struct StatusWriter {
    queue: Arc<Queue>,
    ops: Ops,
    /// Leadership as the elector says it now (not as last noted): nothing is queued once it is
    /// lost, even before the control loop hears of it.
    leader: watch::Receiver<bool>,
    /// Variant → the VA its status goes to.
    bindings: HashMap<VariantKey, OwnerRef>,
    problems: HashMap<OwnerId, String>,
    transitions: HashMap<(String, String), Transitions>,
    /// What each variant's last decided update entered (safety net, missing metrics).
    entered: HashMap<VariantKey, Entered>,
}

impl StatusWriter {
    /// Starts the writer and its write task (on the current tokio runtime, restarted if it
    /// dies, stopped by `stop`).
    pub fn start(
        client: kube::Client,
        reporter: Reporter,
        leader: watch::Receiver<bool>,
        ops: Ops,
        stop: CancellationToken,
        current: Current,
    ) -> Addr<Self> {
        let queue = Arc::new(Queue::default());
        let restarts = ops.task_restarts.clone();
        let (q, o, l) = (Arc::clone(&queue), ops.clone(), leader.clone());
        tokio::spawn(super::tasks::restarting(
            "status-writer",
            restarts,
            stop,
            Duration::from_secs(1),
            current,
            move || {
                write_loop(
                    client.clone(),
                    reporter.clone(),
                    Arc::clone(&q),
                    o.clone(),
                    l.clone(),
                )
            },
        ));
        Self {
            queue,
            ops,
            leader,
            bindings: HashMap::new(),
            problems: HashMap::new(),
            transitions: HashMap::new(),
            entered: HashMap::new(),
        }
        .start()
    }

    fn write_status(&mut self, va: &OwnerRef, status: &VaStatus) {
        // An annotated HPA or ScaledObject has no status of ours: its Events say it all.
        if !self.leads() || !va.has_status() {
            return;
        }
        let now = crate::timefmt::format_time(crate::timefmt::wall_clock());
        let transitions = self
            .transitions
            .entry((va.namespace.clone(), va.name.clone()))
            .or_default();
        let typed = typed_status(va, status, transitions, &now);
        let key = (va.namespace.clone(), va.name.clone());
        if !self.queue.claim_write(&key, &typed, Instant::now()) {
            self.ops
                .status_writes
                .with_label_values(&["unchanged"])
                .inc();
            return;
        }
        let body = apply_patch(va, &typed);
        let mut pending = self.queue.lock();
        let replaced = pending.statuses.insert(key, (va.clone(), body));
        drop(pending);
        if replaced.is_some() {
            // Not an error: the newer status is the one that matters.
            self.ops
                .status_writes
                .with_label_values(&["superseded"])
                .inc();
        }
        self.queue.ready.notify_one();
    }

    fn event(&self, va: &OwnerRef, event: EventSpec) {
        self.event_on(va.object_reference(), event);
    }

    fn event_on(&self, regarding: ObjectReference, event: EventSpec) {
        if !self.leads() {
            return;
        }
        let mut pending = self.queue.lock();
        if pending.events.len() >= MAX_PENDING_EVENTS {
            pending.events.pop_front();
            self.ops.events.with_label_values(&["dropped"]).inc();
        }
        pending.events.push_back((regarding, event));
        drop(pending);
        self.queue.ready.notify_one();
    }

    /// The target is missing: the status says so and a Warning Event is raised.
    fn report_missing_target(&mut self, va: &OwnerRef, message: String) {
        let status = missing_target_status(&message, self.problem(va));
        self.write_status(va, &status);
        self.event(va, EventSpec::warning("DeploymentNotFound", message));
    }

    fn leads(&self) -> bool {
        *self.leader.borrow()
    }

    fn problem(&self, va: &OwnerRef) -> Option<&str> {
        self.problems.get(&va.id()).map(String::as_str)
    }
}

impl Actor for StatusWriter {
    type Context = Context<Self>;
}

impl Handler<StatusBatch> for StatusWriter {
    type Result = ();
    fn handle(&mut self, batch: StatusBatch, _: &mut Context<Self>) {
        let mut decided: BTreeMap<OwnerRef, Vec<&StatusUpdate>> = BTreeMap::new();
        for update in &batch.0 {
            match update {
                StatusUpdate::Decided { variant, .. } => {
                    let Some(va) = self.bindings.get(variant).cloned() else {
                        continue;
                    };
                    let was = self.entered.insert(variant.clone(), Entered::of(update));
                    for e in decision_events(update, was.unwrap_or_default()) {
                        self.event(&va, e);
                    }
                    decided.entry(va).or_default().push(update);
                }
                StatusUpdate::TargetMissing {
                    variant,
                    deployment,
                    deleted,
                    ..
                } => {
                    let Some(va) = self.bindings.get(variant).cloned() else {
                        continue;
                    };
                    // "deployment" as the seeds' guides grep for it; a LeaderWorkerSet by its kind.
                    let (kind, name) = match super::targets::target_of(deployment) {
                        ("Deployment", name) => ("deployment", name),
                        other => other,
                    };
                    let message = if *deleted {
                        format!("Target {kind} '{name}' no longer exists")
                    } else {
                        format!("Target {kind} '{name}' not found")
                    };
                    self.entered.remove(variant);
                    self.report_missing_target(&va, message);
                }
                StatusUpdate::Faulted {
                    variant, message, ..
                } => {
                    let Some(va) = self.bindings.get(variant).cloned() else {
                        continue;
                    };
                    self.event(&va, EventSpec::warning(DECISION_FAILED, message.clone()));
                }
            }
        }
        for (va, updates) in decided {
            if let Some(status) = decided_status(&updates, self.problem(&va)) {
                self.write_status(&va, &status);
            }
        }
    }
}

/// Status bookkeeping from the inventory's changes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum WriterNote {
    /// A variant's status goes to this VA (`None`: the variant is gone).
    Bind(VariantKey, Option<OwnerRef>),
    /// A VA's configuration problem (`None`: fixed).
    Problem(OwnerRef, Option<String>),
    /// A VA uses the deprecated `perfParms`.
    Deprecated(OwnerRef),
    /// A discovery-mode VA matches no Deployment.
    NoTargets(OwnerRef, String),
    /// Entries of a configuration ConfigMap that were skipped (Warning Events on it).
    ConfigProblems {
        namespace: String,
        config_map: String,
        problems: Vec<String>,
    },
    /// Leadership gained or lost.
    Leader(bool),
    /// Answer once every write queued so far has been sent (or dropped).
    Settled(tokio::sync::oneshot::Sender<()>),
}

impl Handler<WriterNote> for StatusWriter {
    type Result = ();
    fn handle(&mut self, note: WriterNote, _: &mut Context<Self>) {
        match note {
            WriterNote::Bind(variant, Some(va)) => {
                self.bindings.insert(variant, va);
            }
            WriterNote::Bind(variant, None) => {
                self.entered.remove(&variant);
                // The owner's bookkeeping goes with its last variant (VAs come and go: keeping
                // it would grow without bound).
                if let Some(owner) = self.bindings.remove(&variant)
                    && !self.bindings.values().any(|b| b.id() == owner.id())
                {
                    let key = (owner.namespace.clone(), owner.name.clone());
                    self.transitions.remove(&key);
                    self.queue.written().remove(&key);
                }
            }
            WriterNote::Problem(va, Some(problem)) => {
                tracing::warn!(object = %va, %problem, "invalid configuration");
                self.problems.insert(va.id(), problem.clone());
                let bound = self.bindings.values().any(|b| b.id() == va.id());
                if !bound {
                    // Nothing will be decided for it: say so in its status now.
                    self.write_status(&va, &invalid_status(&problem));
                }
                self.event(&va, EventSpec::warning("InvalidConfiguration", problem));
            }
            WriterNote::Problem(va, None) => {
                self.problems.remove(&va.id());
            }
            WriterNote::Deprecated(va) => {
                tracing::warn!(va = %format!("{}/{}", va.namespace, va.name), "Deprecated: spec.modelProfile.accelerators[].perfParms is ignored; the controller learns these parameters");
                self.event(
                    &va,
                    EventSpec::warning(
                        "Deprecated",
                        "spec.modelProfile.accelerators[].perfParms is ignored: the controller learns the latency parameters itself; remove the field",
                    ),
                );
            }
            WriterNote::NoTargets(va, why) => self.report_missing_target(&va, why),
            WriterNote::ConfigProblems {
                namespace,
                config_map,
                problems,
            } => {
                let regarding = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("ConfigMap".into()),
                    name: Some(config_map),
                    namespace: Some(namespace),
                    ..Default::default()
                };
                for p in problems {
                    self.event_on(
                        regarding.clone(),
                        EventSpec::warning("InvalidConfiguration", p),
                    );
                }
            }
            WriterNote::Settled(done) => {
                self.queue.lock().settled.push(done);
                self.queue.ready.notify_one();
            }
            WriterNote::Leader(leader) => {
                // Another leader may have written since: the next status of every VA is written.
                self.queue.written().clear();
                if leader {
                    // Statuses written by another leader carry its transition times.
                    self.transitions.clear();
                } else {
                    // A follower writes nothing, not even what was queued while it led.
                    *self.queue.lock() = Pending::default();
                }
            }
        }
    }
}

/// Sends queued writes until the process stops: statuses first (newest per VA), then Events
/// in order. Each write runs under its own span and a timeout. Leadership is checked before
/// every write: once the Lease is lost, what is still queued is dropped (counted `withheld`).
async fn write_loop(
    client: kube::Client,
    reporter: Reporter,
    queue: Arc<Queue>,
    ops: Ops,
    leader: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(client.clone(), reporter);
    let params = PatchParams::apply(STATUS_FIELD_MANAGER).force();
    loop {
        let Pending {
            statuses,
            events,
            settled,
        } = std::mem::take(&mut *queue.lock());
        if statuses.is_empty() && events.is_empty() && settled.is_empty() {
            queue.ready.notified().await;
            continue;
        }
        for ((namespace, name), (_, body)) in statuses {
            if !*leader.borrow() {
                ops.status_writes.with_label_values(&["withheld"]).inc();
                continue;
            }
            let api: Api<VariantAutoscaling> = Api::namespaced(client.clone(), &namespace);
            let patch = Patch::Apply(&body);
            let write = api.patch_status(&name, &params, &patch);
            let result = tokio::time::timeout(WRITE_TIMEOUT, write)
                .instrument(tracing::debug_span!("status", %namespace, va = %name))
                .await;
            let outcome = match result {
                Ok(Ok(_)) => "ok",
                Ok(Err(kube::Error::Api(e))) if e.code == 404 => {
                    tracing::debug!(%namespace, va = %name, "VA gone before its status was written");
                    "gone"
                }
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => {
                    tracing::warn!(%namespace, va = %name, error = %e, "VA status write conflicted");
                    "conflict"
                }
                Ok(Err(e)) => {
                    tracing::warn!(%namespace, va = %name, error = %e, "cannot write the VA status");
                    "error"
                }
                Err(_) => {
                    tracing::warn!(%namespace, va = %name, timeout_s = WRITE_TIMEOUT.as_secs(), "VA status write timed out");
                    "timeout"
                }
            };
            if !matches!(outcome, "ok" | "gone") {
                // Not written: the next cycle's status is written even if it is the same.
                queue.written().remove(&(namespace, name));
            }
            ops.status_writes.with_label_values(&[outcome]).inc();
        }
        for (regarding, event) in events {
            if !*leader.borrow() {
                ops.events.with_label_values(&["withheld"]).inc();
                continue;
            }
            let e = Event {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason.to_string(),
                note: Some(truncate(&event.note, 1000)),
                action: if regarding.kind.as_deref() == Some("ConfigMap") {
                    "LoadConfiguration".into()
                } else {
                    "Autoscale".into()
                },
                secondary: None,
            };
            let result = tokio::time::timeout(WRITE_TIMEOUT, recorder.publish(&e, &regarding))
                .instrument(tracing::debug_span!("event", reason = event.reason))
                .await;
            let outcome = match result {
                Ok(Ok(())) => "ok",
                Ok(Err(err)) => {
                    tracing::warn!(regarding = ?regarding.name, error = %err, "cannot publish an Event");
                    "error"
                }
                Err(_) => "timeout",
            };
            ops.events.with_label_values(&[outcome]).inc();
        }
        for done in settled {
            let _ = done.send(());
        }
    }
}

/// Reason of the Warning Event on a VA whose model's supervisor failed (CONTRACT section 19).
pub const DECISION_FAILED: &str = "DecisionFailed";

/// Reason of the Warning Event on a ConfigMap whose entries were ignored or skipped.
pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";

/// Raises a Warning Event on a ConfigMap of the controller's (shown by `kubectl describe
/// configmap`), for what is found once at start-up rather than by a watch: the main ConfigMap
/// setting the Prometheus connection it is not trusted with. Best effort: a failure is logged.
pub async fn warn_on_config_map(
    client: kube::Client,
    instance: &str,
    namespace: &str,
    config_map: &str,
    note: String,
) {
    let reporter = Reporter {
        controller: "wva-controller".into(),
        instance: Some(instance.to_string()),
    };
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(config_map.to_string()),
        namespace: Some(namespace.to_string()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: INVALID_CONFIGURATION.into(),
        note: Some(truncate(&note, 1000)),
        action: "LoadConfiguration".into(),
        secondary: None,
    };
    let recorder = Recorder::new(client, reporter);
    match tokio::time::timeout(WRITE_TIMEOUT, recorder.publish(&event, &regarding)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(%config_map, error = %e, "cannot publish an Event"),
        Err(_) => tracing::warn!(%config_map, "publishing an Event timed out"),
    }
}
