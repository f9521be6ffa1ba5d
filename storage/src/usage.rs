//! Who holds the log's bytes: per namespace, and per model within it. A log over its size cap
//! takes records from the namespace holding the most, and within it from its largest model, so
//! one tenant's many or oversized records cost that tenant's history and nobody else's (a
//! global oldest-first cap would let them push out every other namespace's).

use std::collections::{BinaryHeap, HashMap};

/// The namespace and model parts of a record key (`namespace \0 model \0 seq`), as the model
/// prefix (`namespace \0 model \0`) and the namespace's length within it.
pub(crate) fn split_record_key(rkey: &[u8]) -> Option<(&[u8], usize)> {
    let prefix = rkey.get(..rkey.len().checked_sub(8)?)?;
    let ns_len = prefix.iter().position(|&b| b == 0)?;
    (prefix.last() == Some(&0)).then_some((prefix, ns_len))
}

#[derive(Debug, Default)]
struct NamespaceUsage {
    bytes: u64,
    /// Model prefix (`namespace \0 model \0`) → bytes.
    models: HashMap<Vec<u8>, u64>,
}

/// Bytes kept per namespace and model.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    namespaces: HashMap<Vec<u8>, NamespaceUsage>,
}

impl Usage {
    /// Counts `bytes` more for the record stored under `rkey`.
    pub(crate) fn add(&mut self, rkey: &[u8], bytes: u64) {
        let Some((prefix, ns_len)) = split_record_key(rkey) else {
            return;
        };
        let ns = match self.namespaces.get_mut(&prefix[..ns_len]) {
            Some(ns) => ns,
            None => self
                .namespaces
                .entry(prefix[..ns_len].to_vec())
                .or_default(),
        };
        ns.bytes += bytes;
        match ns.models.get_mut(prefix) {
            Some(m) => *m += bytes,
            None => {
                ns.models.insert(prefix.to_vec(), bytes);
            }
        }
    }

    /// Counts `bytes` less for the record stored under `rkey`; forgets what reaches zero.
    pub(crate) fn sub(&mut self, rkey: &[u8], bytes: u64) {
        if let Some((prefix, _)) = split_record_key(rkey) {
            self.sub_model(prefix, bytes);
        }
    }

    /// Counts `bytes` less for the model with this prefix (`namespace \0 model \0`).
    pub(crate) fn sub_model(&mut self, model_prefix: &[u8], bytes: u64) {
        let Some(ns_len) = model_prefix.iter().position(|&b| b == 0) else {
            return;
        };
        let Some(ns) = self.namespaces.get_mut(&model_prefix[..ns_len]) else {
            return;
        };
        ns.bytes = ns.bytes.saturating_sub(bytes);
        if let Some(m) = ns.models.get_mut(model_prefix) {
            *m = m.saturating_sub(bytes);
            if *m == 0 {
                ns.models.remove(model_prefix);
            }
        }
        if ns.bytes == 0 || ns.models.is_empty() {
            self.namespaces.remove(&model_prefix[..ns_len]);
        }
    }

    /// Bytes held by one model (by its prefix).
    pub(crate) fn model_bytes(&self, model_prefix: &[u8]) -> u64 {
        let ns_len = model_prefix
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(model_prefix.len());
        self.namespaces
            .get(&model_prefix[..ns_len])
            .and_then(|n| n.models.get(model_prefix))
            .copied()
            .unwrap_or(0)
    }

    /// Bytes held by one namespace.
    pub(crate) fn namespace_bytes(&self, namespace: &[u8]) -> u64 {
        self.namespaces.get(namespace).map_or(0, |n| n.bytes)
    }

    /// A plan for taking records from the largest holders, for one retention pass.
    pub(crate) fn eviction(&self) -> Eviction {
        Eviction {
            namespaces: self
                .namespaces
                .iter()
                .map(|(ns, u)| (u.bytes, ns.clone()))
                .collect(),
            models: HashMap::new(),
        }
    }
}

/// The largest namespace and its largest model, kept up to date as records are taken (heaps
/// built once per pass: a pass at the cap takes about one record per model).
#[derive(Debug)]
pub(crate) struct Eviction {
    namespaces: BinaryHeap<(u64, Vec<u8>)>,
    models: HashMap<Vec<u8>, BinaryHeap<(u64, Vec<u8>)>>,
}

impl Eviction {
    /// The model prefix to take the oldest record from next.
    pub(crate) fn next(&mut self, usage: &Usage) -> Option<Vec<u8>> {
        loop {
            let (bytes, ns) = self.namespaces.peek()?.clone();
            // Entries go stale as records are taken; refresh and look again.
            let now = usage.namespace_bytes(&ns);
            if now != bytes {
                self.namespaces.pop();
                if now > 0 {
                    self.namespaces.push((now, ns));
                }
                continue;
            }
            let Some(ns_usage) = usage.namespaces.get(&ns) else {
                self.namespaces.pop();
                continue;
            };
            let heap = self.models.entry(ns.clone()).or_insert_with(|| {
                ns_usage
                    .models
                    .iter()
                    .map(|(m, b)| (*b, m.clone()))
                    .collect()
            });
            while let Some((b, model)) = heap.peek() {
                let now = ns_usage.models.get(model).copied().unwrap_or(0);
                if now == *b {
                    return Some(model.clone());
                }
                let model = model.clone();
                heap.pop();
                if now > 0 {
                    heap.push((now, model));
                }
            }
            // Nothing left to take in this namespace.
            self.namespaces.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, model: &str, seq: u64) -> Vec<u8> {
        let mut k = format!("{ns}\0{model}\0").into_bytes();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    #[test]
    fn the_largest_namespace_then_its_largest_model_goes_first() {
        let mut usage = Usage::default();
        usage.add(&key("small", "m", 0), 100);
        usage.add(&key("big", "a", 1), 300);
        usage.add(&key("big", "b", 2), 200);
        let mut plan = usage.eviction();
        assert_eq!(plan.next(&usage), Some(b"big\0a\0".to_vec()));
        usage.sub(&key("big", "a", 1), 300);
        assert_eq!(plan.next(&usage), Some(b"big\0b\0".to_vec()));
        usage.sub(&key("big", "b", 2), 200);
        assert_eq!(plan.next(&usage), Some(b"small\0m\0".to_vec()));
        usage.sub(&key("small", "m", 0), 100);
        assert_eq!(plan.next(&usage), None);
        assert!(usage.namespaces.is_empty(), "nothing left behind");
    }

    #[test]
    fn keys_that_are_not_record_keys_are_ignored() {
        let mut usage = Usage::default();
        usage.add(b"short", 10);
        usage.add(b"no-separator-at-all", 10);
        assert!(usage.namespaces.is_empty());
        assert_eq!(
            split_record_key(&key("ns", "m", 7)),
            Some((&b"ns\0m\0"[..], 2))
        );
    }
}
