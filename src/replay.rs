//! `wva replay`: the recorded inputs through today's policy, or another configuration, and
//! where the decisions differ.
//!
//! Replay is open-loop: every recorded cycle is decided again from exactly its recorded inputs
//! (including the previous desired counts it saw). It answers "what would this policy have
//! decided at each moment", not "how would the cluster have evolved".

use std::collections::HashMap;

use serde::Serialize;
use wva_actors::policy::cycle::CycleDecision;
use wva_actors::policy::scarcity::allocate;
use wva_actors::policy::{Analyzer, OperatingMode, ScalingConfig};
use wva_actors::pool::recorded_claims;
use wva_actors::record::recorded_thresholds;
use wva_actors::redecide::Recorded;
use wva_storage::{
    CycleRecord, DecisionLog, HistoryFilter, Record, ScarcityRecord, Timestamp, VariantKey,
};

use crate::history::{
    OutputFormat, demand_by_cycle, forecast_by_cycle, model_based_by_cycle, prefill_fit_by_cycle,
    request_series_missing_by_cycle, roles_by_cycle, slo_capacity_by_cycle, table,
};
use crate::timefmt::format_time;

/// What to replay with.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Thresholds from a `capacity-scaling-config` instead of the recorded ones.
    pub config: Option<ScalingConfig>,
    /// Mode to decide in instead of the recorded one.
    pub mode: Option<OperatingMode>,
    /// Capacity mode's analyzer instead of the recorded one.
    pub analyzer: Option<Analyzer>,
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
    /// Cycles replayed in hybrid or model-only mode that carry no model-based inputs (they were
    /// recorded in capacity-only mode): the capacity analyzer decided them.
    pub without_model_inputs: usize,
    /// Cycles replayed with `slo-capacity` that carry no inputs of it (recorded with
    /// `saturation-v1`): `saturation-v1` decided them.
    pub without_serving_inputs: usize,
    /// Cycles whose decisions a limited accelerator pool cut, fitted into the same pool again.
    pub pool_cycles: usize,
}

/// Why a log could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Log(#[from] wva_storage::LogError),
    #[error("record {at}: unknown mode {mode:?}")]
    UnknownMode { at: String, mode: String },
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn mode_of(record: &CycleRecord) -> Result<OperatingMode, ReplayError> {
    OperatingMode::from_name(&record.mode).ok_or_else(|| ReplayError::UnknownMode {
        at: format_time(record.at),
        mode: record.mode.clone(),
    })
}

/// Decides a recorded cycle again in `mode` with `analyzer`, with the thresholds of the
/// replay's configuration when it has one.
fn redecide(
    recorded: Recorded<'_>,
    mode: OperatingMode,
    analyzer: Analyzer,
    options: &ReplayOptions,
) -> CycleDecision {
    let record = recorded.cycle;
    let thresholds = match &options.config {
        Some(c) => {
            c.for_model(&record.model.namespace, &record.model.model_id)
                .0
                .thresholds
        }
        None => recorded_thresholds(record),
    };
    wva_actors::redecide::redecide(recorded, mode, analyzer, &thresholds)
}

/// Fits a cycle's replayed decisions into the pool its [`ScarcityRecord`] recorded, and
/// reports each variant granted otherwise than was published. A variant whose model did not
/// decide in that cycle keeps its recorded claim (it held what it ran).
fn refit(
    seq: u64,
    cut: &ScarcityRecord,
    wanted: &HashMap<(Timestamp, VariantKey), u32>,
    report: &mut ReplayReport,
) {
    let (pool, mut claims) = recorded_claims(cut);
    for claim in &mut claims {
        if let Some(&w) = wanted.get(&(cut.at, claim.variant.clone())) {
            claim.wanted = w;
        }
    }
    let allocation = allocate(&pool, &claims);
    let mut differs = false;
    for (i, (recorded, grant)) in cut.claims.iter().zip(&allocation.grants).enumerate() {
        if recorded.granted == grant.granted {
            continue;
        }
        differs = true;
        let pool_reason = |granted: u32, wanted: u32| {
            format!("accelerator pool: wanted {wanted}, granted {granted}")
        };
        report.differences.push(Difference {
            seq,
            time: format_time(cut.at),
            namespace: recorded.variant.namespace.clone(),
            model: recorded.model_id.clone(),
            variant: recorded.variant.name.clone(),
            recorded: Some(recorded.granted),
            replayed: Some(grant.granted),
            recorded_reason: pool_reason(recorded.granted, recorded.wanted),
            replayed_reason: allocation
                .explain(&claims, i)
                .unwrap_or_else(|| pool_reason(grant.granted, grant.wanted)),
        });
    }
    report.differing_cycles += usize::from(differs);
}

