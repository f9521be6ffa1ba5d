//! `accelerator-unitcost`: the price of one unit of each accelerator type.
//!
//! Three forms are in use and all are accepted, even mixed in one ConfigMap:
//! - key `accelerators`: a YAML list of `{name, type, cost, memSize}`;
//! - key `costs`: a YAML map `NAME: cost`;
//! - any other key: the accelerator name, holding JSON `{"device": ..., "cost": ...}`.
//!
//! Costs may be numbers or numeric strings (`"40.00"`), as older ConfigMaps wrote them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ACCELERATOR_COST_CONFIG_MAP, ConfigIssue, LooseNumber, from_yaml};

/// The price and identity of one accelerator type.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceleratorCost {
    /// Short name, e.g. `A100`: what VAs and `modelProfile` refer to.
    pub name: String,
    /// Device type as the node label reports it, e.g. `NVIDIA-A100-PCIE-80GB`.
    pub device: Option<String>,
    /// Cost of one unit.
    pub cost: f64,
    /// Memory per unit in MiB, when given.
    pub mem_size: Option<u64>,
    /// The data key it came from.
    pub entry: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListItem {
    name: String,
    #[serde(rename = "type", alias = "device")]
    device: Option<String>,
    cost: LooseNumber,
    mem_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PerKey {
    #[serde(alias = "type")]
    device: Option<String>,
    cost: LooseNumber,
    mem_size: Option<u64>,
}

/// All known accelerators, by name, and what was skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AcceleratorCosts {
    pub by_name: BTreeMap<String, AcceleratorCost>,
    pub issues: Vec<ConfigIssue>,
}

impl AcceleratorCosts {
    /// Parses the ConfigMap's `data`; `None` when the ConfigMap does not exist.
    pub fn from_data(data: Option<&BTreeMap<String, String>>) -> Self {
        let mut out = Self::default();
        let Some(data) = data else { return out };
        for (key, text) in data {
            let issue = |message: String| ConfigIssue {
                config_map: ACCELERATOR_COST_CONFIG_MAP,
                entry: key.clone(),
                message,
            };
            match key.as_str() {
                "accelerators" => match from_yaml::<Vec<ListItem>>(text) {
                    Err(message) => out.issues.push(issue(message)),
                    Ok(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            match item.cost.value().and_then(non_negative) {
                                Ok(cost) => out.insert(
                                    AcceleratorCost {
                                        name: item.name,
                                        device: item.device,
                                        cost,
                                        mem_size: item.mem_size,
                                        entry: key.clone(),
                                    },
                                    &issue,
                                ),
                                Err(e) => out.issues.push(issue(format!("[{i}].cost: {e}"))),
                            }
                        }
                    }
                },
                "costs" => match from_yaml::<BTreeMap<String, LooseNumber>>(text) {
                    Err(message) => out.issues.push(issue(message)),
                    Ok(costs) => {
                        for (name, cost) in costs {
                            match cost.value().and_then(non_negative) {
                                Ok(cost) => out.insert(
                                    AcceleratorCost {
                                        name,
                                        device: None,
                                        cost,
                                        mem_size: None,
                                        entry: key.clone(),
                                    },
                                    &issue,
                                ),
                                Err(e) => out.issues.push(issue(format!("{name}: {e}"))),
                            }
                        }
                    }
                },
                _ => match from_yaml::<PerKey>(text) {
                    Err(message) => out.issues.push(issue(message)),
                    Ok(doc) => match doc.cost.value().and_then(non_negative) {
                        Ok(cost) => out.insert(
                            AcceleratorCost {
                                name: key.clone(),
                                device: doc.device,
                                cost,
                                mem_size: doc.mem_size,
                                entry: key.clone(),
                            },
                            &issue,
                        ),
                        Err(e) => out.issues.push(issue(format!("cost: {e}"))),
                    },
                },
            }
        }
        out
    }

    fn insert(&mut self, acc: AcceleratorCost, issue: &dyn Fn(String) -> ConfigIssue) {
        // The name becomes the `accelerator_type` label of the published series.
        if !super::settings::is_label_value(&acc.name) {
            let shown: String = acc.name.chars().take(80).collect();
            self.issues.push(issue(format!(
                "{shown:?}: expected an accelerator name usable as a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
            )));
            return;
        }
        if let Some(first) = self.by_name.get(&acc.name) {
            let message = format!(
                "{}: accelerator already priced by entry {:?}; keeping that one",
                acc.name, first.entry
            );
            self.issues.push(issue(message));
            return;
        }
        self.by_name.insert(acc.name.clone(), acc);
    }

    /// The accelerator with this short name.
    pub fn by_name(&self, name: &str) -> Option<&AcceleratorCost> {
        self.by_name.get(name)
    }

    /// The accelerator whose device type (or, failing that, name) matches a node label value
    /// such as `nvidia.com/gpu.product=NVIDIA-A100-PCIE-80GB`. Case is ignored because vendors
    /// and users spell these differently.
    pub fn by_device(&self, device: &str) -> Option<&AcceleratorCost> {
        let eq = |a: &str| a.eq_ignore_ascii_case(device);
        self.by_name
            .values()
            .find(|a| a.device.as_deref().is_some_and(eq))
            .or_else(|| self.by_name.values().find(|a| eq(&a.name)))
    }

    /// The name an accelerator goes by, from the device a node label or node selector names:
    /// its price-list name when it has one, else the device itself. `None` when that cannot be
    /// a label value (it names published series and the pool alike).
    pub fn name_for_device(&self, device: &str) -> Option<String> {
        let name = self
            .by_device(device)
            .map_or_else(|| device.to_string(), |a| a.name.clone());
        crate::config::settings::is_label_value(&name).then_some(name)
    }
}

