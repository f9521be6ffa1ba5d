//! The emulated cluster of one model: per variant, a Deployment of emulated vLLM servers that
//! start after a delay; a gateway that routes each request to the least-loaded ready replica of
//! any variant (as llm-d's scheduler prefers; ties spread at random) and holds requests while no
//! replica is ready.
//!
//! A replica removed by a scale-down terminates gracefully, as a Kubernetes pod does: it leaves
//! the router at once, finishes the requests it holds within the termination grace period
//! (Kubernetes' default, 30 s) while its GPU is still paid for, and hands back to the gateway
//! whatever is left when the period ends (the client retries).

use std::collections::{BTreeMap, VecDeque};

use super::profiles::AcceleratorProfile;
use super::server::{Completed, Request, Server};

/// Requests that wait longer than this at the gateway fail (client timeout).
pub const GATEWAY_TIMEOUT_MS: f64 = 300_000.0;

/// How long a terminating replica may finish its requests (`terminationGracePeriodSeconds`).
pub const TERMINATION_GRACE_MS: f64 = 30_000.0;

/// A replica removed by a scale-down, finishing what it holds.
#[derive(Debug, Clone)]
pub struct Terminating {
    pub server: Server,
    pub busy_until: Option<f64>,
    /// When the grace period ends.
    pub until_ms: f64,
}

/// The candidate with the least load; among equals, one chosen by `key` (the request's id),
/// so that ties spread over the replicas as the Gateway API inference extension's picker
/// spreads them (it shuffles the endpoints before taking the best score), rather than all
/// going to the first replica of the first variant. Deterministic for a given request. Two
/// passes over the candidates (the least load and how many share it, then the chosen one), so
/// routing a request allocates nothing.
pub fn least_loaded<T>(
    candidates: impl Iterator<Item = (T, usize)> + Clone,
    key: u64,
) -> Option<T> {
    let (least, tied) = candidates
        .clone()
        .fold((usize::MAX, 0u64), |(least, tied), (_, load)| {
            match load.cmp(&least) {
                std::cmp::Ordering::Less => (load, 1),
                std::cmp::Ordering::Equal => (least, tied + 1),
                std::cmp::Ordering::Greater => (least, tied),
            }
        });
    if tied == 0 {
        return None;
    }
    let chosen = (mix(key) % tied) as usize;
    candidates
        .filter(|&(_, load)| load == least)
        .nth(chosen)
        .map(|(candidate, _)| candidate)
}

/// SplitMix64's finaliser: consecutive ids land on unrelated replicas.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One variant's Deployment.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub profile: AcceleratorProfile,
    /// Cost of one replica per hour.
    pub cost_per_hour: f64,
    pub startup_ms: f64,
    pub servers: Vec<Server>,
    /// When each server's current iteration ends (`None`: idle).
    pub busy_until: Vec<Option<f64>>,
    /// Replica-milliseconds accumulated (allocated GPUs, starting or ready).
    pub replica_ms: f64,
    pub scaling_actions: u32,
    pub peak_replicas: u32,
    /// Requests this variant finished, including on replicas since removed.
    pub completed: usize,
    next_pod: u64,
    pub pod_names: Vec<String>,
    /// Replicas scaled away that still finish their requests.
    pub terminating: Vec<Terminating>,
    /// Replicas of the Deployment the pool has no accelerator for: Pending, not started, by
    /// when each was created (the scheduler binds the oldest first).
    pub pending: VecDeque<f64>,
    /// Replica-milliseconds spent Pending.
    pub pending_ms: f64,
}

impl Variant {
    pub fn new(
        name: &str,
        profile: AcceleratorProfile,
        cost_per_hour: f64,
        startup_ms: f64,
        replicas: u32,
    ) -> Self {
        let mut v = Self {
            name: name.to_string(),
            profile,
            cost_per_hour,
            startup_ms,
            servers: Vec::new(),
            busy_until: Vec::new(),
            replica_ms: 0.0,
            scaling_actions: 0,
            peak_replicas: 0,
            completed: 0,
            next_pod: 0,
            pod_names: Vec::new(),
            terminating: Vec::new(),
            pending: VecDeque::new(),
            pending_ms: 0.0,
        };
        for _ in 0..replicas {
            // Initial replicas are already up when the run starts.
            v.add_server(0.0);
        }
        v.peak_replicas = replicas;
        v
    }

