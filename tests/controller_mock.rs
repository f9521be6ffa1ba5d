//! `wva run`'s reconcile, status and Event logic against a scripted API server (tower-test):
//! the VA-before-Deployment race, deletion and recovery, instance isolation, namespace
//! scoping, discovery mode, invalid VAs, leader gating, the CRD check and the metrics
//! endpoint's TokenReview/SubjectAccessReview gate. Metrics come from a scripted source, so
//! these tests need no Prometheus (the Prometheus side has its own tests).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::apiserver::{
    CONFIG_MAP, DEPLOYMENT, FakeApi, POD, VA, config_map, deployment, eventually, pod, va,
};
use wva::config::settings::{Settings, SettingsArgs};
use wva::controller::leader::LeaseTiming;
use wva::controller::{ControllerOptions, Running, start};
use wva_actors::publisher::Gather;
use wva_actors::registry::Counts;

const T: Duration = Duration::from_secs(10);
const NS: &str = "llm";
const CONTROLLER_NS: &str = "wva-system";

/// Settings for these tests. They pin the seeds' `saturation-v1` analyzer: what they check of
/// the controller is told through its threshold rules (the default analyzer has its own test).
fn settings(instance: Option<&str>, watch_namespace: Option<&str>) -> Settings {
    SettingsArgs {
        scaling_analyzer: Some("saturation-v1".into()),
        prometheus_base_url: Some("http://127.0.0.1:1".into()),
        prometheus_allow_http: Some(true),
        pod_namespace: Some(CONTROLLER_NS.into()),
        controller_instance: instance.map(str::to_string),
        watch_namespace: watch_namespace.map(str::to_string),
        reconciliation_interval: Some("1h".into()),
        ..Default::default()
    }
    .resolve(None)
    .unwrap()
}

fn options(settings: Settings, leader: Option<&str>) -> ControllerOptions {
    ControllerOptions {
        settings,
        data_dir: None,
        metrics: support::apiserver::scripted_metrics(|_| "m"),
        leader_election: leader.map(|id| {
            (
                "wva-leader".to_string(),
                id.to_string(),
                LeaseTiming {
                    lease_duration: Duration::from_secs(2),
                    renew_deadline: Duration::from_millis(1500),
                    retry_period: Duration::from_millis(200),
                },
            )
        }),
        shards: 1,
        instance: "test".into(),
        shadow: false,
    }
}

async fn started(api: &FakeApi, options: ControllerOptions) -> Running {
    let running = start(api.client(), options).await.unwrap();
    assert!(running.synced(T).await, "watches did not sync");
    running
}

/// Waits until the holder of the Lease `name` has renewed it `n` more times (at most [`T`]).
async fn lease_renewals(api: &FakeApi, name: &str, n: usize) {
    let renewed = || {
        api.get(support::apiserver::LEASE, CONTROLLER_NS, name)
            .map(|l| l["spec"]["renewTime"].clone())
    };
    let start = std::time::Instant::now();
    let mut last = renewed();
    let mut seen = 0;
    while seen < n {
        assert!(start.elapsed() < T, "{seen} renewals of {name} in {T:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = renewed();
        if now != last {
            seen += 1;
            last = now;
        }
    }
}

/// Waits until the controller manages `n` variants.
async fn variants_become(running: &Running, n: usize) {
    let start = std::time::Instant::now();
    loop {
        let counts = running.registry.send(Counts).await.unwrap();
        if counts.variants == n {
            return;
        }
        assert!(
            start.elapsed() < T,
            "{} variants, wanted {n}",
            counts.variants
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

async fn page(running: &Running) -> String {
    running.publisher.send(Gather).await.unwrap()
}

fn series_of(page: &str, variant: &str) -> Vec<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&format!("variant_name=\"{variant}\"")))
        .map(str::to_string)
        .collect()
}

#[actix_rt::test]
async fn the_race_deletion_and_recovery_are_handled_on_the_watch_event() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va-a", "m", Some("dep-a"), json!({})));
    let running = started(&api, options(settings(None, None), None)).await;

    // VA before its Deployment.
    let first = eventually("a not-found status", T, || {
        api.statuses(NS, "va-a").last().cloned()
    })
    .await;
    assert_eq!(
        condition(&first, "TargetResolved")["reason"],
        "TargetNotFound"
    );
    let ready = condition(&first, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("DeploymentNotFound"))
    );
    assert_eq!(ready["message"], "Target deployment 'dep-a' not found");
    running.cycle_now().await;

    // The Deployment appears: decided at once, no cycle needed.
    api.wait_watches(5).await;
    for i in 0..2 {
        api.apply(POD, pod(NS, "dep-a", i));
    }
    api.apply(DEPLOYMENT, deployment(NS, "dep-a", 2, json!({}), json!({})));
    let resolved = eventually("a resolved status", T, || {
        api.statuses(NS, "va-a")
            .into_iter()
            .rev()
            .find(|s| condition(s, "TargetResolved")["status"] == "True")
    })
    .await;
    assert_eq!(
        resolved["status"]["desiredOptimizedAlloc"]["numReplicas"],
        2
    );
    assert!(
        condition(&resolved, "TargetResolved")["observedGeneration"] == 1,
        "{resolved}"
    );
    running.cycle_now().await;
    let after_cycle = api.statuses(NS, "va-a").last().cloned().unwrap();
    assert_eq!(
        condition(&after_cycle, "Ready")["status"],
        "True",
        "{after_cycle}"
    );
    assert_eq!(
        condition(&after_cycle, "MetricsAvailable")["reason"],
        "MetricsFound"
    );
    let text = page(&running).await;
    // Two replicas at 30 % KV-cache use have spare capacity: one is enough.
    assert!(
        series_of(&text, "va-a")
            .iter()
            .any(|l| l.starts_with("inferno_desired_replicas{") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        api.events_about("va-a")
            .iter()
            .any(|(t, r, n)| t == "Normal" && r == "ScaledDown" && n.contains("2 -> 1")),
        "{:?}",
        api.events_about("va-a")
    );

    // Deleted: at once, DeploymentNotFound, an empty allocation, and the series gone.
    api.delete(DEPLOYMENT, NS, "dep-a");
    let gone = eventually("a deleted status", T, || {
        api.statuses(NS, "va-a").into_iter().last().filter(|s| {
            condition(s, "Ready")["message"] == "Target deployment 'dep-a' no longer exists"
        })
    })
    .await;
    assert_eq!(gone["status"]["desiredOptimizedAlloc"], json!({}));
    let text = page(&running).await;
    assert!(series_of(&text, "va-a").is_empty(), "{text}");
    assert!(
        api.events_about("va-a")
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "DeploymentNotFound"),
        "{:?}",
        api.events_about("va-a")
    );

    // Recreated: it resumes.
    api.apply(DEPLOYMENT, deployment(NS, "dep-a", 1, json!({}), json!({})));
    eventually("resumed", T, || {
        api.statuses(NS, "va-a")
            .last()
            .filter(|s| condition(s, "TargetResolved")["status"] == "True")
            .cloned()
    })
    .await;
    running.cycle_now().await;
    let text = page(&running).await;
    assert!(!series_of(&text, "va-a").is_empty(), "{text}");
    running.shutdown().await;
}

