//! The decision log's contract, run against both implementations where it applies.

use std::time::Duration;

use wva_storage::codec::FORMAT_VERSION;
use wva_storage::*;

/// The seeds' saturation thresholds, as every record here was decided with.
fn thresholds() -> RecordedThresholds {
    RecordedThresholds {
        kv_cache_threshold: 0.8,
        queue_length_threshold: 5.0,
        kv_spare_trigger: 0.1,
        queue_spare_trigger: 3.0,
    }
}

fn cycle(ns: &str, model: &str, at: i64, targets: &[(&str, u32)], safety_net: bool) -> Record {
    Record::Cycle(CycleRecord {
        model: ModelKey::new(ns, model),
        at: Timestamp(at),
        mode: "capacity-only".into(),
        config_version: "v1".into(),
        thresholds: thresholds(),
        metrics_error: safety_net.then(|| "Prometheus unreachable".to_string()),
        variants: targets
            .iter()
            .map(|(name, _)| RecordedVariant {
                name: name.to_string(),
                cost: 10.0,
                accelerator: "A100".into(),
                current_replicas: 2,
                ready_replicas: 2,
                previous_desired: None,
                pods: vec![RecordedPod {
                    pod: format!("{name}-0"),
                    kv_cache_usage: Some(0.5),
                    queue_length: None,
                }],
            })
            .collect(),
        analysis: RecordedAnalysis {
            total_replicas: 2,
            non_saturated_replicas: 2,
            avg_spare_kv: 0.3,
            avg_spare_queue: 4.0,
            should_scale_up: false,
            scale_down_safe: false,
            reason: "steady".into(),
        },
        in_transition: false,
        safety_net,
        targets: targets
            .iter()
            .map(|(name, target)| RecordedTarget {
                name: name.to_string(),
                target: *target,
                action: "no-change".into(),
                reason: "steady".into(),
                fallback_source: safety_net.then(|| "previous-desired".to_string()),
            })
            .collect(),
        trigger: "tick".into(),
    })
}

type Case = (
    &'static str,
    Box<dyn DecisionLog>,
    Option<tempfile::TempDir>,
);

fn logs() -> Vec<Case> {
    logs_with_slots(DEFAULT_JOURNAL_SLOTS)
}

fn logs_with_slots(slots: u16) -> Vec<Case> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sled, report) =
        SledLog::open(&dir.path().join("log"), Retention::default(), 0).expect("open");
    assert_eq!(report, OpenReport::default());
    vec![
        (
            "memory",
            Box::new(MemoryLog::in_memory(Retention::default()).with_journal_slots(slots)),
            None,
        ),
        ("sled", Box::new(sled.with_journal_slots(slots)), Some(dir)),
    ]
}

#[test]
fn codec_round_trips_and_rejects_damage() {
    let r = cycle("ns", "m", 5, &[("a", 3)], false);
    let bytes = encode(&r).expect("encode");
    assert_eq!(bytes[0], FORMAT_VERSION);
    assert_eq!(decode(&bytes), Ok(r));

    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(matches!(decode(&flipped), Err(CodecError::Checksum { .. })));

    let mut version = bytes.clone();
    version[0] = FORMAT_VERSION + 1;
    assert_eq!(
        decode(&version),
        Err(CodecError::UnknownVersion(FORMAT_VERSION + 1))
    );

    assert_eq!(decode(&bytes[..3]), Err(CodecError::Truncated(3)));

    // A payload with a valid checksum that is not a record.
    let garbage = vec![0xffu8; 4];
    let mut forged = vec![FORMAT_VERSION];
    forged.extend_from_slice(&crc32_ieee(&garbage).to_le_bytes());
    forged.extend_from_slice(&garbage);
    assert!(matches!(decode(&forged), Err(CodecError::Payload(_))));
}

