//! The actor runtime end to end, on the in-memory log: routing, start/stop, the cycle, the safety
//! net, immediate Deployment reactions, restarts from the log, series removal, instance labels.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use wva_actors::log_actor::{LogActor, ReadHistory};
use wva_actors::messages::*;
use wva_actors::policy::outputs::PoolState;
use wva_actors::policy::scale_to_zero::RequestCount;
use wva_actors::publisher::{Gather, Publisher, PublisherConfig, ReadDesired};
use wva_actors::registry::*;
use wva_actors::system::SystemConfig;
use wva_storage::{DecisionLog, HistoryFilter, LastGood, MemoryLog, Record, Retention};

/// Collects status updates, as the VA status writer would receive them.
#[derive(Debug, Default)]
struct StatusRecorder(Arc<Mutex<Vec<StatusUpdate>>>);

impl Actor for StatusRecorder {
    type Context = Context<Self>;
}

impl Handler<StatusBatch> for StatusRecorder {
    type Result = ();
    fn handle(&mut self, msg: StatusBatch, _: &mut Context<Self>) {
        self.0.lock().expect("lock").extend(msg.0);
    }
}

struct Harness {
    registry: Addr<Registry>,
    publisher: Addr<Publisher>,
    log: Addr<LogActor>,
    statuses: Arc<Mutex<Vec<StatusUpdate>>>,
    telemetry: wva_actors::telemetry::Telemetry,
}

fn start(log: MemoryLog, instance: Option<&str>) -> Harness {
    start_with(log, instance, PolicySettings::default())
}

fn start_with(log: MemoryLog, instance: Option<&str>, settings: PolicySettings) -> Harness {
    start_on(Box::new(log), instance, settings)
}

fn start_on(
    log: Box<dyn DecisionLog>,
    instance: Option<&str>,
    settings: PolicySettings,
) -> Harness {
    start_threads(log, instance, settings, 1)
}

fn start_threads(
    log: Box<dyn DecisionLog>,
    instance: Option<&str>,
    settings: PolicySettings,
    model_threads: usize,
) -> Harness {
    start_under(
        log,
        instance,
        settings,
        model_threads,
        wva_actors::authority::Authority::unconditional(),
    )
}

/// The actors, acting only while `authority` says so.
fn start_under(
    log: Box<dyn DecisionLog>,
    instance: Option<&str>,
    settings: PolicySettings,
    model_threads: usize,
    authority: wva_actors::authority::Authority,
) -> Harness {
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let recorder = StatusRecorder(Arc::clone(&statuses)).start();
    let telemetry = wva_actors::telemetry::Telemetry::unregistered().expect("telemetry");
    let system = wva_actors::system::start(SystemConfig {
        log,
        publisher: PublisherConfig {
            prefix: "inferno".into(),
            controller_instance: instance.map(str::to_string),
        },
        status: Some(recorder.recipient()),
        settings,
        telemetry: telemetry.clone(),
        model_threads,
        authority,
    })
    .expect("actor system");
    assert_eq!(system.recovery_problem, None);
    Harness {
        registry: system.registry,
        publisher: system.publisher,
        log: system.log,
        statuses,
        telemetry,
    }
}

fn spec(ns: &str, name: &str, model: &str, cost: f64) -> VariantSpec {
    VariantSpec {
        key: VariantKey::new(ns, name),
        model: ModelKey::new(ns, model),
        deployment: format!("{name}-deploy"),
        cost,
        accelerator: "A100".into(),
        status_desired: None,
        max_batch: wva_actors::messages::DEFAULT_MAX_BATCH,
        bounds: Default::default(),
        role: Default::default(),
        gpus_per_replica: 1,
    }
}

fn samples(name: &str, signals: &[(f64, f64)]) -> Vec<PodSample> {
    signals
        .iter()
        .enumerate()
        .map(|(i, &(kv, q))| PodSample {
            pod: format!("{name}-{i}"),
            deployment: format!("{name}-deploy"),
            kv_cache_usage: Some(kv),
            queue_length: Some(q),
            ..Default::default()
        })
        .collect()
}

fn snapshot(entries: Vec<(ModelKey, Vec<PodSample>)>) -> Metrics {
    let mut by_model = std::collections::HashMap::new();
    for (model, mut s) in entries {
        by_model
            .entry(model)
            .or_insert_with(Vec::new)
            .append(&mut s);
    }
    Metrics::Read(Arc::new(MetricsSnapshot {
        by_model,
        ..Default::default()
    }))
}

async fn add(h: &Harness, spec: VariantSpec, replicas: u32) {
    let (ns, deployment) = (spec.key.namespace.clone(), spec.deployment.clone());
    h.registry
        .send(DeploymentEvent {
            namespace: ns,
            name: deployment,
            state: Some(DeploymentState {
                replicas,
                ready: replicas,
            }),
            at: Timestamp(0),
        })
        .await
        .expect("deployment");
    h.registry
        .send(UpsertVariant {
            spec,
            at: Timestamp(0),
        })
        .await
        .expect("upsert");
}

/// Everything in the decision log, oldest first.
async fn history(h: &Harness) -> wva_storage::History {
    h.log
        .send(ReadHistory(HistoryFilter::default()))
        .await
        .expect("log")
        .expect("history")
}

/// One registry tick at `at_ms`.
async fn tick(h: &Harness, at_ms: i64, metrics: Metrics) -> CycleSummary {
    h.registry
        .send(Tick {
            now: Timestamp(at_ms),
            metrics,
        })
        .await
        .expect("tick")
}

async fn desired(h: &Harness, ns: &str, name: &str) -> Option<u32> {
    h.publisher
        .send(ReadDesired(VariantKey::new(ns, name)))
        .await
        .expect("publisher")
}

#[actix::test]
async fn variants_are_routed_to_one_supervisor_per_model_and_stopped_with_it() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    add(&h, spec("ns", "a100", "llama", 40.0), 2).await;
    add(&h, spec("ns", "h100", "llama", 80.0), 1).await;
    add(&h, spec("ns", "granite", "granite", 10.0), 1).await;
    add(&h, spec("other", "a100", "llama", 40.0), 1).await;
    let c = h.registry.send(Counts).await.expect("counts");
    assert_eq!((c.models, c.variants), (3, 4));

    h.registry
        .send(RemoveVariant(VariantKey::new("ns", "h100")))
        .await
        .expect("remove");
    let c = h.registry.send(Counts).await.expect("counts");
    assert_eq!((c.models, c.variants), (3, 3));
    h.registry
        .send(RemoveVariant(VariantKey::new("ns", "granite")))
        .await
        .expect("remove");
    let c = h.registry.send(Counts).await.expect("counts");
    assert_eq!(
        (c.models, c.variants),
        (2, 2),
        "the last variant takes its supervisor"
    );

    // Moving a VA to another model re-routes it.
    add(&h, spec("ns", "a100", "granite", 40.0), 2).await;
    let c = h.registry.send(Counts).await.expect("counts");
    assert_eq!((c.models, c.variants), (2, 2));
}

