//! `wva history` and `wva replay` as black boxes over a real sled decision log.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use wva_actors::policy::{
    OperatingMode, ReplicaSignals, Thresholds, VariantInput, decide_capacity, safety_net_decision,
};
use wva_actors::record::{CycleFacts, cycle_record};
use wva_storage::{DecisionLog, ModelKey, Record, Retention, SledLog, Timestamp};

/// 2026-11-22T10:00:00Z
const T0: i64 = 1_795_341_600_000;

fn variant(name: &str, cost: f64, kv: &[f64], previous: Option<u32>) -> VariantInput {
    VariantInput {
        name: name.into(),
        cost,
        accelerator: "A100".into(),
        current_replicas: kv.len() as u32,
        ready_replicas: kv.len() as u32,
        previous_desired: previous,
        replicas: kv
            .iter()
            .enumerate()
            .map(|(i, &kv)| ReplicaSignals {
                pod: format!("{name}-{i}"),
                kv_cache_usage: Some(kv),
                queue_length: Some(1.0),
            })
            .collect(),
    }
}

fn append(log: &mut SledLog, at: i64, inputs: &[VariantInput], metrics_error: Option<&str>) {
    let thresholds = Thresholds::default();
    let decision = match metrics_error {
        Some(why) => safety_net_decision(inputs, why),
        None => decide_capacity(&thresholds, inputs),
    };
    let record = cycle_record(CycleFacts {
        model: &ModelKey::new("llm-d", "llama"),
        at: Timestamp(at),
        mode: OperatingMode::CapacityOnly,
        config_version: "test",
        thresholds,
        metrics_error: metrics_error.map(str::to_string),
        inputs,
        decision: &decision,
        trigger: "tick",
    });
    log.append(&Record::Cycle(record)).expect("append");
}

/// Three cycles: hot (scale up the cheap variant), comfortable (hold), Prometheus down.
fn write_log(dir: &Path) {
    let (mut log, _) = SledLog::open(dir, Retention::default(), 0).expect("open");
    append(
        &mut log,
        T0,
        &[
            variant("cheap", 10.0, &[0.76, 0.75], None),
            variant("pricey", 50.0, &[0.76], None),
        ],
        None,
    );
    append(
        &mut log,
        T0 + 15_000,
        &[
            variant("cheap", 10.0, &[0.5, 0.5, 0.5], Some(3)),
            variant("pricey", 50.0, &[0.5], Some(1)),
        ],
        None,
    );
    append(
        &mut log,
        T0 + 30_000,
        &[
            variant("cheap", 10.0, &[], Some(3)),
            variant("pricey", 50.0, &[], Some(1)),
        ],
        Some("Prometheus unreachable"),
    );
    log.flush().expect("flush");
}

