//! The server model against published vLLM measurements: the same requests replayed through
//! [`Server`], and the figures the benchmark reports computed the way the benchmark computes
//! them. The data (`sim/data/lambdalabs-llama3-8b.json`) are LambdaLabsML/vllm-benchmark's runs
//! of Llama-3-8B-Instruct on one A100 and one H100 with 10, 80 and 320 requests sent at once.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::profiles::{AcceleratorProfile, Calibration, Datasheet};
use crate::results::percentile;
use crate::server::{Completed, Request, Server};

/// The published runs, embedded so that the calibration test runs offline.
pub const LLAMA3_8B: &str = include_str!("../data/lambdalabs-llama3-8b.json");

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
    use crate::profiles::{A100_SXM, CALIBRATION, H100_SXM};

    #[test]
    fn the_model_reproduces_every_published_figure_within_a_quarter() {
        let benchmark = Benchmark::llama3_8b().expect("embedded data parse");
        assert_eq!(benchmark.measurements.len(), 6);
        let pairs = compare(&benchmark, &[A100_SXM, H100_SXM], &CALIBRATION);
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
}
