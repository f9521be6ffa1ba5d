//! `wva simulate` end to end: the report it writes, determinism under a seed, and bad input.

use std::process::Command;

use serde_json::Value;

fn simulate(args: &[&str], report: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args(["simulate", "--no-progress"])
        .args(args)
        .arg("--report")
        .arg(report)
        .output()
        .expect("run wva simulate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wva history --format json` of a data directory: its entries.
fn history_entries(data: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args(["history", "--data-dir", data, "--format", "json"])
        .output()
        .expect("history");
    assert!(out.status.success());
    let entries: Value = serde_json::from_slice(&out.stdout).expect("json");
    entries.as_array().expect("array").clone()
}

/// `wva replay` of a data directory (with `extra` arguments): what it printed.
fn replay(data: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args(["replay", "--data-dir", data])
        .args(extra)
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_run_reports_and_is_reproducible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let (code, out, err) = simulate(&["--duration", "20m", "--seed", "7"], &a);
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "requests",
        "TTFT p50 / p99",
        "ITL p50 / p99",
        "SLO attainment",
        "GPU-hours / cost",
        "scaling actions",
        "llama-8b-a100",
        "llama-8b-h100",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    for file in [
        "summary.json",
        "metrics.prom",
        "replicas.svg",
        "queue.svg",
        "kv.svg",
        "ttft.svg",
        "replicas.png",
        "queue.png",
        "kv.png",
        "ttft.png",
    ] {
        let body = std::fs::read(a.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!body.is_empty(), "{file} is empty");
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).expect("read"))
            .expect("json");
    let s = &summary["summary"];
    assert!(s["requests"].as_u64().expect("requests") > 1_000, "{s}");
    assert_eq!(s["cycles"], 79, "one cycle every 15 s, from 15 s to 19m45s");
    let attainment = s["sloAttainment"].as_f64().expect("attainment");
    assert!((0.0..=1.0).contains(&attainment));
    assert!(
        s["gpuHours"].as_f64().expect("gpu hours") >= 2.0 * 20.0 / 60.0 - 1e-9,
        "two replicas at least"
    );
    assert_eq!(summary["samples"].as_array().expect("samples").len(), 79);
    let metrics = std::fs::read_to_string(a.join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains("inferno_desired_replicas{accelerator_type=\"A100\""),
        "{metrics}"
    );
    assert!(
        std::fs::read_to_string(a.join("replicas.svg"))
            .expect("svg")
            .starts_with("<svg")
    );
    let png = std::fs::read(a.join("replicas.png")).expect("png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG signature");

    // Same seed, same numbers; another seed, another run.
    let (code, _, err) = simulate(&["--duration", "20m", "--seed", "7"], &b);
    assert_eq!(code, Some(0), "{err}");
    let read = |d: &std::path::Path| std::fs::read_to_string(d.join("summary.json")).expect("read");
    assert_eq!(read(&a), read(&b));
    let (code, _, _) = simulate(&["--duration", "20m", "--seed", "8"], &c);
    assert_eq!(code, Some(0));
    assert_ne!(read(&a), read(&c));
}

#[test]
fn a_trace_with_a_bad_row_is_refused_naming_the_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trace = tmp.path().join("trace.csv");
    std::fs::write(&trace, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,100,10\n2023-11-16 18:17:04.01,lots,10\n").expect("write");
    let (code, out, err) = simulate(
        &["--trace", trace.to_str().expect("utf8")],
        &tmp.path().join("r"),
    );
    // Bad input, like any other (issue 18: a bad trace used to exit 1).
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(err.contains("line 3: ContextTokens"), "{err}");
    // The accepted timestamp forms are said where one is refused.
    std::fs::write(
        &trace,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n1700158623,100,10\n",
    )
    .expect("write");
    let (code, _, err) = simulate(
        &["--trace", trace.to_str().expect("utf8")],
        &tmp.path().join("r"),
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("line 2: TIMESTAMP: expected YYYY-MM-DD HH:MM:SS[.fffffff] (UTC) or RFC 3339"),
        "{err}"
    );
}

#[test]
fn bad_arguments_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for args in [
        &["--duration", "soon"][..],
        &["--duration", "10s"],
        &["--pace", "0"],
    ] {
        let (code, _, err) = simulate(args, &tmp.path().join("r"));
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
    // What was read is said: a bare number is seconds.
    let (_, _, err) = simulate(&["--duration", "20"], &tmp.path().join("r"));
    assert!(err.contains("expected at least 1m, got 20s"), "{err}");
    // A data directory that is a file: the path is named.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let (code, _, err) = simulate(
        &[
            "--duration",
            "1m",
            "--data-dir",
            file.to_str().expect("utf8"),
        ],
        &tmp.path().join("r"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "--data-dir: {} is not a directory",
            file.display()
        )),
        "{err}"
    );
}