#[actix_rt::test]
async fn two_instances_never_touch_each_others_vas() {
    let api = FakeApi::new();
    for (name, labels) in [
        ("va-a", json!({"wva.llmd.ai/controller-instance": "a"})),
        ("va-b", json!({"wva.llmd.ai/controller-instance": "b"})),
        ("va-none", json!({})),
    ] {
        let dep = format!("dep-{name}");
        api.apply(VA, va(NS, name, "m", Some(&dep), labels));
        api.apply(DEPLOYMENT, deployment(NS, &dep, 1, json!({}), json!({})));
        api.apply(POD, pod(NS, &dep, 0));
    }
    let a = started(&api, options(settings(Some("a"), None), None)).await;
    let b = started(&api, options(settings(Some("b"), None), None)).await;
    let none = started(&api, options(settings(None, None), None)).await;
    for (running, mine) in [(&a, "va-a"), (&b, "va-b"), (&none, "va-none")] {
        running.cycle_now().await;
        let counts = running.registry.send(Counts).await.unwrap();
        assert_eq!(counts.variants, 1, "{mine}");
        let text = page(running).await;
        for other in ["va-a", "va-b", "va-none"] {
            assert_eq!(
                series_of(&text, other).is_empty(),
                other != mine,
                "{mine} publishes {other}?\n{text}"
            );
        }
    }
    let text = page(&a).await;
    assert!(
        series_of(&text, "va-a")
            .iter()
            .all(|l| l.contains("controller_instance=\"a\"")),
        "{text}"
    );

    // Relabelled to b: a lets go at once and b takes it.
    api.apply(
        VA,
        va(
            NS,
            "va-a",
            "m",
            Some("dep-va-a"),
            json!({"wva.llmd.ai/controller-instance": "b"}),
        ),
    );
    variants_become(&a, 0).await;
    a.cycle_now().await;
    assert!(series_of(&page(&a).await, "va-a").is_empty());
    for r in [a, b, none] {
        r.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_namespaced_controller_watches_and_reads_only_its_namespace() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "mine", "m", Some("dep"), json!({})));
    api.apply(VA, va("other", "theirs", "m", Some("dep"), json!({})));
    for ns in [NS, "other"] {
        api.apply(DEPLOYMENT, deployment(ns, "dep", 1, json!({}), json!({})));
        api.apply(POD, pod(ns, "dep", 0));
    }
    let running = started(&api, options(settings(None, Some(NS)), None)).await;
    running.cycle_now().await;
    let text = page(&running).await;
    assert!(!series_of(&text, "mine").is_empty(), "{text}");
    assert!(series_of(&text, "theirs").is_empty(), "{text}");
    let cluster_wide: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("GET ")
                && (r.contains("/variantautoscalings?")
                    || r.contains("/deployments?")
                    || r.contains("/pods?"))
        })
        .filter(|r| !r.contains(&format!("/namespaces/{NS}/")))
        .collect();
    assert!(
        cluster_wide.is_empty(),
        "cluster-wide requests: {cluster_wide:?}"
    );
    assert!(api.statuses("other", "theirs").is_empty());
    running.shutdown().await;
}

