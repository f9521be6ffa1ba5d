//! The right to act, as it stands at this instant: whether this instance holds the leader Lease,
//! and which models' shards it holds. Effects check it at the moment they would go out, after
//! the decision log is written, so that a cycle already running when a Lease is lost publishes
//! and writes nothing for the models it no longer covers (CONTRACT section 19). The values are
//! the elector's own channels: no message has to reach anyone first.

use tokio::sync::watch;

use crate::messages::ModelKey;
use crate::shards::ShardFilter;

/// Read-only view of leadership and held shards.
#[derive(Debug, Clone)]
pub struct Authority {
    leader: watch::Receiver<bool>,
    shards: watch::Receiver<ShardFilter>,
}

impl Authority {
    /// Follows the elector's channels.
    pub fn new(leader: watch::Receiver<bool>, shards: watch::Receiver<ShardFilter>) -> Self {
        Self { leader, shards }
    }

    /// Always leading, every model held: one instance without election (the simulator, tests).
    pub fn unconditional() -> Self {
        // A receiver keeps the last value after its sender is gone.
        let (_, leader) = watch::channel(true);
        let (_, shards) = watch::channel(ShardFilter::all());
        Self { leader, shards }
    }

    /// Whether this instance may act at all.
    pub fn leads(&self) -> bool {
        *self.leader.borrow()
    }

    /// Whether this instance may act for `model`: it leads and holds the model's shard.
    pub fn covers(&self, model: &ModelKey) -> bool {
        self.leads() && self.shards.borrow().holds(model)
    }

    /// Whether every model is held (no sharding, or every shard): no per-model check is needed.
    pub fn holds_every_shard(&self) -> bool {
        let filter = self.shards.borrow();
        filter.held.len() as u32 >= filter.shards
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::shards::shard_of;

    #[test]
    fn authority_follows_the_electors_channels_as_they_change() {
        let (leader_tx, leader) = watch::channel(true);
        let (shards_tx, shards) = watch::channel(ShardFilter::all());
        let authority = Authority::new(leader, shards);
        let model = ModelKey::new("ns", "llama");
        assert!(authority.covers(&model) && authority.holds_every_shard());
        let other = 1 - shard_of(&model, 2);
        shards_tx.send_replace(ShardFilter {
            shards: 2,
            held: BTreeSet::from([other]),
        });
        assert!(!authority.covers(&model), "its shard is no longer held");
        assert!(!authority.holds_every_shard());
        shards_tx.send_replace(ShardFilter::all());
        leader_tx.send_replace(false);
        assert!(!authority.leads() && !authority.covers(&model));
        drop(leader_tx);
        assert!(
            !authority.leads(),
            "the last word stands after the elector is gone"
        );
        assert!(Authority::unconditional().covers(&model));
    }
}
