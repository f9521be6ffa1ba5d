//! Conversions between the policy's types and the decision log's persistent records.

use wva_storage::{
    CycleRecord, ForecastRecord, ModelBasedRecord, ModelKey, PrefillFitRecord, Record,
    RecordedAnalysis, RecordedCapacityVariant, RecordedLearner, RecordedLineFit,
    RecordedModelVariant, RecordedPod, RecordedServing, RecordedTarget, RecordedThresholds,
    RecordedVariant, RecordedWorkload, SloCapacityRecord, Timestamp,
};

use crate::policy::cycle::SloCapacityOutcome;
use crate::policy::cycle::{CycleDecision, ModelBasedInputs};
use crate::policy::learner::{LatencyLearner, LineFit};
use crate::policy::model_based::ModelVariantInput;
use crate::policy::queueing::{LatencyTargets, Workload};
use crate::policy::scale_to_zero::RequestCount;
use crate::policy::slo_capacity::{
    CapacityVariant, ItlFit, ServingSummary, SloCapacityConfig, TtftFit,
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

pub fn recorded_analysis(a: &CapacityAnalysis) -> RecordedAnalysis {
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

pub fn recorded_fit(f: &LineFit) -> RecordedLineFit {
    RecordedLineFit {
        intercept: f.intercept,
        slope: f.slope,
        covariance: f.covariance,
        residual_variance: f.residual_variance,
        accepted: f.accepted,
        rejected: f.rejected,
        rejected_in_a_row: f.rejected_in_a_row,
    }
}

pub fn fit_of(f: &RecordedLineFit) -> LineFit {
    LineFit {
        intercept: f.intercept,
        slope: f.slope,
        covariance: f.covariance,
        residual_variance: f.residual_variance,
        accepted: f.accepted,
        rejected: f.rejected,
        rejected_in_a_row: f.rejected_in_a_row,
    }
}

pub fn recorded_learner(l: &LatencyLearner) -> RecordedLearner {
    RecordedLearner {
        decode: l.decode.as_ref().map(recorded_fit),
        prefill: l.prefill.as_ref().map(recorded_fit),
    }
}

pub fn learner_of(r: &RecordedLearner) -> LatencyLearner {
    LatencyLearner {
        decode: r.decode.as_ref().map(fit_of),
        prefill: r.prefill.as_ref().map(fit_of),
    }
}

/// The model-based side of a cycle, for the log.
pub fn model_based_record(
    model: &ModelKey,
    at: Timestamp,
    mode: OperatingMode,
    inputs: &ModelBasedInputs,
    learners: &[LatencyLearner],
    scale_to_zero: (bool, Option<&RequestCount>),
    decided: &CycleDecision,
) -> ModelBasedRecord {
    let outcome = decided.model_based.as_ref();
    ModelBasedRecord {
        model: model.clone(),
        at,
        mode: mode.as_str().to_string(),
        workload: inputs.workload.map(|w| RecordedWorkload {
            arrival_rps: w.arrival_rps,
            mean_input_tokens: w.mean_input_tokens,
            mean_output_tokens: w.mean_output_tokens,
        }),
        ttft_target_ms: inputs.targets.ttft_ms,
        itl_target_ms: inputs.targets.itl_ms,
        proposal_reason: outcome.map_or_else(String::new, |o| o.proposal.reason.clone()),
        variants: inputs
            .variants
            .iter()
            .zip(learners)
            .enumerate()
            .map(|(i, (v, learner))| {
                let arbitration = outcome.and_then(|o| o.arbitration.get(i));
                let proposed = outcome.and_then(|o| o.proposal.variants.get(i));
                RecordedModelVariant {
                    name: v.name.clone(),
                    cost: v.cost,
                    max_batch: v.max_batch,
                    learner: recorded_learner(learner),
                    rate_per_replica: proposed.and_then(|p| p.per_replica).map(|op| op.rate_rps),
                    capacity_target: arbitration.map_or(0, |a| a.capacity_target),
                    model_target: arbitration.and_then(|a| a.model_target),
                    target: decided.decision.variants.get(i).map_or(0, |t| t.target),
                    winner: arbitration
                        .map_or("capacity", |a| a.winner.as_str())
                        .to_string(),
                    rule: arbitration.map_or_else(|| "safety-net".to_string(), |a| a.rule.clone()),
                }
            })
            .collect(),
        scale_to_zero: scale_to_zero.0,
        request_count: match scale_to_zero.1 {
            Some(RequestCount::Read(n)) => Some(*n),
            Some(RequestCount::NoSeries) => Some(0.0),
            _ => None,
        },
        request_count_error: match scale_to_zero.1 {
            Some(RequestCount::Failed(e)) => Some(e.clone()),
            _ => None,
        },
        scaled_to_zero: decided.scaled_to_zero.clone(),
    }
}

/// The scale-to-zero inputs a recorded cycle ran with (for replay); `series_missing` when a
/// [`wva_storage::RequestSeriesMissingRecord`] stands beside it.
pub fn recorded_request_count(r: &ModelBasedRecord, series_missing: bool) -> Option<RequestCount> {
    match (&r.request_count_error, r.request_count) {
        (Some(e), _) => Some(RequestCount::Failed(e.clone())),
        (None, Some(_)) if series_missing => Some(RequestCount::NoSeries),
        (None, Some(n)) => Some(RequestCount::Read(n)),
        (None, None) => None,
    }
}

/// The model-based inputs a recorded cycle ran with (for replay).
pub fn recorded_model_inputs(r: &ModelBasedRecord) -> ModelBasedInputs {
    ModelBasedInputs {
        workload: r.workload.map(|w| Workload {
            arrival_rps: w.arrival_rps,
            mean_input_tokens: w.mean_input_tokens,
            mean_output_tokens: w.mean_output_tokens,
        }),
        targets: LatencyTargets {
            ttft_ms: r.ttft_target_ms,
            itl_ms: r.itl_target_ms,
        },
        variants: r
            .variants
            .iter()
            .map(|v| {
                let learner = learner_of(&v.learner);
                ModelVariantInput {
                    name: v.name.clone(),
                    cost: v.cost,
                    max_batch: v.max_batch,
                    params: learner.params(),
                    samples: learner.samples().0,
                }
            })
            .collect(),
    }
}

fn recorded_serving(s: &ServingSummary) -> RecordedServing {
    RecordedServing {
        pods: u32::try_from(s.pods).unwrap_or(u32::MAX),
        rate_rps: s.rate_rps,
        mean_input_tokens: s.mean_input_tokens,
        mean_output_tokens: s.mean_output_tokens,
        ttft_ms: s.ttft_ms,
        itl_ms: s.itl_ms,
        batch: s.batch,
        waiting: s.waiting,
        waiting_end: s.waiting_end,
    }
}

pub fn serving_of(r: &RecordedServing) -> ServingSummary {
    ServingSummary {
        pods: r.pods as usize,
        rate_rps: r.rate_rps,
        mean_input_tokens: r.mean_input_tokens,
        mean_output_tokens: r.mean_output_tokens,
        ttft_ms: r.ttft_ms,
        itl_ms: r.itl_ms,
        batch: r.batch,
        waiting: r.waiting,
        waiting_end: r.waiting_end,
    }
}

/// The `slo-capacity` side of a cycle, for the log: everything beyond the cycle record that
/// the analyzer's decision depended on, and how it judged each variant.
pub fn slo_capacity_record(
    model: &ModelKey,
    at: Timestamp,
    views: &[CapacityVariant],
    config: &SloCapacityConfig,
    outcome: &SloCapacityOutcome,
) -> SloCapacityRecord {
    SloCapacityRecord {
        model: model.clone(),
        at,
        ttft_target_ms: config.slo.ttft_ms,
        itl_target_ms: config.slo.itl_ms,
        budget_share: config.budget_share,
        stabilization_cycles: u32::try_from(config.stabilization_cycles).unwrap_or(u32::MAX),
        drain_s: config.drain_s,
        window_s: config.window_s,
        demand_rps: outcome.demand_rps,
        variants: views
            .iter()
            .map(|v| {
                let estimate = outcome.estimates.iter().find(|e| e.name == v.input.name);
                RecordedCapacityVariant {
                    name: v.input.name.clone(),
                    serving: v.serving.as_ref().map(recorded_serving),
                    fit: v.fit.line.as_ref().map(recorded_fit),
                    max_batch: v.max_batch,
                    min_replicas: v.min_replicas,
                    max_replicas: v.max_replicas,
                    recent: v.recent.clone(),
                    per_replica_rps: estimate.and_then(|e| e.per_replica_rps),
                    recommended: estimate.map_or(0, |e| e.recommended),
                    note: estimate.map(|e| e.note.clone()).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// The `slo-capacity` side of a cycle, for the log: its judgement, the prefill lines beside it
/// when any was begun, and the forecast when it ran.
pub fn slo_capacity_records(
    model: &ModelKey,
    at: Timestamp,
    views: &[CapacityVariant],
    config: &SloCapacityConfig,
    outcome: &SloCapacityOutcome,
    forecast: Option<ForecastRecord>,
) -> Vec<Record> {
    let mut records = vec![Record::SloCapacity(slo_capacity_record(
        model, at, views, config, outcome,
    ))];
    records.extend(prefill_fit_record(model, at, views).map(Record::PrefillFit));
    records.extend(forecast.map(Record::Forecast));
    records
}

/// The prefill lines of a cycle's `slo-capacity` views, for the log: `None` when no variant
/// has begun one (older logs, and pods without TTFT, have none).
pub fn prefill_fit_record(
    model: &ModelKey,
    at: Timestamp,
    views: &[CapacityVariant],
) -> Option<PrefillFitRecord> {
    let fits: Vec<(String, RecordedLineFit)> = views
        .iter()
        .filter_map(|v| {
            v.prefill_fit
                .line
                .as_ref()
                .map(|l| (v.input.name.clone(), recorded_fit(l)))
        })
        .collect();
    (!fits.is_empty()).then(|| PrefillFitRecord {
        model: model.clone(),
        at,
        fits,
    })
}

/// The analyzer's view of a recorded cycle, in the order of the cycle's variants, with the
/// settings it decided under and the prefill lines recorded beside it.
pub fn recorded_capacity_views(
    cycle: &CycleRecord,
    r: &SloCapacityRecord,
    prefill: Option<&PrefillFitRecord>,
    forecast: Option<&ForecastRecord>,
) -> (Vec<CapacityVariant>, SloCapacityConfig) {
    let views = recorded_inputs(cycle)
        .into_iter()
        .map(|input| {
            let recorded = r.variants.iter().find(|v| v.name == input.name);
            CapacityVariant {
                serving: recorded.and_then(|v| v.serving.as_ref().map(serving_of)),
                fit: ItlFit {
                    line: recorded.and_then(|v| v.fit.as_ref().map(fit_of)),
                },
                prefill_fit: TtftFit {
                    line: prefill.and_then(|p| {
                        p.fits
                            .iter()
                            .find(|(name, _)| *name == input.name)
                            .map(|(_, f)| fit_of(f))
                    }),
                },
                // The roles record beside the cycle says it; the role split sets it.
                role: Default::default(),
                max_batch: recorded.map_or(crate::messages::DEFAULT_MAX_BATCH, |v| v.max_batch),
                min_replicas: recorded.and_then(|v| v.min_replicas),
                max_replicas: recorded.and_then(|v| v.max_replicas),
                recent: recorded.map(|v| v.recent.clone()).unwrap_or_default(),
                input,
            }
        })
        .collect();
    let config = SloCapacityConfig {
        slo: LatencyTargets {
            ttft_ms: r.ttft_target_ms,
            itl_ms: r.itl_target_ms,
        },
        budget_share: r.budget_share,
        stabilization_cycles: r.stabilization_cycles as usize,
        drain_s: r.drain_s,
        window_s: r.window_s,
        forecast: forecast.is_some(),
        forecast_rps: forecast.and_then(|f| f.forecast_rps),
        // Fixed settings no configuration changes are not recorded.
        ..SloCapacityConfig::default()
    };
    (views, config)
}
