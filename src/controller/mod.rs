//! `wva run`: the controller against a real cluster. [`start`] wires it: the actors
//! (`wva_actors::system`), the status writer, the Lease, and the control loop that owns the
//! cluster view; [`Running`] is what the process holds while it runs. The process lives as long
//! as its critical tasks: when one ends, [`Running::critical`] says which, and `wva run` exits
//! with an error so that Kubernetes restarts it.

pub mod config_maps;
pub mod control_loop;
pub mod health;
pub mod http;
pub mod inventory;
pub mod leader;
pub mod lws;
pub mod ops;
pub mod owners;
pub mod pool;
pub mod rbac;
pub mod running;
pub mod scalers;
pub mod shards;
pub mod status;
pub mod status_writer;
pub mod targets;
pub mod tasks;
pub mod watches;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use kube::runtime::events::Reporter;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wva_actors::authority::Authority;
use wva_actors::publisher::PublisherConfig;
use wva_actors::system::SystemConfig;
use wva_storage::{DecisionLog, MemoryLog, Retention};

use crate::config::settings::Settings;
use crate::poller::{PodIndex, PollPlan, PollReport};
use crate::timefmt::wall_clock;
use config_maps::ConfigData;
use control_loop::ControlLoop;
use health::Health;
use inventory::Inventory;
use ops::Ops;
use owners::Scope;
pub use running::Running;
use status_writer::StatusWriter;
use tasks::Critical;

/// Where the cycle's metrics come from: Prometheus in production, a script in tests.
pub type MetricsSource =
    Arc<dyn Fn(PollPlan, PodIndex) -> BoxFuture<'static, PollReport> + Send + Sync>;

/// A metrics source reading a Prometheus.
pub fn prometheus_source(client: Arc<crate::prometheus_api::PrometheusClient>) -> MetricsSource {
    Arc::new(move |plan, pods| {
        let client = Arc::clone(&client);
        Box::pin(async move {
            let now_s = wall_clock().millis() as f64 / 1e3;
            crate::poller::poll(&client, &plan, &pods, now_s).await
        })
    })
}

/// What the controller runs with, besides the API client.
#[derive(Clone)]
pub struct ControllerOptions {
    pub settings: Settings,
    /// Decision log directory; in memory when absent (tests).
    pub data_dir: Option<PathBuf>,
    pub metrics: MetricsSource,
    /// Leader election: (Lease name, identity, timing). Always the leader when absent.
    pub leader_election: Option<(String, String, leader::LeaseTiming)>,
    /// Shards the models are spread over, each held through its own Lease (named after the
    /// leader election's); 1: one leader decides every model.
    pub shards: u32,
    /// Reporting instance in Events (the pod name).
    pub instance: String,
    /// A shadow instance: decides and logs like the main one, writes no status and no Event,
    /// and publishes only under [`SHADOW_PREFIX`], which no scaler reads.
    pub shadow: bool,
}

/// The series prefix of a shadow instance (`wva_shadow_desired_replicas`, ...).
pub const SHADOW_PREFIX: &str = "wva_shadow";

impl std::fmt::Debug for ControllerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerOptions")
            .field("settings", &self.settings.redacted())
            .field("data_dir", &self.data_dir)
            .field("leader_election", &self.leader_election)
            .field("shards", &self.shards)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Actors(#[from] wva_actors::system::StartError),
    #[error("cannot register the controller's health series: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("--shards {0}: shards are held through Leases; run with --leader-elect")]
    ShardsWithoutLeases(u32),
}

/// The decision log in `dir` (in memory without one), and why it is not the one asked for
/// when it cannot be opened.
fn open_log(dir: Option<&PathBuf>) -> (Box<dyn DecisionLog>, Option<String>) {
    let Some(dir) = dir else {
        return (Box::new(MemoryLog::in_memory(Retention::default())), None);
    };
    match wva_storage::datadir::open_for_writing(dir) {
        Ok((log, moved)) => {
            if let Some(moved) = moved {
                tracing::error!("{moved}; the safety net falls back to the VA statuses");
            }
            (Box::new(log), None)
        }
        Err(e) => {
            // Never stop the controller over its log: decide without history.
            tracing::error!(data_dir = %dir.display(), error = %e, "cannot open the decision log; running with an in-memory log (no restart recovery)");
            (
                Box::new(MemoryLog::in_memory(Retention::default())),
                Some(format!(
                    "cannot open the decision log in {}: {e}",
                    dir.display()
                )),
            )
        }
    }
}

