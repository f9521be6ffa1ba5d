//! The server model against published vLLM measurements: the same requests replayed through
//! [`Server`], and the figures the benchmark reports computed the way the benchmark computes
//! them. Two sets of data, one per engine generation:
//!
//! - vLLM 0.5.4 (`sim/data/lambdalabs-llama3-8b.json`): LambdaLabsML/vllm-benchmark's runs of
//!   Llama-3-8B-Instruct on one A100 and one H100 with 10, 80 and 320 requests sent at once;
//! - vLLM 0.15.1, the V1 engine (`sim/data/inference-sim-llama31-8b-h100-vllm-0.15.json`): the
//!   ground truth of inference-sim's sim-to-real validation, Llama-3.1-8B-Instruct on one H100
//!   under constant-rate stages of four workloads (general, codegen, roleplay, reasoning).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::profiles::{AcceleratorProfile, Calibration, Datasheet};
use crate::results::percentile;
use crate::server::{Completed, Request, Server};

/// The published runs, embedded so that the calibration test runs offline.
pub const LLAMA3_8B: &str = include_str!("../data/lambdalabs-llama3-8b.json");

/// The V1 engine's published runs, embedded likewise.
pub const LLAMA31_8B_V1: &str =
    include_str!("../data/inference-sim-llama31-8b-h100-vllm-0.15.json");

/// Runs of one model under constant-rate load stages (inference-perf's `constant` load).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedBenchmark {
    pub source: String,
    pub engine: String,
    pub runs: Vec<StagedRun>,
}

/// One run: its stages, request lengths and engine settings, and what it measured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedRun {
    pub name: String,
    pub experiment: String,
    pub stages: Vec<Stage>,
    /// The shared system prompt, found in vLLM's prefix cache after its first use.
    pub cached_prefix_tokens: u32,
    pub prompt_tokens: u32,
    /// The mean output length the published figures imply.
    pub output_tokens: u32,
    /// The length the load generator asked for.
    pub nominal_output_tokens: u32,
    pub max_batched_tokens: u32,
    pub measured: StagedFigures,
}

/// One stage of constant-rate load.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub rate: f64,
    pub duration_s: f64,
}

/// A run's means, as inference-perf reports them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedFigures {
    pub ttft_mean_ms: f64,
    pub itl_mean_ms: f64,
    pub e2e_mean_ms: f64,
}

impl StagedBenchmark {
    pub fn llama31_8b_v1() -> Result<Self, serde_json::Error> {
        serde_json::from_str(LLAMA31_8B_V1)
    }
}

/// The V1 engine's runs used: `max-num-seqs` 128.
const STAGED_MAX_NUM_SEQS: u32 = 128;

/// Replays a staged run on one server of `profile` (with the run's engine settings): requests
/// at constant intervals, the cached prefix served from the prefix cache (resident, read by
/// attention, not computed again).
pub fn replay_staged(profile: &AcceleratorProfile, run: &StagedRun) -> StagedFigures {
    let mut profile = profile.clone();
    profile.max_num_seqs = STAGED_MAX_NUM_SEQS;
    profile.max_batched_tokens = run.max_batched_tokens;
    let mut server = Server::new(profile, 0.0).with_cached_prefix(run.cached_prefix_tokens);
    let mut arrivals = Vec::new();
    let mut start = 0.0;
    for stage in &run.stages {
        let gap = 1e3 / stage.rate;
        let n = (stage.duration_s * stage.rate).round() as usize;
        arrivals.extend((0..n).map(|i| start + i as f64 * gap));
        start += stage.duration_s * 1e3;
    }
    let mut done: Vec<Completed> = Vec::with_capacity(arrivals.len());
    let mut next = 0;
    let mut now = 0.0f64;
    loop {
        while arrivals.get(next).is_some_and(|&a| a <= now) {
            server.enqueue(Request {
                id: next as u64,
                arrival_ms: arrivals[next],
                prompt_tokens: run.prompt_tokens.max(1),
                output_tokens: run.output_tokens.max(1),
            });
            next += 1;
        }
        now = match server.step(now, &mut done) {
            Some(end) => end,
            None => match arrivals.get(next) {
                Some(&a) => a,
                None => break,
            },
        };
    }
    let n = done.len().max(1) as f64;
    StagedFigures {
        ttft_mean_ms: done.iter().map(|c| c.ttft_ms).sum::<f64>() / n,
        itl_mean_ms: done.iter().map(|c| c.itl_ms).sum::<f64>() / n,
        e2e_mean_ms: done.iter().map(|c| c.finish_ms - c.arrival_ms).sum::<f64>() / n,
    }
}

