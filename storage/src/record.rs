//! The persistent record schema. Changing a type here changes what is on disk: bump
//! [`crate::codec::FORMAT_VERSION`] and keep reading the old version, or add new enum variants at
//! the end (bincode tags variants by index).

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. Virtual in simulations, real in `wva run`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

/// A model: all VAs with this `modelID` in this namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelKey {
    pub namespace: String,
    pub model_id: String,
}

impl ModelKey {
    pub fn new(namespace: impl Into<String>, model_id: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            model_id: model_id.into(),
        }
    }
}

impl std::fmt::Display for ModelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.model_id)
    }
}

/// A variant: one VA (or one discovered Deployment) in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VariantKey {
    pub namespace: String,
    pub name: String,
}

impl VariantKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for VariantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The last desired count a successful analysis produced for a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastGood {
    pub desired: u32,
    pub at: Timestamp,
}

/// The saturation thresholds in force.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedThresholds {
    pub kv_cache_threshold: f64,
    pub queue_length_threshold: f64,
    pub kv_spare_trigger: f64,
    pub queue_spare_trigger: f64,
}

/// One pod's signals as the policy saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedPod {
    pub pod: String,
    pub kv_cache_usage: Option<f64>,
    pub queue_length: Option<f64>,
}

/// One variant's inputs as the policy saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedVariant {
    pub name: String,
    pub cost: f64,
    pub accelerator: String,
    pub current_replicas: u32,
    pub ready_replicas: u32,
    pub previous_desired: Option<u32>,
    pub pods: Vec<RecordedPod>,
}

/// The pooled capacity analysis.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedAnalysis {
    pub total_replicas: u32,
    pub non_saturated_replicas: u32,
    pub avg_spare_kv: f64,
    pub avg_spare_queue: f64,
    pub should_scale_up: bool,
    pub scale_down_safe: bool,
    pub reason: String,
}

/// One variant's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedTarget {
    pub name: String,
    pub target: u32,
    /// `scale-up`, `scale-down` or `no-change`.
    pub action: String,
    pub reason: String,
    /// `previous-desired` or `current-replicas` when the safety net chose the target.
    pub fallback_source: Option<String>,
}

/// One model in one cycle: everything the decision depended on, and the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CycleRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    /// `capacity-only`, `hybrid` or `model-only`.
    pub mode: String,
    /// Identifies the configuration in force (a digest of the ConfigMap data).
    pub config_version: String,
    pub thresholds: RecordedThresholds,
    /// Why metrics could not be used this cycle (Prometheus unreachable, query error).
    pub metrics_error: Option<String>,
    pub variants: Vec<RecordedVariant>,
    pub analysis: RecordedAnalysis,
    pub in_transition: bool,
    pub safety_net: bool,
    pub targets: Vec<RecordedTarget>,
    /// What started the cycle: `tick`, `deployment-created`, ...
    pub trigger: String,
}

/// One fitted line of a latency learner (`y = intercept + slope·x`, recursive least squares).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedLineFit {
    pub intercept: f64,
    pub slope: f64,
    pub covariance: [f64; 4],
    pub residual_variance: f64,
    pub accepted: u32,
    pub rejected: u32,
    pub rejected_in_a_row: u32,
}

/// A variant's latency learner: decode step against batch size, prefill against prompt tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedLearner {
    pub decode: Option<RecordedLineFit>,
    pub prefill: Option<RecordedLineFit>,
}

/// What the model served in the window a hybrid decision used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedWorkload {
    pub arrival_rps: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
}

/// One variant of a model-based (hybrid or model-only) decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedModelVariant {
    pub name: String,
    pub cost: f64,
    pub max_batch: u32,
    /// The learner after this cycle's observation.
    pub learner: RecordedLearner,
    /// SLO-bound requests per second of one replica, when the parameters are known.
    pub rate_per_replica: Option<f64>,
    pub capacity_target: u32,
    pub model_target: Option<u32>,
    pub target: u32,
    /// `capacity`, `model` or `hold`.
    pub winner: String,
    /// The arbitration rule that decided (`capacity-veto`, `model-up`, ...).
    pub rule: String,
}

