//! `wva history`: what was decided, when, from which inputs, and why; newest last.

use serde::Serialize;
use std::collections::HashMap;

use wva_storage::{
    CycleRecord, DecisionLog, DemandRecord, ForecastRecord, HistoryFilter, ModelBasedRecord,
    ModelKey, PrefillFitRecord, Record, RecordedClaim, RequestSeriesMissingRecord, RolesRecord,
    ScarcityRecord, SloCapacityRecord, Timestamp,
};

use crate::timefmt::format_time;
use wva_actors::policy::decision::Action;

/// Output format of `history` and `replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonEntry<'a> {
    seq: u64,
    time: String,
    #[serde(flatten)]
    record: &'a CycleRecord,
    /// The optimizer's side of the cycle (hybrid, model-only, scale to zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    model_based: Option<&'a ModelBasedRecord>,
    /// The `slo-capacity` analyzer's side of the cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    slo_capacity: Option<&'a SloCapacityRecord>,
    /// Its prefill lines (TTFT against prompt tokens held), when some variant has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefill_fit: Option<&'a PrefillFitRecord>,
    /// The demand forecast it sized for, when the forecast is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    forecast: Option<&'a ForecastRecord>,
    /// Its variants' claims on a limited accelerator pool, when the pool cut anyone that cycle.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pool: Vec<&'a RecordedClaim>,
}

/// The pool's claims of the cycles in `filter`'s time window, by (time, namespace, variant).
/// The pool belongs to no model, so it is read apart from a model's records.
fn pool_claims(
    log: &dyn DecisionLog,
    filter: &HistoryFilter,
) -> Result<Vec<ScarcityRecord>, String> {
    let key = ScarcityRecord::key();
    let pool = HistoryFilter {
        namespace: Some(key.namespace),
        model_id: Some(key.model_id),
        variant: None,
        since: filter.since,
        until: filter.until,
    };
    let history = log.history(&pool).map_err(|e| e.to_string())?;
    Ok(history
        .records
        .into_iter()
        .filter_map(|(_, r)| match r {
            Record::Scarcity(s) => Some(s),
            _ => None,
        })
        .collect())
}

/// Each cycle's claims on the pool, by (time, namespace, variant).
fn claims_by_variant(cuts: &[ScarcityRecord]) -> HashMap<(Timestamp, &str, &str), &RecordedClaim> {
    cuts.iter()
        .flat_map(|s| {
            s.claims.iter().map(move |c| {
                (
                    (s.at, c.variant.namespace.as_str(), c.variant.name.as_str()),
                    c,
                )
            })
        })
        .collect()
}

/// Records that go with a cycle record, keyed like it (same model, same time).
pub type ByCycle<'a, T> = HashMap<(&'a ModelKey, Timestamp), &'a T>;

fn by_cycle<'a, T>(
    records: &'a [(u64, Record)],
    pick: fn(&Record) -> Option<&T>,
) -> ByCycle<'a, T> {
    records
        .iter()
        .filter_map(|(_, r)| pick(r).map(|t| ((r.model(), r.at()), t)))
        .collect()
}

/// The model-based record of each cycle.
pub fn model_based_by_cycle(records: &[(u64, Record)]) -> ByCycle<'_, ModelBasedRecord> {
    by_cycle(records, |r| match r {
        Record::ModelBased(m) => Some(m),
        _ => None,
    })
}

/// The `slo-capacity` record of each cycle.
pub fn slo_capacity_by_cycle(records: &[(u64, Record)]) -> ByCycle<'_, SloCapacityRecord> {
    by_cycle(records, |r| match r {
        Record::SloCapacity(s) => Some(s),
        _ => None,
    })
}

/// The `slo-capacity` prefill lines of each cycle that had some.
pub fn prefill_fit_by_cycle(records: &[(u64, Record)]) -> ByCycle<'_, PrefillFitRecord> {
    by_cycle(records, |r| match r {
        Record::PrefillFit(p) => Some(p),
        _ => None,
    })
}

