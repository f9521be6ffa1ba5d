//! Writes VA statuses and Events, only while this instance leads. The actor keeps the
//! bookkeeping (which VA a variant's status goes to, configuration problems, transition times,
//! who is on the safety net) and hands each write to the write task over a channel; the task
//! owns the queue and what was last written, and sends the writes to the API server. Nothing is
//! shared between them.
//!
//! The queue is bounded: statuses are coalesced per VA (a newer status replaces one not yet
//! written, so at most one is pending per VA), and Events wait in a FIFO of at most
//! [`MAX_PENDING_EVENTS`], the oldest dropped and counted when it is full. The task takes in
//! what the actor sends while a write is on its way, so the channel holds only what arrived
//! since. Each write has a timeout. The write task is restarted (and counted) if it ever dies;
//! the channel and the queue pass to the restarted one, so a restart loses at most the write
//! that was on its way (and that one's status is written again on the next cycle).
//!
//! A status is written only when it says something new: the same status as the last one
//! written (`lastRunTime` aside) is skipped until [`STATUS_REFRESH`] has passed, so a steady
//! fleet costs the API server a write per VA every few minutes, not one per cycle. A failed
//! write forgets what was written, so the next cycle tries again. Leadership is checked before
//! every write: once the Lease is lost, nothing more goes out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
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

/// A VA by namespace and name.
type VaKey = (String, String);

/// What the actor hands the write task.
#[derive(Debug)]
enum Write {
    /// A VA's status: `said` is the status without `lastRunTime`, `body` the apply patch.
    Status {
        key: VaKey,
        said: Box<VariantAutoscalingStatus>,
        body: Value,
    },
    Event(Box<ObjectReference>, EventSpec),
    /// The VA is gone: forget what was written to it.
    Forget(VaKey),
    /// Leadership changed: another leader may have written since, so what was written is
    /// forgotten; lost, what is queued is dropped too.
    Leader(bool),
    /// Answer once nothing is queued or on its way.
    Settled(oneshot::Sender<()>),
}

/// The writer actor.
#[derive(Debug)]
pub struct StatusWriter {
    /// To the write task (whichever runs: the channel outlives a task that dies).
    writes: mpsc::UnboundedSender<Write>,
    /// Leadership as the elector says it now (not as last noted): nothing is queued once it is
    /// lost, even before the control loop hears of it.
    leader: watch::Receiver<bool>,
    /// Variant → the VA its status goes to.
    bindings: HashMap<VariantKey, OwnerRef>,
    problems: HashMap<OwnerId, String>,
    transitions: HashMap<VaKey, Transitions>,
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
        let (writes, received) = mpsc::unbounded_channel();
        let handoff = Handoff::new(received);
        let addr = Self {
            writes,
            leader: leader.clone(),
            bindings: HashMap::new(),
            problems: HashMap::new(),
            transitions: HashMap::new(),
            entered: HashMap::new(),
        }
        .start();
        let restarts = ops.task_restarts.clone();
        tokio::spawn(super::tasks::restarting(
            "status-writer",
            restarts,
            stop,
            Duration::from_secs(1),
            current,
            move || {
                let sender = Sender {
                    client: client.clone(),
                    recorder: Recorder::new(client.clone(), reporter.clone()),
                    params: PatchParams::apply(STATUS_FIELD_MANAGER).force(),
                    ops: ops.clone(),
                    leader: leader.clone(),
                };
                write_task(sender, handoff.clone())
            },
        ));
        addr
    }

    fn leads(&self) -> bool {
        *self.leader.borrow()
    }

    fn send(&self, write: Write) {
        // The task is being restarted: this write is lost; the next cycle's statuses go out.
        let _ = self.writes.send(write);
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
        let body = apply_patch(va, &typed);
        let mut said = typed;
        said.desired_optimized_alloc.last_run_time = None;
        self.send(Write::Status {
            key: (va.namespace.clone(), va.name.clone()),
            said: Box::new(said),
            body,
        });
    }

    fn event(&self, va: &OwnerRef, event: EventSpec) {
        self.event_on(va.object_reference(), event);
    }

    fn event_on(&self, regarding: ObjectReference, event: EventSpec) {
        if !self.leads() {
            return;
        }
        self.send(Write::Event(Box::new(regarding), event));
    }

    /// The target is missing: the status says so and a Warning Event is raised.
    fn report_missing_target(&mut self, va: &OwnerRef, message: String) {
        let status = missing_target_status(&message, self.problem(va));
        self.write_status(va, &status);
        self.event(va, EventSpec::warning("DeploymentNotFound", message));
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
                    self.send(Write::Forget(key));
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
            WriterNote::Settled(done) => self.send(Write::Settled(done)),
            WriterNote::Leader(leader) => {
                if leader {
                    // Statuses written by another leader carry its transition times.
                    self.transitions.clear();
                }
                self.send(Write::Leader(leader));
            }
        }
    }
}