/// The model-based side of a cycle (optimizer inputs, learner states, arbitration) and its
/// scale-to-zero inputs, recorded next to its [`CycleRecord`] (same model and time) in hybrid
/// and model-only modes, and wherever scale to zero is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelBasedRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    pub mode: String,
    pub workload: Option<RecordedWorkload>,
    pub ttft_target_ms: f64,
    pub itl_target_ms: f64,
    pub proposal_reason: String,
    pub variants: Vec<RecordedModelVariant>,
    /// Whether scale to zero was on for the model.
    pub scale_to_zero: bool,
    /// Successful requests over the retention window (when read). "No series" is recorded as 0
    /// with a [`RequestSeriesMissingRecord`] beside it (older logs have the 0 alone).
    pub request_count: Option<f64>,
    /// Why the request count could not be read.
    pub request_count_error: Option<String>,
    /// Set when scale to zero took every variant to 0, with why.
    pub scaled_to_zero: Option<String>,
}

/// What one variant's reporting servers did over the window the `slo-capacity` analyzer read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedServing {
    pub pods: u32,
    pub rate_rps: f64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
    pub ttft_ms: f64,
    pub itl_ms: f64,
    pub batch: f64,
    pub waiting: f64,
    /// Waiting requests at the window's end (logs written before it was read hold the window's
    /// highest queue here).
    #[serde(alias = "waitingPeak")]
    pub waiting_end: f64,
}

/// One variant as the `slo-capacity` analyzer saw and judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedCapacityVariant {
    pub name: String,
    pub serving: Option<RecordedServing>,
    /// The ITL line after this cycle's window.
    pub fit: Option<RecordedLineFit>,
    pub max_batch: u32,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
    /// Recommendations of the previous cycles in the stabilisation window, oldest first.
    pub recent: Vec<u32>,
    /// Requests per second one replica carries within the budget, when known.
    pub per_replica_rps: Option<f64>,
    /// What demand alone asked for, before stabilisation.
    pub recommended: u32,
    pub note: String,
}

/// The `slo-capacity` side of a cycle, recorded next to its [`CycleRecord`] (same model and
/// time) whenever that analyzer decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloCapacityRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    pub ttft_target_ms: f64,
    pub itl_target_ms: f64,
    pub budget_share: f64,
    pub stabilization_cycles: u32,
    pub drain_s: f64,
    pub window_s: f64,
    pub demand_rps: f64,
    pub variants: Vec<RecordedCapacityVariant>,
}

/// Demand that no pod of the model reports, recorded next to its [`CycleRecord`] (same model
/// and time) when there was some: requests held in the llm-d scheduler's flow-control queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemandRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    /// Requests in the EPP flow-control queue for the model.
    pub epp_queue: f64,
}

/// The roles of a model's variants (prefill, decode), recorded next to its [`CycleRecord`]
/// when some variant has one: each role was decided apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolesRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    /// (variant, role) for every variant, `both` included.
    pub roles: Vec<(String, String)>,
}

/// The model's request series was absent over its scale-to-zero window, recorded next to its
/// [`ModelBasedRecord`] (same model and time): absent is not the same as flat, since a failing
/// scrape also makes a series absent, so replay must know which it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestSeriesMissingRecord {
    pub model: ModelKey,
    pub at: Timestamp,
}

/// The `slo-capacity` analyzer's prefill lines (TTFT against prompt tokens held), recorded
/// next to its [`SloCapacityRecord`] (same model and time) when some variant has one: the
/// second phase its capacity is bounded by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefillFitRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    /// (variant, its prefill line after this cycle's window).
    pub fits: Vec<(String, RecordedLineFit)>,
}

