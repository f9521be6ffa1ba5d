//! The actors of one autoscaler process, wired once for every caller: `wva run`, the simulator
//! and the tests start the decision log, the publisher and the registry through [`start`], so
//! they run the same system.

use actix::prelude::*;
use wva_storage::DecisionLog;

use crate::authority::Authority;
use crate::effects::Ports;
use crate::lifeline::Lifeline;
use crate::log_actor::LogActor;
use crate::messages::{PolicySettings, StatusBatch};
use crate::publisher::{Publisher, PublisherConfig};
use crate::registry::Registry;
use crate::telemetry::Telemetry;

/// What the system is started with.
pub struct SystemConfig {
    pub log: Box<dyn DecisionLog>,
    pub publisher: PublisherConfig,
    /// Where status updates go (the VA status writer); none in the simulator.
    pub status: Option<Recipient<StatusBatch>>,
    pub settings: PolicySettings,
    pub telemetry: Telemetry,
    /// Threads deciding models in parallel (see [`Registry::new`]); 1 keeps every actor on the
    /// caller's thread, as the simulator needs for its virtual clock.
    pub model_threads: usize,
    /// Leadership and held shards, checked as effects go out ([`Authority::unconditional`]
    /// for one instance without election).
    pub authority: Authority,
}

impl std::fmt::Debug for SystemConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemConfig")
            .field("publisher", &self.publisher)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The started actors.
#[derive(Debug, Clone)]
pub struct ActorSystem {
    pub registry: Addr<Registry>,
    pub publisher: Addr<Publisher>,
    /// The desired counts as published (KEDA's external scaler reads them).
    pub board: tokio::sync::watch::Receiver<crate::publisher::DesiredBoard>,
    pub log: Addr<LogActor>,
    /// Why the last good desired counts could not be read from the log, if they could not
    /// (the safety net then falls back to the VA statuses).
    pub recovery_problem: Option<String>,
    /// Hears of the end of the registry, the log or the publisher: the process must end then.
    pub lifeline: Lifeline,
}

/// Why the system could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot register the published metrics: {0}")]
pub struct StartError(#[from] prometheus::Error);

/// Starts the log actor, the publisher and the registry, recovering the last good desired counts
/// from the log. Must run inside an actix System.
pub fn start(config: SystemConfig) -> Result<ActorSystem, StartError> {
    let lifeline = Lifeline::default();
    let publisher = Publisher::new(&config.publisher)?.guarded(lifeline.guard("publisher"));
    let board = publisher.board();
    let publisher = publisher.start();
    let (recovered, recovery_problem) = match config.log.last_good() {
        Ok(r) => (r, None),
        Err(e) => (Default::default(), Some(e.to_string())),
    };
    let log = LogActor::start(config.log, Some(lifeline.clone()));
    let registry = Registry::new(
        Ports {
            log: log.clone(),
            publisher: publisher.clone(),
            status: config.status,
            telemetry: config.telemetry,
            authority: config.authority,
        },
        config.settings,
        recovered,
        config.model_threads,
    )
    .guarded(lifeline.guard("registry"))
    .start();
    Ok(ActorSystem {
        registry,
        publisher,
        board,
        log,
        recovery_problem,
        lifeline,
    })
}

/// Threads for deciding models: the cores this process may use (its CPU limit, where the
/// platform says), at most 8, at least 1.
pub fn available_model_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}
