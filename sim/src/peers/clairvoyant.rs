//! The clairvoyant bound: a replica schedule computed offline from the load the run will
//! actually see, the physical limit the autoscalers are measured against.
//!
//! Method:
//! 1. **Capacity.** For each variant, the steady request rate one replica carries with 95 % of
//!    requests within the objectives, measured on the emulated server with the run's own mix
//!    of request lengths ([`crate::capacity::sustainable_rate`]).
//! 2. **Need.** Every 15 s, the arrival rate of the minute around that instant (known in
//!    advance). Each variant keeps its minimum; the rest goes to the variant with the lowest
//!    cost per capacity, then the next, filling each replica to `utilization` of its capacity
//!    (the knob).
//! 3. **Start-up delay.** At each instant the schedule holds the largest need of the next
//!    start-up delay, so that every replica is ready when the load that needs it arrives, and
//!    it lets replicas go as soon as nothing ahead needs them.
//!
//! What it does not know: how requests queue within a minute (bursts shorter than the window)
//! and how the router spreads them. It is a bound on what any autoscaler could do with the same
//! replicas and start-up delay, not an exact optimum.

use crate::autoscaler::{Actuation, Autoscaler, View};
use crate::capacity::sustainable_rate;
use crate::profiles;
use crate::results::SloTargets;
use crate::scenario::Scenario;
use crate::server::Request;

/// One variant as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedVariant {
    /// Requests per second one replica carries within the objectives.
    pub capacity_rps: f64,
    pub cost_per_hour: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

/// Targets per variant every `slot_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub slot_ms: f64,
    pub targets: Vec<Vec<u32>>,
}

impl Schedule {
    /// The targets at `now_ms`.
    pub fn at(&self, now_ms: f64) -> Option<&[u32]> {
        let slot = (now_ms / self.slot_ms).floor().max(0.0) as usize;
        self.targets
            .get(slot.min(self.targets.len().saturating_sub(1)))
            .map(Vec::as_slice)
    }
}

const WINDOW_MS: f64 = 60_000.0;

/// The replicas one instant needs for `rate_rps`.
fn need(rate_rps: f64, variants: &[PlannedVariant], utilization: f64) -> Vec<u32> {
    let mut counts: Vec<u32> = variants.iter().map(|v| v.min_replicas).collect();
    let usable = |v: &PlannedVariant| v.capacity_rps * utilization;
    let mut covered: f64 = variants
        .iter()
        .zip(&counts)
        .map(|(v, &n)| f64::from(n) * usable(v))
        .sum();
    let mut order: Vec<usize> = (0..variants.len())
        .filter(|&i| variants[i].capacity_rps > 0.0)
        .collect();
    order.sort_by(|&a, &b| {
        let per = |v: &PlannedVariant| v.cost_per_hour / v.capacity_rps;
        per(&variants[a]).total_cmp(&per(&variants[b]))
    });
    for i in order {
        if covered >= rate_rps {
            break;
        }
        let room = variants[i].max_replicas.saturating_sub(counts[i]);
        let wanted = ((rate_rps - covered) / usable(&variants[i])).ceil() as u32;
        let added = wanted.min(room);
        counts[i] += added;
        covered += f64::from(added) * usable(&variants[i]);
    }
    counts
}

/// The schedule for `requests` over `duration_ms`.
pub fn plan(
    requests: &[Request],
    variants: &[PlannedVariant],
    duration_ms: f64,
    startup_ms: f64,
    utilization: f64,
    slot_ms: f64,
) -> Schedule {
    let slots = (duration_ms / slot_ms).ceil().max(1.0) as usize;
    // Arrival times are sorted (load generators and traces both are).
    let mut arrivals: Vec<f64> = requests.iter().map(|r| r.arrival_ms).collect();
    arrivals.sort_by(f64::total_cmp);
    let count_before = |t: f64| arrivals.partition_point(|&a| a < t);
    let needs: Vec<Vec<u32>> = (0..slots)
        .map(|k| {
            let t = k as f64 * slot_ms;
            let n = count_before(t + WINDOW_MS / 2.0) - count_before(t - WINDOW_MS / 2.0);
            need(n as f64 / (WINDOW_MS / 1e3), variants, utilization)
        })
        .collect();
    let ahead = (startup_ms / slot_ms).ceil() as usize;
    let targets = (0..slots)
        .map(|k| {
            let end = (k + ahead).min(slots - 1);
            (0..variants.len())
                .map(|i| needs[k..=end].iter().map(|n| n[i]).max().unwrap_or(0))
                .collect()
        })
        .collect();
    Schedule { slot_ms, targets }
}

