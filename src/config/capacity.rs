//! `capacity-scaling-config`: the saturation thresholds, a default and per-model overrides.
//!
//! Key `default` holds a YAML document with any subset of the thresholds (and the scale-to-zero
//! settings); it inherits what it leaves out from the built-in values. Every other key is an
//! override for one model (`modelID` or `model_id`, and usually `namespace`) and inherits every
//! field it does not set from `default`.

use serde::Deserialize;
use std::collections::BTreeMap;
use wva_actors::policy::{
    InvalidOverride, ModelOverride, ModelScalingConfig, ScalingConfig, ThresholdOverrides,
};

use super::{CAPACITY_CONFIG_MAP, ConfigIssue, from_yaml, parse_duration};

/// Data key of the default entry.
pub const DEFAULT_KEY: &str = "default";
/// One entry as written. Unknown fields are rejected so that a misspelt threshold is reported
/// instead of silently leaving the default in force.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EntryDoc {
    #[serde(rename = "modelID", alias = "model_id", alias = "modelId")]
    model_id: Option<String>,
    namespace: Option<String>,
    kv_cache_threshold: Option<f64>,
    queue_length_threshold: Option<f64>,
    kv_spare_trigger: Option<f64>,
    queue_spare_trigger: Option<f64>,
    enable_scale_to_zero: Option<bool>,
    scale_to_zero_retention: Option<String>,
}

impl EntryDoc {
    /// Lays this entry over `base` and validates the result.
    fn apply_to(&self, base: &ModelScalingConfig) -> Result<ModelScalingConfig, String> {
        let thresholds = ThresholdOverrides {
            kv_cache_threshold: self.kv_cache_threshold,
            queue_length_threshold: self.queue_length_threshold,
            kv_spare_trigger: self.kv_spare_trigger,
            queue_spare_trigger: self.queue_spare_trigger,
        }
        .apply_to(base.thresholds);
        thresholds.validate().map_err(|e| e.to_string())?;
        let scale_to_zero_retention = match &self.scale_to_zero_retention {
            Some(text) => parse_duration(text).map_err(|e| format!("scaleToZeroRetention: {e}"))?,
            None => base.scale_to_zero_retention,
        };
        Ok(ModelScalingConfig {
            thresholds,
            enable_scale_to_zero: self.enable_scale_to_zero.or(base.enable_scale_to_zero),
            scale_to_zero_retention,
        })
    }
}

/// The parsed ConfigMap: the configuration that applies, and what was skipped and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CapacityScalingConfig {
    pub scaling: ScalingConfig,
    /// Entries that were skipped. Each names the entry and the field.
    pub issues: Vec<ConfigIssue>,
    /// Things worth a log line that are not errors (missing ConfigMap or `default` key).
    pub warnings: Vec<String>,
}

impl CapacityScalingConfig {
    /// Parses the ConfigMap's `data`; `None` when the ConfigMap does not exist.
    pub fn from_data(data: Option<&BTreeMap<String, String>>) -> Self {
        let mut config = Self::default();
        config.scaling.version = data.map_or_else(|| "builtin".to_string(), data_version);
        let Some(data) = data else {
            config.warnings.push(format!(
                "ConfigMap {CAPACITY_CONFIG_MAP} not found: using the built-in thresholds"
            ));
            return config;
        };
        let issue = |entry: &str, message: String| ConfigIssue {
            config_map: CAPACITY_CONFIG_MAP,
            entry: entry.to_string(),
            message,
        };

        match data.get(DEFAULT_KEY) {
            None => config.warnings.push(format!(
                "ConfigMap {CAPACITY_CONFIG_MAP} has no {DEFAULT_KEY:?} key: using the built-in thresholds"
            )),
            Some(text) => match parse_entry(text).and_then(|doc| {
                if doc.model_id.is_some() || doc.namespace.is_some() {
                    config.warnings.push(format!(
                        "{CAPACITY_CONFIG_MAP} entry {DEFAULT_KEY:?}: modelID and namespace are ignored in the default entry"
                    ));
                }
                doc.apply_to(&ModelScalingConfig::default())
            }) {
                Ok(default) => config.scaling.default = default,
                Err(message) => config.issues.push(issue(DEFAULT_KEY, message)),
            },
        }

        for (key, text) in data.iter().filter(|(k, _)| k.as_str() != DEFAULT_KEY) {
            let doc = match parse_entry(text) {
                Ok(doc) => doc,
                Err(message) => {
                    config.issues.push(issue(key, message));
                    continue;
                }
            };
            let Some(model_id) = doc.model_id.clone().filter(|m| !m.trim().is_empty()) else {
                config.issues.push(issue(
                    key,
                    "modelID: expected the model this override applies to (modelID or model_id)"
                        .into(),
                ));
                continue;
            };
            let namespace = doc.namespace.clone().filter(|n| !n.trim().is_empty());
            if let Some(first) = config
                .scaling
                .overrides
                .iter()
                .find(|o| o.model_id == model_id && o.namespace == namespace)
            {
                config.issues.push(issue(
                    key,
                    format!(
                        "modelID: {model_id:?} in namespace {:?} is already configured by entry {:?}",
                        namespace.as_deref().unwrap_or("*"),
                        first.entry
                    ),
                ));
                continue;
            }
            match doc.apply_to(&config.scaling.default) {
                Ok(resolved) => config.scaling.overrides.push(ModelOverride {
                    entry: key.clone(),
                    model_id,
                    namespace,
                    config: resolved,
                }),
                Err(message) => {
                    let problem = issue(key, message);
                    config.scaling.invalid.push(InvalidOverride {
                        entry: key.clone(),
                        model_id,
                        namespace,
                        message: problem.to_string(),
                    });
                    config.issues.push(problem);
                }
            }
        }
        config
    }
}