/// Writes waiting, and what was last written: owned by the write task alone.
#[derive(Debug, Default)]
struct Queue {
    /// The newest status of each VA, in VA order.
    statuses: BTreeMap<VaKey, Value>,
    events: VecDeque<(Box<ObjectReference>, EventSpec)>,
    /// Per VA: the last status queued for writing (without `lastRunTime`) and when. Removed
    /// when its write failed, so the next status is written whatever it says.
    written: HashMap<VaKey, (Box<VariantAutoscalingStatus>, Instant)>,
    settled: Vec<oneshot::Sender<()>>,
    /// The status on its way, if any: a task that dies meanwhile may not have written it.
    in_flight: Option<VaKey>,
}

/// One write taken from the queue.
enum Job {
    Status(VaKey, Value),
    Event(Box<ObjectReference>, EventSpec),
}

impl Queue {
    /// Takes in what the actor sent.
    fn take(&mut self, write: Write, ops: &Ops) {
        match write {
            Write::Status { key, said, body } => {
                let now = Instant::now();
                // Skipped when it says what the last one written said, unless that is old.
                let unchanged = self.written.get(&key).is_some_and(|(last, at)| {
                    *last == said && now.duration_since(*at) < STATUS_REFRESH
                });
                if unchanged {
                    ops.status_writes.with_label_values(&["unchanged"]).inc();
                    return;
                }
                self.written.insert(key.clone(), (said, now));
                if self.statuses.insert(key, body).is_some() {
                    // Not an error: the newer status is the one that matters.
                    ops.status_writes.with_label_values(&["superseded"]).inc();
                }
            }
            Write::Event(regarding, event) => {
                if self.events.len() >= MAX_PENDING_EVENTS {
                    self.events.pop_front();
                    ops.events.with_label_values(&["dropped"]).inc();
                }
                self.events.push_back((regarding, event));
            }
            Write::Forget(key) => {
                self.written.remove(&key);
            }
            Write::Leader(leader) => {
                self.written.clear();
                if !leader {
                    // A follower writes nothing, not even what was queued while it led.
                    self.statuses.clear();
                    self.events.clear();
                }
            }
            Write::Settled(done) => self.settled.push(done),
        }
    }

    /// The next write: statuses first (newest per VA), then Events in order.
    fn next(&mut self) -> Option<Job> {
        if let Some((key, body)) = self.statuses.pop_first() {
            return Some(Job::Status(key, body));
        }
        let (regarding, event) = self.events.pop_front()?;
        Some(Job::Event(regarding, event))
    }

    /// Answers whoever waits for the queue to be empty.
    fn settle(&mut self) {
        for done in self.settled.drain(..) {
            let _ = done.send(());
        }
    }
}

/// What the write task sends with.
struct Sender {
    client: kube::Client,
    recorder: Recorder,
    params: PatchParams,
    ops: Ops,
    leader: watch::Receiver<bool>,
}

/// The write task's channel and queue, between one task and the next. The only lock here is
/// this hand-over, taken when a task starts and when it ends, never per write.
#[derive(Debug, Clone)]
struct Handoff(Arc<Mutex<Option<Parts>>>);

type Parts = (mpsc::UnboundedReceiver<Write>, Queue);

impl Handoff {
    fn new(received: mpsc::UnboundedReceiver<Write>) -> Self {
        Self(Arc::new(Mutex::new(Some((received, Queue::default())))))
    }

    /// The parts, held until dropped: a task that ends, panics or is aborted gives them back.
    fn take(&self) -> Option<Held> {
        let parts = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(Held {
            slot: self.clone(),
            parts: Some(parts),
        })
    }
}

/// The parts while a task runs.
struct Held {
    slot: Handoff,
    parts: Option<Parts>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((received, mut queue)) = self.parts.take() {
            // Maybe not written: the next status of that VA is written whatever it says.
            if let Some(key) = queue.in_flight.take() {
                queue.written.remove(&key);
            }
            *self.slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((received, queue));
        }
    }
}

/// The write task: takes in the actor's writes, also while one is on its way, and sends them.
async fn write_task(sender: Sender, handoff: Handoff) {
    let Some(mut held) = handoff.take() else {
        tracing::error!("status writer: another write task holds the queue");
        return;
    };
    let Some((received, queue)) = held.parts.as_mut() else {
        return;
    };
    let mut open = true;
    loop {
        while let Ok(write) = received.try_recv() {
            queue.take(write, &sender.ops);
        }
        let Some(job) = queue.next() else {
            queue.settle();
            if !open {
                return;
            }
            match received.recv().await {
                Some(write) => queue.take(write, &sender.ops),
                None => return,
            }
            continue;
        };
        queue.in_flight = match &job {
            Job::Status(key, _) => Some(key.clone()),
            Job::Event(..) => None,
        };
        let sending = sender.send(job);
        tokio::pin!(sending);
        let failed = loop {
            tokio::select! {
                failed = &mut sending => break failed,
                write = received.recv(), if open => match write {
                    Some(write) => queue.take(write, &sender.ops),
                    None => open = false,
                },
            }
        };
        queue.in_flight = None;
        if let Some(key) = failed {
            // Not written: the next cycle's status is written even if it is the same.
            queue.written.remove(&key);
        }
    }
}