#[actix_rt::test]
async fn discovery_mode_manages_every_labelled_deployment_with_its_accelerator_and_cost() {
    let api = FakeApi::new();
    api.apply(
        CONFIG_MAP,
        config_map(
            CONTROLLER_NS,
            "accelerator-unitcost",
            json!({"accelerators": "- name: H100\n  type: NVIDIA-H100-80GB-HBM3\n  cost: 50\n- name: A100\n  type: NVIDIA-A100-SXM4-80GB\n  cost: \"40.0\"\n"}),
        ),
    );
    api.apply(VA, va(NS, "llama", "m", None, json!({})));
    api.apply(
        DEPLOYMENT,
        deployment(
            NS,
            "llama-h100",
            1,
            json!({"model_id": "m"}),
            json!({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
        ),
    );
    let mut annotated = deployment(
        NS,
        "llama-a100",
        2,
        json!({}),
        json!({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}),
    );
    annotated["metadata"]["annotations"] = json!({"model_id": "m"});
    api.apply(DEPLOYMENT, annotated);
    api.apply(
        DEPLOYMENT,
        deployment(NS, "unrelated", 1, json!({"model_id": "other"}), json!({})),
    );
    for (d, n) in [("llama-h100", 1), ("llama-a100", 2), ("unrelated", 1)] {
        for i in 0..n {
            api.apply(POD, pod(NS, d, i));
        }
    }
    let running = started(&api, options(settings(None, None), None)).await;
    running.cycle_now().await;
    let text = page(&running).await;
    assert!(
        series_of(&text, "llama-h100")
            .iter()
            .any(|l| l.contains("accelerator_type=\"H100\"")),
        "{text}"
    );
    assert!(
        series_of(&text, "llama-a100")
            .iter()
            .any(|l| l.contains("accelerator_type=\"A100\"")),
        "{text}"
    );
    assert!(series_of(&text, "unrelated").is_empty(), "{text}");
    assert!(
        series_of(&text, "llama").is_empty(),
        "discovered variants are named after Deployments"
    );
    let desired = |variant: &str| -> u64 {
        series_of(&text, variant)
            .iter()
            .find(|l| l.starts_with("inferno_desired_replicas{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let sum = desired("llama-h100") + desired("llama-a100");
    let status = eventually("the VA's summed status", T, || {
        api.statuses(NS, "llama")
            .last()
            .filter(|s| s["status"]["desiredOptimizedAlloc"]["numReplicas"] == sum)
            .cloned()
    })
    .await;
    let acc = status["status"]["desiredOptimizedAlloc"]["accelerator"]
        .as_str()
        .unwrap();
    assert!(acc.contains("H100") && acc.contains("A100"), "{status}");

    // The last labelled Deployment goes: the VA says no target matches, the series go.
    api.delete(DEPLOYMENT, NS, "llama-h100");
    api.delete(DEPLOYMENT, NS, "llama-a100");
    eventually("no targets", T, || {
        api.statuses(NS, "llama")
            .last()
            .filter(|s| condition(s, "TargetResolved")["status"] == "False")
            .cloned()
    })
    .await;
    let text = page(&running).await;
    assert!(
        series_of(&text, "llama-h100").is_empty() && series_of(&text, "llama-a100").is_empty(),
        "{text}"
    );
    running.shutdown().await;
}

#[actix_rt::test]
async fn invalid_vas_get_a_condition_and_an_event_and_never_wedge_the_watch() {
    let api = FakeApi::new();
    let mut bad_cost = va(NS, "bad-cost", "m", Some("dep-1"), json!({}));
    bad_cost["spec"]["variantCost"] = json!("ten");
    api.apply(VA, bad_cost);
    let mut malformed = va(NS, "malformed", "m", Some("dep-2"), json!({}));
    malformed["spec"]["scaleTargetRef"] = json!("dep-2");
    api.apply(VA, malformed);
    let mut old = va(NS, "old-profile", "m", Some("dep-3"), json!({}));
    old["spec"]["modelProfile"] = json!({"accelerators": [{"acc": "A100", "accCount": 1, "maxBatchSize": 64, "perfParms": {"decodeParms": {"alpha": "20.5", "beta": "0.4"}}}]});
    api.apply(VA, old);
    api.apply(VA, va(NS, "good", "m", Some("dep-4"), json!({})));
    for i in 1..=4 {
        let d = format!("dep-{i}");
        api.apply(DEPLOYMENT, deployment(NS, &d, 1, json!({}), json!({})));
        api.apply(POD, pod(NS, &d, 0));
    }
    let running = started(&api, options(settings(None, None), None)).await;
    running.cycle_now().await;

    let status = api.statuses(NS, "bad-cost").last().cloned().unwrap();
    let opt = condition(&status, "OptimizationReady");
    assert_eq!(opt["reason"], "InvalidConfiguration");
    assert!(
        opt["message"]
            .as_str()
            .unwrap()
            .contains("spec.variantCost"),
        "{opt}"
    );
    assert!(
        api.events_about("bad-cost")
            .iter()
            .any(|(t, r, n)| t == "Warning"
                && r == "InvalidConfiguration"
                && n.contains("spec.variantCost"))
    );

    let status = eventually("malformed status", T, || {
        api.statuses(NS, "malformed").last().cloned()
    })
    .await;
    let opt = condition(&status, "OptimizationReady");
    assert_eq!(opt["reason"], "InvalidConfiguration", "{status}");
    assert!(
        opt["message"].as_str().unwrap().contains("cannot be read"),
        "{opt}"
    );

    let deprecated: Vec<_> = api
        .events_about("old-profile")
        .into_iter()
        .filter(|(_, r, _)| r == "Deprecated")
        .collect();
    assert_eq!(deprecated.len(), 1, "once per generation");
    assert_eq!(
        condition(api.statuses(NS, "old-profile").last().unwrap(), "Ready")["status"],
        "True",
        "perfParms is ignored, not an error"
    );

    // The watch still works after the malformed object: a fix is picked up.
    api.wait_watches(5).await;
    api.apply(VA, va(NS, "malformed", "m", Some("dep-2"), json!({})));
    variants_become(&running, 4).await;
    assert_eq!(
        condition(api.statuses(NS, "good").last().unwrap(), "Ready")["status"],
        "True"
    );
    running.shutdown().await;
}

#[actix_rt::test]
async fn only_the_leader_publishes_and_writes_and_a_follower_takes_over() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 1, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    let one = started(&api, options(settings(None, None), Some("one"))).await;
    let mut leader_rx = one.leader.clone();
    tokio::time::timeout(T, leader_rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let two = started(&api, options(settings(None, None), Some("two"))).await;
    let mut two_rx = two.leader.clone();
    two_rx.borrow_and_update();
    // Over three of one's renewals (two retries every 200 ms meanwhile), two never leads.
    lease_renewals(&api, "wva-leader", 3).await;
    assert!(!*two.leader.borrow(), "two must wait while one renews");
    assert!(
        !two_rx.has_changed().unwrap(),
        "two never led, not even briefly"
    );

    one.cycle_now().await;
    two.cycle_now().await;
    assert!(!series_of(&page(&one).await, "va").is_empty());
    assert!(
        series_of(&page(&two).await, "va").is_empty(),
        "a follower publishes nothing"
    );
    let lease = api
        .get(support::apiserver::LEASE, CONTROLLER_NS, "wva-leader")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "one");

    // The leader stops: it releases the Lease and the follower takes over within a few retries.
    let patches_before = api.statuses(NS, "va").len();
    one.shutdown().await;
    let mut rx = two.leader.clone();
    tokio::time::timeout(T, rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    two.cycle_now().await;
    assert!(!series_of(&page(&two).await, "va").is_empty());
    assert!(
        api.statuses(NS, "va").len() > patches_before,
        "the new leader writes status"
    );
    let lease = api
        .get(support::apiserver::LEASE, CONTROLLER_NS, "wva-leader")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "two");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    two.shutdown().await;
}

#[actix_rt::test]
async fn a_missing_crd_says_how_to_install_it() {
    let api = FakeApi::new();
    let client = api.client();
    assert!(wva::cli::run::check_crd(&client).await.is_ok());
    api.set_crd_installed(false);
    let e = wva::cli::run::check_crd(&client).await.unwrap_err();
    assert!(matches!(e, wva::cli::run::CrdCheckError::NotInstalled));
    let e = e.to_string();
    assert!(
        e.contains("is not installed")
            && e.contains("kubectl apply -f crds/llmd.ai_variantautoscalings.yaml"),
        "{e}"
    );
}

#[actix_rt::test]
async fn the_metrics_endpoint_admits_only_callers_allowed_to_get_metrics() {
    use wva::controller::http::{Authorizer, metrics, serve};
    wva::tls::install_default_provider();
    let api = FakeApi::new();
    api.add_token(
        "scraper-token",
        "system:serviceaccount:monitoring:prometheus",
        true,
    );
    api.add_token("other-token", "system:serviceaccount:default:nosy", false);
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 1, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    let running = started(&api, options(settings(None, None), None)).await;
    running.cycle_now().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let tls = wva::tls::server_config(None, &["localhost".into()]).unwrap();
    tokio::spawn(serve(
        listener,
        metrics(
            running.publisher.clone(),
            Some(running.ops.clone()),
            Some(Authorizer::new(api.client())),
        ),
        Some(wva::controller::http::tls(tls)),
        running.stop_token(),
    ));
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(
            wva::tls::client_config(&wva::tls::ClientTls {
                insecure_skip_verify: true,
                ..Default::default()
            })
            .unwrap(),
        )
        .build()
        .unwrap();
    let url = format!("https://{address}/metrics");
    let get = |token: Option<&'static str>| {
        let mut r = client.get(&url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get(None).await.unwrap().status(), 401);
    assert_eq!(get(Some("unknown-token")).await.unwrap().status(), 403);
    assert_eq!(get(Some("other-token")).await.unwrap().status(), 403);
    let ok = get(Some("scraper-token")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.text()
            .await
            .unwrap()
            .contains("inferno_desired_replicas")
    );
    let reviews = api
        .writes()
        .iter()
        .filter(|w| w.path.ends_with("/tokenreviews"))
        .count();
    let _ = get(Some("scraper-token")).await.unwrap();
    assert_eq!(
        api.writes()
            .iter()
            .filter(|w| w.path.ends_with("/tokenreviews"))
            .count(),
        reviews,
        "answers are cached"
    );
    running.shutdown().await;
}

#[actix_rt::test]
async fn a_configmap_change_applies_live_and_an_invalid_entry_is_reported() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    for i in 0..2 {
        api.apply(POD, pod(NS, "dep", i));
    }
    let running = started(&api, options(settings(None, None), None)).await;
    running.cycle_now().await;
    assert_eq!(
        condition(api.statuses(NS, "va").last().unwrap(), "OptimizationReady")["reason"],
        "OptimizationSucceeded"
    );

    // An override for this model with a threshold out of range: skipped, reported on the
    // ConfigMap and in the VA's condition; the model runs on the default meanwhile.
    api.wait_watches(5).await;
    api.apply(
        CONFIG_MAP,
        config_map(
            CONTROLLER_NS,
            "capacity-scaling-config",
            json!({"default": "kvCacheThreshold: 0.8\n", "llama": "model_id: m\nkvCacheThreshold: 7\n"}),
        ),
    );
    let events = eventually("a ConfigMap event", T, || {
        let e = api.events_about("capacity-scaling-config");
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(
        events.iter().any(|(t, r, n)| t == "Warning"
            && r == "InvalidConfiguration"
            && n.contains("llama")
            && n.contains("kvCacheThreshold")),
        "{events:?}"
    );
    running.cycle_now().await;
    let opt = condition(api.statuses(NS, "va").last().unwrap(), "OptimizationReady").clone();
    assert_eq!(opt["reason"], "InvalidConfiguration", "{opt}");
    assert!(
        opt["message"]
            .as_str()
            .unwrap()
            .contains("kvCacheThreshold"),
        "{opt}"
    );

    // Fixed: the next cycle succeeds again.
    api.apply(
        CONFIG_MAP,
        config_map(CONTROLLER_NS, "capacity-scaling-config", json!({"default": "kvCacheThreshold: 0.8\n", "llama": "model_id: m\nkvCacheThreshold: 0.7\n"})),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.cycle_now().await;
    assert_eq!(
        condition(api.statuses(NS, "va").last().unwrap(), "OptimizationReady")["reason"],
        "OptimizationSucceeded"
    );
    running.shutdown().await;
}

#[actix_rt::test]
async fn prometheus_down_at_start_runs_the_safety_net_from_the_va_status_and_readyz_says_so() {
    let api = FakeApi::new();
    let mut with_status = va(NS, "va", "m", Some("dep"), json!({}));
    with_status["status"] = json!({"desiredOptimizedAlloc": {"numReplicas": 5, "accelerator": "H100", "lastRunTime": "2026-01-01T00:00:00Z"}});
    api.apply(VA, with_status);
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    let mut opts = options(settings(None, None), None);
    opts.metrics = support::apiserver::failing_metrics();
    let running = started(&api, opts).await;
    running.cycle_now().await;

    // No log yet: the last desired count stored on the VA is what is emitted.
    let text = page(&running).await;
    assert!(
        series_of(&text, "va")
            .iter()
            .any(|l| l.starts_with("inferno_desired_replicas{") && l.ends_with(" 5")),
        "{text}"
    );
    let status = api.statuses(NS, "va").last().cloned().unwrap();
    let opt = condition(&status, "OptimizationReady");
    assert_eq!(opt["reason"], "SafetyNetActive", "{status}");
    assert!(
        opt["message"]
            .as_str()
            .unwrap()
            .contains("previous-desired"),
        "{opt}"
    );
    assert_eq!(
        condition(&status, "MetricsAvailable")["reason"],
        "PrometheusError"
    );
    assert!(
        api.events_about("va")
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "SafetyNetActive")
    );

    // The probes: alive, and ready but degraded, saying why.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(wva::controller::http::serve(
        listener,
        wva::controller::http::probes(running.health.clone()),
        None,
        running.stop_token(),
    ));
    wva::tls::install_default_provider();
    let http = reqwest::Client::new();
    let healthz = http
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = http
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);
    let body = readyz.text().await.unwrap();
    assert!(
        body.contains("degraded: the Prometheus read failed"),
        "{body}"
    );
    // Anyone who reaches the probe port reads this: the error's words stay in the log.
    assert!(!body.contains("connection refused"), "{body}");
    running.shutdown().await;
}

#[actix_rt::test]
async fn readyz_is_503_until_the_watches_are_synced() {
    use wva::controller::health::Health;
    use wva::controller::http::{probes, serve};
    wva::tls::install_default_provider();
    let (health, health_rx) = tokio::sync::watch::channel(Health::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve(listener, probes(health_rx), None, stop.clone()));
    let readyz = || reqwest::get(format!("http://{address}/readyz"));
    let r = readyz().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("waiting for the initial lists")
    );
    health.send_modify(|h| {
        h.watches_synced = true;
        h.leader = true;
    });
    assert_eq!(readyz().await.unwrap().status(), 200);
    stop.cancel();
}

#[actix_rt::test]
async fn a_restart_recovers_the_last_good_desired_count_from_the_flushed_log() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 3, json!({}), json!({})));
    for i in 0..3 {
        api.apply(POD, pod(NS, "dep", i));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(settings(None, None), None);
    opts.data_dir = Some(dir.path().join("log"));
    let first = started(&api, opts.clone()).await;
    first.cycle_now().await;
    let decided = page(&first).await;
    let desired = series_of(&decided, "va")
        .into_iter()
        .find(|l| l.starts_with("inferno_desired_replicas{"))
        .unwrap();
    // Graceful stop: the log is flushed before the process would exit.
    first.shutdown().await;

    // The next start has no Prometheus: the log's last good count, not the current replicas.
    opts.metrics = support::apiserver::failing_metrics();
    let second = started(&api, opts).await;
    second.cycle_now().await;
    let text = page(&second).await;
    let again = series_of(&text, "va")
        .into_iter()
        .find(|l| l.starts_with("inferno_desired_replicas{"))
        .unwrap();
    assert_eq!(again, desired);
    assert!(
        !desired.ends_with(" 3"),
        "the decision differs from the current count: {desired}"
    );
    second.shutdown().await;
}

