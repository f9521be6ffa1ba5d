//! `accelerator-pool`: how the pool of accelerators is read from the nodes, and the quotas that
//! cap it. Every key is optional:
//!
//! - `resourceName`: the extended resource that counts accelerators (default `nvidia.com/gpu`);
//! - `acceleratorLabel`: the node label naming a node's accelerator type (default
//!   `nvidia.com/gpu.product`, the GPU feature discovery label); its values are matched to the
//!   price list's `device` to get the accelerator's name, as a Deployment's node selector is;
//! - `quotas`: a YAML map `ACCELERATOR: GPUs`, the most the managed variants may hold of a type;
//! - `namespaceQuotas`: a YAML map `NAMESPACE: {ACCELERATOR: GPUs}`, the most one namespace's
//!   variants may hold of a type.
//!
//! A malformed entry is reported (naming the key and the field) and skipped; the rest apply.

use std::collections::BTreeMap;

use super::{ConfigIssue, from_yaml};

/// Name of the ConfigMap.
pub const POOL_CONFIG_MAP: &str = "accelerator-pool";
/// The extended resource that counts accelerators unless `resourceName` names another.
pub const DEFAULT_RESOURCE: &str = "nvidia.com/gpu";
/// The node label naming the accelerator type unless `acceleratorLabel` names another.
pub const DEFAULT_LABEL: &str = "nvidia.com/gpu.product";

/// The pool's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub resource_name: String,
    pub accelerator_label: String,
    /// GPUs per accelerator name.
    pub quotas: BTreeMap<String, u32>,
    /// GPUs per (namespace, accelerator name).
    pub namespace_quotas: BTreeMap<(String, String), u32>,
    pub issues: Vec<ConfigIssue>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            resource_name: DEFAULT_RESOURCE.into(),
            accelerator_label: DEFAULT_LABEL.into(),
            quotas: BTreeMap::new(),
            namespace_quotas: BTreeMap::new(),
            issues: Vec::new(),
        }
    }
}

/// A Kubernetes qualified name, as resource names and label keys are: an optional DNS prefix
/// and `/`, then 1-63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
fn qualified_name(text: &str) -> bool {
    let name = text.rsplit_once('/').map_or(text, |(prefix, name)| {
        if prefix.is_empty() || prefix.len() > 253 {
            ""
        } else {
            name
        }
    });
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= 63
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl PoolConfig {
    /// Parses the ConfigMap's `data`; `None` when the ConfigMap does not exist.
    pub fn from_data(data: Option<&BTreeMap<String, String>>) -> Self {
        let mut out = Self::default();
        let Some(data) = data else { return out };
        for (key, text) in data {
            let issue = |message: String| ConfigIssue {
                config_map: POOL_CONFIG_MAP,
                entry: key.clone(),
                message,
            };
            let name = text.trim();
            match key.as_str() {
                "resourceName" | "acceleratorLabel" if !qualified_name(name) => {
                    out.issues.push(issue(format!(
                        "expected a qualified name such as {}, got {name:?}",
                        if key == "resourceName" {
                            DEFAULT_RESOURCE
                        } else {
                            DEFAULT_LABEL
                        }
                    )))
                }
                "resourceName" => out.resource_name = name.to_string(),
                "acceleratorLabel" => out.accelerator_label = name.to_string(),
                "quotas" => match from_yaml::<BTreeMap<String, u32>>(text) {
                    Ok(quotas) => out.quotas = quotas,
                    Err(e) => out.issues.push(issue(format!(
                        "{e} (expected a map of accelerator name to a whole number of GPUs)"
                    ))),
                },
                "namespaceQuotas" => {
                    match from_yaml::<BTreeMap<String, BTreeMap<String, u32>>>(text) {
                        Ok(quotas) => {
                            out.namespace_quotas = quotas
                                .into_iter()
                                .flat_map(|(ns, by_acc)| {
                                    by_acc
                                        .into_iter()
                                        .map(move |(acc, gpus)| ((ns.clone(), acc), gpus))
                                })
                                .collect()
                        }
                        Err(e) => out.issues.push(issue(format!(
                            "{e} (expected a map of namespace to a map of accelerator name to a whole number of GPUs)"
                        ))),
                    }
                }
                _ => out.issues.push(issue(
                    "unknown key (expected resourceName, acceleratorLabel, quotas or namespaceQuotas)"
                        .into(),
                )),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn absent_is_the_defaults_and_no_quota() {
        let c = PoolConfig::from_data(None);
        assert_eq!(c.resource_name, "nvidia.com/gpu");
        assert_eq!(c.accelerator_label, "nvidia.com/gpu.product");
        assert!(c.quotas.is_empty() && c.namespace_quotas.is_empty() && c.issues.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let c = PoolConfig::from_data(Some(&data(&[
            ("resourceName", "amd.com/gpu"),
            ("acceleratorLabel", "amd.com/gpu.product-name"),
            ("quotas", "H100: 16\nA100: 8\n"),
            ("namespaceQuotas", "team-a:\n  H100: 4\n"),
        ])));
        assert_eq!(c.issues, vec![]);
        assert_eq!(c.resource_name, "amd.com/gpu");
        assert_eq!(c.accelerator_label, "amd.com/gpu.product-name");
        assert_eq!(c.quotas.get("H100"), Some(&16));
        assert_eq!(
            c.namespace_quotas
                .get(&("team-a".to_string(), "H100".to_string())),
            Some(&4)
        );
    }

    #[test]
    fn malformed_entries_name_the_key_and_field_and_the_rest_apply() {
        let c = PoolConfig::from_data(Some(&data(&[
            ("resourceName", "not a name"),
            ("quotas", "H100: lots\n"),
            ("namespaceQuotas", "team-a:\n  H100: -1\n"),
            ("acceleratorLabel", "example.com/accelerator"),
            ("pool", "8"),
        ])));
        assert_eq!(c.accelerator_label, "example.com/accelerator");
        assert_eq!(
            c.resource_name, "nvidia.com/gpu",
            "a bad name keeps the default"
        );
        assert!(c.quotas.is_empty());
        let texts: Vec<String> = c.issues.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(
            texts[0].contains("accelerator-pool entry \"namespaceQuotas\": team-a.H100"),
            "{texts:?}"
        );
        assert!(texts[1].contains("\"pool\": unknown key"), "{texts:?}");
        assert!(
            texts[2].contains("\"quotas\": H100: invalid type")
                || texts[2].contains("\"quotas\": H100"),
            "{texts:?}"
        );
        assert!(
            texts[3]
                .contains("expected a qualified name such as nvidia.com/gpu, got \"not a name\""),
            "{texts:?}"
        );
    }
}
