//! `serviceclass`: latency objectives (SLOs) per model, grouped in prioritised classes.
//!
//! Two shapes are accepted, under any key:
//! - key `serviceClasses`: a YAML list of `{name, model, priority, slo-itl, slo-ttw}`, one item
//!   per (class, model) pair;
//! - one key per class: `{name, priority, data: [{model, slo-tpot, slo-ttft}]}`.
//!
//! `slo-itl`/`slo-tpot` (inter-token latency) and `slo-ttw`/`slo-ttft` (time to first token) are
//! synonyms, in milliseconds. A model's SLO comes from the class with the lowest `priority`
//! number that lists it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigIssue, LooseNumber, SERVICE_CLASS_CONFIG_MAP, from_yaml};

/// Latency objectives of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Inter-token latency target, milliseconds.
    pub itl_ms: f64,
    /// Time-to-first-token target, milliseconds.
    pub ttft_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSloDoc {
    model: String,
    #[serde(rename = "slo-itl", alias = "slo-tpot")]
    itl: LooseNumber,
    #[serde(rename = "slo-ttw", alias = "slo-ttft")]
    ttft: LooseNumber,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassDoc {
    name: String,
    #[serde(default)]
    priority: i64,
    // Flat shape: one model per item.
    model: Option<String>,
    #[serde(rename = "slo-itl", alias = "slo-tpot")]
    itl: Option<LooseNumber>,
    #[serde(rename = "slo-ttw", alias = "slo-ttft")]
    ttft: Option<LooseNumber>,
    // Nested shape: several models per class.
    data: Option<Vec<ModelSloDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<ClassDoc>),
    One(ClassDoc),
}

/// One (class, model, SLO) triple after parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassEntry {
    pub class: String,
    pub priority: i64,
    pub model: String,
    pub slo: Slo,
}

/// All service classes, and what was skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceClasses {
    pub entries: Vec<ClassEntry>,
    pub issues: Vec<ConfigIssue>,
}

impl ServiceClasses {
    /// Parses the ConfigMap's `data`; `None` when the ConfigMap does not exist.
    pub fn from_data(data: Option<&BTreeMap<String, String>>) -> Self {
        let mut out = Self::default();
        for (key, text) in data.into_iter().flatten() {
            let issue = |message: String| ConfigIssue {
                config_map: SERVICE_CLASS_CONFIG_MAP,
                entry: key.clone(),
                message,
            };
            let docs = match from_yaml::<OneOrMany>(text) {
                Ok(OneOrMany::Many(docs)) => docs,
                Ok(OneOrMany::One(doc)) => vec![doc],
                Err(_) => {
                    // Untagged errors say nothing useful; parse again as the expected shape to
                    // name the field that is wrong.
                    let message = match from_yaml::<Vec<ClassDoc>>(text) {
                        Err(e) if text.trim_start().starts_with('-') => e,
                        _ => from_yaml::<ClassDoc>(text).err().unwrap_or_default(),
                    };
                    // When neither shape names a field, say what a class looks like.
                    let message = if message.trim().is_empty() {
                        "expected a service class {name, priority, model, slo-itl, slo-ttw} or {name, priority, data: [{model, slo-tpot, slo-ttft}]}, or a list of them".to_string()
                    } else {
                        message
                    };
                    out.issues.push(issue(message));
                    continue;
                }
            };
            for (i, doc) in docs.into_iter().enumerate() {
                let at = |field: &str| {
                    if text.trim_start().starts_with('-') {
                        format!("[{i}].{field}")
                    } else {
                        field.to_string()
                    }
                };
                match class_entries(doc, &at) {
                    Ok(entries) => out.entries.extend(entries),
                    Err(message) => out.issues.push(issue(message)),
                }
            }
        }
        // Lowest priority number first; the stable sort keeps the ConfigMap order for ties.
        out.entries.sort_by_key(|e| e.priority);
        out
    }

    /// The SLO of a model: from the first class, by priority, that lists it.
    pub fn slo_for(&self, model: &str) -> Option<(&str, Slo)> {
        self.entries
            .iter()
            .find(|e| e.model == model)
            .map(|e| (e.class.as_str(), e.slo))
    }
}