/// What one replica of each variant carries within the objectives, for the scenario's mix of
/// request lengths.
pub fn replica_capacities(scenario: &Scenario) -> Result<Vec<f64>, String> {
    let mix: Vec<(u32, u32)> = scenario
        .requests
        .iter()
        .map(|r| (r.prompt_tokens, r.output_tokens))
        .collect();
    scenario
        .variants
        .iter()
        .map(|v| {
            let profile = profiles::by_name(&v.accelerator)
                .ok_or_else(|| format!("variant {}: unknown accelerator", v.name))?;
            Ok(sustainable_rate(
                &profile,
                &mix,
                SloTargets::default(),
                CLAIRVOYANT_SHARE,
                7,
            ))
        })
        .collect()
}

/// The share of requests within the objectives the clairvoyant bound sizes replicas for.
pub const CLAIRVOYANT_SHARE: f64 = 0.95;

pub fn clairvoyant_schedule(
    scenario: &Scenario,
    utilization: f64,
    capacities: Option<&[f64]>,
) -> Result<Schedule, String> {
    let capacities = match capacities {
        Some(c) => c.to_vec(),
        None => replica_capacities(scenario)?,
    };
    let planned: Vec<PlannedVariant> = scenario
        .variants
        .iter()
        .zip(capacities)
        .map(|(v, capacity_rps)| PlannedVariant {
            capacity_rps,
            cost_per_hour: v.cost_per_hour,
            min_replicas: scenario.hpa.min_replicas,
            max_replicas: v.max_replicas,
        })
        .collect();
    Ok(plan(
        &scenario.requests,
        &planned,
        scenario.duration_s * 1e3,
        scenario.startup_s * 1e3,
        utilization,
        scenario.control_interval_s * 1e3,
    ))
}

/// A schedule as an autoscaler: it sets each variant's replicas to the schedule's targets every
/// `interval_ms`.
#[derive(Debug)]
pub struct ScheduleScaler {
    schedule: Schedule,
    interval_ms: f64,
}

impl ScheduleScaler {
    pub fn new(schedule: Schedule, interval_ms: f64) -> Self {
        Self {
            schedule,
            interval_ms,
        }
    }
}

impl Autoscaler for ScheduleScaler {
    fn actuation(&self) -> Actuation {
        Actuation::Direct {
            interval_ms: self.interval_ms,
        }
    }

    fn direct_targets(&mut self, view: &View<'_>) -> Vec<u32> {
        let targets = self.schedule.at(view.now_ms);
        view.cluster
            .variants
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                targets
                    .and_then(|t| t.get(vi).copied())
                    .unwrap_or(v.replicas())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(rate_at: impl Fn(f64) -> f64, duration_s: f64) -> Vec<Request> {
        let mut out = Vec::new();
        let mut t = 0.0;
        while t < duration_s * 1e3 {
            let gap = 1e3 / rate_at(t / 1e3);
            out.push(Request {
                id: out.len() as u64,
                arrival_ms: t,
                prompt_tokens: 100,
                output_tokens: 10,
            });
            t += gap;
        }
        out
    }

    const CARDS: [PlannedVariant; 2] = [
        PlannedVariant {
            capacity_rps: 5.0,
            cost_per_hour: 3.7,
            min_replicas: 1,
            max_replicas: 10,
        },
        PlannedVariant {
            capacity_rps: 17.0,
            cost_per_hour: 6.9,
            min_replicas: 1,
            max_replicas: 10,
        },
    ];

    #[test]
    fn a_step_in_load_is_met_ahead_by_the_startup_delay_on_the_cheapest_capacity() {
        // 10 rps for 10 minutes, then 60 rps.
        let load = requests(|t| if t < 600.0 { 10.0 } else { 60.0 }, 1_200.0);
        let s = plan(&load, &CARDS, 1_200_000.0, 120_000.0, 1.0, 15_000.0);
        // Before: the minimum (5 + 17 = 22 rps) covers 10 rps.
        assert_eq!(s.at(0.0), Some(&[1u32, 1][..]));
        // 60 rps: 60 − 22 = 38 → 3 more H100s (the A100 costs more per request), in place
        // ahead of the step by the start-up delay.
        assert_eq!(s.at(600_000.0 - 60_000.0), Some(&[1u32, 4][..]));
        assert_eq!(s.at(450_000.0), Some(&[1u32, 1][..]));
        // Less usable capacity per replica, more replicas.
        let tight = plan(&load, &CARDS, 1_200_000.0, 120_000.0, 0.5, 15_000.0);
        assert!(tight.at(900_000.0).expect("slot")[1] > 4);
    }
}
