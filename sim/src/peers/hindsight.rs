//! The hindsight bound: a replica schedule chosen with the whole load known in advance, the
//! yardstick every online policy is measured against.
//!
//! 1. **Fleets.** Every combination of replicas within the variants' bounds, ordered by cost;
//!    the ladder keeps those that carry more than every cheaper one (capacity measured per
//!    replica on the workload's own mix of lengths).
//! 2. **Misses, measured.** For each minute of the run and each fleet of the ladder, that
//!    minute's requests (after the minute before them, so the servers are as busy as they
//!    would be) are served by the emulated servers behind the same router; the requests that
//!    miss an objective or do not finish are counted. A fleet above one that misses nothing
//!    misses nothing, so the ladder is climbed only that far.
//! 3. **The schedule.** With a price per missed request (the knob), the fleet of every minute is
//!    chosen to minimise replica cost plus the price of its misses plus the cost of starting
//!    replicas, over the whole run at once (a shortest path over minutes and fleets). Replicas
//!    are started the start-up delay ahead, so each is ready when its minute begins, and let
//!    go when no minute within that delay needs them.
//!
//! Why it bounds: an online autoscaler sees the load only as it arrives, decides after its
//! signal has moved, waits the start-up delay after deciding, and keeps what it started while
//! it is unsure; this schedule has none of those delays and knows, per minute and per fleet,
//! what the servers will do with the very requests that arrive. Its price sweep traces the
//! cheapest cost for each number of misses it can find; no policy's point should lie beyond
//! it, and the frontier checks that on every workload it measures.

use crate::autoscaler::{Actuation, Autoscaler, View};
use crate::capacity::sustainable_rate;
use crate::cluster::{Cluster, Variant};
use crate::profiles;
use crate::results::SloTargets;
use crate::scenario::Scenario;
use crate::server::{Completed, Request};

/// What the hindsight bound's plan is chosen for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BoundTarget {
    /// Replica cost plus this price per missed request, least over the run (the knob).
    Price(f64),
    /// The fewest misses the plan is expected to have for at most this cost (what hindsight
    /// buys with what another policy spent).
    Budget(f64),
    /// The plan that avoids every miss it can foresee, with this many fleets of the ladder
    /// more in every minute: headroom for what no measurement of a minute alone shows.
    Headroom(u32),
    /// A plan one fleet up in every minute from the plan it raises, all within this budget:
    /// spread headroom instead of capacity placed where a minute alone needs it.
    BudgetWithHeadroom(f64),
    /// A plan in which every minute keeps the largest fleet of the minutes around it (two
    /// each side), within this budget: for loads whose bursts carry over from one minute into
    /// the next.
    BudgetHeld(f64),
    /// A plan searched within this budget with the simulator as the judge: after each run,
    /// capacity moves from minutes that missed nothing to the minutes that missed most.
    Searched(f64),
    /// The run of the frontier's point with this index among the seeds the run is given
    /// (`RunOptions::replay_seeds`), replayed and then improved with hindsight
    /// ([`crate::peers::replay`]).
    Replayed(u32),
}

/// The length of the schedule's steps.
pub const WINDOW_MS: f64 = 60_000.0;
/// How much of the load before a minute is served first, so the minute starts on busy servers.
const LEAD_MS: f64 = 60_000.0;
/// How long a minute's requests may take to finish in the measurement.
const DRAIN_MS: f64 = 300_000.0;

/// One fleet: replicas per variant, and its cost per hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub replicas: Vec<u32>,
    pub cost_per_hour: f64,
}

/// Misses per minute and fleet, measured once per workload and shared by every price.
#[derive(Debug, Clone, PartialEq)]
pub struct MissTable {
    pub ladder: Vec<Fleet>,
    /// `misses[minute][fleet]`; fleets above the last one measured miss as many as it does.
    pub misses: Vec<Vec<u32>>,
    pub prices: Vec<f64>,
    pub startup_ms: f64,
    /// The run's length (its last minute may be shorter).
    pub duration_ms: f64,
}

