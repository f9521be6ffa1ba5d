//! The decision log: an append-only, bounded record of every input a decision depended on and
//! every decision made, per model. It is what the safety net recovers from after a restart, what
//! `wva history` reads and what `wva replay` feeds back through the policy.
//!
//! - [`record`]: the persistent schema (independent of the in-memory policy types, so that a
//!   change of the policy never silently changes what is on disk).
//! - [`codec`]: version tag + checksum + bincode.
//! - [`keys`]: the key layout that makes a model's history one range scan.
//! - [`DecisionLog`]: the trait; [`SledLog`] on disk, [`MemoryLog`] for tests and simulations.
//! - [`datadir`]: a data directory opened for writing, or for reading while a controller runs.

pub mod backend;
pub mod codec;
pub mod datadir;
pub mod keys;
pub mod log;
pub mod memory;
pub mod record;
pub mod sled_log;
mod usage;

use std::collections::BTreeMap;
use std::time::Duration;

pub use codec::{CodecError, decode, encode};
pub use log::{DEFAULT_JOURNAL_SLOTS, Log};
pub use memory::MemoryLog;
pub use record::{
    CarriedState, CompactCapacity, CompactCapacitySettings, CompactCycleRecord, CompactPod,
    CompactServing, CompactVariant, CycleRecord, DemandRecord, ForecastRecord, LastGood,
    ModelBasedRecord, ModelKey, PrefillFitRecord, Record, RecordedAnalysis,
    RecordedCapacityVariant, RecordedClaim, RecordedLearner, RecordedLineFit, RecordedModelVariant,
    RecordedPod, RecordedServing, RecordedTarget, RecordedThresholds, RecordedVariant,
    RecordedWorkload, RequestSeriesMissingRecord, RolesRecord, ScarcityRecord, SloCapacityRecord,
    Timestamp, Units, VariantKey,
};
pub use sled_log::{OpenReport, SledLog};

/// Why the log could not do something.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("decision log storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("decision log record: {0}")]
    Codec(#[from] CodecError),
    #[error("decision log at {path}: {message}")]
    Open { path: String, message: String },
    #[error("{path}: no decision log here (expected a data directory written by wva)")]
    NotALog { path: String },
    #[error(
        "decision log at {path} is in use by another process (only one process may open a data directory at a time): {detail}"
    )]
    InUse { path: String, detail: String },
}

/// How long and how much the log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Which records `history` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub namespace: Option<String>,
    pub model_id: Option<String>,
    /// Only cycles that decided for this variant (VA name).
    pub variant: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl HistoryFilter {
    pub fn matches(&self, record: &Record) -> bool {
        let (model, at) = (record.model(), record.at());
        self.namespace
            .as_ref()
            .is_none_or(|ns| *ns == model.namespace)
            && self.model_id.as_ref().is_none_or(|m| *m == model.model_id)
            && self.since.is_none_or(|t| at >= t)
            && self.until.is_none_or(|t| at <= t)
            && self
                .variant
                .as_ref()
                .is_none_or(|v| record.mentions_variant(v))
    }
}

/// Records in append order, and how many could not be decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// (sequence number, record), oldest first.
    pub records: Vec<(u64, Record)>,
    /// Records that failed their checksum or could not be decoded; skipped, never fatal.
    pub undecodable: u64,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub removed_by_age: u64,
    pub removed_by_size: u64,
}

/// Size and shape of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub records: u64,
    /// Bytes of encoded records kept.
    pub bytes: u64,
    pub next_sequence: u64,
}

/// The decision log. Implementations are used from one thread at a time (the log actor).
pub trait DecisionLog: Send {
    /// Appends one record; returns its sequence number. Cycle records that are not safety-net
    /// decisions also update the last-good index of their variants.
    fn append(&mut self, record: &Record) -> Result<u64, LogError>;
    /// Appends records in order; returns the sequence number of the first. One write per tree,
    /// which is what makes a whole cycle's records cheap.
    fn append_batch(&mut self, records: &[Record]) -> Result<u64, LogError>;
    /// The last good desired count of every variant, for recovery after a restart.
    fn last_good(&self) -> Result<BTreeMap<VariantKey, LastGood>, LogError>;
    /// The last good desired count of one variant.
    fn last_good_of(&self, variant: &VariantKey) -> Result<Option<LastGood>, LogError>;
    /// Drops a variant from the last-good index and its learner state (its VA or Deployment is
    /// gone). A record decided at or before `decided_up_to` that is appended afterwards (its
    /// cycle was still in flight) goes in the journal but brings neither back, so that a variant
    /// created again starts afresh.
    fn forget_variant(
        &mut self,
        variant: &VariantKey,
        decided_up_to: Option<Timestamp>,
    ) -> Result<(), LogError>;
    /// The latest latency-learner state of a variant (from its last model-based record).
    fn learner_of(&self, variant: &VariantKey) -> Result<Option<RecordedLearner>, LogError>;
    /// Records matching the filter, oldest first.
    fn history(&self, filter: &HistoryFilter) -> Result<History, LogError>;
    /// Removes records older than the retention age, then the oldest until under the size bound.
    fn enforce_retention(&mut self, now: Timestamp) -> Result<RetentionReport, LogError>;
    /// Makes everything appended so far durable.
    fn flush(&mut self) -> Result<(), LogError>;
    fn stats(&self) -> LogStats;
}

/// The last-good updates a record implies: (variant's key in the last-good index, desired, time)
/// for each non-fallback target.
pub(crate) fn last_good_updates(record: &Record) -> Vec<(Vec<u8>, LastGood)> {
    let update = |namespace: &str, name: &str, desired: u32, at: Timestamp| {
        (
            keys::variant_key_of(namespace, name),
            LastGood { desired, at },
        )
    };
    match record {
        Record::Cycle(c) if !c.safety_net => c
            .targets
            .iter()
            .filter(|t| t.fallback_source.is_none())
            .map(|t| update(&c.model.namespace, &t.name, t.target, c.at))
            .collect(),
        // Only cycles off the safety net, with no fallback, are stored compact.
        Record::CompactCycle(c) => c
            .variants
            .iter()
            .map(|v| update(&c.model.namespace, &v.name, v.target, c.at))
            .collect(),
        // A cut replaces the count its model's cycle record wanted (it is written after it).
        Record::Scarcity(s) => s
            .claims
            .iter()
            .filter(|c| c.granted != c.wanted)
            .map(|c| update(&c.variant.namespace, &c.variant.name, c.granted, s.at))
            .collect(),
        _ => Vec::new(),
    }
}
