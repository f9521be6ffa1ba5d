//! The v0.8/v0.9 form of a variant: an HPA (`autoscaling/v2`) or a KEDA `ScaledObject` annotated
//! `llm-d.ai/managed: "true"` stands for one variant without a VariantAutoscaling. Pure: this
//! module reads the parts of a scaler the controller uses (its target, its bounds, its
//! annotations) and says, with the field, what is wrong when something is.
//!
//! Every scaler is read, annotated or not: an HPA or ScaledObject that acts on a VA's Deployment
//! gives that variant its replica bounds.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use wva_actors::messages::ReplicaBounds;

use crate::crd::DEFAULT_VARIANT_COST;

/// Annotation that makes a scaler a variant (value `"true"`).
pub const MANAGED_ANNOTATION: &str = "llm-d.ai/managed";
/// Annotation naming the served model (required on a managed scaler).
pub const MODEL_ID_ANNOTATION: &str = "llm-d.ai/model-id";
/// Annotation with the cost of one replica (default `10.0`).
pub const VARIANT_COST_ANNOTATION: &str = "llm-d.ai/variant-cost";
/// Longest accepted model id: it becomes part of the decision log's keys and of Event texts.
pub const MAX_MODEL_ID_LEN: usize = 253;
/// A ScaledObject without `maxReplicaCount` may go up to this (KEDA's default).
const KEDA_DEFAULT_MAX: u32 = 100;

/// KEDA's `ScaledObject` (`keda.sh/v1alpha1`), only the fields the controller reads. KEDA's
/// CRD may be absent: the watch then waits for it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "ScaledObject",
    plural = "scaledobjects",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    pub scale_target_ref: ScaledObjectTarget,
    #[serde(default)]
    pub min_replica_count: Option<i32>,
    #[serde(default)]
    pub max_replica_count: Option<i32>,
}

/// `spec.scaleTargetRef` of a ScaledObject (kind defaults to Deployment, as in KEDA).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectTarget {
    pub name: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
}

/// Which kind of scaler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScalerKind {
    Hpa,
    ScaledObject,
}

/// What a scaler scales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalerTarget {
    pub kind: String,
    pub name: String,
}

/// What the annotations ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum Annotation {
    /// Not `llm-d.ai/managed: "true"`: the scaler only lends its bounds.
    Unmanaged,
    Managed {
        model_id: String,
        cost: f64,
    },
    /// Managed, but an annotation cannot be used: the message names it.
    Invalid(String),
}

/// The parts of a scaler the controller uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerInfo {
    pub kind: ScalerKind,
    pub target: ScalerTarget,
    pub bounds: ReplicaBounds,
    /// KEDA's own HPA of a ScaledObject: the ScaledObject speaks for it.
    pub owned_by_keda: bool,
    pub annotation: Annotation,
}

impl ScalerInfo {
    pub fn from_hpa(hpa: &HorizontalPodAutoscaler) -> Self {
        let spec = hpa.spec.as_ref();
        let target = spec.map(|s| &s.scale_target_ref);
        let owned_by_keda = hpa
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "ScaledObject");
        Self {
            kind: ScalerKind::Hpa,
            target: ScalerTarget {
                kind: target.map(|t| t.kind.clone()).unwrap_or_default(),
                name: target.map(|t| t.name.clone()).unwrap_or_default(),
            },
            bounds: ReplicaBounds {
                min: Some(count(spec.and_then(|s| s.min_replicas).unwrap_or(1))),
                max: spec.map(|s| count(s.max_replicas)),
            },
            owned_by_keda,
            annotation: annotation(&hpa.metadata),
        }
    }

    pub fn from_scaled_object(so: &ScaledObject) -> Self {
        let target = &so.spec.scale_target_ref;
        Self {
            kind: ScalerKind::ScaledObject,
            target: ScalerTarget {
                kind: target.kind.clone().unwrap_or_else(|| "Deployment".into()),
                name: target.name.clone(),
            },
            bounds: ReplicaBounds {
                min: Some(count(so.spec.min_replica_count.unwrap_or(1))),
                max: Some(so.spec.max_replica_count.map_or(KEDA_DEFAULT_MAX, count)),
            },
            owned_by_keda: false,
            annotation: annotation(&so.metadata),
        }
    }

    /// Whether this scaler is a variant, valid or not.
    pub fn managed(&self) -> bool {
        !matches!(self.annotation, Annotation::Unmanaged)
    }
}

fn count(n: i32) -> u32 {
    n.max(0) as u32
}

/// Whether the object asks to be a variant (even one whose spec could not be read):
/// `llm-d.ai/managed: "true"` as an annotation, or as a label (the form that lets a watch
/// select managed scalers server-side).
pub fn is_managed(meta: &ObjectMeta) -> bool {
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_ANNOTATION))
        .map(String::as_str);
    annotation_value(meta, MANAGED_ANNOTATION)
        .or(label)
        .is_some_and(|v| v.trim() == "true")
}

fn annotation_value<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// What is wrong with a model id, if anything: it becomes decision-log keys, Event texts and
/// a PromQL matcher, so it is bounded and has no control characters.
pub fn model_id_problem(id: &str) -> Option<String> {
    if id.len() > MAX_MODEL_ID_LEN {
        Some(format!(
            "{} bytes long, expected at most {MAX_MODEL_ID_LEN}",
            id.len()
        ))
    } else if id.chars().any(char::is_control) {
        Some(format!("{:?} contains a control character", clip_id(id)))
    } else {
        None
    }
}

fn clip_id(id: &str) -> &str {
    let end = id.char_indices().nth(64).map_or(id.len(), |(i, _)| i);
    &id[..end]
}