fn wva(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wva"))
        .args(args)
        .output()
        .expect("run wva");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn history_shows_every_decision_newest_last() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    write_log(&dir);
    let d = dir.to_str().expect("utf8");

    let (code, out, err) = wva(&["history", "--data-dir", d]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{out}");
    assert_eq!(lines.len(), 1 + 6 + 1, "{out}");
    assert!(lines[1].starts_with("2026-11-22T10:00:00.000Z"), "{out}");
    assert!(lines[6].starts_with("2026-11-22T10:00:30.000Z"), "{out}");
    assert!(
        lines[1].contains("cheap") && lines[1].contains("scale-up"),
        "{}",
        lines[1]
    );
    assert!(lines[5].contains("safety net"), "{}", lines[5]);
    // ACTION is against the count published before: cheap went 2 -> 3, then 3 -> 2; the
    // safety net held what was published.
    assert_eq!(
        *lines.last().expect("summary"),
        "3 cycles, 2 changes of a desired count"
    );
    let actions: Vec<&str> = lines[1..7]
        .iter()
        .filter_map(|l| l.split_whitespace().nth(6))
        .collect();
    assert_eq!(
        actions,
        [
            "scale-up",
            "no-change",
            "scale-down",
            "no-change",
            "no-change",
            "no-change"
        ],
        "{out}"
    );
    // Only the changes: two rows.
    let (_, changes, _) = wva(&["history", "--data-dir", d, "--changes"]);
    let rows: Vec<&str> = changes.lines().collect();
    assert_eq!(rows.len(), 4, "{changes}");
    assert!(rows[1].contains("cheap") && rows[1].contains("scale-up"));
    assert!(rows[2].contains("cheap") && rows[2].contains("scale-down"));
    assert!(rows[3].ends_with("(only the changes shown)"), "{changes}");

    let (_, out, _) = wva(&["history", "--data-dir", d, "--va", "pricey"]);
    let variants: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("2026-"))
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(variants, ["pricey", "pricey", "pricey"], "{out}");

    let (_, out, _) = wva(&[
        "history",
        "--data-dir",
        d,
        "--since",
        "2026-11-22T10:00:10Z",
        "--until",
        "2026-11-22T10:00:20Z",
    ]);
    assert!(
        out.ends_with("1 cycles, 1 changes of a desired count\n"),
        "{out}"
    );

    let (_, out, _) = wva(&["history", "--data-dir", d, "--namespace", "elsewhere"]);
    assert!(
        out.ends_with("0 cycles, 0 changes of a desired count\n"),
        "{out}"
    );

    let (code, out, err) = wva(&["history", "--data-dir", d, "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let entries: Value = serde_json::from_str(&out).expect("json");
    let entries = entries.as_array().expect("array");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["time"], "2026-11-22T10:00:00.000Z");
    assert_eq!(entries[0]["targets"][0]["target"], 3);
    // One JSON convention across commands: camelCase field names.
    assert_eq!(entries[0]["variants"][0]["pods"][0]["kvCacheUsage"], 0.76);
    assert_eq!(entries[2]["metricsError"], "Prometheus unreachable");
    assert_eq!(entries[0]["model"]["modelId"], "llama");
}

#[test]
fn replay_on_an_unchanged_binary_differs_nowhere() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    write_log(&dir);
    let (code, out, err) = wva(&["replay", "--data-dir", dir.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "replayed 3 cycles, 0 decisions differ\n");
}

#[test]
fn replay_with_other_thresholds_shows_what_would_differ() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    write_log(&dir);
    let cm = tmp.path().join("capacity.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capacity-scaling-config\n  namespace: workload-variant-autoscaler-system\ndata:\n  default: |\n    kvCacheThreshold: 0.95\n    kvSpareTrigger: 0.1\n",
    )
    .expect("write");
    let d = dir.to_str().expect("utf8");
    let c = cm.to_str().expect("utf8");
    let (code, out, err) = wva(&["replay", "--data-dir", d, "--config", c]);
    assert_eq!(code, Some(0), "{err}");
    // With more headroom the hot cycle needs no new replica; the outage cycle is unaffected.
    assert!(
        out.ends_with("replayed 3 cycles, 1 decisions differ\n"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.contains("cheap"))
        .expect("a differing row");
    assert!(row.contains("2026-11-22T10:00:00.000Z"), "{row}");

    let (code, out, _) = wva(&["replay", "--data-dir", d, "--config", c, "--format", "json"]);
    assert_eq!(code, Some(0));
    let report: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["cycles"], 3);
    assert_eq!(report["differingCycles"], 1);
    assert_eq!(report["differences"][0]["variant"], "cheap");
    assert_eq!(report["differences"][0]["recorded"], 3);
    assert_eq!(report["differences"][0]["replayed"], 2);
    // Reasons in full, as history shows them: the model's analysis in brackets.
    let recorded = report["differences"][0]["recordedReason"]
        .as_str()
        .expect("reason");
    assert!(
        recorded.starts_with("scale-up: cheapest variant")
            && recorded.contains("[average spare KV 0.043 < trigger 0.1"),
        "{recorded}"
    );
    let replayed = report["differences"][0]["replayedReason"]
        .as_str()
        .expect("reason");
    assert!(
        replayed.contains(" [") && replayed.ends_with(']'),
        "{replayed}"
    );
}

#[test]
fn history_reads_a_data_dir_that_a_controller_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    write_log(&dir);
    let (_held, _) = SledLog::open(&dir, Retention::default(), 0).expect("hold the lock");
    let (code, out, err) = wva(&["history", "--data-dir", dir.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.ends_with("3 cycles, 2 changes of a desired count\n"),
        "{out}"
    );
}

