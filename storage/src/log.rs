//! The log's semantics over any [`Backend`]: append with indexes, last-good recovery, history,
//! bounded retention, and size accounting that survives restarts.

use std::collections::{BTreeMap, HashMap};

use crate::backend::{Backend, Tree};
use crate::codec::{
    Compression, FORMAT_VERSION, decode_stored, decode_value, encode_segment, encode_value,
    stored_count,
};
use crate::keys::{
    SeqEntry, decode_last_good, decode_seq_entry, encode_last_good, encode_seq_entry, journal_key,
    journal_slot, learner_key, model_prefix, namespace_prefix, parse_variant_key, variant_key,
};
use crate::record::{LastGood, Record, RecordedLearner, Timestamp, VariantKey};
use crate::usage::Usage;
use crate::{
    DecisionLog, History, HistoryFilter, LogError, LogStats, Retention, RetentionReport,
    last_good_updates,
};

const META_FORMAT: &[u8] = b"format";
/// Written by logs before segments: `next_seq bytes count`, of which only the sequence is read.
const META_ACCOUNTING: &[u8] = b"accounting";
/// The next sequence number, written before every append's records.
const META_NEXT_SEQ: &[u8] = b"next_seq";

/// How many journal slots a log has by default, so how many retention passes (cycles) records
/// wait in the journal before their model's segment is sealed: 40 cycles, 10 minutes at the
/// default interval. Each pass seals one slot, so sealing costs a fortieth of the models' worth
/// per cycle, never all of them at once.
pub const DEFAULT_JOURNAL_SLOTS: u16 = 40;

/// Retention removes at most this many records per pass, so a long-stopped controller that
/// comes back to a week of expired records does not stall its first cycle; the rest go in the
/// following cycles.
const MAX_REMOVALS_PER_PASS: u64 = 20_000;

/// Version of the log's layout, in its format marker. Version 2 added segments and the journal;
/// a log of version 1 is read as it is and written in version 2 from then on (its single records
/// stay readable until retention removes them).
const LAYOUT_VERSION: u8 = 2;

fn format_marker() -> Vec<u8> {
    format!("wva-decision-log/{LAYOUT_VERSION}").into_bytes()
}

fn readable_marker(marker: &[u8]) -> bool {
    marker == format_marker() || marker == format!("wva-decision-log/{FORMAT_VERSION}").as_bytes()
}

/// Why stored data cannot be used as a decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

/// A decision log on some backend. See [`crate::SledLog`] and [`crate::MemoryLog`].
///
/// Records are written twice, cheaply: each append goes to the journal as one compressed entry
/// per slot (a handful of writes at the end of the key space, whatever the number of models),
/// and each retention pass seals one slot: its journal entries become one compressed segment per
/// model (the model's records of the last few minutes, which share most of their bytes), stored
/// under the model's key so its history stays one range scan. What a record repeats from the
/// previous one of its model costs next to nothing on disk.
#[derive(Debug)]
pub struct Log<B> {
    pub(crate) backend: B,
    retention: Retention,
    next_seq: u64,
    /// Bytes kept: segments and single records as accounted, plus the journal.
    bytes: u64,
    count: u64,
    /// Of those bytes, what the journal holds (not evictable: it is sealed within a round of
    /// slots).
    journal_bytes: u64,
    slots: u16,
    /// Retention passes so far, which pick the slot each one seals.
    passes: u64,
    /// Who holds the bytes, for taking from the largest holder when over the cap.
    usage: Usage,
    /// The desired count in the last-good index, per variant key: an entry is written only
    /// when its count changes (a steady fleet rewrote every variant's entry every cycle).
    last_good_written: HashMap<Vec<u8>, u32>,
    /// Variants forgotten lately, per variant key, with the time up to which cycles could still
    /// have decided for them: records decided by then update neither index.
    forgotten: HashMap<Vec<u8>, Timestamp>,
}