/// Every staged run beside the model's figures for it on `card` under `calibration`.
pub fn compare_staged(
    benchmark: &StagedBenchmark,
    card: &Datasheet,
    calibration: &Calibration,
) -> Vec<(StagedRun, StagedFigures)> {
    let profile = card.profile(calibration);
    benchmark
        .runs
        .iter()
        .map(|r| (r.clone(), replay_staged(&profile, r)))
        .collect()
}

/// The largest relative error over the staged figures (mean TTFT, ITL and end-to-end).
pub fn worst_staged_error(pairs: &[(StagedRun, StagedFigures)]) -> f64 {
    pairs
        .iter()
        .flat_map(|(r, m)| {
            [
                m.ttft_mean_ms / r.measured.ttft_mean_ms,
                m.itl_mean_ms / r.measured.itl_mean_ms,
                m.e2e_mean_ms / r.measured.e2e_mean_ms,
            ]
        })
        .map(|ratio| (ratio - 1.0).abs())
        .fold(0.0, f64::max)
}

/// A set of published runs of one model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Benchmark {
    pub source: String,
    pub engine: String,
    /// Prompt lengths of the requests, in the order sent; a run of N uses the first N.
    pub input_lens: Vec<u32>,
    /// Output lengths per accelerator, from its largest run.
    pub output_lens: BTreeMap<String, Vec<u32>>,
    pub measurements: Vec<Measurement>,
}

/// What one run reported.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Measurement {
    pub accelerator: String,
    pub prompts: usize,
    pub median_tpot_ms: f64,
    pub output_tokens_per_s: f64,
    pub mean_ttft_ms: Option<f64>,
}

/// The same figures from the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replayed {
    pub median_tpot_ms: f64,
    pub output_tokens_per_s: f64,
    pub mean_ttft_ms: f64,
}

impl Benchmark {
    pub fn llama3_8b() -> Result<Self, serde_json::Error> {
        serde_json::from_str(LLAMA3_8B)
    }
}

/// Sends every request at time 0 to one server and runs it until all are done.
pub fn replay(profile: &AcceleratorProfile, inputs: &[u32], outputs: &[u32]) -> Replayed {
    let mut server = Server::new(profile.clone(), 0.0);
    for (id, (&prompt, &output)) in inputs.iter().zip(outputs).enumerate() {
        server.enqueue(Request {
            id: id as u64,
            arrival_ms: 0.0,
            prompt_tokens: prompt.max(1),
            // A run that generated nothing still produced one token in the engine.
            output_tokens: output.max(1),
        });
    }
    let mut done: Vec<Completed> = Vec::with_capacity(inputs.len());
    let mut now = 0.0;
    while let Some(end) = server.step(now, &mut done) {
        now = end;
    }
    // As the benchmark: TPOT over requests with more than one output token, throughput over
    // the tokens the requests asked for and the time the last one took.
    let tpot: Vec<f64> = done
        .iter()
        .filter(|c| c.output_tokens > 1)
        .map(|c| c.itl_ms)
        .collect();
    let duration_s = done.iter().map(|c| c.finish_ms).fold(0.0, f64::max) / 1e3;
    let tokens: u64 = outputs.iter().map(|&o| u64::from(o)).sum();
    Replayed {
        median_tpot_ms: percentile(tpot, 0.5).unwrap_or(0.0),
        output_tokens_per_s: if duration_s > 0.0 {
            tokens as f64 / duration_s
        } else {
            0.0
        },
        mean_ttft_ms: done.iter().map(|c| c.ttft_ms).sum::<f64>() / done.len().max(1) as f64,
    }
}