/// The cheapest fleets in cost order, each carrying more than every cheaper one.
pub fn ladder(scenario: &Scenario, capacities: &[f64]) -> Vec<Fleet> {
    let min = scenario.hpa.min_replicas;
    let mut all: Vec<(Vec<u32>, f64, f64)> = vec![(Vec::new(), 0.0, 0.0)];
    for (v, &capacity) in scenario.variants.iter().zip(capacities) {
        let mut next = Vec::new();
        for (counts, cost, carried) in &all {
            for n in min..=v.max_replicas.max(min) {
                let mut c = counts.clone();
                c.push(n);
                next.push((
                    c,
                    cost + f64::from(n) * v.cost_per_hour,
                    carried + f64::from(n) * capacity,
                ));
            }
        }
        all = next;
    }
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.2.total_cmp(&a.2)));
    let mut out: Vec<Fleet> = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for (replicas, cost_per_hour, carried) in all {
        if carried > best + 1e-9 {
            best = carried;
            out.push(Fleet {
                replicas,
                cost_per_hour,
            });
        }
    }
    out
}

/// What one replica of each variant carries for the scenario's mix of lengths: the steady rate
/// at which nine requests in ten still meet both objectives (a card that serves long prompts
/// too slowly carries little however many there are), or half of them for a load whose longest
/// prompts no card serves in time.
pub fn replica_capacities(scenario: &Scenario, slo: SloTargets) -> Result<Vec<f64>, String> {
    let mix: Vec<(u32, u32)> = scenario
        .requests
        .iter()
        .map(|r| (r.prompt_tokens, r.output_tokens))
        .collect();
    let profiles = scenario.profiles()?;
    let at = |share: f64| -> Vec<f64> {
        profiles
            .iter()
            .map(|p| sustainable_rate(p, &mix, slo, share, 7))
            .collect()
    };
    let strict = at(0.9);
    let capacities = if strict.iter().any(|&c| c > 0.0) {
        strict
    } else {
        at(0.5)
    };
    Ok(capacities.into_iter().map(|c| c.max(1e-3)).collect())
}

impl MissTable {
    /// The misses of every minute on every fleet it needs measuring on.
    pub fn measure(scenario: &Scenario, slo: SloTargets) -> Result<Self, String> {
        measure_misses(scenario, slo)
    }

    /// `table` when it was measured already (a frontier measures once per workload), else the
    /// scenario's, measured now.
    pub fn given_or_measured<'t>(
        table: Option<&'t MissTable>,
        scenario: &Scenario,
    ) -> Result<std::borrow::Cow<'t, MissTable>, String> {
        Ok(match table {
            Some(t) => std::borrow::Cow::Borrowed(t),
            None => std::borrow::Cow::Owned(Self::measure(scenario, SloTargets::default())?),
        })
    }
}

fn measure_misses(scenario: &Scenario, slo: SloTargets) -> Result<MissTable, String> {
    let capacities = replica_capacities(scenario, slo)?;
    let ladder = ladder(scenario, &capacities);
    let minutes = (scenario.duration_s * 1e3 / WINDOW_MS).ceil().max(1.0) as usize;
    let profiles = scenario.profiles()?;
    let requests = &scenario.requests;
    let misses = (0..minutes)
        .map(|k| {
            let start = k as f64 * WINDOW_MS;
            let from = requests.partition_point(|r| r.arrival_ms < start - LEAD_MS);
            let to = requests.partition_point(|r| r.arrival_ms < start + WINDOW_MS);
            let window = &requests[from..to];
            let mut row = Vec::new();
            for fleet in &ladder {
                let m = minute_misses(scenario, &profiles, fleet, window, start, slo);
                row.push(m);
                if m == 0 {
                    break;
                }
            }
            row
        })
        .collect();
    Ok(MissTable {
        ladder,
        misses,
        prices: scenario.variants.iter().map(|v| v.cost_per_hour).collect(),
        startup_ms: scenario.startup_s * 1e3,
        duration_ms: scenario.duration_s * 1e3,
    })
}

