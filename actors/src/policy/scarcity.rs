//! Deciding under scarcity: the replicas every model wants, fitted into a finite pool of
//! accelerators.
//!
//! Each model decides as if accelerators were unlimited; this step runs over all of them once
//! they have. When what they want fits the pool, nothing changes. When it does not:
//!
//! 1. **Floors first.** The replicas a variant's scaler keeps whatever is published (its
//!    minimum) hold their GPUs before anything is shared: publishing less would not free them.
//! 2. **Priority.** Models are served by their service class's priority, the lowest number
//!    first; a level gets nothing until every level above it has all it wants that fits.
//! 3. **Max-min fair among equals.** Within a level, GPUs go replica by replica to the model
//!    holding the fewest GPUs so far (ties: the model's key): a model wanting less than an
//!    equal share keeps all of it, and what it leaves is shared by the others.
//! 4. **Spill-over.** A model whose next wanted replica no longer fits its accelerator gets, one
//!    for one, a replica of another of its variants whose accelerator has room (a replica of
//!    another variant serves the same model; the two variants' throughputs are not compared).
//!
//! 5. **Growth into what is free now.** A variant grows beyond the replicas it has only into
//!    accelerators no replica holds at this moment: a cut takes effect at once, but what it
//!    frees is given out once the cut replicas are gone (a scaler takes its time to scale down),
//!    in the same order. So a published count never waits Pending for another model's replicas.
//!
//! Nothing granted exceeds the pool, and no replica added waits for one. Pure: plain data in,
//! plain data out.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use wva_storage::{ModelKey, VariantKey};

/// GPUs each accelerator type can give the variants this controller manages (what the nodes
/// offer, less what other pods hold, within any quota). An accelerator type not listed is not
/// limited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    pub gpus: BTreeMap<String, u32>,
    /// Quotas of one namespace on one accelerator type: (namespace, accelerator) → GPUs. A
    /// namespace's variants hold no more of that type than its quota, whatever the pool has.
    pub namespace_gpus: BTreeMap<(String, String), u32>,
}

impl Pool {
    /// GPUs of an accelerator type, `None` when it is not limited.
    pub fn capacity(&self, accelerator: &str) -> Option<u32> {
        self.gpus.get(accelerator).copied()
    }

    /// Whether anything is limited at all.
    pub fn is_limited(&self) -> bool {
        !self.gpus.is_empty() || !self.namespace_gpus.is_empty()
    }

    /// Whether a claim's accelerator is limited, for it or its namespace.
    pub fn limits(&self, claim: &Claim) -> bool {
        claim.gpus_per_replica > 0
            && (self.gpus.contains_key(&claim.accelerator)
                || self
                    .namespace_gpus
                    .contains_key(&(claim.variant.namespace.clone(), claim.accelerator.clone())))
    }
}

/// What one variant asks of the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub variant: VariantKey,
    pub model: ModelKey,
    pub accelerator: String,
    /// GPUs one replica holds (0: it holds none and is never cut).
    pub gpus_per_replica: u32,
    /// The model's service-class priority: lower numbers are served first.
    pub priority: i64,
    /// The count the model's decision wanted.
    pub wanted: u32,
    /// Replicas the variant's scaler keeps whatever is published (its minimum).
    pub floor: u32,
    /// Replicas it has now: they hold their accelerators until they are gone, whatever is
    /// published (a scaler takes its time to scale down).
    pub current: u32,
}

impl Claim {
    fn gpus(&self, replicas: u32) -> u64 {
        u64::from(self.gpus_per_replica) * u64::from(replicas)
    }
}

/// What one variant was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub variant: VariantKey,
    pub wanted: u32,
    /// The count to publish.
    pub granted: u32,
    /// Of `granted`, replicas given in place of another variant of the same model whose
    /// accelerator was full.
    pub spilled_in: u32,
}

impl Grant {
    /// Whether the variant got fewer replicas than it wanted.
    pub fn is_cut(&self) -> bool {
        self.granted < self.wanted
    }
}