/// The JSON log lines (WARN and above) of a simulation with Prometheus down throughout.
fn outage_log(duration: &str) -> Vec<Value> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args([
            "--log-format",
            "json",
            "simulate",
            "--no-progress",
            "--duration",
            duration,
            "--metrics-outage",
        ])
        .arg("--report")
        .arg(tmp.path().join("r"))
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run wva simulate");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Issue 18: a simulation logs in its own virtual time (the run starts at 2026-01-01T00:00Z),
/// and an outage of half an hour is a few lines per variant, not one per cycle.
#[test]
fn a_simulation_logs_in_virtual_time_without_a_line_per_cycle() {
    let lines = outage_log("30m");
    for l in &lines {
        let at = l["timestamp"].as_str().expect("timestamp");
        assert!(at.starts_with("2026-01-01T00:"), "{at}");
    }
    let said = |message: &str| lines.iter().filter(|l| l["message"] == message).count();
    // 119 cycles of two variants: each activated once, then reminded every 5 virtual minutes.
    assert_eq!(said("Safety net activated: emitted fallback metrics"), 2);
    assert_eq!(
        said("Safety net still active: emitted fallback metrics"),
        2 * 5
    );
    let reminder = lines
        .iter()
        .find(|l| l["message"] == "Safety net still active: emitted fallback metrics")
        .expect("a reminder");
    assert_eq!(reminder["timestamp"], "2026-01-01T00:05:15.000Z");
    assert_eq!(reminder["cycles"], 21);
    assert_eq!(reminder["durationS"], 300);
}

#[test]
fn json_logs_carry_the_safety_net_fields() {
    let lines = outage_log("1m");
    let fallback = lines
        .iter()
        .find(|l| l["message"] == "Safety net activated: emitted fallback metrics")
        .unwrap_or_else(|| panic!("no safety-net line in {lines:?}"));
    assert_eq!(fallback["level"], "WARN");
    assert_eq!(
        fallback["fallbackSource"], "current-replicas",
        "a fresh run has no previous desired"
    );
    for field in [
        "variant",
        "currentReplicas",
        "desiredReplicas",
        "accelerator",
    ] {
        assert!(!fallback[field].is_null(), "{field} missing in {fallback}");
    }
}

