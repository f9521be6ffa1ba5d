//! Scenarios: the built-in one (two variants of one model on different accelerators, a bursty
//! day compressed into the run), and trace replays on the same cluster.

use super::hpa::{Behavior, HpaSpec};
use super::load::{Arrivals, RateShape, SyntheticLoad, TokenLengths};
use super::profiles::{AcceleratorProfile, Engine, by_name_for};
use super::server::Request;

/// One variant of the simulated model.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantScenario {
    pub name: String,
    pub accelerator: String,
    /// Cost of one replica per hour; also the VA's `variantCost`.
    pub cost_per_hour: f64,
    pub initial_replicas: u32,
    pub max_replicas: u32,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub namespace: String,
    pub model_id: String,
    pub variants: Vec<VariantScenario>,
    pub requests: Vec<Request>,
    pub duration_s: f64,
    pub startup_s: f64,
    pub control_interval_s: f64,
    pub hpa: HpaSpec,
    /// Which vLLM the servers behave like.
    pub engine: Engine,
}

impl Scenario {
    /// The replicas each variant starts with.
    pub fn initial_replicas(&self) -> Vec<u32> {
        self.variants.iter().map(|v| v.initial_replicas).collect()
    }

    /// How each variant's servers serve, under the scenario's engine.
    pub fn profiles(&self) -> Result<Vec<AcceleratorProfile>, String> {
        self.variants
            .iter()
            .map(|v| {
                by_name_for(self.engine, &v.accelerator).ok_or_else(|| {
                    format!(
                        "variant {}: accelerator: expected H100, A100 or L40S, got {:?}",
                        v.name, v.accelerator
                    )
                })
            })
            .collect()
    }
}

fn cluster(requests: Vec<Request>, duration_s: f64) -> Scenario {
    Scenario {
        namespace: "llm-d-sim".into(),
        model_id: "meta-llama/Llama-3.1-8B-Instruct".into(),
        variants: vec![
            VariantScenario {
                name: "llama-8b-a100".into(),
                accelerator: "A100".into(),
                cost_per_hour: 3.7,
                initial_replicas: 1,
                max_replicas: 12,
            },
            VariantScenario {
                name: "llama-8b-h100".into(),
                accelerator: "H100".into(),
                cost_per_hour: 6.9,
                initial_replicas: 1,
                max_replicas: 12,
            },
        ],
        requests,
        duration_s,
        startup_s: 120.0,
        control_interval_s: 15.0,
        // The HPA the chart renders for each variant.
        hpa: HpaSpec {
            behavior: Behavior::chart(),
            ..HpaSpec::default()
        },
        engine: Engine::default(),
    }
}

/// The load of the built-in scenario: a day's trough and peak over the run (6 to 42 requests/s,
/// about two to ten replicas of the calibrated servers), six bursts of 18 requests/s more lasting
/// five minutes at an hour's run (longer than a replica takes to start, so that how fast a policy
/// reacts shows; a burst shorter than the start-up is only met by replicas kept idle beforehand,
/// which the knob sweeps already price), bursty (gamma, cv 1.5) arrivals, chat-like token lengths.
pub fn builtin_load(duration_s: f64) -> SyntheticLoad {
    SyntheticLoad {
        shape: RateShape::BurstyDay {
            mean: 24.0,
            amplitude: 18.0,
            period_s: duration_s,
            burst: 18.0,
            burst_every_s: duration_s / 6.0,
            burst_len_s: duration_s / 12.0,
        },
        arrivals: Arrivals::Gamma { cv: 1.5 },
        prompt: TokenLengths {
            mean: 800.0,
            cv: 1.2,
            min: 4,
            max: 8_000,
        },
        output: TokenLengths {
            mean: 220.0,
            cv: 1.0,
            min: 1,
            max: 2_000,
        },
    }
}

/// The built-in scenario.
pub fn builtin(duration_s: f64, seed: u64) -> Scenario {
    cluster(
        builtin_load(duration_s).generate(duration_s, seed),
        duration_s,
    )
}

/// The built-in cluster fed by a recorded trace; the run lasts as long as the trace (or
/// `duration_s` when given).
pub fn trace(requests: Vec<Request>, duration_s: Option<f64>) -> Scenario {
    let span = requests.last().map_or(0.0, |r| r.arrival_ms / 1e3) + 60.0;
    cluster(requests, duration_s.unwrap_or(span))
}
