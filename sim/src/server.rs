//! An emulated vLLM server: continuous batching under `max-num-seqs`, a FIFO waiting queue, a KV
//! cache of fixed-size blocks filled by prompt and generated tokens, chunked prefill, preemption
//! (recompute) when the cache runs out, and an iteration time that grows with the tokens
//! scheduled and resident. TTFT is waiting plus prefill; ITL is the decode iteration time at the
//! current batch.
//!
//! Times are milliseconds of virtual time as `f64`.

use std::collections::VecDeque;

use super::profiles::{AcceleratorProfile, BLOCK_TOKENS};

/// One inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub arrival_ms: f64,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
}

/// A finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub id: u64,
    pub arrival_ms: f64,
    pub finish_ms: f64,
    pub ttft_ms: f64,
    /// Mean time between output tokens after the first (0 for one-token outputs).
    pub itl_ms: f64,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
}

/// Cumulative counters, as vLLM exports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub request_success: u64,
    /// Requests dropped because their prompt can never fit in the KV cache.
    pub request_failed: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub ttft_sum_s: f64,
    pub ttft_count: u64,
    pub itl_sum_s: f64,
    pub itl_count: u64,
    pub request_prompt_tokens_sum: u64,
    pub request_generation_tokens_sum: u64,
    pub preemptions: u64,
}

#[derive(Debug, Clone)]
struct Sequence {
    request: Request,
    prefilled: u32,
    generated: u32,
    blocks: u32,
    first_token_ms: Option<f64>,
    admitted: u64,
}

impl Sequence {
    fn in_prefill(&self) -> bool {
        self.prefilled < self.request.prompt_tokens
    }

    fn resident_tokens(&self) -> u32 {
        self.prefilled + self.generated
    }
}

fn blocks_for(tokens: u32) -> u32 {
    tokens.div_ceil(BLOCK_TOKENS)
}

/// One replica of the model server.
#[derive(Debug, Clone)]
pub struct Server {
    pub profile: AcceleratorProfile,
    /// Serving starts here (start-up delay: image pull, weight load, warm-up).
    pub ready_at_ms: f64,
    waiting: VecDeque<Request>,
    running: Vec<Sequence>,
    used_blocks: u32,
    admitted: u64,
    /// Leading prompt tokens every request finds in the prefix cache (computed already, still
    /// resident and read by attention); 0 unless a benchmark's prompts repeat.
    cached_prefix_tokens: u32,
    pub counters: Counters,
}

impl Server {
    /// The same server with the first `tokens` of every prompt served from the prefix cache
    /// (at least the last prompt token is still computed, as vLLM does).
    pub fn with_cached_prefix(mut self, tokens: u32) -> Self {
        self.cached_prefix_tokens = tokens;
        self
    }

    pub fn new(profile: AcceleratorProfile, ready_at_ms: f64) -> Self {
        Self {
            profile,
            ready_at_ms,
            waiting: VecDeque::new(),
            running: Vec::new(),
            used_blocks: 0,
            admitted: 0,
            cached_prefix_tokens: 0,
            counters: Counters::default(),
        }
    }

    pub fn is_ready(&self, now_ms: f64) -> bool {
        now_ms >= self.ready_at_ms
    }

    pub fn enqueue(&mut self, request: Request) {
        self.waiting.push_back(request);
    }

    /// Fraction of KV-cache blocks in use, 0..=1.
    pub fn kv_usage(&self) -> f64 {
        f64::from(self.used_blocks) / f64::from(self.profile.kv_blocks.max(1))
    }