/// The demand forecast of each cycle that ran one.
pub fn forecast_by_cycle(records: &[(u64, Record)]) -> ByCycle<'_, ForecastRecord> {
    by_cycle(records, |r| match r {
        Record::Forecast(f) => Some(f),
        _ => None,
    })
}

/// The demand record (requests held by the scheduler) of each cycle that had one.
pub fn demand_by_cycle(records: &[(u64, Record)]) -> ByCycle<'_, DemandRecord> {
    by_cycle(records, |r| match r {
        Record::Demand(d) => Some(d),
        _ => None,
    })
}

/// The roles record of each cycle of a model whose variants have roles.
pub fn roles_by_cycle(records: &[(u64, Record)]) -> ByCycle<'_, RolesRecord> {
    by_cycle(records, |r| match r {
        Record::Roles(roles) => Some(roles),
        _ => None,
    })
}

/// The cycles whose model's request series was absent over its scale-to-zero window.
pub fn request_series_missing_by_cycle(
    records: &[(u64, Record)],
) -> ByCycle<'_, RequestSeriesMissingRecord> {
    by_cycle(records, |r| match r {
        Record::RequestSeriesMissing(m) => Some(m),
        _ => None,
    })
}

/// What a decision did to a variant's desired count: against the count published before it
/// (what the HPA was already told), or, for a variant's first decision, its replicas. A count
/// held below the replicas while the HPA's scale-down window runs is no new action.
fn target_change(c: &CycleRecord, t: &wva_storage::RecordedTarget) -> Action {
    let input = c.variants.iter().find(|v| v.name == t.name);
    let before = input.map_or(t.target, |v| {
        v.previous_desired.unwrap_or(v.current_replicas)
    });
    Action::between(before, t.target)
}

/// How many desired counts a cycle changed (of `variant`, when given).
fn changes_in(c: &CycleRecord, variant: Option<&String>) -> usize {
    c.targets
        .iter()
        .filter(|t| variant.is_none_or(|v| *v == t.name))
        .filter(|t| target_change(c, t) != Action::NoChange)
        .count()
}