/// crc32 (IEEE) written out here, so the test does not share the codec's code.
/// Segments: the records come back with their sequence numbers; damage of any kind is an
/// error naming what is wrong, never a panic or a huge allocation.
#[test]
fn segments_round_trip_and_reject_damage() {
    use wva_storage::codec::{Compression, decode_stored, encode_segment, stored_count};
    let records: Vec<Record> = (0..5).map(|c| moving("m", c)).collect();
    let numbered: Vec<(u64, &Record)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (100 + 3 * i as u64, r))
        .collect();
    for how in [Compression::Kept, Compression::Journal] {
        let bytes = encode_segment(&numbered, how).expect("encode");
        assert_eq!(stored_count(&bytes), Some(5));
        let back = decode_stored(&bytes, 0).expect("decode");
        let expected: Vec<(u64, Record)> =
            numbered.iter().map(|(s, r)| (*s, (*r).clone())).collect();
        assert_eq!(back, expected);

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            decode_stored(&flipped, 0),
            Err(CodecError::Checksum { .. })
        ));
        assert_eq!(decode_stored(&bytes[..7], 0), Err(CodecError::Truncated(7)));
        // A length over what a segment may hold is refused before anything is allocated.
        let mut huge = bytes.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            matches!(decode_stored(&huge, 0), Err(CodecError::Payload(m)) if m.contains("claims"))
        );
        // A count that does not match the records.
        let mut miscounted = bytes.clone();
        miscounted[1..5].copy_from_slice(&4u32.to_le_bytes());
        assert!(
            matches!(decode_stored(&miscounted, 0), Err(CodecError::Payload(m)) if m.contains("header says 4"))
        );
    }
}

fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn history_is_per_model_in_append_order_with_filters() {
    for (name, mut log, _dir) in logs() {
        log.append(&cycle("ns1", "llama", 1_000, &[("a", 1)], false))
            .expect("append");
        log.append(&cycle("ns1", "granite", 2_000, &[("g", 1)], false))
            .expect("append");
        log.append(&cycle("ns2", "llama", 3_000, &[("b", 2)], false))
            .expect("append");
        log.append(&cycle("ns1", "llama", 4_000, &[("a", 2)], false))
            .expect("append");

        let all = log.history(&HistoryFilter::default()).expect("history");
        let times: Vec<i64> = all.records.iter().map(|(_, r)| r.at().millis()).collect();
        assert_eq!(times, [1_000, 2_000, 3_000, 4_000], "{name}: newest last");
        let seqs: Vec<u64> = all.records.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [0, 1, 2, 3], "{name}");

        let llama = log
            .history(&HistoryFilter {
                namespace: Some("ns1".into()),
                model_id: Some("llama".into()),
                ..Default::default()
            })
            .expect("history");
        assert_eq!(llama.records.len(), 2, "{name}");

        let ns1 = log
            .history(&HistoryFilter {
                namespace: Some("ns1".into()),
                ..Default::default()
            })
            .expect("history");
        assert_eq!(ns1.records.len(), 3, "{name}");

        let by_variant = log
            .history(&HistoryFilter {
                variant: Some("b".into()),
                ..Default::default()
            })
            .expect("history");
        assert_eq!(by_variant.records.len(), 1, "{name}");

        let window = log
            .history(&HistoryFilter {
                since: Some(Timestamp(2_000)),
                until: Some(Timestamp(3_000)),
                ..Default::default()
            })
            .expect("history");
        assert_eq!(window.records.len(), 2, "{name}");
        assert_eq!(log.stats().records, 4, "{name}");
    }
}

#[test]
fn last_good_ignores_safety_net_decisions_and_forgets_removed_variants() {
    for (name, mut log, _dir) in logs() {
        log.append(&cycle("ns", "m", 1, &[("a", 3), ("b", 1)], false))
            .expect("append");
        log.append(&cycle("ns", "m", 2, &[("a", 5), ("b", 1)], true))
            .expect("append");
        let lg = log.last_good().expect("last good");
        assert_eq!(lg[&VariantKey::new("ns", "a")].desired, 3, "{name}");
        assert_eq!(lg[&VariantKey::new("ns", "a")].at, Timestamp(1), "{name}");
        log.append(&cycle("ns", "m", 3, &[("a", 4), ("b", 1)], false))
            .expect("append");
        assert_eq!(
            log.last_good().expect("lg")[&VariantKey::new("ns", "a")].desired,
            4,
            "{name}"
        );
        log.forget_variant(&VariantKey::new("ns", "b"), Some(Timestamp(3)))
            .expect("forget");
        assert_eq!(log.last_good().expect("lg").len(), 1, "{name}");
    }
}

