//! What the controller reads from a scale target's object (a Deployment, or a LeaderWorkerSet
//! through `lws`): its replicas, the model it serves, the accelerator its pods ask for, its
//! selector and its role. Pure adapters from Kubernetes objects to facts.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wva_actors::messages::DeploymentState;
use wva_actors::policy::roles::{ROLE_LABEL, Role};

/// The kind of a LeaderWorkerSet in a `scaleTargetRef`.
pub const LEADER_WORKER_SET: &str = "LeaderWorkerSet";

/// The name a scale target goes by in the actors, the pod index and the decision log: a
/// Deployment's own name, a LeaderWorkerSet's with its kind before it. A Deployment and a
/// LeaderWorkerSet of the same name in one namespace are then two targets, whose pods, replicas
/// and decisions never mix.
pub fn target_id(kind: &str, name: &str) -> String {
    if kind == LEADER_WORKER_SET {
        format!("{LEADER_WORKER_SET}/{name}")
    } else {
        name.to_string()
    }
}

/// The kind and name of a target from its [`target_id`], for messages.
pub fn target_of(id: &str) -> (&'static str, &str) {
    match id
        .strip_prefix(LEADER_WORKER_SET)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(name) => (LEADER_WORKER_SET, name),
        None => ("Deployment", id),
    }
}

/// Label or annotation that ties a Deployment to a model in discovery mode.
pub const MODEL_ID_KEY: &str = "model_id";
/// Node-selector keys that name the accelerator of a pod template, by vendor.
pub const ACCELERATOR_NODE_LABELS: [&str; 3] = [
    "nvidia.com/gpu.product",
    "amd.com/gpu.product",
    "intel.com/gpu.product",
];
/// The parts of a Deployment the controller uses.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentInfo {
    pub state: DeploymentState,
    /// Label, else annotation, `model_id` (discovery mode).
    pub model_id: Option<String>,
    /// The accelerator node selector of the pod template.
    pub accelerator_device: Option<String>,
    /// `spec.selector.matchLabels`, to own pods whose owner chain is not visible.
    pub selector: BTreeMap<String, String>,
    /// Prefill, decode or both: `llm-d.ai/role` on the object, else on its pod template.
    pub role: Role,
    /// Extended resources (e.g. `nvidia.com/gpu`) one replica asks for, by name.
    pub devices: BTreeMap<String, u32>,
}

/// The model a scale target serves: its `model_id` label, else its annotation.
pub(crate) fn model_id_of(meta: &ObjectMeta) -> Option<String> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MODEL_ID_KEY))
        .or_else(|| meta.annotations.as_ref().and_then(|a| a.get(MODEL_ID_KEY)))
        .cloned()
}

/// The extended resources (names with a `/`, such as `nvidia.com/gpu`) a pod asks for: each
/// container's limit, else its request, summed over the containers. Init containers run before
/// and hold theirs only while the others wait, so they are left out.
pub(crate) fn devices_in(pod: &PodSpec) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for container in &pod.containers {
        let Some(resources) = &container.resources else {
            continue;
        };
        let limits = resources.limits.iter().flatten();
        let requests = resources.requests.iter().flatten();
        let mut asked: BTreeMap<&String, &Quantity> = requests.collect();
        asked.extend(limits);
        for (name, quantity) in asked {
            if !name.contains('/') {
                continue;
            }
            if let Ok(n) = quantity.0.trim().parse::<u32>() {
                *out.entry(name.clone()).or_insert(0) += n;
            }
        }
    }
    out
}

/// The accelerator a pod template's node selector asks for.
pub(crate) fn accelerator_in(node_selector: &BTreeMap<String, String>) -> Option<String> {
    ACCELERATOR_NODE_LABELS
        .iter()
        .find_map(|k| node_selector.get(*k).cloned())
}

impl DeploymentInfo {
    pub fn from_deployment(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let status = d.status.as_ref();
        let spec_replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
        // status.replicas, else spec.replicas (a Deployment the controller has not seen yet).
        let replicas = status.and_then(|s| s.replicas).unwrap_or(spec_replicas);
        let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
        let model_id = model_id_of(&d.metadata);
        let accelerator_device = spec
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.node_selector.as_ref())
            .and_then(accelerator_in);
        Self {
            state: DeploymentState {
                replicas: replicas.max(0) as u32,
                ready: ready.max(0) as u32,
            },
            model_id,
            accelerator_device,
            selector: spec
                .and_then(|s| s.selector.match_labels.clone())
                .unwrap_or_default(),
            role: role_of(&d.metadata, spec.and_then(|s| s.template.metadata.as_ref())),
            devices: spec
                .and_then(|s| s.template.spec.as_ref())
                .map(devices_in)
                .unwrap_or_default(),
        }
    }
}

/// The role named by `llm-d.ai/role` on an object, else on its pod template.
pub fn role_of(meta: &ObjectMeta, template: Option<&ObjectMeta>) -> Role {
    let label = |m: &ObjectMeta| m.labels.as_ref()?.get(ROLE_LABEL).cloned();
    Role::from_label(label(meta).or_else(|| template.and_then(label)).as_deref())
}