/// The requests of the minute starting at `start` (the last ones of `window`) that miss an
/// objective or do not finish, on `fleet` ready throughout, after the lead-in requests.
fn minute_misses(
    scenario: &Scenario,
    profiles: &[profiles::AcceleratorProfile],
    fleet: &Fleet,
    window: &[Request],
    start: f64,
    slo: SloTargets,
) -> u32 {
    let counted = window.iter().filter(|r| r.arrival_ms >= start).count();
    if counted == 0 {
        return 0;
    }
    let variants = scenario
        .variants
        .iter()
        .zip(profiles)
        .zip(&fleet.replicas)
        .map(|((v, p), &n)| Variant::new(&v.name, p.clone(), v.cost_per_hour, 0.0, n))
        .collect();
    let mut cluster = Cluster::new(variants);
    let mut next = 0;
    let deadline = start + WINDOW_MS + DRAIN_MS;
    let is_counted = |c: &Completed| c.arrival_ms >= start && c.arrival_ms < start + WINDOW_MS;
    let mut done = 0usize;
    loop {
        let next_arrival = window.get(next).map_or(f64::INFINITY, |r| r.arrival_ms);
        let t = next_arrival.min(cluster.next_step());
        if !t.is_finite() || t > deadline {
            break;
        }
        while let Some(r) = window.get(next).filter(|r| r.arrival_ms <= t) {
            cluster.route(r.clone(), t);
            next += 1;
        }
        cluster.advance(t, |_, _, c| done += usize::from(is_counted(c)));
        if done == counted && next == window.len() {
            break;
        }
    }
    let within = cluster
        .completed
        .iter()
        .filter(|c| is_counted(c) && c.ttft_ms <= slo.ttft_ms && c.itl_ms <= slo.itl_ms)
        .count();
    (counted - within) as u32
}

impl MissTable {
    /// How long minute `k` lasts, in hours (the last one may be cut short by the run's end).
    fn hours(&self, k: usize) -> f64 {
        (self.duration_ms - k as f64 * WINDOW_MS).clamp(0.0, WINDOW_MS) / 3_600_000.0
    }

    fn misses(&self, minute: usize, fleet: usize) -> u32 {
        let row = &self.misses[minute];
        row.get(fleet).or(row.last()).copied().unwrap_or(0)
    }

    /// What starting the replicas `to` has beyond `from` costs.
    fn startup_cost(&self, from: usize, to: usize) -> f64 {
        let (a, b) = (&self.ladder[from].replicas, &self.ladder[to].replicas);
        a.iter()
            .zip(b)
            .zip(&self.prices)
            .map(|((&x, &y), price)| f64::from(y.saturating_sub(x)) * price)
            .sum::<f64>()
            * self.startup_ms
            / 3_600_000.0
    }

    /// The fleet (index into the ladder) of every minute that minimises replica cost, starts
    /// and `miss_price` per missed request over the whole run.
    pub fn plan(&self, miss_price: f64, first: usize) -> Vec<usize> {
        let minutes = self.misses.len();
        let n = self.ladder.len();
        if minutes == 0 || n == 0 {
            return Vec::new();
        }
        let minute_cost = |k: usize, f: usize| {
            self.ladder[f].cost_per_hour * self.hours(k) + miss_price * f64::from(self.misses(k, f))
        };
        // best[f]: the cheapest way through minute k ending on fleet f.
        let mut best: Vec<f64> = (0..n)
            .map(|f| self.startup_cost(first, f) + minute_cost(0, f))
            .collect();
        let mut from: Vec<Vec<usize>> = vec![(0..n).collect()];
        for k in 1..minutes {
            let mut next = vec![f64::INFINITY; n];
            let mut back = vec![0; n];
            for (f, slot) in next.iter_mut().enumerate() {
                for (g, &cost) in best.iter().enumerate() {
                    let c = cost + self.startup_cost(g, f);
                    if c < *slot {
                        *slot = c;
                        back[f] = g;
                    }
                }
                *slot += minute_cost(k, f);
            }
            best = next;
            from.push(back);
        }
        let mut f = (0..n)
            .min_by(|&a, &b| best[a].total_cmp(&best[b]))
            .unwrap_or(0);
        let mut path = vec![0; minutes];
        for k in (0..minutes).rev() {
            path[k] = f;
            f = from[k][f];
        }
        path
    }