/// Who holds an accelerator type's GPUs after the allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub model: ModelKey,
    pub priority: i64,
    pub gpus: u64,
}

/// The outcome over all claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// One per claim, in the claims' order.
    pub grants: Vec<Grant>,
    /// Whether the pool bound anyone (otherwise every grant is what was wanted).
    pub scarce: bool,
    /// Per limited accelerator type: its GPUs, and who holds them, most first.
    pub holders: BTreeMap<String, (u32, Vec<Holder>)>,
    /// The namespace quotas that were used up: (namespace, accelerator) → GPUs.
    pub quotas: BTreeMap<(String, String), u32>,
}

impl Allocation {
    /// Why a cut variant got less than it wanted, naming the pool and who holds it.
    pub fn explain(&self, claims: &[Claim], index: usize) -> Option<String> {
        let (claim, grant) = (claims.get(index)?, self.grants.get(index)?);
        if !grant.is_cut() {
            return None;
        }
        let mut text = format!(
            "wanted {} replicas, got {}: the {} pool",
            grant.wanted, grant.granted, claim.accelerator
        );
        let quota = self
            .quotas
            .get(&(claim.variant.namespace.clone(), claim.accelerator.clone()));
        if let Some(gpus) = quota {
            text.push_str(&format!(
                " quota of namespace {} ({gpus} GPUs) is used up",
                claim.variant.namespace
            ));
        } else if let Some((gpus, holders)) = self.holders.get(&claim.accelerator) {
            let others: Vec<String> = holders
                .iter()
                .filter(|h| h.model != claim.model)
                .take(3)
                .map(|h| format!("{} {} GPUs (priority {})", h.model, h.gpus, h.priority))
                .collect();
            text.push_str(&format!(" of {gpus} GPUs is full"));
            if !others.is_empty() {
                text.push_str(&format!(", held by {}", others.join(", ")));
                let more = holders
                    .iter()
                    .filter(|h| h.model != claim.model)
                    .count()
                    .saturating_sub(3);
                if more > 0 {
                    text.push_str(&format!(" and {more} more"));
                }
            }
        }
        let spilled: u32 = claims
            .iter()
            .zip(&self.grants)
            .filter(|(c, _)| c.model == claim.model)
            .map(|(_, g)| g.spilled_in)
            .sum();
        if spilled > 0 {
            text.push_str(&format!(
                "; the model got {spilled} replicas of another variant instead"
            ));
        }
        Some(text)
    }
}

/// GPUs not yet given, per accelerator type and per namespace quota (absent: not limited).
struct Room {
    pool: BTreeMap<String, u64>,
    quotas: BTreeMap<(String, String), u64>,
}

impl Room {
    fn new(pool: &Pool) -> Self {
        Self {
            pool: pool
                .gpus
                .iter()
                .map(|(acc, &gpus)| (acc.clone(), u64::from(gpus)))
                .collect(),
            quotas: pool
                .namespace_gpus
                .iter()
                .map(|(k, &gpus)| (k.clone(), u64::from(gpus)))
                .collect(),
        }
    }

    fn quota_key(claim: &Claim) -> (String, String) {
        (claim.variant.namespace.clone(), claim.accelerator.clone())
    }

    fn fits(&self, claim: &Claim) -> bool {
        let need = u64::from(claim.gpus_per_replica);
        need == 0
            || (self
                .pool
                .get(&claim.accelerator)
                .is_none_or(|&left| left >= need)
                && self
                    .quotas
                    .get(&Self::quota_key(claim))
                    .is_none_or(|&left| left >= need))
    }

    fn take(&mut self, claim: &Claim, replicas: u32) {
        if let Some(left) = self.pool.get_mut(&claim.accelerator) {
            *left = left.saturating_sub(claim.gpus(replicas));
        }
        if let Some(left) = self.quotas.get_mut(&Self::quota_key(claim)) {
            *left = left.saturating_sub(claim.gpus(replicas));
        }
    }
}