/// How long a forgotten variant is remembered, in decision time: far longer than a cycle can be
/// in flight, short enough that a cluster deleting variants all day keeps few.
const FORGOTTEN_MEMORY_MS: i64 = 600_000;

/// Bytes a stored value (a segment or a single record) is accounted for: the value, its key
/// twice (records and by_seq), and the fixed part of the by_seq entry.
fn accounted(record_len: u64, key_len: u64) -> u64 {
    record_len + 2 * key_len + 25
}

/// Bytes a journal entry is accounted for.
fn accounted_journal(value_len: usize) -> u64 {
    (value_len + 10) as u64
}

impl<B: Backend> Log<B> {
    /// Loads a log from a backend, checking that it holds a decision log of a format this build
    /// reads. An empty backend becomes a new log.
    pub(crate) fn load(
        mut backend: B,
        retention: Retention,
    ) -> Result<Result<Self, Unusable>, LogError> {
        match backend.get(Tree::Meta, META_FORMAT)? {
            Some(marker) if readable_marker(&marker) => {
                if marker != format_marker() {
                    backend.insert(Tree::Meta, META_FORMAT, &format_marker())?;
                }
            }
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
            journal_bytes: 0,
            slots: DEFAULT_JOURNAL_SLOTS,
            passes: 0,
            usage: Usage::default(),
            last_good_written: HashMap::new(),
            forgotten: HashMap::new(),
        };
        let stored_seq = |v: Option<Vec<u8>>| {
            v.and_then(|b| Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)))
        };
        let mut next_seq = stored_seq(log.backend.get(Tree::Meta, META_NEXT_SEQ)?)
            .max(stored_seq(log.backend.get(Tree::Meta, META_ACCOUNTING)?))
            .unwrap_or(0);
        // Who holds what, and how much, is counted afresh from the indexes at every open.
        for entry in log.backend.scan_prefix(Tree::BySeq, &[]) {
            let (k, v) = entry?;
            let (Some(e), Ok(seq)) = (decode_seq_entry(&v), <[u8; 8]>::try_from(k.as_slice()))
            else {
                return Ok(Err(Unusable(
                    "sequence index entry cannot be decoded".into(),
                )));
            };
            let size = accounted(u64::from(e.len), e.record_key.len() as u64);
            log.usage.add(e.record_key, size);
            log.bytes += size;
            log.count += u64::from(e.count);
            next_seq = next_seq.max(u64::from_be_bytes(seq) + u64::from(e.count));
        }
        for entry in log.backend.scan_prefix(Tree::Journal, &[]) {
            let (k, v) = entry?;
            let size = accounted_journal(v.len());
            log.journal_bytes += size;
            log.bytes += size;
            log.count += u64::from(stored_count(&v).unwrap_or(0));
            if let Some(seq) = k.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                next_seq = next_seq.max(u64::from_be_bytes(seq) + 1);
            }
        }
        for entry in log.backend.scan_prefix(Tree::LastGood, &[]) {
            let (k, v) = entry?;
            if let Some(lg) = decode_last_good(&v) {
                log.last_good_written.insert(k, lg.desired);
            }
        }
        log.next_seq = next_seq;
        Ok(Ok(log))
    }

    /// Sets how many journal slots the log has (at least 1): how many retention passes records
    /// wait in the journal. One slot seals every model at every pass, one record per segment.
    pub fn with_journal_slots(mut self, slots: u16) -> Self {
        self.slots = slots.max(1);
        self
    }

    /// Seals the journal slots in `slots`: their entries become one segment per model, and leave
    /// the journal. Sealing again after a crash between the two writes the same segments again
    /// (same keys), so nothing is kept twice.
    fn seal(&mut self, slots: std::ops::Range<u16>) -> Result<(), LogError> {
        let mut sealed_keys = Vec::new();
        let (mut released, mut journal_records) = (0u64, 0u64);
        let mut by_model: BTreeMap<Vec<u8>, Vec<(u64, Record)>> = BTreeMap::new();
        for entry in self
            .backend
            .scan_from(Tree::Journal, &journal_key(slots.start, 0))
        {
            let (k, v) = entry?;
            let slot = k
                .get(..2)
                .map_or(u16::MAX, |s| u16::from_be_bytes([s[0], s[1]]));
            if u32::from(slot) >= u32::from(slots.end) {
                break;
            }
            released += accounted_journal(v.len());
            journal_records += u64::from(stored_count(&v).unwrap_or(0));
            match decode_stored(&v, 0) {
                Ok(records) => {
                    for (seq, record) in records {
                        by_model
                            .entry(model_prefix(record.model()))
                            .or_default()
                            .push((seq, record));
                    }
                }
                Err(e) => {
                    // Dropped: what cannot be read cannot be sealed either.
                    tracing::warn!(error = %e, "decision log: a journal entry cannot be decoded; its records are lost");
                }
            }
            sealed_keys.push(k);
        }
        if sealed_keys.is_empty() {
            return Ok(());
        }
        let (mut stored, mut by_seq) = (Vec::new(), Vec::new());
        for (prefix, mut records) in by_model {
            records.sort_by_key(|(seq, _)| *seq);
            let first = records[0].0;
            let refs: Vec<(u64, &Record)> = records.iter().map(|(s, r)| (*s, r)).collect();
            let value = encode_segment(&refs, Compression::Kept)?;
            let mut rkey = prefix;
            rkey.extend_from_slice(&first.to_be_bytes());
            let seq_key = first.to_be_bytes().to_vec();
            // Sealed already (a crash before the journal entries were removed): replaced.
            if let Some(old) = self.backend.get(Tree::BySeq, &seq_key)?
                && let Some(e) = decode_seq_entry(&old)
            {
                self.forget(
                    e.record_key,
                    accounted(u64::from(e.len), e.record_key.len() as u64),
                    e.count,
                );
            }
            let size = accounted(value.len() as u64, rkey.len() as u64);
            self.usage.add(&rkey, size);
            self.bytes += size;
            self.count += records.len() as u64;
            let newest = records
                .iter()
                .map(|(_, r)| r.at())
                .max()
                .unwrap_or_default();
            by_seq.push((
                seq_key,
                encode_seq_entry(SeqEntry {
                    at: newest,
                    len: value.len() as u32,
                    count: records.len() as u32,
                    record_key: &rkey,
                }),
            ));
            stored.push((rkey, value));
        }
        self.backend.insert_many(Tree::BySeq, &by_seq)?;
        self.backend.insert_many(Tree::Records, &stored)?;
        self.backend.remove_many(Tree::Journal, &sealed_keys)?;
        // The records moved from the journal to their segments (counted again above).
        self.journal_bytes = self.journal_bytes.saturating_sub(released);
        self.bytes = self.bytes.saturating_sub(released);
        self.count = self.count.saturating_sub(journal_records);
        Ok(())
    }

    /// Removes one `by_seq` entry and what it points to.
    fn remove_entry(&mut self, seq_key: &[u8], entry: &[u8]) -> Result<(), LogError> {
        // An entry that cannot be read is dropped alone so that retention keeps moving.
        let e = decode_seq_entry(entry).unwrap_or(SeqEntry {
            at: Timestamp(0),
            len: 0,
            count: 0,
            record_key: &[],
        });
        if !e.record_key.is_empty() {
            self.backend.remove(Tree::Records, e.record_key)?;
        }
        self.backend.remove(Tree::BySeq, seq_key)?;
        self.forget(
            e.record_key,
            accounted(u64::from(e.len), e.record_key.len() as u64),
            e.count,
        );
        Ok(())
    }

    /// Removes the oldest segment (or single record) of the model whose records start with
    /// `model_prefix`; whether there was one.
    fn remove_oldest_of(&mut self, model_prefix: &[u8]) -> Result<bool, LogError> {
        let Some((rkey, value)) = self
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
        self.forget(
            &rkey,
            accounted(value.len() as u64, rkey.len() as u64),
            stored_count(&value).unwrap_or(1),
        );
        Ok(true)
    }

    /// Takes the oldest segments of the largest holders until under the size cap (or the pass's
    /// removals are used up).
    fn evict(&mut self, report: &mut RetentionReport) -> Result<(), LogError> {
        let mut plan = self.usage.eviction();
        while self.bytes > self.retention.max_bytes
            && report.removed_by_age + report.removed_by_size < MAX_REMOVALS_PER_PASS
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
        Ok(())
    }

    fn forget(&mut self, rkey: &[u8], accounted_bytes: u64, records: u32) {
        self.bytes = self.bytes.saturating_sub(accounted_bytes);
        self.count = self.count.saturating_sub(u64::from(records));
        self.usage.sub(rkey, accounted_bytes);
    }
}

