//! Shards held through Kubernetes Leases (`--shards N`, CONTRACT section 17): replicas share the
//! models, each model deciding, logging and publishing on exactly one replica at a time.
//!
//! Every shard has a Lease, `<id>-shard-<i>`, taken and renewed as the leader Lease is (see
//! [`super::leader`]: compare-and-swap on the resourceVersion, taken over once its holder stops
//! renewing). Every replica also renews a membership Lease, `<id>-member-<name>`, so that the
//! replicas know how many they are and aim at a fair share, ceil(N / live replicas): free
//! shards are taken up to it, abandoned ones (their holder stopped renewing) whatever the share,
//! since a replica holds as many as it can get rather than leave models undecided. A replica
//! that dies stops renewing: within a lease duration its shards are abandoned and the survivors
//! take them. One that joins is below its share: the others give their extras back (first
//! dropping them from what they decide, then releasing the Lease a round later) and it takes
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{Api, ListParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wva_actors::shards::ShardFilter;

use super::leader::{Elector, LeaseTiming, Step, decide};

/// The Lease of shard `i`.
pub fn shard_lease(id: &str, i: u32) -> String {
    format!("{id}-shard-{i}")
}

/// This replica's membership Lease: the identity's characters that a Lease name allows.
pub fn member_lease(id: &str, identity: &str) -> String {
    let name: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = format!("{id}-member-{}", name.trim_matches('-'));
    name.chars()
        .take(253)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// A shard's Lease as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// Held by this replica.
    Mine,
    /// No Lease yet, or released: anyone may take it.
    Free,
    /// Its holder stopped renewing: whoever can must take it, or its models go undecided.
    Abandoned,
    /// Held and renewed by another replica (its identity).
    Theirs(String),
}

/// What to do with each shard this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Held, and kept: renew.
    pub renew: Vec<u32>,
    /// Free (up to the fair share) or abandoned (any): take.
    pub take: Vec<u32>,
    /// Held beyond the fair share while another replica has less than its share: stop
    /// deciding them, then release.
    pub give_up: Vec<u32>,
}

/// Pure: the plan for `states` (each shard, from this replica's view) when `others` are the
/// other live replicas' identities. Each replica aims at its fair share, ceil(N / replicas):
/// free shards are taken up to it; abandoned ones are taken whatever the share (a replica
/// holds as many as it can get, so no model goes undecided while one replica lives); extras
/// are given back only to a replica below its share.
pub fn plan(states: &[ShardState], others: &BTreeSet<String>) -> Plan {
    let shards = states.len();
    let replicas = others.len() + 1;
    let (fair, floor) = (shards.div_ceil(replicas), shards / replicas);
    let mine: Vec<u32> = (0..shards as u32)
        .filter(|&i| states[i as usize] == ShardState::Mine)
        .collect();
    let someone_short = others.iter().any(|who| {
        states
            .iter()
            .filter(|s| matches!(s, ShardState::Theirs(h) if h == who))
            .count()
            < floor
    });
    let (renew, give_up) = if mine.len() > fair && someone_short {
        (mine[..fair].to_vec(), mine[fair..].to_vec())
    } else {
        (mine, Vec::new())
    };
    let mut room = fair.saturating_sub(renew.len());
    let take = (0..shards as u32)
        .filter(|&i| match states[i as usize] {
            ShardState::Abandoned => true,
            ShardState::Free if room > 0 => {
                room -= 1;
                true
            }
            _ => false,
        })
        .collect();
    Plan {
        renew,
        take,
        give_up,
    }
}

/// A shard Lease's state at `now_ms`, for `me`.
fn state_of(spec: Option<&LeaseSpec>, me: &str, now_ms: i64, duration: Duration) -> ShardState {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("");
    match decide(spec, me, now_ms, duration) {
        Step::Renew => ShardState::Mine,
        Step::Create => ShardState::Free,
        Step::TakeOver if holder.is_empty() => ShardState::Free,
        Step::TakeOver => ShardState::Abandoned,
        Step::Wait => ShardState::Theirs(holder.to_string()),
    }
}