/// Reads the `llm-d.ai/*` annotations.
pub fn annotation(meta: &ObjectMeta) -> Annotation {
    if !is_managed(meta) {
        return Annotation::Unmanaged;
    }
    let model_id = match annotation_value(meta, MODEL_ID_ANNOTATION).map(str::trim) {
        None | Some("") => {
            return Annotation::Invalid(format!(
                "annotation {MODEL_ID_ANNOTATION}: required when {MANAGED_ANNOTATION} is \"true\"; expected the served model name as vLLM reports it in model_name"
            ));
        }
        Some(id) => match model_id_problem(id) {
            Some(problem) => {
                return Annotation::Invalid(format!("annotation {MODEL_ID_ANNOTATION}: {problem}"));
            }
            None => id.to_string(),
        },
    };
    let cost = match annotation_value(meta, VARIANT_COST_ANNOTATION).map(str::trim) {
        None => DEFAULT_VARIANT_COST.parse().unwrap_or(10.0),
        Some(raw) => match raw.parse::<f64>() {
            Ok(c) if c.is_finite() && c >= 0.0 => c,
            _ => {
                return Annotation::Invalid(format!(
                    "annotation {VARIANT_COST_ANNOTATION}: expected a non-negative decimal number, got {raw:?}"
                ));
            }
        },
    };
    Annotation::Managed { model_id, cost }
}

impl ScalerKind {
    pub fn resource(self) -> &'static str {
        match self {
            Self::Hpa => "HorizontalPodAutoscaler",
            Self::ScaledObject => "ScaledObject",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hpa(annotations: serde_json::Value, min: Option<i32>) -> HorizontalPodAutoscaler {
        let mut spec = json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
            "maxReplicas": 6,
        });
        if let Some(m) = min {
            spec["minReplicas"] = json!(m);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "h", "namespace": "llm", "annotations": annotations},
            "spec": spec,
        }))
        .expect("hpa")
    }

    #[test]
    fn an_annotated_hpa_is_a_variant_with_its_bounds_and_cost() {
        let info = ScalerInfo::from_hpa(&hpa(
            json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "meta/llama", "llm-d.ai/variant-cost": "42.5"}),
            Some(2),
        ));
        assert_eq!(
            info.annotation,
            Annotation::Managed {
                model_id: "meta/llama".into(),
                cost: 42.5
            }
        );
        assert_eq!(info.bounds.min, Some(2));
        assert_eq!(info.bounds.max, Some(6));
        assert_eq!(info.target.name, "d");
        assert!(!info.owned_by_keda);
    }

    #[test]
    fn defaults_are_cost_ten_and_min_one() {
        let info = ScalerInfo::from_hpa(&hpa(
            json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "m"}),
            None,
        ));
        assert_eq!(
            info.annotation,
            Annotation::Managed {
                model_id: "m".into(),
                cost: 10.0
            }
        );
        assert_eq!(info.bounds.min, Some(1));
        let so: ScaledObject = serde_json::from_value(json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "s", "namespace": "llm"},
            "spec": {"scaleTargetRef": {"name": "d"}, "triggers": [{"type": "prometheus"}]},
        }))
        .expect("scaled object");
        let info = ScalerInfo::from_scaled_object(&so);
        assert_eq!(info.target.kind, "Deployment");
        assert_eq!((info.bounds.min, info.bounds.max), (Some(1), Some(100)));
        assert_eq!(info.annotation, Annotation::Unmanaged);
    }

    #[test]
    fn bad_annotations_name_the_annotation_and_what_was_expected() {
        for (annotations, expected) in [
            (json!({"llm-d.ai/managed": "true"}), "llm-d.ai/model-id"),
            (
                json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "  "}),
                "llm-d.ai/model-id",
            ),
            (
                json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "m", "llm-d.ai/variant-cost": "cheap"}),
                "llm-d.ai/variant-cost: expected a non-negative decimal number, got \"cheap\"",
            ),
            (
                json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "m", "llm-d.ai/variant-cost": "-1"}),
                "llm-d.ai/variant-cost",
            ),
            (
                json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "a\u{0}b"}),
                "control character",
            ),
            (
                json!({"llm-d.ai/managed": "true", "llm-d.ai/model-id": "x".repeat(300)}),
                "at most 253",
            ),
        ] {
            match annotation(&hpa(annotations.clone(), None).metadata) {
                Annotation::Invalid(m) => assert!(m.contains(expected), "{annotations}: {m}"),
                other => panic!("{annotations}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_managed_switch_may_be_a_label() {
        let mut h = hpa(json!({"llm-d.ai/model-id": "m"}), None);
        assert!(!ScalerInfo::from_hpa(&h).managed());
        h.metadata.labels = Some([("llm-d.ai/managed".to_string(), "true".to_string())].into());
        assert_eq!(
            ScalerInfo::from_hpa(&h).annotation,
            Annotation::Managed {
                model_id: "m".into(),
                cost: 10.0
            }
        );
    }

    #[test]
    fn only_managed_true_manages() {
        for v in ["false", "yes", ""] {
            let info = ScalerInfo::from_hpa(&hpa(
                json!({"llm-d.ai/managed": v, "llm-d.ai/model-id": "m"}),
                None,
            ));
            assert!(!info.managed(), "{v}");
        }
    }

    #[test]
    fn keda_s_own_hpa_is_recognised() {
        let mut h = hpa(json!({}), None);
        h.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "s", "uid": "u"}))
                .expect("owner"),
        ]);
        assert!(ScalerInfo::from_hpa(&h).owned_by_keda);
    }
}