/// Starts the controller. Must run inside an actix System on a tokio runtime.
pub async fn start(
    client: kube::Client,
    options: ControllerOptions,
) -> Result<Running, StartError> {
    let settings = options.settings.clone();
    if options.shards > 1 && options.leader_election.is_none() {
        return Err(StartError::ShardsWithoutLeases(options.shards));
    }
    let stop = CancellationToken::new();
    ops::count_panics();
    let ops = Ops::new(settings.reconciliation_interval.as_secs_f64())?;
    // The ConfigMaps arrive with their watch's initial list, before the first cycle can run
    // (the inventory is not ready until every initial list is in).
    let config = ConfigData::default();
    let built = config.policy(&settings);
    let (leader_tx, leader_rx) = watch::channel(options.leader_election.is_none());
    let (shards_tx, shards_rx) = watch::channel(wva_actors::shards::ShardFilter::all());
    let reporter = Reporter {
        controller: "wva-controller".into(),
        instance: Some(options.instance.clone()),
    };
    let mut critical = Critical::default();
    let writer_task = tasks::Current::default();
    critical.track("status-writer", std::sync::Arc::clone(&writer_task));
    // A shadow's writer never leads: it keeps its bookkeeping and writes nothing.
    let writes_allowed = if options.shadow {
        watch::channel(false).1
    } else {
        leader_rx.clone()
    };
    let writer = StatusWriter::start(
        client.clone(),
        reporter,
        writes_allowed,
        ops.clone(),
        stop.clone(),
        writer_task,
    );
    let (log, log_problem) = open_log(options.data_dir.as_ref());
    let actors = wva_actors::system::start(SystemConfig {
        log,
        publisher: PublisherConfig {
            prefix: if options.shadow {
                SHADOW_PREFIX.to_string()
            } else {
                settings.metrics_prefix.as_str().to_string()
            },
            controller_instance: settings.controller_instance.clone(),
        },
        status: (!options.shadow).then(|| writer.clone().recipient()),
        settings: built.policy.clone(),
        telemetry: ops.actors.clone(),
        model_threads: wva_actors::system::available_model_threads(),
        authority: Authority::new(leader_rx.clone(), shards_rx.clone()),
    })?;
    // The registry, the log and the publisher hold every model's state: when one is gone, the
    // process ends and restarts from the log rather than run on without it.
    let (lifeline, stopping) = (actors.lifeline.clone(), stop.clone());
    critical.spawn("actors", async move {
        tokio::select! {
            part = lifeline.first_lost() => tracing::error!(part, "a part every model shares is gone; the process ends so that it is restarted from the decision log"),
            () = stopping.cancelled() => {}
        }
    });
    if let Some(problem) = &actors.recovery_problem {
        tracing::error!(error = %problem, "cannot read the last good decisions; the safety net falls back to the VA statuses");
    }
    let mut inventory = Inventory::new(Scope {
        instance: settings.controller_instance.clone(),
        namespace: settings.watch_namespace.clone(),
    });
    let _ = inventory.set_costs(built.costs);
    let (health_tx, health) = watch::channel(Health {
        leader: *leader_rx.borrow(),
        shadow: options.shadow,
        decision_log_problem: log_problem,
        ..Default::default()
    });

    leader::elect(
        &client,
        &options,
        &settings.pod_namespace,
        (leader_tx, shards_tx),
        &stop,
        &mut critical,
    );
    let watches = watches::streams(
        &client,
        settings.watch_namespace.as_deref(),
        &settings.pod_namespace,
        settings.accelerator_pool,
    );
    let (commands, commands_rx) = mpsc::channel(16);
    let control = ControlLoop {
        settings,
        inventory,
        config,
        policy: built.policy,
        actors: actors.clone(),
        writer: writer.clone(),
        metrics: options.metrics,
        health: health_tx,
        leader: leader_rx.clone(),
        shards: shards_rx.clone(),
        ops: ops.clone(),
        absent: Default::default(),
        pool: Default::default(),
    };
    let loop_stop = stop.clone();
    critical.spawn("control-loop", async move {
        if let Err(ended) = control.run(watches, commands_rx, loop_stop).await {
            tracing::error!(error = %ended, "the control loop ended");
        }
    });
    Ok(Running {
        registry: actors.registry.clone(),
        publisher: actors.publisher.clone(),
        health,
        leader: leader_rx,
        shards: shards_rx,
        ops,
        actors,
        writer,
        commands,
        stop,
        critical,
    })
}
