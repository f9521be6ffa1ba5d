//! `wva analyze`: one model's situation as JSON in, the policy's decision as JSON out.
//!
//! This is the policy's public face: operators ask "what would the autoscaler do with these
//! numbers", and tests use it as a black box. Input is checked strictly; every error names the
//! offending field by its JSON path.

use std::collections::HashSet;

use serde::Deserialize;
use wva_actors::policy::{
    ModelDecision, ReplicaSignals, ThresholdOverrides, Thresholds, VariantInput, decide_capacity,
};

use crate::crd::DEFAULT_VARIANT_COST;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InputDoc {
    #[serde(default)]
    config: Option<ConfigDoc>,
    variants: Vec<VariantDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigDoc {
    kv_cache_threshold: Option<f64>,
    queue_length_threshold: Option<f64>,
    kv_spare_trigger: Option<f64>,
    queue_spare_trigger: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VariantDoc {
    name: String,
    cost: Option<f64>,
    accelerator: Option<String>,
    current_replicas: i64,
    ready_replicas: Option<i64>,
    desired_replicas: Option<i64>,
    #[serde(default)]
    replicas: Vec<ReplicaDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplicaDoc {
    pod: String,
    kv_cache_usage: Option<f64>,
    queue_length: Option<f64>,
}

/// A validated request: the thresholds and the variants of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeRequest {
    pub thresholds: Thresholds,
    pub variants: Vec<VariantInput>,
}

/// Parses and validates the input document. The error is one line that names the field.
pub fn parse_request(text: &str) -> Result<AnalyzeRequest, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: InputDoc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." {
            format!("invalid JSON: {inner}")
        } else {
            format!("{path}: {inner}")
        }
    })?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;

    let thresholds = match doc.config {
        None => Thresholds::default(),
        Some(c) => ThresholdOverrides {
            kv_cache_threshold: c.kv_cache_threshold,
            queue_length_threshold: c.queue_length_threshold,
            kv_spare_trigger: c.kv_spare_trigger,
            queue_spare_trigger: c.queue_spare_trigger,
        }
        .apply_to(Thresholds::default()),
    };
    thresholds.validate().map_err(|e| format!("config.{e}"))?;

    if doc.variants.is_empty() {
        return Err("variants: expected at least one variant".into());
    }
    let mut names = HashSet::new();
    let mut pods = HashSet::new();
    let mut variants = Vec::with_capacity(doc.variants.len());
    for (i, v) in doc.variants.into_iter().enumerate() {
        let at = |field: &str| format!("variants[{i}].{field}");
        if v.name.trim().is_empty() {
            return Err(format!("{}: expected a non-empty name", at("name")));
        }
        if !names.insert(v.name.clone()) {
            return Err(format!(
                "{}: duplicate variant name {:?}",
                at("name"),
                v.name
            ));
        }
        let count = |field: &str, n: i64| -> Result<u32, String> {
            u32::try_from(n).map_err(|_| format!("{}: expected a count >= 0, got {n}", at(field)))
        };
        let current_replicas = count("currentReplicas", v.current_replicas)?;
        let ready_replicas = match v.ready_replicas {
            Some(n) => count("readyReplicas", n)?,
            None => current_replicas,
        };
        if ready_replicas > current_replicas {
            return Err(format!(
                "{}: expected at most currentReplicas ({current_replicas}), got {ready_replicas}",
                at("readyReplicas")
            ));
        }
        let previous_desired = match v.desired_replicas {
            Some(n) => Some(count("desiredReplicas", n)?).filter(|&d| d > 0),
            None => None,
        };
        let cost = match v.cost {
            Some(c) if c.is_finite() && c >= 0.0 => c,
            Some(c) => return Err(format!("{}: expected a cost >= 0, got {c}", at("cost"))),
            None => DEFAULT_VARIANT_COST.parse().unwrap_or(10.0),
        };
        let mut replicas = Vec::with_capacity(v.replicas.len());
        for (j, r) in v.replicas.into_iter().enumerate() {
            let at = |field: &str| format!("variants[{i}].replicas[{j}].{field}");
            if r.pod.trim().is_empty() {
                return Err(format!("{}: expected a non-empty pod name", at("pod")));
            }
            if !pods.insert(r.pod.clone()) {
                return Err(format!("{}: duplicate pod {:?}", at("pod"), r.pod));
            }
            if let Some(kv) = r.kv_cache_usage.filter(|kv| !(0.0..=1.0).contains(kv)) {
                return Err(format!(
                    "{}: expected a fraction between 0 and 1, got {kv}",
                    at("kvCacheUsage")
                ));
            }
            if let Some(q) = r.queue_length.filter(|q| *q < 0.0) {
                return Err(format!(
                    "{}: expected a length >= 0, got {q}",
                    at("queueLength")
                ));
            }
            replicas.push(ReplicaSignals {
                pod: r.pod,
                kv_cache_usage: r.kv_cache_usage,
                queue_length: r.queue_length,
            });
        }
        variants.push(VariantInput {
            name: v.name,
            cost,
            accelerator: v.accelerator.unwrap_or_else(|| "unknown".into()),
            current_replicas,
            ready_replicas,
            previous_desired,
            replicas,
        });
    }
    Ok(AnalyzeRequest {
        thresholds,
        variants,
    })
}

