//! The log's semantics over any [`Backend`]: append with indexes, last-good recovery, history,
//! bounded retention, and size accounting that survives restarts.

use std::collections::{BTreeMap, HashMap};

use crate::backend::{Backend, Tree};
use crate::codec::{FORMAT_VERSION, decode, decode_value, encode, encode_value};
use crate::keys::{
    decode_last_good, decode_seq_entry, encode_last_good, encode_seq_entry, learner_key,
    model_prefix, namespace_prefix, parse_variant_key, record_key, variant_key,
};
use crate::record::{LastGood, Record, RecordedLearner, Timestamp, VariantKey};
use crate::usage::Usage;
use crate::{
    DecisionLog, History, HistoryFilter, LogError, LogStats, Retention, RetentionReport,
    last_good_updates,
};

const META_FORMAT: &[u8] = b"format";
const META_ACCOUNTING: &[u8] = b"accounting";

/// Retention removes at most this many records per pass, so a long-stopped controller that
/// comes back to a week of expired records does not stall its first cycle; the rest go in the
/// following cycles.
const MAX_REMOVALS_PER_PASS: u64 = 20_000;

fn format_marker() -> Vec<u8> {
    format!("wva-decision-log/{FORMAT_VERSION}").into_bytes()
}

/// Why stored data cannot be used as a decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

/// A decision log on some backend. See [`crate::SledLog`] and [`crate::MemoryLog`].
#[derive(Debug)]
pub struct Log<B> {
    pub(crate) backend: B,
    retention: Retention,
    next_seq: u64,
    bytes: u64,
    count: u64,
    /// Who holds the bytes, for taking from the largest holder when over the cap.
    usage: Usage,
    /// The desired count in the last-good index, per variant key: an entry is written only
    /// when its count changes (a steady fleet rewrote every variant's entry every cycle).
    last_good_written: HashMap<Vec<u8>, u32>,
}

/// Bytes a record is accounted for: the encoded record, its key twice (records and by_seq), and
/// the fixed part of the by_seq entry.
fn accounted(record_len: u64, key_len: u64) -> u64 {
    record_len + 2 * key_len + 20
}

impl<B: Backend> Log<B> {
    /// Loads a log from a backend, checking that it holds a decision log of a format this build
    /// reads. An empty backend becomes a new log.
    pub(crate) fn load(
        mut backend: B,
        retention: Retention,
    ) -> Result<Result<Self, Unusable>, LogError> {
        match backend.get(Tree::Meta, META_FORMAT)? {
            Some(marker) if marker == format_marker() => {}
            Some(other) => {
                return Ok(Err(Unusable(format!(
                    "format marker {:?} is not {:?}",
                    String::from_utf8_lossy(&other),
                    String::from_utf8_lossy(&format_marker())
                ))));
            }
            None => {
                let has_data = backend.first(Tree::Records)?.is_some()
                    || backend.first(Tree::BySeq)?.is_some();
                if has_data {
                    return Ok(Err(Unusable("records without a format marker".into())));
                }
                backend.insert(Tree::Meta, META_FORMAT, &format_marker())?;
            }
        }
        let mut log = Self {
            backend,
            retention,
            next_seq: 0,
            bytes: 0,
            count: 0,
            usage: Usage::default(),
            last_good_written: HashMap::new(),
        };
        // Accounting is written on flush; records appended after the last flush are counted
        // again from the by_seq tree.
        let stored = log.backend.get(Tree::Meta, META_ACCOUNTING)?;
        let (start, mut bytes, mut count) = match stored.as_deref().map(decode_accounting) {
            Some(Some(acc)) => acc,
            Some(None) => return Ok(Err(Unusable("accounting entry cannot be decoded".into()))),
            None => (0, 0, 0),
        };
        let mut next_seq = start;
        // One pass over the sequence index: who holds what (not stored) from every entry, and
        // the accounting of the entries appended after it was last stored.
        let start_key = start.to_be_bytes();
        for entry in log.backend.scan_prefix(Tree::BySeq, &[]) {
            let (k, v) = entry?;
            let decoded = decode_seq_entry(&v);
            if let Some((_, len, rkey)) = decoded {
                log.usage
                    .add(rkey, accounted(u64::from(len), rkey.len() as u64));
            }
            if k.as_slice() < start_key.as_slice() {
                continue;
            }
            let (Some((_, len, rkey)), Ok(seq)) = (decoded, <[u8; 8]>::try_from(k.as_slice()))
            else {
                return Ok(Err(Unusable(
                    "sequence index entry cannot be decoded".into(),
                )));
            };
            bytes += accounted(u64::from(len), rkey.len() as u64);
            count += 1;
            next_seq = u64::from_be_bytes(seq) + 1;
        }
        for entry in log.backend.scan_prefix(Tree::LastGood, &[]) {
            let (k, v) = entry?;
            if let Some(lg) = decode_last_good(&v) {
                log.last_good_written.insert(k, lg.desired);
            }
        }
        log.next_seq = next_seq;
        log.bytes = bytes;
        log.count = count;
        Ok(Ok(log))
    }

