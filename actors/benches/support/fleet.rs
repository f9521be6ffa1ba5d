//! The fleet the cycle and scale benchmarks decide: models of one or two variants (two pods
//! each), and metrics snapshots that move their load from one cycle to the next.

use std::collections::HashMap;
use std::sync::Arc;

use actix::Addr;
use wva_actors::messages::*;
use wva_actors::registry::{DeploymentEvent, Registry, UpsertVariant};

/// Variants per model: the first `n - models` models get two, the rest one.
pub fn layout(n: usize) -> Vec<(ModelKey, Vec<VariantSpec>)> {
    let models = (2 * n).div_ceil(3);
    let pairs = n - models;
    (0..models)
        .map(|m| {
            let model = ModelKey::new(format!("ns-{}", m % 50), format!("model-{m}"));
            let count = if m < pairs { 2 } else { 1 };
            let specs = (0..count)
                .map(|v| VariantSpec {
                    key: VariantKey::new(model.namespace.clone(), format!("m{m}-v{v}")),
                    model: model.clone(),
                    deployment: format!("m{m}-v{v}"),
                    cost: 10.0 + 30.0 * v as f64,
                    accelerator: if v == 0 { "A100" } else { "H100" }.into(),
                    status_desired: None,
                    max_batch: wva_actors::messages::DEFAULT_MAX_BATCH,
                    bounds: Default::default(),
                    role: Default::default(),
                    gpus_per_replica: 1,
                })
                .collect();
            (model, specs)
        })
        .collect()
}

pub fn snapshot(layout: &[(ModelKey, Vec<VariantSpec>)], phase: usize) -> Metrics {
    let mut by_model = HashMap::new();
    for (i, (model, specs)) in layout.iter().enumerate() {
        let kv = 0.3 + 0.1 * ((i + phase) % 5) as f64;
        let samples = specs
            .iter()
            .flat_map(|s| {
                (0..2).map(move |p| PodSample {
                    pod: format!("{}-{p}", s.deployment),
                    deployment: s.deployment.clone(),
                    kv_cache_usage: Some(kv),
                    queue_length: Some(1.0),
                    ..Default::default()
                })
            })
            .collect();
        by_model.insert(model.clone(), samples);
    }
    Metrics::Read(Arc::new(MetricsSnapshot {
        by_model,
        ..Default::default()
    }))
}

/// Gives the registry every variant of `layout`, each on a Deployment of two ready pods.
pub async fn populate(registry: &Addr<Registry>, layout: &[(ModelKey, Vec<VariantSpec>)]) {
    for (_, specs) in layout {
        for s in specs {
            registry
                .send(DeploymentEvent {
                    namespace: s.key.namespace.clone(),
                    name: s.deployment.clone(),
                    state: Some(DeploymentState {
                        replicas: 2,
                        ready: 2,
                    }),
                    at: Timestamp(0),
                })
                .await
                .expect("deployment");
            registry
                .send(UpsertVariant {
                    spec: s.clone(),
                    at: Timestamp(0),
                })
                .await
                .expect("variant");
        }
    }
}
