//! `wva replay`: the recorded inputs through today's policy, or another configuration, and
//! where the decisions differ.
//!
//! Replay is open-loop: every recorded cycle is decided again from exactly its recorded inputs
//! (including the previous desired counts it saw). It answers "what would this policy have
//! decided at each moment", not "how would the cluster have evolved".

use serde::Serialize;
use wva_actors::policy::{
    ModelDecision, OperatingMode, ScalingConfig, decide_capacity, safety_net_decision,
};
use wva_actors::record::{recorded_inputs, recorded_thresholds};
use wva_storage::{CycleRecord, DecisionLog, HistoryFilter, Record};

use crate::history::{OutputFormat, table};
use crate::timefmt::format_time;

/// What to replay with.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Thresholds from a `capacity-scaling-config` instead of the recorded ones.
    pub config: Option<ScalingConfig>,
    /// Mode to decide in instead of the recorded one.
    pub mode: Option<OperatingMode>,
}

/// One variant decision that came out differently.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub seq: u64,
    pub time: String,
    pub namespace: String,
    pub model: String,
    pub variant: String,
    pub recorded: Option<u32>,
    pub replayed: Option<u32>,
    pub recorded_reason: String,
    pub replayed_reason: String,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    pub cycles: usize,
    /// Cycles in which at least one variant's decision differs.
    pub differing_cycles: usize,
    pub differences: Vec<Difference>,
    pub undecodable: u64,
}

/// Decides a recorded cycle again.
pub fn redecide(record: &CycleRecord, options: &ReplayOptions) -> Result<ModelDecision, String> {
    let mode = match &options.mode {
        Some(m) => *m,
        None => match record.mode.as_str() {
            "capacity-only" => OperatingMode::CapacityOnly,
            "hybrid" => OperatingMode::Hybrid,
            "model-only" => OperatingMode::ModelOnly,
            other => {
                return Err(format!(
                    "record {}: unknown mode {other:?}",
                    format_time(record.at)
                ));
            }
        },
    };
    if mode != OperatingMode::CapacityOnly {
        return Err(format!(
            "mode {mode}: this build decides in capacity-only mode; the model-based optimizer is not part of it yet"
        ));
    }
    let inputs = recorded_inputs(record);
    if let Some(why) = &record.metrics_error {
        return Ok(safety_net_decision(&inputs, why));
    }
    let thresholds = match &options.config {
        Some(c) => {
            c.for_model(&record.model.namespace, &record.model.model_id)
                .0
                .thresholds
        }
        None => recorded_thresholds(record),
    };
    Ok(decide_capacity(&thresholds, &inputs))
}

/// Replays every recorded cycle.
pub fn replay(log: &dyn DecisionLog, options: &ReplayOptions) -> Result<ReplayReport, String> {
    let history = log
        .history(&HistoryFilter::default())
        .map_err(|e| e.to_string())?;
    let mut report = ReplayReport {
        undecodable: history.undecodable,
        ..Default::default()
    };
    for (seq, record) in &history.records {
        let Record::Cycle(c) = record;
        report.cycles += 1;
        let decision = redecide(c, options)?;
        let mut differs = false;
        let mut names: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
        names.extend(decision.variants.iter().map(|v| v.name.as_str()));
        names.sort_unstable();
        names.dedup();
        for name in names {
            let recorded = c.targets.iter().find(|t| t.name == name);
            let replayed = decision.variants.iter().find(|v| v.name == name);
            if recorded.map(|t| t.target) != replayed.map(|v| v.target) {
                differs = true;
                report.differences.push(Difference {
                    seq: *seq,
                    time: format_time(c.at),
                    namespace: c.model.namespace.clone(),
                    model: c.model.model_id.clone(),
                    variant: name.to_string(),
                    recorded: recorded.map(|t| t.target),
                    replayed: replayed.map(|v| v.target),
                    recorded_reason: recorded.map(|t| t.reason.clone()).unwrap_or_default(),
                    replayed_reason: replayed.map(|v| v.reason.clone()).unwrap_or_default(),
                });
            }
        }
        report.differing_cycles += usize::from(differs);
    }
    Ok(report)
}

/// The report as text or JSON; the text ends with the summary line.
pub fn render(report: &ReplayReport, format: OutputFormat) -> Result<String, String> {
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(report).map_err(|e| e.to_string()),
        OutputFormat::Table => {
            let show = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let mut out = String::new();
            if !report.differences.is_empty() {
                let mut rows = vec![
                    [
                        "TIME",
                        "NAMESPACE",
                        "MODEL",
                        "VARIANT",
                        "RECORDED",
                        "REPLAYED",
                        "REPLAYED REASON",
                    ]
                    .map(String::from),
                ];
                rows.extend(report.differences.iter().map(|d| {
                    [
                        d.time.clone(),
                        d.namespace.clone(),
                        d.model.clone(),
                        d.variant.clone(),
                        show(d.recorded),
                        show(d.replayed),
                        d.replayed_reason.clone(),
                    ]
                }));
                out.push_str(&table(&rows));
            }
            out.push_str(&format!(
                "replayed {} cycles, {} decisions differ\n",
                report.cycles, report.differing_cycles
            ));
            Ok(out)
        }
    }
}
