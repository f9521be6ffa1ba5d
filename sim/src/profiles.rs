//! Accelerator profiles for an 8B dense model (Llama-3.1-8B class) served by vLLM in bf16.
//!
//! Derived from public figures, not fitted to any private trace:
//! - the model: 32 layers, 8 KV heads of dimension 128 (grouped-query attention), about 16 GB of
//!   bf16 weights, so one token of KV cache takes 2 × 32 × 8 × 128 × 2 B = 128 KiB;
//! - the accelerators' datasheets: memory (H100 SXM 80 GB at 3.35 TB/s, A100 SXM 80 GB at
//!   2.0 TB/s, L40S 48 GB at 0.86 TB/s) and dense bf16 throughput (about 990, 312 and 181 TFLOPS);
//! - vLLM's defaults: `gpu-memory-utilization` 0.9, 16-token blocks, `max-num-seqs` 256,
//!   chunked prefill with a budget of 8,192 tokens per iteration (2,048 on the smaller card).
//!
//! KV capacity is (memory × 0.9 − weights − about 3 GB of activations) / 128 KiB. A decode
//! iteration is memory-bound: it reads the weights once (the base time, at about 60 % of peak
//! bandwidth) plus the resident KV cache; each sequence in the batch adds a small compute term.
//! Prefill is compute-bound at about 40 % of peak: 2 × 8e9 FLOP per prompt token.

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

fn profile(
    name: &'static str,
    memory_gb: f64,
    bandwidth_tb_s: f64,
    bf16_tflops: f64,
    max_batched_tokens: u32,
    cost_per_hour: f64,
) -> AcceleratorProfile {
    let effective_bw = bandwidth_tb_s * 1e12 * 0.6;
    AcceleratorProfile {
        name,
        kv_blocks: kv_blocks(memory_gb),
        max_num_seqs: 256,
        max_batched_tokens,
        base_ms: WEIGHTS_GB * 1e9 / effective_bw * 1e3,
        // The batch dimension adds compute to each matmul; about 2 % of an iteration per
        // sequence at small batches on these cards.
        per_seq_ms: 0.02 * WEIGHTS_GB * 1e9 / effective_bw * 1e3,
        prefill_ms_per_token: FLOP_PER_TOKEN / (bf16_tflops * 1e12 * 0.4) * 1e3,
        per_resident_ktoken_ms: 1_000.0 * KV_BYTES_PER_TOKEN / effective_bw * 1e3,
        cost_per_hour,
    }
}

/// H100 SXM 80 GB.
pub fn h100() -> AcceleratorProfile {
    profile("H100", 80.0, 3.35, 989.0, 8_192, 6.9)
}

/// A100 SXM 80 GB.
pub fn a100() -> AcceleratorProfile {
    profile("A100", 80.0, 2.0, 312.0, 8_192, 3.7)
}

/// L40S 48 GB.
pub fn l40s() -> AcceleratorProfile {
    profile("L40S", 48.0, 0.864, 181.0, 2_048, 1.9)
}

/// The profile of a named accelerator (case-insensitive).
pub fn by_name(name: &str) -> Option<AcceleratorProfile> {
    match name.to_ascii_uppercase().as_str() {
        "H100" => Some(h100()),
        "A100" => Some(a100()),
        "L40S" => Some(l40s()),
        _ => None,
    }
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
        // Batch-1 inter-token latency: about 8, 13 and 31 ms.
        let itl1 = |p: &AcceleratorProfile| p.base_ms + p.per_seq_ms;
        assert!(itl1(&h) < itl1(&a) && itl1(&a) < itl1(&l));
        assert!((6.0..10.0).contains(&itl1(&h)), "{}", itl1(&h));
        assert!((25.0..40.0).contains(&itl1(&l)), "{}", itl1(&l));
        // Prefill: tens of thousands of tokens per second on H100, a few thousand on L40S.
        assert!(1_000.0 / h.prefill_ms_per_token > 20_000.0);
        assert!(1_000.0 / l.prefill_ms_per_token < 6_000.0);
        assert_eq!(by_name("h100"), Some(h));
        assert_eq!(by_name("T4"), None);
    }
}
