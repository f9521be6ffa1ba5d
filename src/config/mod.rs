//! Configuration: the three ConfigMaps users already have, and the process settings.
//!
//! ConfigMap parsing is pure (a `data` map in, typed values and a list of problems out) so that
//! the controller, `wva replay` and the tests read a ConfigMap the same way. An invalid entry
//! never stops the others from applying; each problem names the ConfigMap, the entry and the field.

pub mod accelerators;
pub mod capacity;
pub mod duration;
pub mod manifest;
pub mod pool;
pub mod secret;
pub mod service_class;
pub mod settings;

use std::fmt;

pub use accelerators::{AcceleratorCost, AcceleratorCosts};
pub use capacity::{CapacityScalingConfig, data_version};
pub use duration::{format_duration, parse_duration};
pub use pool::{POOL_CONFIG_MAP, PoolConfig};
pub use service_class::{ServiceClasses, Slo};

/// Name of the ConfigMap that carries the saturation thresholds.
pub const CAPACITY_CONFIG_MAP: &str = "capacity-scaling-config";
/// Name of the ConfigMap that carries accelerator prices.
pub const ACCELERATOR_COST_CONFIG_MAP: &str = "accelerator-unitcost";
/// Name of the ConfigMap that carries service classes (SLOs).
pub const SERVICE_CLASS_CONFIG_MAP: &str = "serviceclass";

/// One problem found in one entry of a ConfigMap. The entry is skipped; the rest apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub config_map: &'static str,
    /// The data key of the entry.
    pub entry: String,
    /// What is wrong, starting with the field when one is to blame.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entry {:?}: {}",
            self.config_map, self.entry, self.message
        )
    }
}

/// Deserializes a YAML (or JSON, which is YAML) document, naming the path of the field that
/// failed, e.g. `accelerators[1].cost: invalid type: string "x", expected f64`.
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// A number that users write either as a YAML number or as a numeric string (`cost: "40.00"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LooseNumber {
    Number(f64),
    Text(String),
}

impl<'de> serde::Deserialize<'de> for LooseNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LooseNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_f64<E>(self, v: f64) -> Result<LooseNumber, E> {
                Ok(LooseNumber::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<LooseNumber, E> {
                Ok(LooseNumber::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LooseNumber, E> {
                Ok(LooseNumber::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<LooseNumber, E> {
                Ok(LooseNumber::Text(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl LooseNumber {
    pub(crate) fn value(&self) -> Result<f64, String> {
        let v = match self {
            Self::Number(n) => *n,
            Self::Text(t) => t
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("expected a number, got {t:?}"))?,
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("expected a finite number, got {v}"))
        }
    }
}

/// ConfigMap `data` from pairs, for tests.
#[cfg(test)]
pub(crate) fn test_data(entries: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
