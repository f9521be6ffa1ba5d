//! The safety net across a crash: `wva simulate` decides on a data directory, is killed with
//! SIGKILL mid-run, and is restarted with the metrics source failing. The published desired
//! count of every variant must be the last good one from the log (`previous-desired`).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn wva() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wva"))
}

fn history(dir: &str) -> Vec<Value> {
    let out = wva()
        .args(["history", "--data-dir", dir, "--format", "json"])
        .output()
        .expect("run history");
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn after_sigkill_the_safety_net_emits_the_last_good_desired_count() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data_dir = data.to_str().expect("utf8");

    // 1. Decide for a while (paced, so that it is still running when killed).
    let mut first = wva()
        .args([
            "simulate",
            "--no-progress",
            "--duration",
            "2h",
            "--pace",
            "100",
            "--data-dir",
            data_dir,
        ])
        .arg("--report")
        .arg(tmp.path().join("report-1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start simulate");
    // Kill right after a scale-up is the latest decision, so that the count to recover differs
    // from the single replica each variant starts with.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut scaled_up = false;
    while Instant::now() < deadline && !scaled_up {
        std::thread::sleep(Duration::from_millis(100));
        let records = history(data_dir);
        scaled_up = records
            .last()
            .and_then(|r| r["targets"].as_array())
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["target"].as_u64().is_some_and(|n| n >= 2))
            });
    }
    assert!(scaled_up, "no scale-up recorded within a minute");
    assert!(
        first.try_wait().expect("poll").is_none(),
        "the run must still be going when killed"
    );

    // 2. SIGKILL: no shutdown, no final flush.
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");

    // What the log says was last decided from real metrics, per variant.
    let records = history(data_dir);
    assert!(!records.is_empty());
    let mut last_good: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        if r["safety_net"] == true {
            continue;
        }
        for t in r["targets"].as_array().expect("targets") {
            last_good.insert(
                t["name"].as_str().expect("name").to_string(),
                t["target"].as_u64().expect("target"),
            );
        }
    }
    assert_eq!(last_good.len(), 2, "{last_good:?}");
    assert!(last_good.values().any(|&n| n >= 2), "{last_good:?}");

    // 3. Restart on the same directory with Prometheus down.
    let report = tmp.path().join("report-2");
    let out = wva()
        .args([
            "simulate",
            "--no-progress",
            "--duration",
            "2m",
            "--metrics-outage",
            "--data-dir",
            data_dir,
        ])
        .arg("--report")
        .arg(&report)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("restart simulate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("moved aside") && !stderr.contains("unusable"),
        "the log survived the kill: {stderr}"
    );

    let metrics = std::fs::read_to_string(report.join("metrics.prom")).expect("metrics.prom");
    for (variant, desired) in &last_good {
        let accelerator = if variant.contains("a100") {
            "A100"
        } else {
            "H100"
        };
        let series = format!(
            "inferno_desired_replicas{{accelerator_type=\"{accelerator}\",namespace=\"llm-d-sim\",variant_name=\"{variant}\"}} {desired}"
        );
        assert!(
            metrics.lines().any(|l| l == series),
            "expected {series} in\n{metrics}"
        );
    }
    let fallback_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Safety net activated: emitted fallback metrics"))
        .collect();
    assert!(!fallback_lines.is_empty(), "{stderr}");
    for l in &fallback_lines {
        assert!(l.contains("previous-desired"), "{l}");
        assert!(!l.contains("current-replicas"), "{l}");
    }
    for field in [
        "variant",
        "currentReplicas",
        "desiredReplicas",
        "accelerator",
        "fallbackSource",
    ] {
        assert!(fallback_lines[0].contains(field), "{}", fallback_lines[0]);
    }
}