/// Fits the claims into the pool by the rules in this module's documentation.
pub fn allocate(pool: &Pool, claims: &[Claim]) -> Allocation {
    let wanted_gpus = |acc: &str| -> u64 {
        claims
            .iter()
            .filter(|c| c.accelerator == acc)
            .map(|c| c.gpus(c.wanted.max(c.floor)))
            .sum()
    };
    let wanted_in = |ns: &str, acc: &str| -> u64 {
        claims
            .iter()
            .filter(|c| c.accelerator == acc && c.variant.namespace == ns)
            .map(|c| c.gpus(c.wanted.max(c.floor)))
            .sum()
    };
    // What stays until the scalers act: the replicas there are, or more where wanted.
    let held_gpus = |acc: &str| -> u64 {
        claims
            .iter()
            .filter(|c| c.accelerator == acc)
            .map(|c| c.gpus(c.wanted.max(c.floor).max(c.current)))
            .sum()
    };
    let scarce =
        pool.gpus.iter().any(|(acc, &gpus)| {
            wanted_gpus(acc) > u64::from(gpus) || held_gpus(acc) > u64::from(gpus)
        }) || pool
            .namespace_gpus
            .iter()
            .any(|((ns, acc), &gpus)| wanted_in(ns, acc) > u64::from(gpus));
    let mut grants: Vec<Grant> = claims
        .iter()
        .map(|c| Grant {
            variant: c.variant.clone(),
            wanted: c.wanted,
            granted: c.wanted,
            spilled_in: 0,
        })
        .collect();
    if scarce {
        share(pool, claims, &mut grants);
        grow_into_free(pool, claims, &mut grants);
    }
    // Quotas a cut claim may have run into: those with no room left for one more replica.
    let quotas = pool
        .namespace_gpus
        .iter()
        .filter(|&((ns, acc), &gpus)| {
            let used: u64 = claims
                .iter()
                .zip(&grants)
                .filter(|(c, _)| c.accelerator == *acc && c.variant.namespace == *ns)
                .map(|(c, g)| c.gpus(g.granted))
                .sum();
            let smallest = claims
                .iter()
                .filter(|c| c.accelerator == *acc && c.variant.namespace == *ns)
                .map(|c| u64::from(c.gpus_per_replica))
                .filter(|&g| g > 0)
                .min()
                .unwrap_or(1);
            scarce && used + smallest > u64::from(gpus)
        })
        .map(|(k, &gpus)| (k.clone(), gpus))
        .collect();
    Allocation {
        holders: holders(pool, claims, &grants),
        grants,
        scarce,
        quotas,
    }
}

/// The scarce case: floors, then each priority level in turn.
fn share(pool: &Pool, claims: &[Claim], grants: &mut [Grant]) {
    let mut room = Room::new(pool);
    // Replicas each claim got for itself (spilled-in ones apart).
    let mut own: Vec<u32> = claims.iter().map(|c| c.floor.min(c.wanted)).collect();
    // The scaler keeps its minimum running even above what is wanted.
    for claim in claims {
        room.take(claim, claim.floor);
    }
    let mut spilled_in = vec![0u32; claims.len()];
    let mut levels: BTreeMap<i64, BTreeMap<&ModelKey, Vec<usize>>> = BTreeMap::new();
    for (i, claim) in claims.iter().enumerate() {
        levels
            .entry(claim.priority)
            .or_default()
            .entry(&claim.model)
            .or_default()
            .push(i);
    }
    for models in levels.values() {
        // The model holding the fewest GPUs of this level goes next.
        let mut queue: BinaryHeap<Reverse<(u64, &ModelKey)>> = models
            .iter()
            .map(|(model, idx)| {
                let held = idx.iter().map(|&i| claims[i].gpus(own[i])).sum();
                Reverse((held, *model))
            })
            .collect();
        while let Some(Reverse((held, model))) = queue.pop() {
            let idx = &models[model];
            let next_own = idx
                .iter()
                .copied()
                .find(|&i| own[i] < claims[i].wanted && room.fits(&claims[i]));
            let given = match next_own {
                Some(i) => {
                    own[i] += 1;
                    Some(i)
                }
                None => spill(claims, idx, &own, &mut spilled_in, &room),
            };
            if let Some(i) = given {
                room.take(&claims[i], 1);
                queue.push(Reverse((held + claims[i].gpus(1), model)));
            }
        }
    }
    for (i, grant) in grants.iter_mut().enumerate() {
        grant.granted = own[i] + spilled_in[i];
        grant.spilled_in = spilled_in[i];
    }
}

