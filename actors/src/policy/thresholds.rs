//! The saturation thresholds of one model, with the validation rules they must satisfy.

use serde::{Deserialize, Serialize};

/// Thresholds that decide when a replica is saturated and when the model needs more or fewer
/// replicas. Queue values are request counts but kept as `f64` because they are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// A replica whose KV-cache use is at or above this fraction is saturated.
    pub kv_cache_threshold: f64,
    /// A replica whose waiting queue is at or above this length is saturated.
    pub queue_length_threshold: f64,
    /// Scale up when the average spare KV fraction falls below this.
    pub kv_spare_trigger: f64,
    /// Scale up when the average spare queue room falls below this.
    pub queue_spare_trigger: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            kv_cache_threshold: 0.80,
            queue_length_threshold: 5.0,
            kv_spare_trigger: 0.10,
            queue_spare_trigger: 3.0,
        }
    }
}

/// A threshold that breaks a validation rule: which field, and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {expected}, got {got}")]
pub struct ThresholdError {
    /// The field as users write it (camelCase).
    pub field: &'static str,
    /// What the field must be.
    pub expected: String,
    /// The offending value.
    pub got: String,
}

impl Thresholds {
    /// Checks every rule; returns the first broken one.
    pub fn validate(&self) -> Result<(), ThresholdError> {
        let unit = |field: &'static str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(ThresholdError {
                    field,
                    expected: "expected a number between 0 and 1".into(),
                    got: v.to_string(),
                })
            }
        };
        let non_negative = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(ThresholdError {
                    field,
                    expected: "expected a number >= 0".into(),
                    got: v.to_string(),
                })
            }
        };
        unit("kvCacheThreshold", self.kv_cache_threshold)?;
        non_negative("queueLengthThreshold", self.queue_length_threshold)?;
        unit("kvSpareTrigger", self.kv_spare_trigger)?;
        non_negative("queueSpareTrigger", self.queue_spare_trigger)?;
        if self.kv_cache_threshold < self.kv_spare_trigger {
            return Err(ThresholdError {
                field: "kvCacheThreshold",
                expected: format!(
                    "expected at least kvSpareTrigger ({})",
                    self.kv_spare_trigger
                ),
                got: self.kv_cache_threshold.to_string(),
            });
        }
        Ok(())
    }
}

/// A partial set of thresholds: an override entry, or a partial `config` of `wva analyze`.
/// Every field left unset is inherited from the base it is applied to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdOverrides {
    pub kv_cache_threshold: Option<f64>,
    pub queue_length_threshold: Option<f64>,
    pub kv_spare_trigger: Option<f64>,
    pub queue_spare_trigger: Option<f64>,
}

impl ThresholdOverrides {
    /// The thresholds that result from laying these over `base`.
    pub fn apply_to(&self, base: Thresholds) -> Thresholds {
        Thresholds {
            kv_cache_threshold: self.kv_cache_threshold.unwrap_or(base.kv_cache_threshold),
            queue_length_threshold: self
                .queue_length_threshold
                .unwrap_or(base.queue_length_threshold),
            kv_spare_trigger: self.kv_spare_trigger.unwrap_or(base.kv_spare_trigger),
            queue_spare_trigger: self.queue_spare_trigger.unwrap_or(base.queue_spare_trigger),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Thresholds)) -> Thresholds {
        let mut t = Thresholds::default();
        f(&mut t);
        t
    }

    #[test]
    fn defaults_are_the_documented_values_and_valid() {
        let t = Thresholds::default();
        assert_eq!(t.kv_cache_threshold, 0.80);
        assert_eq!(t.queue_length_threshold, 5.0);
        assert_eq!(t.kv_spare_trigger, 0.10);
        assert_eq!(t.queue_spare_trigger, 3.0);
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases: [(Thresholds, &str); 9] = [
            (with(|t| t.kv_cache_threshold = 1.2), "kvCacheThreshold"),
            (with(|t| t.kv_cache_threshold = -0.1), "kvCacheThreshold"),
            (
                with(|t| t.kv_cache_threshold = f64::NAN),
                "kvCacheThreshold",
            ),
            (
                with(|t| t.queue_length_threshold = -1.0),
                "queueLengthThreshold",
            ),
            (with(|t| t.kv_spare_trigger = 1.5), "kvSpareTrigger"),
            (with(|t| t.kv_spare_trigger = -0.5), "kvSpareTrigger"),
            (with(|t| t.queue_spare_trigger = -3.0), "queueSpareTrigger"),
            (
                with(|t| {
                    t.kv_cache_threshold = 0.3;
                    t.kv_spare_trigger = 0.4;
                }),
                "kvCacheThreshold",
            ),
            (
                with(|t| t.queue_spare_trigger = f64::INFINITY),
                "queueSpareTrigger",
            ),
        ];
        for (t, field) in cases {
            let err = t.validate().expect_err("must be rejected");
            assert_eq!(err.field, field, "{t:?}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn boundaries_are_accepted() {
        for t in [
            with(|t| t.kv_cache_threshold = 1.0),
            with(|t| {
                t.kv_cache_threshold = 0.0;
                t.kv_spare_trigger = 0.0;
            }),
            with(|t| t.queue_length_threshold = 0.0),
            with(|t| t.queue_spare_trigger = 0.0),
            with(|t| t.kv_spare_trigger = t.kv_cache_threshold),
        ] {
            assert_eq!(t.validate(), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn overrides_inherit_unset_fields() {
        let base = with(|t| t.queue_length_threshold = 7.0);
        let o = ThresholdOverrides {
            kv_cache_threshold: Some(0.7),
            kv_spare_trigger: Some(0.35),
            ..Default::default()
        };
        let t = o.apply_to(base);
        assert_eq!(t.kv_cache_threshold, 0.7);
        assert_eq!(t.kv_spare_trigger, 0.35);
        assert_eq!(t.queue_length_threshold, 7.0);
        assert_eq!(t.queue_spare_trigger, 3.0);
    }
}
