//! The `VariantAutoscaling` resource (`llmd.ai/v1alpha1`) as Rust types. The CRD YAML in
//! `crds/` is generated from these by `wva crdgen`; a test fails when it drifts.

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Pattern every `variantCost` must match: a non-negative decimal number.
pub const VARIANT_COST_PATTERN: &str = r"^\d+(\.\d+)?$";
/// Cost of one replica when a VA does not say.
pub const DEFAULT_VARIANT_COST: &str = "10.0";
/// Label that assigns a VA to one controller instance.
pub const CONTROLLER_INSTANCE_LABEL: &str = "wva.llmd.ai/controller-instance";
/// Label that names a variant's accelerator explicitly.
pub const ACCELERATOR_NAME_LABEL: &str = "inference.optimization/acceleratorName";

/// Autoscaling of one variant (one Deployment) of a served model. The VAs that share a
/// `modelID` in a namespace are the variants of that model and are scaled together.
// Each printcolumn(...) repeats `type_ = ...`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "llmd.ai",
    version = "v1alpha1",
    kind = "VariantAutoscaling",
    plural = "variantautoscalings",
    singular = "variantautoscaling",
    shortname = "va",
    namespaced,
    status = "VariantAutoscalingStatus",
    doc = "Autoscaling of one variant of a served model, driven by its demand and what a replica carries within the latency objectives.",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.scaleTargetRef.name"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.modelID"),
    printcolumn(
        name = "Accelerator",
        type_ = "string",
        json_path = ".status.desiredOptimizedAlloc.accelerator"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.currentAlloc.numReplicas"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredOptimizedAlloc.numReplicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VariantAutoscalingSpec {
    /// The Deployment this variant scales. Leave it out to discover every Deployment in the
    /// namespace labelled or annotated `model_id: <modelID>` (discovery mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_ref: Option<ScaleTargetRef>,
    /// The served model name, as vLLM reports it in the `model_name` label.
    #[serde(rename = "modelID")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[^\x00-\x1f\x7f]+$"))]
    pub model_id: String,
    /// Cost of one replica of this variant, a decimal number as a string.
    #[serde(default = "default_variant_cost")]
    #[schemars(schema_with = "variant_cost_schema")]
    pub variant_cost: String,
    /// Accelerators the model can run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_profile: Option<ModelProfile>,
}

fn default_variant_cost() -> String {
    DEFAULT_VARIANT_COST.to_string()
}

fn variant_cost_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": VARIANT_COST_PATTERN,
        "default": DEFAULT_VARIANT_COST,
        "description": "Cost of one replica of this variant, a decimal number as a string."
    })
}

/// Reference to the scaled workload, in the shape HPAs use.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// API version of the target, e.g. `apps/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the target.
    #[serde(default = "default_target_kind")]
    #[schemars(schema_with = "target_kind_schema")]
    pub kind: String,
    /// Name of the target in the VA's namespace.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

fn default_target_kind() -> String {
    "Deployment".to_string()
}

fn target_kind_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "default": "Deployment",
        "description": "Kind of the target."
    })
}

/// The accelerators a model can run on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelProfile {
    #[serde(default)]
    pub accelerators: Vec<AcceleratorProfile>,
}

/// One accelerator configuration of a model.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorProfile {
    /// Accelerator name, e.g. `H100`, as priced in `accelerator-unitcost` (a label value: it
    /// becomes the `accelerator_type` label of the published series).
    #[schemars(
        length(min = 1, max = 63),
        pattern(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub acc: String,
    /// Accelerator units per replica.
    #[schemars(range(min = 1))]
    pub acc_count: i32,
    /// Largest batch (`max-num-seqs`) one replica runs.
    #[schemars(range(min = 1))]
    pub max_batch_size: i32,
    /// Deprecated and ignored: latency parameters are learned from live metrics. Still
    /// accepted so that older objects apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "perf_parms_schema")]
    pub perf_parms: Option<serde_json::Value>,
}

