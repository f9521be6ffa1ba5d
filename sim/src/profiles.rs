//! Accelerator profiles for an 8B dense model (Llama-3-8B class) served by vLLM in bf16.
//!
//! Two kinds of numbers make a profile:
//! - facts from datasheets and the model card: 32 layers, 8 KV heads of dimension 128, so one
//!   token of KV cache takes 2 × 32 × 8 × 128 × 2 B = 128 KiB; about 16 GB of bf16 weights;
//!   memory, bandwidth and dense bf16 throughput of each card (H100 SXM 80 GB, 3.35 TB/s,
//!   989 TFLOPS; A100 SXM 80 GB, 2.0 TB/s, 312 TFLOPS; L40S 48 GB, 0.864 TB/s, 362 TFLOPS);
//!   vLLM's defaults (`gpu-memory-utilization` 0.9, 16-token blocks, `max-num-seqs` 256);
//! - a [`Calibration`] per [`Engine`]: how much of that peak a real vLLM achieves, fitted to
//!   published vLLM measurements of this model on these cards (`calibration.rs`,
//!   `docs/simulation.md`): vLLM 0.5.4, and vLLM's V1 engine (0.15.1), the default.
//!
//! A decode iteration reads the weights once and the resident KV cache (memory-bound, at the
//! calibrated share of peak bandwidth), plus a fixed cost per step and a cost per sequence in
//! the batch (its compute at the calibrated decode efficiency, and scheduling); a prefill token
//! costs 2 × 8e9 FLOP at the calibrated prefill efficiency.

/// How much of the hardware's peak vLLM achieves; fitted by `cargo run -p wva-sim --example
/// calibrate [vllm-v1]` to the measurements in `sim/data/`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Share of peak memory bandwidth a decode step achieves reading weights and KV cache.
    pub bandwidth_efficiency: f64,
    /// Fixed time of every iteration besides reading the weights (launches, sampling), ms.
    pub step_overhead_ms: f64,
    /// Share of peak bf16 throughput the per-sequence decode compute achieves.
    pub decode_efficiency: f64,
    /// Scheduling and bookkeeping per sequence per iteration (CPU side), ms.
    pub per_seq_overhead_ms: f64,
    /// Share of peak bf16 throughput a prefill achieves.
    pub prefill_efficiency: f64,
    pub step_model: StepModel,
    /// Time a request spends outside the GPU's iterations before its first token reaches the
    /// client (the API server tokenising it, handing it to the engine, streaming), ms.
    pub request_overhead_ms: f64,
}

/// How an iteration's parts add up: in sequence (the fit to vLLM 0.5.4), or as a roofline,
/// where the compute of the decodes and prefill chunks overlaps reading the weights and KV
/// cache and the slower of the two sets the pace (vLLM's V1 engine runs both in one forward
/// pass; a memory-bound step carries small prefill chunks almost for free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepModel {
    Sum,
    Roofline,
}

/// The fit to vLLM 0.5.4 (see `docs/simulation.md` for the figures it reproduces).
pub const VLLM_05: Calibration = Calibration {
    bandwidth_efficiency: 0.9,
    step_overhead_ms: 3.0,
    decode_efficiency: 0.8,
    per_seq_overhead_ms: 0.015,
    prefill_efficiency: 0.5,
    step_model: StepModel::Sum,
    request_overhead_ms: 0.0,
};

/// The fit to vLLM 0.15.1, the V1 engine, on one H100 (see `docs/simulation.md`). Those runs
/// barely prefill (their prompts repeat and come from the prefix cache), so the prefill
/// efficiency is 0.5.4's; the A100's profile takes the same shares of its own datasheet.
pub const VLLM_V1: Calibration = Calibration {
    bandwidth_efficiency: 0.95,
    step_overhead_ms: 3.0,
    decode_efficiency: 0.8,
    per_seq_overhead_ms: 0.016,
    prefill_efficiency: 0.5,
    step_model: StepModel::Roofline,
    request_overhead_ms: 25.0,
};

/// Which vLLM the emulated servers behave like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// vLLM 0.5.4 (2024), the first calibration.
    Vllm05,
    /// vLLM's V1 engine, calibrated on 0.15.1: what users run today.
    #[default]
    VllmV1,
}

impl Engine {
    pub fn calibration(self) -> Calibration {
        match self {
            Self::Vllm05 => VLLM_05,
            Self::VllmV1 => VLLM_V1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vllm05 => "vllm-0.5",
            Self::VllmV1 => "vllm-v1",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "vllm-0.5" => Ok(Self::Vllm05),
            "vllm-v1" => Ok(Self::VllmV1),
            other => Err(format!("expected vllm-v1 or vllm-0.5, got {other:?}")),
        }
    }
}

