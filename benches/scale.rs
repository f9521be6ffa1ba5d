//! The controller at fleet scale, as one replica of a sharded set sees it: for fleets of 1,000,
//! 10,000 and 50,000 variants (half the models with two variants, two pods each) spread over 1,
//! 2, 4 and 8 shards, it runs one replica's share (the models of shard 0) through full cycles on
//! the actors with a sled decision log, and reports per configuration:
//!
//! - the cycle time of the share (median and 90th percentile of 10 cycles after 3 warm-ups);
//! - resident memory of the process holding the share;
//! - decision-log bytes per cycle, and per variant per day at a 15 s interval, in steady state
//!   (measured over a round of journal slots, after one), as the log counts them and on disk;
//! - what Prometheus sends every replica per cycle: the answer to one batched signal query has one
//!   series per pod of the whole fleet (the queries are per signal, not per model or shard), its
//!   size and the time to read it.
//!
//! `cargo bench --bench scale` runs them all (each configuration in a fresh process, so memory is
//! its own, started with the allocator's environment as the image sets it:
//! [`wva::allocator::ENVIRONMENT`]); `WVA_SCALE_FLEETS=1000,10000` and `WVA_SCALE_SHARDS=1,4`
//! choose a subset.

use std::process::Command;
use std::time::Instant;

use actix::prelude::*;
use wva_actors::messages::*;
use wva_actors::publisher::PublisherConfig;
use wva_actors::registry::{Registry, Tick};
use wva_actors::shards::shard_of;
use wva_actors::system::SystemConfig;
use wva_actors::telemetry::Telemetry;
use wva_storage::{Retention, SledLog};

#[path = "../actors/benches/support/fleet.rs"]
mod fleet;

/// The allocator the `wva` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INTERVAL_S: f64 = 15.0;