    /// What a plan (a fleet per minute) is expected to cost, replicas and starts, from the
    /// measurements.
    pub fn predicted_cost(&self, plan: &[usize], first: &[u32]) -> f64 {
        let mut from = self.first_fleet(first);
        plan.iter()
            .enumerate()
            .map(|(k, &f)| {
                let c = self.startup_cost(from, f) + self.ladder[f].cost_per_hour * self.hours(k);
                from = f;
                c
            })
            .sum()
    }

    /// Where a run of `plan` missed more requests in a minute than that minute's fleet missed
    /// when measured alone (what carried over from before, what terminating replicas held), the
    /// next fleet up: the simulator judges the plan, and the plan is mended where it was wrong.
    /// Returns whether anything changed.
    pub fn repair(&self, plan: &mut [usize], realized: &[u32]) -> bool {
        let top = self.ladder.len().saturating_sub(1);
        let mut changed = false;
        for (k, f) in plan.iter_mut().enumerate() {
            let missed = realized.get(k).copied().unwrap_or(0);
            if missed > self.misses(k, *f) && *f < top {
                *f += 1;
                changed = true;
            }
        }
        changed
    }

    /// One step of the search within `budget`: given what a run of `plan` missed each minute,
    /// raise the minutes that missed most while the expected cost stays within the budget; if
    /// the plan is over the budget, first lower the minutes that missed nothing and would miss
    /// least one fleet down. Returns whether anything changed.
    pub fn search_step(
        &self,
        plan: &mut [usize],
        realized: &[u32],
        budget: f64,
        spent: f64,
        first: &[u32],
    ) -> bool {
        let before = plan.to_vec();
        // The budget in the measure the plan's expected cost is in: what the run spent may
        // differ from what was expected (replicas held for minutes ahead, gone early).
        let budget = budget * self.predicted_cost(plan, first) / spent.max(1e-9);
        let missed = |k: usize| realized.get(k).copied().unwrap_or(0);
        let mut idle: Vec<usize> = (0..plan.len())
            .filter(|&k| plan[k] > 0 && missed(k) == 0)
            .collect();
        idle.sort_by_key(|&k| self.misses(k, plan[k] - 1));
        for k in idle {
            if self.predicted_cost(plan, first) <= budget * 0.97 {
                break;
            }
            plan[k] -= 1;
        }
        let top = self.ladder.len().saturating_sub(1);
        let mut short: Vec<usize> = (0..plan.len())
            .filter(|&k| missed(k) > 0 && plan[k] < top)
            .collect();
        short.sort_by_key(|&k| std::cmp::Reverse(missed(k)));
        for k in short {
            plan[k] += 1;
            if self.predicted_cost(plan, first) > budget {
                plan[k] -= 1;
            }
        }
        *plan != before[..]
    }

    /// The replicas of each minute of a plan.
    pub fn fleets(&self, plan: &[usize]) -> Vec<Vec<u32>> {
        plan.iter()
            .map(|&f| self.ladder[f].replicas.clone())
            .collect()
    }

    /// The plan (a fleet per minute) under a price, from the fleet the run starts with.
    pub fn plan_from(&self, miss_price: f64, first: &[u32]) -> Vec<usize> {
        self.plan(miss_price, self.first_fleet(first))
    }

