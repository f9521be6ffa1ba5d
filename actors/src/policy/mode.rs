//! Which analyzers decide a model's targets.

use serde::{Deserialize, Serialize};

/// The operating mode of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatingMode {
    /// The saturation (capacity) analyzer alone.
    #[default]
    CapacityOnly,
    /// Capacity analyzer and model-based optimizer, arbitrated.
    Hybrid,
    /// The model-based optimizer alone.
    ModelOnly,
}

impl OperatingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CapacityOnly => "capacity-only",
            Self::Hybrid => "hybrid",
            Self::ModelOnly => "model-only",
        }
    }

    /// The mode `as_str` names (as records keep it), if any.
    pub fn from_name(text: &str) -> Option<Self> {
        [Self::CapacityOnly, Self::Hybrid, Self::ModelOnly]
            .into_iter()
            .find(|m| m.as_str() == text)
    }

    /// Reads the mode from the two environment settings users have: the hybrid switch
    /// (`on`, `off`, `model-only`) wins when set; otherwise the older proactive-model flag.
    pub fn from_switches(
        hybrid: Option<&str>,
        proactive_model: Option<bool>,
    ) -> Result<Self, ChoiceError> {
        match hybrid.map(|s| s.trim().to_ascii_lowercase()) {
            Some(s) if s == "on" || s == "true" || s == "hybrid" => Ok(Self::Hybrid),
            Some(s) if s == "off" || s == "false" || s.is_empty() || s == "capacity-only" => {
                Ok(if proactive_model == Some(true) {
                    Self::Hybrid
                } else {
                    Self::CapacityOnly
                })
            }
            Some(s) if s == "model-only" => Ok(Self::ModelOnly),
            Some(s) => Err(ChoiceError {
                expected: "on, off or model-only",
                got: s,
            }),
            None => Ok(if proactive_model == Some(true) {
                Self::Hybrid
            } else {
                Self::CapacityOnly
            }),
        }
    }
}

/// A setting that names none of its choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got:?}")]
pub struct ChoiceError {
    pub expected: &'static str,
    pub got: String,
}

/// Which analyzer decides in capacity mode (`SCALING_ANALYZER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Analyzer {
    /// The seeds' saturation analyzer (CONTRACT section 3), one replica at a time.
    #[default]
    SaturationV1,
    /// Demand against learned per-replica capacity within the latency objectives.
    SloCapacity,
}

impl Analyzer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SaturationV1 => "saturation-v1",
            Self::SloCapacity => "slo-capacity",
        }
    }

    pub fn parse(text: &str) -> Result<Self, ChoiceError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "saturation-v1" | "saturation" | "v1" => Ok(Self::SaturationV1),
            "slo-capacity" => Ok(Self::SloCapacity),
            other => Err(ChoiceError {
                expected: "slo-capacity or saturation-v1",
                got: other.to_string(),
            }),
        }
    }

    /// Whether the analyzer reads what the servers served (rates, lengths, latencies).
    pub fn reads_serving(self) -> bool {
        self == Self::SloCapacity
    }
}

impl std::fmt::Display for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for OperatingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches() {
        use OperatingMode::*;
        assert_eq!(OperatingMode::from_switches(None, None), Ok(CapacityOnly));
        assert_eq!(OperatingMode::from_switches(None, Some(true)), Ok(Hybrid));
        assert_eq!(OperatingMode::from_switches(Some("on"), None), Ok(Hybrid));
        assert_eq!(
            OperatingMode::from_switches(Some("OFF"), Some(true)),
            Ok(Hybrid)
        );
        assert_eq!(
            OperatingMode::from_switches(Some("off"), Some(false)),
            Ok(CapacityOnly)
        );
        assert_eq!(
            OperatingMode::from_switches(Some("model-only"), None),
            Ok(ModelOnly)
        );
        assert!(OperatingMode::from_switches(Some("maybe"), None).is_err());
    }
}
