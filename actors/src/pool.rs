//! A finite accelerator pool at the registry: a cycle's decisions, every model's, fitted into it
//! ([`crate::policy::scarcity`]) before they go out. The models decide as if accelerators were
//! unlimited; what cannot be scheduled is cut here, said on the VA, counted, and logged so
//! `wva replay` can fit the replayed decisions the same way.

use std::collections::{BTreeMap, HashMap};

use wva_storage::{RecordedClaim, ScarcityRecord};

use crate::effects::Effects;
use crate::messages::{ModelKey, StatusUpdate, Timestamp, VariantKey};
use crate::policy::outputs::{PoolState, ScalingChange};
use crate::policy::scarcity::{Allocation, Claim, Pool, allocate};
use crate::telemetry::Telemetry;

/// The claims of a cycle on a limited pool, before the models' decisions are in: each with
/// `wanted` at what the variant runs now, which is what a model that decides nothing this
/// cycle (it failed, or timed out) keeps holding.
#[derive(Debug, Clone)]
pub struct PendingClaims {
    pub pool: Pool,
    pub claims: Vec<Claim>,
}

/// What fitting a cycle into the pool changed.
#[derive(Debug, Default)]
pub struct Fitted {
    /// Per model, its variants given a count other than the one decided, and that count.
    pub granted: BTreeMap<ModelKey, Vec<(String, u32)>>,
    /// The claims as the fit left them (each wanting what it was granted): what a decision
    /// made by an event before the next cycle is fitted against, the other models keeping
    /// what they were given.
    pub settled: Option<PendingClaims>,
}

impl PendingClaims {
    /// Fits the cycle's published counts into the pool, rewriting what is cut: the published
    /// count, the status (desired count, reason and `AcceleratorsAvailable`), and, when the
    /// pool bound anyone, a [`ScarcityRecord`] after the models' records.
    pub fn fit(mut self, effects: &mut Effects, telemetry: &Telemetry, at: Timestamp) -> Fitted {
        let published: HashMap<&VariantKey, usize> = effects
            .published
            .iter()
            .enumerate()
            .map(|(i, p)| (&p.variant, i))
            .collect();
        let decided: Vec<Option<usize>> = self
            .claims
            .iter_mut()
            .map(|claim| match published.get(&claim.variant) {
                Some(&i) => {
                    claim.wanted = effects.published[i].desired;
                    Some(i)
                }
                None => {
                    // Nothing is published for it this cycle: it keeps what it runs.
                    claim.floor = claim.wanted;
                    None
                }
            })
            .collect();
        let allocation = allocate(&self.pool, &self.claims);
        self.gauge(&allocation, telemetry);
        let states: Vec<PoolState> = (0..self.claims.len())
            .map(|i| match allocation.explain(&self.claims, i) {
                Some(why) => PoolState::Cut(why),
                None => PoolState::Fits,
            })
            .collect();
        let mut fitted = Fitted::default();
        let mut settled = self.clone();
        for (claim, grant) in settled.claims.iter_mut().zip(&allocation.grants) {
            claim.wanted = grant.granted;
        }
        let mut by_variant: HashMap<&VariantKey, usize> = HashMap::new();
        for (i, (claim, grant)) in self.claims.iter().zip(&allocation.grants).enumerate() {
            by_variant.insert(&claim.variant, i);
            let Some(p) = decided[i] else {
                continue;
            };
            if grant.granted != grant.wanted {
                // The scaling action counted is the one published, not the one wanted.
                let published = &mut effects.published[p];
                let cause = published.change.as_ref().map_or("scarcity", |c| c.reason);
                published.change = ScalingChange::between(published.baseline, grant.granted, cause);
                published.desired = grant.granted;
                fitted
                    .granted
                    .entry(claim.model.clone())
                    .or_default()
                    .push((claim.variant.name.clone(), grant.granted));
            }
        }
        for status in &mut effects.statuses {
            let StatusUpdate::Decided {
                variant,
                desired,
                reason,
                pool,
                ..
            } = status
            else {
                continue;
            };
            let Some(&i) = by_variant.get(&*variant) else {
                continue;
            };
            let grant = &allocation.grants[i];
            if grant.granted != *desired {
                *reason = match &states[i] {
                    PoolState::Cut(why) => format!("{reason}; {why}"),
                    _ => format!(
                        "{reason}; {} more replicas in place of another variant whose accelerators are full",
                        grant.spilled_in
                    ),
                };
                *desired = grant.granted;
            }
            *pool = states[i].clone();
        }
        if allocation.scarce {
            effects
                .records
                .push(wva_storage::Record::Scarcity(self.record(&allocation, at)));
        }
        fitted.settled = Some(settled);
        fitted
    }

