//! Another run's schedule, replayed with hindsight: the bound's answer where a policy's steady
//! headroom beats every schedule the bound planned minute by minute.
//!
//! The first replay sets every Deployment's replicas at the very moments, to the very counts,
//! the policy's own run did; the emulation is deterministic, so it serves the requests as that
//! run did, at the same cost. Each later round moves capacity with the whole run known: a
//! replica less in the minutes that, with the minutes either side, missed nothing, and a
//! replica more, started the start-up delay ahead, in the minutes that missed more than one
//! request in twenty (where a replica buys the most). The schedule
//! being any policy's run, the bound's frontier is never behind a point it replays, and where
//! the moves pay, it is ahead of it.

use crate::autoscaler::{Actuation, Autoscaler, View};
use crate::peers::hindsight::WINDOW_MS;
use crate::results::ScalingEvent;
use crate::scenario::Scenario;

/// A minute gets a replica more when at least one of this many of its requests missed.
const MISSES_PER_REPLICA_ADDED: u32 = 20;

/// A schedule to replay: a run's scaling events and the capacity moved since.
#[derive(Debug, Clone)]
pub struct Replay {
    events: Vec<ScalingEvent>,
    /// Replicas added (positive) or removed over a span of time: (from, to, replicas).
    moves: Vec<(f64, f64, i32)>,
    /// Variant indices from the cheapest replica to the dearest.
    by_price: Vec<usize>,
    max_replicas: Vec<u32>,
    startup_ms: f64,
}

impl Replay {
    /// The schedule of a run of `scenario` (its scaling events, in order).
    pub fn new(scenario: &Scenario, events: Vec<ScalingEvent>) -> Self {
        let mut by_price: Vec<usize> = (0..scenario.variants.len()).collect();
        by_price.sort_by(|&a, &b| {
            scenario.variants[a]
                .cost_per_hour
                .total_cmp(&scenario.variants[b].cost_per_hour)
        });
        Self {
            events,
            moves: Vec::new(),
            by_price,
            max_replicas: scenario.variants.iter().map(|v| v.max_replicas).collect(),
            startup_ms: scenario.startup_s * 1e3,
        }
    }

    /// Moves capacity after a run of this schedule that missed `realized[m]` of the
    /// `arrived[m]` requests of minute `m`; false when there is nothing to move.
    pub fn step(&mut self, realized: &[u32], arrived: &[u32]) -> bool {
        let quiet = |m: usize| {
            realized[m.saturating_sub(1)..=(m + 1).min(realized.len() - 1)]
                .iter()
                .all(|&n| n == 0)
        };
        let before = self.moves.len();
        for (m, &missed) in realized.iter().enumerate() {
            let (from, to) = (m as f64 * WINDOW_MS, (m + 1) as f64 * WINDOW_MS);
            if missed > 0
                && missed * MISSES_PER_REPLICA_ADDED >= arrived.get(m).copied().unwrap_or(0)
            {
                self.moves.push(((from - self.startup_ms).max(0.0), to, 1));
            } else if quiet(m) {
                self.moves.push((from, to, -1));
            }
        }
        self.moves.len() > before
    }

    /// The replicas each variant has at `t` in the replayed run, then the moves applied: a
    /// replica more goes to the cheapest variant with room, a replica less comes off the
    /// dearest that has one, and the model keeps at least one replica where the run had one.
    fn targets_at(&self, t: f64, first: &[u32]) -> Vec<u32> {
        let mut counts = first.to_vec();
        for e in self.events.iter().take_while(|e| e.t_ms <= t) {
            if let Some(c) = counts.get_mut(e.variant) {
                *c = e.replicas;
            }
        }
        let shift: i32 = self
            .moves
            .iter()
            .filter(|(from, to, _)| *from <= t && t < *to)
            .map(|(_, _, n)| n)
            .sum();
        for _ in 0..shift.max(0) {
            if let Some(&v) = self
                .by_price
                .iter()
                .find(|&&v| counts[v] < self.max_replicas[v])
            {
                counts[v] += 1;
            }
        }
        for _ in 0..(-shift).max(0) {
            if counts.iter().sum::<u32>() <= 1 {
                break;
            }
            if let Some(&v) = self.by_price.iter().rev().find(|&&v| counts[v] > 0) {
                counts[v] -= 1;
            }
        }
        counts
    }

