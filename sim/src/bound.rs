//! Runs of the hindsight bound: its plan, run on the emulated cluster, then mended where the
//! run missed more than the plan expected (or, for a searched plan, with capacity moved from
//! where nothing was missed to where most was), and run again: the simulator as the judge.
//! Every round is a schedule computed from the whole load, so each is a point of the bound.
//! Every other policy is one run of [`crate::engine::run`].

use crate::engine::{RunOptions, run, run_with};
use crate::peers::hindsight::{
    BoundTarget, HindsightScaler, MissTable, WINDOW_MS, misses_per_minute,
};
use crate::peers::replay::{Replay, ReplayScaler};
use crate::policy::Policy;
use crate::results::{RunResult, SloTargets};
use crate::scenario::Scenario;

/// A run of `options.policy` (for the bound: its last round).
pub async fn run_policy(scenario: &Scenario, options: &RunOptions) -> Result<RunResult, String> {
    let mut rounds = run_rounds(scenario, options).await?;
    rounds
        .pop()
        .map(|(_, r)| r)
        .ok_or_else(|| "the run produced nothing".to_string())
}

/// Every run `options.policy` makes, with the setting each stands for: one for a policy, one
/// per round for the bound (its plan, then each mended plan, up to `mended` times, stopping
/// when nothing is left to mend).
pub async fn run_rounds(
    scenario: &Scenario,
    options: &RunOptions,
) -> Result<Vec<(Policy, RunResult)>, String> {
    let Policy::Hindsight { target, mended } = options.policy else {
        return Ok(vec![(options.policy, run(scenario, options).await?)]);
    };
    if let BoundTarget::Replayed(seed) = target {
        return replay_rounds(scenario, options, seed, mended).await;
    }
    let table = MissTable::given_or_measured(options.hindsight.as_deref(), scenario)?;
    let first = scenario.initial_replicas();
    let mut plan = table.plan_for(target, &first);
    let mut out = Vec::new();
    for round in 0..=mended {
        let scaler = HindsightScaler::new(
            table.fleets(&plan),
            scenario.startup_s * 1e3,
            scenario.control_interval_s * 1e3,
        );
        let result = run_with(scenario, options, Box::new(scaler)).await?;
        let realized =
            misses_per_minute(&scenario.requests, &result.completed, SloTargets::default());
        let spent: f64 = result.variants.iter().map(|v| v.cost).sum();
        out.push((
            Policy::Hindsight {
                target,
                mended: round,
            },
            result,
        ));
        let changed = match target {
            BoundTarget::Searched(budget) => {
                table.search_step(&mut plan, &realized, budget, spent, &first)
            }
            _ => table.repair(&mut plan, &realized),
        };
        if !changed {
            break;
        }
    }
    Ok(out)
}

/// The bound's rounds on another policy's schedule: that policy's run (the seed), its schedule
/// replayed, then improved up to `mended` times.
async fn replay_rounds(
    scenario: &Scenario,
    options: &RunOptions,
    seed: u32,
    mended: u32,
) -> Result<Vec<(Policy, RunResult)>, String> {
    let seed_policy = *options
        .replay_seeds
        .get(seed as usize)
        .ok_or_else(|| format!("replay of seed {seed}: the run was given no such seed"))?;
    if matches!(seed_policy, Policy::Hindsight { .. }) {
        return Err(format!(
            "replay of seed {seed}: the seed is the bound itself, which needs no replay"
        ));
    }
    let seeded = run(
        scenario,
        &RunOptions {
            policy: seed_policy,
            ..options.clone()
        },
    )
    .await?;
    let mut replay = Replay::new(scenario, seeded.scaling);
    let mut arrived = vec![0u32; (scenario.duration_s / 60.0).ceil().max(1.0) as usize];
    for r in &scenario.requests {
        let minute = (r.arrival_ms / WINDOW_MS) as usize;
        if let Some(n) = arrived.get_mut(minute) {
            *n += 1;
        }
    }
    let mut out = Vec::new();
    for round in 0..=mended {
        let scaler = ReplayScaler::new(replay.clone(), scenario.initial_replicas());
        let result = run_with(scenario, options, Box::new(scaler)).await?;
        let realized =
            misses_per_minute(&scenario.requests, &result.completed, SloTargets::default());
        out.push((
            Policy::Hindsight {
                target: BoundTarget::Replayed(seed),
                mended: round,
            },
            result,
        ));
        if !replay.step(&realized, &arrived) {
            break;
        }
    }
    Ok(out)
}
