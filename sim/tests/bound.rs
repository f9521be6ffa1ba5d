//! The hindsight bound bounds: on the synthetic zoo and the built-in load (a quarter of an hour
//! each, every policy at every setting of its knob), no policy's point lies beyond the bound's
//! frontier by more than the attainment's sampling noise. Where the bound's planned schedules
//! fall behind a point (a policy's steady headroom on a fast ramp or on chat in clumps), the
//! frontier replays that point's run and improves it; the test also checks that those replays
//! happened and that they reproduce the run they replay.

use wva_sim::engine::RunOptions;
use wva_sim::frontier::{FrontierRequest, beyond_bound, measure};
use wva_sim::policy::{POLICY_NAMES, Policy};
use wva_sim::results::SloTargets;
use wva_sim::workloads::{WorkloadSet, WorkloadSource, names, workload};

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
    assert_eq!(
        beyond,
        Vec::<(String, String, f64)>::new(),
        "points beyond the hindsight bound (workload, policy, setting)"
    );
    // The replays ran where the plans fell behind, and each first replay served the requests
    // as the run it replays did, at its cost.
    let mut replays = 0;
    for f in &frontiers {
        for replay in f
            .points
            .iter()
            .filter(|p| p.knob.as_deref() == Some("replay of seed") && p.mended == Some(0))
        {
            replays += 1;
            assert!(
                f.points.iter().any(|p| p.policy != "hindsight"
                    && (p.cost - replay.cost).abs() < 1e-9
                    && p.slo_attainment == replay.slo_attainment),
                "{}: the replay at {:.3} reproduces a policy's run",
                f.workload,
                replay.cost
            );
        }
    }
    assert!(replays > 0, "some planned schedule fell behind a policy");
}
