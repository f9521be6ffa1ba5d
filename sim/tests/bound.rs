//! The hindsight bound bounds: on the synthetic zoo and the built-in load (a quarter of an hour
//! each, every policy at every setting of its knob), no policy's point lies beyond the bound's
//! frontier by more than the attainment's sampling noise, except the few named below, each
//! with the margin it was measured by. A new point beyond the bound fails the test, and so does
//! a named one that no longer is (remove it from the list).

use wva_sim::engine::RunOptions;
use wva_sim::frontier::{FrontierRequest, beyond_bound, measure};
use wva_sim::policy::{POLICY_NAMES, Policy};
use wva_sim::results::SloTargets;
use wva_sim::workloads::{WorkloadSet, WorkloadSource, names, workload};

/// (workload, policy, setting) the bound does not dominate yet, where a policy's steady
/// headroom beats a schedule planned minute by minute: on a fast ramp near the minimum fleet,
/// and on chat with gamma arrivals of CV 3.
const KNOWN_BEYOND: [(&str, &str, f64); 4] = [
    // 97.6 % at 4.30 against the bound's 96.8 % at that cost.
    ("zoo:bursty-chat", "wva", 0.3),
    // 71.3 % at 2.93 against the bound's 68.6 %; the three are one point.
    ("zoo:ramp", "wva-v1", 0.6),
    ("zoo:ramp", "wva-v1", 0.7),
    ("zoo:ramp", "saturation-v2", 0.95),
];

#[test]
fn no_point_lies_beyond_the_hindsight_bound() {
    let source = WorkloadSource {
        traces_dir: "/nonexistent".into(),
        seed: 42,
        duration_s: Some(900.0),
        trace_speedup: 1.0,
    };
    let mut workloads: Vec<_> = names(WorkloadSet::Zoo)
        .iter()
        .map(|n| workload(&source, n).expect("zoo workload"))
        .collect();
    workloads.push(workload(&source, "builtin").expect("builtin"));
    let policies: Vec<Policy> = POLICY_NAMES
        .iter()
        .map(|n| Policy::parse(n).expect("policy"))
        .collect();
    let frontiers = measure(
        &FrontierRequest {
            workloads,
            policies,
            options: RunOptions::default(),
            slo: SloTargets::default(),
            target_attainment: 0.95,
            reference: Policy::parse("wva-v1").expect("policy"),
        },
        |_, _| {},
    )
    .expect("frontier");
    let mut beyond: Vec<(String, String, f64)> = Vec::new();
    for f in &frontiers {
        assert!(
            f.points.iter().any(|p| p.policy == "hindsight"),
            "{}: the bound ran",
            f.workload
        );
        assert_eq!(beyond_bound(&f.points), f.beyond_bound);
        for p in &f.beyond_bound {
            beyond.push((
                f.workload.clone(),
                p.policy.clone(),
                p.setting.unwrap_or(f64::NAN),
            ));
        }
    }
    let known: Vec<(String, String, f64)> = KNOWN_BEYOND
        .iter()
        .map(|(w, p, s)| (w.to_string(), p.to_string(), *s))
        .collect();
    assert_eq!(
        beyond, known,
        "points beyond the hindsight bound (workload, policy, setting)"
    );
}
