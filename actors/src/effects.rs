//! The one way out of a decision. Everything the actors want done in the world (records made
//! durable, series published or removed, statuses written) is collected as [`Effects`] and
//! applied by the registry in one order: log, then publish, then status. A decision that acted
//! is therefore always in the log, and a status never runs ahead of the published count.

use std::ops::Range;

use wva_storage::Record;

use crate::authority::Authority;
use crate::log_actor::{AppendBatch, Flush, Forget, LogActor};

/// One append or flush of the decision log, at most, before the cycle goes on without it.
pub const LOG_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::messages::{ModelKey, StatusBatch, StatusUpdate};
use crate::publisher::{Publish, Published, Publisher, Retire};
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
    /// Whether this instance may act, and for which models, checked as effects go out.
    pub authority: Authority,
}

/// What one or more models' cycles and events want done.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<Record>,
    /// Variants no longer decided for (VA removed, Deployment gone): their series are removed
    /// and their last-good entry forgotten, so that a recreated one starts fresh.
    pub retired: Vec<Retire>,
    pub published: Vec<Published>,
    pub statuses: Vec<StatusUpdate>,
    /// Which model each stretch of `published` and `statuses` came from, where known, so that
    /// a model whose shard is lost mid-cycle has its part withheld.
    owners: Vec<Owned>,
}

/// The stretch of a cycle's effects one model contributed.
#[derive(Debug)]
struct Owned {
    model: ModelKey,
    published: Range<usize>,
    statuses: Range<usize>,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        let (published, statuses) = (self.published.len(), self.statuses.len());
        self.records.extend(other.records);
        self.retired.extend(other.retired);
        self.published.extend(other.published);
        self.statuses.extend(other.statuses);
        self.owners.extend(other.owners.into_iter().map(|o| Owned {
            model: o.model,
            published: o.published.start + published..o.published.end + published,
            statuses: o.statuses.start + statuses..o.statuses.end + statuses,
        }));
    }

    /// Merges one model's effects, remembering they are that model's.
    pub fn merge_for(&mut self, model: ModelKey, other: Effects) {
        let (published, statuses) = (self.published.len(), self.statuses.len());
        self.merge(other);
        self.owners.push(Owned {
            model,
            published: published..self.published.len(),
            statuses: statuses..self.statuses.len(),
        });
    }

    /// Drops what this instance may no longer do: everything when it does not lead, a model's
    /// part when its shard is no longer held. Returns how many published counts were withheld.
    fn withhold_uncovered(&mut self, authority: &Authority) -> usize {
        let before = self.published.len();
        if !authority.leads() {
            self.published.clear();
            self.statuses.clear();
            return before;
        }
        if authority.holds_every_shard() || self.owners.is_empty() {
            return 0;
        }
        let mut keep_published = vec![true; self.published.len()];
        let mut keep_statuses = vec![true; self.statuses.len()];
        for owned in self.owners.iter().filter(|o| !authority.covers(&o.model)) {
            keep_published[owned.published.clone()].fill(false);
            keep_statuses[owned.statuses.clone()].fill(false);
        }
        let mut kept = keep_published.into_iter();
        self.published.retain(|_| kept.next().unwrap_or(true));
        let mut kept = keep_statuses.into_iter();
        self.statuses.retain(|_| kept.next().unwrap_or(true));
        before - self.published.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.retired.is_empty()
            && self.published.is_empty()
            && self.statuses.is_empty()
    }

    /// Appends and flushes the records, retires, publishes, then sends the statuses. A log
    /// failure is reported but does not hold back the decision: the safety net prefers a
    /// published decision to none. The right to act is checked after the log is written, just
    /// before anything goes out: a Lease lost meanwhile withholds the publish and the statuses
    /// (the decisions stay in the log, as decided), counted in `wva_decisions_withheld_total`.
    pub async fn apply(mut self, ports: &Ports) {
        if !self.records.is_empty() {
            // A stalled disk must not stall the cycle: past the timeout the decision is
            // published without waiting (the write may still land; it is counted as timed out).
            let appended = tokio::time::timeout(
                LOG_WRITE_TIMEOUT,
                ports
                    .log
                    .send(AppendBatch(std::mem::take(&mut self.records))),
            )
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
        let withheld = self.withhold_uncovered(&ports.authority);
        if withheld > 0 {
            tracing::info!(
                withheld,
                "the Lease (or a shard) was lost during the cycle: its decisions are logged, not published"
            );
            ports.telemetry.withheld.inc_by(withheld as u64);
        }
        for retired in self.retired {
            let (variant, up_to) = (retired.variant.clone(), retired.decided_up_to);
            let _ = ports.publisher.send(retired).await;
            if let Ok(Err(e)) = ports.log.send(Forget(variant.clone(), up_to)).await {
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
