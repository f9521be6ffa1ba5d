//! `wva analyze` as a black box: JSON in on a file or stdin, decision JSON out; invalid input
//! exits 2 with one line on stderr naming the field and nothing on stdout.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn wva() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wva"))
}

fn analyze_stdin(input: &str) -> Output {
    let mut child = wva()
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wva");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn decide(input: Value) -> Value {
    let out = analyze_stdin(&input.to_string());
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn one_variant(pods: &[(f64, f64)]) -> Value {
    let replicas: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, (kv, q))| json!({"pod": format!("p{i}"), "kvCacheUsage": kv, "queueLength": q}))
        .collect();
    json!({"variants": [{"name": "v", "currentReplicas": pods.len(), "replicas": replicas}]})
}

#[test]
fn contract_examples_through_the_binary() {
    /// Pods as (kv, queue), then shouldScaleUp, scaleDownSafe and the target.
    type Row = (&'static [(f64, f64)], bool, bool, u64);
    let rows: [Row; 6] = [
        (&[(0.75, 2.0), (0.76, 2.0)], true, false, 3),
        (&[(0.50, 3.0), (0.50, 3.0)], true, false, 3),
        (&[(0.50, 1.0), (0.50, 1.0)], false, false, 2),
        (&[(0.20, 1.0), (0.30, 1.0), (0.25, 1.0)], false, true, 2),
        (&[(0.70, 2.0), (0.75, 2.0)], true, false, 3),
        (&[(0.50, 2.0)], false, false, 1),
    ];
    for (pods, up, down, target) in rows {
        let d = decide(one_variant(pods));
        assert_eq!(d["analysis"]["shouldScaleUp"], up, "{pods:?}: {d}");
        assert_eq!(d["analysis"]["scaleDownSafe"], down, "{pods:?}: {d}");
        assert_eq!(d["variants"][0]["target"], target, "{pods:?}: {d}");
    }
}

#[test]
fn the_documented_example_output() {
    let d = decide(json!({
        "config": {"kvCacheThreshold": 0.8, "queueLengthThreshold": 5, "kvSpareTrigger": 0.1, "queueSpareTrigger": 3},
        "variants": [{"name": "llama-a100", "cost": 40.0, "accelerator": "A100",
                      "currentReplicas": 2, "readyReplicas": 2, "desiredReplicas": 0,
                      "replicas": [{"pod": "p1", "kvCacheUsage": 0.75, "queueLength": 2},
                                   {"pod": "p2", "kvCacheUsage": 0.76, "queueLength": 2}]}]
    }));
    let a = &d["analysis"];
    assert_eq!(a["totalReplicas"], 2);
    assert_eq!(a["nonSaturatedReplicas"], 2);
    assert!((a["avgSpareKv"].as_f64().expect("number") - 0.045).abs() < 1e-9);
    assert!((a["avgSpareQueue"].as_f64().expect("number") - 3.0).abs() < 1e-9);
    assert_eq!(a["shouldScaleUp"], true);
    assert_eq!(a["scaleDownSafe"], false);
    assert!(a["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(d["inTransition"], false);
    let v = &d["variants"][0];
    assert_eq!(v["name"], "llama-a100");
    assert_eq!(v["saturatedReplicas"], json!([]));
    assert_eq!(v["target"], 3);
    assert_eq!(v["action"], "scale-up");
}

#[test]
fn multi_variant_cost_order() {
    let variant = |name: &str, cost: f64, kv: f64| {
        json!({"name": name, "cost": cost, "currentReplicas": 2, "replicas": [
            {"pod": format!("{name}-0"), "kvCacheUsage": kv, "queueLength": if kv > 0.5 { 2 } else { 0 }},
            {"pod": format!("{name}-1"), "kvCacheUsage": kv, "queueLength": if kv > 0.5 { 2 } else { 0 }}]})
    };
    let targets = |d: &Value| -> Vec<(String, u64)> {
        d["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().expect("name").to_string(),
                    v["target"].as_u64().expect("target"),
                )
            })
            .collect()
    };
    let up = decide(
        json!({"variants": [variant("expensive", 20.0, 0.76), variant("cheap", 5.0, 0.76), variant("medium", 15.0, 0.76)]}),
    );
    assert_eq!(
        targets(&up),
        [
            ("expensive".into(), 2),
            ("cheap".into(), 3),
            ("medium".into(), 2)
        ]
    );
    let down = decide(
        json!({"variants": [variant("expensive", 20.0, 0.1), variant("cheap", 5.0, 0.1), variant("medium", 15.0, 0.1)]}),
    );
    assert_eq!(
        targets(&down),
        [
            ("expensive".into(), 1),
            ("cheap".into(), 2),
            ("medium".into(), 2)
        ]
    );
    assert_eq!(down["variants"][0]["action"], "scale-down");
}

#[test]
fn no_metrics_holds_the_previous_desired() {
    let d = decide(
        json!({"variants": [{"name": "v", "currentReplicas": 2, "desiredReplicas": 3,
                                        "replicas": [{"pod": "p"}]}]}),
    );
    assert_eq!(d["safetyNet"], true);
    assert_eq!(d["analysis"]["shouldScaleUp"], false);
    assert_eq!(d["analysis"]["scaleDownSafe"], false);
    assert_eq!(d["variants"][0]["target"], 3);
    assert_eq!(d["variants"][0]["fallbackSource"], "previous-desired");
}

#[test]
fn reads_a_file_argument() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/analyze/scale-down.json"
    );
    let out = wva().args(["analyze", example]).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(d["variants"][1]["name"], "expensive");
    assert_eq!(d["variants"][1]["action"], "scale-down");
}

