//! The emulated Prometheus: per-pod scrapes of the last minute, read as the controller's
//! batched queries read a real one (`max_over_time(...[1m])` for the saturation signals,
//! `rate(...[1m])` and sum/count ratios for what a pod served, `avg_over_time` and
//! `last_over_time` for the waiting queue the analyzer learns from and counts demand by).

use std::collections::{HashMap, VecDeque};

use wva_actors::messages::{PodSample, ServingStats};

use crate::server::{Counters, Server};

/// One scrape of one pod.
#[derive(Debug, Clone)]
struct ScrapePoint {
    t: f64,
    kv: f64,
    queue: f64,
    running: f64,
    counters: Counters,
}

/// Per-pod scrapes of the last minute: `max_over_time(...[1m])` for the saturation signals,
/// `rate(...[1m])` and sum/count ratios for what the pod served.
#[derive(Debug, Default)]
pub struct Scrapes {
    by_pod: HashMap<String, VecDeque<ScrapePoint>>,
}

impl Scrapes {
    pub fn record(&mut self, pod: &str, t: f64, server: &Server) {
        let window = self.by_pod.entry(pod.to_string()).or_default();
        window.push_back(ScrapePoint {
            t,
            kv: server.kv_usage(),
            queue: server.waiting() as f64,
            running: server.running() as f64,
            counters: server.counters.clone(),
        });
        while window.front().is_some_and(|p| p.t < t - 60_000.0) {
            window.pop_front();
        }
    }

    pub fn sample(&self, pod: &str, deployment: &str) -> Option<PodSample> {
        let w = self.by_pod.get(pod)?;
        let (first, last) = (w.front()?, w.back()?);
        let kv = w.iter().map(|p| p.kv).fold(f64::NAN, f64::max);
        let queue = w.iter().map(|p| p.queue).fold(f64::NAN, f64::max);
        let running = w.iter().map(|p| p.running).sum::<f64>() / w.len() as f64;
        let mean_queue = w.iter().map(|p| p.queue).sum::<f64>() / w.len() as f64;
        let span_s = (last.t - first.t) / 1e3;
        let (a, b) = (&first.counters, &last.counters);
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        let done = (b.request_success - a.request_success) as f64;
        // Like Prometheus' rate(): needs two scrapes in the window.
        let serving = (span_s > 0.0).then(|| ServingStats {
            request_rate_rps: done / span_s,
            mean_input_tokens: ratio(
                (b.request_prompt_tokens_sum - a.request_prompt_tokens_sum) as f64,
                done,
            ),
            mean_output_tokens: ratio(
                (b.request_generation_tokens_sum - a.request_generation_tokens_sum) as f64,
                done,
            ),
            ttft_ms: 1e3
                * ratio(
                    b.ttft_sum_s - a.ttft_sum_s,
                    (b.ttft_count - a.ttft_count) as f64,
                ),
            itl_ms: 1e3
                * ratio(
                    b.itl_sum_s - a.itl_sum_s,
                    (b.itl_count - a.itl_count) as f64,
                ),
            mean_waiting: mean_queue,
            last_waiting: last.queue,
        });
        (!kv.is_nan()).then(|| PodSample {
            pod: pod.to_string(),
            deployment: deployment.to_string(),
            kv_cache_usage: Some(kv),
            queue_length: Some(queue),
            running: Some(running),
            serving,
        })
    }
}