#[test]
fn a_hybrid_run_records_its_arbitration_and_replays_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let report = dir.path().join("report");
    let data_arg = data.to_str().expect("utf-8 path");
    let (code, out, err) = simulate(
        &[
            "--duration",
            "20m",
            "--policy",
            "wva-hybrid",
            "--data-dir",
            data_arg,
        ],
        &report,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("wva-hybrid"), "{out}");
    // The summary says how often the optimizer proposed, so an inert one cannot hide.
    let line = out
        .lines()
        .find(|l| l.starts_with("model-based"))
        .unwrap_or_else(|| panic!("no model-based line in {out}"));
    let proposed: usize = line
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(proposed > 0, "{line}");

    let history = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args(["history", "--data-dir", data_arg, "--format", "json"])
        .output()
        .expect("history");
    assert!(history.status.success());
    let entries: Value = serde_json::from_slice(&history.stdout).expect("json");
    let entries = entries.as_array().expect("array");
    assert_eq!(entries.len(), 79);
    let model_based: Vec<&Value> = entries.iter().map(|e| &e["modelBased"]).collect();
    assert!(
        model_based.iter().all(|m| m.is_object()),
        "every hybrid cycle has its model side"
    );
    // The learner converges within the run and the model side wins some decisions.
    let rules: Vec<&str> = model_based
        .iter()
        .flat_map(|m| m["variants"].as_array().expect("variants"))
        .map(|v| v["rule"].as_str().expect("rule"))
        .collect();
    assert!(rules.contains(&"no-model-proposal"), "bootstrap first");
    assert!(
        rules.iter().any(|r| r.starts_with("model-")),
        "the optimizer decides once it has learned: {rules:?}"
    );
    let last = model_based.last().expect("last");
    for v in last["variants"].as_array().expect("variants") {
        let decode = &v["learner"]["decode"];
        assert!(decode["accepted"].as_u64().expect("accepted") >= 5, "{v}");
        // Under chunked prefill the step's growth with the batch is confounded with the
        // prefill load (both rise with the rate), so only the physical bounds are checked.
        assert!(decode["intercept"].as_f64().expect("alpha") >= 0.0, "{v}");
        assert!(decode["slope"].as_f64().expect("beta") > 0.0, "{v}");
        // Queued windows still give the prefill line (learned, or its prior).
        assert!(v["learner"]["prefill"].is_object(), "{v}");
    }

    // Open-loop replay in the recorded (hybrid) mode reproduces every decision.
    let replay = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args(["replay", "--data-dir", data_arg])
        .output()
        .expect("replay");
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(
        text.contains("replayed 79 cycles, 0 decisions differ"),
        "{text}"
    );
    // The same inputs in capacity-only mode decide differently somewhere.
    let replay = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args(["replay", "--data-dir", data_arg, "--mode", "capacity-only"])
        .output()
        .expect("replay");
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(!text.contains(" 0 decisions differ"), "{text}");
}

#[test]
fn the_default_analyzer_records_its_judgement_and_replays_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let (code, out, err) = simulate(
        &["--duration", "20m", "--data-dir", data_arg],
        &dir.path().join("report"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("policy              wva\n"), "{out}");
    assert!(
        out.contains("decision log        ") && out.contains("KB per variant-day)"),
        "{out}"
    );

    // Stored as inputs and desired counts: every cycle compact (a keyframe first), the rest
    // of what `history` shows below rebuilt from them.
    {
        let log = wva_storage::SledLog::open_for_inspection(&data).expect("log");
        let raw = wva_storage::DecisionLog::history(&log, &Default::default()).expect("raw");
        let compact: Vec<&wva_storage::CompactCycleRecord> = raw
            .records
            .iter()
            .filter_map(|(_, r)| match r {
                wva_storage::Record::CompactCycle(c) => Some(c),
                _ => None,
            })
            .collect();
        assert!(
            compact.len() > 50,
            "{} of {}",
            compact.len(),
            raw.records.len()
        );
        assert_eq!(compact[0].builds_on, None, "a keyframe first");
        assert!(compact[1..].iter().any(|c| c.builds_on.is_some()));
    }

    let entries = history_entries(data_arg);
    assert!(entries.len() > 50, "{}", entries.len());
    // Every cycle with metrics carries the analyzer's view; once the lines are learned, each
    // variant has a capacity per replica and the reason says how it was judged.
    let judged: Vec<&Value> = entries
        .iter()
        .filter_map(|e| e.get("sloCapacity"))
        .collect();
    assert_eq!(judged.len(), entries.len());
    let last = judged.last().expect("last");
    assert!(last["demandRps"].as_f64().expect("demand") > 0.0, "{last}");
    for v in last["variants"].as_array().expect("variants") {
        assert!(v["perReplicaRps"].as_f64().expect("capacity") > 0.0, "{v}");
        assert!(v["fit"]["accepted"].as_u64().expect("fit") >= 4, "{v}");
    }
    // Both phases are learned and logged: the prefill line of every variant beside the cycle,
    // and reasons that say which phase bound.
    let prefill = entries
        .last()
        .and_then(|e| e.get("prefillFit"))
        .expect("the prefill lines are logged");
    let fits = prefill["fits"].as_array().expect("fits");
    assert_eq!(
        fits.len(),
        last["variants"].as_array().expect("variants").len()
    );
    for fit in fits {
        assert!(fit[1]["accepted"].as_u64().expect("accepted") >= 4, "{fit}");
    }
    let reasons: Vec<&str> = entries
        .iter()
        .flat_map(|e| e["targets"].as_array().expect("targets"))
        .map(|t| t["reason"].as_str().expect("reason"))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("rps per replica")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("binds before")),
        "{reasons:?}"
    );

    let same = replay(data_arg, &[]);
    assert!(
        same.contains(&format!(
            "replayed {} cycles, 0 decisions differ",
            entries.len()
        )),
        "{same}"
    );
    // The same inputs through the seeds' analyzer decide otherwise in places.
    let other = replay(data_arg, &["--analyzer", "saturation-v1"]);
    assert!(!other.contains(" 0 decisions differ"), "{other}");
}

