//! The accelerator pool as the cluster shows it: per accelerator type, what the schedulable
//! Nodes can give (their allocatable accelerators, by the configured resource name, typed by
//! the configured node label), less what pods outside this replica's models hold, within the
//! `accelerator-pool` ConfigMap's quotas. Built from two watches (Nodes; pods bound to a node,
//! kept only as where they run and what they hold), so a Node that goes away shrinks the pool
//! at the next look, without polling.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher;
use wva_actors::messages::ModelKey;
use wva_actors::policy::scarcity::Pool;

use super::targets::devices_in;
use crate::config::{AcceleratorCosts, PoolConfig};

/// What the pool needs of a Node.
#[derive(Debug, Clone, PartialEq)]
struct NodeFacts {
    labels: BTreeMap<String, String>,
    /// Extended resources it can allocate, by name.
    allocatable: BTreeMap<String, u32>,
    /// Ready and not cordoned: new pods can land on it.
    schedulable: bool,
}

impl NodeFacts {
    fn of(node: &Node) -> Self {
        let status = node.status.as_ref();
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .map(|a| {
                a.iter()
                    .filter(|(name, _)| name.contains('/'))
                    .filter_map(|(name, q)| Some((name.clone(), q.0.trim().parse::<u32>().ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let cordoned = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        Self {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            allocatable,
            schedulable: ready && !cordoned,
        }
    }
}

/// A pod bound to a node, as the pool sees it.
#[derive(Debug, Clone, PartialEq)]
struct BoundPod {
    node: String,
    devices: BTreeMap<String, u32>,
}

/// The two watches' view, and whether each has listed.
#[derive(Debug, Default)]
pub struct PoolView {
    nodes: BTreeMap<String, NodeFacts>,
    pods: BTreeMap<(String, String), BoundPod>,
    relisting_nodes: Option<Vec<String>>,
    relisting_pods: Option<Vec<(String, String)>>,
    nodes_listed: bool,
    pods_listed: bool,
    /// A watch was refused (RBAC): the pool is not read from the nodes.
    refused: bool,
}

fn key_of(meta: &kube::core::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl PoolView {
    /// Whether both watches have listed: before that the pool is not known, and only the
    /// quotas apply.
    pub fn listed(&self) -> bool {
        self.nodes_listed && self.pods_listed
    }

    /// Whether the pool is as known as it will be: listed, or not readable at all.
    pub fn settled(&self) -> bool {
        self.listed() || self.refused
    }

    /// A watch of the pool was refused: decide without it (the quotas still apply).
    pub fn unavailable(&mut self) {
        self.refused = true;
    }

    pub fn node_event(&mut self, event: watcher::Event<Node>) {
        use watcher::Event as E;
        match event {
            E::Init => self.relisting_nodes = Some(Vec::new()),
            E::InitApply(node) | E::Apply(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                if let Some(seen) = &mut self.relisting_nodes {
                    seen.push(name.clone());
                }
                self.nodes.insert(name, NodeFacts::of(&node));
            }
            E::Delete(node) => {
                self.nodes
                    .remove(node.metadata.name.as_deref().unwrap_or_default());
            }
            E::InitDone => {
                if let Some(seen) = self.relisting_nodes.take() {
                    self.nodes.retain(|name, _| seen.contains(name));
                }
                self.nodes_listed = true;
            }
        }
    }

    pub fn pod_event(&mut self, event: watcher::Event<Pod>) {
        use watcher::Event as E;
        match event {
            E::Init => self.relisting_pods = Some(Vec::new()),
            E::InitApply(pod) | E::Apply(pod) => {
                let key = key_of(&pod.metadata);
                if let Some(seen) = &mut self.relisting_pods {
                    seen.push(key.clone());
                }
                match bound(&pod) {
                    Some(b) => {
                        self.pods.insert(key, b);
                    }
                    None => {
                        self.pods.remove(&key);
                    }
                }
            }
            E::Delete(pod) => {
                self.pods.remove(&key_of(&pod.metadata));
            }
            E::InitDone => {
                if let Some(seen) = self.relisting_pods.take() {
                    let seen: std::collections::BTreeSet<_> = seen.into_iter().collect();
                    self.pods.retain(|k, _| seen.contains(k));
                }
                self.pods_listed = true;
            }
        }
    }

    /// The pool: discovered (once listed) and within the quotas. `ours` says which pods are
    /// of the models this replica decides: their accelerators are what is shared out.
    pub fn pool(
        &self,
        config: &PoolConfig,
        costs: &AcceleratorCosts,
        ours: &dyn Fn(&(String, String)) -> bool,
        discover: bool,
    ) -> Pool {
        let mut gpus: BTreeMap<String, u32> = BTreeMap::new();
        let discovered = discover && self.listed();
        if discovered {
            let type_of = |node: &NodeFacts| {
                let device = node.labels.get(&config.accelerator_label)?;
                costs.name_for_device(device)
            };
            let mut offered: BTreeMap<String, i64> = BTreeMap::new();
            for node in self.nodes.values() {
                let (Some(name), Some(&n)) =
                    (type_of(node), node.allocatable.get(&config.resource_name))
                else {
                    continue;
                };
                let entry = offered.entry(name).or_insert(0);
                if node.schedulable {
                    *entry += i64::from(n);
                }
            }
            for (key, pod) in &self.pods {
                let Some(&held) = pod.devices.get(&config.resource_name) else {
                    continue;
                };
                if held == 0 || ours(key) {
                    continue;
                }
                if let Some(name) = self.nodes.get(&pod.node).and_then(type_of)
                    && let Some(left) = offered.get_mut(&name)
                {
                    *left -= i64::from(held);
                }
            }
            gpus = offered
                .into_iter()
                .map(|(name, left)| (name, u32::try_from(left.max(0)).unwrap_or(u32::MAX)))
                .collect();
        }
        for (name, &quota) in &config.quotas {
            // A quota on a type no node offers caps nothing: there is nothing to give.
            let cap = gpus
                .entry(name.clone())
                .or_insert(if discovered { 0 } else { quota });
            *cap = (*cap).min(quota);
        }
        Pool {
            gpus,
            namespace_gpus: config.namespace_quotas.clone(),
        }
    }
}

/// The control loop's side of the pool: the view, the configuration, and the pool last told
/// to the registry.
#[derive(Debug, Default)]
pub struct PoolTracker {
    pub view: PoolView,
    pub config: PoolConfig,
    told: Option<Option<Pool>>,
    /// Accelerator types the nodes have offered: one whose last node is gone offers 0, not an
    /// unlimited pool (a type never seen on a node stays unlimited, so that a name the nodes
    /// spell otherwise never cuts a model to nothing).
    seen: std::collections::BTreeSet<String>,
}

impl PoolTracker {
    /// The pool as it stands, when it differs from the one last told (`Some(None)`: nothing is
    /// limited any more).
    pub fn changed(
        &mut self,
        costs: &AcceleratorCosts,
        ours: &dyn Fn(&(String, String)) -> bool,
        discover: bool,
    ) -> Option<Option<Pool>> {
        let mut pool = self.view.pool(&self.config, costs, ours, discover);
        if discover && self.view.listed() {
            self.seen.extend(pool.gpus.keys().cloned());
            for gone in &self.seen {
                pool.gpus.entry(gone.clone()).or_insert(0);
            }
        }
        let pool = Some(pool).filter(|p| p.is_limited());
        if self.told.as_ref() == Some(&pool) {
            return None;
        }
        self.told = Some(pool.clone());
        Some(pool)
    }
}

/// A pod that holds its node's accelerators: bound to a node and not finished.
fn bound(pod: &Pod) -> Option<BoundPod> {
    let spec = pod.spec.as_ref()?;
    let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let devices = devices_in(spec);
    (!devices.is_empty()).then_some(BoundPod { node, devices })
}

/// Which pods are of the models this replica decides: from the inventory's pods, limited to
/// the models the replica holds.
pub fn ours<'a>(
    pod_models: &'a BTreeMap<(String, String), ModelKey>,
    holds: impl Fn(&ModelKey) -> bool + 'a,
) -> impl Fn(&(String, String)) -> bool + 'a {
    move |key| pod_models.get(key).is_some_and(&holds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, product: &str, gpus: u32, ready: bool, cordoned: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
            "spec": {"unschedulable": cordoned},
            "status": {
                "allocatable": {"cpu": "64", "nvidia.com/gpu": gpus.to_string()},
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
            }
        }))
        .expect("node")
    }

    fn pod(ns: &str, name: &str, node: &str, gpus: u32, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}]
            },
            "status": {"phase": phase}
        }))
        .expect("pod")
    }

    fn listed(nodes: Vec<Node>, pods: Vec<Pod>) -> PoolView {
        let mut view = PoolView::default();
        view.node_event(watcher::Event::Init);
        for n in nodes {
            view.node_event(watcher::Event::InitApply(n));
        }
        view.node_event(watcher::Event::InitDone);
        view.pod_event(watcher::Event::Init);
        for p in pods {
            view.pod_event(watcher::Event::InitApply(p));
        }
        view.pod_event(watcher::Event::InitDone);
        view
    }

    fn costs() -> AcceleratorCosts {
        AcceleratorCosts::from_data(Some(
            &[(
                "accelerators".to_string(),
                "- name: H100\n  type: NVIDIA-H100-80GB-HBM3\n  cost: 8\n".to_string(),
            )]
            .into(),
        ))
    }

    #[test]
    fn the_pool_is_what_schedulable_nodes_offer_less_what_others_hold() {
        let view = listed(
            vec![
                node("a", "NVIDIA-H100-80GB-HBM3", 8, true, false),
                node("b", "NVIDIA-H100-80GB-HBM3", 8, true, false),
                node("cordoned", "NVIDIA-H100-80GB-HBM3", 8, true, true),
                node("down", "NVIDIA-H100-80GB-HBM3", 8, false, false),
                node("l4", "NVIDIA-L4", 4, true, false),
            ],
            vec![
                pod("ml", "training", "a", 3, "Running"),
                pod("llm", "ours-0", "a", 2, "Running"),
                pod("ml", "finished", "b", 8, "Succeeded"),
            ],
        );
        let config = PoolConfig::default();
        let ours_only = |k: &(String, String)| k.1 == "ours-0";
        let pool = view.pool(&config, &costs(), &ours_only, true);
        // 16 schedulable H100s (by their price-list name), 3 held by another team's pod; our
        // own pod's 2 are shared out, not taken away; the finished pod holds nothing.
        assert_eq!(pool.gpus.get("H100"), Some(&13));
        assert_eq!(pool.gpus.get("NVIDIA-L4"), Some(&4));
    }

    #[test]
    fn a_node_that_goes_away_shrinks_the_pool_and_quotas_cap_it() {
        let mut view = listed(
            vec![
                node("a", "NVIDIA-H100-80GB-HBM3", 8, true, false),
                node("b", "NVIDIA-H100-80GB-HBM3", 8, true, false),
            ],
            vec![],
        );
        let none = |_: &(String, String)| false;
        let mut config = PoolConfig::default();
        assert_eq!(
            view.pool(&config, &costs(), &none, true).gpus.get("H100"),
            Some(&16)
        );
        view.node_event(watcher::Event::Delete(node(
            "b",
            "NVIDIA-H100-80GB-HBM3",
            8,
            true,
            false,
        )));
        assert_eq!(
            view.pool(&config, &costs(), &none, true).gpus.get("H100"),
            Some(&8)
        );
        config.quotas.insert("H100".into(), 6);
        config.quotas.insert("A100".into(), 4);
        let pool = view.pool(&config, &costs(), &none, true);
        assert_eq!(pool.gpus.get("H100"), Some(&6));
        assert_eq!(
            pool.gpus.get("A100"),
            Some(&0),
            "no A100 node: nothing to give"
        );
        // Without discovery the quotas alone limit.
        let pool = view.pool(&config, &costs(), &none, false);
        assert_eq!(pool.gpus.get("H100"), Some(&6));
        assert_eq!(pool.gpus.get("A100"), Some(&4));
    }

    #[test]
    fn before_both_lists_are_in_only_the_quotas_apply() {
        let mut view = PoolView::default();
        view.node_event(watcher::Event::Init);
        view.node_event(watcher::Event::InitApply(node(
            "a",
            "NVIDIA-H100-80GB-HBM3",
            8,
            true,
            false,
        )));
        view.node_event(watcher::Event::InitDone);
        let none = |_: &(String, String)| false;
        assert!(
            view.pool(&PoolConfig::default(), &costs(), &none, true)
                .gpus
                .is_empty(),
            "the pods are not listed yet: a pool of 0 would cut every model"
        );
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_lists() {
        let mut view = listed(
            vec![node("a", "NVIDIA-H100-80GB-HBM3", 8, true, false)],
            vec![pod("ml", "training", "a", 3, "Running")],
        );
        view.pod_event(watcher::Event::Init);
        view.pod_event(watcher::Event::InitDone);
        let none = |_: &(String, String)| false;
        assert_eq!(
            view.pool(&PoolConfig::default(), &costs(), &none, true)
                .gpus
                .get("H100"),
            Some(&8)
        );
    }
}