fn list(var: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// What Prometheus answers one batched signal query with for the whole fleet: one series per
/// pod, labelled as the controller's queries group them.
fn prometheus_answer(fleet: &[(ModelKey, Vec<VariantSpec>)]) -> Vec<u8> {
    let result: Vec<serde_json::Value> = fleet
        .iter()
        .flat_map(|(model, specs)| {
            specs.iter().flat_map(move |s| {
                (0..2).map(move |p| {
                    serde_json::json!({
                        "metric": {"namespace": model.namespace, "model_name": model.model_id, "pod": format!("{}-{p}", s.deployment)},
                        "value": [1_767_225_600.0, "0.4375"],
                    })
                })
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "status": "success",
        "data": {"resultType": "vector", "result": result},
    }))
    .expect("answer")
}

/// One configuration, in this process: prints one line of JSON.
fn run_one(variants: usize, shards: u32) {
    let all = fleet::layout(variants);
    let share: Vec<_> = all
        .iter()
        .filter(|(m, _)| shard_of(m, shards) == 0)
        .cloned()
        .collect();
    let share_variants: usize = share.iter().map(|(_, s)| s.len()).sum();
    let dir = tempfile::tempdir().expect("tempdir");
    let sys = System::new();
    let (registry, log) = sys.block_on(async {
        let (log, _) = SledLog::open(dir.path(), Retention::default(), 0).expect("log");
        let actors = wva_actors::system::start(SystemConfig {
            log: Box::new(log),
            publisher: PublisherConfig::default(),
            status: None,
            settings: PolicySettings::default(),
            telemetry: Telemetry::unregistered().expect("telemetry"),
            model_threads: wva_actors::system::available_model_threads(),
            authority: wva_actors::authority::Authority::unconditional(),
        })
        .expect("actors");
        let registry: Addr<Registry> = actors.registry.clone();
        fleet::populate(&registry, &share).await;
        (registry, actors.log)
    });
    let stats = |sys: &SystemRunner| {
        sys.block_on(log.send(wva_actors::log_actor::Stats))
            .ok()
            .and_then(Result::ok)
            .map_or(0, |s| s.bytes)
    };
    let tick = |sys: &SystemRunner, tick: i64| {
        // One snapshot per cycle, built as the controller's read builds it (holding several
        // would count the bench's memory as the controller's); five phases of load in turn.
        let metrics = fleet::snapshot(&share, tick as usize % 5);
        let started = Instant::now();
        sys.block_on(registry.send(Tick {
            now: Timestamp(tick * 15_000),
            metrics,
        }))
        .expect("tick");
        let elapsed = started.elapsed();
        // The log's housekeeping after the cycle ends before the next one, as it does between
        // cycles seconds apart (the cycle bench explains).
        let _ = sys.block_on(log.send(wva_actors::log_actor::Stats));
        elapsed
    };
    // Cycle time: 10 cycles after 3 warm-ups.
    let times: Vec<_> = (1..=13i64)
        .map(|t| (t, tick(&sys, t)))
        .filter(|(t, _)| *t > 3)
        .map(|(_, d)| d)
        .collect();
    let mut times = times;
    // Log bytes in steady state: once a round of journal slots has passed (every model sealed
    // once, the journal as full as it gets), the growth over the next round.
    let round = i64::from(wva_storage::DEFAULT_JOURNAL_SLOTS);
    let mut next = 14i64;
    while next < 14 + round {
        tick(&sys, next);
        next += 1;
    }
    let (bytes_before, disk_before) = (stats(&sys), dir_bytes(dir.path()));
    for t in next..next + round {
        tick(&sys, t);
    }
    let (bytes_after, disk_after) = (stats(&sys), dir_bytes(dir.path()));
    times.sort_unstable();
    let median = times[times.len() / 2];
    let p90 = times[times.len() * 9 / 10];
    let per_cycle = bytes_after.saturating_sub(bytes_before) as f64 / round as f64;
    let disk_per_cycle = disk_after.saturating_sub(disk_before) as f64 / round as f64;
    // Before the answer below is built: the share's memory, not the bench's.
    let rss = rss_mib();
    let answer = prometheus_answer(&all);
    let read_started = Instant::now();
    let samples = wva::prometheus_api::read_answer(200, &answer).expect("answer reads");
    let read = read_started.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "variants": variants,
            "shards": shards,
            "share": share_variants,
            "cycleMedianMs": median.as_secs_f64() * 1e3,
            "cycleP90Ms": p90.as_secs_f64() * 1e3,
            "rssMiB": rss,
            "logBytesPerCycle": per_cycle,
            "logBytesPerVariantDay": per_cycle / share_variants.max(1) as f64 * 86_400.0 / INTERVAL_S,
            "diskBytes": disk_after,
            "diskBytesPerVariantDay": disk_per_cycle / share_variants.max(1) as f64 * 86_400.0 / INTERVAL_S,
            "answerSeries": samples.len(),
            "answerBytes": answer.len(),
            "answerReadMs": read.as_secs_f64() * 1e3,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--one") {
        let variants = args[at + 1].parse().expect("variants");
        let shards = args[at + 2].parse().expect("shards");
        run_one(variants, shards);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let fleets = list("WVA_SCALE_FLEETS", &[1_000, 10_000, 50_000]);
    let shard_counts = list("WVA_SCALE_SHARDS", &[1, 2, 4, 8]);
    let exe = std::env::current_exe().expect("this bench");
    println!(
        "{:>8} {:>6} {:>7} {:>10} {:>10} {:>8} {:>11} {:>13} {:>14} {:>10} {:>9} {:>9}",
        "variants",
        "shards",
        "share",
        "cycle p50",
        "cycle p90",
        "RSS",
        "log/cycle",
        "log/var-day",
        "disk/var-day",
        "prom series",
        "answer",
        "read"
    );
    for &variants in &fleets {
        for &shards in &shard_counts {
            let out = Command::new(&exe)
                .args(["--one", &variants.to_string(), &shards.to_string()])
                // The allocator as the image sets it.
                .envs(wva::allocator::ENVIRONMENT)
                .output()
                .expect("a configuration runs");
            let line = String::from_utf8_lossy(&out.stdout);
            let Some(r) = line
                .lines()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            else {
                eprintln!(
                    "{variants} variants over {shards} shards failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            };
            let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
            println!(
                "{:>8} {:>6} {:>7} {:>8.1}ms {:>8.1}ms {:>5.0}MiB {:>9.1}KB {:>11.1}KB {:>12.1}KB {:>10} {:>7.1}MB {:>7.1}ms",
                variants,
                shards,
                f("share"),
                f("cycleMedianMs"),
                f("cycleP90Ms"),
                f("rssMiB"),
                f("logBytesPerCycle") / 1e3,
                f("logBytesPerVariantDay") / 1e3,
                f("diskBytesPerVariantDay") / 1e3,
                f("answerSeries"),
                f("answerBytes") / 1e6,
                f("answerReadMs"),
            );
        }
    }
}