#[test]
fn the_forecast_measures_the_start_up_logs_what_it_sized_for_and_replays_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let (code, _, err) = simulate(
        &[
            "--duration",
            "30m",
            "--slo-forecast",
            "true",
            "--data-dir",
            data_arg,
        ],
        &dir.path().join("report"),
    );
    assert_eq!(code, Some(0), "{err}");
    let entries = history_entries(data_arg);
    let forecasts: Vec<&Value> = entries.iter().filter_map(|e| e.get("forecast")).collect();
    assert_eq!(forecasts.len(), entries.len(), "every cycle runs the trend");
    // The built-in load scales up early; its replicas' start-up (120 s in the scenario) is
    // then measured from the Deployments, at the cycles' resolution, and is the horizon.
    let horizon = forecasts
        .iter()
        .rev()
        .find_map(|f| f["horizonS"].as_f64())
        .expect("a start-up measured");
    assert!((120.0..=150.0).contains(&horizon), "{horizon}");
    let reasons: Vec<&str> = entries
        .iter()
        .flat_map(|e| e["targets"].as_array().expect("targets"))
        .map(|t| t["reason"].as_str().expect("reason"))
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("demand forecast")),
        "the forecast sized some cycle: {reasons:?}"
    );
    let text = replay(data_arg, &[]);
    assert!(
        text.contains(&format!(
            "replayed {} cycles, 0 decisions differ",
            entries.len()
        )),
        "{text}"
    );
}

#[test]
fn a_frontier_sweeps_each_knob_marks_the_pareto_points_and_is_reproducible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |name: &str| {
        let report = dir.path().join(name);
        let (code, out, err) = simulate(
            &[
                "--frontier",
                "wva,wva-v1,hindsight",
                "--duration",
                "10m",
                "--seed",
                "3",
            ],
            &report,
        );
        assert_eq!(code, Some(0), "{err}");
        (out, report)
    };
    let (out, report) = run("a");
    assert!(out.contains("== builtin =="), "{out}");
    assert!(out.contains("cost at 95.0 %"), "{out}");
    assert!(out.contains("attainment at cost"), "{out}");
    let text = std::fs::read_to_string(report.join("frontier.json")).expect("frontier.json");
    let frontier: Value = serde_json::from_str(&text).expect("json");
    let points = frontier[0]["points"].as_array().expect("points");
    for policy in ["wva", "wva-v1", "hindsight"] {
        let settings = points.iter().filter(|p| p["policy"] == policy).count();
        assert!(settings >= 6, "{policy}: {settings} settings");
    }
    assert!(points.iter().any(|p| p["pareto"] == true));
    assert_eq!(
        frontier[0]["summaries"]
            .as_array()
            .expect("summaries")
            .len(),
        3
    );
    for file in ["frontier-builtin.svg", "frontier-builtin.png"] {
        assert!(report.join(file).is_file(), "{file}");
    }
    let (again, _) = run("b");
    assert_eq!(out.replace("/a/", "/b/"), again, "same seed, same frontier");
}