    fn gauge(&self, allocation: &Allocation, telemetry: &Telemetry) {
        telemetry.pool_gpus.reset();
        telemetry.pool_granted_gpus.reset();
        for (accelerator, (gpus, holders)) in &allocation.holders {
            telemetry
                .pool_gpus
                .with_label_values(&[accelerator])
                .set(i64::from(*gpus));
            let granted: u64 = holders.iter().map(|h| h.gpus).sum();
            telemetry
                .pool_granted_gpus
                .with_label_values(&[accelerator])
                .set(i64::try_from(granted).unwrap_or(i64::MAX));
        }
        let mut cut: BTreeMap<&ModelKey, i64> = BTreeMap::new();
        for (claim, grant) in self.claims.iter().zip(&allocation.grants) {
            *cut.entry(&claim.model).or_insert(0) +=
                i64::from(grant.wanted.saturating_sub(grant.granted));
        }
        telemetry.scarcity_cut.reset();
        for (model, replicas) in cut {
            telemetry
                .scarcity_cut
                .with_label_values(&[&model.namespace, &model.model_id])
                .set(replicas);
        }
    }

    fn record(&self, allocation: &Allocation, at: Timestamp) -> ScarcityRecord {
        ScarcityRecord {
            model: ScarcityRecord::key(),
            at,
            pool: self
                .pool
                .gpus
                .iter()
                .map(|(acc, &gpus)| (acc.clone(), gpus))
                .collect(),
            quotas: self
                .pool
                .namespace_gpus
                .iter()
                .map(|((ns, acc), &gpus)| (ns.clone(), acc.clone(), gpus))
                .collect(),
            claims: self
                .claims
                .iter()
                .zip(&allocation.grants)
                .map(|(c, g)| RecordedClaim {
                    variant: c.variant.clone(),
                    model_id: c.model.model_id.clone(),
                    accelerator: c.accelerator.clone(),
                    gpus_per_replica: c.gpus_per_replica,
                    priority: c.priority,
                    wanted: c.wanted,
                    floor: c.floor,
                    current: c.current,
                    granted: g.granted,
                })
                .collect(),
        }
    }
}

/// The pool and claims a [`ScarcityRecord`] holds, with `wanted` as recorded.
pub fn recorded_claims(record: &ScarcityRecord) -> (Pool, Vec<Claim>) {
    let pool = Pool {
        gpus: record.pool.iter().cloned().collect(),
        namespace_gpus: record
            .quotas
            .iter()
            .map(|(ns, acc, gpus)| ((ns.clone(), acc.clone()), *gpus))
            .collect(),
    };
    let claims = record
        .claims
        .iter()
        .map(|c| Claim {
            variant: c.variant.clone(),
            model: ModelKey::new(c.variant.namespace.clone(), c.model_id.clone()),
            accelerator: c.accelerator.clone(),
            gpus_per_replica: c.gpus_per_replica,
            priority: c.priority,
            wanted: c.wanted,
            floor: c.floor,
            current: c.current,
        })
        .collect();
    (pool, claims)
}
