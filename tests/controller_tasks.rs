//! What the `wva run` process does when one of its tasks dies, and status writes through an API
//! server that fails: against the scripted API server, with the production log subscriber
//! installed (its spans are what once made the status writer panic).
#![allow(clippy::unwrap_used)]

mod support;

use std::process::ExitCode;
use std::time::Duration;

use futures_util::FutureExt;
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
        shards: 1,
        instance: "test".into(),
        shadow: false,
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
    cycles_until("a status after the restart", &running, || {
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
        running.statuses_settled().await;
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
        running.critical().now_or_never().is_none(),
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

/// Issue 19: a VA whose status says the same thing cycle after cycle is not rewritten every
/// cycle (each write is API-server quota shared with the Lease), yet a change is written at once.
#[actix_rt::test]
async fn a_steady_status_is_written_once_and_a_change_at_once() {
    let api = FakeApi::new();
    let running = running_model(&api).await;
    eventually("a first status", T, || {
        api.statuses(NS, "va").last().cloned()
    })
    .await;
    // Let the first decisions settle (the first cycles' statuses all sent).
    running.cycle_now().await;
    running.statuses_settled().await;
    let settled = api.statuses(NS, "va").len();
    for _ in 0..6 {
        running.cycle_now().await;
    }
    // Everything the six cycles queued has been sent: none of it was a status.
    running.statuses_settled().await;
    assert_eq!(
        api.statuses(NS, "va").len(),
        settled,
        "six cycles with nothing new wrote no status"
    );
    assert!(counter(&running, "wva_status_writes_total", "result=\"unchanged\"") >= 6.0);

    // Something changes: written on the first decision that sees it.
    api.apply(DEPLOYMENT, deployment(NS, "dep", 3, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 2));
    let changed = cycles_until("the changed status", &running, || {
        api.statuses(NS, "va")
            .last()
            .filter(|s| s["status"]["currentAlloc"]["numReplicas"] == 3)
            .cloned()
    })
    .await;
    assert!(
        changed["status"]["desiredOptimizedAlloc"]["lastRunTime"].is_string(),
        "{changed}"
    );
    running.shutdown().await;
}

/// Runs cycles, each with its statuses sent, until `found` finds what it looks for (at most 200
/// cycles or [`T`]): a change made through the API server reaches a decision once its watch
/// event is in, which no fixed sleep can promise.
async fn cycles_until<R>(what: &str, running: &Running, mut found: impl FnMut() -> Option<R>) -> R {
    let start = std::time::Instant::now();
    for _ in 0..200 {
        running.cycle_now().await;
        running.statuses_settled().await;
        if let Some(r) = found() {
            return r;
        }
        if start.elapsed() > T {
            break;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what}: not seen within {T:?}");
}

/// CONTRACT section 19: a model whose supervisor panics loses its cycle, its VA gets a Warning
/// Event, the fault and the panic are counted, the process goes on (no critical task ends), and
/// the model is decided again by a fresh supervisor.
#[actix_rt::test]
async fn a_panicking_model_is_warned_counted_and_decided_again_while_the_process_goes_on() {
    let api = FakeApi::new();
    let mut running = running_model(&api).await;
    let panics_before = wva::controller::ops::panics_counted();
    let model = wva_actors::messages::ModelKey::new(NS, "m");
    running
        .registry
        .send(wva_actors::registry::CrashForTest(Some(model)))
        .await
        .unwrap();
    running.cycle_now().await;
    running.statuses_settled().await;
    let warned = api
        .events_about("va")
        .into_iter()
        .find(|(t, r, _)| t == "Warning" && r == "DecisionFailed");
    let (_, _, note) = warned.expect("a DecisionFailed Warning on the VA");
    assert!(note.contains("last good"), "{note}");
    assert_eq!(
        counter(&running, "wva_model_faults_total", "fault=\"panicked\""),
        1.0
    );
    assert!(wva::controller::ops::panics_counted() > panics_before);
    assert!(counter(&running, "wva_panics_total", "") >= 1.0);
    assert!(
        running.critical().now_or_never().is_none(),
        "every critical task still runs"
    );
    // The fresh supervisor decides the model: its series is published on the next cycle.
    let decided_before = running.health.borrow().cycles;
    running.cycle_now().await;
    assert_eq!(running.health.borrow().cycles, decided_before + 1);
    let page = running
        .publisher
        .send(wva_actors::publisher::Gather)
        .await
        .unwrap();
    assert!(page.contains("variant_name=\"va\""), "{page}");
    running.shutdown().await;
}

/// CONTRACT section 19: the registry (a part every model shares) gone ends the process with an
/// error, and a cycle that could not be decided is not counted as one in `/readyz`.
#[actix_rt::test]
async fn the_process_exits_with_an_error_when_the_registry_dies() {
    let api = FakeApi::new();
    let running = running_model(&api).await;
    let cycles = running.health.borrow().cycles;
    assert!(cycles >= 1);
    let crashed = running
        .registry
        .send(wva_actors::registry::CrashForTest(None))
        .await;
    assert!(crashed.is_err(), "the registry is gone");
    running.cycle_now().await;
    assert_eq!(
        running.health.borrow().cycles,
        cycles,
        "a cycle the registry never decided is not counted"
    );
    let code = tokio::time::timeout(T, wva::cli::run::run_until_stopped(running))
        .await
        .expect("the process ends");
    assert_eq!(code, ExitCode::from(1));
}

/// Waits until the controller manages `n` variants; returns how long that took.
async fn variants_become(running: &Running, n: usize, limit: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let counts = running
            .registry
            .send(wva_actors::registry::Counts)
            .await
            .unwrap();
        if counts.variants == n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{} variants after {limit:?}, wanted {n}",
            counts.variants
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CONTRACT (issue 16): after an API-server outage, objects created and deleted meanwhile are
/// seen within seconds of its return, and readiness says the controller is degraded while it
/// lasts.
#[actix_rt::test]
async fn back_within_seconds_after_an_api_server_outage() {
    let api = FakeApi::new();
    let running = running_model(&api).await;
    variants_become(&running, 1, T).await;

    api.set_down(true);
    let unreachable = tokio::time::timeout(T, async {
        let mut health = running.health.clone();
        health
            .wait_for(|h| h.api_unreachable_since.is_some())
            .await
            .map(|h| h.summary())
    })
    .await
    .expect("readiness says the API server is unreachable")
    .unwrap();
    assert!(unreachable.0, "still ready: the published decisions stay");
    assert!(
        unreachable
            .1
            .starts_with("ready, degraded: API server unreachable since "),
        "{}",
        unreachable.1
    );
    // 20 s down (the watches back off meanwhile, never beyond RETRY_MAX), and the cluster
    // changes under it: a new model arrives, the old one goes.
    tokio::time::sleep(Duration::from_secs(20)).await;
    api.apply(VA, va(NS, "va-new", "m2", Some("dep-new"), json!({})));
    api.apply(
        DEPLOYMENT,
        deployment(NS, "dep-new", 1, json!({}), json!({})),
    );
    api.delete(VA, NS, "va");
    api.set_down(false);
    let start = std::time::Instant::now();
    let limit = Duration::from_secs(30);
    loop {
        running.cycle_now().await;
        let seen = running.health.borrow().api_unreachable_since.is_none();
        let text = running
            .publisher
            .send(wva_actors::publisher::Gather)
            .await
            .unwrap();
        if seen && text.contains("variant_name=\"va-new\"") && !text.contains("variant_name=\"va\"")
        {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "not recovered after {limit:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = start.elapsed();
    eprintln!("recovery after a 20 s API-server outage: {recovered:?}");
    assert_eq!(running.health.borrow().summary().1, "ready");
    running.shutdown().await;
}

/// A watch whose resource version expired (410, as the answer to the watch request or as an
/// event on an open watch) lists again at once, and a watch stream that ends is resumed.
#[actix_rt::test]
async fn expired_and_ended_watches_relist_at_once() {
    let api = FakeApi::new();
    let running = running_model(&api).await;
    variants_become(&running, 1, T).await;
    // A storm of 410s: every watch expires, then the next twenty watch requests are refused.
    api.expire_next_watches(20);
    api.expire_open_watches();
    api.apply(VA, va(NS, "va-2", "m", Some("dep"), json!({})));
    let took = variants_become(&running, 2, Duration::from_secs(30)).await;
    eprintln!("new VA seen through a 410 storm after {took:?}");
    // Streams that just end are resumed.
    api.end_open_watches();
    api.delete(VA, NS, "va-2");
    let took = variants_become(&running, 1, Duration::from_secs(30)).await;
    eprintln!("deletion seen after the watch streams ended: {took:?}");
    let relists = counter(&running, "wva_watch_errors_total", "variantautoscalings");
    assert!(relists >= 1.0, "the expiries are counted");
    running.shutdown().await;
}

/// A data directory that cannot be used (here a file where a directory should be; the same
/// path as a read-only volume): the controller decides and publishes on an in-memory log, and
/// readiness says so.
#[actix_rt::test]
async fn an_unusable_data_directory_keeps_the_controller_deciding_and_says_so() {
    let api = FakeApi::new();
    api.apply(VA, va(NS, "va", "m", Some("dep"), json!({})));
    api.apply(DEPLOYMENT, deployment(NS, "dep", 2, json!({}), json!({})));
    api.apply(POD, pod(NS, "dep", 0));
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("data");
    std::fs::write(&not_a_dir, "a file").unwrap();
    let mut opts = options();
    opts.data_dir = Some(not_a_dir.clone());
    let running = start(api.client(), opts).await.unwrap();
    assert!(running.synced(T).await, "watches did not sync");
    running.cycle_now().await;
    let text = running
        .publisher
        .send(wva_actors::publisher::Gather)
        .await
        .unwrap();
    assert!(text.contains("variant_name=\"va\""), "{text}");
    let (ready, summary) = running.health.borrow().summary();
    assert!(ready);
    assert!(
        summary.starts_with("ready, degraded: the decision log cannot be opened"),
        "{summary}"
    );
    // The path and the error are for the log, not for whoever reaches the probe port.
    assert!(
        !summary.contains(&not_a_dir.display().to_string()),
        "{summary}"
    );
    assert!(
        running
            .health
            .borrow()
            .decision_log_problem
            .as_deref()
            .is_some_and(|p| p.contains(&not_a_dir.display().to_string()))
    );
    running.shutdown().await;
}
