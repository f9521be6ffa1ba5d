//! An analyzer that cannot learn falls back both ways (CONTRACT section 12): the controller,
//! reading a real Prometheus that scrapes `wva emulate` servers exporting KV-cache use, queues
//! and counters but no latency histograms, with the default analyzer. Three replicas at light
//! load are not frozen at their count while `slo-capacity` has no latency to learn from: the
//! saturation analysis decides, asks for fewer, and the status and the counter say so.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::apiserver::{DEPLOYMENT, FakeApi, POD, VA, deployment, pod, va};
use support::{Emulator, Prometheus, Target};
use wva::config::settings::SettingsArgs;
use wva_actors::publisher::Gather;

const NS: &str = "llm";
const MODEL: &str = "quiet";

fn optimization(api: &FakeApi) -> Value {
    api.statuses(NS, MODEL)
        .last()
        .and_then(|s| {
            s["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "OptimizationReady").cloned())
        })
        .unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn pods_without_latency_histograms_still_scale_down_on_idle_load() {
    wva::tls::install_default_provider();
    let servers = Emulator::start(&[
        "--servers",
        "3",
        "--load",
        "constant:0.5",
        "--model",
        MODEL,
        "--metric-names",
        "no-latency",
    ]);
    let targets: Vec<Target> = (0..3)
        .map(|i| Target::pod(&servers.addresses[i], NS, &format!("{MODEL}-abc12-{i}")))
        .collect();
    let prometheus = Prometheus::start(&targets, None);

    let api = FakeApi::new();
    api.apply(VA, va(NS, MODEL, MODEL, Some(MODEL), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, MODEL, 3, json!({}), json!({})));
    for i in 0..3 {
        api.apply(POD, pod(NS, MODEL, i));
    }
    let running = support::controller_reading(
        &api,
        &prometheus.url(),
        SettingsArgs {
            pod_namespace: Some("wva-system".into()),
            reconciliation_interval: Some("1h".into()),
            ..Default::default()
        },
    )
    .await;

    let started = Instant::now();
    let published = loop {
        running.cycle_now().await;
        let page = running.publisher.send(Gather).await.unwrap();
        let desired = page
            .lines()
            .find(|l| {
                l.starts_with("inferno_desired_replicas{")
                    && l.contains(&format!("variant_name=\"{MODEL}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        let condition = optimization(&api);
        if desired.is_some_and(|d| d < 3.0) && condition["reason"] == "SaturationFallback" {
            break (desired, condition);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after 60 s: desired {desired:?}, {condition}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (desired, condition) = published;
    assert_eq!(desired, Some(2.0), "one fewer at a time: {condition}");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("saturation analysis decides it, up and down"),
        "{message}"
    );
    assert!(running.ops.actors.saturation_fallback.get() > 0);
    drop(servers);
    running.shutdown().await;
}