fn perf_parms_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "Deprecated and ignored: latency parameters are learned from live metrics. Accepted so that older objects (decodeParms.alpha/beta, prefillParms.gamma/delta) still apply.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// What the controller observed and decided for this variant.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VariantAutoscalingStatus {
    /// The latest recommendation; `{}` while the target Deployment is missing.
    #[serde(default)]
    pub desired_optimized_alloc: OptimizedAlloc,
    /// Replicas the target Deployment has now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_alloc: Option<CurrentAlloc>,
    /// TargetResolved, MetricsAvailable, OptimizationReady and the summary Ready.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A replica recommendation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct OptimizedAlloc {
    /// Desired replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_replicas: Option<i32>,
    /// Accelerator of the variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// When the recommendation was computed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_run_time: Option<String>,
}

/// The replicas a variant has now.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CurrentAlloc {
    pub num_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
}

fn date_time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

/// A status condition, in the shape of `metav1.Condition`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: TargetResolved, MetricsAvailable, OptimizationReady or Ready.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    #[schemars(schema_with = "condition_status_schema")]
    pub status: String,
    /// One CamelCase word saying why.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_transition_time: Option<String>,
    /// The generation of the VA this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn condition_status_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "enum": ["True", "False", "Unknown"] })
}

impl VariantAutoscalingSpec {
    /// The variant cost as a number. The schema pattern guarantees a decimal; objects that
    /// slipped past it (older CRD) get the default and an error saying why.
    pub fn cost(&self) -> Result<f64, String> {
        let ok = is_decimal(&self.variant_cost);
        match self.variant_cost.parse::<f64>() {
            Ok(v) if ok && v.is_finite() => Ok(v),
            _ => Err(format!(
                "spec.variantCost: expected a decimal number matching {VARIANT_COST_PATTERN}, got {:?}",
                self.variant_cost
            )),
        }
    }

    /// True when any accelerator still carries the deprecated `perfParms`.
    pub fn has_perf_parms(&self) -> bool {
        self.model_profile
            .iter()
            .flat_map(|p| &p.accelerators)
            .any(|a| a.perf_parms.is_some())
    }
}

fn is_decimal(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The CRD manifest as committed in `crds/` and in the chart.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&VariantAutoscaling::crd())?;
    Ok(format!(
        "# Generated by `wva crdgen` from src/crd.rs. Do not edit by hand.\n{body}"
    ))
}

/// Where the CRD is written, relative to the repository root.
pub const CRD_PATHS: [&str; 2] = [
    "crds/llmd.ai_variantautoscalings.yaml",
    "charts/workload-variant-autoscaler/crds/llmd.ai_variantautoscalings.yaml",
];

/// Name of the CRD object, for the start-up check.
pub const CRD_NAME: &str = "variantautoscalings.llmd.ai";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_costs() {
        for ok in ["10", "10.0", "0.5", "123.456"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", ".5", "5.", "-1", "1e3", "ten", "1.2.3", " 1"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn spec_defaults_and_old_objects() {
        let va: VariantAutoscalingSpec = serde_yaml::from_str(
            "scaleTargetRef:\n  name: llama-8b\nmodelID: meta/llama-3.1-8b\nmodelProfile:\n  accelerators:\n    - acc: A100\n      accCount: 1\n      maxBatchSize: 256\n      perfParms:\n        decodeParms:\n          alpha: \"20.5\"\n          beta: \"0.41\"\n        prefillParms:\n          gamma: \"5.2\"\n          delta: \"0.1\"\n",
        )
        .expect("old object parses");
        assert_eq!(va.variant_cost, "10.0");
        assert_eq!(va.cost(), Ok(10.0));
        assert_eq!(
            va.scale_target_ref.as_ref().map(|r| r.kind.as_str()),
            Some("Deployment")
        );
        assert!(va.has_perf_parms());
        let bad = VariantAutoscalingSpec {
            variant_cost: "cheap".into(),
            ..va
        };
        assert!(
            bad.cost()
                .expect_err("rejected")
                .starts_with("spec.variantCost")
        );
    }

    #[test]
    fn empty_desired_alloc_serializes_as_empty_object() {
        let s = VariantAutoscalingStatus::default();
        let v = serde_json::to_value(&s).expect("serializes");
        assert_eq!(v["desiredOptimizedAlloc"], serde_json::json!({}));
    }
}
