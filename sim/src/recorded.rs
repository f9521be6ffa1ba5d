//! The demand a decision log recorded, as the load of the emulated cluster (`wva simulate
//! --from-log`): a user sees the attainment and cost another policy or configuration would have
//! had on their own day, not only its decisions.
//!
//! What the log holds, per model and cycle, is what `slo-capacity` read from the servers over
//! its window: each variant's served request rate and mean prompt and output lengths. From those
//! the load is rebuilt cycle by cycle, each cycle's means standing for the middle of the window
//! they were read over: Poisson arrivals at the served rate, and log-normal lengths
//! (coefficient of variation 1, at most ten times the mean) around the recorded means.
//!
//! What it cannot rebuild: the arrivals within a window (their burstiness), the spread of
//! lengths and their tail, requests that were offered but not served (refused, timed out, or
//! still queued in the scheduler: the served rate understates an overload), changes faster
//! than the window (it averages them), and prefix-cache hits. The variants (name, accelerator,
//! price, replicas at the start) are the log's; an accelerator must be one the emulator has a
//! profile of (H100, A100, L40S, named anywhere in the accelerator's name).

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, LogNormal};
use wva_storage::{CycleRecord, Record, SloCapacityRecord};

use crate::scenario::{Scenario, VariantScenario};
use crate::server::Request;

/// The accelerators the emulator has profiles of.
const KNOWN: [&str; 3] = ["H100", "A100", "L40S"];

/// One window of recorded demand.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
    pub rate_rps: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
}

/// A model's recorded day: its variants and its demand, window by window.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedDemand {
    pub namespace: String,
    pub model_id: String,
    pub variants: Vec<VariantScenario>,
    pub windows: Vec<Window>,
    /// The log's cycle interval (the median spacing of its cycles).
    pub interval_s: f64,
}

/// A model's records: what `slo-capacity` saw each cycle, and its first cycle.
type ModelRecords<'a> = (Vec<&'a SloCapacityRecord>, Option<&'a CycleRecord>);

/// The demand of `model` (`namespace/modelID`, or a modelID when it is unique) in a log's
/// records; without `model`, the log's one model.
pub fn from_records(
    records: &[(u64, Record)],
    model: Option<&str>,
) -> Result<RecordedDemand, String> {
    let mut by_model: BTreeMap<(String, String), ModelRecords> = BTreeMap::new();
    for (_, record) in records {
        match record {
            Record::SloCapacity(c) => by_model
                .entry((c.model.namespace.clone(), c.model.model_id.clone()))
                .or_default()
                .0
                .push(c),
            Record::Cycle(c) => {
                let entry = by_model
                    .entry((c.model.namespace.clone(), c.model.model_id.clone()))
                    .or_default();
                entry.1.get_or_insert(c);
            }
            _ => {}
        }
    }
    by_model.retain(|_, (served, _)| !served.is_empty());
    let names: Vec<String> = by_model.keys().map(|(ns, m)| format!("{ns}/{m}")).collect();
    if names.is_empty() {
        return Err("the log records no served demand: it holds no cycle decided by the default analyzer (slo-capacity), whose records carry each variant's request rate and token lengths".into());
    }
    let key = match model {
        Some(wanted) => by_model
            .keys()
            .find(|(ns, m)| format!("{ns}/{m}") == wanted || m == wanted)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "--from-log-model: expected one of {}, got {wanted:?}",
                    names.join(", ")
                )
            })?,
        None if by_model.len() == 1 => by_model.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(format!(
                "the log records several models; name one with --from-log-model: {}",
                names.join(", ")
            ));
        }
    };
    let (mut served, first_cycle) = by_model.remove(&key).unwrap_or_default();
    served.sort_by_key(|c| c.at);
    let first_cycle = first_cycle.ok_or_else(|| format!("{}/{}: no cycle record", key.0, key.1))?;
    let variants = variants_of(first_cycle, &served)?;
    // A cycle's rates are means over the window before it: they stand for the window's middle.
    let times: Vec<f64> = served
        .iter()
        .map(|c| c.at.0 as f64 / 1e3 - c.window_s.max(0.0) / 2.0)
        .collect();
    let mut gaps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let interval_s = gaps.get(gaps.len() / 2).copied().unwrap_or(15.0);
    let origin = times.first().copied().unwrap_or(0.0);
    let windows = served
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let start_s = times[i] - origin;
            let end_s = times
                .get(i + 1)
                .map_or(start_s + interval_s, |t| t - origin);
            window(c, start_s, end_s)
        })
        .collect();
    Ok(RecordedDemand {
        namespace: key.0,
        model_id: key.1,
        variants,
        windows,
        interval_s,
    })
}

