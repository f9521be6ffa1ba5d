//! Cost of keeping the cluster view: what one watch event costs the controller with many VAs.
//!
//! `cargo bench --bench inventory` reports, for 1,000 VAs in 10 namespaces:
//! - `inventory/status_write_echo`: the update event that every status write of the controller
//!   itself produces (conditions and run time change, nothing a variant is made of);
//! - `inventory/deployment_status`: a Deployment's status change (a pod became ready);
//! - `inventory/pod_index`: the live-pod index built once per cycle (2 pods per Deployment).

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::apps::v1::Deployment;
use kube::core::DeserializeGuard;
use serde_json::json;
use wva::controller::{
    inventory::{Inventory, Kind},
    owners::Scope,
};
use wva::crd::VariantAutoscaling;

/// The allocator the `wva` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VAS: usize = 1000;
const NAMESPACES: usize = 10;

/// Both variants of a model live in one namespace.
fn ns_of(i: usize) -> usize {
    (i / 2) % NAMESPACES
}

fn va(ns: usize, i: usize, message: &str) -> DeserializeGuard<VariantAutoscaling> {
    DeserializeGuard(Ok(serde_json::from_value(json!({
        "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
        "metadata": {"name": format!("va-{i}"), "namespace": format!("ns-{ns}"), "generation": 1},
        "spec": {"modelID": format!("m-{}", i / 2), "scaleTargetRef": {"kind": "Deployment", "name": format!("dep-{i}")}},
        "status": {"desiredOptimizedAlloc": {"numReplicas": 2}, "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": message}]},
    }))
    .expect("VA")))
}

fn deployment(ns: usize, i: usize, ready: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": format!("dep-{i}"), "namespace": format!("ns-{ns}")},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": format!("dep-{i}")}}, "template": {}},
        "status": {"replicas": 2, "readyReplicas": ready},
    }))
    .expect("deployment")
}

fn populated() -> Inventory {
    let mut inv = Inventory::new(Scope::default());
    for kind in [
        Kind::VariantAutoscaling,
        Kind::Deployment,
        Kind::Pod,
        Kind::ConfigMap,
    ] {
        inv.relist_started(kind);
    }
    for i in 0..VAS {
        let ns = ns_of(i);
        inv.va_applied(va(ns, i, "a"));
        inv.deployment_applied(&deployment(ns, i, 2));
        for p in 0..2 {
            let meta = serde_json::from_value(json!({
                "name": format!("dep-{i}-abc-{p}"), "namespace": format!("ns-{ns}"),
                "labels": {"pod-template-hash": "abc"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("dep-{i}-abc"), "uid": "u"}],
            }))
            .expect("pod");
            inv.pod_applied(&meta);
        }
    }
    for kind in [
        Kind::VariantAutoscaling,
        Kind::Deployment,
        Kind::Pod,
        Kind::ConfigMap,
    ] {
        inv.relist_done(kind);
    }
    assert_eq!(inv.models().len(), VAS / 2);
    inv
}

fn bench(c: &mut Criterion) {
    let mut inv = populated();
    let mut group = c.benchmark_group("inventory");
    let mut flip = false;
    group.bench_function("status_write_echo", |b| {
        b.iter(|| {
            flip = !flip;
            inv.va_applied(va(ns_of(503), 503, if flip { "b" } else { "a" }))
        })
    });
    group.bench_function("deployment_status", |b| {
        b.iter(|| {
            flip = !flip;
            inv.deployment_applied(&deployment(ns_of(503), 503, if flip { 1 } else { 2 }))
        })
    });
    group.bench_function("pod_index", |b| b.iter(|| inv.pod_index()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