/// A cycle still in flight when its variant was forgotten (its VA deleted) is appended after
/// the forgetting: its record goes in the journal, as decided, but brings back neither the
/// variant's last good nor its learner, so a variant created again under the name starts
/// afresh. A cycle decided after the forgetting counts as ever.
#[test]
fn a_record_decided_before_a_variant_was_forgotten_brings_nothing_back() {
    for (name, mut log, _dir) in logs() {
        let gone = VariantKey::new("ns", "gone");
        log.append(&cycle("ns", "m", 10, &[("gone", 3), ("kept", 1)], false))
            .expect("append");
        log.forget_variant(&gone, Some(Timestamp(20)))
            .expect("forget");
        // The cycle at 20 lands late, with a model-based record as well.
        log.append_batch(&[
            cycle("ns", "m", 20, &[("gone", 5), ("kept", 2)], false),
            model_based(20, "gone", 7),
        ])
        .expect("append");
        assert_eq!(log.last_good_of(&gone).expect("read"), None, "{name}");
        assert_eq!(log.learner_of(&gone).expect("read"), None, "{name}");
        let kept = log
            .last_good_of(&VariantKey::new("ns", "kept"))
            .expect("read")
            .expect("kept");
        assert_eq!(kept.desired, 2, "{name}: other variants are not held back");
        assert_eq!(log.stats().records, 3, "{name}: the journal keeps them all");
        // Created again and decided: counted.
        log.append_batch(&[
            cycle("ns", "m", 35, &[("gone", 1), ("kept", 2)], false),
            model_based(35, "gone", 9),
        ])
        .expect("append");
        assert_eq!(
            log.last_good_of(&gone).expect("read").map(|g| g.desired),
            Some(1),
            "{name}"
        );
        assert!(log.learner_of(&gone).expect("read").is_some(), "{name}");
    }
}

