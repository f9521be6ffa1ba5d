//! The one way out of a decision. Everything the actors want done in the world (records made
//! durable, series published or removed, statuses written) is collected as [`Effects`] and
//! applied by the registry in one order: log, then publish, then status. A decision that acted
//! is therefore always in the log, and a status never runs ahead of the published count.

use wva_storage::{Record, VariantKey};

use crate::log_actor::{AppendBatch, Flush, Forget, LogActor};

/// One append or flush of the decision log, at most, before the cycle goes on without it.
pub const LOG_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::messages::{StatusBatch, StatusUpdate};
use crate::publisher::{Publish, Published, Publisher, Unpublish};
use crate::telemetry::Telemetry;

use actix::prelude::*;

/// Where effects go.
#[derive(Debug, Clone)]
pub struct Ports {
    pub log: Addr<LogActor>,
    pub publisher: Addr<Publisher>,
    /// The VA status writer (or the simulator's recorder); none in tests that do not need it.
    pub status: Option<Recipient<StatusBatch>>,
    pub telemetry: Telemetry,
}

/// What one or more models' cycles and events want done.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<Record>,
    /// Variants no longer decided for (VA removed, Deployment gone): their series are removed
    /// and their last-good entry forgotten, so that a recreated one starts fresh.
    pub retired: Vec<VariantKey>,
    pub published: Vec<Published>,
    pub statuses: Vec<StatusUpdate>,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.records.extend(other.records);
        self.retired.extend(other.retired);
        self.published.extend(other.published);
        self.statuses.extend(other.statuses);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.retired.is_empty()
            && self.published.is_empty()
            && self.statuses.is_empty()
    }

    /// Appends and flushes the records, retires, publishes, then sends the statuses. A log
    /// failure is reported but does not hold back the decision: the safety net prefers a
    /// published decision to none.
    pub async fn apply(self, ports: &Ports) {
        if !self.records.is_empty() {
            // A stalled disk must not stall the cycle: past the timeout the decision is
            // published without waiting (the write may still land; it is counted as timed out).
            let appended =
                tokio::time::timeout(LOG_WRITE_TIMEOUT, ports.log.send(AppendBatch(self.records)))
                    .await
                    .map(|r| r.map(|r| r.map(|_| ())));
            // A flush queued behind an append that timed out would only wait for it too.
            let results = if appended.is_err() {
                vec![appended]
            } else {
                let flushed = tokio::time::timeout(LOG_WRITE_TIMEOUT, ports.log.send(Flush)).await;
                vec![appended, flushed]
            };
            for result in results {
                note_log_write(ports, result);
            }
        }
        for variant in self.retired {
            let _ = ports.publisher.send(Unpublish(variant.clone())).await;
            if let Ok(Err(e)) = ports.log.send(Forget(variant.clone())).await {
                tracing::warn!(%variant, error = %e, "decision log: cannot forget a retired variant");
            }
        }
        if !self.published.is_empty() {
            let _ = ports.publisher.send(Publish(self.published)).await;
        }
        if let Some(status) = &ports.status
            && !self.statuses.is_empty()
        {
            let _ = status.send(StatusBatch(self.statuses)).await;
        }
    }
}

/// What one log write came to, within its timeout.
type LogWrite =
    Result<Result<Result<(), wva_storage::LogError>, MailboxError>, tokio::time::error::Elapsed>;

/// Counts a log write by outcome, and says why one failed.
fn note_log_write(ports: &Ports, result: LogWrite) {
    let outcome = match result {
        Ok(Ok(Ok(()))) => "ok",
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "decision log: write failed; deciding and publishing without it");
            "error"
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "decision log: unavailable");
            "error"
        }
        Err(_) => {
            tracing::warn!(
                timeout_s = LOG_WRITE_TIMEOUT.as_secs(),
                "decision log: write timed out; publishing without waiting"
            );
            "timeout"
        }
    };
    ports
        .telemetry
        .log_writes
        .with_label_values(&[outcome])
        .inc();
}

/// Records sent to the log while the rest of their cycle is still being decided, so that the
/// log's thread encodes them meanwhile. They are made durable by the cycle's flush, in
/// [`Effects::apply`]; [`EarlyAppends::settle`] waits for them before it.
#[derive(Default)]
pub struct EarlyAppends(Vec<Request<LogActor, AppendBatch>>);

impl std::fmt::Debug for EarlyAppends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyAppends")
            .field("pending", &self.0.len())
            .finish()
    }
}

impl EarlyAppends {
    pub fn send(&mut self, ports: &Ports, records: Vec<Record>) {
        self.0.push(ports.log.send(AppendBatch(records)));
    }

    /// Waits for every early append (within one write's timeout in all) and counts each.
    pub async fn settle(self, ports: &Ports) {
        let deadline = tokio::time::Instant::now() + LOG_WRITE_TIMEOUT;
        for request in self.0 {
            let result = tokio::time::timeout_at(deadline, request)
                .await
                .map(|r| r.map(|r| r.map(|_| ())));
            note_log_write(ports, result);
        }
    }
}
