//! PromQL the controller sends, built in one place, and the readers of their answers. Queries
//! are batched: one per signal per cycle for every watched model at once (CONTRACT section 2).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use wva_actors::messages::ModelKey;
use wva_actors::policy::model_based::RequestCount;

/// `{namespace=~"a|b"}` for the watched namespaces (empty: all), with regex metacharacters and
/// quotes escaped.
pub fn namespace_selector(namespaces: &[String]) -> String {
    if namespaces.is_empty() {
        return String::new();
    }
    let alternatives: Vec<String> = namespaces
        .iter()
        .map(|ns| {
            let mut out = String::new();
            for c in ns.chars() {
                if "\\.+*?()|[]{}^$".contains(c) {
                    out.push_str("\\\\");
                } else if c == '"' {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        })
        .collect();
    format!("{{namespace=~\"{}\"}}", alternatives.join("|"))
}

/// Whole seconds, as PromQL durations (`600s`).
fn range(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// Successful requests per model over the scale-to-zero retention window.
pub fn request_count(retention: Duration, namespaces: &[String]) -> String {
    format!(
        "sum by (namespace, model_name) (increase(vllm:request_success_total{}[{}]))",
        namespace_selector(namespaces),
        range(retention)
    )
}

/// Reads a request-count answer (`data.result` of an instant vector query) for the models that
/// have scale to zero on. A model without a series gets [`RequestCount::NoSeries`]; a value that
/// is not a finite number is an error for that model, never a zero.
pub fn read_request_counts(
    result: &[Value],
    models: &[ModelKey],
) -> HashMap<ModelKey, RequestCount> {
    let mut found: HashMap<ModelKey, RequestCount> = HashMap::new();
    for series in result {
        let (Some(ns), Some(model)) = (
            series["metric"]["namespace"].as_str(),
            series["metric"]["model_name"].as_str(),
        ) else {
            continue;
        };
        let key = ModelKey::new(ns, model);
        let value = series["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        found.insert(
            key,
            match value {
                Some(v) => RequestCount::Read(v.max(0.0)),
                None => RequestCount::Failed(format!(
                    "request count of {ns}/{model}: expected a finite number, got {}",
                    series["value"][1]
                )),
            },
        );
    }
    models
        .iter()
        .map(|m| (m.clone(), found.remove(m).unwrap_or(RequestCount::NoSeries)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_query_is_batched_and_scoped() {
        assert_eq!(
            request_count(Duration::from_secs(600), &[]),
            "sum by (namespace, model_name) (increase(vllm:request_success_total[600s]))"
        );
        assert_eq!(
            request_count(Duration::from_secs(300), &["a".into(), "b.c".into()]),
            "sum by (namespace, model_name) (increase(vllm:request_success_total{namespace=~\"a|b\\\\.c\"}[300s]))"
        );
    }

    #[test]
    fn counts_are_read_per_model_and_bad_values_are_errors() {
        let result = vec![
            json!({"metric": {"namespace": "ns", "model_name": "busy"}, "value": [1.0, "42"]}),
            json!({"metric": {"namespace": "ns", "model_name": "idle"}, "value": [1.0, "0"]}),
            json!({"metric": {"namespace": "ns", "model_name": "odd"}, "value": [1.0, "NaN"]}),
        ];
        let models = ["busy", "idle", "odd", "gone"].map(|m| ModelKey::new("ns", m));
        let counts = read_request_counts(&result, &models);
        assert_eq!(counts[&models[0]], RequestCount::Read(42.0));
        assert_eq!(counts[&models[1]], RequestCount::Read(0.0));
        assert!(matches!(counts[&models[2]], RequestCount::Failed(ref e) if e.contains("finite")));
        assert_eq!(counts[&models[3]], RequestCount::NoSeries);
    }
}