    fn add_server(&mut self, ready_at_ms: f64) {
        self.servers
            .push(Server::new(self.profile.clone(), ready_at_ms));
        self.busy_until.push(None);
        self.pod_names
            .push(format!("{}-{}", self.name, self.next_pod));
        self.next_pod += 1;
    }

    /// The Deployment's replicas: started ones and Pending ones.
    pub fn replicas(&self) -> u32 {
        (self.servers.len() + self.pending.len()) as u32
    }

    pub fn ready(&self, now_ms: f64) -> u32 {
        self.servers.iter().filter(|s| s.is_ready(now_ms)).count() as u32
    }

    /// GPUs held: the Deployment's replicas and those still terminating.
    pub fn allocated(&self) -> u32 {
        (self.servers.len() + self.terminating.len()) as u32
    }
}

/// The model's variants and its gateway.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub variants: Vec<Variant>,
    pub gateway: VecDeque<Request>,
    pub completed: Vec<Completed>,
    pub failed: u64,
}

impl Cluster {
    pub fn new(variants: Vec<Variant>) -> Self {
        Self {
            variants,
            gateway: VecDeque::new(),
            completed: Vec::new(),
            failed: 0,
        }
    }

    /// Routes a request: the ready replica with the fewest requests inside, else the gateway.
    /// The replica starts on it at the next [`Cluster::advance`].
    pub fn route(&mut self, request: Request, now_ms: f64) {
        let best = least_loaded(
            self.variants
                .iter()
                .enumerate()
                .flat_map(|(vi, v)| v.servers.iter().enumerate().map(move |(si, s)| (vi, si, s)))
                .filter(|(_, _, s)| s.is_ready(now_ms))
                .map(|(vi, si, s)| ((vi, si), s.in_system())),
            request.id,
        );
        match best {
            Some((vi, si)) => self.variants[vi].servers[si].enqueue(request),
            None => self.gateway.push_back(request),
        }
    }

    /// Runs, at `now_ms`, every iteration that ends by then, and starts the ready replicas that
    /// are idle but were given work. Finished requests are added to `completed` (and counted
    /// per variant); `on_done` sees each with its (variant, server).
    pub fn advance(&mut self, now_ms: f64, mut on_done: impl FnMut(usize, usize, &Completed)) {
        let mut handed_back = false;
        for (vi, v) in self.variants.iter_mut().enumerate() {
            for (si, (server, busy_until)) in v
                .servers
                .iter_mut()
                .zip(v.busy_until.iter_mut())
                .enumerate()
            {
                let finished = self.completed.len();
                // Bounded: every iteration takes at least the profile's base time.
                while let Some(until) = busy_until.filter(|u| *u <= now_ms) {
                    *busy_until = server.step(until, &mut self.completed);
                }
                if busy_until.is_none() && server.is_ready(now_ms) && !server.is_idle() {
                    *busy_until = server.step(now_ms, &mut self.completed);
                }
                v.completed += self.completed.len() - finished;
                for c in &self.completed[finished..] {
                    on_done(vi, si, c);
                }
            }
            let base = v.servers.len();
            for (j, t) in v.terminating.iter_mut().enumerate() {
                let finished = self.completed.len();
                while let Some(until) = t.busy_until.filter(|u| *u <= now_ms) {
                    t.busy_until = t.server.step(until, &mut self.completed);
                }
                if t.busy_until.is_none() && !t.server.is_idle() && now_ms < t.until_ms {
                    t.busy_until = t.server.step(now_ms, &mut self.completed);
                }
                v.completed += self.completed.len() - finished;
                for c in &self.completed[finished..] {
                    on_done(vi, base + j, c);
                }
            }
            // Gone once done, or at the end of the grace period with what is left handed back.
            let mut k = 0;
            while k < v.terminating.len() {
                let t = &mut v.terminating[k];
                if t.server.is_idle() && t.busy_until.is_none() {
                    v.terminating.swap_remove(k);
                } else if now_ms >= t.until_ms {
                    let orphans = t.server.drain();
                    handed_back |= !orphans.is_empty();
                    self.gateway.extend(orphans);
                    v.terminating.swap_remove(k);
                } else {
                    k += 1;
                }
            }
        }
        // Keep the gateway in arrival order so timeouts stay correct.
        if handed_back {
            self.gateway
                .make_contiguous()
                .sort_by(|a, b| a.arrival_ms.total_cmp(&b.arrival_ms));
        }
    }