    /// The plan for a target: at a price, or the most misses avoided within a budget.
    pub fn plan_for(&self, target: BoundTarget, first: &[u32]) -> Vec<usize> {
        match target {
            BoundTarget::Price(p) => self.plan_from(p, first),
            BoundTarget::Budget(b) => self.plan_within(b, first),
            BoundTarget::Headroom(h) => {
                self.raised(self.plan_from(grid_price(GRID_STEPS), first), h)
            }
            BoundTarget::BudgetWithHeadroom(b) => {
                self.fitted(b, first, |plan| self.raised(plan, 1))
            }
            BoundTarget::BudgetHeld(b) => self.fitted(b, first, |plan| held(&plan, 2)),
            // The search starts under its budget, with room to move capacity.
            BoundTarget::Searched(b) => self.plan_within(0.9 * b, first),
            // A replay is not planned from the table; as a plan, it is the cheapest.
            BoundTarget::Replayed(_) => self.plan_from(0.0, first),
        }
    }

    /// The plan within the largest inner budget whose plan, once `shape`d, still fits `budget`.
    fn fitted(
        &self,
        budget: f64,
        first: &[u32],
        shape: impl Fn(Vec<usize>) -> Vec<usize>,
    ) -> Vec<usize> {
        let (mut lo, mut hi) = (0.0, budget);
        let mut best = shape(self.plan_within(0.0, first));
        for _ in 0..20 {
            let mid = (lo + hi) / 2.0;
            let plan = shape(self.plan_within(mid, first));
            if self.predicted_cost(&plan, first) <= budget {
                best = plan;
                lo = mid;
            } else {
                hi = mid;
            }
        }
        best
    }

    /// A plan `by` fleets up in every minute (at most the top of the ladder).
    fn raised(&self, plan: Vec<usize>, by: u32) -> Vec<usize> {
        let top = self.ladder.len().saturating_sub(1);
        plan.into_iter()
            .map(|f| (f + by as usize).min(top))
            .collect()
    }

    /// The plan expected to miss least for at most `budget`: the plan of the highest price
    /// that fits, then, one fleet up at a time, the minute whose next fleet avoids the most
    /// misses per unit of what it adds to the cost (starts included), while the budget lasts.
    /// Prices alone jump between plans where many minutes are worth the same.
    pub fn plan_within(&self, budget: f64, first: &[u32]) -> Vec<usize> {
        let cost = |plan: &[usize]| self.predicted_cost(plan, first);
        let fits = (0..=100u32)
            .rev()
            .map(grid_price)
            .map(|p| self.plan_from(p, first))
            .find(|plan| cost(plan) <= budget);
        let Some(mut plan) = fits else {
            return self.plan_from(grid_price(0), first);
        };
        let top = self.ladder.len().saturating_sub(1);
        let mut spent = cost(&plan);
        loop {
            let mut best: Option<(usize, f64, f64)> = None;
            for k in 0..plan.len() {
                let f = plan[k];
                if f >= top {
                    continue;
                }
                let saved = f64::from(self.misses(k, f)) - f64::from(self.misses(k, f + 1));
                if saved <= 0.0 {
                    continue;
                }
                plan[k] = f + 1;
                let added = cost(&plan) - spent;
                plan[k] = f;
                if spent + added > budget {
                    continue;
                }
                let worth = saved / added.max(1e-9);
                if best.is_none_or(|(_, w, _)| worth > w) {
                    best = Some((k, worth, added));
                }
            }
            let Some((k, _, added)) = best else {
                return plan;
            };
            plan[k] += 1;
            spent += added;
        }
    }

    /// The highest price whose plan is expected to cost at most `budget`, if any.
    pub fn price_within(&self, budget: f64, first: &[u32]) -> Option<f64> {
        (0..=100)
            .rev()
            .map(grid_price)
            .find(|&price| self.predicted_cost(&self.plan_from(price, first), first) <= budget)
    }