    /// Removes one `by_seq` entry and the record it points to.
    fn remove_entry(&mut self, seq_key: &[u8], entry: &[u8]) -> Result<(), LogError> {
        // An entry that cannot be read is dropped alone so that retention keeps moving.
        let (len, rkey) =
            decode_seq_entry(entry).map_or((0, &[][..]), |(_, len, rkey)| (len, rkey));
        if !rkey.is_empty() {
            self.backend.remove(Tree::Records, rkey)?;
        }
        self.backend.remove(Tree::BySeq, seq_key)?;
        self.forget(rkey, accounted(u64::from(len), rkey.len() as u64));
        Ok(())
    }

    /// Removes the oldest record of the model whose records start with `model_prefix`;
    /// whether there was one.
    fn remove_oldest_of(&mut self, model_prefix: &[u8]) -> Result<bool, LogError> {
        let Some((rkey, record)) = self
            .backend
            .scan_prefix(Tree::Records, model_prefix)
            .next()
            .transpose()?
        else {
            return Ok(false);
        };
        let seq = &rkey[rkey.len().saturating_sub(8)..];
        self.backend.remove(Tree::BySeq, seq)?;
        self.backend.remove(Tree::Records, &rkey)?;
        self.forget(&rkey, accounted(record.len() as u64, rkey.len() as u64));
        Ok(true)
    }

    fn forget(&mut self, rkey: &[u8], accounted_bytes: u64) {
        self.bytes = self.bytes.saturating_sub(accounted_bytes);
        self.count = self.count.saturating_sub(1);
        self.usage.sub(rkey, accounted_bytes);
    }
}

fn encode_accounting(next_seq: u64, bytes: u64, count: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&next_seq.to_be_bytes());
    out[8..16].copy_from_slice(&bytes.to_be_bytes());
    out[16..].copy_from_slice(&count.to_be_bytes());
    out
}

fn decode_accounting(b: &[u8]) -> Option<(u64, u64, u64)> {
    let word = |i: usize| Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?));
    Some((word(0)?, word(8)?, word(16)?))
}

impl<B: Backend> DecisionLog for Log<B> {
    fn append(&mut self, record: &Record) -> Result<u64, LogError> {
        self.append_batch(std::slice::from_ref(record))
    }

    fn append_batch(&mut self, records: &[Record]) -> Result<u64, LogError> {
        let first = self.next_seq;
        let (mut by_seq, mut stored, mut last_good) = (Vec::new(), Vec::new(), Vec::new());
        let mut learners = Vec::new();
        let mut added = 0u64;
        for (i, record) in records.iter().enumerate() {
            let seq = first + i as u64;
            let bytes = encode(record)?;
            let rkey = record_key(record.model(), seq);
            let size = accounted(bytes.len() as u64, rkey.len() as u64);
            self.usage.add(&rkey, size);
            added += size;
            by_seq.push((
                seq.to_be_bytes().to_vec(),
                encode_seq_entry(record.at(), bytes.len() as u32, &rkey),
            ));
            stored.push((rkey, bytes));
            for (variant, lg) in last_good_updates(record) {
                let key = variant_key(&variant);
                // The entry keeps the time its count was first decided; only a new count is
                // written.
                if self.last_good_written.get(&key) != Some(&lg.desired) {
                    self.last_good_written.insert(key.clone(), lg.desired);
                    last_good.push((key, encode_last_good(lg).to_vec()));
                }
            }
            if let Record::ModelBased(m) = record {
                for v in &m.variants {
                    let key = VariantKey {
                        namespace: m.model.namespace.clone(),
                        name: v.name.clone(),
                    };
                    learners.push((learner_key(&key), encode_value(&v.learner)?));
                }
            }
        }
        // The age index first: if a crash cuts the append short, retention still finds the
        // records (or harmlessly misses records that were never written).
        self.backend.insert_many(Tree::BySeq, &by_seq)?;
        self.backend.insert_many(Tree::Records, &stored)?;
        self.backend.insert_many(Tree::LastGood, &last_good)?;
        self.backend.insert_many(Tree::Meta, &learners)?;
        self.next_seq += records.len() as u64;
        self.bytes += added;
        self.count += records.len() as u64;
        Ok(first)
    }