#[test]
fn retention_by_age_then_by_size() {
    for (name, mut log, _dir) in logs_with_slots(1) {
        let day = 24 * 3600 * 1000;
        // A pass after each append, as the registry runs them; one journal slot, so each pass
        // seals what was appended since the last one.
        let mut removed = RetentionReport::default();
        for i in 0..=10 {
            if i < 10 {
                log.append(&cycle("ns", "m", i * day, &[("a", 1)], false))
                    .expect("append");
            }
            let r = log
                .enforce_retention(Timestamp(i * day))
                .expect("retention");
            removed.removed_by_age += r.removed_by_age;
            removed.removed_by_size += r.removed_by_size;
        }
        // Default retention keeps 7 days: by day 10, the records of days 0..=2 are older.
        assert_eq!(removed.removed_by_age, 3, "{name}");
        assert_eq!(removed.removed_by_size, 0, "{name}");
        let left = log.history(&HistoryFilter::default()).expect("history");
        assert_eq!(
            left.records.first().map(|(_, r)| r.at().millis()),
            Some(3 * day),
            "{name}"
        );
        assert_eq!(log.stats().records, 7, "{name}");
    }

    // One journal slot: a model's segment is sealed at every pass, so a segment is a record.
    let mut log = MemoryLog::in_memory(Retention {
        max_age: Duration::from_secs(3600),
        max_bytes: 4_000,
    })
    .with_journal_slots(1);
    let mut removed_by_size = 0;
    for i in 0..40 {
        // Distinct reasons, so that records do not compress to nothing.
        let mut record = cycle("ns", "m", i, &[("a", 1)], false);
        if let Record::Cycle(c) = &mut record {
            c.targets[0].reason =
                format!("{:x}", (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        log.append(&record).expect("append");
        removed_by_size += log
            .enforce_retention(Timestamp(i))
            .expect("retention")
            .removed_by_size;
        let after = log.stats();
        assert!(after.bytes <= 4_000, "{after:?}");
        assert_eq!(after.records, i as u64 + 1 - removed_by_size);
    }
    assert!(removed_by_size > 0);
    // The newest record is kept.
    let h = log.history(&HistoryFilter::default()).expect("history");
    assert_eq!(h.records.last().map(|(_, r)| r.at().millis()), Some(39));
}

#[test]
fn sled_log_survives_reopen_with_and_without_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let stats = {
        let (mut log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
        log.append(&cycle("ns", "m", 1, &[("a", 2)], false))
            .expect("append");
        log.append(&cycle("ns", "m", 2, &[("a", 3)], false))
            .expect("append");
        log.flush().expect("flush");
        // Appended after the accounting was last flushed; sled still persists it on drop.
        log.append(&cycle("ns", "m", 3, &[("a", 4)], false))
            .expect("append");
        log.stats()
    };
    let (mut log, report) = SledLog::open(&path, Retention::default(), 0).expect("reopen");
    assert_eq!(report, OpenReport::default());
    assert_eq!(log.stats(), stats);
    assert_eq!(
        log.last_good().expect("lg")[&VariantKey::new("ns", "a")].desired,
        4
    );
    let seq = log
        .append(&cycle("ns", "m", 4, &[("a", 5)], false))
        .expect("append");
    assert_eq!(seq, 3, "sequence numbers continue after a restart");
}

/// The database opened behind the log's back. sled releases a dropped database's lock from a
/// background thread a moment later, so the open is retried for a while (as `SledLog::open`
/// does), not failed on the first refusal.
fn raw_open(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(
                    e.to_string().contains("could not acquire lock"),
                    "raw open: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => panic!("raw open: {e}"),
        }
    }
}

#[test]
fn undecodable_records_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    {
        let (mut log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
        log.append(&cycle("ns", "m", 1, &[("a", 2)], false))
            .expect("append");
        log.append(&cycle("ns", "m", 2, &[("a", 3)], false))
            .expect("append");
        log.flush().expect("flush");
    }
    {
        // Damage the first append behind the log's back (still in the journal: no retention
        // pass has sealed it).
        let db = raw_open(&path);
        let records = db.open_tree("journal").expect("tree");
        let (key, mut value) = records
            .first()
            .expect("first")
            .map(|(k, v)| (k, v.to_vec()))
            .expect("a record");
        let last = value.len() - 1;
        value[last] ^= 0xff;
        records.insert(key, value).expect("insert");
        db.flush().expect("flush");
    }
    let (log, report) = SledLog::open(&path, Retention::default(), 0).expect("reopen");
    assert_eq!(
        report.moved_aside, None,
        "one bad record does not make the log unusable"
    );
    let h = log.history(&HistoryFilter::default()).expect("history");
    assert_eq!(h.undecodable, 1);
    assert_eq!(h.records.len(), 1);
    assert_eq!(h.records[0].1.at(), Timestamp(2));
}

#[test]
fn a_corrupt_database_is_moved_aside_and_a_new_log_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    {
        let (mut log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
        log.append(&cycle("ns", "m", 1, &[("a", 2)], false))
            .expect("append");
        log.flush().expect("flush");
    }
    // Overwrite every file sled wrote with garbage.
    for entry in walk(&path) {
        std::fs::write(&entry, vec![0x5au8; 4096]).expect("overwrite");
    }
    let (log, report) =
        SledLog::open(&path, Retention::default(), 1_700_000_000).expect("opens anyway");
    let aside = report.moved_aside.expect("moved aside");
    assert_eq!(aside, dir.path().join("log.corrupt-1700000000"));
    assert!(aside.exists());
    assert!(report.reason.is_some());
    assert_eq!(log.stats().records, 0);
    assert!(log.last_good().expect("lg").is_empty());
}

#[test]
fn a_database_of_another_format_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    {
        let db = raw_open(&path);
        db.open_tree("meta")
            .expect("tree")
            .insert("format", "something-else/9")
            .expect("insert");
        db.flush().expect("flush");
    }
    let (_, report) = SledLog::open(&path, Retention::default(), 7).expect("opens anyway");
    assert_eq!(report.moved_aside, Some(dir.path().join("log.corrupt-7")));
    assert!(
        report
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("format")),
        "{report:?}"
    );
}

