//! PromQL the controller sends, built in one place, and the readers of their answers. Queries
//! are batched: one per signal per cycle for every watched model at once (CONTRACT section 2).

use std::collections::HashMap;
use std::time::Duration;

use wva_actors::messages::ModelKey;
use wva_actors::policy::scale_to_zero::RequestCount;

use crate::prometheus_api::Sample;

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

/// The labels every per-pod query keeps. Prometheus' Kubernetes discovery names the pod label
/// `pod`; some relabelling configurations call it `pod_name`.
const POD_LABELS: &str = "namespace, model_name, pod, pod_name";

/// Label on a per-pod answer that says which metric name (current or older vLLM) it came from.
pub const SOURCE_LABEL: &str = "wva_metric";

/// A signal read per pod, under each name vLLM has given it (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSignal {
    pub names: &'static [&'static str],
    /// The range function over the last minute: `max_over_time` for saturation signals.
    pub over_time: &'static str,
}

pub const KV_CACHE: PodSignal = PodSignal {
    names: &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    over_time: "max_over_time",
};
pub const WAITING: PodSignal = PodSignal {
    names: &["vllm:num_requests_waiting"],
    over_time: "max_over_time",
};
/// The waiting queue's mean over the window: what requests really queued behind, for learning.
pub const WAITING_MEAN: PodSignal = PodSignal {
    names: &["vllm:num_requests_waiting"],
    over_time: "avg_over_time",
};
/// The waiting queue at the window's end: with its mean, which way it went.
pub const WAITING_LAST: PodSignal = PodSignal {
    names: &["vllm:num_requests_waiting"],
    over_time: "last_over_time",
};
pub const RUNNING: PodSignal = PodSignal {
    names: &["vllm:num_requests_running"],
    over_time: "avg_over_time",
};

/// `max by (namespace, model_name, pod) (<fn>(<metric>{ns}[1m]))` for one signal and every watched
/// model at once. With several names, each answer is tagged with the name it came from and the
/// newer name wins for a pod that exposes both.
pub fn per_pod(signal: PodSignal, namespaces: &[String]) -> String {
    let selector = namespace_selector(namespaces);
    let one = |name: &str| {
        format!(
            "max by ({POD_LABELS}) ({}({name}{selector}[1m]))",
            signal.over_time
        )
    };
    match signal.names {
        [only] => one(only),
        names => names
            .iter()
            .map(|name| {
                format!(
                    "label_replace({}, \"{SOURCE_LABEL}\", \"{name}\", \"\", \"\")",
                    one(name)
                )
            })
            .collect::<Vec<_>>()
            .join(&format!(" or on ({POD_LABELS}) ")),
    }
}

/// Successful requests per second per pod over the last minute.
pub fn request_rate(namespaces: &[String]) -> String {
    format!(
        "sum by ({POD_LABELS}) (rate(vllm:request_success_total{}[1m]))",
        namespace_selector(namespaces)
    )
}

/// Mean of a `_sum`/`_count` pair per pod over the last minute; with several names, the newer
/// name wins for a pod that exposes both.
pub fn per_pod_mean(names: &[&str], namespaces: &[String]) -> String {
    let selector = namespace_selector(namespaces);
    names
        .iter()
        .map(|name| {
            format!(
                "(sum by ({POD_LABELS}) (rate({name}_sum{selector}[1m])) / sum by ({POD_LABELS}) (rate({name}_count{selector}[1m])))"
            )
        })
        .collect::<Vec<_>>()
        .join(&format!(" or on ({POD_LABELS}) "))
}

pub const PROMPT_TOKENS: &[&str] = &["vllm:request_prompt_tokens"];
pub const GENERATION_TOKENS: &[&str] = &["vllm:request_generation_tokens"];
pub const TTFT: &[&str] = &["vllm:time_to_first_token_seconds"];
pub const ITL: &[&str] = &[
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",
];

/// Timestamp of each pod's newest sample over the last 15 minutes (one point a minute), to tell
/// stale series (`MetricsStale`) from none at all (`MetricsMissing`).
pub fn newest_sample(namespaces: &[String]) -> String {
    format!(
        "max by ({POD_LABELS}) (max_over_time(timestamp(vllm:num_requests_waiting{})[15m:1m]))",
        namespace_selector(namespaces)
    )
}

