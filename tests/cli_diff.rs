//! `wva diff` end to end: logs written by `wva simulate`, compared as a rollout gate would.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A 20-minute simulation under `policy`, its log kept in `data`.
fn simulate(policy: &str, data: &Path, report: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args([
            "simulate",
            "--no-progress",
            "--duration",
            "20m",
            "--policy",
            policy,
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--report")
        .arg(report)
        .output()
        .expect("run wva simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn diff(base: &Path, candidate: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wva"))
        .arg("diff")
        .arg(base)
        .arg(candidate)
        .args(extra)
        .output()
        .expect("run wva diff");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_same_configuration_differs_nowhere_another_is_costed_and_gated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    simulate("wva", &a, &tmp.path().join("ra"));
    simulate("wva", &b, &tmp.path().join("rb"));
    simulate("wva-v1", &c, &tmp.path().join("rc"));

    // One configuration on both sides: no difference, and no gate closes.
    let (code, out, err) = diff(&a, &b, &["--max-cost-increase", "0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(": 0 stretches differ"), "{out}");

    // Another analyzer: where and how much, both reasons, the cost each way.
    let (code, out, err) = diff(&a, &c, &["--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["variants"], 2, "{report}");
    let differences = report["differences"].as_array().expect("differences");
    assert!(!differences.is_empty(), "{report}");
    let first = &differences[0];
    assert_ne!(first["base"], first["candidate"]);
    assert!(first["baseReason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(
        first["candidateReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let (base, candidate) = (
        report["base"]["cost"].as_f64().expect("cost"),
        report["candidate"]["cost"].as_f64().expect("cost"),
    );
    assert!(base > 0.0 && candidate > 0.0);
    let more = report["moreReplicaHours"].as_f64().expect("more");
    let fewer = report["fewerReplicaHours"].as_f64().expect("fewer");
    let (base_h, candidate_h) = (
        report["base"]["replicaHours"].as_f64().expect("h"),
        report["candidate"]["replicaHours"].as_f64().expect("h"),
    );
    assert!(
        (candidate_h - base_h - (more - fewer)).abs() < 1e-6,
        "the stretches account for the whole difference"
    );

    // As a gate: the costlier side over a limit of -100 % (anything costs more) fails with 3,
    // naming the limit; the cheaper one passes a limit of 0.
    let (costlier, cheaper) = if candidate > base { (&c, &a) } else { (&a, &c) };
    let (cheap_base, dear) = if candidate > base { (&a, &c) } else { (&c, &a) };
    let (code, _, err) = diff(cheap_base, dear, &["--max-cost-increase", "0"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--max-cost-increase 0"), "{err}");
    let (code, _, err) = diff(costlier, cheaper, &["--max-cost-increase", "0"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_path_that_is_no_log_is_bad_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing");
    let (code, _, err) = diff(&missing, &missing, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = diff(tmp.path(), tmp.path(), &["--max-cost-increase", "NaN"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--max-cost-increase"), "{err}");
}