/// Renders the records of `log` that match `filter`; with `changes_only`, only the decisions
/// that changed a desired count.
pub fn render(
    log: &dyn DecisionLog,
    filter: &HistoryFilter,
    format: OutputFormat,
    changes_only: bool,
) -> Result<String, String> {
    let history = wva_actors::compact::read_history(log, filter).map_err(|e| e.to_string())?;
    if history.undecodable > 0 {
        tracing::warn!(
            records = history.undecodable,
            "skipped decision log records that cannot be decoded"
        );
    }
    let cycles: Vec<(u64, &CycleRecord)> = history
        .records
        .iter()
        .filter_map(|(seq, r)| match r {
            Record::Cycle(c) => Some((*seq, c)),
            _ => None,
        })
        .collect();
    let extras = model_based_by_cycle(&history.records);
    let capacity = slo_capacity_by_cycle(&history.records);
    let prefill = prefill_fit_by_cycle(&history.records);
    let forecasts = forecast_by_cycle(&history.records);
    let cuts = pool_claims(log, filter)?;
    let claims = claims_by_variant(&cuts);
    let claim_of = |c: &CycleRecord, name: &str| {
        claims
            .get(&(c.at, c.model.namespace.as_str(), name))
            .copied()
    };
    let total_cycles = cycles.len();
    let counted: Vec<(u64, &CycleRecord, usize)> = cycles
        .into_iter()
        .map(|(seq, c)| (seq, c, changes_in(c, filter.variant.as_ref())))
        .collect();
    let changes: usize = counted.iter().map(|(.., n)| n).sum();
    let cycles: Vec<(u64, &CycleRecord)> = counted
        .into_iter()
        .filter(|(.., n)| !changes_only || *n > 0)
        .map(|(seq, c, _)| (seq, c))
        .collect();
    match format {
        OutputFormat::Json => {
            let entries: Vec<JsonEntry<'_>> = cycles
                .iter()
                .map(|(seq, c)| JsonEntry {
                    seq: *seq,
                    time: format_time(c.at),
                    record: c,
                    model_based: extras.get(&(&c.model, c.at)).copied(),
                    slo_capacity: capacity.get(&(&c.model, c.at)).copied(),
                    prefill_fit: prefill.get(&(&c.model, c.at)).copied(),
                    forecast: forecasts.get(&(&c.model, c.at)).copied(),
                    pool: c
                        .targets
                        .iter()
                        .filter_map(|t| claim_of(c, &t.name))
                        .collect(),
                })
                .collect();
            serde_json::to_string_pretty(&entries).map_err(|e| e.to_string())
        }
        OutputFormat::Table => {
            let mut rows = vec![
                [
                    "TIME",
                    "NAMESPACE",
                    "MODEL",
                    "VARIANT",
                    "CURRENT",
                    "DESIRED",
                    "ACTION",
                    "TRIGGER",
                    "INPUTS",
                    "REASON",
                ]
                .map(String::from),
            ];
            for (_, c) in &cycles {
                for t in &c.targets {
                    if filter.variant.as_ref().is_some_and(|v| *v != t.name) {
                        continue;
                    }
                    let action = target_change(c, t);
                    if changes_only && action == Action::NoChange {
                        continue;
                    }
                    let input = c.variants.iter().find(|v| v.name == t.name);
                    let model_based = extras.get(&(&c.model, c.at));
                    let side =
                        model_based.and_then(|m| m.variants.iter().find(|v| v.name == t.name));
                    // What was published: the pool's grant, where it gave another count.
                    let cut = claim_of(c, &t.name).filter(|claim| claim.granted != claim.wanted);
                    let pool_note = cut.map_or(String::new(), |claim| {
                        format!(
                            "; accelerator pool: wanted {}, granted {}",
                            claim.wanted, claim.granted
                        )
                    });
                    rows.push([
                        format_time(c.at),
                        c.model.namespace.clone(),
                        c.model.model_id.clone(),
                        t.name.clone(),
                        input.map_or_else(
                            || "-".into(),
                            |v| format!("{}/{}", v.ready_replicas, v.current_replicas),
                        ),
                        cut.map_or(t.target, |claim| claim.granted).to_string(),
                        action.as_str().to_string(),
                        c.trigger.clone(),
                        input.map_or_else(String::new, describe_pods),
                        match side {
                            // Which side won, by which rule, against what the other proposed.
                            // and, while it abstains, why (learning, no workload...).
                            Some(m) => format!(
                                "{} [{}; {} won by {}: capacity {}, model {}{}]",
                                t.reason,
                                c.analysis.reason,
                                m.winner,
                                m.rule,
                                m.capacity_target,
                                m.model_target.map_or("-".into(), |n| n.to_string()),
                                model_based.filter(|_| m.model_target.is_none()).map_or(
                                    String::new(),
                                    |r| format!("; optimizer: {}", r.proposal_reason)
                                )
                            ),
                            None => format!("{} [{}]", t.reason, c.analysis.reason),
                        } + &pool_note,
                    ]);
                }
            }
            let mut out = table(&rows);
            out.push_str(&format!(
                "{total_cycles} cycles, {changes} changes of a desired count{}\n",
                if changes_only {
                    " (only the changes shown)"
                } else {
                    ""
                }
            ));
            Ok(out)
        }
    }
}

fn describe_pods(v: &wva_storage::RecordedVariant) -> String {
    if v.pods.is_empty() {
        return "no signals".into();
    }
    let kv: Vec<String> = v
        .pods
        .iter()
        .map(|p| {
            p.kv_cache_usage
                .map_or_else(|| "-".into(), |x| format!("{x:.2}"))
        })
        .collect();
    let q: Vec<String> = v
        .pods
        .iter()
        .map(|p| {
            p.queue_length
                .map_or_else(|| "-".into(), |x| format!("{x}"))
        })
        .collect();
    format!("kv {} q {}", kv.join(","), q.join(","))
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