impl<B: Backend> DecisionLog for Log<B> {
    fn append(&mut self, record: &Record) -> Result<u64, LogError> {
        self.append_batch(std::slice::from_ref(record))
    }

    fn append_batch(&mut self, records: &[Record]) -> Result<u64, LogError> {
        let first = self.next_seq;
        if records.is_empty() {
            return Ok(first);
        }
        let (mut last_good, mut learners) = (Vec::new(), Vec::new());
        // The append's records by journal slot, in sequence order within each.
        let mut by_slot: BTreeMap<u16, Vec<(u64, &Record)>> = BTreeMap::new();
        for (i, record) in records.iter().enumerate() {
            let seq = first + i as u64;
            by_slot
                .entry(journal_slot(record.model(), self.slots))
                .or_default()
                .push((seq, record));
            let decided_before_forgotten = |key: &[u8]| {
                self.forgotten
                    .get(key)
                    .is_some_and(|up_to| record.at() <= *up_to)
            };
            for (key, lg) in last_good_updates(record) {
                if decided_before_forgotten(&key) {
                    continue;
                }
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
                    // The key is built only while some variant is remembered as forgotten.
                    if !self.forgotten.is_empty() && decided_before_forgotten(&variant_key(&key)) {
                        continue;
                    }
                    learners.push((learner_key(&key), encode_value(&v.learner)?));
                }
            }
        }
        let mut journal = Vec::with_capacity(by_slot.len());
        for (slot, slot_records) in &by_slot {
            let value = encode_segment(slot_records, Compression::Journal)?;
            journal.push((journal_key(*slot, slot_records[0].0).to_vec(), value));
        }
        let next = first + records.len() as u64;
        // The sequence first: after a crash cutting the append short, numbers are skipped, never
        // used twice.
        self.backend
            .insert(Tree::Meta, META_NEXT_SEQ, &next.to_be_bytes())?;
        self.backend.insert_many(Tree::Journal, &journal)?;
        self.backend.insert_many(Tree::LastGood, &last_good)?;
        self.backend.insert_many(Tree::Meta, &learners)?;
        let added: u64 = journal
            .iter()
            .map(|(_, v)| accounted_journal(v.len()))
            .sum();
        self.next_seq = next;
        self.journal_bytes += added;
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