    fn last_good(&self) -> Result<BTreeMap<VariantKey, LastGood>, LogError> {
        let mut out = BTreeMap::new();
        let mut bad = 0u64;
        for entry in self.backend.scan_prefix(Tree::LastGood, &[]) {
            let (k, v) = entry?;
            match (parse_variant_key(&k), decode_last_good(&v)) {
                (Some(key), Some(value)) => {
                    out.insert(key, value);
                }
                _ => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!(
                entries = bad,
                "decision log: skipped last-good entries that cannot be decoded"
            );
        }
        Ok(out)
    }

    fn last_good_of(&self, variant: &VariantKey) -> Result<Option<LastGood>, LogError> {
        Ok(self
            .backend
            .get(Tree::LastGood, &variant_key(variant))?
            .as_deref()
            .and_then(decode_last_good))
    }

    fn forget_variant(&mut self, variant: &VariantKey) -> Result<(), LogError> {
        self.last_good_written.remove(&variant_key(variant));
        self.backend.remove(Tree::Meta, &learner_key(variant))?;
        self.backend.remove(Tree::LastGood, &variant_key(variant))
    }

    fn learner_of(&self, variant: &VariantKey) -> Result<Option<RecordedLearner>, LogError> {
        let Some(bytes) = self.backend.get(Tree::Meta, &learner_key(variant))? else {
            return Ok(None);
        };
        match decode_value(&bytes) {
            Ok(learner) => Ok(Some(learner)),
            Err(e) => {
                // A damaged entry costs only the learning so far: start afresh.
                tracing::warn!(%variant, error = %e, "decision log: learner state cannot be decoded; learning again");
                Ok(None)
            }
        }
    }

    fn history(&self, filter: &HistoryFilter) -> Result<History, LogError> {
        let prefix = match (&filter.namespace, &filter.model_id) {
            (Some(ns), Some(model)) => {
                model_prefix(&crate::ModelKey::new(ns.clone(), model.clone()))
            }
            (Some(ns), None) => namespace_prefix(ns),
            _ => Vec::new(),
        };
        let mut history = History::default();
        for entry in self.backend.scan_prefix(Tree::Records, &prefix) {
            let (k, v) = entry?;
            let seq = k
                .len()
                .checked_sub(8)
                .and_then(|i| k[i..].try_into().ok())
                .map(u64::from_be_bytes);
            match (seq, decode(&v)) {
                (Some(seq), Ok(record)) => {
                    if filter.matches(&record) {
                        history.records.push((seq, record));
                    }
                }
                _ => history.undecodable += 1,
            }
        }
        history.records.sort_by_key(|(seq, _)| *seq);
        Ok(history)
    }

    fn enforce_retention(&mut self, now: Timestamp) -> Result<RetentionReport, LogError> {
        let max_age_ms = i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.millis().saturating_sub(max_age_ms);
        let mut report = RetentionReport::default();
        let removed = |r: &RetentionReport| r.removed_by_age + r.removed_by_size;
        // Age first, oldest first, for everyone alike.
        while removed(&report) < MAX_REMOVALS_PER_PASS {
            let Some((k, v)) = self.backend.first(Tree::BySeq)? else {
                break;
            };
            if decode_seq_entry(&v).is_some_and(|(at, _, _)| at.millis() >= cutoff) {
                break;
            }
            self.remove_entry(&k, &v)?;
            report.removed_by_age += 1;
        }
        // Over the size cap: the largest holder gives up its oldest records first.
        if self.bytes > self.retention.max_bytes {
            let mut plan = self.usage.eviction();
            while self.bytes > self.retention.max_bytes && removed(&report) < MAX_REMOVALS_PER_PASS
            {
                let Some(model) = plan.next(&self.usage) else {
                    break;
                };
                if !self.remove_oldest_of(&model)? {
                    // Counted but not stored (a crash between the two trees): stop counting it.
                    let held = self.usage.model_bytes(&model);
                    self.usage.sub_model(&model, held);
                    continue;
                }
                report.removed_by_size += 1;
            }
        }
        Ok(report)
    }

    fn flush(&mut self) -> Result<(), LogError> {
        self.backend.insert(
            Tree::Meta,
            META_ACCOUNTING,
            &encode_accounting(self.next_seq, self.bytes, self.count),
        )?;
        self.backend.flush()
    }

    fn stats(&self) -> LogStats {
        LogStats {
            records: self.count,
            bytes: self.bytes,
            next_sequence: self.next_seq,
        }
    }
}
