//! What the controller knows of the cluster, and what follows from it: which variants exist
//! (explicit VAs and discovered Deployments), which Deployment each scales, which pods are live
//! pods of those Deployments, and which VAs are invalid. Pure: the watchers feed it objects
//! and it answers with the [`Change`]s to hand to the actors and the status writer.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DeserializeGuard;
use wva_actors::messages::{
    DEFAULT_MAX_BATCH, DeploymentState, ModelKey, ReplicaBounds, VariantKey, VariantSpec,
};

use super::lws::{self, LeaderWorkerSet};
use super::owners::{OwnerId, OwnerKind, OwnerRef, Scope};
use super::scalers::{Annotation, ScaledObject, ScalerInfo, ScalerKind, is_managed};
use super::targets::{DeploymentInfo, MODEL_ID_KEY, target_id};
use crate::config::AcceleratorCosts;
use crate::crd::{ACCELERATOR_NAME_LABEL, VariantAutoscaling};
use crate::poller::PodIndex;

/// The extended resource a replica's accelerators are counted in by default.
pub const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Cost of a discovered variant whose accelerator has no price.
const DEFAULT_DISCOVERED_COST: f64 = 10.0;

/// What changed, in the order it must be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A Deployment appeared, changed or went away (`None`).
    Deployment {
        namespace: String,
        name: String,
        state: Option<DeploymentState>,
    },
    /// A variant is managed (new or changed), on behalf of this VA.
    Upsert(VariantSpec, OwnerRef),
    /// A variant is no longer managed.
    Remove(VariantKey),
    /// A VA's configuration problem (`None`: it has none now).
    Problem(OwnerRef, Option<String>),
    /// A VA still carries the deprecated `perfParms` (reported once per generation).
    Deprecated(OwnerRef),
    /// A discovery-mode VA matches no Deployment.
    NoTargets(OwnerRef, String),
}

/// The parts of a pod the controller uses (from its metadata only).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodInfo {
    /// The Deployment named by the owner chain Pod → ReplicaSet (`<deployment>-<hash>`).
    pub owner_deployment: Option<String>,
    /// The LeaderWorkerSet the pod belongs to, and whether it leads its group.
    pub group: Option<(String, bool)>,
    pub labels: BTreeMap<String, String>,
    /// Not terminating.
    pub live: bool,
}

impl PodInfo {
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        let labels = meta.labels.clone().unwrap_or_default();
        // A ReplicaSet made by a Deployment is named `<deployment>-<pod-template-hash>`.
        let owner_deployment = labels.get("pod-template-hash").and_then(|hash| {
            meta.owner_references.iter().flatten().find_map(|o| {
                (o.kind == "ReplicaSet")
                    .then(|| o.name.strip_suffix(&format!("-{hash}")))
                    .flatten()
                    .map(str::to_string)
            })
        });
        Self {
            owner_deployment,
            group: lws::membership(&labels),
            labels,
            live: meta.deletion_timestamp.is_none(),
        }
    }
}

#[derive(Debug, Clone)]
enum VaEntry {
    Valid(Box<VariantAutoscaling>),
    /// Could not be read; the last valid version (if any) stays in effect.
    Invalid {
        last_valid: Option<Box<VariantAutoscaling>>,
        meta: Box<ObjectMeta>,
        error: String,
    },
}

impl VaEntry {
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Valid(va) => &va.metadata,
            Self::Invalid { meta, .. } => meta,
        }
    }

    fn effective(&self) -> Option<&VariantAutoscaling> {
        match self {
            Self::Valid(va) => Some(va),
            Self::Invalid { last_valid, .. } => last_valid.as_deref(),
        }
    }
}

/// The kinds whose initial list must be complete before anything is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    VariantAutoscaling,
    Deployment,
    Pod,
    /// The configuration ConfigMaps (kept by the watcher, not here): only their list counts.
    ConfigMap,
    HorizontalPodAutoscaler,
    /// KEDA's; an absent CRD counts as an empty list (see [`Inventory::kind_absent`]).
    ScaledObject,
    /// Also optional, like ScaledObjects.
    LeaderWorkerSet,
}

const KINDS: usize = 7;

/// The kind name of a Deployment in a `scaleTargetRef`.
const DEPLOYMENT: &str = "Deployment";

impl Kind {
    /// The scaler kind watched under this kind, if it is one.
    fn scaler(self) -> Option<ScalerKind> {
        match self {
            Self::HorizontalPodAutoscaler => Some(ScalerKind::Hpa),
            Self::ScaledObject => Some(ScalerKind::ScaledObject),
            _ => None,
        }
    }

    /// The `scaleTargetRef` kind of a scale target watched under this kind.
    fn target_kind(self) -> &'static str {
        match self {
            Self::LeaderWorkerSet => lws::KIND,
            _ => DEPLOYMENT,
        }
    }
}

/// An HPA or ScaledObject as the inventory keeps it.
#[derive(Debug, Clone, PartialEq)]
struct ScalerEntry {
    owner: OwnerRef,
    /// `Err`: a managed scaler whose spec cannot be read.
    info: Result<ScalerInfo, String>,
    /// Within this instance's scope (namespace and instance label), so its annotations count.
    in_scope: bool,
}

type Id = (String, String);