#[test]
fn bad_arguments_and_missing_logs_fail_clearly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nothing-here");
    let (code, out, err) = wva(&["history", "--data-dir", missing.to_str().expect("utf8")]);
    assert_eq!(code, Some(2), "a path with no log is bad input");
    assert!(out.is_empty());
    assert!(err.contains("does not exist"), "{err}");
    // An empty directory holds no log either.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let (code, _, err) = wva(&["history", "--data-dir", empty.to_str().expect("utf8")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no decision log here"), "{err}");
    assert!(
        !missing.exists(),
        "a read-only command must not create a data directory"
    );

    let dir = tmp.path().join("data");
    write_log(&dir);
    let d = dir.to_str().expect("utf8");
    let (code, _, err) = wva(&["history", "--data-dir", d, "--since", "last tuesday"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--since"), "{err}");

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n").expect("write");
    let (code, _, err) = wva(&[
        "replay",
        "--data-dir",
        d,
        "--config",
        bad.to_str().expect("utf8"),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("kind"), "{err}");
}

/// Decides one capacity-only cycle of `inputs` with the scheduler's held requests and the
/// variants' roles, and logs it at `T0` with `beside`, the record the decision depends on.
fn log_one_cycle(
    dir: &Path,
    inputs: &[VariantInput],
    held: Option<f64>,
    roles: &[wva_actors::policy::roles::Role],
    beside: Record,
) -> wva_actors::policy::cycle::CycleDecision {
    use wva_actors::policy::cycle::{CycleInputs, decide_cycle};
    use wva_actors::policy::scale_to_zero::RequestCount;

    let (mut log, _) = SledLog::open(dir, Retention::default(), 0).expect("open");
    let thresholds = Thresholds::default();
    let idle = RequestCount::Read(0.0);
    let decided = decide_cycle(CycleInputs {
        request_count: Some(&idle),
        held_requests: held,
        roles,
        ..CycleInputs::capacity(&thresholds, inputs)
    });
    let record = cycle_record(CycleFacts {
        model: &ModelKey::new("llm-d", "llama"),
        at: Timestamp(T0),
        mode: OperatingMode::CapacityOnly,
        config_version: "test",
        thresholds,
        metrics_error: None,
        inputs,
        decision: &decided.decision,
        trigger: "tick",
    });
    log.append(&Record::Cycle(record)).expect("append");
    log.append(&beside).expect("append");
    log.flush().expect("flush");
    decided
}

/// A decision that requests held by the llm-d scheduler made (waking a model at zero) replays
/// identically from its demand record.
#[test]
fn requests_held_by_the_scheduler_are_recorded_and_replayed() {
    use wva_storage::DemandRecord;

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut asleep = variant("cheap", 10.0, &[], Some(0));
    asleep.current_replicas = 0;
    asleep.ready_replicas = 0;
    let demand = Record::Demand(DemandRecord {
        model: ModelKey::new("llm-d", "llama"),
        at: Timestamp(T0),
        epp_queue: 6.0,
    });
    let decided = log_one_cycle(&dir, &[asleep], Some(6.0), &[], demand);
    assert_eq!(decided.decision.variants[0].target, 1);
    let d = dir.to_str().expect("utf8");
    let (code, out, err) = wva(&["replay", "--data-dir", d]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "replayed 1 cycles, 0 decisions differ\n");
    let (code, out, err) = wva(&["history", "--data-dir", d]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("6 requests wait in the llm-d scheduler's queue"),
        "{out}"
    );
}

/// A model with prefill and decode variants is replayed role by role from its roles record.
#[test]
fn roles_are_recorded_and_replayed() {
    use wva_actors::policy::roles::Role;
    use wva_storage::RolesRecord;

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let inputs = [
        variant("prefill", 2.0, &[0.95, 0.95], None),
        variant("decode", 9.0, &[0.95, 0.95], None),
    ];
    let roles = Record::Roles(RolesRecord {
        model: ModelKey::new("llm-d", "llama"),
        at: Timestamp(T0),
        roles: vec![
            ("prefill".into(), "prefill".into()),
            ("decode".into(), "decode".into()),
        ],
    });
    log_one_cycle(&dir, &inputs, None, &[Role::Prefill, Role::Decode], roles);
    let d = dir.to_str().expect("utf8");
    let (code, out, err) = wva(&["replay", "--data-dir", d]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "replayed 1 cycles, 0 decisions differ\n");
}

/// Issue 18: a reader that stops early (`wva history | head -1`) ends the output quietly, with
/// success, never a panic (exit 101).
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path());
    let data_dir = dir.path().to_str().expect("utf-8 path");
    for args in [
        vec!["history", "--data-dir", data_dir],
        vec!["history", "--data-dir", data_dir, "--format", "json"],
        vec!["replay", "--data-dir", data_dir],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wva"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("wva runs");
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wva ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// Issue 18: bad input to `history` and `replay` exits 2 naming the path or key it read: a data
/// directory that is a file or missing, and a replay configuration with a misspelt key (which
/// would otherwise replay the defaults and report that nothing differs).
#[test]
fn bad_paths_and_misspelt_replay_keys_exit_2_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("log");
    write_log(&log_dir);
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a log").expect("write");
    let file = file.to_str().expect("utf-8");
    for command in ["history", "replay"] {
        let (code, _, err) = wva(&[command, "--data-dir", file]);
        assert_eq!(code, Some(2), "{command}: {err}");
        assert!(
            err.contains(file) && err.contains("is not a directory"),
            "{err}"
        );
        let missing = dir.path().join("missing");
        let missing = missing.to_str().expect("utf-8");
        let (code, _, err) = wva(&[command, "--data-dir", missing]);
        assert_eq!(code, Some(2), "{command}: {err}");
        assert!(
            err.contains(missing) && err.contains("does not exist"),
            "{err}"
        );
    }
    let config = dir.path().join("cm.yaml");
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capacity-scaling-config\ndata:\n  default: |\n    kvCacheThreshhold: 0.5\n",
    )
    .expect("write");
    let (code, out, err) = wva(&[
        "replay",
        "--data-dir",
        log_dir.to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "no replay report: {out}");
    assert!(err.contains("kvCacheThreshhold"), "{err}");
}

/// A model held instead of scaled to zero because its request series was absent while replicas
/// were ready replays as held: the log says the series was absent, not flat. A log without that
/// record (written before it existed) reads the count as flat, and replay says where it differs.
#[test]
fn a_missing_request_series_is_recorded_and_replayed_as_blind() {
    use wva_actors::policy::cycle::{CycleInputs, ModelBasedInputs, decide_cycle};
    use wva_actors::policy::scale_to_zero::RequestCount;
    use wva_actors::record::model_based_record;
    use wva_storage::RequestSeriesMissingRecord;

    let model = ModelKey::new("llm-d", "llama");
    let inputs = [variant("v", 10.0, &[0.1, 0.1], Some(2))];
    let thresholds = Thresholds::default();
    let decided = decide_cycle(CycleInputs {
        scale_to_zero: true,
        request_count: Some(&RequestCount::NoSeries),
        ..CycleInputs::capacity(&thresholds, &inputs)
    });
    assert!(decided.blind.is_some(), "{decided:?}");
    assert_eq!(decided.decision.variants[0].target, 2);
    let side = model_based_record(
        &model,
        Timestamp(T0),
        OperatingMode::CapacityOnly,
        &ModelBasedInputs {
            workload: None,
            targets: Default::default(),
            variants: Vec::new(),
        },
        &[],
        (true, Some(&RequestCount::NoSeries)),
        &decided,
    );
    let cycle = cycle_record(CycleFacts {
        model: &model,
        at: Timestamp(T0),
        mode: OperatingMode::CapacityOnly,
        config_version: "test",
        thresholds,
        metrics_error: None,
        inputs: &inputs,
        decision: &decided.decision,
        trigger: "tick",
    });
    let write = |dir: &Path, with_missing: bool| {
        let (mut log, _) = SledLog::open(dir, Retention::default(), 0).expect("open");
        log.append(&Record::Cycle(cycle.clone())).expect("append");
        log.append(&Record::ModelBased(side.clone()))
            .expect("append");
        if with_missing {
            log.append(&Record::RequestSeriesMissing(RequestSeriesMissingRecord {
                model: model.clone(),
                at: Timestamp(T0),
            }))
            .expect("append");
        }
        log.flush().expect("flush");
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = tmp.path().join("now");
    write(&now, true);
    let (code, out, err) = wva(&["replay", "--data-dir", now.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "replayed 1 cycles, 0 decisions differ\n");
    let (code, out, err) = wva(&["history", "--data-dir", now.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cannot tell idle from unseen"), "{out}");

    let older = tmp.path().join("older");
    write(&older, false);
    let (code, out, err) = wva(&["replay", "--data-dir", older.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.ends_with("replayed 1 cycles, 1 decisions differ\n"),
        "{out}"
    );
}

/// Two models on one A100 pool of 5 GPUs, both wanting a third replica: "llama" (priority 1)
/// got its 3, "granite" (priority 5) was cut to 2, as the registry logs it.
fn write_scarce_log(dir: &Path) {
    let (mut log, _) = SledLog::open(dir, Retention::default(), 0).expect("open");
    let thresholds = Thresholds::default();
    let mut claims = Vec::new();
    for (model, name, kv, priority, granted) in [
        ("llama", "cheap", [0.76, 0.75], 1, 3),
        ("granite", "g", [0.97, 0.97], 5, 2),
    ] {
        let inputs = [variant(name, 10.0, &kv, None)];
        let decision = decide_capacity(&thresholds, &inputs);
        let wanted = decision.variants[0].target;
        assert_eq!(wanted, 3);
        let record = cycle_record(CycleFacts {
            model: &ModelKey::new("llm-d", model),
            at: Timestamp(T0),
            mode: OperatingMode::CapacityOnly,
            config_version: "test",
            thresholds,
            metrics_error: None,
            inputs: &inputs,
            decision: &decision,
            trigger: "tick",
        });
        log.append(&Record::Cycle(record)).expect("append");
        claims.push(wva_storage::RecordedClaim {
            variant: wva_storage::VariantKey::new("llm-d", name),
            model_id: model.into(),
            accelerator: "A100".into(),
            gpus_per_replica: 1,
            priority,
            wanted,
            floor: 0,
            current: 2,
            granted,
        });
    }
    log.append(&Record::Scarcity(wva_storage::ScarcityRecord {
        model: wva_storage::ScarcityRecord::key(),
        at: Timestamp(T0),
        pool: vec![("A100".into(), 5)],
        quotas: Vec::new(),
        claims,
    }))
    .expect("append the cut");
    log.flush().expect("flush");
}

#[test]
fn replay_fits_the_replayed_decisions_into_the_recorded_pool() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    write_scarce_log(&dir);
    let d = dir.to_str().expect("utf8");
    let (code, out, err) = wva(&["replay", "--data-dir", d]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("1 cycles were cut by the accelerator pool"),
        "{out}"
    );
    assert!(
        out.ends_with("replayed 2 cycles, 0 decisions differ\n"),
        "{out}"
    );

    // With more headroom llama no longer wants its third replica, so the pool has room for
    // granite's: the cut is gone, and replay says so.
    let cm = tmp.path().join("capacity.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capacity-scaling-config\n  namespace: workload-variant-autoscaler-system\ndata:\n  default: |\n    kvCacheThreshold: 0.95\n    kvSpareTrigger: 0.1\n",
    )
    .expect("write");
    let c = cm.to_str().expect("utf8");
    let (code, out, err) = wva(&["replay", "--data-dir", d, "--config", c, "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["poolCycles"], 1);
    let differences = report["differences"].as_array().expect("differences");
    let granite = differences
        .iter()
        .find(|d| d["variant"] == "g")
        .expect("granite's cut differs");
    assert_eq!(
        (granite["recorded"].as_u64(), granite["replayed"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(
        granite["recordedReason"]
            .as_str()
            .is_some_and(|r| r.contains("wanted 3, granted 2")),
        "{granite}"
    );
    let llama = differences
        .iter()
        .find(|d| d["variant"] == "cheap")
        .expect("llama's own decision differs");
    assert_eq!(
        (llama["recorded"].as_u64(), llama["replayed"].as_u64()),
        (Some(3), Some(2))
    );
}

#[test]
fn history_shows_what_the_pool_granted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    write_scarce_log(&dir);
    let d = dir.to_str().expect("utf8");
    let (code, out, err) = wva(&["history", "--data-dir", d, "--model", "granite"]);
    assert_eq!(code, Some(0), "{err}");
    let row = out
        .lines()
        .find(|l| l.contains(" g "))
        .expect("granite's row");
    assert!(
        row.contains("accelerator pool: wanted 3, granted 2"),
        "{row}"
    );
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[5], "2", "the published count: {row}");
    let (code, out, _) = wva(&["history", "--data-dir", d, "--format", "json"]);
    assert_eq!(code, Some(0));
    let entries: Value = serde_json::from_str(&out).expect("json");
    let granite = entries
        .as_array()
        .and_then(|e| e.iter().find(|e| e["model"]["modelId"] == "granite"))
        .expect("granite's cycle");
    assert_eq!(granite["pool"][0]["granted"], 2);
}
