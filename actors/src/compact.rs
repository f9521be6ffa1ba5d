//! The decision log's compact form of a model's cycle: its inputs and desired counts, with
//! everything the policy derives rebuilt by deciding the cycle again when the log is read.
//!
//! A cycle's full records ([`CycleRecord`], [`SloCapacityRecord`], [`PrefillFitRecord`]) repeat
//! what the policy can compute again: the analysis, the actions, the reasons, the analyzer's
//! estimates, and the state it carries from cycle to cycle (the fitted latency lines and the
//! stabilisation window). The writer ([`Compactor`]) turns them into one
//! [`CompactCycleRecord`], rebuilds the full records from it with [`expand`], and keeps the
//! compact form only when the rebuild is identical to what was decided; otherwise it writes
//! the full records. So a compact record always reads back as the records its cycle decided.
//!
//! The carried state makes a record depend on its model's previous one: such a record names
//! the cycle it builds on, and a keyframe (the first record of a supervisor, and one at least
//! every [`KEYFRAME_EVERY_MS`]) carries the state itself. A record whose predecessor is gone
//! (removed by retention, or never written) is read with its inputs and desired counts, and
//! without reasons.

use std::collections::HashMap;

use wva_storage::{
    CarriedState, CompactCapacity, CompactCapacitySettings, CompactCycleRecord, CompactPod,
    CompactServing, CompactVariant, CycleRecord, History, HistoryFilter, ModelKey,
    PrefillFitRecord, Record, RecordedAnalysis, RecordedCapacityVariant, RecordedLineFit,
    RecordedPod, RecordedServing, RecordedTarget, RecordedVariant, SloCapacityRecord, Timestamp,
    Units,
};

use crate::policy::slo_capacity::{ItlFit, TtftFit};
use crate::policy::{Analyzer, OperatingMode};
use crate::precision::{self, KV_CACHE, MILLIS, RATE, REQUESTS, TOKENS};
use crate::record::{
    fit_of, prefill_fit_record, recorded_analysis, recorded_capacity_views, recorded_fit,
    recorded_thresholds, serving_of, slo_capacity_record,
};
use crate::redecide::{Recorded, redecide};

/// A keyframe at least this often per model (record time): a reader starting anywhere needs
/// at most this much of the log before it to rebuild what it reads.
pub const KEYFRAME_EVERY_MS: i64 = 60 * 60 * 1000;

/// The controller version that writes compact records.
pub const DECIDED_BY: &str = env!("CARGO_PKG_VERSION");

/// What a model's last cycle leaves for the next record to build on, per variant: the signals
/// it saw (the next record keeps its own as differences from these: windows a cycle apart
/// overlap, so they differ little), and, under `slo-capacity`, the lines after the cycle's
/// window, the stabilisation window it decided with, and what it recommended (which joins the
/// window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    at: Timestamp,
    variants: Vec<CarriedVariant>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct CarriedVariant {
    name: String,
    /// (pod, KV-cache use in units) of the pods that reported it.
    kv: Vec<(String, Units)>,
    serving: Option<CompactServing>,
    fit: Option<RecordedLineFit>,
    prefill_fit: Option<RecordedLineFit>,
    recent: Vec<u32>,
    recommended: u32,
}

