//! A recorded cycle decided again from its records alone: what `wva replay` runs, and what
//! rebuilds the decision log's compact records (see [`crate::compact`]).

use wva_storage::{
    CycleRecord, DemandRecord, ForecastRecord, ModelBasedRecord, PrefillFitRecord, RolesRecord,
    SloCapacityRecord,
};

use crate::policy::cycle::{CycleDecision, CycleInputs, decide_cycle};
use crate::policy::roles::Role;
use crate::policy::{Analyzer, OperatingMode, Thresholds};
use crate::record::{
    recorded_capacity_views, recorded_inputs, recorded_model_inputs, recorded_request_count,
};

/// A recorded cycle and the records written beside it (same model and time).
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub cycle: &'a CycleRecord,
    pub model_based: Option<&'a ModelBasedRecord>,
    pub capacity: Option<&'a SloCapacityRecord>,
    pub prefill: Option<&'a PrefillFitRecord>,
    pub forecast: Option<&'a ForecastRecord>,
    pub demand: Option<&'a DemandRecord>,
    pub roles: Option<&'a RolesRecord>,
    /// The request series was absent (not flat) over the scale-to-zero window.
    pub series_missing: bool,
}

impl<'a> Recorded<'a> {
    /// A cycle with nothing recorded beside it.
    pub fn alone(cycle: &'a CycleRecord) -> Self {
        Self {
            cycle,
            model_based: None,
            capacity: None,
            prefill: None,
            forecast: None,
            demand: None,
            roles: None,
            series_missing: false,
        }
    }
}

/// Decides a recorded cycle again in `mode` with `analyzer` and `thresholds`, from the records
/// beside it.
pub fn redecide(
    recorded: Recorded<'_>,
    mode: OperatingMode,
    analyzer: Analyzer,
    thresholds: &Thresholds,
) -> CycleDecision {
    let Recorded {
        cycle: record,
        model_based: extras,
        capacity,
        prefill,
        forecast,
        demand,
        roles,
        series_missing,
    } = recorded;
    let inputs = recorded_inputs(record);
    // Roles in the order of the inputs; a variant the record does not name is an ordinary one.
    let roles: Vec<Role> = roles.map_or_else(Vec::new, |r| {
        inputs
            .iter()
            .map(|v| {
                Role::from_label(
                    r.roles
                        .iter()
                        .find(|(name, _)| *name == v.name)
                        .map(|(_, role)| role.as_str()),
                )
            })
            .collect()
    });
    let model_inputs = extras.map(recorded_model_inputs);
    let request_count = extras.and_then(|e| recorded_request_count(e, series_missing));
    let views = capacity.map(|r| recorded_capacity_views(record, r, prefill, forecast));
    decide_cycle(CycleInputs {
        mode,
        thresholds,
        variants: &inputs,
        metrics_error: record.metrics_error.as_deref(),
        model_based: model_inputs.as_ref(),
        scale_to_zero: extras.is_some_and(|e| e.scale_to_zero),
        request_count: request_count.as_ref(),
        analyzer,
        slo_capacity: views.as_ref().map(|(v, c)| (v.as_slice(), c)),
        held_requests: demand.map(|d| d.epp_queue),
        roles: &roles,
    })
}