#[test]
fn frontier_and_trace_arguments_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = simulate(&["--frontier", "wva,nope"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("--frontier") && err.contains("nope"), "{err}");
    let (code, _, err) = simulate(&["--trace", "a.csv", "--trace", "b.csv"], dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("several workloads only with --frontier or --compare"),
        "{err}"
    );
    let (code, _, err) = simulate(&["--frontier", "wva", "--workloads", "testing"], dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--workloads: expected training, validation, zoo or all"),
        "{err}"
    );
    let (code, _, err) = simulate(&["--trace", "zoo:nope"], dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("expected one of zoo:prefill-heavy-surge"),
        "{err}"
    );
    let (code, _, err) = simulate(
        &[
            "--compare",
            "wva",
            "--workloads",
            "validation",
            "--traces-dir",
            "/nonexistent",
        ],
        dir.path(),
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--workloads validation") && err.contains("/nonexistent/"),
        "{err}"
    );
    let (code, _, err) = simulate(&["--policy", "wva=abc"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("budget share"), "{err}");
}

#[test]
fn the_users_config_maps_and_mode_settings_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("config.yaml");
    std::fs::write(
        &manifests,
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: workload-variant-autoscaler-variantautoscaling-config
data:
  SCALING_ANALYZER: saturation-v1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: capacity-scaling-config
data:
  default: |
    kvCacheThreshold: 0.7
    queueLengthThreshold: 4
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: accelerator-unitcost
data:
  costs: |
    A100: 1.0
    H100: 2.0
"#,
    )
    .expect("write");
    let data = dir.path().join("data");
    let (code, out, err) = simulate(
        &[
            "--duration",
            "10m",
            "--config-map",
            manifests.to_str().expect("path"),
            "--data-dir",
            data.to_str().expect("path"),
        ],
        &dir.path().join("report"),
    );
    assert_eq!(code, Some(0), "{err}");
    // The prices come from the ConfigMap.
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report/summary.json")).expect("summary"),
    )
    .expect("json");
    for v in summary["summary"]["variants"].as_array().expect("variants") {
        let price = if v["accelerator"] == "A100" { 1.0 } else { 2.0 };
        let (hours, cost) = (
            v["gpuHours"].as_f64().expect("hours"),
            v["cost"].as_f64().expect("cost"),
        );
        assert!((cost - hours * price).abs() < 1e-9, "{v}\n{out}");
    }
    // The main ConfigMap's analyzer and the thresholds decided.
    let history = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args([
            "history",
            "--data-dir",
            data.to_str().expect("path"),
            "--format",
            "json",
        ])
        .output()
        .expect("history");
    let entries: Value = serde_json::from_slice(&history.stdout).expect("json");
    let entries = entries.as_array().expect("array");
    assert!(entries.iter().all(|e| e.get("sloCapacity").is_none()));
    assert!(
        entries
            .iter()
            .all(|e| e["thresholds"]["kvCacheThreshold"] == 0.7),
        "{}",
        entries[0]
    );

    // A flag wins over the ConfigMap, as in `wva run`.
    let (code, _, err) = simulate(
        &[
            "--duration",
            "10m",
            "--config-map",
            manifests.to_str().expect("path"),
            "--scaling-analyzer",
            "bogus",
        ],
        &dir.path().join("r2"),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("SCALING_ANALYZER"), "{err}");

    // A ConfigMap the policy does not read is named.
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: something-else\ndata: {}\n",
    )
    .expect("write");
    let (code, _, err) = simulate(
        &["--config-map", other.to_str().expect("path")],
        &dir.path().join("r3"),
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("something-else") && err.contains("capacity-scaling-config"),
        "{err}"
    );
}

/// Issue 18: `--compare` draws the policies over each other: one figure per measure, one line
/// per policy, beside each policy's own report.
#[test]
fn compare_draws_the_policies_over_each_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let report = tmp.path().join("r");
    let (code, out, err) = simulate(&["--duration", "5m", "--compare", "wva,hpa-kv"], &report);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("policies over each other:"), "{out}");
    for policy in ["wva", "hpa-kv"] {
        assert!(report.join(policy).join("summary.json").is_file());
    }
    for measure in ["replicas", "queue", "ttft"] {
        let svg = std::fs::read_to_string(report.join("compare").join(format!("{measure}.svg")))
            .expect("svg");
        for policy in ["wva", "hpa-kv"] {
            assert!(
                svg.contains(&format!(">\n{policy}\n<")),
                "{measure}: no {policy} line"
            );
        }
        assert!(
            report
                .join("compare")
                .join(format!("{measure}.png"))
                .is_file()
        );
    }
}