#[actix::test]
async fn a_tick_decides_records_and_publishes_the_cheapest_scale_up() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    add(&h, spec("ns", "cheap", "llama", 10.0), 2).await;
    add(&h, spec("ns", "pricey", "llama", 50.0), 2).await;
    let model = ModelKey::new("ns", "llama");
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    let summary = tick(
        &h,
        15_000,
        snapshot(vec![
            (model.clone(), samples("cheap", &hot)),
            (model.clone(), samples("pricey", &hot)),
        ]),
    )
    .await;
    assert_eq!(summary.models, 1);
    assert_eq!(summary.variants, 2);
    assert_eq!(summary.changed, 1);
    assert_eq!(desired(&h, "ns", "cheap").await, Some(3));
    assert_eq!(desired(&h, "ns", "pricey").await, Some(2));

    let text = h.publisher.send(Gather).await.expect("gather");
    assert!(text.contains(r#"inferno_desired_replicas{accelerator_type="A100",namespace="ns",variant_name="cheap"} 3"#), "{text}");
    assert!(text.contains(r#"inferno_current_replicas{accelerator_type="A100",namespace="ns",variant_name="cheap"} 2"#), "{text}");
    assert!(text.contains(r#"inferno_desired_ratio{accelerator_type="A100",namespace="ns",variant_name="cheap"} 1.5"#), "{text}");
    assert!(text.contains(r#"inferno_replica_scaling_total{accelerator_type="A100",direction="up",namespace="ns",reason="saturation",variant_name="cheap"} 1"#), "{text}");
    assert!(!text.contains("controller_instance"));

    let history = history(&h).await;
    assert_eq!(history.records.len(), 1);
    let Record::Cycle(c) = &history.records[0].1 else {
        panic!("expected a cycle record");
    };
    assert_eq!(c.at, Timestamp(15_000));
    assert_eq!(c.variants.len(), 2);
    assert_eq!(
        c.variants[0].pods.len(),
        2,
        "inputs are recorded with the decision"
    );
    assert_eq!(c.trigger, "tick");
    assert!(c.analysis.should_scale_up);

    let statuses = h.statuses.lock().expect("lock").clone();
    assert!(statuses.iter().any(|s| matches!(s, StatusUpdate::Decided { variant, desired: 3, optimization: OptimizationState::Succeeded, metrics: MetricsState::Found, .. } if variant.name == "cheap")), "{statuses:?}");
}

#[actix::test]
async fn the_safety_net_falls_back_to_the_last_good_desired_from_the_log() {
    // A previous process decided 4 for "a"; nothing is known for "b".
    let mut log = MemoryLog::in_memory(Retention::default());
    log.append(&Record::Cycle(wva_actors::record::cycle_record(
        wva_actors::record::CycleFacts {
            model: &ModelKey::new("ns", "llama"),
            at: Timestamp(1),
            mode: wva_actors::policy::OperatingMode::CapacityOnly,
            config_version: "v",
            thresholds: Default::default(),
            metrics_error: None,
            inputs: &[],
            decision: &wva_actors::policy::ModelDecision {
                analysis: wva_actors::policy::analyze_capacity(&Default::default(), &[]),
                in_transition: false,
                safety_net: false,
                variants: vec![wva_actors::policy::VariantTarget {
                    name: "a".into(),
                    accelerator: "A100".into(),
                    current_replicas: 2,
                    saturated_replicas: vec![],
                    target: 4,
                    action: wva_actors::policy::Action::ScaleUp,
                    reason: "test".into(),
                    fallback_source: None,
                }],
            },
            trigger: "tick",
        },
    )))
    .expect("append");
    assert_eq!(
        log.last_good()
            .expect("lg")
            .get(&VariantKey::new("ns", "a")),
        Some(&LastGood {
            desired: 4,
            at: Timestamp(1)
        })
    );
    let h = start(log, None);
    add(&h, spec("ns", "a", "llama", 10.0), 2).await;
    add(&h, spec("ns", "b", "llama", 20.0), 3).await;
    let summary = tick(
        &h,
        30_000,
        Metrics::Failed("Prometheus unreachable: connection refused".into()),
    )
    .await;
    assert_eq!(summary.safety_net_models, 1);
    assert_eq!(desired(&h, "ns", "a").await, Some(4));
    assert_eq!(desired(&h, "ns", "b").await, Some(3));
    let statuses = h.statuses.lock().expect("lock").clone();
    let safety: Vec<_> = statuses
        .iter()
        .filter_map(|s| match s {
            StatusUpdate::Decided {
                variant,
                optimization: OptimizationState::SafetyNet { source, .. },
                metrics: MetricsState::PrometheusError(_),
                ..
            } => Some((variant.name.clone(), source.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        safety,
        [
            ("a".to_string(), "previous-desired"),
            ("b".to_string(), "current-replicas")
        ]
    );
}

#[actix::test]
async fn deployment_create_and_delete_are_handled_at_once() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    let model = ModelKey::new("ns", "llama");
    // The VA comes before its Deployment.
    h.registry
        .send(UpsertVariant {
            spec: spec("ns", "late", "llama", 10.0),
            at: Timestamp(0),
        })
        .await
        .expect("upsert");
    let first = h.statuses.lock().expect("lock").clone();
    assert!(
        matches!(&first[..], [StatusUpdate::TargetMissing { deleted: false, deployment, .. }] if deployment == "late-deploy"),
        "{first:?}"
    );

    // A tick happens (nothing to decide yet), then the Deployment appears: decided at once.
    let metrics = snapshot(vec![(model.clone(), samples("late", &[(0.3, 0.0)]))]);
    tick(&h, 15_000, metrics).await;
    assert_eq!(desired(&h, "ns", "late").await, None);
    h.registry
        .send(DeploymentEvent {
            namespace: "ns".into(),
            name: "late-deploy".into(),
            state: Some(DeploymentState {
                replicas: 1,
                ready: 1,
            }),
            at: Timestamp(16_000),
        })
        .await
        .expect("event");
    let mut published = None;
    for _ in 0..50 {
        published = desired(&h, "ns", "late").await;
        if published.is_some() {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        published,
        Some(1),
        "decided on the event, without another tick"
    );
    let history = history(&h).await;
    let Record::Cycle(c) = &history.records.last().expect("a record").1 else {
        panic!("expected a cycle record");
    };
    assert_eq!(c.trigger, "deployment-created");
    assert_eq!(c.at, Timestamp(16_000));

    // Deleted: series removed and status cleared at once.
    h.registry
        .send(DeploymentEvent {
            namespace: "ns".into(),
            name: "late-deploy".into(),
            state: None,
            at: Timestamp(17_000),
        })
        .await
        .expect("event");
    assert_eq!(desired(&h, "ns", "late").await, None);
    let text = h.publisher.send(Gather).await.expect("gather");
    assert!(!text.contains("variant_name=\"late\""), "{text}");
    let last = h.statuses.lock().expect("lock").last().cloned();
    assert!(
        matches!(
            last,
            Some(StatusUpdate::TargetMissing { deleted: true, .. })
        ),
        "{last:?}"
    );

    // Recreated: resumes.
    h.registry
        .send(DeploymentEvent {
            namespace: "ns".into(),
            name: "late-deploy".into(),
            state: Some(DeploymentState {
                replicas: 1,
                ready: 1,
            }),
            at: Timestamp(18_000),
        })
        .await
        .expect("event");
    for _ in 0..50 {
        if desired(&h, "ns", "late").await.is_some() {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(desired(&h, "ns", "late").await, Some(1));
}

#[actix::test]
async fn a_failing_variant_actor_is_restarted_from_the_log() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    add(&h, spec("ns", "v", "llama", 10.0), 2).await;
    let model = ModelKey::new("ns", "llama");
    // First cycle: hot, so the desired count becomes 3 and is recorded as last good.
    tick(
        &h,
        15_000,
        snapshot(vec![(
            model.clone(),
            samples("v", &[(0.76, 2.0), (0.75, 2.0)]),
        )]),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(3));

    // A sample the adapters should never let through: the variant actor stops on it.
    let mut bad = samples("v", &[(0.5, 1.0), (0.5, 1.0)]);
    bad[1].kv_cache_usage = Some(f64::NAN);
    let summary = tick(&h, 30_000, snapshot(vec![(model.clone(), bad)])).await;
    assert_eq!(summary.restarted, 1);
    assert_eq!(
        summary.safety_net_models, 1,
        "no decision on untrusted signals"
    );
    assert_eq!(
        desired(&h, "ns", "v").await,
        Some(3),
        "the restarted actor holds the logged desired"
    );
    let c = h.registry.send(Counts).await.expect("counts");
    assert_eq!(c.restarts, 1);

    // The restarted actor works: the next cycle decides normally.
    let summary = tick(
        &h,
        45_000,
        snapshot(vec![(
            model.clone(),
            samples("v", &[(0.5, 1.0), (0.5, 1.0)]),
        )]),
    )
    .await;
    assert_eq!(summary.restarted, 0);
    assert_eq!(summary.safety_net_models, 0);
}

#[actix::test]
async fn removed_variants_lose_their_series_and_instances_label_everything() {
    let h = start(MemoryLog::in_memory(Retention::default()), Some("canary"));
    add(&h, spec("ns", "a", "llama", 10.0), 1).await;
    add(&h, spec("ns", "b", "llama", 20.0), 1).await;
    let model = ModelKey::new("ns", "llama");
    tick(
        &h,
        15_000,
        snapshot(vec![
            (model.clone(), samples("a", &[(0.3, 0.0)])),
            (model.clone(), samples("b", &[(0.3, 0.0)])),
        ]),
    )
    .await;
    let text = h.publisher.send(Gather).await.expect("gather");
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!series.is_empty());
    for line in &series {
        assert!(line.contains(r#"controller_instance="canary""#), "{line}");
    }
    h.registry
        .send(RemoveVariant(VariantKey::new("ns", "b")))
        .await
        .expect("remove");
    let text = h.publisher.send(Gather).await.expect("gather");
    assert!(!text.contains(r#"variant_name="b""#), "{text}");
    assert!(text.contains(r#"variant_name="a""#), "{text}");
}

#[actix::test]
async fn with_an_empty_log_the_safety_net_falls_back_to_the_va_status() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    let mut with_status = spec("ns", "a", "llama", 10.0);
    with_status.status_desired = Some(5);
    add(&h, with_status, 2).await;
    tick(&h, 15_000, Metrics::Failed("Prometheus unreachable".into())).await;
    assert_eq!(desired(&h, "ns", "a").await, Some(5));
    let statuses = h.statuses.lock().expect("lock").clone();
    assert!(
        statuses.iter().any(|s| matches!(
            s,
            StatusUpdate::Decided {
                desired: 5,
                optimization: OptimizationState::SafetyNet {
                    source: wva_actors::policy::FallbackSource::PreviousDesired,
                    ..
                },
                ..
            }
        )),
        "{statuses:?}"
    );
}

#[actix::test]
async fn an_invalid_override_is_reported_on_the_models_variants() {
    use wva_actors::policy::{InvalidOverride, ScalingConfig};
    let settings = PolicySettings {
        scaling: ScalingConfig {
            invalid: vec![InvalidOverride {
                entry: "llama".into(),
                model_id: "llama".into(),
                namespace: Some("ns".into()),
                message: "capacity-scaling-config entry \"llama\": kvCacheThreshold: expected a number between 0 and 1, got 1.5".into(),
            }],
            ..ScalingConfig::default()
        },
        ..PolicySettings::default()
    };
    let h = start_with(MemoryLog::in_memory(Retention::default()), None, settings);
    add(&h, spec("ns", "a", "llama", 10.0), 1).await;
    add(&h, spec("ns", "g", "granite", 10.0), 1).await;
    tick(
        &h,
        15_000,
        snapshot(vec![
            (ModelKey::new("ns", "llama"), samples("a", &[(0.3, 0.0)])),
            (ModelKey::new("ns", "granite"), samples("g", &[(0.3, 0.0)])),
        ]),
    )
    .await;
    let statuses = h.statuses.lock().expect("lock").clone();
    let optimization = |name: &str| {
        statuses.iter().find_map(|s| match s {
            StatusUpdate::Decided {
                variant,
                optimization,
                ..
            } if variant.name == name => Some(optimization.clone()),
            _ => None,
        })
    };
    assert!(
        matches!(optimization("a"), Some(OptimizationState::InvalidConfiguration(m)) if m.contains("kvCacheThreshold")),
        "{statuses:?}"
    );
    assert_eq!(
        optimization("g"),
        Some(OptimizationState::Succeeded),
        "other models are unaffected"
    );
    // The model is still decided, on the default thresholds.
    assert_eq!(desired(&h, "ns", "a").await, Some(1));
}

/// A learner state as the log keeps it, with `accepted` windows on both lines.
fn stored_learner(accepted: u32) -> wva_storage::RecordedLearner {
    let fit = wva_storage::RecordedLineFit {
        intercept: 12.0,
        slope: 0.3,
        covariance: [1.0, 0.0, 0.0, 1.0],
        residual_variance: 0.5,
        accepted,
        rejected: 0,
        rejected_in_a_row: 0,
    };
    wva_storage::RecordedLearner {
        decode: Some(fit),
        prefill: Some(fit),
    }
}

/// The learner states in the model-based records of the log, oldest first.
async fn logged_learners(h: &Harness, variant: &str) -> Vec<wva_storage::RecordedLearner> {
    let history = history(h).await;
    history
        .records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::ModelBased(m) => m.variants.iter().find(|v| v.name == variant),
            _ => None,
        })
        .map(|v| v.learner)
        .collect()
}

#[actix::test]
async fn learned_parameters_come_back_after_a_restart_and_after_a_fault() {
    // A previous controller learned 9 windows for variant v.
    let mut log = MemoryLog::in_memory(Retention::default());
    let model = ModelKey::new("ns", "llama");
    log.append(&Record::ModelBased(wva_storage::ModelBasedRecord {
        model: model.clone(),
        at: Timestamp(1),
        mode: "hybrid".into(),
        workload: None,
        ttft_target_ms: 1000.0,
        itl_target_ms: 50.0,
        proposal_reason: String::new(),
        variants: vec![wva_storage::RecordedModelVariant {
            name: "v".into(),
            cost: 10.0,
            max_batch: 256,
            learner: stored_learner(9),
            rate_per_replica: None,
            capacity_target: 2,
            model_target: None,
            target: 2,
            winner: "capacity".into(),
            rule: "no-model-proposal".into(),
        }],
        scale_to_zero: false,
        request_count: None,
        request_count_error: None,
        scaled_to_zero: None,
    }))
    .expect("append");
    let settings = PolicySettings {
        mode: wva_actors::policy::OperatingMode::Hybrid,
        ..Default::default()
    };
    let h = start_with(log, None, settings);
    add(&h, spec("ns", "v", "llama", 10.0), 2).await;

    // Samples without serving statistics teach nothing, so the logged learner is exactly what
    // the actor holds. The restore arrives while the actor runs: tick until it shows (bounded).
    let quiet = || {
        snapshot(vec![(
            model.clone(),
            samples("v", &[(0.5, 1.0), (0.5, 1.0)]),
        )])
    };
    let mut at = 15_000;
    let restored = loop {
        tick(&h, at, quiet()).await;
        let last = *logged_learners(&h, "v")
            .await
            .last()
            .expect("a model-based record");
        if last == stored_learner(9) || at >= 15_000 * 40 {
            break last;
        }
        at += 15_000;
        actix::clock::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(restored, stored_learner(9), "restored on start");

    // The actor stops on a bad sample and is restarted: it gets the learner back too.
    let mut bad = samples("v", &[(0.5, 1.0), (0.5, 1.0)]);
    bad[0].queue_length = Some(-1.0);
    at += 15_000;
    assert_eq!(
        tick(&h, at, snapshot(vec![(model.clone(), bad)]))
            .await
            .restarted,
        1
    );
    let restarted = loop {
        at += 15_000;
        tick(&h, at, quiet()).await;
        let last = *logged_learners(&h, "v").await.last().expect("record");
        if last == stored_learner(9) || at >= 15_000 * 80 {
            break last;
        }
        actix::clock::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(restarted, stored_learner(9), "restored after the fault");
}

fn with_count(metrics: Metrics, model: &ModelKey, count: RequestCount) -> Metrics {
    let Metrics::Read(snapshot) = metrics else {
        return metrics;
    };
    let mut snapshot = (*snapshot).clone();
    snapshot.request_counts.insert(model.clone(), count);
    Metrics::Read(Arc::new(snapshot))
}

#[actix::test]
async fn scale_to_zero_publishes_zero_only_when_on_and_the_count_is_zero() {
    let model = ModelKey::new("ns", "llama");
    let idle = || {
        snapshot(vec![(
            model.clone(),
            samples("v", &[(0.1, 0.0), (0.1, 0.0)]),
        )])
    };
    let on = PolicySettings {
        scale_to_zero: true,
        ..Default::default()
    };

    // On, and the model served nothing in its window: every variant goes to 0.
    let h = start_with(MemoryLog::in_memory(Retention::default()), None, on.clone());
    add(&h, spec("ns", "v", "llama", 10.0), 2).await;
    tick(
        &h,
        15_000,
        with_count(idle(), &model, RequestCount::Read(0.0)),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(0));
    let text = h.publisher.send(Gather).await.expect("gather");
    assert!(
        text.contains(r#"direction="down",namespace="ns",reason="scale-to-zero""#),
        "{text}"
    );
    let recorded = history(&h).await;
    let side = recorded.records.iter().find_map(|(_, r)| match r {
        Record::ModelBased(m) => Some(m),
        _ => None,
    });
    let side = side.expect("scale to zero records its inputs");
    assert_eq!(side.request_count, Some(0.0));
    assert!(side.scaled_to_zero.is_some());

    // On, but no request series while two replicas are ready: blind, not idle. The count
    // holds (the current one: nothing was decided before), and the log says the series was
    // absent so that replay decides the same.
    let h = start_with(MemoryLog::in_memory(Retention::default()), None, on.clone());
    add(&h, spec("ns", "v", "llama", 10.0), 2).await;
    tick(
        &h,
        15_000,
        with_count(idle(), &model, RequestCount::NoSeries),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(2));
    let recorded = history(&h).await;
    assert!(
        recorded
            .records
            .iter()
            .any(|(_, r)| matches!(r, Record::RequestSeriesMissing(m) if m.model == model)),
        "{:?}",
        recorded.records
    );
    assert_eq!(h.telemetry.scale_to_zero_blind.get(), 1);

    // On, but the count could not be read: the capacity decision stands (here: one fewer).
    let h = start_with(MemoryLog::in_memory(Retention::default()), None, on);
    add(&h, spec("ns", "v", "llama", 10.0), 2).await;
    let failed = RequestCount::Failed("query timed out".into());
    tick(&h, 15_000, with_count(idle(), &model, failed)).await;
    assert_eq!(desired(&h, "ns", "v").await, Some(1));

    // Off: a zero count changes nothing, and the model keeps at least one replica.
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    add(&h, spec("ns", "v", "llama", 10.0), 2).await;
    tick(
        &h,
        15_000,
        with_count(idle(), &model, RequestCount::Read(0.0)),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(1));
}

#[actix::test]
async fn a_variant_added_or_moved_during_a_cycle_loses_no_decision() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    let model = ModelKey::new("ns", "llama");
    add(&h, spec("ns", "a", "llama", 20.0), 2).await;
    // "b" has its Deployment already; its VA arrives while a cycle is in flight.
    h.registry
        .send(DeploymentEvent {
            namespace: "ns".into(),
            name: "b-deploy".into(),
            state: Some(DeploymentState {
                replicas: 1,
                ready: 1,
            }),
            at: Timestamp(0),
        })
        .await
        .expect("deployment");
    let hot = || samples("a", &[(0.76, 2.0), (0.75, 2.0)]);
    let cycle = h.registry.send(Tick {
        now: Timestamp(15_000),
        metrics: snapshot(vec![(model.clone(), hot())]),
    });
    let added = h.registry.send(UpsertVariant {
        spec: spec("ns", "b", "llama", 5.0),
        at: Timestamp(15_000),
    });
    let (summary, added) = futures_util::future::join(cycle, added).await;
    added.expect("upsert");
    assert_eq!(
        summary.expect("tick").variants,
        1,
        "b arrived after the cycle began"
    );
    assert_eq!(desired(&h, "ns", "a").await, Some(3));

    // The next cycle decides both.
    let both = |a: Vec<PodSample>| {
        let mut all = a;
        all.extend(samples("b", &[(0.3, 0.0)]));
        snapshot(vec![(model.clone(), all)])
    };
    let summary = tick(&h, 30_000, both(hot())).await;
    assert_eq!(summary.variants, 2);
    assert_eq!(desired(&h, "ns", "b").await, Some(1));

    // A cycle whose variant actor faults while the same variant is moved to another
    // Deployment: the restart of the old actor does not overwrite the moved one.
    let mut bad = hot();
    bad[0].kv_cache_usage = Some(f64::NAN);
    let cycle = h.registry.send(Tick {
        now: Timestamp(45_000),
        metrics: snapshot(vec![(model.clone(), bad)]),
    });
    let mut moved = spec("ns", "a", "llama", 20.0);
    moved.deployment = "a-new".into();
    h.registry
        .send(DeploymentEvent {
            namespace: "ns".into(),
            name: "a-new".into(),
            state: Some(DeploymentState {
                replicas: 2,
                ready: 2,
            }),
            at: Timestamp(45_000),
        })
        .await
        .expect("deployment");
    let moved_at = h.registry.send(UpsertVariant {
        spec: moved,
        at: Timestamp(45_000),
    });
    let (faulted, moved_at) = futures_util::future::join(cycle, moved_at).await;
    moved_at.expect("upsert");
    assert_eq!(faulted.expect("tick").restarted, 1);
    let on_new = samples("a", &[(0.5, 1.0), (0.5, 1.0)])
        .into_iter()
        .map(|mut p| {
            p.deployment = "a-new".into();
            p
        })
        .collect();
    let summary = tick(&h, 60_000, both(on_new)).await;
    assert_eq!(
        summary.restarted, 0,
        "the moved variant's actor is the new one"
    );
    assert_eq!(summary.safety_net_models, 0);
    assert_eq!(summary.variants, 2);
    let cycles: Vec<_> = history(&h)
        .await
        .records
        .into_iter()
        .filter_map(|(_, r)| match r {
            Record::Cycle(c) => Some(c.variants.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        cycles,
        [1, 2, 2, 2],
        "every cycle recorded, with every variant it decided"
    );
}

/// The reason recorded for `variant` in the last cycle.
async fn last_reason(h: &Harness, variant: &str) -> String {
    let history = history(h).await;
    history
        .records
        .iter()
        .rev()
        .find_map(|(_, r)| match r {
            Record::Cycle(c) => c.targets.iter().find(|t| t.name == variant),
            _ => None,
        })
        .map(|t| t.reason.clone())
        .expect("a cycle")
}

#[actix::test]
async fn a_transition_that_cannot_complete_times_out_and_says_so() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    add(&h, spec("ns", "v", "m", 10.0), 2).await;
    let model = ModelKey::new("ns", "m");
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    let cold = [(0.10, 0.0), (0.12, 0.0)];
    tick(
        &h,
        15_000,
        snapshot(vec![(model.clone(), samples("v", &hot))]),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(3));
    // The Deployment never reaches 3 (a quota): while the wait lasts, the model holds 3.
    tick(
        &h,
        30_000,
        snapshot(vec![(model.clone(), samples("v", &cold))]),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(3));
    assert!(last_reason(&h, "v").await.contains("in transition"));
    // Past the timeout the policy decides from what is there, and the reason says why.
    let later = 30_000 + wva_actors::supervisor::TRANSITION_TIMEOUT_MS + 15_000;
    tick(
        &h,
        later,
        snapshot(vec![(model.clone(), samples("v", &cold))]),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(1));
    let reason = last_reason(&h, "v").await;
    assert!(reason.contains("no longer waited for"), "{reason}");
    assert!(reason.contains("desired 3"), "{reason}");
}

#[actix::test]
async fn a_desired_count_outside_the_scalers_bounds_is_not_waited_for() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    let mut bounded = spec("ns", "v", "m", 10.0);
    bounded.bounds = wva_actors::messages::ReplicaBounds {
        min: Some(2),
        max: Some(4),
    };
    add(&h, bounded, 2).await;
    let model = ModelKey::new("ns", "m");
    let cold = [(0.10, 0.0), (0.12, 0.0)];
    // Cold: saturation-v1 asks for 1, which the HPA's minimum of 2 never lets happen.
    tick(
        &h,
        15_000,
        snapshot(vec![(model.clone(), samples("v", &cold))]),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(1));
    // The next cycle is not frozen waiting for 1: the desired count is read within the bounds
    // (2, which the Deployment has), and the signals (neither up nor down) keep 2.
    let busy = [(0.50, 1.0), (0.50, 1.0)];
    tick(
        &h,
        30_000,
        snapshot(vec![(model.clone(), samples("v", &busy))]),
    )
    .await;
    assert_eq!(desired(&h, "ns", "v").await, Some(2));
    assert!(!last_reason(&h, "v").await.contains("transition"));
}

/// A data volume that refuses every write (full, or read-only), or stalls on each: the log
/// answers with an error, or only after a long time.
struct BadDisk {
    inner: MemoryLog,
    stall: Option<std::time::Duration>,
    /// Stalled writes that have come back.
    stalled_done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Holds the next write, once armed, until the test lets it go.
    gate: Option<WriteGate>,
}

/// A write held on the log's thread: it says when it is held and waits to be released, so a
/// test can act while a cycle is mid-write without sleeping.
struct WriteGate {
    armed: Arc<std::sync::atomic::AtomicBool>,
    held: tokio::sync::mpsc::UnboundedSender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl BadDisk {
    fn refuse(&self) -> Result<(), wva_storage::LogError> {
        if let Some(gate) = &self.gate {
            if gate.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let _ = gate.held.send(());
                let _ = gate.release.recv();
            }
            return Ok(());
        }
        if let Some(stall) = self.stall {
            std::thread::sleep(stall);
            self.stalled_done
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Ok(());
        }
        Err(wva_storage::LogError::Open {
            path: "/var/lib/wva".into(),
            message: "No space left on device (os error 28)".into(),
        })
    }
}

impl DecisionLog for BadDisk {
    fn append(&mut self, record: &Record) -> Result<u64, wva_storage::LogError> {
        self.refuse()?;
        self.inner.append(record)
    }
    fn append_batch(&mut self, records: &[Record]) -> Result<u64, wva_storage::LogError> {
        self.refuse()?;
        self.inner.append_batch(records)
    }
    fn last_good(
        &self,
    ) -> Result<std::collections::BTreeMap<VariantKey, LastGood>, wva_storage::LogError> {
        self.inner.last_good()
    }
    fn last_good_of(&self, v: &VariantKey) -> Result<Option<LastGood>, wva_storage::LogError> {
        self.inner.last_good_of(v)
    }
    fn forget_variant(
        &mut self,
        v: &VariantKey,
        up_to: Option<Timestamp>,
    ) -> Result<(), wva_storage::LogError> {
        self.inner.forget_variant(v, up_to)
    }
    fn learner_of(
        &self,
        v: &VariantKey,
    ) -> Result<Option<wva_storage::RecordedLearner>, wva_storage::LogError> {
        self.inner.learner_of(v)
    }
    fn history(&self, f: &HistoryFilter) -> Result<wva_storage::History, wva_storage::LogError> {
        self.inner.history(f)
    }
    fn enforce_retention(
        &mut self,
        now: Timestamp,
    ) -> Result<wva_storage::RetentionReport, wva_storage::LogError> {
        self.inner.enforce_retention(now)
    }
    fn flush(&mut self) -> Result<(), wva_storage::LogError> {
        self.refuse()?;
        self.inner.flush()
    }
    fn stats(&self) -> wva_storage::LogStats {
        self.inner.stats()
    }
}

fn log_writes(h: &Harness, result: &str) -> u64 {
    h.telemetry.log_writes.with_label_values(&[result]).get()
}

/// A full or read-only data volume: every cycle is still decided and published, and every
/// failed write is counted.
#[actix::test]
async fn a_disk_that_refuses_writes_never_stops_a_decision() {
    let bad = BadDisk {
        inner: MemoryLog::in_memory(Retention::default()),
        stall: None,
        stalled_done: Default::default(),
        gate: None,
    };
    let h = start_on(Box::new(bad), None, PolicySettings::default());
    add(&h, spec("ns", "cheap", "llama", 10.0), 2).await;
    let model = ModelKey::new("ns", "llama");
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    tick(&h, 15_000, snapshot(vec![(model, samples("cheap", &hot))])).await;
    assert_eq!(desired(&h, "ns", "cheap").await, Some(3));
    assert_eq!(log_writes(&h, "error"), 2, "the append and the flush");
}

/// A data volume that stalls: the cycle publishes once the write times out, before the disk
/// comes back (so by the timeout, not by the stall), and the timeouts are counted.
#[actix::test]
async fn a_stalled_disk_delays_a_decision_by_the_write_timeout_not_the_stall() {
    use wva_actors::effects::LOG_WRITE_TIMEOUT;
    let stalled_done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bad = BadDisk {
        inner: MemoryLog::in_memory(Retention::default()),
        stall: Some(LOG_WRITE_TIMEOUT + std::time::Duration::from_secs(5)),
        stalled_done: stalled_done.clone(),
        gate: None,
    };
    let h = start_on(Box::new(bad), None, PolicySettings::default());
    add(&h, spec("ns", "cheap", "llama", 10.0), 2).await;
    let model = ModelKey::new("ns", "llama");
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    let started = std::time::Instant::now();
    tick(&h, 15_000, snapshot(vec![(model, samples("cheap", &hot))])).await;
    let took = started.elapsed();
    eprintln!("a cycle on a stalled disk took {took:?}");
    assert_eq!(desired(&h, "ns", "cheap").await, Some(3));
    assert!(log_writes(&h, "timeout") >= 1);
    // Decided and published while the disk still held the write: the cycle did not wait for it.
    assert_eq!(
        stalled_done.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the cycle waited for the stalled disk"
    );
}

/// Issue 17: a cycle of thousands of models, decided on two threads, reaches the log whole and
/// in one sequence (its first records sent ahead while the rest decide), every write counted,
/// and every variant is published.
#[actix::test]
async fn a_large_cycle_on_several_threads_reaches_the_log_whole_before_it_is_published() {
    let h = start_threads(
        Box::new(MemoryLog::in_memory(Retention::default())),
        None,
        PolicySettings::default(),
        2,
    );
    let models = 2_500;
    let mut entries = Vec::new();
    for m in 0..models {
        let name = format!("v{m}");
        add(&h, spec("ns", &name, &format!("model-{m}"), 10.0), 2).await;
        entries.push((
            ModelKey::new("ns", format!("model-{m}")),
            samples(&name, &[(0.5, 1.0), (0.5, 1.0)]),
        ));
    }
    let summary = tick(&h, 15_000, snapshot(entries)).await;
    assert_eq!(summary.models, models);
    let logged = history(&h).await;
    let seqs: Vec<u64> = logged.records.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (0..models as u64).collect::<Vec<_>>(),
        "one record per model, in one sequence"
    );
    let mut logged_models: Vec<String> = logged
        .records
        .iter()
        .map(|(_, r)| r.model().model_id.clone())
        .collect();
    logged_models.sort();
    logged_models.dedup();
    assert_eq!(logged_models.len(), models);
    // Sent ahead once (1,024 of 2,500), then the cycle's own append and its flush.
    assert_eq!(log_writes(&h, "ok"), 3);
    for m in [0, models / 2, models - 1] {
        assert_eq!(desired(&h, "ns", &format!("v{m}")).await, Some(2), "v{m}");
    }
}

/// CONTRACT section 19: a model whose supervisor panics loses its own cycle (its count holds at
/// last good, the fault is counted, a Warning goes to its VA), a model on the same thread loses
/// nothing, and a fresh supervisor takes over from the last good count in the decision log.
#[actix::test]
async fn a_panicking_model_loses_its_own_cycle_and_no_other_model_anything() {
    let threads = 2;
    let h = start_threads(
        Box::new(MemoryLog::in_memory(Retention::default())),
        None,
        PolicySettings::default(),
        threads,
    );
    let broken = ModelKey::new("ns", "broken");
    // A model always runs on the same thread: find one that shares the broken model's.
    let thread_of = |m: &ModelKey| wva_storage::keys::model_hash(m) % threads as u64;
    let healthy = (0..100)
        .map(|i| ModelKey::new("ns", format!("healthy-{i}")))
        .find(|m| thread_of(m) == thread_of(&broken))
        .expect("a model on the same thread");
    add(&h, spec("ns", "b", "broken", 10.0), 2).await;
    add(&h, spec("ns", "h", &healthy.model_id, 10.0), 2).await;
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    let both = || {
        snapshot(vec![
            (broken.clone(), samples("b", &hot)),
            (healthy.clone(), samples("h", &hot)),
        ])
    };
    assert_eq!(tick(&h, 15_000, both()).await.models, 2);
    assert_eq!(desired(&h, "ns", "b").await, Some(3));

    h.registry
        .send(CrashForTest(Some(broken.clone())))
        .await
        .expect("registry");
    let summary = tick(&h, 30_000, both()).await;
    assert_eq!(summary.models, 1, "only the healthy model was decided");
    let faults = &h.telemetry.model_faults;
    assert_eq!(faults.with_label_values(&["panicked"]).get(), 1);
    assert_eq!(
        desired(&h, "ns", "b").await,
        Some(3),
        "the broken model's count holds at its last good"
    );
    let logged: Vec<(String, i64)> = history(&h)
        .await
        .records
        .iter()
        .map(|(_, r)| (r.model().model_id.clone(), r.at().0))
        .collect();
    assert!(logged.contains(&(healthy.model_id.clone(), 30_000)));
    assert!(!logged.contains(&("broken".to_string(), 30_000)));
    let warned = h.statuses.lock().expect("lock").iter().any(|s| {
        matches!(s, StatusUpdate::Faulted { variant, message, .. }
            if variant.name == "b" && message.contains("last good"))
    });
    assert!(warned, "the broken model's VA is told");

    // The fresh supervisor, on a failed read, holds the last good count from the log (3), not
    // the Deployment's 2 that a supervisor knowing nothing would fall back to.
    let summary = tick(&h, 45_000, Metrics::Failed("Prometheus unreachable".into())).await;
    assert_eq!(summary.models, 2, "both models are decided again");
    assert_eq!(desired(&h, "ns", "b").await, Some(3));
    assert_eq!(faults.with_label_values(&["panicked"]).get(), 1);
}

/// CONTRACT section 19, a model that never answers: its cycle is lost at the deadline (its
/// count holds, the fault is counted as timed out), the other model is decided, and a fresh
/// supervisor decides the model from the next cycle, from its last good count.
#[actix::test]
async fn a_hung_model_loses_its_cycle_at_the_deadline_and_is_replaced() {
    let h = start(MemoryLog::in_memory(Retention::default()), None);
    let (stuck, other) = (ModelKey::new("ns", "stuck"), ModelKey::new("ns", "other"));
    add(&h, spec("ns", "s", "stuck", 10.0), 2).await;
    add(&h, spec("ns", "o", "other", 10.0), 2).await;
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    let both = || {
        snapshot(vec![
            (stuck.clone(), samples("s", &hot)),
            (other.clone(), samples("o", &hot)),
        ])
    };
    assert_eq!(tick(&h, 15_000, both()).await.models, 2);
    assert_eq!(desired(&h, "ns", "s").await, Some(3));
    h.registry
        .send(HangForTest {
            model: stuck.clone(),
            cycle_timeout: std::time::Duration::from_millis(200),
        })
        .await
        .expect("registry");
    let summary = tick(&h, 30_000, both()).await;
    assert_eq!(summary.models, 1, "only the model that answered");
    let faults = &h.telemetry.model_faults;
    assert_eq!(faults.with_label_values(&["timed_out"]).get(), 1);
    assert_eq!(desired(&h, "ns", "s").await, Some(3), "its count holds");
    let summary = tick(&h, 45_000, Metrics::Failed("Prometheus unreachable".into())).await;
    assert_eq!(summary.models, 2, "a fresh supervisor decides it again");
    assert_eq!(
        desired(&h, "ns", "s").await,
        Some(3),
        "from its last good count"
    );
    assert_eq!(faults.with_label_values(&["timed_out"]).get(), 1);
}

/// A shared part's end (here the registry's panic) is heard on the lifeline, which ends the
/// controller process (CONTRACT section 19).
#[actix::test]
async fn the_registry_gone_is_heard_on_the_lifeline() {
    let telemetry = wva_actors::telemetry::Telemetry::unregistered().expect("telemetry");
    let system = wva_actors::system::start(SystemConfig {
        log: Box::new(MemoryLog::in_memory(Retention::default())),
        publisher: PublisherConfig::default(),
        status: None,
        settings: PolicySettings::default(),
        telemetry,
        model_threads: 1,
        authority: wva_actors::authority::Authority::unconditional(),
    })
    .expect("actor system");
    assert_eq!(system.lifeline.lost(), None);
    let _ = system.registry.send(CrashForTest(None)).await;
    assert_eq!(system.lifeline.first_lost().await, "registry");
    assert!(!system.registry.connected());
}

/// The test's side of a [`WriteGate`].
struct HeldWrites {
    armed: Arc<std::sync::atomic::AtomicBool>,
    held: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

impl HeldWrites {
    /// A tick whose log write is held while `meanwhile` runs: the Lease, a shard or a variant
    /// changes while the cycle is between its decision and its effects.
    async fn tick(
        &mut self,
        h: &Harness,
        metrics: Metrics,
        meanwhile: impl Future<Output = ()>,
    ) -> CycleSummary {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let registry = h.registry.clone();
        let cycle = actix::spawn(async move {
            registry
                .send(Tick {
                    now: Timestamp(15_000),
                    metrics,
                })
                .await
        });
        self.held.recv().await.expect("the cycle's write is held");
        meanwhile.await;
        self.release.send(()).expect("released");
        cycle.await.expect("joined").expect("registry")
    }
}

/// The actors on a gated log, leading and holding `shards`, with the senders that change that.
fn start_gated(
    shards: wva_actors::shards::ShardFilter,
) -> (
    Harness,
    HeldWrites,
    tokio::sync::watch::Sender<bool>,
    tokio::sync::watch::Sender<wva_actors::shards::ShardFilter>,
) {
    let (disk, gate) = gated_log();
    let (leader, leading) = tokio::sync::watch::channel(true);
    let (shards, held) = tokio::sync::watch::channel(shards);
    let authority = wva_actors::authority::Authority::new(leading, held);
    let h = start_under(
        Box::new(disk),
        None,
        PolicySettings::default(),
        1,
        authority,
    );
    (h, gate, leader, shards)
}

/// A log whose next write is held until released, and the handles to hold and release it.
fn gated_log() -> (BadDisk, HeldWrites) {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (held_tx, held) = tokio::sync::mpsc::unbounded_channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let disk = BadDisk {
        inner: MemoryLog::in_memory(Retention::default()),
        stall: None,
        stalled_done: Default::default(),
        gate: Some(WriteGate {
            armed: Arc::clone(&armed),
            held: held_tx,
            release: release_rx,
        }),
    };
    (
        disk,
        HeldWrites {
            armed,
            held,
            release,
        },
    )
}

/// CONTRACT section 19: the Lease lost while a cycle is writing its log: the decisions stay in
/// the log, nothing of that cycle is published or sent to the status writer, and it is counted.
/// No sleeps: the log's write is held until the Lease is gone.
#[actix::test]
async fn a_lease_lost_mid_cycle_withholds_that_cycles_publish_and_statuses() {
    use wva_actors::shards::ShardFilter;
    let (h, mut gate, leader, _shards) = start_gated(ShardFilter::all());
    add(&h, spec("ns", "cheap", "llama", 10.0), 2).await;
    let model = ModelKey::new("ns", "llama");
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    h.statuses.lock().expect("lock").clear();
    let metrics = snapshot(vec![(model, samples("cheap", &hot))]);
    let summary = gate
        .tick(&h, metrics, async {
            leader.send_replace(false);
        })
        .await;
    assert_eq!(summary.models, 1, "the model was decided");
    assert_eq!(desired(&h, "ns", "cheap").await, None, "nothing published");
    assert!(
        h.statuses.lock().expect("lock").is_empty(),
        "no status sent"
    );
    assert_eq!(h.telemetry.withheld.get(), 1);
    let logged = history(&h).await;
    assert!(
        logged.records.iter().any(|(_, r)| r.at().0 == 15_000),
        "the decision is in the log"
    );
}

/// The same for one shard: the model whose shard is lost mid-cycle is withheld, the model of the
/// shard still held is published.
#[actix::test]
async fn a_shard_lost_mid_cycle_withholds_only_its_models() {
    use std::collections::BTreeSet;
    use wva_actors::shards::{ShardFilter, shard_of};
    let (h, mut gate, _leader, shards) = start_gated(ShardFilter {
        shards: 2,
        held: BTreeSet::from([0, 1]),
    });
    let lost = ModelKey::new("ns", "lost");
    let kept = (0..100)
        .map(|i| ModelKey::new("ns", format!("kept-{i}")))
        .find(|m| shard_of(m, 2) != shard_of(&lost, 2))
        .expect("a model on the other shard");
    add(&h, spec("ns", "l", "lost", 10.0), 2).await;
    add(&h, spec("ns", "k", &kept.model_id, 10.0), 2).await;
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    let metrics = snapshot(vec![
        (lost.clone(), samples("l", &hot)),
        (kept.clone(), samples("k", &hot)),
    ]);
    gate.tick(&h, metrics, async {
        shards.send_replace(ShardFilter {
            shards: 2,
            held: BTreeSet::from([shard_of(&kept, 2)]),
        });
    })
    .await;
    assert_eq!(desired(&h, "ns", "l").await, None, "lost shard: withheld");
    assert_eq!(
        desired(&h, "ns", "k").await,
        Some(3),
        "kept shard: published"
    );
    assert_eq!(h.telemetry.withheld.get(), 1);
    let statuses = h.statuses.lock().expect("lock");
    assert!(
        statuses
            .iter()
            .all(|s| !matches!(s, StatusUpdate::Decided { variant, .. } if variant.name == "l"))
    );
    assert!(
        statuses
            .iter()
            .any(|s| matches!(s, StatusUpdate::Decided { variant, .. } if variant.name == "k"))
    );
}

/// CONTRACT section 6 (a deleted Deployment's series are removed) and section 8 (a variant that
/// goes takes its series with it), when it goes while a cycle that decided for it is still
/// writing its log: the removal lands first, and the cycle's publish, landing after, must not
/// bring the series back, for nothing would remove them again. Created again, the variant is
/// published again. No sleeps but a bounded wait for the removal to land.
#[actix::test]
async fn a_variant_gone_mid_cycle_is_not_brought_back_by_that_cycle() {
    use wva_actors::shards::ShardFilter;
    let (h, mut gate, _leader, _shards) = start_gated(ShardFilter::all());
    let model = ModelKey::new("ns", "llama");
    let hot = [(0.76, 2.0), (0.75, 2.0)];
    let metrics = || {
        let mut pods = samples("gone", &hot);
        pods.extend(samples("kept", &hot));
        snapshot(vec![(model.clone(), pods)])
    };
    let deployment = |state| DeploymentEvent {
        namespace: "ns".into(),
        name: "gone-deploy".into(),
        state,
        at: Timestamp(15_000),
    };
    type Removal = Box<dyn Fn(&Harness)>;
    let removals: [(&str, Removal); 2] = [
        (
            "VA deleted",
            Box::new(|h: &Harness| {
                h.registry
                    .do_send(RemoveVariant(VariantKey::new("ns", "gone")))
            }),
        ),
        (
            "Deployment deleted",
            Box::new(move |h: &Harness| h.registry.do_send(deployment(None))),
        ),
    ];
    for (how, remove) in removals {
        add(&h, spec("ns", "gone", "llama", 10.0), 2).await;
        add(&h, spec("ns", "kept", "llama", 10.0), 2).await;
        tick(&h, 10_000, metrics()).await;
        assert!(
            desired(&h, "ns", "gone").await.is_some(),
            "{how}: published"
        );
        gate.tick(&h, metrics(), async {
            remove(&h);
            for _ in 0..500 {
                if desired(&h, "ns", "gone").await.is_none() {
                    return;
                }
                actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("{how}: the removal never reached the publisher");
        })
        .await;
        assert_eq!(
            desired(&h, "ns", "gone").await,
            None,
            "{how}: the cycle in flight brought the series back"
        );
        assert!(desired(&h, "ns", "kept").await.is_some(), "{how}: kept");
        assert_eq!(
            last_good_of(&h, "ns", "gone").await,
            None,
            "{how}: the cycle in flight brought its last good back"
        );
        // Created again: a new life, published from the next decision on.
        add(&h, spec("ns", "gone", "llama", 10.0), 2).await;
        tick(&h, 20_000, metrics()).await;
        assert!(
            desired(&h, "ns", "gone").await.is_some(),
            "{how}: created again, not published"
        );
    }
}

/// Two models on one accelerator type, one at priority 1 and one at priority 5, both saturated
/// at 3 replicas (each wants a fourth).
async fn scarce_models(h: &Harness) -> Metrics {
    add(h, spec("ns", "chat", "chat", 10.0), 3).await;
    add(h, spec("ns", "batch", "batch", 10.0), 3).await;
    let hot = [(0.9, 4.0), (0.9, 4.0), (0.9, 4.0)];
    snapshot(vec![
        (ModelKey::new("ns", "chat"), samples("chat", &hot)),
        (ModelKey::new("ns", "batch"), samples("batch", &hot)),
    ])
}

/// The last good desired count the log holds for a variant.
async fn last_good_of(h: &Harness, ns: &str, name: &str) -> Option<LastGood> {
    h.log
        .send(wva_actors::log_actor::LastGoodOf(VariantKey::new(ns, name)))
        .await
        .expect("log")
        .expect("last good")
}

fn prioritised() -> PolicySettings {
    PolicySettings {
        priorities: [("chat".to_string(), 1), ("batch".to_string(), 5)].into(),
        ..Default::default()
    }
}

fn a100_pool(gpus: u32) -> wva_actors::policy::scarcity::Pool {
    wva_actors::policy::scarcity::Pool {
        gpus: [("A100".to_string(), gpus)].into(),
        ..Default::default()
    }
}

/// A controller with service-class priorities running [`scarce_models`], told an A100 pool of
/// `gpus` when given (else unlimited); with the saturated signals to tick on.
async fn scarce_models_on_a_pool(gpus: Option<u32>) -> (Harness, Metrics) {
    let h = start_with(
        MemoryLog::in_memory(Retention::default()),
        None,
        prioritised(),
    );
    let metrics = scarce_models(&h).await;
    if let Some(gpus) = gpus {
        h.registry
            .send(SetPool(Some(a100_pool(gpus))))
            .await
            .expect("pool");
    }
    (h, metrics)
}

#[actix::test]
async fn a_scarce_pool_serves_the_higher_priority_and_tells_the_one_cut_short() {
    let (h, metrics) = scarce_models_on_a_pool(Some(7)).await;
    tick(&h, 15_000, metrics.clone()).await;
    // 8 wanted, 7 GPUs: the priority-1 model gets its fourth, the other holds 3.
    assert_eq!(desired(&h, "ns", "chat").await, Some(4));
    assert_eq!(desired(&h, "ns", "batch").await, Some(3));
    // The scaling actions counted are the published ones: chat went up, batch did not move.
    let text = h.publisher.send(Gather).await.expect("gather");
    assert!(
        text.lines()
            .any(|l| l.starts_with("inferno_replica_scaling_total{")
                && l.contains("direction=\"up\"")
                && l.contains("variant_name=\"chat\"")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("inferno_replica_scaling_total{")
                && l.contains("variant_name=\"batch\"")),
        "{text}"
    );

    let statuses = h.statuses.lock().expect("lock").clone();
    let pool_of = |name: &str| {
        statuses.iter().rev().find_map(|s| match s {
            StatusUpdate::Decided {
                variant,
                pool,
                desired,
                reason,
                ..
            } if variant.name == name => Some((pool.clone(), *desired, reason.clone())),
            _ => None,
        })
    };
    let (pool, desired_batch, reason) = pool_of("batch").expect("batch's status");
    assert_eq!(desired_batch, 3);
    let PoolState::Cut(why) = pool else {
        panic!("batch was cut short: {pool:?}");
    };
    assert!(why.contains("wanted 4 replicas, got 3"), "{why}");
    assert!(why.contains("ns/chat 4 GPUs (priority 1)"), "{why}");
    assert!(reason.contains(&why), "{reason}");
    assert_eq!(pool_of("chat").map(|p| p.0), Some(PoolState::Fits));
    assert_eq!(
        h.telemetry
            .scarcity_cut
            .with_label_values(&["ns", "batch"])
            .get(),
        1
    );

    // The cut is in the log, after the models' own records, and is what the safety net
    // would fall back to after a restart.
    let records = history(&h).await.records;
    let Some((_, Record::Scarcity(cut))) = records.last() else {
        panic!("the cut is logged last: {records:?}");
    };
    let batch = cut
        .claims
        .iter()
        .find(|c| c.variant.name == "batch")
        .expect("batch's claim");
    assert_eq!((batch.wanted, batch.granted, batch.priority), (4, 3, 5));
    let last_good = last_good_of(&h, "ns", "batch").await;
    assert_eq!(last_good.map(|l| l.desired), Some(3));

    // The next cycle starts from what was published, not from what was wanted.
    tick(&h, 30_000, metrics).await;
    let records = history(&h).await.records;
    let previous = records
        .iter()
        .rev()
        .find_map(|(_, r)| match r {
            Record::Cycle(c) if c.model.model_id == "batch" => Some(c.variants[0].previous_desired),
            _ => None,
        })
        .expect("batch's second cycle");
    assert_eq!(previous, Some(3));
    assert_eq!(desired(&h, "ns", "batch").await, Some(3));
}

#[actix::test]
async fn a_pool_large_enough_for_everyone_changes_no_decision() {
    let (limited, metrics) = scarce_models_on_a_pool(Some(8)).await;
    let (free, _) = scarce_models_on_a_pool(None).await;
    for at in [15_000, 30_000, 45_000] {
        tick(&limited, at, metrics.clone()).await;
        tick(&free, at, metrics.clone()).await;
        for name in ["chat", "batch"] {
            assert_eq!(
                desired(&limited, "ns", name).await,
                desired(&free, "ns", name).await,
                "{name} at {at}"
            );
        }
    }
    // (time, variant, target); models are decided in no fixed order within a cycle.
    let targets = |records: Vec<(u64, Record)>| -> Vec<(Timestamp, String, u32)> {
        let mut out: Vec<_> = records
            .into_iter()
            .filter_map(|(_, r)| match r {
                Record::Cycle(c) => Some((c.at, c.targets)),
                _ => None,
            })
            .flat_map(|(at, targets)| targets.into_iter().map(move |t| (at, t.name, t.target)))
            .collect();
        out.sort();
        out
    };
    let (a, b) = (history(&limited).await, history(&free).await);
    assert!(
        a.records
            .iter()
            .all(|(_, r)| !matches!(r, Record::Scarcity(_))),
        "nothing was cut, so nothing is logged"
    );
    assert_eq!(targets(a.records), targets(b.records));
}

#[actix::test]
async fn a_pool_set_back_to_unlimited_clears_its_series() {
    use prometheus::core::Collector;
    let (h, metrics) = scarce_models_on_a_pool(Some(7)).await;
    tick(&h, 15_000, metrics).await;
    let series = |h: &Harness| -> Vec<usize> {
        [
            &h.telemetry.pool_gpus,
            &h.telemetry.pool_granted_gpus,
            &h.telemetry.scarcity_cut,
        ]
        .iter()
        .map(|g| g.collect().iter().map(|f| f.get_metric().len()).sum())
        .collect()
    };
    assert!(
        series(&h).iter().all(|&n| n > 0),
        "a pool that cut stands in every series: {:?}",
        series(&h)
    );
    h.registry.send(SetPool(None)).await.expect("pool");
    assert_eq!(series(&h), vec![0, 0, 0], "nothing is limited any more");
}

#[actix::test]
async fn a_decision_between_cycles_is_fitted_against_what_the_others_were_given() {
    let (h, metrics) = scarce_models_on_a_pool(Some(7)).await;
    tick(&h, 15_000, metrics).await;
    assert_eq!(desired(&h, "ns", "chat").await, Some(4));
    // batch's Deployment is deleted and created again with 4 replicas: its model decides at once,
    // between cycles, and may not take what chat was given.
    for state in [
        None,
        Some(DeploymentState {
            replicas: 4,
            ready: 4,
        }),
    ] {
        h.registry
            .send(DeploymentEvent {
                namespace: "ns".into(),
                name: "batch-deploy".into(),
                state,
                at: Timestamp(20_000),
            })
            .await
            .expect("deployment");
    }
    let batch = desired(&h, "ns", "batch").await;
    assert!(batch.is_some_and(|b| b <= 3), "{batch:?}");
    assert_eq!(desired(&h, "ns", "chat").await, Some(4));
    // The fit is logged after the event's own record, so the safety net falls back to what was
    // published, not what was wanted.
    let records = history(&h).await.records;
    let last_cut = records.iter().rev().find_map(|(_, r)| match r {
        Record::Scarcity(s) => Some(s.clone()),
        _ => None,
    });
    let last_cut = last_cut.expect("a cut is logged");
    assert_eq!(last_cut.at, Timestamp(20_000), "{records:#?}");
    let last_good = last_good_of(&h, "ns", "batch").await;
    assert_eq!(last_good.map(|l| l.desired), batch);
}

/// Replicas a variant is given in place of another whose accelerators are full are held as the
/// model's own recommendations are (its stabilisation window), not dropped the first cycle the
/// full variant asks for one fewer: on the shared-pool `traces` scenario that churn cost the
/// cut model a replica for minutes at a time, each time paying a start-up to get it back.
#[actix::test]
async fn replicas_spilled_over_are_held_like_the_models_own_recommendations() {
    let h = start_with(
        MemoryLog::in_memory(Retention::default()),
        None,
        PolicySettings {
            analyzer: wva_actors::policy::mode::Analyzer::SloCapacity,
            ..Default::default()
        },
    );
    // The cheaper variant's accelerator is full (one H100, held); the other has room.
    add(
        &h,
        VariantSpec {
            accelerator: "H100".into(),
            ..spec("ns", "fast", "m", 5.0)
        },
        1,
    )
    .await;
    add(&h, spec("ns", "slow", "m", 10.0), 1).await;
    h.registry
        .send(SetPool(Some(wva_actors::policy::scarcity::Pool {
            gpus: [("H100".to_string(), 1), ("A100".to_string(), 10)].into(),
            ..Default::default()
        })))
        .await
        .expect("pool");
    let signals = |kv: f64, queue: f64| {
        snapshot(vec![(
            ModelKey::new("ns", "m"),
            [
                samples("fast", &[(kv, queue)]),
                samples("slow", &[(kv, queue)]),
            ]
            .concat(),
        )])
    };
    // The scaler acts at once: the Deployment runs what was published, all ready.
    let follow = |replicas: u32, at: i64| {
        h.registry.send(DeploymentEvent {
            namespace: "ns".into(),
            name: "slow-deploy".into(),
            state: Some(DeploymentState {
                replicas,
                ready: replicas,
            }),
            at: Timestamp(at),
        })
    };
    tick(&h, 15_000, signals(0.9, 4.0)).await;
    let spilled = desired(&h, "ns", "slow").await.expect("slow published");
    assert_eq!(desired(&h, "ns", "fast").await, Some(1), "the H100 is full");
    assert!(
        spilled > 1,
        "the A100 variant is given the H100's replicas: {spilled}"
    );
    follow(spilled, 20_000).await.expect("deployment");
    // The load eases: the model no longer asks for more H100s, so nothing spills.
    let calm = |n: usize| {
        snapshot(vec![(
            ModelKey::new("ns", "m"),
            [
                samples("fast", &[(0.3, 0.0)]),
                samples("slow", &vec![(0.3, 0.0); n]),
            ]
            .concat(),
        )])
    };
    for at in [30_000, 45_000, 60_000] {
        tick(&h, at, calm(spilled as usize)).await;
    }
    assert_eq!(
        desired(&h, "ns", "slow").await,
        Some(spilled),
        "the spilled replicas are held within the window"
    );
}
