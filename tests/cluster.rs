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

/// A controller's settings confined to `ns` (metrics come from a script, Prometheus is unused).
fn settings(ns: &str, instance: Option<&str>) -> wva::config::settings::Settings {
    SettingsArgs {
        prometheus_base_url: Some("http://unused:9090".into()),
        prometheus_allow_http: Some(true),
        pod_namespace: Some(ns.into()),
        watch_namespace: Some(ns.into()),
        controller_instance: instance.map(str::to_string),
        reconciliation_interval: Some("1h".into()),
        ..Default::default()
    }
    .resolve(None)
    .unwrap()
}

/// A fresh namespace named `<prefix>-<pid>`; delete it through the returned Api at the end.
async fn fresh_namespace(client: &kube::Client, prefix: &str) -> (Api<Namespace>, String) {
    let ns = format!("{prefix}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    (namespaces, ns)
}

async fn controller(client: &kube::Client, ns: &str, instance: Option<&str>) -> Running {
    let settings = settings(ns, instance);
    let running = start(
        client.clone(),
        ControllerOptions {
            settings,
            data_dir: None,
            metrics: support::apiserver::scripted_metrics(|_| "m"),
            leader_election: None,
            shards: 1,
            instance: "cluster-test".into(),
            shadow: false,
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

/// Applies the CRD exactly as committed and waits until it is served.
async fn install_crd(client: &kube::Client) {
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
    wva::cli::run::check_crd(client).await.unwrap();
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
    install_crd(&client).await;

    let (namespaces, ns) = fresh_namespace(&client, "wva-test").await;

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

/// The v0.9 form on a real cluster: an annotated HPA is a variant named after it, a bad
/// annotation is a Warning Event on the HPA, KEDA's external scaler serves what is published,
/// and (when KEDA is installed) an annotated ScaledObject is a variant too.
#[actix_rt::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn annotated_scalers_and_the_external_scaler_on_a_real_cluster() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{DynamicObject, ListParams};
    use kube::discovery::ApiResource;
    use std::collections::HashMap;
    use wva::external_scaler::proto::external_scaler_client::ExternalScalerClient;
    use wva::external_scaler::proto::{GetMetricsRequest, ScaledObjectRef};

    wva::tls::install_default_provider();
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let (namespaces, ns) = fresh_namespace(&client, "wva-annotations").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    for d in ["dep-h", "dep-s"] {
        deployments
            .create(&PostParams::default(), &deployment(d))
            .await
            .unwrap();
    }
    let hpa = |name: &str, target: &str, annotations: Value| -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": 1, "maxReplicas": 4,
                "metrics": [{"type": "External", "external": {
                    "metric": {"name": "wva_desired_replicas", "selector": {"matchLabels": {"variant_name": name}}},
                    "target": {"type": "AverageValue", "averageValue": "1"}}}],
            },
        }))
        .unwrap()
    };
    let running = controller(&client, &ns, None).await;
    hpas.create(
        &PostParams::default(),
        &hpa(
            "hpa-h",
            "dep-h",
            json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "m"}),
        ),
    )
    .await
    .unwrap();
    hpas.create(
        &PostParams::default(),
        &hpa("hpa-bad", "dep-s", json!({"llm-d.ai/managed": "true"})),
    )
    .await
    .unwrap();
    let start = Instant::now();
    while series(&running, "hpa-h").await.is_empty() {
        assert!(start.elapsed() < T, "hpa-h was never published");
        running.cycle_now().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    loop {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("hpa-bad")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("llm-d.ai/model-id"))
            });
        if found {
            break;
        }
        assert!(start.elapsed() < T, "no Event on hpa-bad");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The external scaler answers what the series say.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let scaler = wva::external_scaler::DesiredScaler::new(running.board(), running.leader.clone());
    tokio::spawn(wva::external_scaler::serve(
        listener,
        scaler,
        None,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = ExternalScalerClient::new(channel);
    let answer = grpc
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(ScaledObjectRef {
                name: "so".into(),
                namespace: ns.clone(),
                scaler_metadata: HashMap::from([("variantName".into(), "hpa-h".into())]),
            }),
            metric_name: "desired_replicas".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let published = series(&running, "hpa-h").await;
    assert!(
        published
            .iter()
            .any(|l| l.starts_with("inferno_desired_replicas{")
                && l.ends_with(&format!(" {}", answer.metric_values[0].metric_value))),
        "{published:?}"
    );
    stop.cancel();

    // KEDA, when the cluster has it.
    let keda = ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    };
    let scaled_objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &keda);
    if scaled_objects.list(&ListParams::default()).await.is_ok() {
        let so: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "so-s", "annotations": {"llm-d.ai/managed": "true", "llm-d.ai/model-id": "m"}},
            "spec": {"scaleTargetRef": {"name": "dep-s"}, "minReplicaCount": 1, "maxReplicaCount": 3,
                "triggers": [{"type": "external", "metadata": {"scalerAddress": "127.0.0.1:1", "variantName": "so-s"}}]},
        }))
        .unwrap();
        scaled_objects
            .create(&PostParams::default(), &so)
            .await
            .unwrap();
        let start = Instant::now();
        while series(&running, "so-s").await.is_empty() {
            assert!(start.elapsed() < T, "so-s was never published");
            running.cycle_now().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    running.shutdown().await;
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

/// CONTRACT 17 on a real API server: two replicas with `--shards 4` split the shard Leases, and
/// when one stops renewing, the other holds all four once they expire.
#[actix_rt::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn shards_are_split_and_taken_over_on_a_real_cluster() {
    wva::tls::install_default_provider();
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let (namespaces, ns) = fresh_namespace(&client, "wva-shards").await;
    let replica = |identity: &str| ControllerOptions {
        settings: settings(&ns, None),
        data_dir: None,
        metrics: support::apiserver::scripted_metrics(|_| "m"),
        leader_election: Some((
            "wva-shards".into(),
            identity.into(),
            wva::controller::leader::LeaseTiming {
                lease_duration: Duration::from_secs(6),
                renew_deadline: Duration::from_secs(4),
                retry_period: Duration::from_secs(1),
            },
        )),
        shards: 4,
        instance: identity.into(),
        shadow: false,
    };
    let held = |running: &Running, n: usize| {
        let mut rx = running.shards.clone();
        async move {
            tokio::time::timeout(T, rx.wait_for(|f| f.held.len() == n))
                .await
                .expect("shares settle")
                .expect("shard watch")
                .held
                .clone()
        }
    };
    let one = start(client.clone(), replica("one")).await.unwrap();
    held(&one, 4).await;
    let two = start(client.clone(), replica("two")).await.unwrap();
    let (a, b) = (held(&one, 2).await, held(&two, 2).await);
    assert!(a.is_disjoint(&b), "{a:?} {b:?}");
    let failed_at = Instant::now();
    assert!(two.kill_task("leader-election"));
    held(&one, 4).await;
    eprintln!(
        "takeover: {:.1} s after the holder stopped renewing (lease duration 6 s)",
        failed_at.elapsed().as_secs_f64()
    );
    one.shutdown().await;
    two.shutdown().await;
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

/// CONTRACT section 19 on a real API server: a model whose supervisor panics gets a
/// `DecisionFailed` Warning Event on its VA, its series stays published, another model is
/// decided as usual, and the model is decided again by a fresh supervisor.
#[actix_rt::test]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn a_panicking_model_is_warned_and_replaced_on_a_real_cluster() {
    use k8s_openapi::api::events::v1::Event;
    wva::tls::install_default_provider();
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    install_crd(&client).await;
    let (namespaces, ns) = fresh_namespace(&client, "wva-fault").await;
    let vas: Api<VariantAutoscaling> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["broken", "healthy"] {
        deployments
            .create(&PostParams::default(), &deployment(&format!("dep-{name}")))
            .await
            .unwrap();
        let mut v = serde_json::to_value(va(name, &format!("dep-{name}"), None)).unwrap();
        v["spec"]["modelID"] = json!(name);
        vas.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
            .await
            .unwrap();
    }
    let running = controller(&client, &ns, None).await;
    running.cycle_now().await;
    assert!(!series(&running, "broken").await.is_empty());

    let faults = |r: &Running| {
        r.ops
            .text()
            .lines()
            .filter(|l| l.starts_with("wva_model_faults_total{fault=\"panicked\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    running
        .registry
        .send(wva_actors::registry::CrashForTest(Some(
            wva_actors::messages::ModelKey::new(&ns, "broken"),
        )))
        .await
        .unwrap();
    running.cycle_now().await;
    running.statuses_settled().await;
    assert_eq!(faults(&running), 1.0);
    assert!(
        !series(&running, "broken").await.is_empty(),
        "its count holds"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        let warned = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("DecisionFailed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
        });
        if warned {
            break;
        }
        assert!(start.elapsed() < T, "no DecisionFailed Event on the VA");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The fresh supervisor decides it again; the healthy model never stopped.
    running.cycle_now().await;
    assert_eq!(faults(&running), 1.0);
    assert!(!series(&running, "healthy").await.is_empty());
    running.shutdown().await;
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

fn model_of_pool_test(deployment: &str) -> &'static str {
    match deployment {
        "chat" => "chat",
        "batch" => "batch",
        _ => "other",
    }
}

/// A Deployment of `replicas` pause pods, each asking for one `nvidia.com/gpu` on the fake
/// node typed `product` (tolerating kwok's taint, so that kwok's fake nodes can take them).
fn gpu_deployment(name: &str, replicas: i32, product: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}}],
                "nodeSelector": {"nvidia.com/gpu.product": product},
                "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            }},
        },
    }))
    .unwrap()
}