#[actix_rt::test]
async fn a_deleted_va_takes_its_series_with_it() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 1, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    let running = started(&api, options(settings(None, None), None)).await;
    running.cycle_now().await;
    assert!(!series_of(&page(&running).await, "va").is_empty());
    api.wait_watches(5).await;
    api.delete(VA, NS, "va");
    variants_become(&running, 0).await;
    assert!(series_of(&page(&running).await, "va").is_empty());
    running.shutdown().await;
}

#[actix_rt::test]
async fn losing_the_lease_stops_publishing_at_once() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 1, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    let one = started(&api, options(settings(None, None), Some("one"))).await;
    let mut rx = one.leader.clone();
    tokio::time::timeout(T, rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    one.cycle_now().await;
    assert!(!series_of(&page(&one).await, "va").is_empty());

    // Another holder takes the Lease (as after a partition): renewals fail, and past the
    // renew deadline the series go and cycles stop writing.
    let mut lease = api
        .get(support::apiserver::LEASE, CONTROLLER_NS, "wva-leader")
        .unwrap();
    lease["spec"]["holderIdentity"] = json!("intruder");
    lease["spec"]["renewTime"] = json!(jiff::Timestamp::now().to_string());
    lease["spec"]["leaseDurationSeconds"] = json!(3600);
    api.apply(support::apiserver::LEASE, lease);
    tokio::time::timeout(T, rx.wait_for(|l| !*l))
        .await
        .unwrap()
        .unwrap();
    // The loop takes a leadership change before its next command: once this request is
    // answered, the publisher has dropped the series (no sleep to hope for it).
    one.cycle_now().await;
    assert!(series_of(&page(&one).await, "va").is_empty());
    one.statuses_settled().await;
    let writes = api.statuses(NS, "va").len();
    one.cycle_now().await;
    one.statuses_settled().await;
    assert_eq!(
        api.statuses(NS, "va").len(),
        writes,
        "a follower writes no status"
    );
    one.shutdown().await;
}

#[actix_rt::test]
async fn the_default_analyzer_reads_serving_statistics_and_falls_back_where_it_has_not_learned() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 3, json!({}), json!({})));
    for i in 0..3 {
        api.apply(POD, pod(NS, "dep", i));
    }
    let defaults = SettingsArgs {
        prometheus_base_url: Some("http://127.0.0.1:1".into()),
        prometheus_allow_http: Some(true),
        pod_namespace: Some(CONTROLLER_NS.into()),
        reconciliation_interval: Some("1h".into()),
        ..Default::default()
    }
    .resolve(None)
    .unwrap();
    assert_eq!(defaults.analyzer, wva_actors::policy::Analyzer::SloCapacity);
    let asked_for_serving = Arc::new(AtomicBool::new(false));
    let mut opts = options(defaults, None);
    let scripted = support::apiserver::scripted_metrics(|_| "m");
    let seen = asked_for_serving.clone();
    opts.metrics = Arc::new(move |plan, pods| {
        seen.store(plan.serving, Ordering::SeqCst);
        scripted(plan, pods)
    });
    let running = started(&api, opts).await;
    running.cycle_now().await;
    assert!(
        asked_for_serving.load(Ordering::SeqCst),
        "slo-capacity reads rates and latencies"
    );
    // Nothing served yet: no capacity to size from, so the saturation analysis decides, both
    // ways: at 30 % KV-cache use and empty queues one replica fewer is safe (never frozen at
    // three), and the status says which analysis decided.
    let text = page(&running).await;
    assert!(
        series_of(&text, "va")
            .iter()
            .any(|l| l.starts_with("inferno_desired_replicas{") && l.ends_with(" 2")),
        "{text}"
    );
    let status = api.statuses(NS, "va").last().cloned().unwrap();
    assert_eq!(status["status"]["desiredOptimizedAlloc"]["numReplicas"], 2);
    let optimization = status["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "OptimizationReady"))
        .cloned()
        .unwrap();
    assert_eq!(
        optimization["reason"], "SaturationFallback",
        "{optimization}"
    );
    running.shutdown().await;
}