#[test]
fn a_database_in_use_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let (_held, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
    let err = SledLog::open(&path, Retention::default(), 0).expect_err("second open fails");
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(!dir.path().join("log.corrupt-0").exists());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn model_based(at: i64, variant: &str, accepted: u32) -> Record {
    let fit = RecordedLineFit {
        intercept: 12.0,
        slope: 0.3,
        covariance: [1.0, 0.0, 0.0, 1.0],
        residual_variance: 0.5,
        accepted,
        rejected: 1,
        rejected_in_a_row: 0,
    };
    Record::ModelBased(ModelBasedRecord {
        model: ModelKey::new("ns", "m"),
        at: Timestamp(at),
        mode: "hybrid".into(),
        workload: Some(RecordedWorkload {
            arrival_rps: 3.0,
            mean_input_tokens: 800.0,
            mean_output_tokens: 200.0,
        }),
        ttft_target_ms: 1000.0,
        itl_target_ms: 50.0,
        proposal_reason: "test".into(),
        variants: vec![RecordedModelVariant {
            name: variant.into(),
            cost: 5.0,
            max_batch: 256,
            learner: RecordedLearner {
                decode: Some(fit),
                prefill: Some(fit),
            },
            rate_per_replica: Some(2.5),
            capacity_target: 2,
            model_target: Some(3),
            target: 3,
            winner: "model".into(),
            rule: "model-up".into(),
        }],
        scale_to_zero: false,
        request_count: None,
        request_count_error: None,
        scaled_to_zero: None,
    })
}

#[test]
fn learner_states_survive_a_restart_and_go_with_their_variant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let a = VariantKey::new("ns", "a");
    {
        let (mut log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
        assert_eq!(log.learner_of(&a).expect("read"), None);
        log.append_batch(&[
            cycle("ns", "m", 1, &[("a", 3)], false),
            model_based(1, "a", 7),
        ])
        .expect("append");
        log.append(&model_based(2, "a", 8)).expect("append");
        log.flush().expect("flush");
    }
    let (mut log, _) = SledLog::open(&path, Retention::default(), 0).expect("reopen");
    let learned = log.learner_of(&a).expect("read").expect("restored");
    assert_eq!(
        learned.decode.expect("decode").accepted,
        8,
        "the latest state wins"
    );
    // History shows both kinds, in order; the model-based record names its variant.
    let h = log.history(&HistoryFilter::default()).expect("history");
    assert_eq!(h.records.len(), 3);
    assert!(matches!(h.records[1].1, Record::ModelBased(_)));
    assert!(h.records[1].1.mentions_variant("a"));
    log.forget_variant(&a, None).expect("forget");
    assert_eq!(log.learner_of(&a).expect("read"), None);
}

/// Bytes under `dir`, as the file system holds them.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Retention holds under load: 100 models appending every cycle, with retention enforced after
/// each cycle (as the registry does), never keep more than the size cap, and the files on disk
/// stay within a small multiple of it (sled's segments not reclaimed yet).
#[test]
fn retention_bounds_the_log_under_load() {
    for (cap, cycles) in [(256 * 1024u64, 400i64), (4 * 1024 * 1024, 400)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let retention = Retention {
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: cap,
        };
        let (mut log, _) = SledLog::open(tmp.path(), retention, 0).expect("open");
        let (mut peak_logical, mut peak_disk, mut cycle_bytes) = (0u64, 0u64, 0u64);
        for c in 0..cycles {
            let at = c * 15_000;
            let before = log.stats().bytes;
            let batch: Vec<Record> = (0..100)
                .map(|m| {
                    cycle(
                        "llm",
                        &format!("model-{m}"),
                        at,
                        &[("a", 2), ("b", 1)],
                        false,
                    )
                })
                .collect();
            log.append_batch(&batch).expect("append");
            cycle_bytes = cycle_bytes.max(log.stats().bytes.saturating_sub(before));
            log.enforce_retention(Timestamp(at)).expect("retention");
            log.flush().expect("flush");
            peak_logical = peak_logical.max(log.stats().bytes);
            if c % 50 == 49 {
                peak_disk = peak_disk.max(disk_bytes(tmp.path()));
            }
        }
        eprintln!(
            "cap {cap} B: peak logical {peak_logical} B (one cycle {cycle_bytes} B), peak on disk {peak_disk} B ({:.1}x)",
            peak_disk as f64 / cap as f64
        );
        assert!(peak_logical <= cap, "{peak_logical} > {cap}");
        assert!(peak_disk <= 64 * cap, "{peak_disk} on disk for a {cap} cap");
        // What is kept is the newest.
        let kept = log.history(&HistoryFilter::default()).expect("history");
        let newest = (cycles - 1) * 15_000;
        assert!(kept.records.iter().any(|(_, r)| r.at().millis() == newest));
    }
}

/// Issue 19: over the size cap, the namespace holding the most gives up its oldest records
/// first. A tenant whose fifty variants with long names flood the log loses its own history;
/// a small tenant's model keeps all of its, across a reopen (who holds what is recounted).
#[test]
fn one_namespace_flooding_the_log_does_not_push_out_another_s_history() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let retention = Retention {
        max_age: Duration::from_secs(24 * 3600),
        max_bytes: 400 * 1024,
    };
    // Fifty variants whose long names change every cycle (a churn that compresses poorly).
    let hog_names = |c: i64| -> Vec<String> {
        (0..50u64)
            .map(|i| {
                let mut x = (c as u64 + 1) * 1_000 + i;
                (0..13)
                    .map(|_| {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        format!("{:016x}", x)
                    })
                    .collect()
            })
            .collect()
    };
    let cycles = 120i64;
    for reopen in [false, true] {
        let (mut log, _) = SledLog::open(tmp.path(), retention, 0).expect("open");
        let range = if reopen {
            cycles..2 * cycles
        } else {
            0..cycles
        };
        for c in range {
            let at = c * 15_000;
            let names = hog_names(c);
            let hog_targets: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
            log.append_batch(&[
                cycle("quiet", "small-model", at, &[("a", 1)], false),
                cycle("noisy", "flood", at, &hog_targets, false),
            ])
            .expect("append");
            log.enforce_retention(Timestamp(at)).expect("retention");
            assert!(
                log.stats().bytes <= retention.max_bytes,
                "{:?}",
                log.stats()
            );
        }
        log.flush().expect("flush");
    }
    let (log, _) = SledLog::open(tmp.path(), retention, 0).expect("open");
    let of = |ns: &str| {
        log.history(&HistoryFilter {
            namespace: Some(ns.into()),
            ..Default::default()
        })
        .expect("history")
        .records
    };
    let quiet = of("quiet");
    assert_eq!(
        quiet.len() as i64,
        2 * cycles,
        "the quiet tenant lost nothing"
    );
    let noisy = of("noisy");
    assert!(
        !noisy.is_empty() && (noisy.len() as i64) < 2 * cycles,
        "the flood kept {} of {} records",
        noisy.len(),
        2 * cycles
    );
    // What the flood kept is its newest.
    assert_eq!(
        noisy.last().map(|(_, r)| r.at().millis()),
        Some((2 * cycles - 1) * 15_000)
    );
}