    /// Prices whose schedules spread along the bound's frontier, cheapest first: the distinct
    /// schedules of a fine sweep of prices (from the minimum fleet throughout to every miss
    /// the ladder can avoid), `points` of them evenly spaced in cost order, the two ends kept.
    /// A frontier runs these, so that the bound has points wherever another policy might.
    pub fn spanning_prices(&self, first: &[u32], points: usize) -> Vec<f64> {
        let first = self.first_fleet(first);
        let mut plans: Vec<(f64, Vec<usize>)> = Vec::new();
        for i in 0..=100 {
            let price = grid_price(i);
            let plan = self.plan(price, first);
            if plans.last().is_none_or(|(_, p)| *p != plan) {
                plans.push((price, plan));
            }
        }
        let n = plans.len();
        if n <= points || points < 2 {
            return plans.into_iter().map(|(p, _)| p).collect();
        }
        let mut picked: Vec<f64> = (0..points)
            .map(|k| plans[k * (n - 1) / (points - 1)].0)
            .collect();
        picked.dedup();
        picked
    }

    fn first_fleet(&self, first: &[u32]) -> usize {
        self.ladder
            .iter()
            .position(|f| f.replicas == first)
            .unwrap_or(0)
    }
}

/// Every minute at the largest fleet (ladder index) of the `around` minutes each side of it.
fn held(plan: &[usize], around: usize) -> Vec<usize> {
    (0..plan.len())
        .map(|k| {
            let from = k.saturating_sub(around);
            let to = (k + around).min(plan.len().saturating_sub(1));
            plan[from..=to].iter().copied().max().unwrap_or(0)
        })
        .collect()
}

/// The last step of the grid of prices.
const GRID_STEPS: u32 = 100;

/// The prices tried, from 1e-7 to 100 in 101 steps, to three significant digits (so that they
/// read as settings).
fn grid_price(i: u32) -> f64 {
    let p = 10f64.powf(-7.0 + f64::from(i) * 0.09);
    let scale = 10f64.powi(2 - p.log10().floor() as i32);
    (p * scale).round() / scale
}

/// The requests of each minute that missed an objective or did not finish in a run.
pub fn misses_per_minute(
    requests: &[Request],
    completed: &[Completed],
    slo: SloTargets,
) -> Vec<u32> {
    let minute = |t: f64| (t / WINDOW_MS).floor().max(0.0) as usize;
    let minutes = requests.last().map_or(0, |r| minute(r.arrival_ms) + 1);
    let mut misses = vec![0u32; minutes];
    for r in requests {
        misses[minute(r.arrival_ms)] += 1;
    }
    for c in completed {
        if c.ttft_ms <= slo.ttft_ms
            && c.itl_ms <= slo.itl_ms
            && let Some(m) = misses.get_mut(minute(c.arrival_ms))
        {
            *m = m.saturating_sub(1);
        }
    }
    misses
}

/// The schedule as an autoscaler: every control interval, each variant gets the most replicas
/// any minute from now to the start-up delay ahead needs, so that they are ready in time.
#[derive(Debug)]
pub struct HindsightScaler {
    minutes: Vec<Vec<u32>>,
    startup_ms: f64,
    interval_ms: f64,
}

impl HindsightScaler {
    pub fn new(minutes: Vec<Vec<u32>>, startup_ms: f64, interval_ms: f64) -> Self {
        Self {
            minutes,
            startup_ms,
            interval_ms,
        }
    }
}

impl Autoscaler for HindsightScaler {
    fn actuation(&self) -> Actuation {
        Actuation::Direct {
            interval_ms: self.interval_ms,
        }
    }

    fn direct_targets(&mut self, view: &View<'_>) -> Vec<u32> {
        let last = self.minutes.len().saturating_sub(1);
        let minute = |t: f64| ((t / WINDOW_MS).floor().max(0.0) as usize).min(last);
        let (now, ahead) = (minute(view.now_ms), minute(view.now_ms + self.startup_ms));
        view.cluster
            .variants
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                self.minutes
                    .get(now..=ahead)
                    .and_then(|span| span.iter().filter_map(|m| m.get(vi)).max().copied())
                    .unwrap_or(v.replicas())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Arrivals, RateShape, SyntheticLoad, TokenLengths};

    fn scenario(requests: Vec<Request>, duration_s: f64) -> Scenario {
        crate::scenario::trace(requests, Some(duration_s))
    }