/// Runs the capacity policy on a request.
pub fn analyze(request: &AnalyzeRequest) -> ModelDecision {
    decide_capacity(&request.thresholds, &request.variants)
}

/// Input text to output JSON, or the one-line error.
pub fn run(text: &str) -> Result<String, String> {
    let request = parse_request(text)?;
    serde_json::to_string_pretty(&analyze(&request))
        .map_err(|e| format!("cannot encode the decision: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_request(text).expect_err(text)
    }

    #[test]
    fn defaults_apply_and_partial_config_inherits() {
        let r = parse_request(
            r#"{"config": {"kvCacheThreshold": 0.9}, "variants": [{"name": "v", "currentReplicas": 2, "replicas": [{"pod": "p", "queueLength": 1}]}]}"#,
        )
        .expect("valid");
        assert_eq!(r.thresholds.kv_cache_threshold, 0.9);
        assert_eq!(r.thresholds.queue_length_threshold, 5.0);
        let v = &r.variants[0];
        assert_eq!(v.cost, 10.0);
        assert_eq!(v.ready_replicas, 2);
        assert_eq!(v.previous_desired, None);
        assert_eq!(v.replicas[0].kv_cache_usage, None);
    }

    #[test]
    fn zero_desired_means_none() {
        let r = parse_request(
            r#"{"variants": [{"name": "v", "currentReplicas": 1, "desiredReplicas": 0}]}"#,
        )
        .expect("valid");
        assert_eq!(r.variants[0].previous_desired, None);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("{").starts_with("invalid JSON"));
        assert!(err("[]").starts_with("invalid JSON"));
        assert!(err(r#"{"variants": []}"#).starts_with("variants:"));
        assert!(err(r#"{"config": {"kvCacheThreshold": 2}, "variants": [{"name": "v", "currentReplicas": 1}]}"#).starts_with("config.kvCacheThreshold:"));
        assert!(err(r#"{"config": {"kvSpareTrigger": 0.9}, "variants": [{"name": "v", "currentReplicas": 1}]}"#).starts_with("config.kvCacheThreshold:"));
        assert!(
            err(r#"{"variants": [{"name": "v", "currentReplicas": -1}]}"#)
                .starts_with("variants[0].currentReplicas:")
        );
        assert!(
            err(r#"{"variants": [{"name": "v", "currentReplicas": 1, "readyReplicas": 2}]}"#)
                .starts_with("variants[0].readyReplicas:")
        );
        assert!(
            err(r#"{"variants": [{"name": "v", "currentReplicas": "2"}]}"#)
                .starts_with("variants[0].currentReplicas:")
        );
        assert!(err(r#"{"variants": [{"name": "v", "currentReplicas": 1, "replicas": [{"pod": "p", "kvCacheUsage": 1.2}]}]}"#).starts_with("variants[0].replicas[0].kvCacheUsage:"));
        assert!(err(r#"{"variants": [{"name": "v", "currentReplicas": 1, "replicas": [{"pod": "p", "queueLength": -1}]}]}"#).starts_with("variants[0].replicas[0].queueLength:"));
        assert!(err(r#"{"variants": [{"name": "v", "currentReplicas": 1}, {"name": "v", "currentReplicas": 1}]}"#).starts_with("variants[1].name: duplicate"));
        assert!(
            err(r#"{"variants": [{"name": "v", "currentReplicas": 1, "cost": -5}]}"#)
                .starts_with("variants[0].cost:")
        );
        assert!(
            err(r#"{"variants": [{"name": "v", "currentReplicas": 1, "colour": "red"}]}"#)
                .contains("colour")
        );
        assert!(err(r#"{"variants": [{"name": "v"}]}"#).contains("currentReplicas"));
        assert!(
            err(r#"{"variants": [{"name": "v", "currentReplicas": 1}]} trailing"#)
                .starts_with("invalid JSON")
        );
    }
}