/// Limits each variant's growth beyond the replicas it has (or its floor) to accelerators no
/// replica holds now, served by priority, then in the claims' order.
fn grow_into_free(pool: &Pool, claims: &[Claim], grants: &mut [Grant]) {
    let mut free = Room::new(pool);
    for claim in claims {
        free.take(claim, claim.current.max(claim.floor));
    }
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by_key(|&i| claims[i].priority);
    for i in order {
        let (claim, grant) = (&claims[i], &mut grants[i]);
        let base = claim.current.max(claim.floor);
        if grant.granted <= base {
            continue;
        }
        let mut grown = 0;
        while base + grown < grant.granted && free.fits(claim) {
            free.take(claim, 1);
            grown += 1;
        }
        let kept = base + grown;
        // Spilled-in replicas are the first to wait.
        grant.spilled_in = grant
            .spilled_in
            .min(kept.saturating_sub(claim.wanted.min(kept)));
        grant.granted = kept;
    }
}

/// One replica of another variant of the model, in place of one its full accelerators cannot
/// take: while the model's spilled replicas are fewer than what it still misses.
fn spill(
    claims: &[Claim],
    idx: &[usize],
    own: &[u32],
    spilled_in: &mut [u32],
    room: &Room,
) -> Option<usize> {
    let missing: u32 = idx
        .iter()
        .map(|&i| claims[i].wanted.saturating_sub(own[i]))
        .sum();
    let spilled: u32 = idx.iter().map(|&i| spilled_in[i]).sum();
    if spilled >= missing {
        return None;
    }
    let target = idx.iter().copied().find(|&i| room.fits(&claims[i]))?;
    spilled_in[target] += 1;
    Some(target)
}