    /// When the next iteration of any replica ends, or a grace period runs out.
    pub fn next_step(&self) -> f64 {
        self.variants
            .iter()
            .flat_map(|v| {
                v.busy_until.iter().flatten().copied().chain(
                    v.terminating
                        .iter()
                        .map(|t| t.busy_until.map_or(t.until_ms, |b| b.min(t.until_ms))),
                )
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Sends held requests to replicas that became ready; fails those held too long.
    pub fn release_gateway(&mut self, now_ms: f64) {
        while self
            .gateway
            .front()
            .is_some_and(|r| now_ms - r.arrival_ms > GATEWAY_TIMEOUT_MS)
        {
            self.gateway.pop_front();
            self.failed += 1;
        }
        if !self.variants.iter().any(|v| v.ready(now_ms) > 0) {
            return;
        }
        while let Some(r) = self.gateway.pop_front() {
            self.route(r, now_ms);
        }
    }

    /// Sets a variant's replica count. New replicas start after the start-up delay; removed
    /// ones (starting first, then the least loaded) leave the router and terminate gracefully.
    pub fn scale(&mut self, vi: usize, replicas: u32, now_ms: f64) {
        let v = &mut self.variants[vi];
        let current = v.replicas();
        if replicas == current {
            return;
        }
        v.scaling_actions += 1;
        if replicas > current {
            // Pending until [`schedule`] finds them an accelerator.
            v.pending.extend((current..replicas).map(|_| now_ms));
            v.peak_replicas = v.peak_replicas.max(replicas);
            return;
        }
        // Pending replicas hold nothing and go first, the newest first.
        let unstarted = v.pending.len().min((current - replicas) as usize);
        v.pending.truncate(v.pending.len() - unstarted);
        for _ in replicas + unstarted as u32..current {
            let victim = (0..v.servers.len())
                .min_by_key(|&i| {
                    (
                        v.servers[i].is_ready(now_ms),
                        v.servers[i].in_system(),
                        std::cmp::Reverse(i),
                    )
                })
                .unwrap_or(0);
            let server = v.servers.remove(victim);
            let busy_until = v.busy_until.remove(victim);
            v.pod_names.remove(victim);
            // One that never started holds nothing and goes at once.
            if server.is_ready(now_ms) && !server.is_idle() {
                v.terminating.push(Terminating {
                    server,
                    busy_until,
                    until_ms: now_ms + TERMINATION_GRACE_MS,
                });
            }
        }
    }

    /// Replica counts per variant: name → (replicas, ready).
    pub fn deployments(&self, now_ms: f64) -> BTreeMap<String, (u32, u32)> {
        self.variants
            .iter()
            .map(|v| (v.name.clone(), (v.replicas(), v.ready(now_ms))))
            .collect()
    }
}

/// Accelerators per type (one per replica) the nodes have; a type not listed is not limited.
pub type NodePool = BTreeMap<String, u32>;

/// Binds Pending replicas of every cluster on the nodes (`pool`), the oldest first, as the
/// Kubernetes scheduler does for pods of equal priority: each starts now and is ready after
/// its start-up. Returns how many started.
pub fn schedule(clusters: &mut [&mut Cluster], pool: &NodePool, now_ms: f64) -> usize {
    let mut started = 0;
    loop {
        let mut held: BTreeMap<&str, u32> = BTreeMap::new();
        for c in clusters.iter() {
            for v in &c.variants {
                *held.entry(v.profile.name).or_insert(0) += v.allocated();
            }
        }
        let room = |accelerator: &str| {
            pool.get(accelerator)
                .is_none_or(|&total| held.get(accelerator).copied().unwrap_or(0) < total)
        };
        let oldest = clusters
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| {
                c.variants.iter().enumerate().filter_map(move |(vi, v)| {
                    v.pending
                        .front()
                        .map(|&since| (since, ci, vi, v.profile.name))
                })
            })
            .filter(|(.., accelerator)| room(accelerator))
            .min_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))))
            .map(|(_, ci, vi, _)| (ci, vi));
        let Some((ci, vi)) = oldest else {
            return started;
        };
        let v = &mut clusters[ci].variants[vi];
        v.pending.pop_front();
        let ready_at = now_ms + v.startup_ms;
        v.add_server(ready_at);
        started += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::{a100, h100};

    fn cluster() -> Cluster {
        Cluster::new(vec![
            Variant::new("a", h100(), 6.9, 60_000.0, 1),
            Variant::new("b", h100(), 6.9, 60_000.0, 1),
            Variant::new("c", a100(), 3.7, 60_000.0, 1),
        ])
    }

    fn pool(entries: &[(&str, u32)]) -> NodePool {
        entries.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    }

    fn shape(v: &Variant) -> (usize, usize) {
        (v.servers.len(), v.pending.len())
    }

    #[test]
    fn the_least_loaded_replica_wins_and_ties_spread_over_every_replica() {
        // The least load wins whatever the key.
        for key in 0..50 {
            assert_eq!(
                least_loaded([(0, 3), (1, 1), (2, 2)].into_iter(), key),
                Some(1)
            );
        }
        assert_eq!(least_loaded(std::iter::empty::<(u8, usize)>(), 7), None);
        // Among equals, requests in a row land on every one of them, none on most.
        let mut hits = [0u32; 4];
        for key in 0..4_000 {
            let pick = least_loaded((0..4).map(|i| (i, 0)), key).expect("one");
            hits[pick] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1_200).contains(&h)), "{hits:?}");
        // In the cluster: idle replicas of every variant share the requests, not the first.
        let mut per_variant = [0u32; 3];
        for id in 0..300 {
            let mut c = cluster();
            c.route(
                Request {
                    id,
                    arrival_ms: 70_000.0,
                    prompt_tokens: 10,
                    output_tokens: 1,
                },
                70_000.0,
            );
            let taken = c
                .variants
                .iter()
                .position(|v| v.servers.iter().any(|s| s.in_system() > 0))
                .expect("routed to a ready replica");
            per_variant[taken] += 1;
        }
        assert!(per_variant.iter().all(|&n| n > 60), "{per_variant:?}");
    }

    #[test]
    fn replicas_beyond_the_pool_are_pending_and_start_when_one_frees() {
        let mut c = cluster();
        let nodes = pool(&[("H100", 3)]);
        c.scale(0, 3, 0.0);
        assert_eq!(schedule(&mut [&mut c], &nodes, 0.0), 1);
        // One H100 left after the two running: one starts, one is Pending.
        assert_eq!(
            (c.variants[0].replicas(), shape(&c.variants[0])),
            (3, (2, 1))
        );
        // The A100 is not limited.
        c.scale(2, 5, 0.0);
        schedule(&mut [&mut c], &nodes, 0.0);
        assert_eq!(shape(&c.variants[2]), (5, 0));
        // "b" scales to zero: its (idle) replica goes at once and the Pending one starts.
        c.scale(1, 0, 1_000.0);
        assert_eq!(schedule(&mut [&mut c], &nodes, 1_000.0), 1);
        assert_eq!(shape(&c.variants[0]), (3, 0));
        assert_eq!(c.variants[0].servers[2].ready_at_ms, 61_000.0);
    }

    #[test]
    fn a_scale_down_takes_pending_replicas_first_and_no_pool_changes_nothing() {
        let mut c = cluster();
        c.scale(0, 4, 0.0);
        schedule(&mut [&mut c], &pool(&[("H100", 2)]), 0.0);
        assert_eq!(shape(&c.variants[0]), (1, 3));
        c.scale(0, 2, 0.0);
        assert_eq!(shape(&c.variants[0]), (1, 1));
        let mut free = cluster();
        free.scale(0, 4, 0.0);
        schedule(&mut [&mut free], &NodePool::new(), 0.0);
        assert_eq!(shape(&free.variants[0]), (4, 0));
    }

    #[test]
    fn the_oldest_pending_replica_of_any_cluster_is_bound_first() {
        let (mut first, mut second) = (cluster(), cluster());
        let nodes = pool(&[("H100", 4)]);
        second.scale(0, 3, 1_000.0);
        first.scale(0, 3, 2_000.0);
        // 4 H100s, 4 held by the initial replicas: nothing starts.
        assert_eq!(schedule(&mut [&mut first, &mut second], &nodes, 2_000.0), 0);
        first.scale(1, 0, 3_000.0);
        second.scale(1, 0, 3_000.0);
        // Two free: the second cluster asked first, so both go to it.
        assert_eq!(schedule(&mut [&mut first, &mut second], &nodes, 3_000.0), 2);
        assert_eq!(shape(&second.variants[0]), (3, 0));
        assert_eq!(shape(&first.variants[0]), (1, 2));
    }
}
