//! Conversions between the policy's types and the decision log's persistent records.

use wva_storage::{
    CycleRecord, ModelKey, RecordedAnalysis, RecordedPod, RecordedTarget, RecordedThresholds,
    RecordedVariant, Timestamp,
};

use crate::policy::{
    CapacityAnalysis, ModelDecision, OperatingMode, ReplicaSignals, Thresholds, VariantInput,
};

/// Everything about one model's cycle that goes into the log.
#[derive(Debug, Clone)]
pub struct CycleFacts<'a> {
    pub model: &'a ModelKey,
    pub at: Timestamp,
    pub mode: OperatingMode,
    pub config_version: &'a str,
    pub thresholds: Thresholds,
    pub metrics_error: Option<String>,
    pub inputs: &'a [VariantInput],
    pub decision: &'a ModelDecision,
    pub trigger: &'a str,
}

pub fn cycle_record(f: CycleFacts<'_>) -> CycleRecord {
    let t = f.thresholds;
    CycleRecord {
        model: f.model.clone(),
        at: f.at,
        mode: f.mode.as_str().to_string(),
        config_version: f.config_version.to_string(),
        thresholds: RecordedThresholds {
            kv_cache_threshold: t.kv_cache_threshold,
            queue_length_threshold: t.queue_length_threshold,
            kv_spare_trigger: t.kv_spare_trigger,
            queue_spare_trigger: t.queue_spare_trigger,
        },
        metrics_error: f.metrics_error,
        variants: f
            .inputs
            .iter()
            .map(|v| RecordedVariant {
                name: v.name.clone(),
                cost: v.cost,
                accelerator: v.accelerator.clone(),
                current_replicas: v.current_replicas,
                ready_replicas: v.ready_replicas,
                previous_desired: v.previous_desired,
                pods: v
                    .replicas
                    .iter()
                    .map(|r| RecordedPod {
                        pod: r.pod.clone(),
                        kv_cache_usage: r.kv_cache_usage,
                        queue_length: r.queue_length,
                    })
                    .collect(),
            })
            .collect(),
        analysis: recorded_analysis(&f.decision.analysis),
        in_transition: f.decision.in_transition,
        safety_net: f.decision.safety_net,
        targets: f
            .decision
            .variants
            .iter()
            .map(|v| RecordedTarget {
                name: v.name.clone(),
                target: v.target,
                action: v.action.as_str().to_string(),
                reason: v.reason.clone(),
                fallback_source: v.fallback_source.map(|s| s.as_str().to_string()),
            })
            .collect(),
        trigger: f.trigger.to_string(),
    }
}

fn recorded_analysis(a: &CapacityAnalysis) -> RecordedAnalysis {
    RecordedAnalysis {
        total_replicas: a.total_replicas,
        non_saturated_replicas: a.non_saturated_replicas,
        avg_spare_kv: a.avg_spare_kv,
        avg_spare_queue: a.avg_spare_queue,
        should_scale_up: a.should_scale_up,
        scale_down_safe: a.scale_down_safe,
        reason: a.reason.clone(),
    }
}

/// The thresholds a cycle ran with.
pub fn recorded_thresholds(r: &CycleRecord) -> Thresholds {
    Thresholds {
        kv_cache_threshold: r.thresholds.kv_cache_threshold,
        queue_length_threshold: r.thresholds.queue_length_threshold,
        kv_spare_trigger: r.thresholds.kv_spare_trigger,
        queue_spare_trigger: r.thresholds.queue_spare_trigger,
    }
}

/// The policy inputs a cycle ran with.
pub fn recorded_inputs(r: &CycleRecord) -> Vec<VariantInput> {
    r.variants
        .iter()
        .map(|v| VariantInput {
            name: v.name.clone(),
            cost: v.cost,
            accelerator: v.accelerator.clone(),
            current_replicas: v.current_replicas,
            ready_replicas: v.ready_replicas,
            previous_desired: v.previous_desired,
            replicas: v
                .pods
                .iter()
                .map(|p| ReplicaSignals {
                    pod: p.pod.clone(),
                    kv_cache_usage: p.kv_cache_usage,
                    queue_length: p.queue_length,
                })
                .collect(),
        })
        .collect()
}
