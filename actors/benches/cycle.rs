//! Cost of the decision cycle and of the decision log at scale.
//!
//! `cargo bench -p wva-actors --bench cycle` reports:
//! - `cycle/N`: one full cycle (fan-out of one snapshot, policy, log append on sled, flush,
//!   publish) for N variants, half the models having two variants, the log's housekeeping of the
//!   previous cycle done (with `WVA_BENCH_BACK_TO_BACK` set, cycles overlap it);
//! - `log/append`: appends of a typical two-variant record to sled;
//! - `log/recover_last_good/10000`: opening the log and loading the last-good index of 10,000
//!   variants, as a restarting controller does;
//! - resident memory with 10,000 variants managed, over 90 cycles, in a process of its own
//!   (printed before the timings).
//!
//! With `WVA_BENCH_POOL_SHARE=0.6` the fleet shares a pool of accelerators at that share of what
//! its replicas hold, so every cycle also fits every model's counts into it (scarcity).

use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use wva_actors::messages::*;
use wva_actors::policy::{
    OperatingMode, ReplicaSignals, Thresholds, VariantInput, decide_capacity,
};
use wva_actors::publisher::PublisherConfig;
use wva_actors::record::{CycleFacts, cycle_record};
use wva_actors::registry::{Registry, Tick};
use wva_actors::system::SystemConfig;
use wva_actors::telemetry::Telemetry;
use wva_storage::{DecisionLog, Record, Retention, SledLog};

#[path = "support/fleet.rs"]
mod fleet;

/// The allocator the `wva` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A registry with `n` variants on a sled log in `dir`.
async fn populated(
    n: usize,
    dir: &std::path::Path,
) -> (
    Addr<Registry>,
    Addr<wva_actors::log_actor::LogActor>,
    Vec<(ModelKey, Vec<VariantSpec>)>,
) {
    let log: Box<dyn DecisionLog> = if std::env::var_os("WVA_BENCH_MEMORY_LOG").is_some() {
        Box::new(wva_storage::MemoryLog::in_memory(Retention::default()))
    } else {
        Box::new(
            SledLog::open(dir, Retention::default(), 0)
                .expect("open log")
                .0,
        )
    };
    let actors = wva_actors::system::start(SystemConfig {
        log,
        publisher: PublisherConfig::default(),
        status: None,
        settings: PolicySettings::default(),
        telemetry: Telemetry::unregistered().expect("telemetry"),
        model_threads: wva_actors::system::available_model_threads(),
        authority: wva_actors::authority::Authority::unconditional(),
    })
    .expect("actor system");
    let (registry, log) = (actors.registry, actors.log);
    let layout = fleet::layout(n);
    fleet::populate(&registry, &layout).await;
    if let Some(share) = std::env::var("WVA_BENCH_POOL_SHARE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        // Every replica holds one accelerator; the fleet's Deployments have two each.
        let mut held: std::collections::BTreeMap<String, u32> = Default::default();
        for s in layout.iter().flat_map(|(_, specs)| specs) {
            *held.entry(s.accelerator.clone()).or_insert(0) += 2;
        }
        let gpus = held
            .into_iter()
            .map(|(acc, n)| (acc, (f64::from(n) * share) as u32))
            .collect();
        registry
            .send(wva_actors::registry::SetPool(Some(
                wva_actors::policy::scarcity::Pool {
                    gpus,
                    ..Default::default()
                },
            )))
            .await
            .expect("pool");
    }
    (registry, log, layout)
}

fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the log's directory, to be removed once the process is done with it: the log's
/// threads outlive this function's actor system.
fn report_memory() -> tempfile::TempDir {
    let before = resident_kib().unwrap_or(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let sys = System::new();
    let cycles: i64 = std::env::var("WVA_MEMORY_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10 + 2 * i64::from(wva_storage::DEFAULT_JOURNAL_SLOTS));
    let (samples, logged) = sys.block_on(async {
        let (registry, log, layout) = populated(10_000, dir.path()).await;
        let mut samples = Vec::new();
        for phase in 0..cycles {
            registry
                .send(Tick {
                    now: Timestamp(15_000 * (phase + 1)),
                    metrics: fleet::snapshot(&layout, phase as usize),
                })
                .await
                .expect("tick");
            if (phase + 1) % 15 == 0 || phase + 1 == 5 || phase + 1 == cycles {
                samples.push((phase + 1, resident_kib().unwrap_or(0)));
            }
        }
        let logged = log
            .send(wva_actors::log_actor::Stats)
            .await
            .ok()
            .and_then(Result::ok)
            .map_or(0, |s| s.bytes);
        (samples, logged)
    });
    for (cycles, kib) in samples {
        println!(
            "memory: resident {:.1} MiB with 10000 variants after {cycles} cycles (process before setup: {:.1} MiB)",
            kib as f64 / 1024.0,
            before as f64 / 1024.0
        );
    }
    println!(
        "log: {:.1} MiB counted after {cycles} cycles of 10000 variants",
        logged as f64 / (1024.0 * 1024.0)
    );
    dir
}

fn bench_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("cycle");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    // The logs' directories outlive the loop: each system's log threads outlive its turn.
    let mut dirs = Vec::new();
    let back_to_back = std::env::var_os("WVA_BENCH_BACK_TO_BACK").is_some();
    for n in [1_000usize, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = System::new();
        let (registry, log, layout) = sys.block_on(populated(n, dir.path()));
        let snapshots: Vec<Metrics> = (0..5).map(|p| fleet::snapshot(&layout, p)).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut tick = 0i64;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    tick += 1;
                    let metrics = snapshots[tick as usize % snapshots.len()].clone();
                    let start = Instant::now();
                    sys.block_on(registry.send(Tick {
                        now: Timestamp(tick * 15_000),
                        metrics,
                    }))
                    .expect("tick");
                    elapsed += start.elapsed();
                    // The log's housekeeping after the cycle (sealing a journal slot, retention)
                    // ends before the next one starts, as it does between cycles seconds apart;
                    // it is not the cycle's time. `WVA_BENCH_BACK_TO_BACK` times cycles that
                    // overlap it instead.
                    if !back_to_back {
                        let _ = sys.block_on(log.send(wva_actors::log_actor::Stats));
                    }
                }
                elapsed
            });
        });
        dirs.push(dir);
    }
    group.finish();
}

fn typical_record(i: u64) -> Record {
    // The first model of a three-variant layout has two variants.
    let layout = fleet::layout(3);
    let (model, specs) = &layout[0];
    let inputs: Vec<VariantInput> = specs
        .iter()
        .map(|s| VariantInput {
            name: s.key.name.clone(),
            cost: s.cost,
            accelerator: s.accelerator.clone(),
            current_replicas: 2,
            ready_replicas: 2,
            previous_desired: Some(2),
            replicas: (0..2)
                .map(|p| ReplicaSignals {
                    pod: format!("{}-{p}", s.deployment),
                    kv_cache_usage: Some(0.5),
                    queue_length: Some(1.0),
                })
                .collect(),
        })
        .collect();
    let decision = decide_capacity(&Thresholds::default(), &inputs);
    Record::Cycle(cycle_record(CycleFacts {
        model,
        at: Timestamp(i as i64),
        mode: OperatingMode::CapacityOnly,
        config_version: "bench",
        thresholds: Thresholds::default(),
        metrics_error: None,
        inputs: &inputs,
        decision: &decision,
        trigger: "tick",
    }))
}

fn bench_log(c: &mut Criterion) {
    let mut group = c.benchmark_group("log");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) =
        SledLog::open(&dir.path().join("append"), Retention::default(), 0).expect("open");
    let record = typical_record(1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("append", |b| {
        b.iter(|| log.append(&record).expect("append"))
    });
    drop(log);

    // A log whose last-good index holds 10,000 variants (5,000 two-variant models).
    let path = dir.path().join("recover");
    {
        let (mut log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
        for i in 0..5_000u64 {
            let Record::Cycle(mut c) = typical_record(i) else {
                unreachable!("typical_record builds cycle records")
            };
            c.model = ModelKey::new("ns", format!("model-{i}"));
            for t in &mut c.targets {
                t.name = format!("{}-{i}", t.name);
            }
            log.append(&Record::Cycle(c)).expect("append");
        }
        log.flush().expect("flush");
        assert_eq!(log.last_good().expect("lg").len(), 10_000);
    }
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("recover_last_good", 10_000), |b| {
        b.iter(|| {
            let (log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
            let lg = log.last_good().expect("last good");
            assert_eq!(lg.len(), 10_000);
            lg
        })
    });
    group.finish();
}

criterion_group!(benches, bench_cycle, bench_log);

fn main() {
    // Memory is measured in a process of its own, so that nothing the timed cycles left behind
    // counts.
    if std::env::args().any(|a| a == "--memory-only") {
        let _log = report_memory();
        return;
    }
    if let Ok(exe) = std::env::current_exe()
        && let Ok(out) = std::process::Command::new(exe)
            .arg("--memory-only")
            .output()
    {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
