//! VA status and Events. The pure half turns what the actors decided into the four conditions
//! and the `desiredOptimizedAlloc` of a VA, and into the Events a user sees in
//! `kubectl describe`; the actor half writes them (server-side apply of the status subresource,
//! Events through the events API), in order, and only while this instance leads.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wva_actors::messages::{
    MetricsState, OptimizationState, StatusBatch, StatusUpdate, Timestamp, VariantKey,
};

use super::inventory::VaRef;
use crate::crd::VariantAutoscaling;

/// Field manager of the status writes.
pub const STATUS_FIELD_MANAGER: &str = "wva-controller-status";

/// One condition as computed, before transition times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondSpec {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

fn cond(type_: &'static str, status: bool, reason: &str, message: impl Into<String>) -> CondSpec {
    CondSpec {
        type_,
        status,
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// What a VA's status says, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct VaStatus {
    /// `None`: `desiredOptimizedAlloc: {}` (no target).
    pub desired: Option<(u32, String, Timestamp)>,
    pub current: Option<(u32, String)>,
    pub conditions: Vec<CondSpec>,
}

/// The summary condition: True only when the three others are; else the first failing one's
/// reason, with `DeploymentNotFound` for a missing target.
fn ready(conditions: &[CondSpec], target_missing: Option<String>) -> CondSpec {
    if let Some(message) = target_missing {
        return cond("Ready", false, "DeploymentNotFound", message);
    }
    match conditions.iter().find(|c| !c.status) {
        None => cond("Ready", true, "Ready", "the variant is being autoscaled"),
        Some(c) => cond("Ready", false, &c.reason, c.message.clone()),
    }
}

/// The status of a VA from the decisions of its variants (one, or several in discovery mode:
/// desired and current add up) and its configuration problem, if any.
pub fn decided_status(decided: &[&StatusUpdate], problem: Option<&str>) -> Option<VaStatus> {
    let mut desired = 0;
    let mut current = 0;
    let mut accelerators: Vec<&str> = Vec::new();
    let mut at = Timestamp(0);
    let mut metrics = None;
    let mut optimization = None;
    for update in decided {
        let StatusUpdate::Decided {
            desired: d,
            current: c,
            accelerator,
            metrics: m,
            optimization: o,
            at: t,
            ..
        } = update
        else {
            continue;
        };
        desired += d;
        current += c;
        if !accelerators.contains(&accelerator.as_str()) {
            accelerators.push(accelerator);
        }
        at = at.max(*t);
        if metrics.is_none() || *m != MetricsState::Found {
            metrics = Some(m.clone());
        }
        if optimization.is_none() || *o != OptimizationState::Succeeded {
            optimization = Some(o.clone());
        }
    }
    let (metrics, optimization) = (metrics?, optimization?);
    let accelerator = accelerators.join(",");
    let metrics_cond = match &metrics {
        MetricsState::Found => cond(
            "MetricsAvailable",
            true,
            "MetricsFound",
            "vLLM metrics are available",
        ),
        MetricsState::Missing => cond(
            "MetricsAvailable",
            false,
            "MetricsMissing",
            "no vLLM series for the live pods of the target Deployment",
        ),
        MetricsState::Stale { newest_age_s } => cond(
            "MetricsAvailable",
            false,
            "MetricsStale",
            format!("the newest vLLM sample is {newest_age_s}s old"),
        ),
        MetricsState::PrometheusError(e) => {
            cond("MetricsAvailable", false, "PrometheusError", e.clone())
        }
    };
    let optimization_cond = match (&optimization, problem) {
        (OptimizationState::SafetyNet(source), _) => cond(
            "OptimizationReady",
            false,
            "SafetyNetActive",
            format!("analysis could not run; emitting {desired} replicas ({source})"),
        ),
        (OptimizationState::InvalidConfiguration(m), _) => cond(
            "OptimizationReady",
            false,
            "InvalidConfiguration",
            m.clone(),
        ),
        (OptimizationState::Succeeded, Some(p)) => {
            cond("OptimizationReady", false, "InvalidConfiguration", p)
        }
        (OptimizationState::Succeeded, None) => cond(
            "OptimizationReady",
            true,
            "OptimizationSucceeded",
            format!("desired {desired} replicas on {accelerator}"),
        ),
    };
    let mut conditions = vec![
        cond(
            "TargetResolved",
            true,
            "TargetFound",
            "the target Deployment exists",
        ),
        metrics_cond,
        optimization_cond,
    ];
    conditions.push(ready(&conditions, None));
    Some(VaStatus {
        desired: Some((desired, accelerator.clone(), at)),
        current: Some((current, accelerator)),
        conditions,
    })
}

/// The status of a VA whose target is missing: never existed, deleted, or (discovery) none
/// matches.
pub fn missing_target_status(message: &str, problem: Option<&str>) -> VaStatus {
    let mut conditions = vec![
        cond("TargetResolved", false, "TargetNotFound", message),
        cond(
            "MetricsAvailable",
            false,
            "MetricsMissing",
            "no target Deployment",
        ),
        match problem {
            Some(p) => cond("OptimizationReady", false, "InvalidConfiguration", p),
            None => cond(
                "OptimizationReady",
                false,
                "OptimizationFailed",
                "no target Deployment",
            ),
        },
    ];
    conditions.push(ready(&conditions, Some(message.to_string())));
    VaStatus {
        desired: None,
        current: None,
        conditions,
    }
}

/// The status of a VA that cannot be acted on at all (its target kind is wrong, say).
pub fn invalid_status(problem: &str) -> VaStatus {
    let mut conditions = vec![
        cond(
            "TargetResolved",
            false,
            "TargetNotFound",
            "the target cannot be resolved",
        ),
        cond(
            "MetricsAvailable",
            false,
            "MetricsMissing",
            "not read for an invalid VA",
        ),
        cond("OptimizationReady", false, "InvalidConfiguration", problem),
    ];
    conditions.push(ready(&conditions, None));
    VaStatus {
        desired: None,
        current: None,
        conditions,
    }
}

/// Transition times per condition type, kept across writes so that an unchanged condition
/// keeps its time.
pub type Transitions = HashMap<&'static str, (bool, String)>;

/// The server-side-apply body of a VA's status. A condition keeps `since` unless its status
/// changed.
pub fn apply_body(
    va: &VaRef,
    status: &VaStatus,
    transitions: &mut Transitions,
    now: &str,
) -> Value {
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .map(|c| {
            let time = match transitions.get(c.type_) {
                Some((s, t)) if *s == c.status => t.clone(),
                _ => {
                    transitions.insert(c.type_, (c.status, now.to_string()));
                    now.to_string()
                }
            };
            json!({
                "type": c.type_,
                "status": if c.status { "True" } else { "False" },
                "reason": c.reason,
                "message": truncate(&c.message, 1024),
                "lastTransitionTime": time,
                "observedGeneration": va.generation,
            })
        })
        .collect();
    let desired = match &status.desired {
        Some((n, acc, at)) => json!({
            "numReplicas": n,
            "accelerator": acc,
            "lastRunTime": crate::timefmt::format_time(*at),
        }),
        None => json!({}),
    };
    let mut body = json!({
        "apiVersion": "llmd.ai/v1alpha1",
        "kind": "VariantAutoscaling",
        "metadata": {"name": va.name, "namespace": va.namespace},
        "status": {"desiredOptimizedAlloc": desired, "conditions": conditions},
    });
    if let Some((n, acc)) = &status.current {
        body["status"]["currentAlloc"] = json!({"numReplicas": n, "accelerator": acc});
    }
    body
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// An Event to publish about a VA (or a ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl EventSpec {
    fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            note: note.into(),
        }
    }
}