#[test]
fn invalid_input_exits_2_naming_the_field() {
    let cases = [
        ("{not json", "invalid JSON"),
        (
            r#"{"config": {"kvCacheThreshold": 1.5}, "variants": [{"name": "v", "currentReplicas": 1}]}"#,
            "config.kvCacheThreshold",
        ),
        (
            r#"{"config": {"queueSpareTrigger": -1}, "variants": [{"name": "v", "currentReplicas": 1}]}"#,
            "config.queueSpareTrigger",
        ),
        (
            r#"{"variants": [{"name": "v", "currentReplicas": -2}]}"#,
            "variants[0].currentReplicas",
        ),
        (
            r#"{"variants": [{"name": "v", "currentReplicas": 1, "replicas": [{"pod": "p", "kvCacheUsage": 1.01}]}]}"#,
            "variants[0].replicas[0].kvCacheUsage",
        ),
        (
            r#"{"variants": [{"name": "a", "currentReplicas": 1}, {"name": "a", "currentReplicas": 1}]}"#,
            "variants[1].name",
        ),
    ];
    for (input, field) in cases {
        let out = analyze_stdin(input);
        assert_eq!(out.status.code(), Some(2), "{input}");
        assert!(
            out.stdout.is_empty(),
            "{input}: stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{input}: {stderr}");
        assert!(stderr.contains(field), "{input}: {stderr}");
    }
}

#[test]
fn a_missing_file_exits_2() {
    let out = wva()
        .args(["analyze", "/nonexistent/input.json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/input.json"));
}

#[test]
fn a_scale_down_the_scaler_never_made_does_not_hold_a_saturated_model() {
    // An HPA with minReplicas 2 kept the Deployment at 2 after 1 was desired; both replicas
    // are now saturated.
    let mut input = one_variant(&[(0.9, 20.0), (0.9, 20.0)]);
    input["variants"][0]["desiredReplicas"] = json!(1);
    let out = decide(input);
    let v = &out["variants"][0];
    assert_eq!(v["target"], 3, "{out}");
    assert_eq!(v["action"], "scale-up", "{out}");
    assert_eq!(out["inTransition"], false, "{out}");
}
