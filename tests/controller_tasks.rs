//! What the `wva run` process does when one of its tasks dies, and status writes through an API
//! server that fails: against the scripted API server, with the production log subscriber
//! installed (its spans are what once made the status writer panic).
#![allow(clippy::unwrap_used)]

mod support;

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use support::apiserver::{DEPLOYMENT, FakeApi, POD, VA, deployment, eventually, pod, va};
use wva::config::settings::SettingsArgs;
use wva::controller::{ControllerOptions, Running, start};

const T: Duration = Duration::from_secs(10);
const NS: &str = "llm";

fn options() -> ControllerOptions {
    let settings = SettingsArgs {
        prometheus_base_url: Some("http://127.0.0.1:1".into()),
        prometheus_allow_http: Some(true),
        pod_namespace: Some("wva-system".into()),
        reconciliation_interval: Some("1h".into()),
        ..Default::default()
    }
    .resolve(None)
    .unwrap();
    ControllerOptions {
        settings,
        data_dir: None,
        metrics: support::apiserver::scripted_metrics(|_| "m"),
        leader_election: None,
        instance: "test".into(),
    }
}

/// A model with one VA, its Deployment and two pods, decided once.
async fn running_model(api: &FakeApi) -> Running {
    wva::telemetry::init(
        Some("info,kube_client=debug"),
        wva::telemetry::LogFormat::Json,
    );
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    api.apply(POD, pod(NS, "dep", 1));
    let running = start(api.client(), options()).await.unwrap();
    assert!(running.synced(T).await, "watches did not sync");
    running.cycle_now().await;
    running
}

fn counter(running: &Running, name: &str, label: &str) -> f64 {
    let text = running.ops.text();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_rt::test]
async fn the_process_exits_with_an_error_when_the_control_loop_dies() {
    let api = FakeApi::new();
    let running = running_model(&api).await;
    assert!(running.kill_task("control-loop"));
    let code = tokio::time::timeout(T, wva::cli::run::run_until_stopped(running))
        .await
        .expect("the process ends");
    assert_eq!(code, ExitCode::from(1));
}

#[actix_rt::test]
async fn the_process_exits_with_an_error_when_a_server_dies() {
    let api = FakeApi::new();
    let mut running = running_model(&api).await;
    running.spawn_critical("probe-server", async {
        panic!("the server's accept loop broke");
    });
    let code = tokio::time::timeout(T, wva::cli::run::run_until_stopped(running))
        .await
        .expect("the process ends");
    assert_eq!(code, ExitCode::from(1));
}

#[actix_rt::test]
async fn a_dead_status_writer_is_restarted_and_counted_and_writes_again() {
    let api = FakeApi::new();
    let running = running_model(&api).await;
    eventually("a first status", T, || {
        api.statuses(NS, "va").last().cloned()
    })
    .await;
    assert!(running.kill_task("status-writer"));
    eventually("the restart counted", T, || {
        (counter(&running, "wva_task_restarts_total", "status-writer") == 1.0).then_some(())
    })
    .await;
    // The next decision is written by the restarted task.
    let before = api.statuses(NS, "va").len();
    api.apply(DEPLOYMENT, deployment(NS, "dep", 3, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.cycle_now().await;
    eventually("a status after the restart", T, || {
        (api.statuses(NS, "va").len() > before).then_some(())
    })
    .await;
    running.shutdown().await;
}

#[actix_rt::test]
async fn status_writes_through_api_server_errors_are_counted_and_nothing_panics() {
    let api = FakeApi::new();
    let mut running = running_model(&api).await;
    eventually("a first status", T, || {
        api.statuses(NS, "va").last().cloned()
    })
    .await;
    // Every status write now fails slowly; cycles go on under their spans.
    api.fail_status_writes(500, Duration::from_millis(30));
    for replicas in [3, 2, 3, 2] {
        api.apply(
            DEPLOYMENT,
            deployment(NS, "dep", replicas, json!({}), json!({})),
        );
        running.cycle_now().await;
        // Each failing write takes 30 ms; a newer status replaces one still queued.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("failed writes counted", T, || {
        (counter(&running, "wva_status_writes_total", "result=\"error\"") >= 3.0).then_some(())
    })
    .await;
    assert_eq!(
        counter(&running, "wva_task_restarts_total", ""),
        0.0,
        "no task died"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), running.critical())
            .await
            .is_err(),
        "every critical task still runs"
    );
    // The API server recovers: statuses are written again.
    api.heal_status_writes();
    let before = api.statuses(NS, "va").len();
    running.cycle_now().await;
    eventually("a status after the recovery", T, || {
        (api.statuses(NS, "va").len() > before).then_some(())
    })
    .await;
    assert!(counter(&running, "wva_status_writes_total", "result=\"ok\"") >= 2.0);
    running.shutdown().await;
}