/// Who holds each limited accelerator type's GPUs, most first (ties: the model's key).
fn holders(
    pool: &Pool,
    claims: &[Claim],
    grants: &[Grant],
) -> BTreeMap<String, (u32, Vec<Holder>)> {
    pool.gpus
        .iter()
        .map(|(acc, &gpus)| {
            let mut by_model: BTreeMap<&ModelKey, (i64, u64)> = BTreeMap::new();
            for (claim, grant) in claims.iter().zip(grants) {
                if claim.accelerator == *acc && grant.granted > 0 && claim.gpus_per_replica > 0 {
                    let held = by_model.entry(&claim.model).or_insert((claim.priority, 0));
                    held.1 += claim.gpus(grant.granted);
                }
            }
            let mut list: Vec<Holder> = by_model
                .into_iter()
                .map(|(model, (priority, gpus))| Holder {
                    model: model.clone(),
                    priority,
                    gpus,
                })
                .collect();
            list.sort_by(|a, b| b.gpus.cmp(&a.gpus).then_with(|| a.model.cmp(&b.model)));
            (acc.clone(), (gpus, list))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(model: &str, variant: &str, acc: &str, priority: i64, wanted: u32) -> Claim {
        Claim {
            variant: VariantKey::new("ns", variant),
            model: ModelKey::new("ns", model),
            accelerator: acc.into(),
            gpus_per_replica: 1,
            priority,
            wanted,
            floor: 0,
            current: 0,
        }
    }

    fn pool(entries: &[(&str, u32)]) -> Pool {
        Pool {
            gpus: entries.iter().map(|(a, g)| (a.to_string(), *g)).collect(),
            ..Default::default()
        }
    }

    fn granted(a: &Allocation) -> Vec<u32> {
        a.grants.iter().map(|g| g.granted).collect()
    }

    #[test]
    fn a_pool_large_enough_changes_nothing() {
        let claims = vec![
            claim("a", "a-h100", "H100", 1, 4),
            claim("b", "b-h100", "H100", 5, 4),
            claim("c", "c-l4", "L4", 5, 30),
        ];
        let a = allocate(&pool(&[("H100", 8)]), &claims);
        assert!(!a.scarce);
        assert_eq!(granted(&a), vec![4, 4, 30]);
        assert!(a.grants.iter().all(|g| !g.is_cut() && g.spilled_in == 0));
        assert_eq!(a.explain(&claims, 0), None);
    }

    #[test]
    fn the_lower_priority_number_is_served_first() {
        let claims = vec![
            claim("low", "low-h100", "H100", 10, 6),
            claim("high", "high-h100", "H100", 1, 6),
        ];
        let a = allocate(&pool(&[("H100", 8)]), &claims);
        assert!(a.scarce);
        assert_eq!(granted(&a), vec![2, 6]);
        let why = a.explain(&claims, 0).expect("a cut is explained");
        assert!(why.contains("wanted 6 replicas, got 2"), "{why}");
        assert!(why.contains("ns/high 6 GPUs (priority 1)"), "{why}");
        assert_eq!(a.explain(&claims, 1), None);
    }

    #[test]
    fn equals_share_max_min_fairly_in_gpus() {
        // 10 GPUs among three equals wanting 2, 8 and 8: the small one keeps its 2, the
        // others split the rest, 4 each.
        let claims = vec![
            claim("a", "a", "H100", 5, 2),
            claim("b", "b", "H100", 5, 8),
            claim("c", "c", "H100", 5, 8),
        ];
        let a = allocate(&pool(&[("H100", 10)]), &claims);
        assert_eq!(granted(&a), vec![2, 4, 4]);
    }

    #[test]
    fn fairness_counts_gpus_not_replicas() {
        // A model whose replicas take 4 GPUs each and one whose take 1 share 12 GPUs: 6 each
        // as far as whole replicas allow (one 4-GPU replica, then the 1-GPU model catches up).
        let mut big = claim("big", "big", "H100", 5, 3);
        big.gpus_per_replica = 4;
        let claims = vec![big, claim("small", "small", "H100", 5, 12)];
        let a = allocate(&pool(&[("H100", 12)]), &claims);
        let gpus: Vec<u32> = a
            .grants
            .iter()
            .zip(&claims)
            .map(|(g, c)| g.granted * c.gpus_per_replica)
            .collect();
        assert_eq!(gpus.iter().sum::<u32>(), 12);
        assert!(gpus[0].abs_diff(gpus[1]) <= 4, "{gpus:?}");
    }

    #[test]
    fn floors_hold_their_gpus_before_anything_is_shared() {
        let mut low = claim("low", "low", "H100", 10, 4);
        low.floor = 3;
        let claims = vec![low, claim("high", "high", "H100", 1, 8)];
        let a = allocate(&pool(&[("H100", 8)]), &claims);
        assert_eq!(granted(&a), vec![3, 5]);
    }

    #[test]
    fn a_full_accelerator_spills_over_to_another_variant_of_the_model() {
        let claims = vec![
            claim("high", "high-h100", "H100", 1, 6),
            claim("high", "high-a100", "A100", 1, 0),
            claim("low", "low-h100", "H100", 5, 2),
        ];
        let a = allocate(&pool(&[("H100", 4), ("A100", 8)]), &claims);
        assert_eq!(granted(&a), vec![4, 2, 0]);
        assert_eq!(a.grants[1].spilled_in, 2);
        let why = a.explain(&claims, 0).expect("a cut is explained");
        assert!(
            why.contains("2 replicas of another variant instead"),
            "{why}"
        );
        // The low-priority model, cut to nothing, is told who holds the H100s.
        let why = a.explain(&claims, 2).expect("a cut is explained");
        assert!(why.contains("ns/high 4 GPUs (priority 1)"), "{why}");
    }

    #[test]
    fn spill_over_stops_when_the_model_misses_nothing() {
        let claims = vec![
            claim("m", "m-h100", "H100", 1, 3),
            claim("m", "m-a100", "A100", 1, 1),
        ];
        let a = allocate(&pool(&[("H100", 2), ("A100", 10)]), &claims);
        // One H100 replica missing: one more A100 replica, no more.
        assert_eq!(granted(&a), vec![2, 2]);
        assert_eq!(a.grants[1].spilled_in, 1);
    }

    #[test]
    fn a_namespace_quota_caps_its_variants_and_says_so() {
        let mut other = claim("b", "b", "H100", 5, 4);
        other.variant.namespace = "team-b".into();
        other.model.namespace = "team-b".into();
        let claims = vec![claim("a", "a", "H100", 1, 6), other];
        let mut p = pool(&[("H100", 16)]);
        p.namespace_gpus.insert(("ns".into(), "H100".into()), 4);
        let a = allocate(&p, &claims);
        assert!(a.scarce);
        assert_eq!(granted(&a), vec![4, 4]);
        let why = a.explain(&claims, 0).expect("a cut is explained");
        assert!(why.contains("quota of namespace ns (4 GPUs)"), "{why}");
        // Within its quota, a namespace changes nothing.
        p.namespace_gpus.insert(("ns".into(), "H100".into()), 6);
        assert!(!allocate(&p, &claims).scarce);
    }

    #[test]
    fn freed_accelerators_are_given_once_the_cut_replicas_are_gone() {
        let mut low = claim("low", "low", "H100", 10, 6);
        low.current = 6;
        let mut high = claim("high", "high", "H100", 1, 6);
        high.current = 2;
        let claims = vec![low, high];
        let a = allocate(&pool(&[("H100", 8)]), &claims);
        // The low model is cut to 2 at once; the high one grows only into what is free now.
        assert_eq!(granted(&a), vec![2, 2]);
        assert!(a.grants[0].is_cut() && a.grants[1].is_cut());
        // Once the low model's replicas are gone, the high one gets all it wants.
        let mut claims = claims;
        claims[0].current = 2;
        assert_eq!(
            granted(&allocate(&pool(&[("H100", 8)]), &claims)),
            vec![2, 6]
        );
    }

    #[test]
    fn nothing_granted_exceeds_the_pool() {
        let mut claims = Vec::new();
        for (i, acc) in ["H100", "A100", "L4"].iter().cycle().take(30).enumerate() {
            let mut c = claim(
                &format!("m{}", i % 7),
                &format!("v{i}"),
                acc,
                (i % 3) as i64,
                (i % 5) as u32 * 2,
            );
            c.gpus_per_replica = 1 + (i % 4) as u32;
            c.floor = u32::from(i % 6 == 0);
            claims.push(c);
        }
        let p = pool(&[("H100", 9), ("A100", 13)]);
        let a = allocate(&p, &claims);
        assert!(a.scarce);
        for (acc, &gpus) in &p.gpus {
            let used: u64 = claims
                .iter()
                .zip(&a.grants)
                .filter(|(c, _)| c.accelerator == *acc)
                .map(|(c, g)| c.gpus(g.granted))
                .sum();
            let floors: u64 = claims
                .iter()
                .filter(|c| c.accelerator == *acc)
                .map(|c| c.gpus(c.floor.min(c.wanted)))
                .sum();
            assert!(
                used <= u64::from(gpus).max(floors),
                "{acc}: {used} of {gpus}"
            );
        }
        // L4 is not limited: every L4 claim gets what it wanted.
        for (c, g) in claims.iter().zip(&a.grants) {
            if c.accelerator == "L4" {
                assert_eq!(g.granted, c.wanted);
            }
        }
        // The same claims give the same allocation.
        assert_eq!(allocate(&p, &claims), a);
    }
}
