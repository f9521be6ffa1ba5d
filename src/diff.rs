//! `wva diff`: two decision logs (a main instance and its shadow, or two replays) side by side.
//! Each log's decisions make one step function per variant (the desired count from one decision
//! to the next); the two are compared over the time both logs cover. Where they differ: when,
//! by how much, the replica-hours and cost each way, and both reasons. Pure: the command reads
//! the logs and prints.
//!
//! Two instances decide on their own clocks, so their cycles are not at the same instants: a
//! change one of them made a few seconds before the other shows as a short difference. Two
//! replays of one log share their instants, and the same configuration gives no difference.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use wva_storage::{CycleRecord, Record, Timestamp};

use crate::timefmt::format_time;

/// One decision of one variant.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    at: Timestamp,
    desired: u32,
    reason: String,
    /// Cost of one replica.
    cost: f64,
    /// Decided below the current replicas while a replica was at or past a saturation
    /// threshold (KV-cache use or queue).
    saturated_scale_down: bool,
}

/// A variant, as `namespace/name`.
type Variant = String;

/// Every variant's decisions, oldest first.
#[derive(Debug, Default)]
struct Timeline(BTreeMap<Variant, Vec<Decision>>);

impl Timeline {
    fn of(records: &[(u64, Record)]) -> Self {
        let mut out: BTreeMap<Variant, Vec<Decision>> = BTreeMap::new();
        for (_, record) in records {
            let Record::Cycle(cycle) = record else {
                continue;
            };
            for target in &cycle.targets {
                let variant = format!("{}/{}", cycle.model.namespace, target.name);
                out.entry(variant)
                    .or_default()
                    .push(decision(cycle, target));
            }
        }
        for decisions in out.values_mut() {
            decisions.sort_by_key(|d| d.at);
        }
        Self(out)
    }
}

fn decision(cycle: &CycleRecord, target: &wva_storage::RecordedTarget) -> Decision {
    let inputs = cycle.variants.iter().find(|v| v.name == target.name);
    let t = &cycle.thresholds;
    let saturated = inputs.is_some_and(|v| {
        v.pods.iter().any(|p| {
            p.kv_cache_usage
                .is_some_and(|kv| kv >= t.kv_cache_threshold)
                || p.queue_length
                    .is_some_and(|q| q >= t.queue_length_threshold)
        })
    });
    let current = inputs.map_or(0, |v| v.current_replicas);
    Decision {
        at: cycle.at,
        desired: target.target,
        reason: target.reason.clone(),
        cost: inputs.map_or(0.0, |v| v.cost),
        saturated_scale_down: saturated && target.target < current,
    }
}

/// The decision in force at `at`: the last one at or before it.
fn in_force(decisions: &[Decision], at: Timestamp) -> Option<&Decision> {
    let after = decisions.partition_point(|d| d.at <= at);
    after.checked_sub(1).map(|i| &decisions[i])
}

/// A stretch of time over which the two logs wanted different counts for one variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub variant: String,
    pub from: String,
    pub to: String,
    pub base: u32,
    pub candidate: u32,
    /// Candidate minus base, over the stretch.
    pub replica_hours: f64,
    pub cost: f64,
    pub base_reason: String,
    pub candidate_reason: String,
}

/// Totals of one side over the compared time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    pub decisions: usize,
    pub replica_hours: f64,
    pub cost: f64,
    /// Decisions below the current replicas while a replica was saturated.
    pub saturated_scale_downs: usize,
}

/// Both logs compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    /// Variants decided in both logs (the ones compared).
    pub variants: usize,
    pub only_in_base: Vec<String>,
    pub only_in_candidate: Vec<String>,
    pub base: Side,
    pub candidate: Side,
    /// Replica-hours where the candidate wanted more than the base, and fewer.
    pub more_replica_hours: f64,
    pub fewer_replica_hours: f64,
    pub differences: Vec<Difference>,
}

impl DiffReport {
    /// The candidate's cost over the base's, in percent (0 when the base cost nothing).
    pub fn cost_change_percent(&self) -> f64 {
        if self.base.cost > 0.0 {
            (self.candidate.cost / self.base.cost - 1.0) * 100.0
        } else {
            0.0
        }
    }
}