/// The holder of a Lease held and renewed recently enough, at `now_ms`.
fn live_holder(spec: &LeaseSpec, now_ms: i64, default_duration: Duration) -> Option<String> {
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    (decide(Some(spec), "", now_ms, default_duration) == Step::Wait).then(|| holder.to_string())
}

/// One listing of the Leases.
struct Look {
    leases: BTreeMap<u32, Lease>,
    states: Vec<ShardState>,
    others: BTreeSet<String>,
}

/// Runs the shards of `id` for this replica until `stop`: the shards it holds go to `held`
/// (as the models' filter) and whether it holds any to `leader`. On stop every Lease it holds
/// is released, so the others need not wait for them to expire.
#[derive(Debug)]
pub struct Coordinator {
    /// The Leases of the controller's namespace.
    pub leases: Api<Lease>,
    pub id: String,
    pub identity: String,
    pub shards: u32,
    pub timing: LeaseTiming,
}

impl Coordinator {
    fn elector(&self, name: &str) -> Elector {
        Elector::on(self.leases.clone(), name, &self.identity, self.timing)
    }

    /// The shards' Leases (as listed, for the round's compare-and-swap) and their states, and
    /// the other live replicas.
    async fn look(&self) -> Result<Look, kube::Error> {
        let list = self.leases.list(&ListParams::default()).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let shard_prefix = format!("{}-shard-", self.id);
        let member_prefix = format!("{}-member-", self.id);
        let mut leases: BTreeMap<u32, Lease> = BTreeMap::new();
        let mut others = BTreeSet::new();
        for lease in list.items {
            let name = lease.metadata.name.clone().unwrap_or_default();
            if let Some(i) = name
                .strip_prefix(&shard_prefix)
                .and_then(|i| i.parse().ok())
            {
                leases.insert(i, lease);
            } else if name.starts_with(&member_prefix)
                && let Some(spec) = &lease.spec
                && let Some(holder) = live_holder(spec, now_ms, self.timing.lease_duration)
                && holder != self.identity
            {
                others.insert(holder);
            }
        }
        let states = (0..self.shards)
            .map(|i| {
                state_of(
                    leases.get(&i).and_then(|l| l.spec.as_ref()),
                    &self.identity,
                    now_ms,
                    self.timing.lease_duration,
                )
            })
            .collect();
        Ok(Look {
            leases,
            states,
            others,
        })
    }

    pub async fn run(
        self,
        held_tx: watch::Sender<ShardFilter>,
        leader: watch::Sender<bool>,
        stop: CancellationToken,
    ) {
        let member = self.elector(&member_lease(&self.id, &self.identity));
        let mut last_renewed: BTreeMap<u32, tokio::time::Instant> = BTreeMap::new();
        // Dropped from what this replica decides last round; their Leases are released now.
        let mut releasing: BTreeSet<u32> = BTreeSet::new();
        // The Leases cannot be listed (RBAC of an unsharded install, say): said once per
        // cause, not every retry.
        let mut unlisted: Option<String> = None;
        loop {
            if let Err(e) = member.try_acquire_or_renew().await {
                tracing::warn!(error = %e, "shards: cannot renew this replica's membership Lease");
            }
            for i in std::mem::take(&mut releasing) {
                let name = shard_lease(&self.id, i);
                match self.elector(&name).release().await {
                    Ok(()) => tracing::info!(shard = i, lease = %name, "gave the shard up"),
                    Err(e) => {
                        tracing::warn!(shard = i, error = %e, "cannot release the shard's Lease; it expires instead")
                    }
                }
            }
            let planned = match self.look().await {
                Ok(look) => {
                    if unlisted.take().is_some() {
                        tracing::info!("shards: the Leases can be listed again");
                    }
                    Some((plan(&look.states, &look.others), look.leases))
                }
                Err(e) => {
                    let cause = e.to_string();
                    if unlisted.as_deref() != Some(cause.as_str()) {
                        tracing::warn!(error = %cause, "shards: cannot list the Leases, so this replica holds no shard and decides nothing; it needs get, list and update on Leases in its namespace (see the RBAC rules in docs/running.md)");
                        unlisted = Some(cause);
                    }
                    None
                }
            };
            let now = tokio::time::Instant::now();
            if let Some((p, mut leases)) = planned {
                for &i in p.renew.iter().chain(&p.take) {
                    // On the Lease as listed: no second read per shard.
                    match self
                        .elector(&shard_lease(&self.id, i))
                        .round(leases.remove(&i))
                        .await
                    {
                        Ok(true) => {
                            last_renewed.insert(i, now);
                        }
                        Ok(false) => {
                            last_renewed.remove(&i);
                        }
                        Err(e) => {
                            tracing::warn!(shard = i, error = %e, "cannot renew the shard's Lease")
                        }
                    }
                }
                for &i in &p.give_up {
                    last_renewed.remove(&i);
                    releasing.insert(i);
                }
            }
            // Keep a shard through brief failures, up to the renew deadline, as the leader does.
            last_renewed.retain(|_, t| now.duration_since(*t) < self.timing.renew_deadline);
            let held: BTreeSet<u32> = last_renewed.keys().copied().collect();
            let before = held_tx.borrow().held.clone();
            if held != before {
                for i in held.difference(&before) {
                    tracing::info!(shard = i, identity = %self.identity, "took the shard");
                }
                for i in before.difference(&held) {
                    tracing::warn!(shard = i, identity = %self.identity, "stopped deciding the shard's models");
                }
                let _ = held_tx.send(ShardFilter {
                    shards: self.shards,
                    held: held.clone(),
                });
                let _ = leader.send(!held.is_empty());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry_period) => {}
                () = stop.cancelled() => break,
            }
        }
        // Stop deciding first, then let the Leases go.
        let held = held_tx.borrow().held.clone();
        let _ = held_tx.send(ShardFilter {
            shards: self.shards,
            held: BTreeSet::new(),
        });
        let _ = leader.send(false);
        for i in held.into_iter().chain(releasing) {
            let _ = self.elector(&shard_lease(&self.id, i)).release().await;
        }
        let _ = member.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::ShardState::*;
    use super::*;

