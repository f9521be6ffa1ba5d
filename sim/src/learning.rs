//! The latency learner against the emulated server, whose parameters are known: the learned
//! decode step and prefill cost must match the profile's. Tests only.

#[cfg(test)]
mod tests {
    use wva_actors::policy::learner::{LatencyLearner, LatencyObservation};

    use crate::profiles::{AcceleratorProfile, a100, h100};
    use crate::server::{Request, Server};

    /// Drives one server through one-minute windows of different evenly spaced rates and
    /// feeds each window to a learner, as the controller does with Prometheus' `rate()[1m]`.
    fn learn(profile: AcceleratorProfile, rates: &[f64]) -> LatencyLearner {
        let (prompt, output) = (600u32, 150u32);
        let mut server = Server::new(profile, 0.0);
        let mut learner = LatencyLearner::default();
        let (mut now, mut id) = (0.0f64, 0u64);
        let mut done = Vec::new();
        for (w, &rate) in rates.iter().enumerate() {
            let (start, end) = (w as f64 * 60_000.0, (w + 1) as f64 * 60_000.0);
            let before = server.counters.clone();
            let gap = 1_000.0 / rate;
            let mut next_arrival = start;
            let (mut batch_area, mut last) = (0.0f64, now);
            while now < end {
                while next_arrival <= now && next_arrival < end {
                    server.enqueue(Request {
                        id,
                        arrival_ms: next_arrival,
                        prompt_tokens: prompt,
                        output_tokens: output,
                    });
                    id += 1;
                    next_arrival += gap;
                }
                batch_area += server.running() as f64 * (now - last);
                last = now;
                now = match server.step(now, &mut done) {
                    Some(t) => t,
                    None => next_arrival.min(end),
                };
            }
            let c = &server.counters;
            let served = (c.request_success - before.request_success) as f64;
            learner.observe(&LatencyObservation {
                batch: batch_area / (last - start).max(1.0),
                rate_rps: served / 60.0,
                mean_input_tokens: f64::from(prompt),
                itl_ms: 1e3 * (c.itl_sum_s - before.itl_sum_s)
                    / (c.itl_count - before.itl_count).max(1) as f64,
                ttft_ms: 1e3 * (c.ttft_sum_s - before.ttft_sum_s)
                    / (c.ttft_count - before.ttft_count).max(1) as f64,
                waiting: server.waiting() as f64,
            });
        }
        learner
    }

    #[test]
    fn the_learned_decode_step_matches_the_emulated_server() {
        // Rates from light to busy and back, two hours of one-minute windows.
        let rates: Vec<f64> = (0..120)
            .map(|i| 0.5 + 9.5 * (0.5 - 0.5 * (f64::from(i) * 0.21).cos()))
            .collect();
        for profile in [a100(), h100()] {
            let learner = learn(profile.clone(), &rates);
            let p = learner.params().expect("converged");
            // The emulated step: base + per sequence + the resident KV of each sequence (about
            // prompt + half the output tokens).
            let beta = profile.per_seq_ms + profile.per_resident_ktoken_ms * (600.0 + 75.0) / 1e3;
            eprintln!(
                "{}: learned alpha {:.2} beta {:.3} gamma {:.1} delta {:.4}; emulated base {:.2} beta {:.3} prefill/token {:.4}",
                profile.name,
                p.alpha_ms,
                p.beta_ms,
                p.gamma_ms,
                p.delta_ms,
                profile.base_ms,
                beta,
                profile.prefill_ms_per_token
            );
            let within =
                |got: f64, want: f64, tolerance: f64| (got - want).abs() / want <= tolerance;
            assert!(
                within(p.alpha_ms, profile.base_ms, 0.2),
                "{}: {p:?} vs base {}",
                profile.name,
                profile.base_ms
            );
            // The line's use is the ITL it predicts at the batches the servers run: within a
            // fifth of the emulated step at a light and a busy batch.
            for batch in [10u32, 40] {
                let learned = p.alpha_ms + p.beta_ms * f64::from(batch);
                // The server's own step at that batch, each sequence holding about the prompt
                // and half the output.
                let emulated = profile.step_ms(batch, 0, u64::from(batch) * 675);
                assert!(
                    within(learned, emulated, 0.2),
                    "{} at batch {batch}: learned {learned:.2} ms, emulated {emulated:.2} ms ({p:?})",
                    profile.name
                );
            }
            // Prefill of 600 tokens: predicted from the line, against the emulated cost (one
            // iteration carrying the prompt and the running decodes).
            let predicted = p.gamma_ms + p.delta_ms * 600.0;
            let emulated = profile.step_ms(0, 600, 0);
            assert!(
                within(predicted, emulated, 0.5),
                "{}: prefill {predicted} vs {emulated}",
                profile.name
            );
        }
    }
}