fn class_entries(doc: ClassDoc, at: &dyn Fn(&str) -> String) -> Result<Vec<ClassEntry>, String> {
    let slo = |itl: &LooseNumber, ttft: &LooseNumber, prefix: &str| -> Result<Slo, String> {
        let positive = |n: &LooseNumber, field: &str| {
            n.value()
                .and_then(|v| {
                    if v > 0.0 {
                        Ok(v)
                    } else {
                        Err(format!("expected milliseconds > 0, got {v}"))
                    }
                })
                .map_err(|e| format!("{}: {e}", at(&format!("{prefix}{field}"))))
        };
        Ok(Slo {
            itl_ms: positive(itl, "slo-itl")?,
            ttft_ms: positive(ttft, "slo-ttw")?,
        })
    };
    let entry = |model: String, slo: Slo| ClassEntry {
        class: doc.name.clone(),
        priority: doc.priority,
        model,
        slo,
    };
    match (&doc.model, &doc.data) {
        (Some(model), None) => {
            let (Some(itl), Some(ttft)) = (&doc.itl, &doc.ttft) else {
                let missing = if doc.itl.is_none() {
                    "slo-itl"
                } else {
                    "slo-ttw"
                };
                return Err(format!(
                    "{}: expected a latency target in milliseconds",
                    at(missing)
                ));
            };
            Ok(vec![entry(model.clone(), slo(itl, ttft, "")?)])
        }
        (None, Some(data)) => data
            .iter()
            .enumerate()
            .map(|(j, m)| {
                Ok(entry(
                    m.model.clone(),
                    slo(&m.itl, &m.ttft, &format!("data[{j}]."))?,
                ))
            })
            .collect(),
        (Some(_), Some(_)) => Err(format!(
            "{}: expected either model (with slo-itl, slo-ttw) or data, not both",
            at("data")
        )),
        (None, None) => Err(format!(
            "{}: expected the model this class applies to (model, or a data list)",
            at("model")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_data as data;

    const FLAT: &str = "- name: Premium\n  model: meta/llama-3.1-8b\n  priority: 1\n  slo-itl: 24\n  slo-ttw: 500\n- name: Standard\n  model: meta/llama-3.1-8b\n  priority: 5\n  slo-itl: 50\n  slo-ttw: 1000\n- name: Standard\n  model: other/model\n  priority: 5\n  slo-itl: 60\n  slo-ttw: 1500\n";

    #[test]
    fn flat_list_form_picks_the_lowest_priority_number() {
        let c = ServiceClasses::from_data(Some(&data(&[("serviceClasses", FLAT)])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        assert_eq!(
            c.slo_for("meta/llama-3.1-8b"),
            Some((
                "Premium",
                Slo {
                    itl_ms: 24.0,
                    ttft_ms: 500.0
                }
            ))
        );
        assert_eq!(c.slo_for("other/model").map(|s| s.1.ttft_ms), Some(1500.0));
        assert_eq!(c.slo_for("unknown"), None);
    }

    #[test]
    fn per_key_form() {
        let c = ServiceClasses::from_data(Some(&data(&[
            (
                "freemium.yaml",
                "name: Freemium\npriority: 10\ndata:\n  - model: granite\n    slo-tpot: 200\n    slo-ttft: 2000\n",
            ),
            (
                "premium.yaml",
                "name: Premium\npriority: 1\ndata:\n  - model: llama\n    slo-tpot: 24\n    slo-ttft: 500\n  - model: granite\n    slo-tpot: 30\n    slo-ttft: 600\n",
            ),
        ])));
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        assert_eq!(
            c.slo_for("granite"),
            Some((
                "Premium",
                Slo {
                    itl_ms: 30.0,
                    ttft_ms: 600.0
                }
            ))
        );
        assert_eq!(c.slo_for("llama").map(|s| s.1.itl_ms), Some(24.0));
    }

    #[test]
    fn bad_entries_name_the_field_and_the_rest_apply() {
        let c = ServiceClasses::from_data(Some(&data(&[
            (
                "a",
                "name: A\npriority: 1\ndata:\n  - model: m\n    slo-tpot: fast\n    slo-ttft: 100\n",
            ),
            ("b", "- name: B\n  model: m\n  slo-itl: 10\n"),
            ("c", "name: C\npriority: 2\n"),
            (
                "d",
                "name: D\npriority: 3\ndata:\n  - model: m\n    slo-tpot: 0\n    slo-ttft: 100\n",
            ),
            (
                "e",
                "- name: E\n  model: m\n  priority: 4\n  slo-itl: 40\n  slo-ttw: 400\n",
            ),
            ("f", "- name: F\n  model: m\n  colour: red\n"),
        ])));
        let messages: Vec<String> = c.issues.iter().map(ToString::to_string).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("\"a\": data[0].slo-itl: expected a number")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("\"b\": [0].slo-ttw")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("\"c\": model:")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("\"d\": data[0].slo-itl: expected milliseconds > 0")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("\"f\"") && m.contains("colour")),
            "{messages:?}"
        );
        assert_eq!(c.issues.len(), 5);
        assert_eq!(
            c.slo_for("m"),
            Some((
                "E",
                Slo {
                    itl_ms: 40.0,
                    ttft_ms: 400.0
                }
            ))
        );
    }
}

impl ServiceClasses {
    /// The latency targets the model-based optimizer works to, by model ID (the first class by
    /// priority wins, as in [`ServiceClasses::slo_for`]).
    pub fn latency_targets(
        &self,
    ) -> std::collections::HashMap<String, wva_actors::policy::queueing::LatencyTargets> {
        let mut out = std::collections::HashMap::new();
        for e in &self.entries {
            out.entry(e.model.clone())
                .or_insert(wva_actors::policy::queueing::LatencyTargets {
                    ttft_ms: e.slo.ttft_ms,
                    itl_ms: e.slo.itl_ms,
                });
        }
        out
    }

    /// Each listed model's priority (its first class's, by priority): the order in which
    /// models are served when accelerators are scarce.
    pub fn priorities(&self) -> std::collections::HashMap<String, i64> {
        let mut out = std::collections::HashMap::new();
        for e in &self.entries {
            out.entry(e.model.clone()).or_insert(e.priority);
        }
        out
    }
}

#[cfg(test)]
mod latency_target_tests {
    use super::*;

    #[test]
    fn the_highest_priority_class_sets_a_models_targets() {
        let mut data = BTreeMap::new();
        data.insert(
            "premium.yaml".to_string(),
            "name: Premium\npriority: 1\ndata:\n  - model: m\n    slo-tpot: 24\n    slo-ttft: 500\n"
                .to_string(),
        );
        data.insert(
            "freemium.yaml".to_string(),
            "name: Freemium\npriority: 10\ndata:\n  - model: m\n    slo-tpot: 200\n    slo-ttft: 2000\n  - model: other\n    slo-tpot: 80\n    slo-ttft: 3000\n"
                .to_string(),
        );
        let targets = ServiceClasses::from_data(Some(&data)).latency_targets();
        assert_eq!(targets["m"].itl_ms, 24.0);
        assert_eq!(targets["m"].ttft_ms, 500.0);
        assert_eq!(targets["other"].ttft_ms, 3000.0);
    }
}