pub(crate) fn id(meta: &ObjectMeta) -> Id {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The controller's view of the cluster.
#[derive(Debug, Default)]
pub struct Inventory {
    scope: Scope,
    vas: BTreeMap<Id, VaEntry>,
    deployments: BTreeMap<Id, DeploymentInfo>,
    /// LeaderWorkerSets, as scale targets.
    groups: BTreeMap<Id, DeploymentInfo>,
    pods: BTreeMap<Id, PodInfo>,
    scalers: BTreeMap<OwnerId, ScalerEntry>,
    costs: AcceleratorCosts,
    synced: BTreeSet<Kind>,
    /// Objects seen since a relist started, per kind.
    relisting: BTreeMap<Kind, BTreeSet<Id>>,
    /// What the actors were last told.
    emitted: BTreeMap<VariantKey, (VariantSpec, OwnerRef)>,
    problems: BTreeMap<OwnerId, (OwnerRef, String)>,
    deprecated_reported: BTreeMap<Id, Option<i64>>,
    no_targets: BTreeSet<Id>,
    /// The extended resource a replica's accelerators are counted in (`nvidia.com/gpu`
    /// unless the pool's configuration names another); empty: the default.
    gpu_resource: String,
}

impl Inventory {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            ..Default::default()
        }
    }

    /// True once every kind's initial list is in: before that nothing is emitted, so that a VA
    /// is never reported "target not found" only because its Deployment was not listed yet.
    pub fn ready(&self) -> bool {
        self.synced.len() == KINDS
    }

    /// A VA was listed or changed (possibly malformed).
    pub fn va_applied(&mut self, obj: DeserializeGuard<VariantAutoscaling>) -> Vec<Change> {
        let mut changes = Vec::new();
        let meta = match &obj.0 {
            Ok(va) => va.metadata.clone(),
            Err(invalid) => invalid.metadata.clone(),
        };
        let key = id(&meta);
        self.seen(Kind::VariantAutoscaling, &key);
        if !self.scope.manages(&meta) {
            // Relabelled away to another instance: it is no longer ours.
            return self.va_deleted(&key.0, &key.1);
        }
        let va_ref = OwnerRef::of(OwnerKind::VariantAutoscaling, &meta);
        match obj.0 {
            Ok(va) => {
                if va.spec.has_perf_parms()
                    && self.deprecated_reported.get(&key) != Some(&meta.generation)
                {
                    self.deprecated_reported
                        .insert(key.clone(), meta.generation);
                    changes.push(Change::Deprecated(va_ref.clone()));
                }
                // Our own status writes come back as updates; most change nothing a variant
                // is made of, and need no recomputation.
                let unchanged = matches!(
                    self.vas.get(&key),
                    Some(VaEntry::Valid(old)) if same_variant_inputs(old, &va)
                );
                self.vas.insert(key.clone(), VaEntry::Valid(Box::new(va)));
                if unchanged {
                    return changes;
                }
            }
            Err(invalid) => {
                let last_valid = match self.vas.remove(&key) {
                    Some(VaEntry::Valid(va)) => Some(va),
                    Some(VaEntry::Invalid { last_valid, .. }) => last_valid,
                    None => None,
                };
                self.vas.insert(
                    key.clone(),
                    VaEntry::Invalid {
                        last_valid,
                        meta: Box::new(invalid.metadata),
                        error: invalid.error,
                    },
                );
            }
        }
        changes.extend(self.reconcile(Some(&key.0)));
        changes
    }

    pub fn va_deleted(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        let key = (namespace.to_string(), name.to_string());
        self.vas.remove(&key);
        self.problems
            .remove(&(OwnerKind::VariantAutoscaling, key.0.clone(), key.1.clone()));
        self.deprecated_reported.remove(&key);
        self.no_targets.remove(&key);
        self.reconcile(Some(namespace))
    }

    pub fn deployment_applied(&mut self, d: &Deployment) -> Vec<Change> {
        let key = id(&d.metadata);
        self.seen(Kind::Deployment, &key);
        if !self.in_scope(&key.0) {
            return Vec::new();
        }
        self.target_applied(Kind::Deployment, key, DeploymentInfo::from_deployment(d))
    }

    pub fn deployment_deleted(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        self.target_deleted(Kind::Deployment, namespace, name)
    }

    /// A LeaderWorkerSet was listed or changed (one that cannot be read is no target).
    pub fn lws_applied(&mut self, obj: DeserializeGuard<LeaderWorkerSet>) -> Vec<Change> {
        let meta = match &obj.0 {
            Ok(l) => &l.metadata,
            Err(invalid) => &invalid.metadata,
        };
        let key = id(meta);
        self.seen(Kind::LeaderWorkerSet, &key);
        if !self.in_scope(&key.0) {
            return Vec::new();
        }
        match &obj.0 {
            Ok(group) => self.target_applied(Kind::LeaderWorkerSet, key, lws::info(group)),
            Err(_) => self.lws_deleted(&key.0, &key.1),
        }
    }

    pub fn lws_deleted(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        self.target_deleted(Kind::LeaderWorkerSet, namespace, name)
    }

    /// The map of scale targets of a kind (Deployments, or LeaderWorkerSets).
    fn targets_mut(&mut self, kind: Kind) -> &mut BTreeMap<Id, DeploymentInfo> {
        match kind {
            Kind::LeaderWorkerSet => &mut self.groups,
            _ => &mut self.deployments,
        }
    }

    /// A scale target appeared or changed: its replicas go to the actors when they changed,
    /// and its namespace's variants are recomputed.
    fn target_applied(&mut self, kind: Kind, key: Id, info: DeploymentInfo) -> Vec<Change> {
        let mut changes = Vec::new();
        let old = self.targets_mut(kind).insert(key.clone(), info.clone());
        if self.ready() && old.as_ref().map(|o| o.state) != Some(info.state) {
            changes.push(Change::Deployment {
                namespace: key.0.clone(),
                name: target_id(kind.target_kind(), &key.1),
                state: Some(info.state),
            });
        }
        changes.extend(self.reconcile(Some(&key.0)));
        changes
    }

    fn target_deleted(&mut self, kind: Kind, namespace: &str, name: &str) -> Vec<Change> {
        let key = (namespace.to_string(), name.to_string());
        let mut changes = Vec::new();
        if self.targets_mut(kind).remove(&key).is_some() && self.ready() {
            changes.push(Change::Deployment {
                namespace: key.0,
                name: target_id(kind.target_kind(), &key.1),
                state: None,
            });
        }
        changes.extend(self.reconcile(Some(namespace)));
        changes
    }

    /// A scale target by its `scaleTargetRef` kind and name.
    fn target(&self, namespace: &str, kind: &str, name: &str) -> Option<&DeploymentInfo> {
        let key = (namespace.to_string(), name.to_string());
        match kind {
            DEPLOYMENT => self.deployments.get(&key),
            lws::KIND => self.groups.get(&key),
            _ => None,
        }
    }

    pub fn pod_applied(&mut self, meta: &ObjectMeta) {
        let key = id(meta);
        self.seen(Kind::Pod, &key);
        if self.in_scope(&key.0) {
            self.pods.insert(key, PodInfo::from_meta(meta));
        }
    }

    pub fn pod_deleted(&mut self, namespace: &str, name: &str) {
        self.pods.remove(&(namespace.to_string(), name.to_string()));
    }

    /// An HPA was listed or changed.
    pub fn hpa_applied(&mut self, hpa: &HorizontalPodAutoscaler) -> Vec<Change> {
        self.scaler_applied(
            Kind::HorizontalPodAutoscaler,
            &hpa.metadata,
            Ok(ScalerInfo::from_hpa(hpa)),
        )
    }

    /// A ScaledObject was listed or changed (possibly malformed).
    pub fn scaled_object_applied(&mut self, so: DeserializeGuard<ScaledObject>) -> Vec<Change> {
        match so.0 {
            Ok(so) => self.scaler_applied(
                Kind::ScaledObject,
                &so.metadata,
                Ok(ScalerInfo::from_scaled_object(&so)),
            ),
            Err(invalid) => {
                self.scaler_applied(Kind::ScaledObject, &invalid.metadata, Err(invalid.error))
            }
        }
    }

    fn scaler_applied(
        &mut self,
        kind: Kind,
        meta: &ObjectMeta,
        info: Result<ScalerInfo, String>,
    ) -> Vec<Change> {
        let Some(scaler) = kind.scaler() else {
            return Vec::new();
        };
        let (namespace, name) = id(meta);
        self.seen(kind, &(namespace.clone(), name.clone()));
        if !self.in_scope(&namespace) {
            return Vec::new();
        }
        let owner = OwnerRef::of(scaler.into(), meta);
        let key = owner.id();
        // A scaler that cannot be read matters only when it asks to be managed.
        if info.is_err() && !is_managed(meta) {
            return self.scaler_deleted(kind, &namespace, &name);
        }
        let entry = ScalerEntry {
            owner,
            info,
            in_scope: self.scope.manages(meta),
        };
        // The HPA controller rewrites its status every sync: nothing a variant is made of.
        if self.scalers.get(&key) == Some(&entry) {
            return Vec::new();
        }
        self.scalers.insert(key, entry);
        self.reconcile(Some(&namespace))
    }

    /// An HPA or ScaledObject went away.
    pub fn scaler_deleted(&mut self, kind: Kind, namespace: &str, name: &str) -> Vec<Change> {
        let Some(scaler) = kind.scaler() else {
            return Vec::new();
        };
        let key = (scaler.into(), namespace.to_string(), name.to_string());
        if self.scalers.remove(&key).is_none() {
            return Vec::new();
        }
        self.problems.remove(&key);
        self.reconcile(Some(namespace))
    }

    /// A kind whose API is not served (KEDA not installed): an empty list, so the view can be
    /// complete without it. Its watch keeps retrying and lists it once it is installed.
    pub fn kind_absent(&mut self, kind: Kind) -> Vec<Change> {
        self.relist_started(kind);
        self.relist_done(kind)
    }

    /// The accelerator prices changed (discovered variants' costs and accelerators).
    pub fn set_costs(&mut self, costs: AcceleratorCosts) -> Vec<Change> {
        self.costs = costs;
        self.reconcile(None)
    }

    /// The accelerator prices, which also name accelerator devices.
    pub fn costs(&self) -> &AcceleratorCosts {
        &self.costs
    }

    /// The extended resource that counts a replica's accelerators changed.
    pub fn set_gpu_resource(&mut self, name: &str) -> Vec<Change> {
        if self.gpu_resource == name {
            return Vec::new();
        }
        self.gpu_resource = name.to_string();
        self.reconcile(None)
    }

    /// Accelerators one replica of a target holds: its pods' extended resource, else the VA
    /// profile's `accCount`, else one.
    fn gpus_per_replica(&self, target: Option<&DeploymentInfo>, acc_count: Option<i32>) -> u32 {
        let resource = if self.gpu_resource.is_empty() {
            DEFAULT_GPU_RESOURCE
        } else {
            self.gpu_resource.as_str()
        };
        target
            .and_then(|d| d.devices.get(resource).copied())
            .or_else(|| acc_count.filter(|&n| n >= 0).map(|n| n as u32))
            .unwrap_or(1)
    }

    /// A watcher (re)starts its list: objects not listed again by [`Self::relist_done`] are gone.
    pub fn relist_started(&mut self, kind: Kind) {
        self.relisting.insert(kind, BTreeSet::new());
    }

    /// A watcher's list is complete. The first time for every kind, everything known so far is
    /// emitted: Deployments first, then variants.
    pub fn relist_done(&mut self, kind: Kind) -> Vec<Change> {
        let was_ready = self.ready();
        let mut changes = Vec::new();
        if let Some(seen) = self.relisting.remove(&kind) {
            let gone: Vec<Id> = match kind {
                Kind::VariantAutoscaling => self
                    .vas
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect(),
                Kind::Deployment => self
                    .deployments
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect(),
                Kind::Pod => self
                    .pods
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect(),
                Kind::LeaderWorkerSet => self
                    .groups
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect(),
                Kind::HorizontalPodAutoscaler | Kind::ScaledObject => {
                    let owner = kind.scaler().map(OwnerKind::from);
                    self.scalers
                        .keys()
                        .filter(|(k, ns, name)| {
                            Some(*k) == owner && !seen.contains(&(ns.clone(), name.clone()))
                        })
                        .map(|(_, ns, name)| (ns.clone(), name.clone()))
                        .collect()
                }
                Kind::ConfigMap => Vec::new(),
            };
            for (ns, name) in gone {
                match kind {
                    Kind::VariantAutoscaling => changes.extend(self.va_deleted(&ns, &name)),
                    Kind::Deployment => changes.extend(self.deployment_deleted(&ns, &name)),
                    Kind::Pod => self.pod_deleted(&ns, &name),
                    Kind::LeaderWorkerSet => changes.extend(self.lws_deleted(&ns, &name)),
                    Kind::HorizontalPodAutoscaler | Kind::ScaledObject => {
                        changes.extend(self.scaler_deleted(kind, &ns, &name));
                    }
                    Kind::ConfigMap => {}
                }
            }
        }
        self.synced.insert(kind);
        if !was_ready && self.ready() {
            let deployments = self.deployments.iter().map(|t| (DEPLOYMENT, t));
            let groups = self.groups.iter().map(|t| (lws::KIND, t));
            for (kind, ((namespace, name), info)) in deployments.chain(groups) {
                changes.push(Change::Deployment {
                    namespace: namespace.clone(),
                    name: target_id(kind, name),
                    state: Some(info.state),
                });
            }
            changes.extend(self.reconcile(None));
        }
        changes
    }

    fn seen(&mut self, kind: Kind, key: &Id) {
        if let Some(seen) = self.relisting.get_mut(&kind) {
            seen.insert(key.clone());
        }
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.scope
            .namespace
            .as_deref()
            .is_none_or(|w| w == namespace)
    }

    /// Recomputes the variants and configuration problems of one namespace (all when `None`:
    /// a variant depends only on objects of its own namespace and on the prices), and returns
    /// what differs from what was last emitted.
    fn reconcile(&mut self, namespace: Option<&str>) -> Vec<Change> {
        if !self.ready() {
            return Vec::new();
        }
        let here = |ns: &str| namespace.is_none_or(|n| n == ns);
        let mut variants: BTreeMap<VariantKey, (VariantSpec, OwnerRef)> = BTreeMap::new();
        let mut problems: BTreeMap<OwnerId, (OwnerRef, String)> = BTreeMap::new();
        let mut no_targets: BTreeMap<Id, (OwnerRef, String)> = BTreeMap::new();
        for (key, entry) in self.vas.iter().filter(|((ns, _), _)| here(ns)) {
            let va_ref = OwnerRef::of(OwnerKind::VariantAutoscaling, entry.meta());
            let owner_id = va_ref.id();
            if let VaEntry::Invalid { error, .. } = entry {
                problems.insert(
                    owner_id.clone(),
                    (
                        va_ref.clone(),
                        format!("the object cannot be read: {error}"),
                    ),
                );
            }
            let Some(va) = entry.effective() else {
                continue;
            };
            match self.variants_of(va) {
                Ok(found) if found.is_empty() => {
                    no_targets.insert(
                        key.clone(),
                        (
                            va_ref.clone(),
                            format!(
                                "no Deployment in namespace {} has the label or annotation {MODEL_ID_KEY}={}",
                                key.0, va.spec.model_id
                            ),
                        ),
                    );
                }
                Ok(found) => {
                    for (spec, problem) in found {
                        if let Some(p) = problem {
                            problems
                                .entry(owner_id.clone())
                                .or_insert((va_ref.clone(), p));
                        }
                        // An explicit VA wins over a discovered variant of the same name.
                        let explicit = va.spec.scale_target_ref.is_some();
                        if explicit || !variants.contains_key(&spec.key) {
                            variants.insert(spec.key.clone(), (spec, va_ref.clone()));
                        }
                    }
                }
                Err(problem) => {
                    problems.insert(owner_id, (va_ref.clone(), problem));
                }
            }
        }

        // The scaler acting on a VA's Deployment bounds that variant.
        for (spec, _) in variants.values_mut() {
            spec.bounds = self.bounds_of(&spec.key.namespace, &spec.deployment);
        }
        // Annotated scalers, after the VAs: a Deployment a VA manages stays the VA's.
        let mut taken: BTreeMap<Id, OwnerRef> = variants
            .values()
            .map(|(s, o)| ((s.key.namespace.clone(), s.deployment.clone()), o.clone()))
            .collect();
        for (key, entry) in self.scalers.iter().filter(|((_, ns, _), _)| here(ns)) {
            match self.scaler_variant(entry, &variants, &taken) {
                None => {}
                Some(Ok(spec)) => {
                    taken.insert(
                        (spec.key.namespace.clone(), spec.deployment.clone()),
                        entry.owner.clone(),
                    );
                    variants.insert(spec.key.clone(), (spec, entry.owner.clone()));
                }
                Some(Err(problem)) => {
                    problems.insert(key.clone(), (entry.owner.clone(), problem));
                }
            }
        }

        let mut changes = Vec::new();
        for (key, (spec, va_ref)) in &variants {
            if self.emitted.get(key) != Some(&(spec.clone(), va_ref.clone())) {
                changes.push(Change::Upsert(spec.clone(), va_ref.clone()));
            }
        }
        self.emitted.retain(|key, _| {
            let keep = !here(&key.namespace) || variants.contains_key(key);
            if !keep {
                changes.push(Change::Remove(key.clone()));
            }
            keep
        });
        self.emitted.extend(variants);

        // Problems: report new and changed ones, clear the fixed ones.
        for (key, (owner, problem)) in &problems {
            if self.problems.get(key).map(|(_, p)| p) != Some(problem) {
                changes.push(Change::Problem(owner.clone(), Some(problem.clone())));
            }
        }
        self.problems.retain(|key, (owner, _)| {
            let keep = !here(&key.1) || problems.contains_key(key);
            if !keep {
                changes.push(Change::Problem(owner.clone(), None));
            }
            keep
        });
        self.problems.extend(problems);
        for (key, (va_ref, why)) in &no_targets {
            if !self.no_targets.contains(key) {
                changes.push(Change::NoTargets(va_ref.clone(), why.clone()));
            }
        }
        self.no_targets
            .retain(|key| !here(&key.0) || no_targets.contains_key(key));
        self.no_targets.extend(no_targets.into_keys());
        changes
    }

    /// The variants one VA stands for, each with a problem that did not stop it (if any); an
    /// error when the VA cannot be acted on at all.
    fn variants_of(
        &self,
        va: &VariantAutoscaling,
    ) -> Result<Vec<(VariantSpec, Option<String>)>, String> {
        let (namespace, name) = id(&va.metadata);
        // The API server's schema refuses these; an object stored before it did is refused here.
        if let Some(problem) = super::scalers::model_id_problem(&va.spec.model_id) {
            return Err(format!("spec.modelID: {problem}"));
        }
        let model = ModelKey::new(namespace.clone(), va.spec.model_id.clone());
        let first_acc = va
            .spec
            .model_profile
            .as_ref()
            .and_then(|p| p.accelerators.first());
        let max_batch = first_acc
            .map(|a| a.max_batch_size)
            .filter(|b| *b >= 1)
            .map_or(DEFAULT_MAX_BATCH, |b| b as u32);
        let label_acc = va
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ACCELERATOR_NAME_LABEL))
            .filter(|v| !v.is_empty())
            .cloned();
        let status_desired = va
            .status
            .as_ref()
            .and_then(|s| s.desired_optimized_alloc.num_replicas)
            .map(|n| n.max(0) as u32);
        let accelerator_from = |d: Option<&DeploymentInfo>| self.accelerator_of(d);
        match &va.spec.scale_target_ref {
            Some(target) => {
                if target.kind != DEPLOYMENT && target.kind != lws::KIND {
                    return Err(format!(
                        "spec.scaleTargetRef.kind: expected Deployment or LeaderWorkerSet, got {:?}",
                        target.kind
                    ));
                }
                let (cost, problem) = match va.spec.cost() {
                    Ok(c) => (c, None),
                    Err(e) => (
                        crate::crd::DEFAULT_VARIANT_COST.parse().unwrap_or(10.0),
                        Some(e),
                    ),
                };
                let deployment = self.target(&namespace, &target.kind, &target.name);
                let accelerator = label_acc
                    .or_else(|| {
                        // It becomes a label value of the published series.
                        first_acc
                            .map(|a| a.acc.clone())
                            .filter(|a| crate::config::settings::is_label_value(a))
                    })
                    .or_else(|| accelerator_from(deployment))
                    .unwrap_or_else(|| "unknown".into());
                Ok(vec![(
                    VariantSpec {
                        key: VariantKey::new(namespace, name),
                        model,
                        deployment: target_id(&target.kind, &target.name),
                        cost,
                        accelerator,
                        status_desired,
                        max_batch,
                        bounds: Default::default(),
                        role: deployment.map(|d| d.role).unwrap_or_default(),
                        gpus_per_replica: self
                            .gpus_per_replica(deployment, first_acc.map(|a| a.acc_count)),
                    },
                    problem,
                )])
            }
            None => Ok(self
                .deployments
                .iter()
                .filter(|((ns, _), d)| {
                    *ns == namespace && d.model_id.as_deref() == Some(&va.spec.model_id)
                })
                .map(|((ns, dname), d)| {
                    let accelerator = accelerator_from(Some(d)).unwrap_or_else(|| "unknown".into());
                    let cost = self
                        .costs
                        .by_name(&accelerator)
                        .map_or(DEFAULT_DISCOVERED_COST, |a| a.cost);
                    (
                        VariantSpec {
                            key: VariantKey::new(ns.clone(), dname.clone()),
                            model: model.clone(),
                            deployment: dname.clone(),
                            cost,
                            accelerator,
                            status_desired: None,
                            max_batch,
                            bounds: Default::default(),
                            role: d.role,
                            gpus_per_replica: self
                                .gpus_per_replica(Some(d), first_acc.map(|a| a.acc_count)),
                        },
                        None,
                    )
                })
                .collect()),
        }
    }

    /// The accelerator a Deployment's pods ask for, by its price-list name when it has one.
    fn accelerator_of(&self, deployment: Option<&DeploymentInfo>) -> Option<String> {
        let device = deployment?.accelerator_device.as_deref()?;
        self.costs.name_for_device(device)
    }

    /// The bounds of the scaler that acts on a Deployment: its ScaledObject, else its HPA
    /// (KEDA's own HPA speaks for its ScaledObject, so it is skipped).
    fn bounds_of(&self, namespace: &str, deployment: &str) -> ReplicaBounds {
        let acting = |kind: OwnerKind| {
            self.scalers.values().find_map(|e| {
                let info = e.info.as_ref().ok()?;
                (e.owner.kind == kind
                    && e.owner.namespace == namespace
                    && !info.owned_by_keda
                    && target_id(&info.target.kind, &info.target.name) == deployment)
                    .then_some(info.bounds)
            })
        };
        acting(OwnerKind::ScaledObject)
            .or_else(|| acting(OwnerKind::HorizontalPodAutoscaler))
            .unwrap_or_default()
    }

    /// The variant an annotated scaler stands for (`None`: it asks for none), or why it
    /// cannot be one. `variants` and `taken` hold what was decided before it.
    fn scaler_variant(
        &self,
        entry: &ScalerEntry,
        variants: &BTreeMap<VariantKey, (VariantSpec, OwnerRef)>,
        taken: &BTreeMap<Id, OwnerRef>,
    ) -> Option<Result<VariantSpec, String>> {
        if !entry.in_scope {
            return None;
        }
        let owner = &entry.owner;
        let info = match &entry.info {
            Ok(info) => info,
            Err(e) => return Some(Err(format!("the object cannot be read: {e}"))),
        };
        let (model_id, cost) = match &info.annotation {
            Annotation::Unmanaged => return None,
            _ if info.owned_by_keda => return None,
            Annotation::Invalid(problem) => return Some(Err(problem.clone())),
            Annotation::Managed { model_id, cost } => (model_id, *cost),
        };
        if info.target.kind != DEPLOYMENT && info.target.kind != lws::KIND {
            return Some(Err(format!(
                "spec.scaleTargetRef.kind: expected Deployment or LeaderWorkerSet, got {:?}",
                info.target.kind
            )));
        }
        let namespace = owner.namespace.clone();
        if let Some(other) = taken.get(&(
            namespace.clone(),
            target_id(&info.target.kind, &info.target.name),
        )) {
            return Some(Err(format!(
                "Deployment {} is already managed through {other}; the llm-d.ai annotations on this {} are ignored",
                info.target.name,
                owner.kind.name()
            )));
        }
        let key = VariantKey::new(namespace.clone(), owner.name.clone());
        if let Some((_, other)) = variants.get(&key) {
            return Some(Err(format!(
                "the variant name {} is already used by {other}; the llm-d.ai annotations on this {} are ignored",
                owner.name,
                owner.kind.name()
            )));
        }
        let deployment = self.target(&namespace, &info.target.kind, &info.target.name);
        Some(Ok(VariantSpec {
            key,
            model: ModelKey::new(namespace, model_id.clone()),
            deployment: target_id(&info.target.kind, &info.target.name),
            cost,
            accelerator: self
                .accelerator_of(deployment)
                .unwrap_or_else(|| "unknown".into()),
            status_desired: None,
            max_batch: DEFAULT_MAX_BATCH,
            bounds: info.bounds,
            role: deployment.map(|d| d.role).unwrap_or_default(),
            gpus_per_replica: self.gpus_per_replica(deployment, None),
        }))
    }

    /// Live pods of the Deployments that managed variants scale, for the metrics read: by the
    /// owner chain, else by the Deployment's label selector.
    pub fn pod_index(&self) -> PodIndex {
        let targets: BTreeSet<(&str, &str)> = self
            .emitted
            .values()
            .map(|(s, _)| (s.key.namespace.as_str(), s.deployment.as_str()))
            .collect();
        let mut index = PodIndex::new();
        for ((ns, pod), info) in &self.pods {
            if !info.live {
                continue;
            }
            // Only a group's leader reports a LeaderWorkerSet's metrics; workers take no part.
            if matches!(info.group, Some((_, false))) {
                continue;
            }
            if let Some(deployment) = self.target_of(ns, info)
                && targets.contains(&(ns.as_str(), deployment.as_str()))
            {
                index.insert((ns.clone(), pod.clone()), deployment);
            }
        }
        index
    }

    /// The scale target a pod belongs to (its group's, for a LeaderWorkerSet's leader and
    /// workers alike): by the owner chain, else by a Deployment's label selector.
    fn target_of(&self, ns: &str, info: &PodInfo) -> Option<String> {
        let owner = match &info.group {
            Some((group, _)) => Some(target_id(lws::KIND, group)),
            None => info.owner_deployment.clone(),
        };
        owner.or_else(|| {
            self.deployments
                .iter()
                .find(|((dns, _), d)| {
                    dns == ns
                        && !d.selector.is_empty()
                        && d.selector
                            .iter()
                            .all(|(k, v)| info.labels.get(k) == Some(v))
                })
                .map(|((_, name), _)| name.clone())
        })
    }

    /// The models whose variants' pods these are, by (namespace, pod name): the pods whose
    /// accelerators the pool is shared out from, rather than taken away from it.
    pub fn pod_models(&self) -> BTreeMap<(String, String), ModelKey> {
        let models: BTreeMap<(&str, &str), &ModelKey> = self
            .emitted
            .values()
            .map(|(s, _)| ((s.key.namespace.as_str(), s.deployment.as_str()), &s.model))
            .collect();
        self.pods
            .iter()
            .filter_map(|((ns, pod), info)| {
                let target = self.target_of(ns, info)?;
                let model = models.get(&(ns.as_str(), target.as_str()))?;
                Some(((ns.clone(), pod.clone()), (*model).clone()))
            })
            .collect()
    }

    /// Every managed model.
    pub fn models(&self) -> Vec<ModelKey> {
        let set: BTreeSet<ModelKey> = self
            .emitted
            .values()
            .map(|(s, _)| s.model.clone())
            .collect();
        set.into_iter().collect()
    }

    /// The object that a variant's status and Events go to.
    pub fn owner_of(&self, variant: &VariantKey) -> Option<&OwnerRef> {
        self.emitted.get(variant).map(|(_, r)| r)
    }

    /// The problem currently reported for a VA or scaler, if any.
    pub fn problem_of(&self, owner: &OwnerRef) -> Option<&str> {
        self.problems.get(&owner.id()).map(|(_, p)| p.as_str())
    }
}