    fn forget_variant(
        &mut self,
        variant: &VariantKey,
        decided_up_to: Option<Timestamp>,
    ) -> Result<(), LogError> {
        let key = variant_key(variant);
        if let Some(up_to) = decided_up_to {
            let horizon = up_to.0.saturating_sub(FORGOTTEN_MEMORY_MS);
            self.forgotten.retain(|_, t| t.0 > horizon);
            let t = self.forgotten.entry(key.clone()).or_insert(up_to);
            *t = (*t).max(up_to);
        }
        self.last_good_written.remove(&key);
        self.backend.remove(Tree::Meta, &learner_key(variant))?;
        self.backend.remove(Tree::LastGood, &key)
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
        let (prefix, slot) = match (&filter.namespace, &filter.model_id) {
            (Some(ns), Some(model)) => {
                let model = crate::ModelKey::new(ns.clone(), model.clone());
                (
                    model_prefix(&model),
                    Some(journal_slot(&model, self.slots).to_be_bytes()),
                )
            }
            (Some(ns), None) => (namespace_prefix(ns), None),
            _ => (Vec::new(), None),
        };
        let mut history = History::default();
        let mut take = |value: &[u8], seq: Option<u64>| match seq
            .ok_or_else(|| "key".to_string())
            .and_then(|seq| decode_stored(value, seq).map_err(|e| e.to_string()))
        {
            Ok(records) => history
                .records
                .extend(records.into_iter().filter(|(_, r)| filter.matches(r))),
            Err(_) => history.undecodable += u64::from(stored_count(value).unwrap_or(1)),
        };
        let seq_at = |k: &[u8], at: usize| {
            k.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
        };
        for entry in self.backend.scan_prefix(Tree::Records, &prefix) {
            let (k, v) = entry?;
            take(&v, k.len().checked_sub(8).and_then(|i| seq_at(&k, i)));
        }
        // The newest records, not sealed yet: the model's slot (and any beyond the log's count,
        // left by a log written with more), or every slot.
        let journal = self
            .backend
            .scan_prefix(Tree::Journal, slot.as_ref().map_or(&[][..], |s| &s[..]));
        let beyond = slot.is_some().then(|| {
            self.backend
                .scan_from(Tree::Journal, &journal_key(self.slots, 0))
        });
        for entry in journal.chain(beyond.into_iter().flatten()) {
            let (k, v) = entry?;
            take(&v, seq_at(&k, 2));
        }
        history.records.sort_by_key(|(seq, _)| *seq);
        // Sealed and still in the journal (a crash between the two): once.
        history.records.dedup_by_key(|(seq, _)| *seq);
        Ok(history)
    }