/// How one accelerator type serves the model.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceleratorProfile {
    pub name: &'static str,
    /// KV-cache blocks of [`BLOCK_TOKENS`] tokens.
    pub kv_blocks: u32,
    /// vLLM `max-num-seqs`.
    pub max_num_seqs: u32,
    /// Prompt tokens scheduled per iteration at most (chunked prefill budget).
    pub max_batched_tokens: u32,
    /// Fixed time of one iteration: reading the weights.
    pub base_ms: f64,
    /// Added per sequence decoded in the iteration.
    pub per_seq_ms: f64,
    /// Added per prompt token prefilled in the iteration.
    pub prefill_ms_per_token: f64,
    /// Added per 1,000 tokens resident in the KV cache (attention reads them).
    pub per_resident_ktoken_ms: f64,
    /// The parts of `base_ms` and `per_seq_ms` that are host-side overhead (never overlapped).
    pub step_overhead_ms: f64,
    pub per_seq_overhead_ms: f64,
    pub step_model: StepModel,
    /// Added to what every request's client sees (see [`Calibration::request_overhead_ms`]).
    pub request_overhead_ms: f64,
    /// Default cost of one replica per hour (on-demand list prices, rounded).
    pub cost_per_hour: f64,
}

/// Tokens per KV-cache block (vLLM's default).
pub const BLOCK_TOKENS: u32 = 16;

const KV_BYTES_PER_TOKEN: f64 = 131_072.0;
const WEIGHTS_GB: f64 = 16.1;
const ACTIVATIONS_GB: f64 = 3.0;
const FLOP_PER_TOKEN: f64 = 2.0 * 8.0e9;

impl AcceleratorProfile {
    /// How long an iteration takes with `decodes` sequences decoding, `prefill_tokens` prompt
    /// tokens prefilled and `resident` tokens in the KV cache.
    pub fn step_ms(&self, decodes: u32, prefill_tokens: u32, resident: u64) -> f64 {
        let decodes = f64::from(decodes);
        let prefill = self.prefill_ms_per_token * f64::from(prefill_tokens);
        let kv = self.per_resident_ktoken_ms * resident as f64 / 1_000.0;
        match self.step_model {
            StepModel::Sum => self.base_ms + self.per_seq_ms * decodes + prefill + kv,
            StepModel::Roofline => {
                let memory = self.base_ms - self.step_overhead_ms + kv;
                let compute = (self.per_seq_ms - self.per_seq_overhead_ms) * decodes + prefill;
                self.step_overhead_ms + self.per_seq_overhead_ms * decodes + memory.max(compute)
            }
        }
    }

    /// Tokens the KV cache holds.
    pub fn kv_tokens(&self) -> u32 {
        self.kv_blocks.saturating_mul(BLOCK_TOKENS)
    }

    /// Whether the KV cache can ever hold this prompt and its first generated token.
    pub fn holds_prompt(&self, prompt_tokens: u32) -> bool {
        prompt_tokens.saturating_add(1).div_ceil(BLOCK_TOKENS) <= self.kv_blocks
    }
}

fn kv_blocks(memory_gb: f64) -> u32 {
    let kv_bytes = (memory_gb * 0.9 - WEIGHTS_GB - ACTIVATIONS_GB) * 1e9;
    (kv_bytes / KV_BYTES_PER_TOKEN / f64::from(BLOCK_TOKENS)) as u32
}

/// An accelerator's datasheet figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datasheet {
    pub name: &'static str,
    pub memory_gb: f64,
    pub bandwidth_tb_s: f64,
    pub bf16_tflops: f64,
    /// vLLM's chunked-prefill token budget per iteration on this card (`max-num-batched-tokens`:
    /// the V1 engine's serving default is 8,192 on H100-class cards and 2,048 on the others).
    pub max_batched_tokens: u32,
    /// On-demand price of one card per hour, rounded.
    pub cost_per_hour: f64,
}

pub const H100_SXM: Datasheet = Datasheet {
    name: "H100",
    memory_gb: 80.0,
    bandwidth_tb_s: 3.35,
    bf16_tflops: 989.0,
    max_batched_tokens: 8_192,
    cost_per_hour: 6.9,
};

pub const A100_SXM: Datasheet = Datasheet {
    name: "A100",
    memory_gb: 80.0,
    bandwidth_tb_s: 2.0,
    bf16_tflops: 312.0,
    max_batched_tokens: 2_048,
    cost_per_hour: 3.7,
};