    fn others(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn theirs(who: &str) -> ShardState {
        Theirs(who.into())
    }

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let p = plan(&[Free, Abandoned, Free, Free], &others(&[]));
        assert_eq!(p.take, [0, 1, 2, 3]);
        assert!(p.renew.is_empty() && p.give_up.is_empty());
    }

    #[test]
    fn a_replica_gives_its_extras_to_one_that_joins_and_the_newcomer_takes_them() {
        // Held all four; "b" appears holding none: keep two, give two up.
        let p = plan(&[Mine, Mine, Mine, Mine], &others(&["b"]));
        assert_eq!((p.renew, p.give_up), (vec![0, 1], vec![2, 3]));
        // The newcomer takes what was given back, up to its share.
        let p = plan(&[theirs("a"), theirs("a"), Free, Free], &others(&["a"]));
        assert_eq!(p.take, [2, 3]);
        // Five shards over two replicas: shares of three; the one with two gets no more.
        let p = plan(
            &[Mine, Mine, theirs("a"), theirs("a"), Free],
            &others(&["a"]),
        );
        assert_eq!((p.renew, p.take), (vec![0, 1], vec![4]));
        // Nobody is short: an extra is kept rather than left free.
        let p = plan(
            &[Mine, Mine, Mine, theirs("a"), theirs("a")],
            &others(&["a"]),
        );
        assert!(p.give_up.is_empty(), "{p:?}");
    }

    #[test]
    fn abandoned_shards_are_taken_whatever_the_share() {
        // The other replica stopped renewing its shards, though its membership still looks
        // alive: its models must not go undecided.
        let p = plan(&[Mine, Mine, Abandoned, Abandoned], &others(&["b"]));
        assert_eq!((p.renew, p.take), (vec![0, 1], vec![2, 3]));
        assert!(p.give_up.is_empty());
        // A live replica's renewed shards are left alone.
        let p = plan(&[Mine, Mine, theirs("b"), theirs("b")], &others(&["b"]));
        assert!(p.take.is_empty() && p.give_up.is_empty());
    }

    #[test]
    fn lease_names_are_valid_names() {
        assert_eq!(
            shard_lease("wva-controller-leader", 3),
            "wva-controller-leader-shard-3"
        );
        let m = member_lease("wva", "WVA-0_1234_18c4f");
        assert_eq!(m, "wva-member-wva-0-1234-18c4f");
        assert!(
            m.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