    fn enforce_retention(&mut self, now: Timestamp) -> Result<RetentionReport, LogError> {
        let max_age_ms = i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.millis().saturating_sub(max_age_ms);
        // One slot of the journal goes to its models' segments at every pass (with the first,
        // any slot beyond the log's count, as a log written with more slots left).
        let slot = (self.passes % u64::from(self.slots)) as u16;
        self.passes += 1;
        self.seal(slot..slot + 1)?;
        if slot == 0 {
            self.seal(self.slots..u16::MAX)?;
        }
        let mut report = RetentionReport::default();
        let removed = |r: &RetentionReport| r.removed_by_age + r.removed_by_size;
        // Age first, oldest first, for everyone alike.
        while removed(&report) < MAX_REMOVALS_PER_PASS {
            let Some((k, v)) = self.backend.first(Tree::BySeq)? else {
                break;
            };
            // A segment goes when its newest record is past the age.
            if decode_seq_entry(&v).is_some_and(|e| e.at.millis() >= cutoff) {
                break;
            }
            self.remove_entry(&k, &v)?;
            report.removed_by_age += 1;
        }
        // Over the size cap: the largest holder gives up its oldest records first. The journal
        // is nobody's until sealed, so when it holds a good part of the cap (a cap small next to
        // a round of records) it is sealed whole first: who holds what is then known, and the
        // cap always holds.
        let journal_heavy = self.journal_bytes > self.retention.max_bytes / 4;
        for seal_all in [journal_heavy, true] {
            if self.bytes <= self.retention.max_bytes {
                break;
            }
            if seal_all && self.journal_bytes > 0 {
                self.seal(0..u16::MAX)?;
            }
            self.evict(&mut report)?;
        }
        Ok(report)
    }

    fn flush(&mut self) -> Result<(), LogError> {
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
