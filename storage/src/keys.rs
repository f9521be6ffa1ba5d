//! Key layout. Records are keyed by model then sequence, so one model's history is one range
//! scan in append order; a second tree keyed by sequence alone orders everything by age for
//! retention.
//!
//! `records`: `namespace \0 model_id \0 seq(u64 BE)` → encoded record
//! `by_seq`:  `seq(u64 BE)` → `at(i64 BE) len(u32 BE) records-key`
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
    let mut k = namespace_prefix(&v.namespace);
    k.extend_from_slice(v.name.as_bytes());
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

/// Value of the `by_seq` tree: when the record was made, its size, and where it is.
pub fn encode_seq_entry(at: Timestamp, len: u32, record_key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + record_key.len());
    v.extend_from_slice(&at.0.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(record_key);
    v
}

pub fn decode_seq_entry(bytes: &[u8]) -> Option<(Timestamp, u32, &[u8])> {
    let at = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
    Some((Timestamp(at), len, &bytes[12..]))
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