/// `--from-log`: the demand a log recorded drives the emulated cluster again. The same policy
/// on the rebuilt demand lands near where it was (the rebuild is smoother than the original:
/// Poisson arrivals, lengths around the recorded means), another policy runs on the same day,
/// and a log that recorded no served demand says why.
#[test]
fn a_recorded_day_drives_the_cluster_again_for_any_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let summary = |report: &std::path::Path| -> Value {
        let text = std::fs::read_to_string(report.join("summary.json")).expect("summary");
        serde_json::from_str::<Value>(&text).expect("json")["summary"].clone()
    };
    let recorded = dir.path().join("recorded");
    let (code, _, err) = simulate(&["--duration", "20m", "--data-dir", data_arg], &recorded);
    assert_eq!(code, Some(0), "{err}");
    let original = summary(&recorded);

    let again = dir.path().join("again");
    let (code, _, err) = simulate(&["--from-log", data_arg], &again);
    assert_eq!(code, Some(0), "{err}");
    let rebuilt = summary(&again);
    let requests = |s: &Value| s["requests"].as_f64().expect("requests");
    let attainment = |s: &Value| s["sloAttainment"].as_f64().expect("attainment");
    let cost = |s: &Value| s["cost"].as_f64().expect("cost");
    assert!(
        (requests(&rebuilt) / requests(&original) - 1.0).abs() < 0.05,
        "{rebuilt} against {original}"
    );
    assert!((attainment(&rebuilt) - attainment(&original)).abs() < 0.05);
    assert!((cost(&rebuilt) / cost(&original) - 1.0).abs() < 0.2);
    let names = |s: &Value| -> Vec<String> {
        s["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| v["name"].as_str().expect("name").to_string())
            .collect()
    };
    assert_eq!(names(&rebuilt), names(&original), "the log's variants");

    let other = dir.path().join("other");
    let (code, out, err) = simulate(&["--from-log", data_arg, "--policy", "hpa-kv"], &other);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("policy              hpa-kv"), "{out}");
    assert_eq!(
        requests(&summary(&other)),
        requests(&rebuilt),
        "the same day"
    );

    // A log of the seeds' analyzer records no served demand.
    let v1 = dir.path().join("v1");
    let v1_arg = v1.to_str().expect("utf-8 path");
    let (code, _, err) = simulate(
        &[
            "--duration",
            "5m",
            "--policy",
            "wva-v1",
            "--data-dir",
            v1_arg,
        ],
        &dir.path().join("v1-report"),
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = simulate(&["--from-log", v1_arg], &dir.path().join("none"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("records no served demand"), "{err}");
    let (code, _, err) = simulate(
        &["--from-log", data_arg, "--trace", "builtin"],
        &dir.path().join("both"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("drop --trace"), "{err}");
}

/// A shared pool run with a data directory keeps one decision log per limiter, and this
/// controller's (cut by the pool) replays with no difference, fitted into the same pool.
#[test]
fn a_shared_pool_run_keeps_a_log_per_limiter_that_replays_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = simulate(
        &[
            "--shared-pool",
            "builtin",
            "--duration",
            "10m",
            "--data-dir",
            data,
        ],
        &dir.path().join("report"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("WEIGHTED ATTAINMENT"), "{stdout}");
    for run in ["unlimited", "wva", "no-limiter", "greedy-by-saturation"] {
        let log = format!("{data}/{run}");
        assert!(
            !history_entries(&log).is_empty(),
            "{run} kept its decisions in {log}"
        );
    }
    let replayed = replay(&format!("{data}/wva"), &[]);
    assert!(
        replayed.contains("cut by the accelerator pool")
            && replayed.contains(" 0 decisions differ"),
        "{replayed}"
    );
}