pub const L40S: Datasheet = Datasheet {
    name: "L40S",
    memory_gb: 48.0,
    bandwidth_tb_s: 0.864,
    bf16_tflops: 362.0,
    max_batched_tokens: 2_048,
    cost_per_hour: 1.9,
};

impl Datasheet {
    /// The profile of this card under a calibration.
    pub fn profile(&self, c: &Calibration) -> AcceleratorProfile {
        let effective_bw = self.bandwidth_tb_s * 1e12 * c.bandwidth_efficiency;
        let flops = self.bf16_tflops * 1e12;
        AcceleratorProfile {
            name: self.name,
            kv_blocks: kv_blocks(self.memory_gb),
            max_num_seqs: 256,
            max_batched_tokens: self.max_batched_tokens,
            base_ms: WEIGHTS_GB * 1e9 / effective_bw * 1e3 + c.step_overhead_ms,
            per_seq_ms: FLOP_PER_TOKEN / (flops * c.decode_efficiency) * 1e3
                + c.per_seq_overhead_ms,
            prefill_ms_per_token: FLOP_PER_TOKEN / (flops * c.prefill_efficiency) * 1e3,
            per_resident_ktoken_ms: 1_000.0 * KV_BYTES_PER_TOKEN / effective_bw * 1e3,
            step_overhead_ms: c.step_overhead_ms,
            per_seq_overhead_ms: c.per_seq_overhead_ms,
            step_model: c.step_model,
            request_overhead_ms: c.request_overhead_ms,
            cost_per_hour: self.cost_per_hour,
        }
    }
}

/// H100 SXM 80 GB under the default engine.
pub fn h100() -> AcceleratorProfile {
    H100_SXM.profile(&Engine::default().calibration())
}

/// A100 SXM 80 GB under the default engine.
pub fn a100() -> AcceleratorProfile {
    A100_SXM.profile(&Engine::default().calibration())
}

/// L40S 48 GB under the default engine.
pub fn l40s() -> AcceleratorProfile {
    L40S.profile(&Engine::default().calibration())
}

/// The profile of a named accelerator (case-insensitive) under the default engine.
pub fn by_name(name: &str) -> Option<AcceleratorProfile> {
    by_name_for(Engine::default(), name)
}

/// The profile of a named accelerator (case-insensitive) under an engine.
pub fn by_name_for(engine: Engine, name: &str) -> Option<AcceleratorProfile> {
    let card = match name.to_ascii_uppercase().as_str() {
        "H100" => H100_SXM,
        "A100" => A100_SXM,
        "L40S" => L40S,
        _ => return None,
    };
    Some(card.profile(&engine.calibration()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_in_the_published_ranges() {
        let (h, a, l) = (h100(), a100(), l40s());
        // About 400k tokens of KV on an 80 GB card, about 170k on 48 GB.
        let tokens = |p: &AcceleratorProfile| p.kv_blocks * BLOCK_TOKENS;
        assert!((380_000..430_000).contains(&tokens(&h)), "{}", tokens(&h));
        assert_eq!(tokens(&h), tokens(&a));
        assert!((150_000..190_000).contains(&tokens(&l)), "{}", tokens(&l));
        // Batch-1 inter-token latency: about 7, 11 and 24 ms (the published A100 and H100
        // runs with 10 requests: 12.0 and 7.6 ms per output token).
        let itl1 = |p: &AcceleratorProfile| p.base_ms + p.per_seq_ms;
        assert!(itl1(&h) < itl1(&a) && itl1(&a) < itl1(&l));
        assert!((6.0..9.0).contains(&itl1(&h)), "{}", itl1(&h));
        assert!((9.5..13.0).contains(&itl1(&a)), "{}", itl1(&a));
        assert!((20.0..30.0).contains(&itl1(&l)), "{}", itl1(&l));
        // Prefill: about 31, 10 and 11 thousand tokens per second.
        let prefill = |p: &AcceleratorProfile| 1_000.0 / p.prefill_ms_per_token;
        assert!(
            (25_000.0..40_000.0).contains(&prefill(&h)),
            "{}",
            prefill(&h)
        );
        assert!(
            (8_000.0..14_000.0).contains(&prefill(&a)),
            "{}",
            prefill(&a)
        );
        assert!(
            (8_000.0..14_000.0).contains(&prefill(&l)),
            "{}",
            prefill(&l)
        );
        assert_eq!(by_name("h100"), Some(h));
        assert_eq!(by_name("T4"), None);
    }
}
