//! Key layout. Records are keyed by model then sequence, so one model's history is one range
//! scan in append order; a second tree keyed by sequence alone orders everything by age for
//! retention.
//!
//! `records`: `namespace \0 model_id \0 seq(u64 BE)` → a segment of the model's records from
//! `seq` on (or, written before segments, the single record `seq`)
//! `by_seq`:  `seq(u64 BE)` → `0xff count(u32 BE) at(i64 BE) len(u32 BE) records-key` for a
//! segment, `at` being its newest record's time; `at(i64 BE) len(u32 BE) records-key` for a
//! single record
//! `journal`: `slot(u16 BE) seq(u64 BE)` → a segment of the records of one append whose models
//! fall in that slot, until the slot is sealed into per-model segments
//! `last_good`: `namespace \0 variant` → `desired(u32 BE) at(i64 BE)`, `at` being when that
//! count was first decided (the entry is rewritten only when the count changes)
//! `meta`: `learner \0 namespace \0 variant` → the variant's latest learner state (encoded)
//!
//! `\0` cannot occur in Kubernetes names or in model names served over HTTP, so the separator
//! keeps prefixes unambiguous.

use crate::record::{LastGood, ModelKey, Timestamp, VariantKey};

pub fn model_prefix(model: &ModelKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(model.namespace.len() + model.model_id.len() + 2);
    k.extend_from_slice(model.namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(model.model_id.as_bytes());
    k.push(0);
    k
}

pub fn namespace_prefix(namespace: &str) -> Vec<u8> {
    let mut k = namespace.as_bytes().to_vec();
    k.push(0);
    k
}

pub fn record_key(model: &ModelKey, seq: u64) -> Vec<u8> {
    let mut k = model_prefix(model);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn variant_key(v: &VariantKey) -> Vec<u8> {
    variant_key_of(&v.namespace, &v.name)
}

/// [`variant_key`] from its parts.
pub fn variant_key_of(namespace: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + name.len() + 1);
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Where a variant's latest learner state lives in the meta tree.
pub fn learner_key(v: &VariantKey) -> Vec<u8> {
    let mut k = b"learner\0".to_vec();
    k.extend_from_slice(&variant_key(v));
    k
}

pub fn parse_variant_key(bytes: &[u8]) -> Option<VariantKey> {
    let split = bytes.iter().position(|&b| b == 0)?;
    Some(VariantKey {
        namespace: String::from_utf8(bytes[..split].to_vec()).ok()?,
        name: String::from_utf8(bytes[split + 1..].to_vec()).ok()?,
    })
}

pub fn encode_last_good(v: LastGood) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&v.desired.to_be_bytes());
    out[4..].copy_from_slice(&v.at.0.to_be_bytes());
    out
}

pub fn decode_last_good(bytes: &[u8]) -> Option<LastGood> {
    let desired = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let at = i64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
    Some(LastGood {
        desired,
        at: Timestamp(at),
    })
}

/// Marks a `by_seq` entry of a segment. An entry of a single record starts with its time, whose
/// first byte is 0 for any time before the year 4 million.
const SEGMENT_ENTRY: u8 = 0xff;

/// An entry of the `by_seq` tree: what is stored where, how big, how many records, and the time
/// of its newest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqEntry<'a> {
    pub at: Timestamp,
    pub len: u32,
    pub count: u32,
    pub record_key: &'a [u8],
}

/// Value of the `by_seq` tree for a segment.
pub fn encode_seq_entry(e: SeqEntry<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(17 + e.record_key.len());
    v.push(SEGMENT_ENTRY);
    v.extend_from_slice(&e.count.to_be_bytes());
    v.extend_from_slice(&e.at.0.to_be_bytes());
    v.extend_from_slice(&e.len.to_be_bytes());
    v.extend_from_slice(e.record_key);
    v
}

pub fn decode_seq_entry(bytes: &[u8]) -> Option<SeqEntry<'_>> {
    let (count, rest) = match bytes.first()? {
        &SEGMENT_ENTRY => (
            u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?),
            &bytes[5..],
        ),
        _ => (1, bytes),
    };
    let at = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let len = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
    Some(SeqEntry {
        at: Timestamp(at),
        len,
        count,
        record_key: &rest[12..],
    })
}

/// Key of a journal entry: the slot its models fall in, then the sequence number of its first
/// record, so a slot is one range scan in append order.
pub fn journal_key(slot: u16, seq: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(&slot.to_be_bytes());
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// A model's hash: FNV-1a (64 bits) over `namespace \0 modelID`. Stable across processes,
/// builds and versions: shards and journal slots are chosen by it, and every replica (and every
/// release reading a log) must agree.
pub fn model_hash(model: &ModelKey) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = model
        .namespace
        .bytes()
        .chain(std::iter::once(0))
        .chain(model.model_id.bytes());
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The journal slot of a model among `slots`.
pub fn journal_slot(model: &ModelKey, slots: u16) -> u16 {
    (model_hash(model) % u64::from(slots.max(1))) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_sort_by_model_then_sequence() {
        let a = ModelKey::new("ns", "m");
        let b = ModelKey::new("ns", "m2");
        let mut keys = vec![record_key(&b, 1), record_key(&a, 256), record_key(&a, 2)];
        keys.sort();
        assert_eq!(
            keys,
            [record_key(&a, 2), record_key(&a, 256), record_key(&b, 1)]
        );
        assert!(record_key(&a, 9).starts_with(&model_prefix(&a)));
        assert!(!record_key(&b, 9).starts_with(&model_prefix(&a)));
    }

    #[test]
    fn seq_entries_of_segments_and_of_single_records_decode() {
        let rkey = record_key(&ModelKey::new("ns", "m"), 7);
        let entry = SeqEntry {
            at: Timestamp(1_700_000_000_000),
            len: 321,
            count: 40,
            record_key: &rkey,
        };
        assert_eq!(decode_seq_entry(&encode_seq_entry(entry)), Some(entry));
        // As written before segments: time, length, key.
        let mut single = 1_700_000_000_000i64.to_be_bytes().to_vec();
        single.extend_from_slice(&99u32.to_be_bytes());
        single.extend_from_slice(&rkey);
        assert_eq!(
            decode_seq_entry(&single),
            Some(SeqEntry {
                at: Timestamp(1_700_000_000_000),
                len: 99,
                count: 1,
                record_key: &rkey,
            })
        );
        assert_eq!(decode_seq_entry(&[0xff, 1]), None);
    }

    #[test]
    fn variant_and_last_good_round_trip() {
        let v = VariantKey::new("llm-d", "llama-a100");
        assert_eq!(parse_variant_key(&variant_key(&v)), Some(v));
        let lg = LastGood {
            desired: 7,
            at: Timestamp(1_700_000_000_123),
        };
        assert_eq!(decode_last_good(&encode_last_good(lg)), Some(lg));
        assert_eq!(decode_last_good(&[1, 2]), None);
    }
}