impl Sender {
    /// Sends one write, under its own span and a timeout, counted by outcome; the VA of a
    /// status that could not be written, if so.
    async fn send(&self, job: Job) -> Option<VaKey> {
        if !*self.leader.borrow() {
            let series = match job {
                Job::Status(..) => &self.ops.status_writes,
                Job::Event(..) => &self.ops.events,
            };
            series.with_label_values(&["withheld"]).inc();
            return None;
        }
        match job {
            Job::Status(key, body) => self.status(key, body).await,
            Job::Event(regarding, event) => {
                self.event(&regarding, event).await;
                None
            }
        }
    }

    async fn status(&self, key: VaKey, body: Value) -> Option<VaKey> {
        let (namespace, name) = (&key.0, &key.1);
        let api: Api<VariantAutoscaling> = Api::namespaced(self.client.clone(), namespace);
        let patch = Patch::Apply(&body);
        let write = api.patch_status(name, &self.params, &patch);
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
        self.ops.status_writes.with_label_values(&[outcome]).inc();
        (!matches!(outcome, "ok" | "gone")).then_some(key)
    }

    async fn event(&self, regarding: &ObjectReference, event: EventSpec) {
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
        let result = tokio::time::timeout(WRITE_TIMEOUT, self.recorder.publish(&e, regarding))
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
        self.ops.events.with_label_values(&[outcome]).inc();
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(key: &str, replicas: i64) -> Write {
        let mut said = VariantAutoscalingStatus::default();
        said.desired_optimized_alloc.num_replicas = Some(replicas as i32);
        Write::Status {
            key: ("ns".into(), key.into()),
            said: Box::new(said),
            body: json!({"replicas": replicas}),
        }
    }

    fn count(ops: &Ops, result: &str) -> u64 {
        ops.status_writes.with_label_values(&[result]).get()
    }

    #[test]
    fn the_queue_coalesces_per_va_skips_what_was_said_and_forgets_on_leadership() {
        let ops = Ops::new(30.0).expect("series");
        let mut q = Queue::default();
        q.take(status("a", 2), &ops);
        q.take(status("a", 3), &ops);
        assert_eq!(
            count(&ops, "superseded"),
            1,
            "the newer status replaces the queued one"
        );
        assert!(
            matches!(q.next(), Some(Job::Status(k, body)) if k.1 == "a" && body["replicas"] == 3)
        );
        assert!(q.next().is_none());
        q.take(status("a", 3), &ops);
        assert_eq!(
            count(&ops, "unchanged"),
            1,
            "the same status again is not written"
        );
        assert!(q.next().is_none());
        q.take(Write::Forget(("ns".into(), "a".into())), &ops);
        q.take(status("a", 3), &ops);
        assert!(q.next().is_some(), "forgotten: written again");

        q.take(status("b", 1), &ops);
        q.take(
            Write::Event(Box::default(), EventSpec::warning("DecisionFailed", "x")),
            &ops,
        );
        q.take(Write::Leader(false), &ops);
        assert!(
            q.next().is_none(),
            "a follower sends nothing it queued as leader"
        );
        assert!(q.written.is_empty());
    }

    #[test]
    fn events_wait_in_a_bounded_fifo_the_oldest_dropped_and_counted() {
        let ops = Ops::new(30.0).expect("series");
        let mut q = Queue::default();
        for i in 0..MAX_PENDING_EVENTS + 3 {
            let spec = EventSpec::warning("DecisionFailed", format!("{i}"));
            q.take(Write::Event(Box::default(), spec), &ops);
        }
        assert_eq!(ops.events.with_label_values(&["dropped"]).get(), 3);
        assert!(matches!(q.next(), Some(Job::Event(_, e)) if e.note == "3"));
    }

    #[test]
    fn a_task_that_dies_hands_its_channel_and_queue_to_the_next_and_rewrites_its_status() {
        let (writes, received) = mpsc::unbounded_channel();
        let handoff = Handoff::new(received);
        let ops = Ops::new(30.0).expect("series");
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut held = handoff.take().expect("free");
            let (_, queue) = held.parts.as_mut().expect("held");
            queue.take(status("a", 2), &ops);
            let _ = queue.next();
            queue.in_flight = Some(("ns".into(), "a".into()));
            assert!(handoff.take().is_none(), "one task at a time");
            panic!("the write task dies mid-write");
        }));
        assert!(died.is_err());
        writes
            .send(status("b", 1))
            .expect("the channel outlives the task");
        let mut held = handoff.take().expect("handed back");
        let (received, queue) = held.parts.as_mut().expect("held");
        assert!(
            queue.written.is_empty(),
            "the status on its way may not have been written: it is written again"
        );
        assert!(
            received.try_recv().is_ok(),
            "what was sent meanwhile is there"
        );
    }
}