/// The demand of one cycle: the variants' served rates added, their lengths weighted by rate.
fn window(c: &SloCapacityRecord, start_s: f64, end_s: f64) -> Window {
    let served: Vec<_> = c
        .variants
        .iter()
        .filter_map(|v| v.serving.as_ref())
        .collect();
    let rate: f64 = served.iter().map(|s| s.rate_rps.max(0.0)).sum();
    let weighted = |f: fn(&wva_storage::RecordedServing) -> f64| {
        if rate > 0.0 {
            served
                .iter()
                .map(|s| s.rate_rps.max(0.0) * f(s))
                .sum::<f64>()
                / rate
        } else {
            0.0
        }
    };
    Window {
        start_s,
        end_s,
        rate_rps: rate,
        mean_input_tokens: weighted(|s| s.mean_input_tokens),
        mean_output_tokens: weighted(|s| s.mean_output_tokens),
    }
}

fn variants_of(
    cycle: &CycleRecord,
    served: &[&SloCapacityRecord],
) -> Result<Vec<VariantScenario>, String> {
    cycle
        .variants
        .iter()
        .map(|v| {
            let upper = v.accelerator.to_ascii_uppercase();
            let accelerator = KNOWN
                .iter()
                .find(|k| upper.contains(*k))
                .ok_or_else(|| {
                    format!(
                        "variant {}: accelerator {:?} has no emulated profile; expected a name containing H100, A100 or L40S",
                        v.name, v.accelerator
                    )
                })?;
            let bound = served
                .iter()
                .flat_map(|c| c.variants.iter().filter(|x| x.name == v.name))
                .filter_map(|x| x.max_replicas)
                .max();
            Ok(VariantScenario {
                name: v.name.clone(),
                accelerator: (*accelerator).to_string(),
                cost_per_hour: v.cost,
                initial_replicas: v.current_replicas.max(1),
                max_replicas: bound.unwrap_or(12).max(1),
            })
        })
        .collect()
}

impl RecordedDemand {
    /// The requests, window by window. Same seed, same requests.
    pub fn generate(&self, seed: u64) -> Vec<Request> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for w in self.windows.iter().filter(|w| w.rate_rps > 0.0) {
            let (Ok(gap), Some(prompt), Some(output)) = (
                Exp::new(w.rate_rps),
                lengths(w.mean_input_tokens),
                lengths(w.mean_output_tokens),
            ) else {
                continue;
            };
            let mut t = w.start_s;
            loop {
                t += gap.sample(&mut rng);
                if t >= w.end_s {
                    break;
                }
                out.push(Request {
                    id: out.len() as u64,
                    arrival_ms: t * 1e3,
                    prompt_tokens: draw(&prompt, w.mean_input_tokens, &mut rng),
                    output_tokens: draw(&output, w.mean_output_tokens, &mut rng),
                });
            }
        }
        out
    }

    /// The emulated cluster of the log's variants, fed by the recorded demand.
    pub fn scenario(&self, seed: u64, duration_s: Option<f64>) -> Scenario {
        let span = self.windows.last().map_or(0.0, |w| w.end_s);
        let mut scenario = crate::scenario::trace(self.generate(seed), duration_s.or(Some(span)));
        scenario.namespace = self.namespace.clone();
        scenario.model_id = self.model_id.clone();
        scenario.variants = self.variants.clone();
        scenario.control_interval_s = self.interval_s;
        scenario
    }
}

/// A length from `d`, at most ten times the window's mean: the log holds only means, and an
/// unbounded tail would invent prompts far longer than any the servers saw.
fn draw(d: &LogNormal<f64>, mean: f64, rng: &mut StdRng) -> u32 {
    let cap = (mean * 10.0).clamp(1.0, 1e6);
    d.sample(rng).round().clamp(1.0, cap) as u32
}

/// Log-normal lengths of coefficient of variation 1 around `mean`.
fn lengths(mean: f64) -> Option<LogNormal<f64>> {
    let sigma2 = 2f64.ln();
    LogNormal::new(mean.max(1.0).ln() - sigma2 / 2.0, sigma2.sqrt()).ok()
}