/// A record of one model at cycle `c`, its signals moving as real ones do.
fn moving(model: &str, c: i64) -> Record {
    let mut record = cycle("ns", model, c * 15_000, &[("a", 2), ("b", 1)], false);
    if let Record::Cycle(r) = &mut record {
        for (i, v) in r.variants.iter_mut().enumerate() {
            let kv = 0.4 + 0.3 * ((c as f64 / 7.0) + i as f64).sin();
            v.pods[0].kv_cache_usage = Some(kv);
        }
        r.analysis.avg_spare_kv = 0.8 - 0.3 * (c as f64 / 7.0).sin();
        r.analysis.reason = format!(
            "spare KV {:.3} >= 0.1, queue 4.0 >= 3",
            r.analysis.avg_spare_kv
        );
    }
    record
}

/// Issue 17: records go to the journal at each append and into one segment per model a round
/// of slots later; history sees every record exactly as appended, in order, before and after
/// sealing and across a reopen, and a record costs a fraction of its size alone.
#[test]
fn segments_keep_every_record_exactly_and_take_a_fraction_of_the_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let models = ["m0", "m1", "m2"];
    let cycles = 130i64;
    let mut appended: Vec<Record> = Vec::new();
    for half in [0..cycles / 2, cycles / 2..cycles] {
        let (mut log, _) = SledLog::open(tmp.path(), Retention::default(), 0).expect("open");
        assert_eq!(
            log.stats().records,
            appended.len() as u64,
            "counted at open"
        );
        for c in half {
            let batch: Vec<Record> = models.iter().map(|m| moving(m, c)).collect();
            log.append_batch(&batch).expect("append");
            appended.extend(batch);
            log.enforce_retention(Timestamp(c * 15_000)).expect("pass");
        }
        log.flush().expect("flush");
    }
    let (log, _) = SledLog::open(tmp.path(), Retention::default(), 0).expect("open");
    assert_eq!(log.stats().records, appended.len() as u64);
    for m in models {
        let history = log
            .history(&HistoryFilter {
                namespace: Some("ns".into()),
                model_id: Some(m.into()),
                ..Default::default()
            })
            .expect("history");
        let expected: Vec<&Record> = appended
            .iter()
            .filter(|r| r.model().model_id == m)
            .collect();
        let got: Vec<&Record> = history.records.iter().map(|(_, r)| r).collect();
        assert_eq!(got, expected, "{m}: every record, exactly, in order");
        assert_eq!(history.undecodable, 0);
    }
    let all = log.history(&HistoryFilter::default()).expect("history");
    let seqs: Vec<u64> = all.records.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..appended.len() as u64).collect::<Vec<_>>());
    let alone: u64 = appended
        .iter()
        .map(|r| wva_storage::encode(r).expect("encode").len() as u64)
        .sum();
    let kept = log.stats().bytes;
    eprintln!(
        "{} records: {kept} B kept, {alone} B as single records ({:.1}x)",
        appended.len(),
        alone as f64 / kept as f64
    );
    assert!(kept * 3 < alone, "{kept} B kept for {alone} B of records");
}