/// The demand forecast the `slo-capacity` analyzer sized for, recorded next to its
/// [`SloCapacityRecord`] (same model and time) when the forecast is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForecastRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    /// The start-up time measured from the model's replicas (the horizon), seconds; `None`
    /// before one was measured.
    pub horizon_s: Option<f64>,
    /// The trend after this cycle: level (requests per second) and slope (per second).
    pub level_rps: f64,
    pub slope: f64,
    /// What the analyzer sized for, when the forecast was ahead of the demand now.
    pub forecast_rps: Option<f64>,
}

/// One variant's claim on a limited accelerator pool in a cycle, and what it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedClaim {
    pub variant: VariantKey,
    pub model_id: String,
    pub accelerator: String,
    pub gpus_per_replica: u32,
    pub priority: i64,
    /// What the model's decision wanted (its cycle record's target).
    pub wanted: u32,
    /// Replicas its scaler keeps whatever is published.
    pub floor: u32,
    /// Replicas it had: what it holds until its scaler removes them.
    pub current: u32,
    /// What was published.
    pub granted: u32,
}

/// A cycle in which the models' wanted replicas did not fit the accelerator pool: the pool,
/// every claim on its limited types, and what each was given. Written once per cycle under
/// [`ScarcityRecord::key`], after the models' own records, so `wva replay` can fit the replayed
/// decisions into the same pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScarcityRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    /// GPUs per limited accelerator type.
    pub pool: Vec<(String, u32)>,
    /// (namespace, accelerator, GPUs) quotas.
    pub quotas: Vec<(String, String, u32)>,
    pub claims: Vec<RecordedClaim>,
}

impl ScarcityRecord {
    /// The key scarcity records are kept under: the pool is shared by every model, so it
    /// belongs to none (no namespace or model ID can be empty).
    pub fn key() -> ModelKey {
        ModelKey::new("", "")
    }
}

/// A signal kept as a whole number of its recording unit (`value × scale`, rounded): what
/// the policy saw, since the controller rounds every signal to this precision before deciding
/// (see `wva_actors::precision`). Whole numbers cost a byte or three where a float's mantissa
/// costs eight that do not compress.
pub type Units = i64;

/// One pod's signals in recording units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactPod {
    pub pod: String,
    pub kv_cache_usage: Option<Units>,
    pub queue_length: Option<Units>,
}

/// What a variant's reporting servers did over the window, in recording units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactServing {
    pub pods: u32,
    pub rate: Units,
    pub input_tokens: Units,
    pub output_tokens: Units,
    pub ttft: Units,
    pub itl: Units,
    pub batch: Units,
    pub waiting: Units,
    pub waiting_end: Units,
}

/// One variant of a [`CompactCycleRecord`]: its inputs and its desired count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactVariant {
    pub name: String,
    pub cost: f64,
    pub accelerator: String,
    pub current_replicas: u32,
    pub ready_replicas: u32,
    pub previous_desired: Option<u32>,
    pub pods: Vec<CompactPod>,
    /// The decision: what the variant's scaler was told.
    pub target: u32,
    /// The `slo-capacity` side, when that analyzer decided.
    pub capacity: Option<CompactCapacity>,
}

/// A variant's `slo-capacity` inputs. Its fitted lines and its stabilisation window are state
/// the analyzer carries from cycle to cycle: a keyframe holds them, a record that builds on the
/// previous one leaves them to be rebuilt from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactCapacity {
    pub serving: Option<CompactServing>,
    pub max_batch: u32,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
    /// Keyframes only: the ITL line and the prefill line after this cycle's window, and the
    /// recommendations of the stabilisation window.
    pub carried: Option<CarriedState>,
}

/// The state a keyframe carries for one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarriedState {
    pub fit: Option<RecordedLineFit>,
    pub prefill_fit: Option<RecordedLineFit>,
    pub recent: Vec<u32>,
}

/// The `slo-capacity` settings a compact cycle was decided under.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactCapacitySettings {
    pub ttft_target_ms: f64,
    pub itl_target_ms: f64,
    pub budget_share: f64,
    pub stabilization_cycles: u32,
    pub drain_s: f64,
    pub window_s: f64,
}

