//! `wva emulate` as a black box: its completions endpoint and `/metrics`, and a real Prometheus
//! scraping it in both vLLM metric-name generations.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Emulator, Prometheus, Target, http};

const T: Duration = Duration::from_secs(10);

fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not on the page"))
}

#[test]
fn completions_answer_after_the_modelled_latency_and_show_in_metrics() {
    let em = Emulator::start(&["--load", "none", "--accelerator", "L40S"]);
    let addr = &em.addresses[0];
    let body = format!(
        r#"{{"model":"{}","prompt":"{}","max_tokens":32}}"#,
        em.model,
        "word ".repeat(400)
    );
    let started = std::time::Instant::now();
    let (status, answer) = http(addr, "POST", "/v1/completions", &body, T);
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 500);
    assert_eq!(v["usage"]["completion_tokens"], 32);
    let e2e_ms = v["timing"]["e2e_ms"].as_f64().unwrap();
    let ttft_ms = v["timing"]["ttft_ms"].as_f64().unwrap();
    assert!(ttft_ms > 0.0 && e2e_ms > ttft_ms, "{v}");
    // The answer waits for the modelled end of the request (31 decode steps on an L40S).
    assert!(
        elapsed.as_secs_f64() * 1e3 >= e2e_ms * 0.9,
        "answered in {elapsed:?}, modelled {e2e_ms} ms"
    );

    let (status, page) = http(addr, "GET", "/metrics", "", T);
    assert_eq!(status, 200);
    assert_eq!(metric(&page, "vllm:request_success_total"), 1.0);
    assert_eq!(metric(&page, "vllm:generation_tokens_total"), 32.0);
    assert_eq!(metric(&page, "vllm:request_prompt_tokens_sum"), 500.0);
    assert_eq!(
        metric(&page, "vllm:inter_token_latency_seconds_count"),
        31.0
    );
    assert_eq!(metric(&page, "vllm:num_requests_running"), 0.0);

    let (status, answer) = http(
        addr,
        "POST",
        "/v1/completions",
        &format!(
            r#"{{"model":"{}","prompt":"hi","max_tokens":-3}}"#,
            em.model
        ),
        T,
    );
    assert_eq!(status, 400);
    assert!(
        answer.contains("max_tokens: expected an integer"),
        "{answer}"
    );
    let (status, answer) = http(addr, "POST", "/v1/completions", "{not json", T);
    assert_eq!(status, 400);
    assert!(answer.contains("request body"), "{answer}");
    // A prompt no KV cache of this server can hold is refused at once, not left waiting.
    // About 250k tokens of text; the L40S holds about 180k.
    let huge = "x".repeat(1_000_000);
    let body = serde_json::json!({"model": em.model, "prompt": huge, "max_tokens": 4}).to_string();
    let (status, answer) = http(addr, "POST", "/v1/completions", &body, T);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("do not fit this server's KV cache"),
        "{answer}"
    );
}

#[test]
fn bad_arguments_exit_2_naming_the_flag() {
    for (args, expected) in [
        (&["--load", "sawtooth:3"][..], "--load"),
        (&["--accelerator", "TPU"][..], "--accelerator"),
        (&["--metric-names", "v9"][..], "--metric-names"),
        (&["--servers", "0", "--load", "none"][..], "--servers"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wva"))
            .arg("emulate")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn prometheus_scrapes_both_metric_name_generations() {
    let current = Emulator::start(&["--servers", "2", "--load", "constant:6"]);
    let legacy = Emulator::start(&["--load", "constant:3", "--metric-names", "legacy"]);
    let targets = vec![
        Target::pod(&current.addresses[0], "team-a", "llama-h100-0"),
        Target::pod(&current.addresses[1], "team-a", "llama-h100-1"),
        Target::pod(&legacy.addresses[0], "team-b", "llama-old-0"),
    ];
    let prometheus = Prometheus::start(&targets, None);
    let limit = Duration::from_secs(30);

    let kv = prometheus.wait_for(
        "max by (namespace, model_name, pod) (max_over_time(vllm:kv_cache_usage_perc[1m]))",
        2,
        limit,
    );
    let pods: Vec<&str> = kv
        .iter()
        .map(|s| s["metric"]["pod"].as_str().unwrap())
        .collect();
    assert!(
        pods.contains(&"llama-h100-0") && pods.contains(&"llama-h100-1"),
        "{kv:?}"
    );
    for s in &kv {
        assert_eq!(s["metric"]["namespace"], "team-a");
        let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&value), "{s}");
    }
    let old = prometheus.wait_for("vllm:gpu_cache_usage_perc", 1, limit);
    assert_eq!(old[0]["metric"]["pod"], "llama-old-0");
    prometheus.wait_for("vllm:time_per_output_token_seconds_count", 1, limit);
    assert!(
        prometheus
            .query("vllm:kv_cache_usage_perc{namespace=\"team-b\"}")
            .is_empty()
    );

    // Traffic flows: the request rate becomes positive on the busier emulator.
    let start = std::time::Instant::now();
    loop {
        let rate =
            prometheus.query("sum(rate(vllm:request_success_total{namespace=\"team-a\"}[1m]))");
        let value: f64 = rate
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if value > 0.0 {
            break;
        }
        assert!(start.elapsed() < limit, "no request rate after {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