const MS_PER_HOUR: f64 = 3_600_000.0;

/// Compares two logs' records.
pub fn diff(base: &[(u64, Record)], candidate: &[(u64, Record)]) -> DiffReport {
    let (a, b) = (Timeline::of(base), Timeline::of(candidate));
    let mut report = DiffReport {
        only_in_base: a
            .0
            .keys()
            .filter(|v| !b.0.contains_key(*v))
            .cloned()
            .collect(),
        only_in_candidate: b
            .0
            .keys()
            .filter(|v| !a.0.contains_key(*v))
            .cloned()
            .collect(),
        ..Default::default()
    };
    for (variant, ours) in &a.0 {
        let Some(theirs) = b.0.get(variant) else {
            continue;
        };
        report.variants += 1;
        compare(variant, ours, theirs, &mut report);
    }
    report
}

/// One variant over the time both logs cover it: from the later first decision to the earlier
/// last one.
fn compare(variant: &str, a: &[Decision], b: &[Decision], report: &mut DiffReport) {
    let (Some(a_first), Some(b_first), Some(a_last), Some(b_last)) =
        (a.first(), b.first(), a.last(), b.last())
    else {
        return;
    };
    let start = a_first.at.max(b_first.at);
    let end = a_last.at.min(b_last.at);
    let within = |d: &&Decision| d.at >= start && d.at <= end;
    for (side, decisions) in [(&mut report.base, a), (&mut report.candidate, b)] {
        side.decisions += decisions.iter().filter(within).count();
        side.saturated_scale_downs += decisions
            .iter()
            .filter(within)
            .filter(|d| d.saturated_scale_down)
            .count();
    }
    let instants: BTreeSet<Timestamp> = a
        .iter()
        .chain(b)
        .map(|d| d.at)
        .filter(|t| *t >= start && *t <= end)
        .collect();
    let instants: Vec<Timestamp> = instants.into_iter().collect();
    let mut open: Option<Difference> = None;
    for (i, at) in instants.iter().enumerate() {
        let (Some(x), Some(y)) = (in_force(a, *at), in_force(b, *at)) else {
            continue;
        };
        let next = instants.get(i + 1).copied().unwrap_or(end);
        let hours = (next.0 - at.0) as f64 / MS_PER_HOUR;
        report.base.replica_hours += f64::from(x.desired) * hours;
        report.candidate.replica_hours += f64::from(y.desired) * hours;
        report.base.cost += f64::from(x.desired) * x.cost * hours;
        report.candidate.cost += f64::from(y.desired) * y.cost * hours;
        let delta = f64::from(y.desired) - f64::from(x.desired);
        if delta > 0.0 {
            report.more_replica_hours += delta * hours;
        } else {
            report.fewer_replica_hours -= delta * hours;
        }
        let same_stretch = open
            .as_ref()
            .is_some_and(|d| d.base == x.desired && d.candidate == y.desired);
        if !same_stretch && let Some(done) = open.take() {
            report.differences.push(done);
        }
        if x.desired == y.desired {
            continue;
        }
        let d = open.get_or_insert_with(|| Difference {
            variant: variant.to_string(),
            from: format_time(*at),
            to: format_time(*at),
            base: x.desired,
            candidate: y.desired,
            replica_hours: 0.0,
            cost: 0.0,
            base_reason: x.reason.clone(),
            candidate_reason: y.reason.clone(),
        });
        d.to = format_time(next);
        d.replica_hours += delta * hours;
        d.cost += (f64::from(y.desired) * y.cost - f64::from(x.desired) * x.cost) * hours;
    }
    if let Some(done) = open {
        report.differences.push(done);
    }
}

#[cfg(test)]
mod tests {
    use wva_storage::{
        ModelKey, RecordedAnalysis, RecordedPod, RecordedTarget, RecordedThresholds,
        RecordedVariant,
    };

    use super::*;