impl Carried {
    fn variant(&self, name: &str) -> Option<&CarriedVariant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

impl CarriedVariant {
    fn kv_of(&self, pod: &str) -> Option<Units> {
        self.kv.iter().find(|(p, _)| p == pod).map(|(_, u)| *u)
    }
}

/// The carried state per model, followed through a stream of records in log order: the
/// writer and the reader run the same rule over the same records, so they agree on what a
/// record builds on.
#[derive(Debug, Clone, Default)]
pub struct CarriedByModel(HashMap<ModelKey, Carried>);

impl CarriedByModel {
    /// Takes in one full record: a cycle record starts its model's state afresh, the
    /// `slo-capacity` and prefill records written after it (same time) complete it.
    pub fn follow(&mut self, record: &Record) {
        match record {
            Record::Cycle(c) => {
                self.0.insert(
                    c.model.clone(),
                    Carried {
                        at: c.at,
                        variants: c
                            .variants
                            .iter()
                            .map(|v| CarriedVariant {
                                name: v.name.clone(),
                                kv: v
                                    .pods
                                    .iter()
                                    .filter_map(|p| {
                                        let kv = p.kv_cache_usage?;
                                        Some((p.pod.clone(), precision::units(kv, KV_CACHE)?))
                                    })
                                    .collect(),
                                ..Default::default()
                            })
                            .collect(),
                    },
                );
            }
            Record::SloCapacity(s) => {
                if let Some(c) = self.0.get_mut(&s.model).filter(|c| c.at == s.at) {
                    for r in &s.variants {
                        if let Some(v) = c.variants.iter_mut().find(|v| v.name == r.name) {
                            v.serving = r.serving.as_ref().and_then(compact_serving);
                            v.fit = r.fit;
                            v.recent = r.recent.clone();
                            v.recommended = r.recommended;
                        }
                    }
                }
            }
            Record::PrefillFit(p) => {
                if let Some(c) = self.0.get_mut(&p.model).filter(|c| c.at == p.at) {
                    for (name, fit) in &p.fits {
                        if let Some(v) = c.variants.iter_mut().find(|v| v.name == *name) {
                            v.prefill_fit = Some(*fit);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    pub fn of(&self, model: &ModelKey) -> Option<&Carried> {
        self.0.get(model)
    }
}

/// Turns one model's cycle records into their compact form where that reads back identical.
/// One per supervisor: a new supervisor starts with a keyframe.
#[derive(Debug, Default)]
pub struct Compactor {
    carried: CarriedByModel,
    last_keyframe: Option<Timestamp>,
    /// Cycles written compact and in full so far (for tests and the log's figures).
    pub compact: u64,
    pub full: u64,
}

impl Compactor {
    /// The records to write for one model's cycle.
    pub fn compact(&mut self, records: Vec<Record>) -> Vec<Record> {
        let out = self.try_compact(&records);
        for r in &records {
            self.carried.follow(r);
        }
        match out {
            Some(c) => {
                if c.builds_on.is_none() {
                    self.last_keyframe = Some(c.at);
                }
                self.compact += 1;
                vec![Record::CompactCycle(c)]
            }
            None => {
                if records.iter().any(|r| matches!(r, Record::Cycle(_))) {
                    self.full += 1;
                }
                records
            }
        }
    }

    fn try_compact(&self, records: &[Record]) -> Option<CompactCycleRecord> {
        let Some(Record::Cycle(cycle)) = records.first() else {
            return None;
        };
        let carried = self.carried.of(&cycle.model);
        let keyframe_due = self
            .last_keyframe
            .is_none_or(|k| cycle.at.millis() - k.millis() >= KEYFRAME_EVERY_MS);
        let attempts: &[bool] = if keyframe_due || carried.is_none() {
            &[true]
        } else {
            &[false, true]
        };
        attempts.iter().find_map(|&keyframe| {
            let compact = compact_of(records, carried.filter(|_| !keyframe))?;
            (expand(&compact, carried).ok()? == records).then_some(compact)
        })
    }
}

/// The compact form of a cycle's records, building on `carried` (a keyframe without it);
/// `None` when the records are not of a form it holds.
fn compact_of(records: &[Record], carried: Option<&Carried>) -> Option<CompactCycleRecord> {
    let (cycle, rest) = match records {
        [Record::Cycle(c), rest @ ..] => (c, rest),
        _ => return None,
    };
    // The safety net's cycles, and fallbacks, are kept in full: they are what an incident
    // review reads, and the last-good index needs their flags.
    if cycle.safety_net || cycle.targets.iter().any(|t| t.fallback_source.is_some()) {
        return None;
    }
    let (capacity, prefill) = match rest {
        [] => (None, None),
        [Record::SloCapacity(s)] => (Some(s), None),
        [Record::SloCapacity(s), Record::PrefillFit(p)] => (Some(s), Some(p)),
        _ => return None,
    };
    let variants = cycle
        .variants
        .iter()
        .map(|v| {
            let target = cycle.targets.iter().find(|t| t.name == v.name)?.target;
            let before = carried.and_then(|k| k.variant(&v.name));
            let capacity = match capacity {
                None => None,
                Some(s) => {
                    let r = s.variants.iter().find(|r| r.name == v.name)?;
                    let prefill_fit = prefill
                        .and_then(|p| p.fits.iter().find(|(n, _)| *n == v.name).map(|(_, f)| *f));
                    Some(CompactCapacity {
                        serving: match &r.serving {
                            Some(s) => {
                                let now = compact_serving(s)?;
                                Some(match before.and_then(|b| b.serving.as_ref()) {
                                    Some(b) => difference(&now, b, |x, y| x - y),
                                    None => now,
                                })
                            }
                            None => None,
                        },
                        max_batch: r.max_batch,
                        min_replicas: r.min_replicas,
                        max_replicas: r.max_replicas,
                        carried: carried.is_none().then(|| CarriedState {
                            fit: r.fit,
                            prefill_fit,
                            recent: r.recent.clone(),
                        }),
                    })
                }
            };
            Some(CompactVariant {
                name: v.name.clone(),
                cost: v.cost,
                accelerator: v.accelerator.clone(),
                current_replicas: v.current_replicas,
                ready_replicas: v.ready_replicas,
                previous_desired: v.previous_desired,
                pods: v
                    .pods
                    .iter()
                    .map(|p| {
                        Some(CompactPod {
                            pod: p.pod.clone(),
                            kv_cache_usage: optional_units(p.kv_cache_usage, KV_CACHE)?
                                .map(|u| u - before.and_then(|b| b.kv_of(&p.pod)).unwrap_or(0)),
                            queue_length: optional_units(p.queue_length, REQUESTS)?,
                        })
                    })
                    .collect::<Option<_>>()?,
                target,
                capacity,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(CompactCycleRecord {
        model: cycle.model.clone(),
        at: cycle.at,
        builds_on: carried.map(|c| c.at),
        decided_by: DECIDED_BY.to_string(),
        mode: cycle.mode.clone(),
        config_version: cycle.config_version.clone(),
        thresholds: cycle.thresholds,
        metrics_error: cycle.metrics_error.clone(),
        trigger: cycle.trigger.clone(),
        capacity_settings: capacity.map(|s| CompactCapacitySettings {
            ttft_target_ms: s.ttft_target_ms,
            itl_target_ms: s.itl_target_ms,
            budget_share: s.budget_share,
            stabilization_cycles: s.stabilization_cycles,
            drain_s: s.drain_s,
            window_s: s.window_s,
        }),
        variants,
    })
}

/// `Some(None)` for an absent signal, `None` when a present one is not whole units.
fn optional_units(value: Option<f64>, scale: f64) -> Option<Option<i64>> {
    match value {
        None => Some(None),
        Some(v) => precision::units(v, scale).map(Some),
    }
}

fn compact_serving(s: &RecordedServing) -> Option<CompactServing> {
    Some(CompactServing {
        pods: s.pods,
        rate: precision::units(s.rate_rps, RATE)?,
        input_tokens: precision::units(s.mean_input_tokens, TOKENS)?,
        output_tokens: precision::units(s.mean_output_tokens, TOKENS)?,
        ttft: precision::units(s.ttft_ms, MILLIS)?,
        itl: precision::units(s.itl_ms, MILLIS)?,
        batch: precision::units(s.batch, REQUESTS)?,
        waiting: precision::units(s.waiting, REQUESTS)?,
        waiting_end: precision::units(s.waiting_end, REQUESTS)?,
    })
}

/// Field by field `op(a, b)`: a window as its difference from the previous one, and back.
fn difference(
    a: &CompactServing,
    b: &CompactServing,
    op: impl Fn(Units, Units) -> Units,
) -> CompactServing {
    CompactServing {
        pods: a.pods,
        rate: op(a.rate, b.rate),
        input_tokens: op(a.input_tokens, b.input_tokens),
        output_tokens: op(a.output_tokens, b.output_tokens),
        ttft: op(a.ttft, b.ttft),
        itl: op(a.itl, b.itl),
        batch: op(a.batch, b.batch),
        waiting: op(a.waiting, b.waiting),
        waiting_end: op(a.waiting_end, b.waiting_end),
    }
}

fn recorded_serving(s: &CompactServing) -> RecordedServing {
    RecordedServing {
        pods: s.pods,
        rate_rps: precision::value(s.rate, RATE),
        mean_input_tokens: precision::value(s.input_tokens, TOKENS),
        mean_output_tokens: precision::value(s.output_tokens, TOKENS),
        ttft_ms: precision::value(s.ttft, MILLIS),
        itl_ms: precision::value(s.itl, MILLIS),
        batch: precision::value(s.batch, REQUESTS),
        waiting: precision::value(s.waiting, REQUESTS),
        waiting_end: precision::value(s.waiting_end, REQUESTS),
    }
}

/// Why a compact record could not be rebuilt in full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrebuildable {
    #[error(
        "the record it builds on ({builds_on} ms) is not in the log (removed by retention, or never written)"
    )]
    MissingBase { builds_on: i64 },
    #[error("unknown mode {0:?}")]
    UnknownMode(String),
}

/// The full records of a compact cycle, rebuilt by deciding it again; `carried` is its model's
/// state after the record it builds on.
pub fn expand(
    c: &CompactCycleRecord,
    carried: Option<&Carried>,
) -> Result<Vec<Record>, Unrebuildable> {
    let base = match c.builds_on {
        None => None,
        Some(at) => match carried.filter(|k| k.at == at) {
            Some(k) => Some(k),
            None => {
                return Err(Unrebuildable::MissingBase {
                    builds_on: at.millis(),
                });
            }
        },
    };
    let mode = OperatingMode::from_name(&c.mode)
        .ok_or_else(|| Unrebuildable::UnknownMode(c.mode.clone()))?;
    let mut cycle = inputs_of(c, base);
    let capacity = c
        .capacity_settings
        .map(|settings| capacity_of(c, settings, base));
    let prefill = capacity.as_ref().and_then(|(_, fits)| {
        let fits: Vec<(String, RecordedLineFit)> = fits.clone();
        (!fits.is_empty()).then(|| PrefillFitRecord {
            model: c.model.clone(),
            at: c.at,
            fits,
        })
    });
    let analyzer = if capacity.is_some() {
        Analyzer::SloCapacity
    } else {
        Analyzer::SaturationV1
    };
    let recorded = Recorded {
        capacity: capacity.as_ref().map(|(s, _)| s),
        prefill: prefill.as_ref(),
        ..Recorded::alone(&cycle)
    };
    let decided = redecide(recorded, mode, analyzer, &recorded_thresholds(&cycle));
    let slo = match (&capacity, &decided.slo_capacity) {
        (Some((shell, _)), Some(outcome)) => {
            let (views, config) = recorded_capacity_views(&cycle, shell, prefill.as_ref(), None);
            Some((
                slo_capacity_record(&c.model, c.at, &views, &config, outcome),
                prefill_fit_record(&c.model, c.at, &views),
            ))
        }
        _ => None,
    };
    let d = &decided.decision;
    cycle.analysis = recorded_analysis(&d.analysis);
    cycle.in_transition = d.in_transition;
    cycle.safety_net = d.safety_net;
    cycle.targets = d
        .variants
        .iter()
        .map(|v| {
            let decided = c.variants.iter().find(|k| k.name == v.name).map(|k| k.target);
            let mut reason = v.reason.clone();
            // Written by this build, the rebuild is what was decided (the writer checked);
            // another build's policy may say otherwise, and the recorded count stands.
            if c.decided_by != DECIDED_BY {
                reason = match decided.filter(|d| *d != v.target) {
                    Some(d) => format!(
                        "decided {d} by version {}; version {DECIDED_BY} would decide {}: {reason}",
                        c.decided_by, v.target
                    ),
                    None => format!(
                        "(reason rebuilt by version {DECIDED_BY} for a decision of version {}) {reason}",
                        c.decided_by
                    ),
                };
            }
            RecordedTarget {
                name: v.name.clone(),
                target: decided.unwrap_or(v.target),
                action: v.action.as_str().to_string(),
                reason,
                fallback_source: v.fallback_source.map(|s| s.as_str().to_string()),
            }
        })
        .collect();
    let mut out = vec![Record::Cycle(cycle)];
    if let Some((slo, prefill)) = slo {
        out.push(Record::SloCapacity(slo));
        out.extend(prefill.map(Record::PrefillFit));
    }
    Ok(out)
}

/// The cycle record's inputs (its decision left empty); `base` is the state the record builds
/// on (its KV-cache signals are differences from it).
fn inputs_of(c: &CompactCycleRecord, base: Option<&Carried>) -> CycleRecord {
    CycleRecord {
        model: c.model.clone(),
        at: c.at,
        mode: c.mode.clone(),
        config_version: c.config_version.clone(),
        thresholds: c.thresholds,
        metrics_error: c.metrics_error.clone(),
        variants: c
            .variants
            .iter()
            .map(|v| {
                let before = base.and_then(|b| b.variant(&v.name));
                RecordedVariant {
                    name: v.name.clone(),
                    cost: v.cost,
                    accelerator: v.accelerator.clone(),
                    current_replicas: v.current_replicas,
                    ready_replicas: v.ready_replicas,
                    previous_desired: v.previous_desired,
                    pods: v
                        .pods
                        .iter()
                        .map(|p| RecordedPod {
                            pod: p.pod.clone(),
                            kv_cache_usage: p.kv_cache_usage.map(|u| {
                                let was = before.and_then(|b| b.kv_of(&p.pod)).unwrap_or(0);
                                precision::value(u + was, KV_CACHE)
                            }),
                            queue_length: p.queue_length.map(|u| precision::value(u, REQUESTS)),
                        })
                        .collect(),
                }
            })
            .collect(),
        analysis: RecordedAnalysis::default(),
        in_transition: false,
        safety_net: false,
        targets: Vec::new(),
        trigger: c.trigger.clone(),
    }
}

/// The analyzer's inputs of a compact cycle (its estimates left empty), and the prefill lines:
/// the carried state from the keyframe, or rebuilt from the previous cycle's as the variant
/// actor learns it (one window on top of the lines it had) and as the supervisor keeps the
/// stabilisation window (the previous recommendation joins it, the oldest leave).
fn capacity_of(
    c: &CompactCycleRecord,
    settings: CompactCapacitySettings,
    base: Option<&Carried>,
) -> (SloCapacityRecord, Vec<(String, RecordedLineFit)>) {
    let window = settings.stabilization_cycles as usize;
    let mut prefill_fits = Vec::new();
    let variants = c
        .variants
        .iter()
        .filter_map(|v| {
            let cap = v.capacity.as_ref()?;
            let before = base.and_then(|b| b.variant(&v.name));
            let serving = cap.serving.as_ref().map(|s| {
                recorded_serving(&match before.and_then(|b| b.serving.as_ref()) {
                    Some(b) => difference(s, b, |x, y| x + y),
                    None => *s,
                })
            });
            let (fit, prefill_fit, recent) = match &cap.carried {
                Some(k) => (k.fit, k.prefill_fit, k.recent.clone()),
                None => {
                    let mut itl = ItlFit {
                        line: before.and_then(|b| b.fit.as_ref()).map(fit_of),
                    };
                    let mut ttft = TtftFit {
                        line: before.and_then(|b| b.prefill_fit.as_ref()).map(fit_of),
                    };
                    if let Some(s) = &serving {
                        let summary = serving_of(s);
                        itl.observe(&summary);
                        ttft.observe(&summary);
                    }
                    let mut recent: Vec<u32> = before.map(|b| b.recent.clone()).unwrap_or_default();
                    if let Some(b) = before {
                        recent.push(b.recommended);
                    }
                    let excess = recent.len().saturating_sub(window);
                    recent.drain(..excess);
                    (
                        itl.line.as_ref().map(recorded_fit),
                        ttft.line.as_ref().map(recorded_fit),
                        recent,
                    )
                }
            };
            if let Some(f) = prefill_fit {
                prefill_fits.push((v.name.clone(), f));
            }
            Some(RecordedCapacityVariant {
                name: v.name.clone(),
                serving,
                fit,
                max_batch: cap.max_batch,
                min_replicas: cap.min_replicas,
                max_replicas: cap.max_replicas,
                recent,
                per_replica_rps: None,
                recommended: 0,
                note: String::new(),
            })
        })
        .collect();
    (
        SloCapacityRecord {
            model: c.model.clone(),
            at: c.at,
            ttft_target_ms: settings.ttft_target_ms,
            itl_target_ms: settings.itl_target_ms,
            budget_share: settings.budget_share,
            stabilization_cycles: settings.stabilization_cycles,
            drain_s: settings.drain_s,
            window_s: settings.window_s,
            demand_rps: 0.0,
            variants,
        },
        prefill_fits,
    )
}

/// A compact record that cannot be rebuilt, read as what it keeps: its inputs and desired
/// counts, with why its reasons are not there.
fn unrebuilt(c: &CompactCycleRecord, why: &Unrebuildable) -> Record {
    let mut cycle = inputs_of(c, None);
    if c.builds_on.is_some() {
        // Kept as differences from the missing record: unknown.
        for pod in cycle.variants.iter_mut().flat_map(|v| v.pods.iter_mut()) {
            pod.kv_cache_usage = None;
        }
    }
    cycle.targets = c
        .variants
        .iter()
        .map(|v| RecordedTarget {
            name: v.name.clone(),
            target: v.target,
            action: String::new(),
            reason: format!("reason not kept: {why}"),
            fallback_source: None,
        })
        .collect();
    Record::Cycle(cycle)
}

/// Records in log order with every compact record rebuilt in full (or, where its predecessor
/// is gone, as its inputs and desired counts); returns how many could not be rebuilt.
pub fn expand_all(records: Vec<(u64, Record)>) -> (Vec<(u64, Record)>, u64) {
    let mut carried = CarriedByModel::default();
    let mut out = Vec::with_capacity(records.len() * 2);
    let mut unrebuilt_count = 0;
    for (seq, record) in records {
        match record {
            Record::CompactCycle(c) => match expand(&c, carried.of(&c.model)) {
                Ok(full) => {
                    for r in full {
                        carried.follow(&r);
                        out.push((seq, r));
                    }
                }
                Err(why) => {
                    unrebuilt_count += 1;
                    out.push((seq, unrebuilt(&c, &why)));
                }
            },
            other => {
                carried.follow(&other);
                out.push((seq, other));
            }
        }
    }
    (out, unrebuilt_count)
}

/// The log's history under `filter`, compact records rebuilt: reads from far enough before
/// `filter.since` to reach a keyframe, rebuilds, then keeps what the filter asks for.
pub fn read_history(
    log: &dyn wva_storage::DecisionLog,
    filter: &HistoryFilter,
) -> Result<History, wva_storage::LogError> {
    let widened = HistoryFilter {
        since: filter.since.map(|t| t.plus_millis(-KEYFRAME_EVERY_MS - 1)),
        ..filter.clone()
    };
    let history = log.history(&widened)?;
    let (records, unrebuilt) = expand_all(history.records);
    if unrebuilt > 0 {
        tracing::warn!(
            records = unrebuilt,
            "decision log records read without their reasons: the records they build on are \
             gone (removed by retention, or never written); their inputs and desired counts \
             are shown"
        );
    }
    Ok(History {
        records: records
            .into_iter()
            .filter(|(_, r)| filter.matches(r))
            .collect(),
        undecodable: history.undecodable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::cycle::{CycleInputs, decide_cycle};
    use crate::policy::{ReplicaSignals, Thresholds, VariantInput};
    use crate::record::{CycleFacts, cycle_record};

    fn model() -> ModelKey {
        ModelKey::new("llm", "m")
    }

    /// The records the controller writes for one `saturation-v1` cycle of a two-pod variant.
    fn cycle(at_s: i64, kv: [f64; 2], previous: Option<u32>) -> Vec<Record> {
        let inputs = vec![VariantInput {
            name: "v".into(),
            cost: 10.0,
            accelerator: "H100".into(),
            current_replicas: 2,
            ready_replicas: 2,
            previous_desired: previous,
            replicas: kv
                .iter()
                .enumerate()
                .map(|(i, kv)| {
                    precision::replica(ReplicaSignals {
                        pod: format!("v-{i}"),
                        kv_cache_usage: Some(*kv),
                        queue_length: Some(1.0),
                    })
                })
                .collect(),
        }];
        let thresholds = Thresholds::default();
        let decided = decide_cycle(CycleInputs::capacity(&thresholds, &inputs));
        vec![Record::Cycle(cycle_record(CycleFacts {
            model: &model(),
            at: Timestamp(at_s * 1000),
            mode: OperatingMode::CapacityOnly,
            config_version: "v1",
            thresholds,
            metrics_error: None,
            inputs: &inputs,
            decision: &decided.decision,
            trigger: "tick",
        }))]
    }

    fn day() -> Vec<Vec<Record>> {
        (0..12)
            .map(|i| {
                let kv = 0.3 + 0.05 * i as f64;
                cycle(i * 15, [kv, kv + 0.123_456], (i > 0).then_some(2))
            })
            .collect()
    }

    fn written(compactor: &mut Compactor, cycles: &[Vec<Record>]) -> Vec<(u64, Record)> {
        cycles
            .iter()
            .flat_map(|c| compactor.compact(c.clone()))
            .enumerate()
            .map(|(seq, r)| (seq as u64, r))
            .collect()
    }

    #[test]
    fn cycles_are_written_compact_and_read_back_as_decided() {
        let cycles = day();
        let mut compactor = Compactor::default();
        let log = written(&mut compactor, &cycles);
        assert_eq!((compactor.compact, compactor.full), (12, 0));
        let kinds: Vec<Option<Timestamp>> = log
            .iter()
            .map(|(_, r)| match r {
                Record::CompactCycle(c) => c.builds_on,
                other => panic!("written in full: {other:?}"),
            })
            .collect();
        assert_eq!(kinds[0], None, "the first record is a keyframe");
        assert!(
            kinds[1..]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == Some(Timestamp(i as i64 * 15_000))),
            "each builds on the cycle before: {kinds:?}"
        );
        let (read, unrebuilt) = expand_all(log);
        assert_eq!(unrebuilt, 0);
        let expected: Vec<Record> = cycles.into_iter().flatten().collect();
        let read: Vec<Record> = read.into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            read, expected,
            "reasons, analysis and actions rebuilt exactly"
        );
        // A keyframe is due again once its span has passed.
        let mut compactor = Compactor::default();
        let late = cycle(KEYFRAME_EVERY_MS / 1000, [0.5, 0.5], Some(2));
        written(&mut compactor, &[cycle(0, [0.5, 0.5], None)]);
        match &compactor.compact(late)[0] {
            Record::CompactCycle(c) => assert_eq!(c.builds_on, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_history_from_a_time_reads_back_to_its_keyframe() {
        let mut log = wva_storage::MemoryLog::in_memory(Default::default());
        let mut compactor = Compactor::default();
        // One cycle a minute for two keyframe spans and ten minutes: keyframes at 0, one span
        // and two spans.
        let span_min = KEYFRAME_EVERY_MS / 60_000;
        let cycles: Vec<Vec<Record>> = (0..2 * span_min + 10)
            .map(|m| cycle(m * 60, [0.3, 0.4], (m > 0).then_some(2)))
            .collect();
        for c in &cycles {
            for r in compactor.compact(c.clone()) {
                wva_storage::DecisionLog::append(&mut log, &r).expect("append");
            }
        }
        // A minute before the second keyframe: that record builds on the first span's.
        let from = 2 * span_min - 1;
        let read = read_history(
            &log,
            &HistoryFilter {
                since: Some(Timestamp(from * 60_000)),
                ..Default::default()
            },
        )
        .expect("history");
        let expected: Vec<Record> = cycles[from as usize..].iter().flatten().cloned().collect();
        let read: Vec<Record> = read.records.into_iter().map(|(_, r)| r).collect();
        assert_eq!(read, expected, "rebuilt from the keyframe a span before");
    }

    #[test]
    fn a_cycle_the_rebuild_would_not_reproduce_is_written_in_full() {
        let mut compactor = Compactor::default();
        // A reason the policy would not give (an edited or a foreign record).
        let mut edited = cycle(0, [0.4, 0.4], None);
        if let Record::Cycle(c) = &mut edited[0] {
            c.targets[0].reason.push_str(" (edited)");
        }
        assert_eq!(compactor.compact(edited.clone()), edited);
        // Signals finer than the recorded precision cannot be kept as units.
        let mut fine = cycle(15, [0.4, 0.4], Some(2));
        if let Record::Cycle(c) = &mut fine[0] {
            c.variants[0].pods[0].kv_cache_usage = Some(0.123_456_789);
        }
        assert_eq!(compactor.compact(fine.clone()), fine);
        // The safety net's cycles are kept in full for the incident review.
        let mut net = cycle(30, [0.4, 0.4], Some(2));
        if let Record::Cycle(c) = &mut net[0] {
            c.safety_net = true;
        }
        assert_eq!(compactor.compact(net.clone()), net);
        // Records of other kinds beside the cycle keep it in full too.
        let mut beside = cycle(45, [0.4, 0.4], Some(2));
        beside.push(Record::Demand(wva_storage::DemandRecord {
            model: model(),
            at: Timestamp(45_000),
            epp_queue: 3.0,
        }));
        assert_eq!(compactor.compact(beside.clone()), beside);
        assert_eq!((compactor.compact, compactor.full), (0, 4));
    }

    #[test]
    fn a_record_whose_predecessor_is_gone_keeps_its_counts_and_says_why() {
        let cycles = day();
        let mut log = written(&mut Compactor::default(), &cycles);
        // Retention took the keyframe.
        log.remove(0);
        let (read, unrebuilt) = expand_all(log);
        assert_eq!(unrebuilt, 11, "every record up to the next keyframe");
        let Record::Cycle(c) = &read[0].1 else {
            panic!("{:?}", read[0]);
        };
        let Record::Cycle(decided) = &cycles[1][0] else {
            unreachable!()
        };
        assert_eq!(c.targets[0].target, decided.targets[0].target);
        assert!(
            c.targets[0].reason.starts_with("reason not kept:")
                && c.targets[0].reason.contains("not in the log"),
            "{}",
            c.targets[0].reason
        );
        assert_eq!(
            c.variants[0].pods[0].kv_cache_usage, None,
            "kept as a difference from the missing record: unknown, not wrong"
        );
        assert_eq!(c.variants[0].pods[0].queue_length, Some(1.0));
    }

    #[test]
    fn a_record_of_another_version_keeps_its_count_and_says_whose_reason_it_reads() {
        let mut log = written(&mut Compactor::default(), &day()[..1]);
        let Record::CompactCycle(c) = &mut log[0].1 else {
            panic!("{:?}", log[0]);
        };
        c.decided_by = "0.0.1".into();
        let decided = c.variants[0].target;
        c.variants[0].target = decided + 3;
        let (read, _) = expand_all(log);
        let Record::Cycle(r) = &read[0].1 else {
            panic!("{:?}", read[0]);
        };
        assert_eq!(
            r.targets[0].target,
            decided + 3,
            "the recorded count stands"
        );
        assert!(
            r.targets[0].reason.starts_with(&format!(
                "decided {} by version 0.0.1; version",
                decided + 3
            )),
            "{}",
            r.targets[0].reason
        );
    }
}
