//! A soak: the controller (actors, sled decision log, status writer, watches) against the
//! scripted API server for a fixed time, with 1,000 VAs, churn and periodic faults. It reports
//! memory and file-descriptor growth, cycle-time percentiles, decisions logged, and every
//! variant whose published desired count disagrees with the last decision in its log.
//!
//! `cargo bench --bench soak` runs 3 minutes; `WVA_SOAK_SECONDS=3600 cargo bench --bench soak`
//! runs an hour (`WVA_SOAK_VARIANTS` sets the VA count). Faults, each on its own period: the
//! API server goes down for 3 s (every 40 s), every watch expires with 410 (every 25 s), and
//! one Prometheus read in 17 fails (the safety net decides that cycle). Churn: every cycle,
//! 4 VAs and their Deployments are deleted and 4 new ones created.

#[path = "../tests/support/apiserver.rs"]
mod apiserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The allocator the `wva` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use apiserver::{DEPLOYMENT, FakeApi, POD, VA, deployment, pod, va};
use serde_json::json;
use wva::config::settings::SettingsArgs;
use wva::controller::{ControllerOptions, MetricsSource, start};
use wva_actors::messages::{Metrics, MetricsSnapshot, ModelKey, PodSample};
use wva_actors::publisher::Gather;
use wva_storage::{DecisionLog, HistoryFilter, Record};

const NS: &str = "llm";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Signals that move with time (a slow wave per model), and one read in 17 that fails.
fn metrics() -> MetricsSource {
    let reads = Arc::new(AtomicU64::new(0));
    Arc::new(move |_plan, pods| {
        let n = reads.fetch_add(1, Ordering::Relaxed);
        let mut snapshot = MetricsSnapshot::default();
        for ((ns, pod), deployment) in pods {
            let i: u64 = deployment.trim_start_matches("dep-").parse().unwrap_or(0);
            let phase = (n as f64 / 8.0 + i as f64).sin();
            snapshot
                .by_model
                .entry(ModelKey::new(ns, format!("m-{}", i / 2)))
                .or_default()
                .push(PodSample {
                    pod,
                    deployment,
                    kv_cache_usage: Some(0.5 + 0.35 * phase),
                    queue_length: Some((3.0 + 3.0 * phase).max(0.0)),
                    running: Some(20.0),
                    serving: None,
                });
        }
        let metrics = if n % 17 == 16 {
            Metrics::Failed("injected: Prometheus unreachable".into())
        } else {
            Metrics::Read(Arc::new(snapshot))
        };
        Box::pin(async move {
            wva::poller::PollReport {
                metrics,
                kv_sources: Vec::new(),
                warnings: Vec::new(),
                failures: Vec::new(),
            }
        })
    })
}

fn add_variant(api: &FakeApi, i: u64) {
    let (name, dep) = (format!("va-{i}"), format!("dep-{i}"));
    api.apply(DEPLOYMENT, deployment(NS, &dep, 2, json!({}), json!({})));
    for k in 0..2 {
        api.apply(POD, pod(NS, &dep, k));
    }
    api.apply(
        VA,
        va(NS, &name, &format!("m-{}", i / 2), Some(&dep), json!({})),
    );
}