/// A log written before segments (format 1: one record per key) opens as it is: its records
/// are read, counted and aged out, and new records follow their sequence numbers.
#[test]
fn a_log_of_single_records_is_read_and_continued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("log");
    let old = [
        cycle("ns", "m", 1_000, &[("a", 2)], false),
        cycle("ns", "m", 2_000, &[("a", 3)], false),
    ];
    {
        let db = raw_open(&path);
        let meta = db.open_tree("meta").expect("meta");
        meta.insert("format", "wva-decision-log/1").expect("marker");
        let (records, by_seq) = (
            db.open_tree("records").expect("records"),
            db.open_tree("by_seq").expect("by_seq"),
        );
        for (seq, record) in old.iter().enumerate() {
            let bytes = wva_storage::encode(record).expect("encode");
            let rkey = wva_storage::keys::record_key(record.model(), seq as u64);
            records.insert(&rkey, bytes.clone()).expect("record");
            let mut entry = record.at().0.to_be_bytes().to_vec();
            entry.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            entry.extend_from_slice(&rkey);
            by_seq
                .insert((seq as u64).to_be_bytes(), entry)
                .expect("index");
        }
        let mut accounting = 2u64.to_be_bytes().to_vec();
        accounting.extend_from_slice(&[0u8; 16]);
        meta.insert("accounting", accounting).expect("accounting");
        db.flush().expect("flush");
    }
    let (mut log, report) = SledLog::open(&path, Retention::default(), 0).expect("open");
    assert_eq!(report.moved_aside, None, "read, not moved aside");
    assert_eq!(log.stats().records, 2);
    let seq = log
        .append(&cycle("ns", "m", 3_000, &[("a", 4)], false))
        .expect("append");
    assert_eq!(seq, 2, "numbers continue");
    let history = log.history(&HistoryFilter::default()).expect("history");
    let got: Vec<Record> = history.records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(&got[..2], &old[..]);
    // Age removes the old single records like segments.
    let report = log
        .enforce_retention(Timestamp(2_500 + 7 * 24 * 3600 * 1000))
        .expect("retention");
    assert_eq!(report.removed_by_age, 2);
    assert_eq!(log.stats().records, 1);
}