/// One pod's value in a per-pod answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PodValue {
    pub namespace: String,
    pub model_name: String,
    pub pod: String,
    /// `None` for NaN and ±Inf: "no sample", never 0.
    pub value: Option<f64>,
    /// The metric name the value came from, when the query reads several.
    pub source: Option<String>,
}

/// Reads a per-pod answer. Series without a namespace, a model or a pod are skipped.
pub fn read_per_pod(result: &[Sample]) -> Vec<PodValue> {
    result
        .iter()
        .filter_map(|series| {
            Some(PodValue {
                namespace: series.label("namespace")?.to_string(),
                model_name: series.label("model_name")?.to_string(),
                pod: series
                    .label("pod")
                    .or_else(|| series.label("pod_name"))?
                    .to_string(),
                value: series.number(),
                source: series.label(SOURCE_LABEL).map(str::to_string),
            })
        })
        .collect()
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
    result: &[Sample],
    models: &[ModelKey],
) -> HashMap<ModelKey, RequestCount> {
    let mut found: HashMap<ModelKey, RequestCount> = HashMap::new();
    for series in result {
        let (Some(ns), Some(model)) = (series.label("namespace"), series.label("model_name"))
        else {
            continue;
        };
        let key = ModelKey::new(ns, model);
        found.insert(
            key,
            match series.number() {
                Some(v) => RequestCount::Read(v.max(0.0)),
                None => RequestCount::Failed(format!(
                    "request count of {ns}/{model}: expected a finite number, got {:?}",
                    series.value.1
                )),
            },
        );
    }
    models
        .iter()
        .map(|m| (m.clone(), found.remove(m).unwrap_or(RequestCount::NoSeries)))
        .collect()
}

/// The llm-d scheduler's (EPP's) flow-control queue gauge, newest name first: llm-d renamed the
/// `inference_extension_` family to `llm_d_epp_` and still exports both for a while.
pub const EPP_QUEUE: [&str; 2] = [
    "llm_d_epp_flow_control_queue_size",
    "inference_extension_flow_control_queue_size",
];
/// The labels the EPP queue is summed by: the model a request asked for, and the model it was
/// sent to (what vLLM reports as `model_name`).
const EPP_LABELS: &str = "namespace, model_name, target_model_name";

/// Requests held in the EPP's flow-control queue, per namespace and model, under the newer name
/// where it exists (never both, so nothing is counted twice).
pub fn held_requests(namespaces: &[String]) -> String {
    let selector = namespace_selector(namespaces);
    EPP_QUEUE
        .iter()
        .map(|name| format!("sum by ({EPP_LABELS}) ({name}{selector})"))
        .collect::<Vec<_>>()
        .join(&format!(" or on ({EPP_LABELS}) "))
}