/// One model's cycle stored as its inputs and its desired counts only: everything the policy
/// derives (the analysis, actions, reasons, the analyzer's estimates, and, when the record
/// builds on the previous one, the fitted lines and the stabilisation window) is rebuilt by
/// deciding the cycle again when the log is read. The controller writes this form only after
/// rebuilding the cycle's full records from it and finding them identical to what it decided;
/// any other cycle (on the safety net, with records of other kinds beside it, or one the
/// rebuild does not reproduce) is written in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactCycleRecord {
    pub model: ModelKey,
    pub at: Timestamp,
    /// The time of the model's cycle this one builds on (its fitted lines and stabilisation
    /// window are rebuilt from that cycle's); `None` for a keyframe, which carries them.
    pub builds_on: Option<Timestamp>,
    /// The version of the controller that decided it. Reasons are rebuilt by the reader's
    /// policy; a reader of another version says so.
    pub decided_by: String,
    pub mode: String,
    pub config_version: String,
    pub thresholds: RecordedThresholds,
    pub metrics_error: Option<String>,
    pub trigger: String,
    pub capacity_settings: Option<CompactCapacitySettings>,
    pub variants: Vec<CompactVariant>,
}

/// Everything the log holds. New kinds go at the end, so older records still decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Cycle(CycleRecord),
    ModelBased(ModelBasedRecord),
    SloCapacity(SloCapacityRecord),
    Demand(DemandRecord),
    Roles(RolesRecord),
    RequestSeriesMissing(RequestSeriesMissingRecord),
    PrefillFit(PrefillFitRecord),
    Forecast(ForecastRecord),
    Scarcity(ScarcityRecord),
    CompactCycle(CompactCycleRecord),
}

impl Record {
    pub fn model(&self) -> &ModelKey {
        match self {
            Self::Cycle(c) => &c.model,
            Self::ModelBased(m) => &m.model,
            Self::SloCapacity(s) => &s.model,
            Self::Demand(d) => &d.model,
            Self::Roles(r) => &r.model,
            Self::RequestSeriesMissing(r) => &r.model,
            Self::PrefillFit(p) => &p.model,
            Self::Forecast(f) => &f.model,
            Self::Scarcity(s) => &s.model,
            Self::CompactCycle(c) => &c.model,
        }
    }

    pub fn at(&self) -> Timestamp {
        match self {
            Self::Cycle(c) => c.at,
            Self::ModelBased(m) => m.at,
            Self::SloCapacity(s) => s.at,
            Self::Demand(d) => d.at,
            Self::Roles(r) => r.at,
            Self::RequestSeriesMissing(r) => r.at,
            Self::PrefillFit(p) => p.at,
            Self::Forecast(f) => f.at,
            Self::Scarcity(s) => s.at,
            Self::CompactCycle(c) => c.at,
        }
    }

    /// Whether the record concerns the named variant.
    pub fn mentions_variant(&self, name: &str) -> bool {
        match self {
            Self::Cycle(c) => {
                c.targets.iter().any(|t| t.name == name)
                    || c.variants.iter().any(|v| v.name == name)
            }
            Self::ModelBased(m) => m.variants.iter().any(|v| v.name == name),
            Self::SloCapacity(s) => s.variants.iter().any(|v| v.name == name),
            // Model-wide: it concerns every variant of its model.
            Self::Demand(_) | Self::RequestSeriesMissing(_) | Self::Forecast(_) => true,
            Self::Roles(r) => r.roles.iter().any(|(v, _)| v == name),
            Self::PrefillFit(p) => p.fits.iter().any(|(v, _)| v == name),
            Self::Scarcity(s) => s.claims.iter().any(|c| c.variant.name == name),
            Self::CompactCycle(c) => c.variants.iter().any(|v| v.name == name),
        }
    }
}