/// A short digest of ConfigMap data that identifies a configuration in the decision log.
pub fn data_version(data: &BTreeMap<String, String>) -> String {
    // FNV-1a over the sorted entries: stable across processes and builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in data {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn parse_entry(text: &str) -> Result<EntryDoc, String> {
    if text.trim().is_empty() {
        return Ok(EntryDoc::default());
    }
    from_yaml(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_data as data;
    use std::time::Duration;
    use wva_actors::policy::Thresholds;

    #[test]
    fn missing_config_map_or_default_key_means_builtins_with_a_warning() {
        let c = CapacityScalingConfig::from_data(None);
        assert_eq!(c.scaling.default, ModelScalingConfig::default());
        assert!(c.issues.is_empty());
        assert_eq!(c.warnings.len(), 1);
        let c = CapacityScalingConfig::from_data(Some(&data(&[])));
        assert_eq!(c.scaling.default.thresholds, Thresholds::default());
        assert!(
            c.warnings[0].contains("no \"default\" key"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn default_inherits_from_builtins() {
        let c = CapacityScalingConfig::from_data(Some(&data(&[(
            "default",
            "kvCacheThreshold: 0.9\nqueueSpareTrigger: 2\n",
        )])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        let t = c.scaling.default.thresholds;
        assert_eq!(t.kv_cache_threshold, 0.9);
        assert_eq!(t.queue_spare_trigger, 2.0);
        assert_eq!(t.queue_length_threshold, 5.0);
        assert_eq!(t.kv_spare_trigger, 0.1);
    }

    #[test]
    fn overrides_inherit_unset_fields_from_default() {
        let c = CapacityScalingConfig::from_data(Some(&data(&[
            (
                "default",
                "kvCacheThreshold: 0.85\nqueueLengthThreshold: 8\nkvSpareTrigger: 0.15\nqueueSpareTrigger: 4\nscaleToZeroRetention: 20m\n",
            ),
            (
                "llm-d",
                "modelID: \"Qwen/Qwen3-0.6B\"\nnamespace: llm-d-autoscaler\nkvCacheThreshold: 0.70\nkvSpareTrigger: 0.35\n",
            ),
        ])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        let (m, entry) = c.scaling.for_model("llm-d-autoscaler", "Qwen/Qwen3-0.6B");
        assert_eq!(entry, Some("llm-d"));
        assert_eq!(m.thresholds.kv_cache_threshold, 0.70);
        assert_eq!(m.thresholds.kv_spare_trigger, 0.35);
        assert_eq!(m.thresholds.queue_length_threshold, 8.0);
        assert_eq!(m.thresholds.queue_spare_trigger, 4.0);
        assert_eq!(m.scale_to_zero_retention, Duration::from_secs(1200));
        // Another namespace or model gets the default.
        let (other, entry) = c.scaling.for_model("elsewhere", "Qwen/Qwen3-0.6B");
        assert_eq!(entry, None);
        assert_eq!(other.thresholds.kv_cache_threshold, 0.85);
    }

    #[test]
    fn model_id_is_accepted_in_both_spellings() {
        for doc in [
            "model_id: m\nnamespace: ns\nkvCacheThreshold: 0.5\n",
            "modelID: m\nnamespace: ns\nkvCacheThreshold: 0.5\n",
        ] {
            let c = CapacityScalingConfig::from_data(Some(&data(&[("o", doc)])));
            assert!(c.issues.is_empty(), "{:?}", c.issues);
            assert_eq!(
                c.scaling
                    .for_model("ns", "m")
                    .0
                    .thresholds
                    .kv_cache_threshold,
                0.5
            );
        }
    }

    #[test]
    fn an_override_without_namespace_applies_everywhere_but_loses_to_an_exact_one() {
        let c = CapacityScalingConfig::from_data(Some(&data(&[
            ("a-everywhere", "modelID: m\nqueueLengthThreshold: 9\n"),
            (
                "b-exact",
                "modelID: m\nnamespace: prod\nqueueLengthThreshold: 7\n",
            ),
        ])));
        assert_eq!(c.scaling.for_model("dev", "m").1, Some("a-everywhere"));
        assert_eq!(c.scaling.for_model("prod", "m").1, Some("b-exact"));
    }

    #[test]
    fn invalid_entries_are_skipped_and_the_rest_apply() {
        let c = CapacityScalingConfig::from_data(Some(&data(&[
            ("default", "kvCacheThreshold: 0.75\n"),
            (
                "bad-range",
                "modelID: m1\nnamespace: ns\nkvCacheThreshold: 1.5\n",
            ),
            (
                "bad-type",
                "modelID: m2\nnamespace: ns\nqueueLengthThreshold: lots\n",
            ),
            ("typo", "modelID: m3\nnamespace: ns\nkvCacheTreshold: 0.5\n"),
            ("no-model", "namespace: ns\nkvCacheThreshold: 0.5\n"),
            (
                "order",
                "modelID: m4\nnamespace: ns\nkvCacheThreshold: 0.2\nkvSpareTrigger: 0.3\n",
            ),
            ("good", "modelID: m5\nnamespace: ns\nqueueSpareTrigger: 1\n"),
            ("not-yaml", "modelID: [unclosed\n"),
            ("retention", "modelID: m6\nscaleToZeroRetention: soon\n"),
        ])));
        let by_entry: BTreeMap<&str, &str> = c
            .issues
            .iter()
            .map(|i| (i.entry.as_str(), i.message.as_str()))
            .collect();
        assert!(
            by_entry["bad-range"].starts_with("kvCacheThreshold:"),
            "{by_entry:?}"
        );
        assert!(
            by_entry["bad-type"].starts_with("queueLengthThreshold:"),
            "{by_entry:?}"
        );
        assert!(by_entry["typo"].contains("kvCacheTreshold"), "{by_entry:?}");
        assert!(by_entry["no-model"].starts_with("modelID:"), "{by_entry:?}");
        assert!(
            by_entry["order"].starts_with("kvCacheThreshold:"),
            "{by_entry:?}"
        );
        assert!(by_entry.contains_key("not-yaml"), "{by_entry:?}");
        assert!(
            by_entry["retention"].starts_with("scaleToZeroRetention:"),
            "{by_entry:?}"
        );
        assert_eq!(c.issues.len(), 7);
        // The default and the good override still apply.
        assert_eq!(c.scaling.default.thresholds.kv_cache_threshold, 0.75);
        let (good, entry) = c.scaling.for_model("ns", "m5");
        assert_eq!(entry, Some("good"));
        assert_eq!(good.thresholds.queue_spare_trigger, 1.0);
        assert_eq!(good.thresholds.kv_cache_threshold, 0.75);
        // The model of a skipped override runs on the default, and its issue is findable.
        assert_eq!(c.scaling.for_model("ns", "m1").1, None);
        let issues = c.scaling.problems_for_model("ns", "m1");
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0]
                .message
                .starts_with("capacity-scaling-config entry \"bad-range\": kvCacheThreshold")
        );
    }

    #[test]
    fn an_invalid_default_falls_back_to_builtins_for_everyone() {
        let c = CapacityScalingConfig::from_data(Some(&data(&[
            ("default", "kvSpareTrigger: 2\n"),
            ("o", "modelID: m\nqueueLengthThreshold: 9\n"),
        ])));
        assert_eq!(c.issues.len(), 1);
        assert_eq!(c.issues[0].entry, "default");
        assert!(c.issues[0].message.starts_with("kvSpareTrigger:"));
        let (m, _) = c.scaling.for_model("any", "m");
        assert_eq!(m.thresholds.queue_length_threshold, 9.0);
        assert_eq!(m.thresholds.kv_spare_trigger, 0.1);
    }

    #[test]
    fn duplicate_targets_keep_the_first_entry() {
        let c = CapacityScalingConfig::from_data(Some(&data(&[
            ("a", "modelID: m\nnamespace: ns\nqueueLengthThreshold: 6\n"),
            ("b", "modelID: m\nnamespace: ns\nqueueLengthThreshold: 7\n"),
        ])));
        assert_eq!(c.scaling.for_model("ns", "m").1, Some("a"));
        assert_eq!(c.issues.len(), 1);
        assert!(
            c.issues[0]
                .message
                .contains("already configured by entry \"a\"")
        );
    }

    #[test]
    fn scale_to_zero_fields_inherit() {
        let c = CapacityScalingConfig::from_data(Some(&data(&[
            (
                "default",
                "enableScaleToZero: true\nscaleToZeroRetention: 5m\n",
            ),
            ("o", "modelID: m\nenableScaleToZero: false\n"),
        ])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        assert_eq!(c.scaling.default.enable_scale_to_zero, Some(true));
        let (m, _) = c.scaling.for_model("ns", "m");
        assert_eq!(m.enable_scale_to_zero, Some(false));
        assert_eq!(m.scale_to_zero_retention, Duration::from_secs(300));
    }
}