/// Reads a held-requests answer: per (namespace, model), the model being `target_model_name`
/// when the EPP set it, else `model_name`. Series without either, and values that are not
/// finite non-negative numbers, are skipped (a queue cannot be negative).
pub fn read_held_requests(result: &[Sample]) -> HashMap<ModelKey, f64> {
    let mut held: HashMap<ModelKey, f64> = HashMap::new();
    for series in result {
        let model = series
            .label("target_model_name")
            .filter(|m| !m.is_empty())
            .or_else(|| series.label("model_name").filter(|m| !m.is_empty()));
        let (Some(ns), Some(model), Some(value)) =
            (series.label("namespace"), model, series.number())
        else {
            continue;
        };
        if value >= 0.0 {
            *held.entry(ModelKey::new(ns, model)).or_default() += value;
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn samples(v: Vec<serde_json::Value>) -> Vec<Sample> {
        serde_json::from_value(serde_json::Value::Array(v)).unwrap_or_default()
    }

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
    fn per_pod_queries_are_batched_and_prefer_the_newer_name() {
        assert_eq!(
            per_pod(WAITING, &["llm".into()]),
            "max by (namespace, model_name, pod, pod_name) (max_over_time(vllm:num_requests_waiting{namespace=~\"llm\"}[1m]))"
        );
        let kv = per_pod(KV_CACHE, &[]);
        assert_eq!(
            kv,
            "label_replace(max by (namespace, model_name, pod, pod_name) (max_over_time(vllm:kv_cache_usage_perc[1m])), \"wva_metric\", \"vllm:kv_cache_usage_perc\", \"\", \"\") or on (namespace, model_name, pod, pod_name) label_replace(max by (namespace, model_name, pod, pod_name) (max_over_time(vllm:gpu_cache_usage_perc[1m])), \"wva_metric\", \"vllm:gpu_cache_usage_perc\", \"\", \"\")"
        );
        assert!(per_pod_mean(ITL, &[]).contains(" or on (namespace, model_name, pod, pod_name) "));
    }

    #[test]
    fn per_pod_answers_fall_back_to_pod_name_and_drop_non_finite_values() {
        let result = vec![
            json!({"metric": {"namespace": "ns", "model_name": "m", "pod": "a", "wva_metric": "vllm:gpu_cache_usage_perc"}, "value": [1.0, "0.5"]}),
            json!({"metric": {"namespace": "ns", "model_name": "m", "pod_name": "b"}, "value": [1.0, "NaN"]}),
            json!({"metric": {"namespace": "ns", "model_name": "m", "pod": "c"}, "value": [1.0, "+Inf"]}),
            json!({"metric": {"namespace": "ns", "pod": "no-model"}, "value": [1.0, "1"]}),
        ];
        let values = read_per_pod(&samples(result));
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].value, Some(0.5));
        assert_eq!(
            values[0].source.as_deref(),
            Some("vllm:gpu_cache_usage_perc")
        );
        assert_eq!(values[1].pod, "b");
        assert_eq!(values[1].value, None, "NaN is no sample, not 0");
        assert_eq!(values[2].value, None, "Inf is no sample");
    }

    #[test]
    fn counts_are_read_per_model_and_bad_values_are_errors() {
        let result = vec![
            json!({"metric": {"namespace": "ns", "model_name": "busy"}, "value": [1.0, "42"]}),
            json!({"metric": {"namespace": "ns", "model_name": "idle"}, "value": [1.0, "0"]}),
            json!({"metric": {"namespace": "ns", "model_name": "odd"}, "value": [1.0, "NaN"]}),
        ];
        let models = ["busy", "idle", "odd", "gone"].map(|m| ModelKey::new("ns", m));
        let counts = read_request_counts(&samples(result), &models);
        assert_eq!(counts[&models[0]], RequestCount::Read(42.0));
        assert_eq!(counts[&models[1]], RequestCount::Read(0.0));
        assert!(matches!(counts[&models[2]], RequestCount::Failed(ref e) if e.contains("finite")));
        assert_eq!(counts[&models[3]], RequestCount::NoSeries);
    }

    #[test]
    fn held_requests_read_both_generations_once_and_by_the_target_model() {
        assert_eq!(
            held_requests(&["llm".into()]),
            "sum by (namespace, model_name, target_model_name) (llm_d_epp_flow_control_queue_size{namespace=~\"llm\"}) or on (namespace, model_name, target_model_name) sum by (namespace, model_name, target_model_name) (inference_extension_flow_control_queue_size{namespace=~\"llm\"})"
        );
        let held = read_held_requests(&samples(vec![
            json!({"metric": {"namespace": "llm", "model_name": "alias", "target_model_name": "m"}, "value": [1, "3"]}),
            json!({"metric": {"namespace": "llm", "model_name": "m", "target_model_name": ""}, "value": [1, "2"]}),
            json!({"metric": {"namespace": "llm", "model_name": "other"}, "value": [1, "NaN"]}),
            json!({"metric": {"namespace": "llm", "model_name": "neg"}, "value": [1, "-1"]}),
            json!({"metric": {"namespace": "llm"}, "value": [1, "9"]}),
        ]));
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[&ModelKey::new("llm", "m")], 5.0);
    }
}
