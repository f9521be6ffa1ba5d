//! Blind is not idle (CONTRACT section 7): the controller, reading a real Prometheus that scrapes
//! `wva emulate`, with scale to zero on and a short retention. An idle model that is seen goes
//! to zero; a serving model whose target stops answering is held at its count (the safety net,
//! saying why), never published as 0, through the loss of its request series and then of every
//! other series of its pod.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::apiserver::{
    CONFIG_MAP, DEPLOYMENT, FakeApi, POD, VA, config_map, deployment, pod, va,
};
use support::{Emulator, Prometheus, Target};
use wva::config::settings::SettingsArgs;
use wva::controller::Running;
use wva_actors::publisher::Gather;

const NS: &str = "llm";
const CONTROLLER_NS: &str = "wva-system";

fn condition(api: &FakeApi, va: &str, type_: &str) -> Value {
    api.statuses(NS, va)
        .last()
        .and_then(|s| {
            s["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
        })
        .unwrap_or(Value::Null)
}

/// The published desired count of a variant, if any.
async fn desired(running: &Running, variant: &str) -> Option<u32> {
    let page = running.publisher.send(Gather).await.unwrap();
    page.lines()
        .find(|l| {
            l.starts_with("inferno_desired_replicas{")
                && l.contains(&format!("variant_name=\"{variant}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u32)
}

#[actix_rt::test]
async fn a_target_that_stops_answering_is_held_never_scaled_to_zero() {
    wva::tls::install_default_provider();
    let busy = Emulator::start(&["--load", "constant:8", "--model", "busy"]);
    let idle = Emulator::start(&["--load", "none", "--model", "idle"]);
    let prometheus = Prometheus::start(
        &[
            Target::pod(&busy.addresses[0], NS, "busy-abc12-0"),
            Target::pod(&idle.addresses[0], NS, "idle-abc12-0"),
        ],
        None,
    );

    let api = FakeApi::new();
    for name in ["busy", "idle"] {
        api.apply(VA, va(NS, name, name, Some(name), json!({})));
        api.apply(DEPLOYMENT, deployment(NS, name, 1, json!({}), json!({})));
        api.apply(POD, pod(NS, name, 0));
    }
    api.apply(
        CONFIG_MAP,
        config_map(
            CONTROLLER_NS,
            "capacity-scaling-config",
            json!({"default": "enableScaleToZero: true\nscaleToZeroRetention: 10s\n"}),
        ),
    );
    let running = support::controller_reading(
        &api,
        &prometheus.url(),
        SettingsArgs {
            scaling_analyzer: Some("saturation-v1".into()),
            pod_namespace: Some(CONTROLLER_NS.into()),
            reconciliation_interval: Some("1h".into()),
            ..Default::default()
        },
    )
    .await;

    // Seen whole: the idle model goes to zero on positive evidence, the busy one serves.
    let start_at = Instant::now();
    loop {
        running.cycle_now().await;
        let busy_ok = condition(&api, "busy", "OptimizationReady")["reason"]
            == "OptimizationSucceeded"
            && desired(&running, "busy").await == Some(1);
        if busy_ok && desired(&running, "idle").await == Some(0) {
            break;
        }
        assert!(
            start_at.elapsed() < Duration::from_secs(40),
            "busy {:?} ({}), idle {:?} after 40 s",
            desired(&running, "busy").await,
            condition(&api, "busy", "OptimizationReady"),
            desired(&running, "idle").await,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // (Until Prometheus had two samples of each, both were blind, and held.)
    let blind_before = running.ops.actors.scale_to_zero_blind.get();

    // The busy model's target stops answering. Its request series leaves the 10 s window
    // first, its other series a minute later (max_over_time[1m]); at no cycle is it zero.
    drop(busy);
    let lost_at = Instant::now();
    let mut said_why = None;
    loop {
        running.cycle_now().await;
        let published = desired(&running, "busy").await;
        assert_eq!(
            published,
            Some(1),
            "{:?} after the scrape failed for {:?}",
            condition(&api, "busy", "OptimizationReady"),
            lost_at.elapsed()
        );
        let optimization = condition(&api, "busy", "OptimizationReady");
        if optimization["reason"] == "SafetyNetActive" {
            let message = optimization["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if message.starts_with("not scaled to zero") {
                said_why.get_or_insert(message);
            }
        }
        let metrics = condition(&api, "busy", "MetricsAvailable");
        // Missing, or stale when Prometheus still holds older samples of the pod.
        if said_why.is_some() && metrics["status"] == "False" {
            break;
        }
        assert!(
            lost_at.elapsed() < Duration::from_secs(100),
            "after 100 s: said why {said_why:?}, metrics {metrics}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let why = said_why.unwrap();
    assert!(why.contains("cannot tell idle from unseen"), "{why}");
    assert!(running.ops.actors.scale_to_zero_blind.get() > blind_before);
    // The idle model, still seen, stays at zero.
    assert_eq!(desired(&running, "idle").await, Some(0));
    drop(idle);
    running.shutdown().await;
}