    pub fn used_blocks(&self) -> u32 {
        self.used_blocks
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Requests in the server (waiting or running).
    pub fn in_system(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Requests still inside, for when the replica is removed: they are handed back to be
    /// routed elsewhere, as a load balancer retries a connection to a terminated pod.
    pub fn drain(&mut self) -> Vec<Request> {
        let mut out: Vec<Request> = self.running.drain(..).map(|s| s.request).collect();
        out.extend(self.waiting.drain(..));
        self.used_blocks = 0;
        out
    }

    fn admit(&mut self) {
        while self.running.len() < self.profile.max_num_seqs as usize {
            let Some(head) = self.waiting.front() else {
                break;
            };
            let need = blocks_for(head.prompt_tokens + 1);
            if !self.profile.holds_prompt(head.prompt_tokens) {
                // Can never fit: vLLM rejects it (prompt longer than the cache).
                self.waiting.pop_front();
                self.counters.request_failed += 1;
                continue;
            }
            if self.used_blocks + need > self.profile.kv_blocks {
                break; // First come, first served: the head waits for room.
            }
            let Some(request) = self.waiting.pop_front() else {
                break;
            };
            self.used_blocks += need;
            self.admitted += 1;
            let cached = self
                .cached_prefix_tokens
                .min(request.prompt_tokens.saturating_sub(1));
            self.running.push(Sequence {
                request,
                prefilled: cached,
                generated: 0,
                blocks: need,
                first_token_ms: None,
                admitted: self.admitted,
            });
        }
    }

    /// Frees the most recently admitted sequence and puts its request back at the head of the
    /// queue (vLLM's recompute preemption). Returns false when nothing can be preempted.
    fn preempt_newest(&mut self) -> bool {
        let Some((i, _)) = self
            .running
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.admitted)
        else {
            return false;
        };
        let victim = self.running.swap_remove(i);
        self.used_blocks -= victim.blocks;
        self.counters.preemptions += 1;
        self.waiting.push_front(victim.request);
        true
    }

    /// Runs one iteration starting at `now_ms`. Returns when it ends, or `None` when there is
    /// nothing to do. Finished requests are appended to `done`.
    pub fn step(&mut self, now_ms: f64, done: &mut Vec<Completed>) -> Option<f64> {
        if !self.is_ready(now_ms) {
            return None;
        }
        self.admit();
        if self.running.is_empty() {
            return None;
        }

        // Decodes first (each needs room for one more token), then prefill chunks in
        // admission order within the token budget.
        self.running.sort_by_key(|s| s.admitted);
        let mut i = 0;
        while i < self.running.len() {
            let s = &self.running[i];
            if s.in_prefill() {
                i += 1;
                continue;
            }
            let need = blocks_for(s.resident_tokens() + 1);
            if need <= s.blocks {
                i += 1;
                continue;
            }
            if self.used_blocks < self.profile.kv_blocks {
                self.used_blocks += 1;
                self.running[i].blocks += 1;
                i += 1;
            } else {
                let admitted = self.running[i].admitted;
                if !self.preempt_newest() {
                    break;
                }
                // If the sequence itself was the newest it is gone; otherwise retry it.
                if self.running.get(i).is_none_or(|s| s.admitted != admitted) {
                    continue;
                }
            }
        }
        if self.running.is_empty() {
            return None;
        }

        // Each decode takes one token of the iteration's budget; prefill gets the rest.
        let decodes = self.running.iter().filter(|s| !s.in_prefill()).count() as u32;
        let mut budget = self.profile.max_batched_tokens.saturating_sub(decodes);
        let mut chunks = vec![0u32; self.running.len()];
        let mut prefill_tokens = 0u32;
        for (s, chunk) in self.running.iter().zip(chunks.iter_mut()) {
            if s.in_prefill() && budget > 0 {
                *chunk = (s.request.prompt_tokens - s.prefilled).min(budget);
                budget -= *chunk;
                prefill_tokens += *chunk;
            }
        }
        let resident: u64 = self
            .running
            .iter()
            .map(|s| u64::from(s.resident_tokens()))
            .sum();
        let duration = self.profile.step_ms(decodes, prefill_tokens, resident);
        let end = now_ms + duration;

        self.counters.prompt_tokens += u64::from(prefill_tokens);
        let mut finished = Vec::new();
        for (idx, (s, chunk)) in self.running.iter_mut().zip(&chunks).enumerate() {
            if s.in_prefill() {
                s.prefilled += chunk;
                if !s.in_prefill() {
                    // The last prefill chunk yields the first token.
                    s.generated = 1;
                    s.first_token_ms = Some(end);
                    self.counters.generation_tokens += 1;
                    self.counters.ttft_sum_s += (end - s.request.arrival_ms) / 1e3;
                    self.counters.ttft_count += 1;
                }
            } else {
                s.generated += 1;
                self.counters.generation_tokens += 1;
                self.counters.itl_sum_s += duration / 1e3;
                self.counters.itl_count += 1;
            }
            if !s.in_prefill() && s.generated >= s.request.output_tokens.max(1) {
                finished.push(idx);
            }
        }
        for idx in finished.into_iter().rev() {
            let s = self.running.swap_remove(idx);
            self.used_blocks -= s.blocks;
            let first = s.first_token_ms.unwrap_or(end);
            self.counters.request_success += 1;
            self.counters.request_prompt_tokens_sum += u64::from(s.request.prompt_tokens);
            self.counters.request_generation_tokens_sum += u64::from(s.generated);
            // The API server's share (tokenising, handing over, streaming) delays what the
            // client sees by the same time at both ends.
            let overhead = self.profile.request_overhead_ms;
            done.push(Completed {
                id: s.request.id,
                arrival_ms: s.request.arrival_ms,
                finish_ms: end + overhead,
                ttft_ms: first + overhead - s.request.arrival_ms,
                itl_ms: if s.generated > 1 {
                    (end - first) / f64::from(s.generated - 1)
                } else {
                    0.0
                },
                prompt_tokens: s.request.prompt_tokens,
                output_tokens: s.generated,
            });
        }
        debug_assert!(self.used_blocks <= self.profile.kv_blocks);
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::super::profiles::{a100, h100, l40s};
    use super::*;

    /// Runs one server on evenly spaced arrivals; returns the completions and the time-average
    /// number of requests in the server.
    fn run(
        profile: AcceleratorProfile,
        rate_per_s: f64,
        prompt: u32,
        output: u32,
        seconds: f64,
    ) -> (Vec<Completed>, f64, Server) {
        let mut server = Server::new(profile, 0.0);
        let gap = 1_000.0 / rate_per_s;
        let (mut now, mut next_arrival, mut id) = (0.0f64, 0.0f64, 0u64);
        let mut done = Vec::new();
        let (mut area, mut last) = (0.0f64, 0.0f64);
        let end = seconds * 1_000.0;
        while now < end {
            while next_arrival <= now {
                server.enqueue(Request {
                    id,
                    arrival_ms: next_arrival,
                    prompt_tokens: prompt,
                    output_tokens: output,
                });
                id += 1;
                next_arrival += gap;
            }
            area += server.in_system() as f64 * (now - last);
            last = now;
            assert!(
                server.used_blocks() <= server.profile.kv_blocks,
                "KV over capacity"
            );
            now = match server.step(now, &mut done) {
                Some(t) => t,
                None => next_arrival,
            };
        }
        (done, area / last, server)
    }

    #[test]
    fn littles_law_holds_at_steady_state() {
        let rate = 8.0;
        let (done, mean_in_system, _) = run(h100(), rate, 512, 128, 600.0);
        // Skip the warm-up minute.
        let steady: Vec<_> = done.iter().filter(|c| c.arrival_ms > 60_000.0).collect();
        let mean_latency_s = steady
            .iter()
            .map(|c| (c.finish_ms - c.arrival_ms) / 1e3)
            .sum::<f64>()
            / steady.len() as f64;
        let predicted = rate * mean_latency_s;
        let err = (mean_in_system - predicted).abs() / predicted;
        assert!(
            err < 0.05,
            "L = {mean_in_system:.2}, lambda W = {predicted:.2}"
        );
    }

    #[test]
    fn kv_never_exceeds_capacity_and_overload_preempts() {
        // Long outputs on the small card fill the cache while running: preemption must kick in.
        let (done, _, server) = run(l40s(), 4.0, 1_000, 1_500, 300.0);
        assert!(server.counters.preemptions > 0);
        assert!(!done.is_empty());
        assert!(server.kv_usage() <= 1.0);
    }

    #[test]
    fn ttft_grows_with_queueing() {
        let mean_ttft = |rate| {
            let (done, _, _) = run(a100(), rate, 1_024, 256, 300.0);
            done.iter().map(|c| c.ttft_ms).sum::<f64>() / done.len() as f64
        };
        let (light, heavy, overload) = (mean_ttft(1.0), mean_ttft(12.0), mean_ttft(40.0));
        assert!(
            light < heavy && heavy < overload,
            "{light} {heavy} {overload}"
        );
        assert!(light < 200.0, "{light}");
    }

    #[test]
    fn itl_grows_with_the_batch() {
        let itl = |rate| {
            let (done, _, _) = run(h100(), rate, 256, 256, 120.0);
            done.iter().map(|c| c.itl_ms).sum::<f64>() / done.len() as f64
        };
        let (one, many) = (itl(0.2), itl(20.0));
        assert!(one < many, "{one} {many}");
        assert!((6.0..10.0).contains(&one), "{one}");
    }

    #[test]
    fn prompts_that_can_never_fit_fail_instead_of_blocking() {
        let mut s = Server::new(l40s(), 0.0);
        s.enqueue(Request {
            id: 1,
            arrival_ms: 0.0,
            prompt_tokens: 1_000_000,
            output_tokens: 1,
        });
        s.enqueue(Request {
            id: 2,
            arrival_ms: 0.0,
            prompt_tokens: 10,
            output_tokens: 1,
        });
        let mut done = Vec::new();
        let end = s.step(0.0, &mut done).expect("runs the second");
        assert!(end > 0.0);
        assert_eq!(s.counters.request_failed, 1);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].id, 2);
    }

    #[test]
    fn a_starting_replica_serves_nothing() {
        let mut s = Server::new(h100(), 120_000.0);
        s.enqueue(Request {
            id: 1,
            arrival_ms: 0.0,
            prompt_tokens: 10,
            output_tokens: 2,
        });
        assert_eq!(s.step(1_000.0, &mut Vec::new()), None);
        assert!(s.step(120_000.0, &mut Vec::new()).is_some());
    }
}