    /// The moments the replayed counts may change, after `after_ms`.
    fn next_change(&self, after_ms: f64) -> Option<f64> {
        self.events
            .iter()
            .map(|e| e.t_ms)
            .chain(self.moves.iter().flat_map(|(from, to, _)| [*from, *to]))
            .filter(|&t| t > after_ms)
            .min_by(f64::total_cmp)
    }
}

/// The replay as an autoscaler: it sets the replicas itself at each moment they change.
#[derive(Debug)]
pub struct ReplayScaler {
    replay: Replay,
    first: Vec<u32>,
}

impl ReplayScaler {
    pub fn new(replay: Replay, first: Vec<u32>) -> Self {
        Self { replay, first }
    }
}

impl Autoscaler for ReplayScaler {
    fn actuation(&self) -> Actuation {
        Actuation::Direct {
            interval_ms: f64::INFINITY,
        }
    }

    fn next_moment(&self, after_ms: f64) -> Option<f64> {
        self.replay.next_change(after_ms)
    }

    fn direct_targets(&mut self, view: &View<'_>) -> Vec<u32> {
        self.replay.targets_at(view.now_ms, &self.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_variants() -> Scenario {
        let mut s = crate::scenario::builtin(60.0, 1);
        s.variants.truncate(1);
        let mut dear = s.variants[0].clone();
        dear.name = "dear".into();
        dear.cost_per_hour *= 2.0;
        s.variants.push(dear);
        s.startup_s = 120.0;
        s
    }

    fn event(t_ms: f64, variant: usize, replicas: u32) -> ScalingEvent {
        ScalingEvent {
            t_ms,
            variant,
            replicas,
        }
    }

    #[test]
    fn the_first_replay_follows_the_run_exactly() {
        let replay = Replay::new(
            &two_variants(),
            vec![event(7_500.0, 0, 3), event(22_500.0, 1, 2)],
        );
        assert_eq!(replay.targets_at(0.0, &[1, 0]), vec![1, 0]);
        assert_eq!(replay.targets_at(7_500.0, &[1, 0]), vec![3, 0]);
        assert_eq!(replay.targets_at(30_000.0, &[1, 0]), vec![3, 2]);
        assert_eq!(replay.next_change(0.0), Some(7_500.0));
        assert_eq!(replay.next_change(7_500.0), Some(22_500.0));
        assert_eq!(replay.next_change(22_500.0), None);
    }

    #[test]
    fn capacity_moves_from_quiet_minutes_to_the_startup_delay_before_a_miss() {
        let mut replay = Replay::new(&two_variants(), vec![event(1_000.0, 1, 2)]);
        // Minutes 0-2 quiet, minute 3 with misses, minute 4 quiet but next to it.
        assert!(replay.step(&[0, 0, 0, 4, 0], &[50, 50, 50, 80, 50]));
        // Minute 0 and 1: one less, off the dearer variant.
        assert_eq!(replay.targets_at(30_000.0, &[1, 0]), vec![1, 1]);
        // Minute 1 is also within the start-up delay before minute 3: one less and one more.
        assert_eq!(replay.targets_at(90_000.0, &[1, 0]), vec![1, 2]);
        // Minute 3: one more, on the cheaper variant.
        assert_eq!(replay.targets_at(200_000.0, &[1, 0]), vec![2, 2]);
        // Minute 4 missed nothing but neighbours a minute that did: unchanged.
        assert_eq!(replay.targets_at(250_000.0, &[1, 0]), vec![1, 2]);
        assert_eq!(replay.next_change(120_000.0), Some(240_000.0));
        assert!(!replay.step(&[], &[]));
        // A minute that missed one request in a hundred keeps its capacity.
        let mut few = Replay::new(&two_variants(), vec![event(1_000.0, 1, 2)]);
        few.step(&[0, 0, 1, 0], &[100, 100, 100, 100]);
        assert_eq!(few.targets_at(150_000.0, &[1, 0]), vec![1, 2]);
    }

    #[test]
    fn a_model_keeps_one_replica_however_quiet() {
        let mut replay = Replay::new(&two_variants(), Vec::new());
        replay.step(&[0, 0, 0], &[5, 5, 5]);
        replay.step(&[0, 0, 0], &[5, 5, 5]);
        assert_eq!(replay.targets_at(60_000.0, &[1, 0]), vec![1, 0]);
    }
}
