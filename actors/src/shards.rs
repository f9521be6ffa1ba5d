//! Which models this replica decides when replicas share them (`--shards N`): every model key
//! hashes to one of N shards, and a replica decides, logs and publishes only the models of the
//! shards it holds (their Leases are taken in the controller). With one shard, or without
//! sharding, it holds them all.

use std::collections::BTreeSet;

use crate::messages::ModelKey;

/// The shard of a model among `shards`, by its stable hash (every replica must agree, whatever
/// it runs).
pub fn shard_of(model: &ModelKey, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    (wva_storage::keys::model_hash(model) % u64::from(shards)) as u32
}

/// The shards this replica holds, out of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFilter {
    pub shards: u32,
    pub held: BTreeSet<u32>,
}

impl Default for ShardFilter {
    /// Unsharded: every model.
    fn default() -> Self {
        Self::all()
    }
}

impl ShardFilter {
    /// One shard, held: every model is this replica's.
    pub fn all() -> Self {
        Self {
            shards: 1,
            held: BTreeSet::from([0]),
        }
    }

    pub fn holds(&self, model: &ModelKey) -> bool {
        self.held.contains(&shard_of(model, self.shards))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_always_lands_on_the_same_shard_and_models_spread() {
        let m = ModelKey::new("llm-d", "meta-llama/Llama-3.1-8B-Instruct");
        // Fixed values: a change of the hash would move models between replicas on upgrade.
        assert_eq!(shard_of(&m, 1), 0);
        assert_eq!(shard_of(&m, 4), shard_of(&m.clone(), 4));
        let spread: BTreeSet<u32> = (0..200)
            .map(|i| shard_of(&ModelKey::new("ns", format!("model-{i}")), 8))
            .collect();
        assert_eq!(spread.len(), 8, "200 models reach every one of 8 shards");
        let filter = ShardFilter {
            shards: 8,
            held: BTreeSet::from([shard_of(&m, 8)]),
        };
        assert!(filter.holds(&m));
        assert!(ShardFilter::all().holds(&m));
    }
}