/// Replays every recorded cycle.
pub fn replay(log: &dyn DecisionLog, options: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let history = wva_actors::compact::read_history(log, &HistoryFilter::default())?;
    let mut report = ReplayReport {
        undecodable: history.undecodable,
        ..Default::default()
    };
    // The model-based record of a cycle has the cycle's model and time.
    let extras = model_based_by_cycle(&history.records);
    let capacity = slo_capacity_by_cycle(&history.records);
    let prefill = prefill_fit_by_cycle(&history.records);
    let forecasts = forecast_by_cycle(&history.records);
    let demand = demand_by_cycle(&history.records);
    let roles = roles_by_cycle(&history.records);
    let missing = request_series_missing_by_cycle(&history.records);
    // What each variant's replayed decision wanted, by cycle time, for fitting into the pool.
    // Kept only for logs with cuts, and only until the cut of their cycle is replayed.
    let mut wanted: HashMap<(Timestamp, VariantKey), u32> = HashMap::new();
    let pool_cuts = history
        .records
        .iter()
        .any(|(_, r)| matches!(r, Record::Scarcity(_)));
    for (seq, record) in &history.records {
        if let Record::Scarcity(cut) = record {
            report.pool_cycles += 1;
            refit(*seq, cut, &wanted, &mut report);
            wanted.retain(|(at, _), _| *at > cut.at);
            continue;
        }
        let Record::Cycle(c) = record else {
            continue;
        };
        report.cycles += 1;
        let extra = extras.get(&(&c.model, c.at)).copied();
        let mode = match options.mode {
            Some(m) => m,
            None => mode_of(c)?,
        };
        if mode != OperatingMode::CapacityOnly && extra.is_none() && c.metrics_error.is_none() {
            report.without_model_inputs += 1;
        }
        let recorded_capacity = capacity.get(&(&c.model, c.at)).copied();
        // A cycle recorded with slo-capacity carries its record; without one it was
        // saturation-v1 (or the safety net, which both share).
        let analyzer = options.analyzer.unwrap_or(if recorded_capacity.is_some() {
            Analyzer::SloCapacity
        } else {
            Analyzer::SaturationV1
        });
        if analyzer == Analyzer::SloCapacity
            && recorded_capacity.is_none()
            && c.metrics_error.is_none()
            && mode == OperatingMode::CapacityOnly
        {
            report.without_serving_inputs += 1;
        }
        let held = demand.get(&(&c.model, c.at)).copied();
        let recorded = Recorded {
            cycle: c,
            model_based: extra,
            capacity: recorded_capacity,
            prefill: prefill.get(&(&c.model, c.at)).copied(),
            forecast: forecasts.get(&(&c.model, c.at)).copied(),
            demand: held,
            roles: roles.get(&(&c.model, c.at)).copied(),
            series_missing: missing.contains_key(&(&c.model, c.at)),
        };
        let decision = redecide(recorded, mode, analyzer, options);
        if pool_cuts {
            for v in &decision.decision.variants {
                let key = VariantKey::new(c.model.namespace.clone(), v.name.clone());
                wanted.insert((c.at, key), v.target);
            }
        }
        let mut differs = false;
        let mut names: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
        names.extend(decision.decision.variants.iter().map(|v| v.name.as_str()));
        names.sort_unstable();
        names.dedup();
        for name in names {
            let recorded = c.targets.iter().find(|t| t.name == name);
            let replayed = decision.decision.variants.iter().find(|v| v.name == name);
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
                    // In full, as `history` shows it: the variant's reason, then the model's
                    // analysis in brackets.
                    recorded_reason: recorded
                        .map(|t| format!("{} [{}]", t.reason, c.analysis.reason))
                        .unwrap_or_default(),
                    replayed_reason: replayed
                        .map(|v| format!("{} [{}]", v.reason, decision.decision.analysis.reason))
                        .unwrap_or_default(),
                });
            }
        }
        report.differing_cycles += usize::from(differs);
    }
    Ok(report)
}

/// The report as text or JSON; the text ends with the summary line.
pub fn render(report: &ReplayReport, format: OutputFormat) -> Result<String, ReplayError> {
    match format {
        OutputFormat::Json => Ok(serde_json::to_string_pretty(report)?),
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
            if report.without_model_inputs > 0 {
                out.push_str(&format!(
                    "note: {} cycles were recorded without model-based inputs (capacity-only); the capacity analyzer decided them\n",
                    report.without_model_inputs
                ));
            }
            if report.without_serving_inputs > 0 {
                out.push_str(&format!(
                    "note: {} cycles were recorded without slo-capacity inputs (saturation-v1); saturation-v1 decided them\n",
                    report.without_serving_inputs
                ));
            }
            if report.pool_cycles > 0 {
                out.push_str(&format!(
                    "note: {} cycles were cut by the accelerator pool; the replayed decisions were fitted into the same pool\n",
                    report.pool_cycles
                ));
            }
            out.push_str(&format!(
                "replayed {} cycles, {} decisions differ\n",
                report.cycles, report.differing_cycles
            ));
            Ok(out)
        }
    }
}