    fn steady(rps: f64, duration_s: f64) -> Vec<Request> {
        SyntheticLoad {
            shape: RateShape::Constant { rps },
            arrivals: Arrivals::Poisson,
            prompt: TokenLengths {
                mean: 800.0,
                cv: 1.0,
                min: 4,
                max: 8_000,
            },
            output: TokenLengths {
                mean: 200.0,
                cv: 1.0,
                min: 1,
                max: 2_000,
            },
        }
        .generate(duration_s, 5)
    }

    #[test]
    fn the_ladder_climbs_in_cost_and_capacity() {
        let s = scenario(steady(1.0, 60.0), 60.0);
        let l = ladder(&s, &[5.0, 17.0]);
        assert_eq!(l[0].replicas, vec![1, 1], "the minimum fleet first");
        assert!(
            l.windows(2)
                .all(|w| w[0].cost_per_hour < w[1].cost_per_hour)
        );
        let carried = |f: &Fleet| f64::from(f.replicas[0]) * 5.0 + f64::from(f.replicas[1]) * 17.0;
        assert!(l.windows(2).all(|w| carried(&w[0]) < carried(&w[1])));
        assert_eq!(l.last().map(|f| f.replicas.clone()), Some(vec![12, 12]));
    }

    #[test]
    fn more_load_needs_more_fleet_and_a_higher_price_buys_fewer_misses() {
        // Quiet for five minutes, then a heavy five minutes, then quiet.
        let mut requests = steady(2.0, 300.0);
        let heavy: Vec<Request> = steady(60.0, 300.0)
            .into_iter()
            .map(|mut r| {
                r.arrival_ms += 300_000.0;
                r
            })
            .collect();
        requests.extend(heavy);
        requests.extend(steady(2.0, 300.0).into_iter().map(|mut r| {
            r.arrival_ms += 600_000.0;
            r
        }));
        for (i, r) in requests.iter_mut().enumerate() {
            r.id = i as u64;
        }
        let s = scenario(requests, 900.0);
        let table = MissTable::measure(&s, SloTargets::default()).expect("measured");
        assert_eq!(table.misses.len(), 15);
        // The minimum fleet carries the quiet minutes and not the heavy ones.
        assert_eq!(table.misses[1][0], 0);
        assert!(table.misses[7][0] > 100, "{:?}", table.misses[7]);
        assert_eq!(*table.misses[7].last().expect("measured"), 0);
        let cheap = table.plan(0.0, 0);
        assert!(
            cheap.iter().all(|&f| f == 0),
            "no price, no spending: {cheap:?}"
        );
        let careful = table.plan(1.0, 0);
        assert!(careful[7] > 0 && careful[1] == 0, "{careful:?}");
        let total = |plan: &[usize]| -> u32 {
            plan.iter()
                .enumerate()
                .map(|(k, &f)| table.misses(k, f))
                .sum()
        };
        assert!(total(&careful) < total(&cheap));
        // Replicas are asked for ahead of the heavy minutes, by the start-up delay, and let go
        // once no minute within that delay needs them.
        let minutes = table.fleets(&table.plan_from(1.0, &[1, 1]));
        assert!(minutes[5].iter().sum::<u32>() > 2, "{minutes:?}");
        let mut scaler = HindsightScaler::new(minutes.clone(), 120_000.0, 15_000.0);
        let cluster = Cluster::new(
            s.variants
                .iter()
                .map(|v| {
                    let p = profiles::by_name(&v.accelerator).expect("profile");
                    Variant::new(&v.name, p, v.cost_per_hour, 120_000.0, 1)
                })
                .collect(),
        );
        let at = |scaler: &mut HindsightScaler, t: f64| {
            scaler.direct_targets(&View {
                now_ms: t,
                cluster: &cluster,
                recent: &[],
                published: &[],
            })
        };
        assert_eq!(at(&mut scaler, 60_000.0), vec![1, 1]);
        assert_eq!(at(&mut scaler, 180_000.0), minutes[5]);
        assert_eq!(at(&mut scaler, 840_000.0), vec![1, 1]);
    }
}