#[actix_rt::test]
async fn a_model_id_that_matches_no_series_is_said_where_the_series_are() {
    // The VA says model "m"; its pods' series carry model_name "meta/m" (a mistyped model id,
    // the usual silent no-op).
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    for i in 0..2 {
        api.apply(POD, pod(NS, "dep", i));
    }
    let mut opts = options(settings(None, None), None);
    opts.metrics = support::apiserver::scripted_metrics(|_| "meta/m");
    let running = started(&api, opts).await;
    running.cycle_now().await;
    let status = eventually("a MetricsMissing status", T, || {
        api.statuses(NS, "va")
            .into_iter()
            .rev()
            .find(|s| condition(s, "MetricsAvailable")["reason"] == "MetricsMissing")
    })
    .await;
    let message = condition(&status, "MetricsAvailable")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("its pods report model_name \"meta/m\" while the model id is \"m\""),
        "{message}"
    );
    let warned = eventually("a MetricsMissing Event", T, || {
        api.events_about("va")
            .into_iter()
            .find(|(t, r, _)| t == "Warning" && r == "MetricsMissing")
    })
    .await;
    assert!(warned.2.contains("\"meta/m\""), "{warned:?}");
    // Once on entering, not every cycle.
    running.cycle_now().await;
    let count = api
        .events_about("va")
        .iter()
        .filter(|(_, r, _)| r == "MetricsMissing")
        .count();
    assert_eq!(count, 1);
    let text = page(&running).await;
    assert!(
        text.lines().any(|l| l.starts_with("wva_metrics_missing{")
            && l.contains("va")
            && l.ends_with(" 1")),
        "{text}"
    );
    running.shutdown().await;
}