fn remove_variant(api: &FakeApi, i: u64) {
    api.delete(VA, NS, &format!("va-{i}"));
    api.delete(DEPLOYMENT, NS, &format!("dep-{i}"));
    // The pods go with their Deployment, as the garbage collector takes them.
    for k in 0..2 {
        let name = pod(NS, &format!("dep-{i}"), k)["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        api.delete(POD, NS, &name);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

/// The desired count of every published variant.
fn published(page: &str) -> BTreeMap<String, u32> {
    page.lines()
        .filter(|l| l.starts_with("inferno_desired_replicas{"))
        .filter_map(|l| {
            let name = l.split("variant_name=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((name.to_string(), value))
        })
        .collect()
}

async fn soak(seconds: u64, variants: u64) {
    wva::tls::install_default_provider();
    let api = FakeApi::new();
    api.quiet();
    for i in 0..variants {
        add_variant(&api, i);
    }
    let data = tempfile::tempdir().expect("tempdir");
    let settings = SettingsArgs {
        scaling_analyzer: Some("saturation-v1".into()),
        prometheus_base_url: Some("http://127.0.0.1:1".into()),
        prometheus_allow_http: Some(true),
        pod_namespace: Some("wva-system".into()),
        reconciliation_interval: Some("1h".into()),
        ..Default::default()
    }
    .resolve(None)
    .expect("settings");
    let running = start(
        api.client(),
        ControllerOptions {
            settings,
            data_dir: Some(data.path().join("log")),
            metrics: metrics(),
            leader_election: None,
            shards: 1,
            instance: "soak".into(),
            shadow: false,
        },
    )
    .await
    .expect("controller");
    assert!(running.synced(Duration::from_secs(120)).await, "no sync");
    running.cycle_now().await;
    let (rss_start, fds_start) = (rss_kib(), open_fds());
    let mut rss_peak = rss_start;
    let mut cycle_times = Vec::new();
    let mut next = variants;
    let mut oldest = 0;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let (mut last_outage, mut last_expiry) = (Instant::now(), Instant::now());
    let mut outages = 0;
    while Instant::now() < deadline {
        // Churn: the oldest VAs go, new ones come.
        for _ in 0..4 {
            remove_variant(&api, oldest);
            oldest += 1;
            add_variant(&api, next);
            next += 1;
        }
        if last_outage.elapsed() > Duration::from_secs(40) {
            api.set_down(true);
            tokio::time::sleep(Duration::from_secs(3)).await;
            api.set_down(false);
            last_outage = Instant::now();
            outages += 1;
        }
        if last_expiry.elapsed() > Duration::from_secs(25) {
            api.expire_open_watches();
            last_expiry = Instant::now();
        }
        let t = Instant::now();
        running.cycle_now().await;
        cycle_times.push(t.elapsed());
        rss_peak = rss_peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the watches settle on the final objects, then decide once more.
    tokio::time::sleep(Duration::from_secs(6)).await;
    running.cycle_now().await;
    let page = running.publisher.send(Gather).await.expect("gather");
    let (rss_end, fds_end) = (rss_kib(), open_fds());
    let ops = running.ops.text();
    running.shutdown().await;

    // The last decision of every variant, from the log, against what was published.
    let log = wva_storage::datadir::open_for_reading(&data.path().join("log")).expect("log");
    let history =
        wva_actors::compact::read_history(&log.log, &HistoryFilter::default()).expect("history");
    let mut last: BTreeMap<String, u32> = BTreeMap::new();
    let mut cycles_logged = 0;
    for (_, record) in &history.records {
        if let Record::Cycle(c) = record {
            cycles_logged += 1;
            for t in &c.targets {
                last.insert(t.name.clone(), t.target);
            }
        }
    }
    let shown = published(&page);
    let live: Vec<String> = (oldest..next).map(|i| format!("va-{i}")).collect();
    let disagree: Vec<&String> = live
        .iter()
        .filter(|name| shown.get(*name) != last.get(*name) || !shown.contains_key(*name))
        .collect();
    let stale: Vec<&String> = shown.keys().filter(|n| !live.contains(n)).collect();
    cycle_times.sort();
    let counter = |name: &str| -> f64 {
        ops.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    println!(
        "soak: {seconds} s, {variants} VAs ({} created and deleted), {outages} API-server outages of 3 s, a 410 on every watch every 25 s, 1 read in 17 failing",
        next - variants
    );
    println!(
        "cycles: {} | cycle time p50 {:?} p90 {:?} p99 {:?} max {:?}",
        cycle_times.len(),
        percentile(&cycle_times, 0.5),
        percentile(&cycle_times, 0.9),
        percentile(&cycle_times, 0.99),
        cycle_times.last().copied().unwrap_or_default()
    );
    println!(
        "memory: {} MiB at start, {} MiB at the end, {} MiB peak | file descriptors: {fds_start} -> {fds_end}",
        rss_start / 1024,
        rss_end / 1024,
        rss_peak / 1024
    );
    println!(
        "decision log: {cycles_logged} cycle records kept ({} records, {} bytes), {} undecodable | watch errors {} | status writes ok {}",
        history.records.len(),
        log.log.stats().bytes,
        history.undecodable,
        counter("wva_watch_errors_total"),
        counter("wva_status_writes_total{result=\"ok\"}"),
    );
    println!(
        "published vs last logged decision: {} of {} live variants disagree {:?}; {} series of deleted variants remain {:?}",
        disagree.len(),
        live.len(),
        disagree.iter().take(5).collect::<Vec<_>>(),
        stale.len(),
        stale.iter().take(5).collect::<Vec<_>>()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let seconds = env_number("WVA_SOAK_SECONDS", 180);
    let variants = env_number("WVA_SOAK_VARIANTS", 1000);
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    });
    system.block_on(soak(seconds, variants));
}