fn non_negative(v: f64) -> Result<f64, String> {
    if v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("expected a cost >= 0, got {v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_data as data;

    /// Issue 19: an accelerator name becomes a label value of the shared scrape, so one that
    /// cannot be is refused, naming it, and the others still apply.
    #[test]
    fn a_name_that_is_no_label_value_is_refused_and_named() {
        let long = "X".repeat(300);
        let c = AcceleratorCosts::from_data(Some(&data(&[(
            "costs",
            &format!("A100: 40\n\"bad name\": 1\n{long}: 2\n"),
        )])));
        assert!(c.by_name("A100").is_some());
        assert!(c.by_name("bad name").is_none() && c.by_name(&long).is_none());
        assert_eq!(c.issues.len(), 2, "{:?}", c.issues);
        assert!(c.issues.iter().all(|i| i.message.contains("label value")));
        assert!(
            c.issues.iter().all(|i| i.message.len() < 300),
            "the name is clipped"
        );
    }

    #[test]
    fn list_form() {
        let c = AcceleratorCosts::from_data(Some(&data(&[(
            "accelerators",
            "- name: A100\n  type: NVIDIA-A100-PCIE-80GB\n  cost: 40\n  memSize: 81920\n- name: H100\n  type: NVIDIA-H100-80GB-HBM3\n  cost: 80.5\n",
        )])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        let a100 = c.by_name("A100").expect("A100");
        assert_eq!(a100.cost, 40.0);
        assert_eq!(a100.mem_size, Some(81920));
        assert_eq!(c.by_name("H100").map(|a| a.cost), Some(80.5));
        assert_eq!(
            c.by_device("nvidia-h100-80gb-hbm3")
                .map(|a| a.name.as_str()),
            Some("H100")
        );
    }

    #[test]
    fn map_form() {
        let c = AcceleratorCosts::from_data(Some(&data(&[(
            "costs",
            "A100: 30.0\nH100: 50.0\nL40S: \"15\"\n",
        )])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        assert_eq!(c.by_name("L40S").map(|a| a.cost), Some(15.0));
        assert_eq!(c.by_device("L40S").map(|a| a.name.as_str()), Some("L40S"));
    }

    #[test]
    fn per_key_json_form_with_string_costs() {
        let c = AcceleratorCosts::from_data(Some(&data(&[
            (
                "A100",
                r#"{"device": "NVIDIA-A100-PCIE-80GB", "cost": "40.00"}"#,
            ),
            ("MI300X", r#"{"device": "AMD-MI300X-192G", "cost": 65}"#),
        ])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        assert_eq!(c.by_name("A100").map(|a| a.cost), Some(40.0));
        assert_eq!(
            c.by_device("AMD-MI300X-192G").map(|a| a.name.as_str()),
            Some("MI300X")
        );
    }

    #[test]
    fn bad_entries_are_skipped_with_the_field_named() {
        let c = AcceleratorCosts::from_data(Some(&data(&[
            (
                "accelerators",
                "- name: A100\n  cost: cheap\n- name: H100\n  cost: -3\n- name: L4\n  cost: 5\n",
            ),
            ("costs", "T4: 2\nV100: [1]\n"),
            ("B200", r#"{"device": "NVIDIA-B200", "cost": "a lot"}"#),
            ("GB200", r#"{"device": "x"}"#),
        ])));
        let messages: Vec<String> = c.issues.iter().map(ToString::to_string).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("\"accelerators\": [0].cost: expected a number")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("[1].cost: expected a cost >= 0")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("\"costs\"") && m.contains("V100")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("\"B200\": cost: expected a number")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("\"GB200\"") && m.contains("cost")),
            "{messages:?}"
        );
        // A list that fails as a whole is skipped, but L4 in a valid list still counts.
        assert_eq!(c.by_name("L4").map(|a| a.cost), Some(5.0));
        assert!(c.by_name("A100").is_none());
    }

    #[test]
    fn the_first_price_of_a_name_wins() {
        let c = AcceleratorCosts::from_data(Some(&data(&[
            ("accelerators", "- name: A100\n  cost: 40\n"),
            ("costs", "A100: 99\n"),
        ])));
        assert_eq!(c.by_name("A100").map(|a| a.cost), Some(40.0));
        assert_eq!(c.issues.len(), 1);
        assert!(c.issues[0].message.contains("already priced"));
    }
}