/// Pods of a Deployment that wait Pending (not bound to a node).
async fn pending_pods(pods: &Api<k8s_openapi::api::core::v1::Pod>, app: &str) -> usize {
    pods.list(&kube::api::ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
        })
        .count()
}

/// CONTRACT 20 on a real control plane: a fake node (kwok's, or any node object the API server
/// keeps) advertises 5 GPUs of a type of its own; another team's pod holds one. Two models,
/// priorities 1 and 10, both want a third replica: the published counts fit the 4 left, the
/// lower-priority VA says it was cut, and scaling the Deployments to what was published leaves
/// no pod Pending, where scaling them to what the models wanted would.
#[actix_rt::test]
#[ignore = "needs a cluster: KUBECONFIG (kwok, or any cluster where fake nodes can be created)"]
async fn the_accelerator_pool_keeps_published_counts_schedulable_on_a_real_cluster() {
    use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
    wva::tls::install_default_provider();
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    install_crd(&client).await;
    let (namespaces, ns) = fresh_namespace(&client, "wva-pool").await;
    let product = format!("WVA-TEST-GPU-{}", std::process::id());
    let node_name = format!("wva-pool-{}", std::process::id());
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name, "labels": {"nvidia.com/gpu.product": product, "type": "kwok"},
            "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {
        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "5"},
        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "5"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }});
    nodes
        .patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let vas: Api<VariantAutoscaling> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(
            &PostParams::default(),
            &gpu_deployment("training", 1, &product),
        )
        .await
        .unwrap();
    for name in ["chat", "batch"] {
        deployments
            .create(&PostParams::default(), &gpu_deployment(name, 2, &product))
            .await
            .unwrap();
        let mut v = serde_json::to_value(va(name, name, None)).unwrap();
        v["spec"]["modelID"] = json!(name);
        vas.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
            .await
            .unwrap();
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "serviceclass"}, "data": {"serviceClasses":
                "- {name: premium, model: chat, priority: 1, slo-itl: 24, slo-ttw: 500}\n- {name: batch, model: batch, priority: 10, slo-itl: 100, slo-ttw: 5000}\n"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    // Five pods on five accelerators.
    let since = Instant::now();
    while pending_pods(&pods, "chat").await + pending_pods(&pods, "batch").await > 0 {
        assert!(since.elapsed() < T, "the first five pods were never bound");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut settings = settings(&ns, None);
    settings.accelerator_pool = true;
    let running = start(
        client.clone(),
        ControllerOptions {
            settings,
            data_dir: None,
            metrics: support::apiserver::scripted_signals(model_of_pool_test, 0.95, 0.0),
            leader_election: None,
            shards: 1,
            instance: "cluster-test".into(),
            shadow: false,
        },
    )
    .await
    .unwrap();
    assert!(running.synced(T).await);
    let desired = |page: &str, variant: &str| -> Option<u32> {
        page.lines()
            .find(|l| {
                l.starts_with("inferno_desired_replicas{")
                    && l.contains(&format!("variant_name=\"{variant}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    running.cycle_now().await;
    let page = running.publisher.send(Gather).await.unwrap();
    // 5 GPUs, the training pod holds 1, the models' 4 replicas hold the rest: nothing to grow
    // into, so neither model gets its third; the priority-10 one is told it was cut.
    let (chat, batch) = (
        desired(&page, "chat").unwrap(),
        desired(&page, "batch").unwrap(),
    );
    assert!(chat + batch <= 4, "{page}");
    wait_status(&vas, "batch", "cut short", |s| {
        s["conditions"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["type"] == "AcceleratorsAvailable"
                    && c["status"] == "False"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("{ns}/chat")))
            })
        })
    })
    .await;
    // Scale the Deployments to what was published, as their HPAs would: nothing waits.
    for (name, n) in [("chat", chat), ("batch", batch)] {
        deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"replicas": n}})),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pending_pods(&pods, "chat").await + pending_pods(&pods, "batch").await,
        0
    );
    // What the models wanted (3 each) would not have fitted.
    deployments
        .patch(
            "chat",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    deployments
        .patch(
            "batch",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let since = Instant::now();
    while pending_pods(&pods, "chat").await + pending_pods(&pods, "batch").await == 0 {
        assert!(
            since.elapsed() < T,
            "6 replicas on 4 free accelerators all bound?"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    running.shutdown().await;
    nodes
        .delete(&node_name, &DeleteParams::default())
        .await
        .unwrap();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