    fn cycle(at_s: i64, desired: u32, current: u32, kv: f64) -> (u64, Record) {
        let record = CycleRecord {
            model: ModelKey::new("ns", "m"),
            at: Timestamp(at_s * 1000),
            mode: "capacity-only".into(),
            config_version: "v".into(),
            thresholds: RecordedThresholds {
                kv_cache_threshold: 0.8,
                queue_length_threshold: 5.0,
                kv_spare_trigger: 0.1,
                queue_spare_trigger: 3.0,
            },
            metrics_error: None,
            variants: vec![RecordedVariant {
                name: "v".into(),
                cost: 10.0,
                accelerator: "H100".into(),
                current_replicas: current,
                ready_replicas: current,
                previous_desired: None,
                pods: vec![RecordedPod {
                    pod: "p".into(),
                    kv_cache_usage: Some(kv),
                    queue_length: Some(0.0),
                }],
            }],
            analysis: RecordedAnalysis {
                total_replicas: current,
                non_saturated_replicas: current,
                avg_spare_kv: 0.0,
                avg_spare_queue: 0.0,
                should_scale_up: false,
                scale_down_safe: false,
                reason: String::new(),
            },
            in_transition: false,
            safety_net: false,
            targets: vec![RecordedTarget {
                name: "v".into(),
                target: desired,
                action: "no-change".into(),
                reason: format!("want {desired}"),
                fallback_source: None,
            }],
            trigger: "tick".into(),
        };
        (0, Record::Cycle(record))
    }

    #[test]
    fn the_same_log_twice_differs_nowhere() {
        let log = vec![
            cycle(0, 2, 2, 0.5),
            cycle(60, 3, 2, 0.9),
            cycle(120, 3, 3, 0.5),
        ];
        let report = diff(&log, &log);
        assert_eq!(report.variants, 1);
        assert!(report.differences.is_empty());
        assert_eq!(report.base, report.candidate);
        assert!((report.base.replica_hours - (2.0 + 3.0) / 60.0).abs() < 1e-9);
        assert_eq!(report.cost_change_percent(), 0.0);
    }

    #[test]
    fn a_stretch_of_difference_is_timed_costed_and_explained_both_ways() {
        let base = vec![
            cycle(0, 2, 2, 0.5),
            cycle(60, 3, 2, 0.9),
            cycle(180, 3, 3, 0.5),
        ];
        // The candidate scales down a saturated variant at 60 s, and up late.
        let candidate = vec![
            cycle(0, 2, 2, 0.5),
            cycle(60, 1, 2, 0.9),
            cycle(120, 4, 2, 0.5),
            cycle(180, 3, 3, 0.5),
        ];
        let report = diff(&base, &candidate);
        assert_eq!(report.differences.len(), 2, "{:?}", report.differences);
        let first = &report.differences[0];
        assert_eq!((first.base, first.candidate), (3, 1));
        assert_eq!(
            (first.base_reason.as_str(), first.candidate_reason.as_str()),
            ("want 3", "want 1")
        );
        assert!((first.replica_hours + 2.0 / 60.0).abs() < 1e-9, "{first:?}");
        assert!((first.cost + 20.0 / 60.0).abs() < 1e-9);
        let second = &report.differences[1];
        assert_eq!((second.base, second.candidate), (3, 4));
        assert!((report.fewer_replica_hours - 2.0 / 60.0).abs() < 1e-9);
        assert!((report.more_replica_hours - 1.0 / 60.0).abs() < 1e-9);
        assert_eq!(report.candidate.saturated_scale_downs, 1);
        assert_eq!(report.base.saturated_scale_downs, 0);
        assert!(report.cost_change_percent() < 0.0);
    }

    #[test]
    fn only_the_time_both_logs_cover_is_compared_and_variants_of_one_side_are_named() {
        let base = vec![cycle(0, 2, 2, 0.5), cycle(60, 2, 2, 0.5)];
        let mut candidate = vec![
            cycle(30, 5, 2, 0.5),
            cycle(90, 5, 2, 0.5),
            cycle(300, 5, 2, 0.5),
        ];
        if let Record::Cycle(c) = &mut candidate[2].1 {
            c.targets[0].name = "w".into();
            c.variants[0].name = "w".into();
        }
        let report = diff(&base, &candidate);
        assert_eq!(report.only_in_candidate, ["ns/w"]);
        assert_eq!(report.differences.len(), 1);
        assert!((report.differences[0].replica_hours - 3.0 * 30.0 / 3600.0).abs() < 1e-9);
    }
}