/// Whether two versions of a VA make the same variants: same spec and labels, and the same
/// desired count in the status (the safety net's fallback). Conditions and run times, which
/// every status write changes, do not matter.
fn same_variant_inputs(old: &VariantAutoscaling, new: &VariantAutoscaling) -> bool {
    let desired = |va: &VariantAutoscaling| {
        va.status
            .as_ref()
            .and_then(|s| s.desired_optimized_alloc.num_replicas)
    };
    old.spec == new.spec
        && old.metadata.labels == new.metadata.labels
        && old.metadata.generation == new.metadata.generation
        && old.metadata.uid == new.metadata.uid
        && desired(old) == desired(new)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use serde_json::json;

    use super::*;
    use crate::crd::CONTROLLER_INSTANCE_LABEL;

    fn meta(ns: &str, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn va(
        ns: &str,
        name: &str,
        target: &str,
        labels: &[(&str, &str)],
    ) -> DeserializeGuard<VariantAutoscaling> {
        let mut value = json!({
            "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"modelID": "m", "scaleTargetRef": {"kind": "Deployment", "name": target}},
        });
        value["metadata"]["labels"] = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        DeserializeGuard(Ok(serde_json::from_value(value).expect("VA")))
    }

    fn deployment(ns: &str, name: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {}}},
            "status": {"replicas": 3, "readyReplicas": 1},
        }))
        .expect("deployment")
    }

    fn synced(scope: Scope) -> Inventory {
        let mut inv = Inventory::new(scope);
        for k in [
            Kind::VariantAutoscaling,
            Kind::Deployment,
            Kind::Pod,
            Kind::ConfigMap,
            Kind::HorizontalPodAutoscaler,
            Kind::ScaledObject,
            Kind::LeaderWorkerSet,
        ] {
            inv.relist_started(k);
            inv.relist_done(k);
        }
        inv
    }

    #[test]
    fn scope_is_the_instance_label_and_the_namespace() {
        let scope = Scope {
            instance: Some("a".into()),
            namespace: Some("llm".into()),
        };
        let label = [(CONTROLLER_INSTANCE_LABEL, "a")];
        assert!(scope.manages(&meta("llm", "x", &label)));
        assert!(!scope.manages(&meta("other", "x", &label)));
        assert!(!scope.manages(&meta("llm", "x", &[])));
        assert!(!scope.manages(&meta("llm", "x", &[(CONTROLLER_INSTANCE_LABEL, "b")])));
        let none = Scope::default();
        assert!(none.manages(&meta("any", "x", &[])));
        assert!(!none.manages(&meta("any", "x", &label)));
    }

    #[test]
    fn nothing_is_emitted_before_every_initial_list_is_in_then_deployments_come_first() {
        let mut inv = Inventory::new(Scope::default());
        inv.relist_started(Kind::VariantAutoscaling);
        assert!(inv.va_applied(va("llm", "v", "d", &[])).is_empty());
        assert!(inv.relist_done(Kind::VariantAutoscaling).is_empty());
        inv.relist_started(Kind::Deployment);
        assert!(inv.deployment_applied(&deployment("llm", "d")).is_empty());
        assert!(inv.relist_done(Kind::Deployment).is_empty());
        inv.relist_started(Kind::Pod);
        assert!(inv.relist_done(Kind::Pod).is_empty());
        inv.relist_started(Kind::ConfigMap);
        assert!(inv.relist_done(Kind::ConfigMap).is_empty());
        inv.relist_started(Kind::HorizontalPodAutoscaler);
        assert!(inv.relist_done(Kind::HorizontalPodAutoscaler).is_empty());
        assert!(inv.kind_absent(Kind::LeaderWorkerSet).is_empty());
        // KEDA is not installed: an absent API completes the view.
        let changes = inv.kind_absent(Kind::ScaledObject);
        assert!(
            matches!(&changes[0], Change::Deployment { name, state: Some(s), .. } if name == "d" && s.replicas == 3 && s.ready == 1)
        );
        assert!(matches!(&changes[1], Change::Upsert(spec, _) if spec.deployment == "d"));
        // A relist that no longer holds the VA removes it.
        inv.relist_started(Kind::VariantAutoscaling);
        let changes = inv.relist_done(Kind::VariantAutoscaling);
        assert!(matches!(&changes[..], [Change::Remove(k)] if k.name == "v"));
    }

    #[test]
    fn pods_belong_through_the_owner_chain_or_the_selector_and_only_live_ones_count() {
        let mut inv = synced(Scope::default());
        inv.deployment_applied(&deployment("llm", "d"));
        inv.va_applied(va("llm", "v", "d", &[]));
        let mut owned = meta("llm", "d-7f9c-1", &[("pod-template-hash", "7f9c")]);
        owned.owner_references = Some(vec![OwnerReference {
            kind: "ReplicaSet".into(),
            name: "d-7f9c".into(),
            ..Default::default()
        }]);
        inv.pod_applied(&owned);
        inv.pod_applied(&meta("llm", "bare", &[("app", "d")]));
        let mut terminating = meta("llm", "d-7f9c-2", &[("app", "d")]);
        terminating.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        inv.pod_applied(&terminating);
        inv.pod_applied(&meta("llm", "stranger", &[("app", "x")]));
        let index = inv.pod_index();
        assert_eq!(index.len(), 2, "{index:?}");
        assert_eq!(index[&("llm".to_string(), "d-7f9c-1".to_string())], "d");
        assert_eq!(index[&("llm".to_string(), "bare".to_string())], "d");
    }

    /// A LeaderWorkerSet and a Deployment of the same name in one namespace are two targets:
    /// their replicas, pods and variants never mix.
    #[test]
    fn a_leader_worker_set_and_a_deployment_of_one_name_stay_apart() {
        let mut inv = synced(Scope::default());
        let mut changes = inv.deployment_applied(&deployment("llm", "same"));
        let group: LeaderWorkerSet = serde_json::from_value(json!({
            "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": "same", "namespace": "llm"},
            "spec": {"replicas": 2, "leaderWorkerTemplate": {"size": 2}},
            "status": {"replicas": 2, "readyReplicas": 2},
        }))
        .expect("lws");
        changes.extend(inv.lws_applied(DeserializeGuard(Ok(group))));
        let states: Vec<(String, u32)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Deployment {
                    name,
                    state: Some(s),
                    ..
                } => Some((name.clone(), s.replicas)),
                _ => None,
            })
            .collect();
        assert_eq!(
            states,
            [
                ("same".to_string(), 3),
                ("LeaderWorkerSet/same".to_string(), 2)
            ]
        );
        inv.va_applied(va("llm", "on-deployment", "same", &[]));
        let mut on_group = va("llm", "on-group", "same", &[]);
        if let Ok(v) = &mut on_group.0
            && let Some(target) = &mut v.spec.scale_target_ref
        {
            target.kind = "LeaderWorkerSet".into();
        }
        let changes = inv.va_applied(on_group);
        let specs = upserted(&changes);
        assert_eq!(specs.len(), 1, "{changes:?}");
        assert_eq!(specs[0].deployment, "LeaderWorkerSet/same");
        let mut owned = meta("llm", "same-7f9c-1", &[("pod-template-hash", "7f9c")]);
        owned.owner_references = Some(vec![OwnerReference {
            kind: "ReplicaSet".into(),
            name: "same-7f9c".into(),
            ..Default::default()
        }]);
        inv.pod_applied(&owned);
        inv.pod_applied(&meta(
            "llm",
            "same-0",
            &[(lws::NAME_LABEL, "same"), (lws::WORKER_INDEX_LABEL, "0")],
        ));
        let index = inv.pod_index();
        assert_eq!(
            index[&("llm".to_string(), "same-7f9c-1".to_string())],
            "same"
        );
        assert_eq!(
            index[&("llm".to_string(), "same-0".to_string())],
            "LeaderWorkerSet/same"
        );
    }

    #[test]
    fn a_malformed_update_keeps_the_last_valid_version_in_effect() {
        let mut inv = synced(Scope::default());
        inv.deployment_applied(&deployment("llm", "d"));
        inv.va_applied(va("llm", "v", "d", &[]));
        let broken = DeserializeGuard(Err(kube::core::error_boundary::InvalidObject {
            error: "spec.modelID: invalid type: integer `3`, expected a string".into(),
            metadata: meta("llm", "v", &[]),
        }));
        let changes = inv.va_applied(broken);
        assert!(
            matches!(&changes[..], [Change::Problem(r, Some(p))] if r.name == "v" && p.contains("spec.modelID")),
            "{changes:?}"
        );
        assert_eq!(
            inv.models().len(),
            1,
            "still managed on its last valid spec"
        );
        let fixed = inv.va_applied(va("llm", "v", "d", &[]));
        assert!(
            matches!(&fixed[..], [Change::Problem(_, None)]),
            "{fixed:?}"
        );
    }

    fn upserted(changes: &[Change]) -> Vec<&VariantSpec> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Upsert(spec, _) => Some(spec),
                _ => None,
            })
            .collect()
    }

    fn with(
        mut va: DeserializeGuard<VariantAutoscaling>,
        f: impl FnOnce(&mut VariantAutoscaling),
    ) -> DeserializeGuard<VariantAutoscaling> {
        if let Ok(v) = &mut va.0 {
            f(v);
        }
        va
    }

    #[test]
    fn the_accelerator_comes_from_the_label_then_the_profile_then_the_node_selector() {
        let mut inv = synced(Scope::default());
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "llm"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [], "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"}}}},
        }))
        .expect("deployment");
        inv.deployment_applied(&d);
        let accelerator = |inv: &mut Inventory, va| {
            upserted(&inv.va_applied(va))
                .first()
                .map(|s| s.accelerator.clone())
        };
        let profile = |v: &mut VariantAutoscaling| {
            v.spec.model_profile = serde_json::from_value(
                json!({"accelerators": [{"acc": "A100", "accCount": 1, "maxBatchSize": 64}]}),
            )
            .expect("profile");
        };
        assert_eq!(
            accelerator(&mut inv, va("llm", "v", "d", &[])).as_deref(),
            Some("NVIDIA-L40S"),
            "node selector, unpriced"
        );
        assert_eq!(
            accelerator(&mut inv, with(va("llm", "v", "d", &[]), profile)).as_deref(),
            Some("A100")
        );
        let labelled = with(
            va("llm", "v", "d", &[(ACCELERATOR_NAME_LABEL, "H100")]),
            profile,
        );
        assert_eq!(accelerator(&mut inv, labelled).as_deref(), Some("H100"));
        assert_eq!(
            accelerator(&mut inv, va("llm", "w", "absent", &[])).as_deref(),
            Some("unknown")
        );
        // max-num-seqs from the profile, else vLLM's default.
        let spec = &inv.emitted[&VariantKey::new("llm", "w")].0;
        assert_eq!(spec.max_batch, DEFAULT_MAX_BATCH);
    }

    #[test]
    fn current_replicas_are_status_replicas_else_spec_replicas() {
        let mut d = deployment("llm", "d");
        assert_eq!(
            DeploymentInfo::from_deployment(&d).state,
            DeploymentState {
                replicas: 3,
                ready: 1
            }
        );
        d.status = None;
        assert_eq!(
            DeploymentInfo::from_deployment(&d).state,
            DeploymentState {
                replicas: 2,
                ready: 0
            }
        );
    }

    #[test]
    fn the_desired_count_in_the_va_status_is_the_safety_nets_fallback_and_status_churn_is_free() {
        let mut inv = synced(Scope::default());
        inv.deployment_applied(&deployment("llm", "d"));
        let stored = |n: i32| {
            with(va("llm", "v", "d", &[]), move |v| {
                v.status = serde_json::from_value(json!({"desiredOptimizedAlloc": {"numReplicas": n}, "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "x"}]})).expect("status");
            })
        };
        let changes = inv.va_applied(stored(4));
        assert_eq!(upserted(&changes)[0].status_desired, Some(4));
        // A status write that only changes conditions changes no variant.
        let churn = with(stored(4), |v| {
            if let Some(s) = v.status.as_mut() {
                s.conditions[0].message = "y".into();
            }
        });
        assert!(inv.va_applied(churn).is_empty());
        assert_eq!(
            upserted(&inv.va_applied(stored(6)))[0].status_desired,
            Some(6)
        );
    }

    #[test]
    fn perf_parms_are_reported_once_per_generation() {
        let mut inv = synced(Scope::default());
        let old = |generation: i64| {
            with(va("llm", "v", "d", &[]), move |v| {
                v.metadata.generation = Some(generation);
                v.spec.model_profile = serde_json::from_value(json!({"accelerators": [{"acc": "A100", "accCount": 1, "maxBatchSize": 64, "perfParms": {"decodeParms": {"alpha": "1"}}}]})).expect("profile");
            })
        };
        let deprecated = |changes: Vec<Change>| {
            changes
                .iter()
                .filter(|c| matches!(c, Change::Deprecated(_)))
                .count()
        };
        assert_eq!(deprecated(inv.va_applied(old(1))), 1);
        assert_eq!(deprecated(inv.va_applied(old(1))), 0);
        assert_eq!(deprecated(inv.va_applied(old(2))), 1);
    }

    fn hpa(name: &str, target: &str, annotations: serde_json::Value) -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "llm", "annotations": annotations, "uid": format!("uid-{name}")},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "minReplicas": 2, "maxReplicas": 7},
        }))
        .expect("hpa")
    }

    fn managed(model: &str) -> serde_json::Value {
        json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": model, "llm-d.ai/variant-cost": "25"})
    }

    fn problems(changes: &[Change]) -> Vec<(OwnerKind, String, Option<String>)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Problem(o, p) => Some((o.kind, o.name.clone(), p.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_annotated_hpa_is_a_variant_named_after_it_with_its_bounds_and_events_on_it() {
        let mut inv = synced(Scope::default());
        inv.deployment_applied(&deployment("llm", "d"));
        let changes = inv.hpa_applied(&hpa("h", "d", managed("meta/llama")));
        let [Change::Upsert(spec, owner)] = &changes[..] else {
            panic!("{changes:?}");
        };
        assert_eq!(spec.key, VariantKey::new("llm", "h"));
        assert_eq!(spec.model, ModelKey::new("llm", "meta/llama"));
        assert_eq!((spec.deployment.as_str(), spec.cost), ("d", 25.0));
        assert_eq!((spec.bounds.min, spec.bounds.max), (Some(2), Some(7)));
        assert_eq!(owner.kind, OwnerKind::HorizontalPodAutoscaler);
        assert!(!owner.has_status());
        assert_eq!(
            owner.object_reference().kind.as_deref(),
            Some("HorizontalPodAutoscaler")
        );
        // The HPA controller's status churn changes nothing.
        assert!(
            inv.hpa_applied(&hpa("h", "d", managed("meta/llama")))
                .is_empty()
        );
        // Unannotated: the variant goes.
        let changes = inv.hpa_applied(&hpa("h", "d", json!({})));
        assert!(matches!(&changes[..], [Change::Remove(k)] if k.name == "h"));
    }

    #[test]
    fn a_va_wins_a_deployment_over_an_annotated_scaler_which_is_told_and_lends_its_bounds() {
        let mut inv = synced(Scope::default());
        inv.deployment_applied(&deployment("llm", "d"));
        inv.va_applied(va("llm", "v", "d", &[]));
        let changes = inv.hpa_applied(&hpa("h", "d", managed("m")));
        let spec = upserted(&changes);
        assert_eq!(spec.len(), 1, "{changes:?}");
        assert_eq!(spec[0].key.name, "v");
        assert_eq!((spec[0].bounds.min, spec[0].bounds.max), (Some(2), Some(7)));
        let p = problems(&changes);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, OwnerKind::HorizontalPodAutoscaler);
        let message = p[0].2.as_deref().expect("a problem");
        assert!(
            message.contains("Deployment d is already managed through VariantAutoscaling llm/v"),
            "{message}"
        );
        // The VA goes: the scaler takes over and its problem is cleared.
        let changes = inv.va_deleted("llm", "v");
        assert!(upserted(&changes).iter().any(|s| s.key.name == "h"));
        assert!(problems(&changes).contains(&(
            OwnerKind::HorizontalPodAutoscaler,
            "h".into(),
            None
        )));
    }

    #[test]
    fn two_scalers_on_one_deployment_and_bad_annotations_are_problems_on_the_scaler() {
        let mut inv = synced(Scope::default());
        inv.hpa_applied(&hpa("a", "d", managed("m")));
        let changes = inv.hpa_applied(&hpa("b", "d", managed("m")));
        let p = problems(&changes);
        assert!(
            p[0].2
                .as_deref()
                .is_some_and(|m| m.contains("HorizontalPodAutoscaler llm/a")),
            "{p:?}"
        );
        let changes = inv.hpa_applied(&hpa(
            "c",
            "e",
            json!({"llm-d.ai/managed": "true", "llm-d.ai/variant-cost": "x"}),
        ));
        let p = problems(&changes);
        assert!(
            p[0].2
                .as_deref()
                .is_some_and(|m| m.starts_with("annotation llm-d.ai/model-id")),
            "{p:?}"
        );
        assert!(upserted(&changes).is_empty());
    }

    #[test]
    fn keda_s_own_hpa_and_scalers_of_another_instance_make_no_variant() {
        let mut inv = synced(Scope {
            instance: Some("a".into()),
            namespace: None,
        });
        let mut keda_hpa = hpa("keda-hpa-s", "d", managed("m"));
        keda_hpa.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "s", "uid": "u"}))
                .expect("owner"),
        ]);
        keda_hpa
            .metadata
            .labels
            .get_or_insert_default()
            .insert(CONTROLLER_INSTANCE_LABEL.into(), "a".into());
        assert!(inv.hpa_applied(&keda_hpa).is_empty());
        // Unlabelled: belongs to the instance-less controller.
        assert!(inv.hpa_applied(&hpa("h", "d", managed("m"))).is_empty());
    }

    #[test]
    fn a_scaled_object_appears_once_keda_is_installed_and_goes_with_a_relist() {
        let mut inv = synced(Scope::default());
        let so: ScaledObject = serde_json::from_value(json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "s", "namespace": "llm", "annotations": managed("m")},
            "spec": {"scaleTargetRef": {"name": "d"}, "minReplicaCount": 0, "maxReplicaCount": 4},
        }))
        .expect("so");
        inv.relist_started(Kind::ScaledObject);
        let changes = inv.scaled_object_applied(DeserializeGuard(Ok(so)));
        assert!(inv.relist_done(Kind::ScaledObject).is_empty());
        let [Change::Upsert(spec, owner)] = &changes[..] else {
            panic!("{changes:?}");
        };
        assert_eq!((spec.bounds.min, spec.bounds.max), (Some(0), Some(4)));
        assert_eq!(owner.kind, OwnerKind::ScaledObject);
        // KEDA is removed: its API is not served any more.
        let changes = inv.kind_absent(Kind::ScaledObject);
        assert!(matches!(&changes[..], [Change::Remove(k)] if k.name == "s"));
    }

    #[test]
    fn a_va_whose_model_id_no_schema_would_take_is_a_problem_not_a_variant() {
        let mut inv = synced(Scope::default());
        let mut huge = va("llm", "v", "d", &[]);
        if let Ok(v) = &mut huge.0 {
            v.spec.model_id = "m".repeat(1_000_000);
        }
        let changes = inv.va_applied(huge);
        assert!(upserted(&changes).is_empty());
        assert!(changes.iter().any(|c| matches!(c,
            Change::Problem(_, Some(p)) if p.starts_with("spec.modelID: 1000000 bytes long, expected at most 253"))));
        let mut control = va("llm", "w", "d", &[]);
        if let Ok(v) = &mut control.0 {
            v.spec.model_id = "a\u{0}b".into();
        }
        let changes = inv.va_applied(control);
        assert!(changes.iter().any(|c| matches!(c,
            Change::Problem(_, Some(p)) if p.contains("control character"))));
    }
}