/// Events for a decided update: a change of desired count, and entering the safety net.
pub fn decision_events(update: &StatusUpdate, was_safety_net: bool) -> Vec<EventSpec> {
    let StatusUpdate::Decided {
        variant,
        desired,
        previous_desired,
        optimization,
        reason,
        ..
    } = update
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(previous) = previous_desired
        && previous != desired
    {
        out.push(EventSpec {
            warning: false,
            reason: if desired > previous {
                "ScaledUp"
            } else {
                "ScaledDown"
            },
            note: format!(
                "{}: desired replicas {previous} -> {desired} ({reason})",
                variant.name
            ),
        });
    }
    if let OptimizationState::SafetyNet(source) = optimization
        && !was_safety_net
    {
        out.push(EventSpec::warning(
            "SafetyNetActive",
            format!(
                "{}: analysis could not run ({reason}); emitting {desired} replicas from {source}",
                variant.name
            ),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// A write, applied in order by one task.
#[derive(Debug)]
enum Write {
    Status(VaRef, Value),
    Event(ObjectReference, EventSpec),
}

fn va_reference(va: &VaRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("llmd.ai/v1alpha1".into()),
        kind: Some("VariantAutoscaling".into()),
        name: Some(va.name.clone()),
        namespace: Some(va.namespace.clone()),
        uid: va.uid.clone(),
        ..Default::default()
    }
}

/// Writes VA statuses and Events. Only the leader writes; a follower keeps its bookkeeping
/// so that it can take over.
#[derive(Debug)]
pub struct StatusWriter {
    writes: mpsc::UnboundedSender<Write>,
    leader: bool,
    /// Variant → the VA its status goes to.
    bindings: HashMap<VariantKey, VaRef>,
    problems: HashMap<(String, String), String>,
    transitions: HashMap<(String, String), Transitions>,
    safety_net: HashMap<VariantKey, bool>,
}

impl StatusWriter {
    /// Starts the writer; its write task runs on the current tokio runtime.
    pub fn start(client: kube::Client, reporter: Reporter, leader: bool) -> Addr<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(client, reporter, rx));
        Self {
            writes: tx,
            leader,
            bindings: HashMap::new(),
            problems: HashMap::new(),
            transitions: HashMap::new(),
            safety_net: HashMap::new(),
        }
        .start()
    }

    fn write_status(&mut self, va: &VaRef, status: &VaStatus) {
        if !self.leader {
            return;
        }
        let now = crate::timefmt::format_time(crate::timefmt::wall_clock());
        let transitions = self
            .transitions
            .entry((va.namespace.clone(), va.name.clone()))
            .or_default();
        let body = apply_body(va, status, transitions, &now);
        let _ = self.writes.send(Write::Status(va.clone(), body));
    }

    fn event(&self, va: &VaRef, event: EventSpec) {
        self.event_on(va_reference(va), event);
    }

    fn event_on(&self, regarding: ObjectReference, event: EventSpec) {
        if self.leader {
            let _ = self.writes.send(Write::Event(regarding, event));
        }
    }

    /// The target is missing: the status says so and a Warning Event is raised.
    fn report_missing_target(&mut self, va: &VaRef, message: String) {
        let status = missing_target_status(&message, self.problem(va));
        self.write_status(va, &status);
        self.event(va, EventSpec::warning("DeploymentNotFound", message));
    }

    fn problem(&self, va: &VaRef) -> Option<&str> {
        self.problems
            .get(&(va.namespace.clone(), va.name.clone()))
            .map(String::as_str)
    }
}

impl Actor for StatusWriter {
    type Context = Context<Self>;
}

impl Handler<StatusBatch> for StatusWriter {
    type Result = ();
    fn handle(&mut self, batch: StatusBatch, _: &mut Context<Self>) {
        let mut decided: BTreeMap<VaRef, Vec<&StatusUpdate>> = BTreeMap::new();
        for update in &batch.0 {
            match update {
                StatusUpdate::Decided {
                    variant,
                    optimization,
                    ..
                } => {
                    let Some(va) = self.bindings.get(variant).cloned() else {
                        continue;
                    };
                    let was = self.safety_net.insert(
                        variant.clone(),
                        matches!(optimization, OptimizationState::SafetyNet(_)),
                    );
                    for e in decision_events(update, was.unwrap_or(false)) {
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
                    let message = if *deleted {
                        format!("Target deployment '{deployment}' no longer exists")
                    } else {
                        format!("Target deployment '{deployment}' not found")
                    };
                    self.safety_net.remove(variant);
                    self.report_missing_target(&va, message);
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
    Bind(VariantKey, Option<VaRef>),
    /// A VA's configuration problem (`None`: fixed).
    Problem(VaRef, Option<String>),
    /// A VA uses the deprecated `perfParms`.
    Deprecated(VaRef),
    /// A discovery-mode VA matches no Deployment.
    NoTargets(VaRef, String),
    /// Entries of a configuration ConfigMap that were skipped (Warning Events on it).
    ConfigProblems {
        namespace: String,
        config_map: String,
        problems: Vec<String>,
    },
    /// Leadership gained or lost.
    Leader(bool),
}

impl Handler<WriterNote> for StatusWriter {
    type Result = ();
    fn handle(&mut self, note: WriterNote, _: &mut Context<Self>) {
        match note {
            WriterNote::Bind(variant, Some(va)) => {
                self.bindings.insert(variant, va);
            }
            WriterNote::Bind(variant, None) => {
                self.bindings.remove(&variant);
                self.safety_net.remove(&variant);
            }
            WriterNote::Problem(va, Some(problem)) => {
                tracing::warn!(va = %format!("{}/{}", va.namespace, va.name), %problem, "invalid VariantAutoscaling");
                self.problems
                    .insert((va.namespace.clone(), va.name.clone()), problem.clone());
                let bound = self
                    .bindings
                    .values()
                    .any(|b| b.namespace == va.namespace && b.name == va.name);
                if !bound {
                    // Nothing will be decided for it: say so in its status now.
                    self.write_status(&va, &invalid_status(&problem));
                }
                self.event(&va, EventSpec::warning("InvalidConfiguration", problem));
            }
            WriterNote::Problem(va, None) => {
                self.problems
                    .remove(&(va.namespace.clone(), va.name.clone()));
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
            WriterNote::Leader(leader) => {
                self.leader = leader;
                if leader {
                    // Statuses written by another leader carry its transition times.
                    self.transitions.clear();
                }
            }
        }
    }
}

async fn write_loop(
    client: kube::Client,
    reporter: Reporter,
    mut rx: mpsc::UnboundedReceiver<Write>,
) {
    let recorder = Recorder::new(client.clone(), reporter);
    let params = PatchParams::apply(STATUS_FIELD_MANAGER).force();
    while let Some(write) = rx.recv().await {
        match write {
            Write::Status(va, body) => {
                let api: Api<VariantAutoscaling> = Api::namespaced(client.clone(), &va.namespace);
                match api
                    .patch_status(&va.name, &params, &Patch::Apply(&body))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        tracing::debug!(va = %va.name, "VA gone before its status was written");
                    }
                    Err(e) => {
                        tracing::warn!(va = %format!("{}/{}", va.namespace, va.name), error = %e, "cannot write the VA status");
                    }
                }
            }
            Write::Event(regarding, event) => {
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
                if let Err(err) = recorder.publish(&e, &regarding).await {
                    tracing::warn!(regarding = ?regarding.name, error = %err, "cannot publish an Event");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wva_actors::policy::FallbackSource;

    fn decided(
        desired: u32,
        previous: Option<u32>,
        metrics: MetricsState,
        optimization: OptimizationState,
    ) -> StatusUpdate {
        StatusUpdate::Decided {
            variant: VariantKey::new("ns", "va"),
            at: Timestamp(1_700_000_000_000),
            desired,
            previous_desired: previous,
            current: 2,
            accelerator: "H100".into(),
            metrics,
            optimization,
            reason: "kv-saturated".into(),
        }
    }

    fn by_type<'a>(s: &'a VaStatus, t: &str) -> &'a CondSpec {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn ready_only_when_all_three_are_true_else_the_first_failing_reason() {
        let ok = decided(
            3,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        let s = decided_status(&[&ok], None).expect("status");
        assert!(by_type(&s, "Ready").status);
        assert_eq!(s.desired.as_ref().map(|d| d.0), Some(3));

        let stale = decided(
            2,
            None,
            MetricsState::Stale { newest_age_s: 400 },
            OptimizationState::SafetyNet(FallbackSource::PreviousDesired),
        );
        let s = decided_status(&[&stale], None).expect("status");
        assert_eq!(by_type(&s, "MetricsAvailable").reason, "MetricsStale");
        assert_eq!(by_type(&s, "OptimizationReady").reason, "SafetyNetActive");
        let r = by_type(&s, "Ready");
        assert!(!r.status);
        assert_eq!(r.reason, "MetricsStale");

        let s =
            decided_status(&[&ok], Some("spec.variantCost: expected a decimal")).expect("status");
        assert_eq!(
            by_type(&s, "OptimizationReady").reason,
            "InvalidConfiguration"
        );
        assert_eq!(by_type(&s, "Ready").reason, "InvalidConfiguration");
    }

    #[test]
    fn a_missing_target_reads_deployment_not_found_and_clears_the_desired_allocation() {
        let s = missing_target_status("Target deployment 'x' no longer exists", None);
        let r = by_type(&s, "Ready");
        assert_eq!((r.status, r.reason.as_str()), (false, "DeploymentNotFound"));
        assert_eq!(r.message, "Target deployment 'x' no longer exists");
        let va = VaRef {
            namespace: "ns".into(),
            name: "va".into(),
            uid: None,
            generation: Some(4),
        };
        let body = apply_body(&va, &s, &mut Transitions::new(), "2026-01-01T00:00:00Z");
        assert_eq!(body["status"]["desiredOptimizedAlloc"], json!({}));
        assert!(
            body["status"]["conditions"]
                .as_array()
                .expect("list")
                .iter()
                .all(|c| c["observedGeneration"] == 4)
        );
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let va = VaRef {
            namespace: "ns".into(),
            name: "va".into(),
            uid: None,
            generation: Some(1),
        };
        let mut t = Transitions::new();
        let ok = decided(3, None, MetricsState::Found, OptimizationState::Succeeded);
        let s = decided_status(&[&ok], None).expect("status");
        apply_body(&va, &s, &mut t, "T1");
        let body = apply_body(&va, &s, &mut t, "T2");
        assert_eq!(body["status"]["conditions"][0]["lastTransitionTime"], "T1");
        let err = decided(
            3,
            None,
            MetricsState::PrometheusError("down".into()),
            OptimizationState::SafetyNet(FallbackSource::CurrentReplicas),
        );
        let s = decided_status(&[&err], None).expect("status");
        let body = apply_body(&va, &s, &mut t, "T3");
        assert_eq!(
            body["status"]["conditions"][0]["lastTransitionTime"], "T1",
            "TargetResolved did not change"
        );
        assert_eq!(body["status"]["conditions"][1]["lastTransitionTime"], "T3");
    }

    #[test]
    fn events_for_changes_of_desired_and_for_entering_the_safety_net() {
        let up = decided(
            4,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        let e = decision_events(&up, false);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].reason, "ScaledUp");
        assert!(e[0].note.contains("2 -> 4 (kv-saturated)"), "{}", e[0].note);
        let same = decided(
            2,
            Some(2),
            MetricsState::Found,
            OptimizationState::Succeeded,
        );
        assert!(decision_events(&same, false).is_empty());
        let net = decided(
            2,
            Some(2),
            MetricsState::PrometheusError("x".into()),
            OptimizationState::SafetyNet(FallbackSource::PreviousDesired),
        );
        assert_eq!(decision_events(&net, false)[0].reason, "SafetyNetActive");
        assert!(decision_events(&net, true).is_empty(), "only on entering");
    }

    #[test]
    fn discovered_variants_add_up_in_their_va() {
        let a = decided(3, None, MetricsState::Found, OptimizationState::Succeeded);
        let mut b = decided(1, None, MetricsState::Missing, OptimizationState::Succeeded);
        if let StatusUpdate::Decided { accelerator, .. } = &mut b {
            *accelerator = "A100".into();
        }
        let s = decided_status(&[&a, &b], None).expect("status");
        assert_eq!(
            s.desired.as_ref().map(|d| (d.0, d.1.as_str())),
            Some((4, "H100,A100"))
        );
        assert_eq!(by_type(&s, "MetricsAvailable").reason, "MetricsMissing");
    }
}
