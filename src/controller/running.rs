//! A started controller: what `wva run` and the tests hold, its critical tasks, and the
//! graceful stop.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use wva_actors::log_actor::Flush;
use wva_actors::publisher::Publisher;
use wva_actors::registry::Registry;
use wva_actors::system::ActorSystem;

use super::control_loop::{CYCLE_NOW_LIMIT, Command};
use super::health::HealthReceiver;
use super::ops::Ops;
use super::status_writer::{self, StatusWriter};
use super::tasks::{Critical, TaskEnded};

/// A started controller.
#[derive(Debug)]
pub struct Running {
    pub registry: actix::Addr<Registry>,
    pub publisher: actix::Addr<Publisher>,
    pub health: HealthReceiver,
    pub leader: watch::Receiver<bool>,
    /// The shards this replica holds (every model, without sharding).
    pub shards: watch::Receiver<wva_actors::shards::ShardFilter>,
    pub ops: Ops,
    pub(super) actors: ActorSystem,
    pub(super) writer: actix::Addr<StatusWriter>,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) stop: CancellationToken,
    pub(super) critical: Critical,
}

impl Running {
    /// The desired counts as published, for KEDA's external scaler.
    pub fn board(&self) -> watch::Receiver<wva_actors::publisher::DesiredBoard> {
        self.actors.board.clone()
    }

    /// Runs one cycle now and waits until it is decided (tests; the loop runs them on the
    /// interval).
    pub async fn cycle_now(&self) {
        let (done, decided) = oneshot::channel();
        if self.commands.send(Command::CycleNow(done)).await.is_ok() {
            let _ = tokio::time::timeout(CYCLE_NOW_LIMIT, decided).await;
        }
    }

    /// Waits until every status and Event queued so far has been sent to the API server (or
    /// dropped), at most [`CYCLE_NOW_LIMIT`]: with [`Running::cycle_now`], what a test checks
    /// was not written is then known not to be on its way.
    pub async fn statuses_settled(&self) {
        let (done, settled) = oneshot::channel();
        if self
            .writer
            .send(status_writer::WriterNote::Settled(done))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(CYCLE_NOW_LIMIT, settled).await;
        }
    }

    /// Waits until the watches are synced, or `limit` passes.
    pub async fn synced(&self, limit: Duration) -> bool {
        let mut health = self.health.clone();
        tokio::time::timeout(limit, health.wait_for(|h| h.watches_synced))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The stop token, for servers that should end with the controller.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Adds a task whose end should end the process (an HTTP server).
    pub fn spawn_critical(
        &mut self,
        task: &'static str,
        run: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.critical.spawn(task, run);
    }

    /// Resolves when a critical task ends while the controller is not stopping.
    pub async fn critical(&mut self) -> TaskEnded {
        self.critical.first_ended().await
    }

    /// Aborts a task as if it had died (tests of the process's reaction).
    #[doc(hidden)]
    pub fn kill_task(&self, task: &str) -> bool {
        self.critical.kill(task)
    }

    /// Graceful stop: no new cycle starts, the one in flight finishes, the decision log is
    /// flushed and the Lease released.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        self.critical.join_all(Duration::from_secs(20)).await;
        match self.actors.log.send(Flush).await {
            Ok(Ok(())) => tracing::info!("decision log flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "decision log: flush failed"),
            Err(e) => tracing::warn!(error = %e, "decision log: unavailable at shutdown"),
        }
    }
}
