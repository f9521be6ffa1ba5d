//! End to end against a real cluster: `cargo test --test cluster -- --ignored` with KUBECONFIG
//! pointing at a cluster where you may create namespaces and CRDs. It applies the CRD from
//! `crds/`, creates Deployments (of the pause image) and VAs in a fresh namespace, runs the
//! controller in-process (metrics come from a scripted source: the cluster needs no vLLM and
//! no Prometheus), and checks the race, deletion, recovery, isolation and the emitted series.
//! The namespace is deleted at the end.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use wva::config::settings::SettingsArgs;
use wva::controller::{ControllerOptions, Running, start};
use wva::crd::VariantAutoscaling;
use wva_actors::publisher::Gather;

const T: Duration = Duration::from_secs(120);

async fn controller(client: &kube::Client, ns: &str, instance: Option<&str>) -> Running {
    let settings = SettingsArgs {
        prometheus_base_url: Some("http://unused:9090".into()),
        prometheus_allow_http: Some(true),
        pod_namespace: Some(ns.into()),
        watch_namespace: Some(ns.into()),
        controller_instance: instance.map(str::to_string),
        reconciliation_interval: Some("1h".into()),
        ..Default::default()
    }
    .resolve(None)
    .unwrap();
    let running = start(
        client.clone(),
        ControllerOptions {
            settings,
            data_dir: None,
            metrics: support::apiserver::scripted_metrics(|_| "m"),
            leader_election: None,
            instance: "cluster-test".into(),
        },
    )
    .await
    .unwrap();
    assert!(running.synced(T).await);
    running
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}},
        },
    }))
    .unwrap()
}

fn va(name: &str, target: &str, instance: Option<&str>) -> VariantAutoscaling {
    let mut v = json!({
        "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
        "metadata": {"name": name},
        "spec": {"modelID": "m", "scaleTargetRef": {"kind": "Deployment", "name": target}},
    });
    if let Some(i) = instance {
        v["metadata"]["labels"] = json!({"wva.llmd.ai/controller-instance": i});
    }
    serde_json::from_value(v).unwrap()
}

async fn wait_status(
    api: &Api<VariantAutoscaling>,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = api.get_opt(name).await.unwrap() {
            let status = serde_json::to_value(&v.status).unwrap();
            if check(&status) {
                return status;
            }
        }
        assert!(start.elapsed() < T, "{name}: timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ready(status: &Value) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or("").to_string(),
        c["message"].as_str().unwrap_or("").to_string(),
    )
}

async fn series(running: &Running, variant: &str) -> Vec<String> {
    let page = running.publisher.send(Gather).await.unwrap();
    page.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&format!("variant_name=\"{variant}\"")))
        .map(str::to_string)
        .collect()
}

#[actix_rt::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn race_deletion_recovery_and_isolation_on_a_real_cluster() {
    wva::tls::install_default_provider();
    let client = kube::Client::try_default().await.expect("KUBECONFIG");

    // The CRD, exactly as committed.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/llmd.ai_variantautoscalings.yaml"
    ))
    .unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
    crds.patch(
        "variantautoscalings.llmd.ai",
        &PatchParams::apply("wva-cluster-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        T,
        await_condition(
            crds,
            "variantautoscalings.llmd.ai",
            conditions::is_crd_established(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    wva::cli::run::check_crd(&client).await.unwrap();

    let ns = format!("wva-test-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let vas: Api<VariantAutoscaling> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    let plain = controller(&client, &ns, None).await;
    let canary = controller(&client, &ns, Some("canary")).await;

    // The race: VA first.
    vas.create(&PostParams::default(), &va("va-a", "dep-a", None))
        .await
        .unwrap();
    let s = wait_status(&vas, "va-a", "DeploymentNotFound", |s| {
        ready(s).1 == "Target deployment 'dep-a' not found"
    })
    .await;
    assert_eq!(ready(&s).0, "False");
    plain.cycle_now().await;
    deployments
        .create(&PostParams::default(), &deployment("dep-a"))
        .await
        .unwrap();
    wait_status(&vas, "va-a", "target resolved", |s| {
        s["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "TargetResolved" && c["status"] == "True")
        })
    })
    .await;

    // Isolation: the canary's VA is the canary's only.
    deployments
        .create(&PostParams::default(), &deployment("dep-c"))
        .await
        .unwrap();
    vas.create(&PostParams::default(), &va("va-c", "dep-c", Some("canary")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    plain.cycle_now().await;
    canary.cycle_now().await;
    assert!(!series(&plain, "va-a").await.is_empty());
    assert!(series(&plain, "va-c").await.is_empty());
    assert!(series(&canary, "va-a").await.is_empty());
    assert!(
        series(&canary, "va-c")
            .await
            .iter()
            .all(|l| l.contains("controller_instance=\"canary\""))
    );
    assert!(!series(&canary, "va-c").await.is_empty());

    // Deletion, then recovery.
    deployments
        .delete("dep-a", &DeleteParams::default())
        .await
        .unwrap();
    let s = wait_status(&vas, "va-a", "deleted", |s| {
        ready(s).1 == "Target deployment 'dep-a' no longer exists"
    })
    .await;
    assert_eq!(s["desiredOptimizedAlloc"], json!({}));
    assert!(series(&plain, "va-a").await.is_empty());
    deployments
        .create(&PostParams::default(), &deployment("dep-a"))
        .await
        .unwrap();
    wait_status(&vas, "va-a", "resumed", |s| {
        ready(s).1 != "Target deployment 'dep-a' no longer exists"
            && s["desiredOptimizedAlloc"]["numReplicas"].is_number()
    })
    .await;

    plain.shutdown().await;
    canary.shutdown().await;
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
