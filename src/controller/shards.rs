//! Shards held through Kubernetes Leases (`--shards N`, CONTRACT section 17): replicas share the
//! models, each model deciding, logging and publishing on exactly one replica at a time.
//!
//! Every shard has a Lease, `<id>-shard-<i>`, taken and renewed as the leader Lease is (see
//! [`super::leader`]: compare-and-swap on the resourceVersion, taken over once its holder stops
//! renewing). Every replica also renews a membership Lease, `<id>-member-<name>`, so that the
//! replicas know how many they are: each holds at most its fair share, ceil(N / live replicas),
//! and takes free or expired shards up to it. A replica that dies stops renewing both: within a
//! lease duration the survivors count one member fewer and take its shards over; one that
//! joins raises the count, the others give their extra shards back (first dropping them from
//! what they decide, then releasing the Lease a round later), and it takes them.

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

/// What to do with each shard this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Held, and within the fair share: renew.
    pub renew: Vec<u32>,
    /// Free or expired, while below the fair share: take.
    pub take: Vec<u32>,
    /// Held beyond the fair share: stop deciding them, then release.
    pub give_up: Vec<u32>,
}

/// Pure: the plan for `steps` (each shard's Lease as it stands, from this replica's view) when
/// `members` replicas are alive (this one included).
pub fn plan(steps: &[Step], members: usize) -> Plan {
    let shards = steps.len();
    let fair = shards.div_ceil(members.max(1));
    let held: Vec<u32> = (0..shards as u32)
        .filter(|&i| steps[i as usize] == Step::Renew)
        .collect();
    let (renew, give_up) = if held.len() > fair {
        (held[..fair].to_vec(), held[fair..].to_vec())
    } else {
        (held, Vec::new())
    };
    let room = fair.saturating_sub(renew.len());
    let take = (0..shards as u32)
        .filter(|&i| matches!(steps[i as usize], Step::Create | Step::TakeOver))
        .take(room)
        .collect();
    Plan {
        renew,
        take,
        give_up,
    }
}

/// Whether a Lease is held and renewed recently enough, at `now_ms`.
fn alive(spec: &LeaseSpec, now_ms: i64, default_duration: Duration) -> bool {
    spec.holder_identity
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && decide(Some(spec), "", now_ms, default_duration) == Step::Wait
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

    /// The shards' Leases and the live members, as listed now.
    async fn look(&self) -> Result<(Vec<Step>, usize), kube::Error> {
        let list = self.leases.list(&ListParams::default()).await?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let shard_prefix = format!("{}-shard-", self.id);
        let member_prefix = format!("{}-member-", self.id);
        let mut specs: BTreeMap<u32, LeaseSpec> = BTreeMap::new();
        let mut members = 0usize;
        let me = member_lease(&self.id, &self.identity);
        for lease in list.items {
            let name = lease.metadata.name.unwrap_or_default();
            let spec = lease.spec.unwrap_or_default();
            if let Some(i) = name
                .strip_prefix(&shard_prefix)
                .and_then(|i| i.parse().ok())
            {
                specs.insert(i, spec);
            } else if name.starts_with(&member_prefix)
                && name != me
                && alive(&spec, now_ms, self.timing.lease_duration)
            {
                members += 1;
            }
        }
        let steps = (0..self.shards)
            .map(|i| {
                decide(
                    specs.get(&i),
                    &self.identity,
                    now_ms,
                    self.timing.lease_duration,
                )
            })
            .collect();
        // This replica counts itself whether or not its own Lease is in the list yet.
        Ok((steps, members + 1))
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
                Ok((steps, members)) => Some(plan(&steps, members)),
                Err(e) => {
                    tracing::warn!(error = %e, "shards: cannot list the Leases");
                    None
                }
            };
            let now = tokio::time::Instant::now();
            if let Some(p) = &planned {
                for &i in p.renew.iter().chain(&p.take) {
                    match self
                        .elector(&shard_lease(&self.id, i))
                        .try_acquire_or_renew()
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
    use super::*;
    use Step::*;

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let p = plan(&[Create, TakeOver, Create, Create], 1);
        assert_eq!(p.take, [0, 1, 2, 3]);
        assert!(p.renew.is_empty() && p.give_up.is_empty());
    }

    #[test]
    fn a_replica_keeps_its_fair_share_and_gives_the_rest_up_when_another_joins() {
        // Held all four; a second replica appears: keep two, give two up.
        let p = plan(&[Renew, Renew, Renew, Renew], 2);
        assert_eq!((p.renew, p.give_up), (vec![0, 1], vec![2, 3]));
        // The newcomer takes what is free, up to its share.
        let p = plan(&[Wait, Wait, TakeOver, TakeOver], 2);
        assert_eq!(p.take, [2, 3]);
        // Five shards over two replicas: shares of three, so nobody waits on a remainder.
        let p = plan(&[Renew, Renew, Wait, Wait, TakeOver], 2);
        assert_eq!((p.renew, p.take), (vec![0, 1], vec![4]));
    }

    #[test]
    fn a_survivor_takes_a_failed_replica_s_shards_once_they_expire() {
        // The other replica is gone (one member left): its shards show as expired.
        let p = plan(&[Renew, Renew, TakeOver, TakeOver], 1);
        assert_eq!((p.renew, p.take), (vec![0, 1], vec![2, 3]));
        // Still counted alive (its membership has not expired yet): wait.
        let p = plan(&[Renew, Renew, Wait, Wait], 2);
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
