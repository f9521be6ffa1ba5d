//! Where attainment was lost: every request that missed an objective (or never finished) is
//! put down to one stage of scaling, so that policies are compared by why they miss, not only
//! by how much.
//!
//! For a request that arrived at `a` and missed:
//! - **warm-up**: a replica of the model was starting at `a` (created, not yet ready);
//! - **grant**: the autoscaler had asked for more replicas than the Deployments had at `a` (its
//!   scaler had not acted yet);
//! - otherwise, if the autoscaler asked for more replicas before the misses around `a` ended
//!   (misses less than a minute apart are one episode): **trigger** when it asked at the first
//!   moment it observed anything after `a` (the signal could not have shown the load sooner),
//!   **ask** when it observed after `a` and still waited;
//! - **never asked**: nothing was asked for while the misses lasted (capacity never requested).

use crate::results::{MissBreakdown, SloTargets};
use crate::server::{Completed, Request};

/// Misses less than this apart belong to one episode.
const EPISODE_GAP_MS: f64 = 60_000.0;

/// What a run's autoscaler did, over time, as the attribution needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// When the autoscaler read its signals (its cycles, its HPA's syncs, its own ticks).
    pub observations: Vec<f64>,
    /// The model's total replicas asked for, each time it changed (what it published or wanted).
    pub asked: Vec<(f64, u32)>,
    /// The model's total replicas on its Deployments, each time it changed.
    pub granted: Vec<(f64, u32)>,
    /// Replicas created: (when, when ready).
    pub starting: Vec<(f64, f64)>,
}

impl Timeline {
    /// Records a total asked for at `t` (when it changed).
    pub fn ask(&mut self, t: f64, total: u32) {
        if self.asked.last().is_none_or(|&(_, n)| n != total) {
            self.asked.push((t, total));
        }
    }

    /// Records the replicas the Deployments have at `t` (when it changed).
    pub fn grant(&mut self, t: f64, total: u32) {
        if self.granted.last().is_none_or(|&(_, n)| n != total) {
            self.granted.push((t, total));
        }
    }

    fn at(series: &[(f64, u32)], t: f64) -> Option<u32> {
        let i = series.partition_point(|&(at, _)| at <= t);
        i.checked_sub(1).map(|i| series[i].1)
    }

    /// Times at which the autoscaler asked for more than before (or, without asks of its own,
    /// its Deployments grew: asking and granting are one act for it).
    fn scale_ups(&self) -> Vec<f64> {
        let series = if self.asked.is_empty() {
            &self.granted
        } else {
            &self.asked
        };
        series
            .windows(2)
            .filter(|w| w[1].1 > w[0].1)
            .map(|w| w[1].0)
            .collect()
    }
}

/// Puts every missed request of a run down to one cause.
pub fn attribute(
    requests: &[Request],
    completed: &[Completed],
    slo: SloTargets,
    timeline: &Timeline,
) -> MissBreakdown {
    let mut met = vec![false; requests.len()];
    for c in completed {
        if c.ttft_ms <= slo.ttft_ms
            && c.itl_ms <= slo.itl_ms
            && let Some(m) = met.get_mut(c.id as usize)
        {
            *m = true;
        }
    }
    let mut missed: Vec<f64> = requests
        .iter()
        .zip(&met)
        .filter(|(_, m)| !**m)
        .map(|(r, _)| r.arrival_ms)
        .collect();
    missed.sort_by(f64::total_cmp);
    let scale_ups = timeline.scale_ups();
    let mut out = MissBreakdown::default();
    let mut episode_end = f64::NEG_INFINITY;
    for (i, &a) in missed.iter().enumerate() {
        if a > episode_end {
            // A new episode: it lasts while the next miss comes within the gap.
            let mut end = a;
            for &b in &missed[i + 1..] {
                if b - end > EPISODE_GAP_MS {
                    break;
                }
                end = b;
            }
            episode_end = end;
        }
        let warming = timeline.starting.iter().any(|&(c, r)| c <= a && a < r);
        let asked = Timeline::at(&timeline.asked, a);
        let granted = Timeline::at(&timeline.granted, a);
        if warming {
            out.warm_up += 1;
        } else if asked.zip(granted).is_some_and(|(x, g)| x > g) {
            out.grant += 1;
        } else {
            let next_up = scale_ups
                .iter()
                .find(|&&s| s >= a && s <= episode_end + EPISODE_GAP_MS);
            let first_look = timeline
                .observations
                .iter()
                .find(|&&o| o >= a)
                .copied()
                .unwrap_or(f64::INFINITY);
            match next_up {
                Some(&s) if s <= first_look => out.trigger += 1,
                Some(_) => out.ask += 1,
                None => out.never_asked += 1,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: u64, arrival_ms: f64) -> Request {
        Request {
            id,
            arrival_ms,
            prompt_tokens: 10,
            output_tokens: 10,
        }
    }

    fn done(r: &Request, ttft_ms: f64) -> Completed {
        Completed {
            id: r.id,
            arrival_ms: r.arrival_ms,
            finish_ms: r.arrival_ms + ttft_ms,
            ttft_ms,
            itl_ms: 10.0,
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
        }
    }

    #[test]
    fn each_miss_goes_to_the_stage_it_waited_on() {
        // Misses at 1 s and 20 s (one episode), at 200 s, at 400 s and at 700 s; one request
        // met its objectives and is no miss.
        let requests = vec![
            request(0, 1_000.0),
            request(1, 20_000.0),
            request(2, 200_000.0),
            request(3, 400_000.0),
            request(4, 700_000.0),
            request(5, 800_000.0),
        ];
        let completed: Vec<Completed> = requests
            .iter()
            .map(|r| done(r, if r.id == 5 { 100.0 } else { 5_000.0 }))
            .collect();
        let timeline = Timeline {
            // Looks every 15 s.
            observations: (1..=60).map(|k| f64::from(k) * 15_000.0).collect(),
            // Asks at 15 s (the first look after the 1 s miss: trigger) and at 45 s (later than
            // the first look after the 20 s miss: the decision waited), 410 s (for the miss at
            // 400 s, after a look at 405 s), and 210 s is asked while granted stays behind.
            asked: vec![
                (0.0, 2),
                (15_000.0, 3),
                (45_000.0, 4),
                (190_000.0, 6),
                (410_000.0, 7),
            ],
            granted: vec![(0.0, 2), (16_000.0, 3), (46_000.0, 4), (250_000.0, 6)],
            starting: vec![(600_000.0, 720_000.0)],
        };
        let b = attribute(&requests, &completed, SloTargets::default(), &timeline);
        assert_eq!(b.total(), 5);
        assert_eq!(b.trigger, 1, "{b:?}");
        assert_eq!(b.ask, 2, "{b:?}");
        assert_eq!(b.grant, 1, "{b:?}");
        assert_eq!(b.warm_up, 1, "{b:?}");
        assert_eq!(b.never_asked, 0, "{b:?}");
        // With nothing asked, every miss is capacity never asked for.
        let quiet = Timeline {
            observations: timeline.observations.clone(),
            ..Default::default()
        };
        let b = attribute(&requests, &completed, SloTargets::default(), &quiet);
        assert_eq!(b.never_asked, 5);
        // A request that never finished is a miss too.
        let b = attribute(&requests, &completed[..5], SloTargets::default(), &quiet);
        assert_eq!(b.total(), 6);
    }
}
