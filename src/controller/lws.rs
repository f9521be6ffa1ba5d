//! LeaderWorkerSet (`leaderworkerset.x-k8s.io/v1`) as a scale target: a model served by groups
//! of pods (one leader, workers) for multi-host inference. Its replicas are groups, its current
//! count is `status.replicas`, and only a group's leader pod (worker index 0) reports the
//! group's vLLM metrics. The CRD may be absent: the watch then waits for it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use wva_actors::messages::DeploymentState;

use super::targets::{DeploymentInfo, accelerator_in, devices_in, model_id_of, role_of};

/// The kind name in a `scaleTargetRef`.
pub const KIND: &str = super::targets::LEADER_WORKER_SET;
/// Pod label naming the LeaderWorkerSet a pod belongs to.
pub const NAME_LABEL: &str = "leaderworkerset.sigs.k8s.io/name";
/// Pod label with the pod's index in its group; the leader's is `0`.
pub const WORKER_INDEX_LABEL: &str = "leaderworkerset.sigs.k8s.io/worker-index";

/// The fields of a LeaderWorkerSet the controller reads.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "leaderworkerset.x-k8s.io",
    version = "v1",
    kind = "LeaderWorkerSet",
    plural = "leaderworkersets",
    namespaced,
    status = "LeaderWorkerSetStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct LeaderWorkerSetSpec {
    /// Groups wanted (default 1).
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub leader_worker_template: Option<LeaderWorkerTemplate>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeaderWorkerTemplate {
    #[serde(default)]
    pub size: Option<i32>,
    #[serde(default)]
    pub leader_template: Option<PodTemplateSpec>,
    #[serde(default)]
    pub worker_template: Option<PodTemplateSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeaderWorkerSetStatus {
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub ready_replicas: Option<i32>,
}

/// The parts of a LeaderWorkerSet the controller uses, in the shape of a Deployment's: groups
/// as replicas, the leader template's accelerator (else the workers').
pub fn info(lws: &LeaderWorkerSet) -> DeploymentInfo {
    let spec_replicas = lws.spec.replicas.unwrap_or(1);
    let status = lws.status.as_ref();
    let replicas = status.and_then(|s| s.replicas).unwrap_or(spec_replicas);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let template = lws.spec.leader_worker_template.as_ref();
    let pod_spec = |t: Option<&PodTemplateSpec>| t.and_then(|t| t.spec.clone());
    let accelerator_device = [
        template.and_then(|t| pod_spec(t.leader_template.as_ref())),
        template.and_then(|t| pod_spec(t.worker_template.as_ref())),
    ]
    .into_iter()
    .flatten()
    .find_map(|spec| accelerator_in(spec.node_selector.as_ref()?));
    // A group is its leader and `size - 1` workers: what one replica holds is all of theirs.
    let workers = template.and_then(|t| t.size).unwrap_or(1).max(1) as u32 - 1;
    let mut devices = template
        .and_then(|t| pod_spec(t.leader_template.as_ref()))
        .or_else(|| template.and_then(|t| pod_spec(t.worker_template.as_ref())))
        .map(|p| devices_in(&p))
        .unwrap_or_default();
    if let Some(worker) = template.and_then(|t| pod_spec(t.worker_template.as_ref())) {
        for (name, n) in devices_in(&worker) {
            *devices.entry(name).or_insert(0) += n * workers;
        }
    }
    let meta = &lws.metadata;
    let model_id = model_id_of(meta);
    DeploymentInfo {
        state: DeploymentState {
            replicas: replicas.max(0) as u32,
            ready: ready.max(0) as u32,
        },
        model_id,
        accelerator_device,
        // Pods are matched by the group labels, not a selector.
        selector: BTreeMap::new(),
        role: role_of(
            meta,
            template
                .and_then(|t| t.leader_template.as_ref())
                .and_then(|t| t.metadata.as_ref()),
        ),
        devices,
    }
}

/// The LeaderWorkerSet a pod belongs to, and whether it is its group's leader.
pub fn membership(labels: &BTreeMap<String, String>) -> Option<(String, bool)> {
    let name = labels.get(NAME_LABEL)?;
    let leader = labels.get(WORKER_INDEX_LABEL).is_none_or(|i| i == "0");
    Some((name.clone(), leader))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn groups_are_replicas_and_the_leader_template_names_the_accelerator() {
        let lws: LeaderWorkerSet = serde_json::from_value(json!({
            "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": "big", "namespace": "llm", "labels": {"model_id": "m"}},
            "spec": {"replicas": 3, "leaderWorkerTemplate": {"size": 4,
                "leaderTemplate": {"spec": {"containers": [], "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}},
                "workerTemplate": {"spec": {"containers": []}}}},
            "status": {"replicas": 2, "readyReplicas": 1},
        }))
        .expect("lws");
        let i = info(&lws);
        assert_eq!((i.state.replicas, i.state.ready), (2, 1));
        assert_eq!(
            i.accelerator_device.as_deref(),
            Some("NVIDIA-H100-80GB-HBM3")
        );
        assert_eq!(i.model_id.as_deref(), Some("m"));
        let mut labels = BTreeMap::from([(NAME_LABEL.to_string(), "big".to_string())]);
        labels.insert(WORKER_INDEX_LABEL.into(), "0".into());
        assert_eq!(membership(&labels), Some(("big".into(), true)));
        labels.insert(WORKER_INDEX_LABEL.into(), "2".into());
        assert_eq!(membership(&labels), Some(("big".into(), false)));
        assert_eq!(membership(&BTreeMap::new()), None);
    }
}