#[actix_rt::test]
async fn annotated_scalers_are_variants_beside_vas_with_events_on_the_scaler_and_keda_is_noticed_when_installed()
 {
    use support::apiserver::{HPA, SCALED_OBJECT, hpa, scaled_object};
    let managed = |model: &str| json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": model});
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va-a", "m", Some("dep-a"), json!({})));
    for dep in ["dep-a", "dep-c"] {
        api.apply(DEPLOYMENT, deployment(NS, dep, 2, json!({}), json!({})));
        for i in 0..2 {
            api.apply(POD, pod(NS, dep, i));
        }
    }
    // A v0.9 variant whose Deployment does not exist yet, one that conflicts with the VA, and
    // one without a model id.
    api.apply(HPA, hpa(NS, "hpa-b", "dep-b", managed("m")));
    api.apply(HPA, hpa(NS, "hpa-a", "dep-a", managed("m")));
    api.apply(
        HPA,
        hpa(NS, "hpa-bad", "dep-x", json!({"llm-d.ai/managed": "true"})),
    );
    // An HPA without the annotations is no variant.
    api.apply(HPA, hpa(NS, "plain", "dep-y", json!({})));
    let running = started(&api, options(settings(None, None), None)).await;
    variants_become(&running, 2).await;

    let (_, _, note) = eventually("a conflict Event on hpa-a", T, || {
        api.events_about("hpa-a")
            .into_iter()
            .find(|(t, r, _)| t == "Warning" && r == "InvalidConfiguration")
    })
    .await;
    assert!(
        note.contains("Deployment dep-a is already managed through VariantAutoscaling llm/va-a"),
        "{note}"
    );
    let (_, _, note) = eventually("an Event on hpa-bad", T, || {
        api.events_about("hpa-bad")
            .into_iter()
            .find(|(t, _, _)| t == "Warning")
    })
    .await;
    assert!(
        note.starts_with("annotation llm-d.ai/model-id: required"),
        "{note}"
    );
    running.cycle_now().await;
    eventually("a DeploymentNotFound Event on hpa-b", T, || {
        api.events_about("hpa-b")
            .into_iter()
            .find(|(_, r, _)| r == "DeploymentNotFound")
    })
    .await;

    // The Deployment appears: hpa-b is decided and published under its own name.
    api.apply(DEPLOYMENT, deployment(NS, "dep-b", 2, json!({}), json!({})));
    for i in 0..2 {
        api.apply(POD, pod(NS, "dep-b", i));
    }
    let start = std::time::Instant::now();
    let text = loop {
        running.cycle_now().await;
        let text = page(&running).await;
        if series_of(&text, "hpa-b")
            .iter()
            .any(|l| l.starts_with("inferno_desired_replicas{"))
        {
            break text;
        }
        assert!(start.elapsed() < T, "hpa-b was never published: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(series_of(&text, "hpa-a").is_empty());
    // No status is written anywhere but on VAs.
    assert!(
        api.writes()
            .iter()
            .filter(|w| w.method == "PATCH")
            .all(|w| w.path.contains("/variantautoscalings/")),
        "{:?}",
        api.writes()
    );

    // KEDA is installed after the controller started: its ScaledObjects are picked up without
    // a restart (the watch retries with its backoff).
    api.set_keda_installed(true);
    api.apply(
        SCALED_OBJECT,
        scaled_object(NS, "so-c", "dep-c", managed("m")),
    );
    let start = std::time::Instant::now();
    loop {
        if running.registry.send(Counts).await.unwrap().variants == 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the ScaledObject was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.cycle_now().await;
    assert!(!series_of(&page(&running).await, "so-c").is_empty());

    // Annotations removed: the variant and its series go.
    api.apply(HPA, hpa(NS, "hpa-b", "dep-b", json!({})));
    variants_become(&running, 2).await;
    assert!(series_of(&page(&running).await, "hpa-b").is_empty());
    running.shutdown().await;
}

#[actix_rt::test]
async fn keda_s_external_scaler_serves_what_is_published_and_nothing_else() {
    use std::collections::HashMap;
    use support::apiserver::{HPA, hpa};
    use wva::external_scaler::proto::external_scaler_client::ExternalScalerClient;
    use wva::external_scaler::proto::{GetMetricsRequest, ScaledObjectRef};
    use wva::external_scaler::{DesiredScaler, serve};

    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(
        HPA,
        hpa(
            NS,
            "hpa-b",
            "dep-b",
            json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "m"}),
        ),
    );
    for dep in ["dep", "dep-b"] {
        api.apply(DEPLOYMENT, deployment(NS, dep, 3, json!({}), json!({})));
        for i in 0..3 {
            api.apply(POD, pod(NS, dep, i));
        }
    }
    let running = started(&api, options(settings(None, None), None)).await;
    variants_become(&running, 2).await;
    running.cycle_now().await;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let scaler = DesiredScaler::new(running.board(), running.leader.clone());
    let served = tokio::spawn(serve(listener, scaler, None, stop.clone()));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap();
    let channel = tokio::time::timeout(T, async {
        loop {
            if let Ok(channel) = endpoint.connect().await {
                break channel;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a gRPC connection");
    let mut client = ExternalScalerClient::new(channel);
    let ask = |variant: &str| ScaledObjectRef {
        name: "so".into(),
        namespace: NS.into(),
        scaler_metadata: HashMap::from([("variantName".to_string(), variant.to_string())]),
    };
    let text = page(&running).await;
    for variant in ["va", "hpa-b"] {
        let published = series_of(&text, variant)
            .into_iter()
            .find(|l| l.starts_with("inferno_desired_replicas{"))
            .and_then(|l| l.rsplit(' ').next().map(str::to_string))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{variant} is not published: {text}"));
        let served = client
            .get_metrics(GetMetricsRequest {
                scaled_object_ref: Some(ask(variant)),
                metric_name: "desired_replicas".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(served.metric_values[0].metric_value, published, "{variant}");
    }
    // A VA that goes away is NOT_FOUND at once, as its series disappear.
    api.delete(VA, NS, "va");
    variants_become(&running, 1).await;
    let status = client.is_active(ask("va")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    stop.cancel();
    served.await.unwrap().unwrap();
    running.shutdown().await;
}

#[actix_rt::test]
async fn a_leader_worker_set_is_scaled_by_groups_and_read_through_its_leaders() {
    use std::sync::Mutex;
    use support::apiserver::{HPA, LWS, group_pod, hpa, leader_worker_set};
    let api = FakeApi::new();
    api.set_lws_installed(true);
    let mut explicit = va(NS, "va-big", "m", Some("big"), json!({}));
    explicit["spec"]["scaleTargetRef"] = json!({"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": "big"});
    api.apply(VA, explicit);
    api.apply(
        LWS,
        leader_worker_set(NS, "big", 2, 3, "NVIDIA-H100-80GB-HBM3"),
    );
    // The v0.9 form on a LeaderWorkerSet: an annotated HPA.
    let mut on_group = hpa(
        NS,
        "hpa-huge",
        "huge",
        json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "m"}),
    );
    on_group["spec"]["scaleTargetRef"] = json!({"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": "huge"});
    api.apply(HPA, on_group);
    api.apply(
        LWS,
        leader_worker_set(NS, "huge", 1, 2, "NVIDIA-A100-SXM4-80GB"),
    );
    for (lws, groups, size) in [("big", 2, 3), ("huge", 1, 2)] {
        for g in 0..groups {
            for i in 0..size {
                api.apply(POD, group_pod(NS, lws, g, i));
            }
        }
    }
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut opts = options(settings(None, None), None);
    let scripted = support::apiserver::scripted_metrics(|_| "m");
    let recorder = seen.clone();
    opts.metrics = Arc::new(move |plan, pods| {
        let mut read: Vec<(String, String)> = pods
            .iter()
            .map(|((_, pod), target)| (pod.clone(), target.clone()))
            .collect();
        read.sort();
        *recorder.lock().unwrap() = read;
        scripted(plan, pods)
    });
    let running = started(&api, opts).await;
    variants_become(&running, 2).await;
    running.cycle_now().await;
    // Only the leaders report: one pod per group, under the target's kind and name (a
    // Deployment named "big" would be another target).
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("big-0".to_string(), "LeaderWorkerSet/big".to_string()),
            ("big-1".to_string(), "LeaderWorkerSet/big".to_string()),
            ("huge-0".to_string(), "LeaderWorkerSet/huge".to_string()),
        ]
    );
    let text = page(&running).await;
    assert!(
        series_of(&text, "va-big")
            .iter()
            .any(|l| l.starts_with("inferno_current_replicas{") && l.ends_with(" 2")),
        "{text}"
    );
    assert!(
        series_of(&text, "hpa-huge")
            .iter()
            .any(|l| l.starts_with("inferno_current_replicas{") && l.ends_with(" 1")),
        "{text}"
    );
    let status = eventually("a resolved status", T, || {
        api.statuses(NS, "va-big")
            .into_iter()
            .rev()
            .find(|s| condition(s, "TargetResolved")["status"] == "True")
    })
    .await;
    assert_eq!(status["status"]["currentAlloc"]["numReplicas"], 2);
    // The group set goes: its variant's series go with it.
    api.delete(LWS, NS, "big");
    let start = std::time::Instant::now();
    while series_of(&page(&running).await, "va-big")
        .iter()
        .any(|l| l.starts_with("inferno_desired_replicas{"))
    {
        assert!(start.elapsed() < T, "va-big's series stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = eventually("a target-gone status", T, || {
        api.statuses(NS, "va-big")
            .into_iter()
            .rev()
            .find(|s| condition(s, "TargetResolved")["status"] == "False")
    })
    .await;
    assert_eq!(gone["status"]["desiredOptimizedAlloc"], json!({}));
    running.shutdown().await;
}

#[actix_rt::test]
async fn prefill_and_decode_deployments_are_decided_apart() {
    let api = FakeApi::new();
    for (dep, role) in [("m-prefill", "prefill"), ("m-decode", "decode")] {
        api.apply(VA, va(NS, dep, "m", Some(dep), json!({})));
        api.apply(
            DEPLOYMENT,
            deployment(NS, dep, 2, json!({"llm-d.ai/role": role}), json!({})),
        );
        for i in 0..2 {
            api.apply(POD, pod(NS, dep, i));
        }
    }
    // Every server's KV cache is nearly full and nothing waits.
    let mut opts = options(settings(None, None), None);
    opts.metrics = support::apiserver::scripted_signals(|_| "m", 0.95, 0.0);
    let running = started(&api, opts).await;
    variants_become(&running, 2).await;
    running.cycle_now().await;
    let desired = |text: &str, variant: &str| -> Option<u32> {
        series_of(text, variant)
            .into_iter()
            .find(|l| l.starts_with("inferno_desired_replicas{"))
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
    };
    let text = page(&running).await;
    // Decode is judged on its KV cache: it needs more. Prefill on its (empty) queue: it does not.
    assert!(desired(&text, "m-decode").is_some_and(|d| d > 2), "{text}");
    assert!(
        desired(&text, "m-prefill").is_some_and(|d| d <= 2),
        "{text}"
    );
    running.shutdown().await;
}

#[actix_rt::test]
async fn rbac_without_hpas_still_manages_vas() {
    use support::apiserver::HPA;
    let api = FakeApi::new();
    api.forbid(HPA);
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    let running = started(&api, options(settings(None, None), None)).await;
    variants_become(&running, 1).await;
    running.shutdown().await;
}

/// Issue 19: a main ConfigMap trying to set the Prometheus connection it is not trusted with
/// gets a Warning Event naming the keys, where whoever edited it looks.
#[actix_rt::test]
async fn an_ignored_connection_key_is_a_warning_event_on_the_config_map() {
    let api = FakeApi::new();
    let note =
        wva::cli::run::ignored_keys_note(&["PROMETHEUS_BASE_URL", "PROMETHEUS_BEARER_TOKEN"]);
    wva::controller::status_writer::warn_on_config_map(
        api.client(),
        "wva-0",
        CONTROLLER_NS,
        "workload-variant-autoscaler-variantautoscaling-config",
        note,
    )
    .await;
    let events = api.events_about("workload-variant-autoscaler-variantautoscaling-config");
    assert!(
        events.iter().any(|(t, r, n)| t == "Warning"
            && r == "InvalidConfiguration"
            && n.contains("PROMETHEUS_BASE_URL, PROMETHEUS_BEARER_TOKEN ignored")),
        "{events:?}"
    );
}

/// The model of deployment `dep-<i>` in the shard tests.
fn model_of_shard_test(deployment: &str) -> &'static str {
    const MODELS: [&str; 8] = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
    let i: usize = deployment
        .trim_start_matches("dep-")
        .parse()
        .unwrap_or_default();
    MODELS[i % MODELS.len()]
}

fn sharded(identity: &str) -> ControllerOptions {
    ControllerOptions {
        metrics: support::apiserver::scripted_metrics(model_of_shard_test),
        shards: 4,
        ..options(settings(None, None), Some(identity))
    }
}

/// Waits until the replica holds exactly `n` shards; returns them.
async fn holds(running: &Running, n: usize) -> std::collections::BTreeSet<u32> {
    let mut rx = running.shards.clone();
    let held = tokio::time::timeout(Duration::from_secs(15), async {
        rx.wait_for(|f| f.held.len() == n)
            .await
            .map(|f| f.held.clone())
    })
    .await;
    match held {
        Ok(held) => held.expect("the shard watch"),
        Err(_) => panic!(
            "never held {n} shards (holds {:?})",
            running.shards.borrow().held
        ),
    }
}

/// The VAs whose series a replica publishes, among va-0..va-7.
async fn published_by(running: &Running) -> Vec<usize> {
    let text = page(running).await;
    (0..8)
        .filter(|i| !series_of(&text, &format!("va-{i}")).is_empty())
        .collect()
}

/// CONTRACT 17 (issue 17): with `--shards 4`, replicas split the models through one Lease per
/// shard; every model is published by exactly one replica, the one holding its shard; a
/// replica that gives a shard up stops publishing its models at once; a replica that fails is
/// replaced by the survivor within about a lease duration; and a replica that comes back gets
/// its share again.
#[actix_rt::test]
async fn replicas_split_the_models_by_shard_and_a_survivor_takes_over() {
    let api = FakeApi::new();
    for i in 0..8 {
        let dep = format!("dep-{i}");
        api.apply(
            VA,
            va(
                NS,
                &format!("va-{i}"),
                model_of_shard_test(&dep),
                Some(&dep),
                json!({}),
            ),
        );
        api.apply(DEPLOYMENT, deployment(NS, &dep, 1, json!({}), json!({})));
        api.apply(POD, pod(NS, &dep, 0));
    }
    let shard = |i: usize| {
        wva_actors::shards::shard_of(
            &wva_actors::messages::ModelKey::new(NS, model_of_shard_test(&format!("dep-{i}"))),
            4,
        )
    };
    // Alone, a replica takes every shard and publishes every model.
    let one = started(&api, sharded("one")).await;
    holds(&one, 4).await;
    one.cycle_now().await;
    assert_eq!(published_by(&one).await, (0..8).collect::<Vec<_>>());

    // A second replica joins: two shards each, and each model on exactly one replica.
    let two = started(&api, sharded("two")).await;
    let (held_one, held_two) = (holds(&one, 2).await, holds(&two, 2).await);
    assert!(held_one.is_disjoint(&held_two), "{held_one:?} {held_two:?}");
    one.cycle_now().await;
    two.cycle_now().await;
    let (by_one, by_two) = (published_by(&one).await, published_by(&two).await);
    for i in 0..8 {
        let holder_is_one = held_one.contains(&shard(i));
        assert_eq!(
            by_one.contains(&i),
            holder_is_one,
            "va-{i}: {by_one:?} / {by_two:?}"
        );
        assert_eq!(
            by_two.contains(&i),
            !holder_is_one,
            "va-{i}: {by_one:?} / {by_two:?}"
        );
    }
    for i in 0..4u32 {
        let lease = api
            .get(
                support::apiserver::LEASE,
                CONTROLLER_NS,
                &format!("wva-leader-shard-{i}"),
            )
            .expect("a Lease per shard");
        let holder = lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(holder == "one", held_one.contains(&i), "shard {i}: {lease}");
    }

    // Two fails (its Lease renewals stop, nothing is released): one takes its shards over
    // once they expire.
    let failed_at = std::time::Instant::now();
    assert!(two.kill_task("leader-election"));
    holds(&one, 4).await;
    eprintln!(
        "takeover after the holder failed: {:.1} s (lease duration 2 s)",
        failed_at.elapsed().as_secs_f64()
    );
    one.cycle_now().await;
    assert_eq!(published_by(&one).await, (0..8).collect::<Vec<_>>());

    // A replica comes back: the shares are split again.
    let three = started(&api, sharded("three")).await;
    holds(&three, 2).await;
    holds(&one, 2).await;
    one.shutdown().await;
    three.shutdown().await;
    two.shutdown().await;
}

/// Shards are held through Leases: without leader election the controller refuses to start
/// and says what to set.
#[actix_rt::test]
async fn shards_need_leases() {
    let api = FakeApi::new();
    let options = ControllerOptions {
        shards: 2,
        ..options(settings(None, None), None)
    };
    let err = start(api.client(), options).await.expect_err("refused");
    assert!(err.to_string().contains("--leader-elect"), "{err}");
}

/// Shards without access to Leases (RBAC from an unsharded install): the replica decides
/// nothing, keeps running and says why; granted the access, it takes the shards.
#[actix_rt::test]
async fn a_replica_without_lease_access_holds_no_shard_and_recovers_when_granted() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va-0", "m0", Some("dep-0"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep-0", 1, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep-0", 0));
    api.forbid(support::apiserver::LEASE);
    let lease_requests = || {
        api.requests()
            .iter()
            .filter(|r| r.contains("/leases"))
            .count()
    };
    let mut one = started(&api, sharded("one")).await;
    // Refused twice for every one of the 4 shards: it has tried, and holds none.
    let start = std::time::Instant::now();
    while lease_requests() < 8 {
        assert!(start.elapsed() < T, "{} Lease requests", lease_requests());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(one.shards.borrow().held.is_empty());
    assert!(!*one.leader.borrow());
    one.cycle_now().await;
    assert!(
        published_by(&one).await.is_empty(),
        "nothing decided without a shard"
    );
    assert!(
        futures_util::FutureExt::now_or_never(one.critical()).is_none(),
        "every critical task still runs"
    );
    api.allow(support::apiserver::LEASE);
    holds(&one, 4).await;
    one.cycle_now().await;
    assert_eq!(published_by(&one).await, [0]);
    one.shutdown().await;
}

/// CONTRACT section 21: a shadow beside the main instance decides and logs as the main one
/// does, but writes no status and no Event, takes only its own Lease, and publishes only
/// `wva_shadow_*` series: what a scaler reads is the main instance's alone.
#[actix_rt::test]
async fn a_shadow_beside_the_main_instance_decides_but_writes_and_publishes_nothing_a_scaler_reads()
{
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    api.apply(POD, pod(NS, "dep", 1));
    let writes_but_leases = |api: &FakeApi| {
        api.writes()
            .into_iter()
            .filter(|w| !w.path.contains("/leases"))
            .count()
    };

    // The shadow alone: it leads only its own Lease, decides, and writes nothing.
    let shadow_options = ControllerOptions {
        shadow: true,
        ..options(settings(None, None), Some("shadow"))
    };
    let shadow = started(&api, shadow_options).await;
    let mut leading = shadow.leader.clone();
    tokio::time::timeout(T, leading.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    assert!(
        api.get(support::apiserver::LEASE, CONTROLLER_NS, "wva-leader")
            .is_none(),
        "the main instance's Lease is untouched"
    );
    assert!(
        api.get(
            support::apiserver::LEASE,
            CONTROLLER_NS,
            "wva-leader-shadow"
        )
        .is_some()
    );
    for _ in 0..3 {
        shadow.cycle_now().await;
    }
    shadow.statuses_settled().await;
    assert_eq!(writes_but_leases(&api), 0, "{:?}", api.writes());
    let shadow_page = page(&shadow).await;
    let shadow_desired: Vec<String> = series_of(&shadow_page, "va")
        .into_iter()
        .filter(|l| l.starts_with("wva_shadow_desired_replicas{"))
        .collect();
    assert_eq!(shadow_desired.len(), 1, "{shadow_page}");
    assert!(
        !shadow_page.contains("inferno_desired_replicas{"),
        "{shadow_page}"
    );
    assert!(shadow.ops.text().contains("wva_models_processed 1"));
    assert!(
        shadow
            .health
            .borrow()
            .summary()
            .1
            .starts_with("ready: shadow instance")
    );

    // The main instance beside it: the scalers read the main's series, the same count.
    let main = started(&api, options(settings(None, None), Some("main"))).await;
    let mut leading = main.leader.clone();
    tokio::time::timeout(T, leading.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    main.cycle_now().await;
    main.statuses_settled().await;
    let written = writes_but_leases(&api);
    assert!(written > 0, "the main instance writes its statuses");
    shadow.cycle_now().await;
    shadow.statuses_settled().await;
    assert_eq!(
        writes_but_leases(&api),
        written,
        "the shadow still writes nothing"
    );
    let main_page = page(&main).await;
    let value = |line: &str| line.rsplit(' ').next().unwrap().to_string();
    let main_desired: Vec<String> = series_of(&main_page, "va")
        .into_iter()
        .filter(|l| l.starts_with("inferno_desired_replicas{"))
        .collect();
    assert_eq!(main_desired.len(), 1, "{main_page}");
    let shadow_page = page(&shadow).await;
    let shadow_desired: Vec<String> = series_of(&shadow_page, "va")
        .into_iter()
        .filter(|l| l.starts_with("wva_shadow_desired_replicas{"))
        .collect();
    assert_eq!(
        value(&main_desired[0]),
        value(&shadow_desired[0]),
        "one configuration, one decision"
    );
    assert!(!main_page.contains("wva_shadow_"), "{main_page}");
    shadow.shutdown().await;
    main.shutdown().await;
}

fn model_is_deployment(deployment: &str) -> &'static str {
    match deployment {
        "chat" => "chat",
        "batch" => "batch",
        _ => "other",
    }
}

/// CONTRACT 20: the pool is read from the Nodes, less what other pods hold; the higher
/// priority is served first, the model cut short is told who holds the rest, and a Node that
/// goes away shrinks the pool for the next decision.
#[actix_rt::test]
async fn a_pool_read_from_the_nodes_serves_the_higher_priority_first() {
    use support::apiserver::{NODE, gpu_node, on_node};
    const H100: &str = "NVIDIA-H100-80GB-HBM3";
    let api = FakeApi::new();
    api.apply(NODE, gpu_node("gpu-1", H100, 4));
    api.apply(NODE, gpu_node("gpu-2", H100, 2));
    // Another team's job holds one of gpu-1's accelerators.
    api.apply(
        POD,
        on_node(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "training", "namespace": "ml"}}),
            "gpu-1",
            1,
        ),
    );
    for (name, node) in [("chat", "gpu-1"), ("batch", "gpu-2")] {
        api.apply(VA, va(NS, name, name, Some(name), json!({})));
        api.apply(
            DEPLOYMENT,
            deployment(
                NS,
                name,
                2,
                json!({}),
                json!({"nvidia.com/gpu.product": H100}),
            ),
        );
        for i in 0..2 {
            api.apply(POD, on_node(pod(NS, name, i), node, 1));
        }
    }
    api.apply(
        CONFIG_MAP,
        config_map(
            CONTROLLER_NS,
            "serviceclass",
            json!({"serviceClasses": "- name: Premium\n  model: chat\n  priority: 1\n  slo-itl: 24\n  slo-ttw: 500\n- name: Batch\n  model: batch\n  priority: 10\n  slo-itl: 100\n  slo-ttw: 5000\n"}),
        ),
    );
    let mut settings = settings(None, None);
    settings.accelerator_pool = true;
    let mut opts = options(settings, None);
    // Every server's KV cache is nearly full: each model wants a third replica.
    opts.metrics = support::apiserver::scripted_signals(model_is_deployment, 0.95, 0.0);
    let running = started(&api, opts).await;
    variants_become(&running, 2).await;
    let desired = |text: &str, variant: &str| -> Option<u32> {
        series_of(text, variant)
            .into_iter()
            .find(|l| l.starts_with("inferno_desired_replicas{"))
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
    };

    // 6 accelerators, 1 held by the training job: 5 for 6 wanted.
    running.cycle_now().await;
    let text = page(&running).await;
    assert_eq!(desired(&text, "chat"), Some(3), "{text}");
    assert_eq!(desired(&text, "batch"), Some(2), "{text}");
    running.statuses_settled().await;
    let status = api.get(VA, NS, "batch").unwrap();
    let pool = condition(&status, "AcceleratorsAvailable");
    assert_eq!(pool["status"], "False", "{status}");
    assert_eq!(pool["reason"], "PoolExhausted");
    let message = pool["message"].as_str().unwrap();
    assert!(
        message.contains("wanted 3 replicas, got 2")
            && message.contains("llm/chat 3 GPUs (priority 1)"),
        "{message}"
    );
    assert_eq!(
        condition(&api.get(VA, NS, "chat").unwrap(), "AcceleratorsAvailable")["status"],
        "True"
    );
    // Ready still: a variant cut short is being autoscaled.
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
    // And a Warning Event, once, where an annotated HPA or ScaledObject would hear of it too.
    let events = api.events_about("batch");
    assert_eq!(
        events
            .iter()
            .filter(|(t, r, n)| t == "Warning"
                && r == "PoolExhausted"
                && n.contains("wanted 3 replicas, got 2"))
            .count(),
        1,
        "{events:?}"
    );

    // gpu-2 goes: 3 accelerators left, all the priority-1 model's.
    // gpu-2 goes: 3 accelerators left. The priority-1 model is owed them all, so batch is cut
    // to nothing at once; chat grows only once batch's replicas are gone (until then they hold
    // their accelerators, and a third chat replica would wait Pending). The deletion reaches the
    // controller through its watch: the first cycle after it is in decides on the smaller pool.
    api.delete(NODE, "", "gpu-2");
    let start = std::time::Instant::now();
    loop {
        running.cycle_now().await;
        let text = page(&running).await;
        if desired(&text, "batch") == Some(0) {
            assert_eq!(desired(&text, "chat"), Some(2), "{text}");
            break;
        }
        assert!(start.elapsed() < T, "the pool never shrank: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // batch's HPA scales it down; its pods go.
    api.apply(
        DEPLOYMENT,
        deployment(
            NS,
            "batch",
            0,
            json!({}),
            json!({"nvidia.com/gpu.product": H100}),
        ),
    );
    for i in 0..2 {
        api.delete(POD, NS, &format!("batch-abc12-{i}"));
    }
    let start = std::time::Instant::now();
    loop {
        running.cycle_now().await;
        let text = page(&running).await;
        if desired(&text, "chat") == Some(3) {
            break;
        }
        assert!(
            start.elapsed() < T,
            "chat never got the freed accelerator: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown().await;
}

/// Without RBAC on Nodes the pool cannot be read: the controller says so once and decides
/// without it (quotas alone would still apply), rather than wait for a list that never comes.
#[actix_rt::test]
async fn a_pool_the_rbac_does_not_let_it_read_does_not_hold_the_controller() {
    use support::apiserver::NODE;
    let api = FakeApi::new();
    api.forbid(NODE);
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    let mut settings = settings(None, None);
    settings.accelerator_pool = true;
    let running = started(&api, options(settings, None)).await;
    variants_become(&running, 1).await;
    running.cycle_now().await;
    assert!(
        series_of(&page(&running).await, "va")
            .iter()
            .any(|l| l.starts_with("inferno_desired_replicas{")),
        "decided without the pool"
    );
    running.shutdown().await;
}
