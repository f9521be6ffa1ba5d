//! The scaling configuration in force: default thresholds and per-model overrides, already
//! resolved (every override has inherited what it left unset). Parsing lives with the
//! ConfigMap adapter; this is the lookup the policy uses.

use std::time::Duration;

use super::thresholds::Thresholds;

/// How long a model must serve nothing before scale-to-zero may apply, unless configured.
pub const DEFAULT_SCALE_TO_ZERO_RETENTION: Duration = Duration::from_secs(600);

/// The configuration that applies to one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelScalingConfig {
    pub thresholds: Thresholds,
    /// `None` leaves the decision to the global scale-to-zero setting.
    pub enable_scale_to_zero: Option<bool>,
    pub scale_to_zero_retention: Duration,
}

impl Default for ModelScalingConfig {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            enable_scale_to_zero: None,
            scale_to_zero_retention: DEFAULT_SCALE_TO_ZERO_RETENTION,
        }
    }
}

/// A per-model override after inheritance.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOverride {
    /// The ConfigMap data key it came from.
    pub entry: String,
    pub model_id: String,
    /// `None` applies the override to the model in every namespace.
    pub namespace: Option<String>,
    pub config: ModelScalingConfig,
}

/// An override that was skipped as invalid, kept so the affected models can report it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidOverride {
    pub entry: String,
    pub model_id: String,
    pub namespace: Option<String>,
    /// The full problem, naming the ConfigMap, the entry and the field.
    pub message: String,
}

/// Default and overrides, ready for lookup.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScalingConfig {
    /// Identifies this configuration in the decision log (a digest of its source).
    pub version: String,
    pub default: ModelScalingConfig,
    pub overrides: Vec<ModelOverride>,
    pub invalid: Vec<InvalidOverride>,
}

impl ScalingConfig {
    /// The configuration of one model: an override for its namespace, else one for every
    /// namespace, else the default. Also returns the entry that applied, if any.
    pub fn for_model(
        &self,
        namespace: &str,
        model_id: &str,
    ) -> (&ModelScalingConfig, Option<&str>) {
        let exact = self
            .overrides
            .iter()
            .find(|o| o.model_id == model_id && o.namespace.as_deref() == Some(namespace));
        let any_namespace = || {
            self.overrides
                .iter()
                .find(|o| o.model_id == model_id && o.namespace.is_none())
        };
        match exact.or_else(any_namespace) {
            Some(o) => (&o.config, Some(o.entry.as_str())),
            None => (&self.default, None),
        }
    }

    /// Skipped overrides that were meant for this model (it runs on the default instead).
    pub fn problems_for_model(&self, namespace: &str, model_id: &str) -> Vec<&InvalidOverride> {
        self.invalid
            .iter()
            .filter(|o| {
                o.model_id == model_id && o.namespace.as_deref().is_none_or(|ns| ns == namespace)
            })
            .collect()
    }
}