/// Every measurement beside the model's figure for it, under `calibration`.
pub fn compare(
    benchmark: &Benchmark,
    cards: &[Datasheet],
    calibration: &Calibration,
) -> Vec<(Measurement, Replayed)> {
    benchmark
        .measurements
        .iter()
        .filter_map(|m| {
            let card = cards.iter().find(|c| c.name == m.accelerator)?;
            let outputs = benchmark.output_lens.get(&m.accelerator)?;
            let n = m.prompts.min(benchmark.input_lens.len()).min(outputs.len());
            let replayed = replay(
                &card.profile(calibration),
                &benchmark.input_lens[..n],
                &outputs[..n],
            );
            Some((m.clone(), replayed))
        })
        .collect()
}

/// The largest relative error over the compared figures (TPOT, output throughput, and mean
/// TTFT where it was published).
pub fn worst_error(pairs: &[(Measurement, Replayed)]) -> f64 {
    pairs
        .iter()
        .flat_map(|(m, r)| {
            [
                Some(r.median_tpot_ms / m.median_tpot_ms),
                Some(r.output_tokens_per_s / m.output_tokens_per_s),
                m.mean_ttft_ms.map(|t| r.mean_ttft_ms / t),
            ]
        })
        .flatten()
        .map(|ratio| (ratio - 1.0).abs())
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::{A100_SXM, H100_SXM, VLLM_05, VLLM_V1};

    #[test]
    fn the_model_reproduces_every_published_figure_within_a_quarter() {
        let benchmark = Benchmark::llama3_8b().expect("embedded data parse");
        assert_eq!(benchmark.measurements.len(), 6);
        let pairs = compare(&benchmark, &[A100_SXM, H100_SXM], &VLLM_05);
        assert_eq!(pairs.len(), 6, "every measurement has its card");
        for (m, r) in &pairs {
            let tpot = r.median_tpot_ms / m.median_tpot_ms;
            let throughput = r.output_tokens_per_s / m.output_tokens_per_s;
            assert!(
                (0.75..=1.25).contains(&tpot),
                "{} x{}: TPOT {:.2} ms, measured {:.2} ms",
                m.accelerator,
                m.prompts,
                r.median_tpot_ms,
                m.median_tpot_ms
            );
            assert!(
                (0.75..=1.25).contains(&throughput),
                "{} x{}: {:.0} output tokens/s, measured {:.0}",
                m.accelerator,
                m.prompts,
                r.output_tokens_per_s,
                m.output_tokens_per_s
            );
            if let Some(ttft) = m.mean_ttft_ms {
                assert!(
                    (0.75..=1.25).contains(&(r.mean_ttft_ms / ttft)),
                    "{} x{}: mean TTFT {:.0} ms, measured {ttft:.0} ms",
                    m.accelerator,
                    m.prompts,
                    r.mean_ttft_ms
                );
            }
        }
        assert!(worst_error(&pairs) <= 0.25);
    }

    /// vLLM's V1 engine (0.15.1): mean TTFT, ITL and end-to-end latency of the six published
    /// runs of Llama-3.1-8B-Instruct on one H100, each within a quarter.
    #[test]
    fn the_v1_model_reproduces_every_published_figure_within_a_quarter() {
        let benchmark = StagedBenchmark::llama31_8b_v1().expect("embedded data parse");
        assert_eq!(benchmark.runs.len(), 6);
        let pairs = compare_staged(&benchmark, &H100_SXM, &VLLM_V1);
        for (run, model) in &pairs {
            let m = run.measured;
            for (what, measured, modelled) in [
                ("TTFT", m.ttft_mean_ms, model.ttft_mean_ms),
                ("ITL", m.itl_mean_ms, model.itl_mean_ms),
                ("E2E", m.e2e_mean_ms, model.e2e_mean_ms),
            ] {
                assert!(
                    (0.75..=1.25).contains(&(modelled / measured)),
                    "{}: mean {what} {modelled:.1} ms, measured {measured:.1} ms",
                    run.name
                );
            }
        }
        assert!(worst_staged_error(&pairs) <= 0.25);
    }
}