/// A crash between sealing a slot and removing its journal entries leaves the records in both
/// places: reopened, history shows each record once, and the next seal writes the same segment
/// again instead of counting its records twice.
#[test]
fn a_seal_cut_short_by_a_crash_keeps_every_record_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("log");
    let journal_copy: Vec<(sled::IVec, sled::IVec)> = {
        let (log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
        let mut log = log.with_journal_slots(1);
        for c in 0..3 {
            log.append(&moving("m", c)).expect("append");
        }
        log.flush().expect("flush");
        drop(log);
        let db = raw_open(&path);
        let copy = db
            .open_tree("journal")
            .expect("journal")
            .iter()
            .map(|e| e.expect("entry"))
            .collect();
        db.flush().expect("flush");
        copy
    };
    assert!(!journal_copy.is_empty());
    {
        let (log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
        let mut log = log.with_journal_slots(1);
        log.enforce_retention(Timestamp(0)).expect("seal");
        log.flush().expect("flush");
    }
    {
        // The journal entries come back, as if the seal had not removed them.
        let db = raw_open(&path);
        let journal = db.open_tree("journal").expect("journal");
        assert!(journal.is_empty(), "sealed");
        for (k, v) in &journal_copy {
            journal.insert(k, v.clone()).expect("insert");
        }
        db.flush().expect("flush");
    }
    let (log, _) = SledLog::open(&path, Retention::default(), 0).expect("open");
    let mut log = log.with_journal_slots(1);
    let seqs = |log: &SledLog| -> Vec<u64> {
        log.history(&HistoryFilter::default())
            .expect("history")
            .records
            .iter()
            .map(|(s, _)| *s)
            .collect()
    };
    assert_eq!(seqs(&log), [0, 1, 2], "each record once");
    log.enforce_retention(Timestamp(0)).expect("seal again");
    assert_eq!(seqs(&log), [0, 1, 2]);
    assert_eq!(log.stats().records, 3, "counted once");
}

/// A cycle stored compact is the last good count of its variants as a full one is (restart
/// recovery reads it without rebuilding the cycle), and it survives reopening.
#[test]
fn a_compact_cycle_is_the_last_good_count_of_its_variants() {
    let compact = |at: i64, target: u32| {
        Record::CompactCycle(CompactCycleRecord {
            model: ModelKey::new("ns", "m"),
            at: Timestamp(at),
            builds_on: None,
            decided_by: "test".into(),
            mode: "capacity-only".into(),
            config_version: "v1".into(),
            thresholds: thresholds(),
            metrics_error: None,
            trigger: "tick".into(),
            capacity_settings: None,
            variants: vec![CompactVariant {
                name: "a".into(),
                cost: 10.0,
                accelerator: "A100".into(),
                current_replicas: 2,
                ready_replicas: 2,
                previous_desired: Some(2),
                pods: Vec::new(),
                target,
                capacity: None,
            }],
        })
    };
    for (name, mut log, _dir) in logs() {
        log.append(&cycle("ns", "m", 1, &[("a", 3)], false))
            .expect("append");
        log.append(&compact(2, 5)).expect("append");
        let lg = log.last_good().expect("last good");
        assert_eq!(lg[&VariantKey::new("ns", "a")].desired, 5, "{name}");
        assert_eq!(lg[&VariantKey::new("ns", "a")].at, Timestamp(2), "{name}");
        // A safety-net cycle after it is never a last good count.
        log.append(&cycle("ns", "m", 3, &[("a", 9)], true))
            .expect("append");
        assert_eq!(
            log.last_good_of(&VariantKey::new("ns", "a"))
                .expect("lg")
                .map(|l| l.desired),
            Some(5),
            "{name}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut sled, _) =
            SledLog::open(&dir.path().join("log"), Retention::default(), 0).expect("open");
        sled.append(&compact(4, 6)).expect("append");
        sled.flush().expect("flush");
    }
    let (sled, _) = SledLog::open(&dir.path().join("log"), Retention::default(), 0).expect("open");
    assert_eq!(
        sled.last_good_of(&VariantKey::new("ns", "a"))
            .expect("lg")
            .map(|l| l.desired),
        Some(6)
    );
}
