//! The metrics read of one cycle: the batched queries of every signal for all watched models at
//! once, sent together, and their answers turned into one [`MetricsSnapshot`]. Series of pods
//! that are not live pods of a managed Deployment (deleted, terminating, foreign) are dropped.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use wva_actors::messages::{Metrics, MetricsSnapshot, ModelKey, PodSample, ServingStats};
use wva_actors::policy::scale_to_zero::RequestCount;

use crate::prometheus_api::{PrometheusClient, QueryError, Sample};
use crate::queries::{self, PodValue};

/// Live, non-terminating pods by (namespace, pod name), and the Deployment that owns each.
pub type PodIndex = HashMap<(String, String), String>;

/// What to read this cycle.
#[derive(Debug, Clone, Default)]
pub struct PollPlan {
    /// Watched namespaces; empty reads every namespace.
    pub namespaces: Vec<String>,
    /// Read request rates, lengths and latencies (the model-based optimizer's inputs).
    pub serving: bool,
    /// Models with scale to zero on, and their retention windows.
    pub request_counts: Vec<(ModelKey, Duration)>,
}

/// The outcome of one read.
#[derive(Debug, Clone)]
pub struct PollReport {
    pub metrics: Metrics,
    /// The KV-cache metric names found, for the log (older vLLM exposes the older name).
    pub kv_sources: Vec<String>,
    /// Problems that did not stop the read (an optional query failed).
    pub warnings: Vec<String>,
    /// Every query that failed, by signal and kind (the controller counts them).
    pub failures: Vec<ReadFailure>,
}

/// One failed query of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFailure {
    /// The signal: `kv_cache`, `queue`, `running`, `sample_age`, `request_rate`, ...
    pub query_type: &'static str,
    /// `unreachable`, `http`, `query`, `decode` or `token`.
    pub reason: &'static str,
}

/// The signal each query of a read asks for, in the order they are sent.
const QUERY_TYPES: [&str; 12] = [
    "kv_cache",
    "queue",
    "running",
    "sample_age",
    "epp_queue",
    "request_rate",
    "prompt_tokens",
    "generation_tokens",
    "ttft",
    "itl",
    "queue_mean",
    "queue_last",
];

/// Reads every signal once. `now_s` is the wall clock in seconds, for sample ages.
pub async fn poll(
    client: &PrometheusClient,
    plan: &PollPlan,
    pods: &PodIndex,
    now_s: f64,
) -> PollReport {
    let ns = &plan.namespaces;
    let mut texts = vec![
        queries::per_pod(queries::KV_CACHE, ns),
        queries::per_pod(queries::WAITING, ns),
        queries::per_pod(queries::RUNNING, ns),
        queries::newest_sample(ns),
        queries::held_requests(ns),
    ];
    if plan.serving {
        texts.push(queries::request_rate(ns));
        texts.push(queries::per_pod_mean(queries::PROMPT_TOKENS, ns));
        texts.push(queries::per_pod_mean(queries::GENERATION_TOKENS, ns));
        texts.push(queries::per_pod_mean(queries::TTFT, ns));
        texts.push(queries::per_pod_mean(queries::ITL, ns));
        texts.push(queries::per_pod(queries::WAITING_MEAN, ns));
        texts.push(queries::per_pod(queries::WAITING_LAST, ns));
    }
    // One query per distinct retention window (usually one), for all its models.
    let mut windows: BTreeMap<Duration, Vec<ModelKey>> = BTreeMap::new();
    for (model, retention) in &plan.request_counts {
        windows.entry(*retention).or_default().push(model.clone());
    }
    let count_start = texts.len();
    for retention in windows.keys() {
        texts.push(queries::request_count(*retention, ns));
    }
    let answers: Vec<Result<Vec<Sample>, QueryError>> =
        join_all(texts.iter().map(|q| client.query(q))).await;
    let failures: Vec<ReadFailure> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            a.as_ref().err().map(|e| ReadFailure {
                query_type: QUERY_TYPES.get(i).copied().unwrap_or("request_count"),
                reason: e.kind(),
            })
        })
        .collect();
    let required = |i: usize, what: &str| match &answers[i] {
        Ok(result) => Ok(queries::read_per_pod(result)),
        Err(e) => Err(format!("{what}: {e}")),
    };
    let (kv, waiting, running) = match (
        required(0, "KV-cache utilisation"),
        required(1, "waiting queue"),
        required(2, "running batch"),
    ) {
        (Ok(kv), Ok(waiting), Ok(running)) => (kv, waiting, running),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return PollReport {
                metrics: Metrics::Failed(e),
                kv_sources: Vec::new(),
                warnings: Vec::new(),
                failures,
            };
        }
    };
    // The others only refine the read: a failure is a warning.
    let mut warnings = Vec::new();
    let mut optional = |i: usize, what: &str| match &answers[i] {
        Ok(result) => queries::read_per_pod(result),
        Err(e) => {
            warnings.push(format!("{what}: {e}"));
            Vec::new()
        }
    };
    let newest = optional(3, "sample ages");
    let serving: Vec<Vec<PodValue>> = if plan.serving {
        [
            "request rate",
            "prompt length",
            "output length",
            "TTFT",
            "ITL",
            "mean waiting queue",
            "waiting queue at the window's end",
        ]
        .iter()
        .enumerate()
        .map(|(i, what)| optional(5 + i, what))
        .collect()
    } else {
        Vec::new()
    };

    // No EPP in front of the model is the usual case: an empty answer, not a warning.
    let held = match &answers[4] {
        Ok(result) => queries::read_held_requests(result),
        Err(e) => {
            warnings.push(format!("EPP flow-control queue: {e}"));
            HashMap::new()
        }
    };

    let mut kv_sources: Vec<String> = kv.iter().filter_map(|v| v.source.clone()).collect();
    kv_sources.sort();
    kv_sources.dedup();

    let mut snapshot = assemble(&kv, &waiting, &running, &serving, pods);
    stale_deployments(&mut snapshot, &newest, pods, now_s);
    snapshot.held_requests = held;
    for (i, models) in windows.values().enumerate() {
        match &answers[count_start + i] {
            Ok(result) => snapshot
                .request_counts
                .extend(queries::read_request_counts(result, models)),
            Err(e) => {
                for m in models {
                    snapshot.request_counts.insert(
                        m.clone(),
                        RequestCount::Failed(format!("request count: {e}")),
                    );
                }
            }
        }
    }
    PollReport {
        metrics: Metrics::Read(std::sync::Arc::new(snapshot)),
        kv_sources,
        warnings,
        failures,
    }
}

type PodKey = (String, String, String);

/// Joins the per-pod answers into samples, keeping only pods in the index. A pod answered
/// twice for a signal (two scrape jobs, or `pod` and `pod_name` both set) keeps the higher
/// value: a duplicate never hides load, and a NaN never erases a real sample.
pub fn assemble(
    kv: &[PodValue],
    waiting: &[PodValue],
    running: &[PodValue],
    serving: &[Vec<PodValue>],
    pods: &PodIndex,
) -> MetricsSnapshot {
    // (namespace, model, pod) -> sample
    let mut samples: BTreeMap<PodKey, PodSample> = BTreeMap::new();
    let mut field = |values: &[PodValue], slot: fn(&mut PodSample) -> &mut Option<f64>| {
        for v in values {
            let Some(deployment) = pods.get(&(v.namespace.clone(), v.pod.clone())) else {
                continue;
            };
            let sample = samples
                .entry((v.namespace.clone(), v.model_name.clone(), v.pod.clone()))
                .or_insert_with(|| PodSample {
                    pod: v.pod.clone(),
                    deployment: deployment.clone(),
                    ..Default::default()
                });
            let slot = slot(sample);
            *slot = match (*slot, v.value) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    };
    field(kv, |s| &mut s.kv_cache_usage);
    field(waiting, |s| &mut s.queue_length);
    field(running, |s| &mut s.running);
    // A pod with every signal NaN has no sample at all.
    samples.retain(|_, s| s.kv_cache_usage.is_some() || s.queue_length.is_some());

    if let [rate, input, output, ttft, itl, waiting_mean, waiting_last] = serving {
        let index = |values: &[PodValue]| -> HashMap<PodKey, f64> {
            values
                .iter()
                .filter_map(|v| {
                    Some((
                        (v.namespace.clone(), v.model_name.clone(), v.pod.clone()),
                        v.value?,
                    ))
                })
                .collect()
        };
        let (input, output, ttft, itl, waiting_mean, waiting_last) = (
            index(input),
            index(output),
            index(ttft),
            index(itl),
            index(waiting_mean),
            index(waiting_last),
        );
        for (key, rps) in index(rate) {
            let Some(sample) = samples.get_mut(&key) else {
                continue;
            };
            // A pod's finite value, else `unread`.
            let read_or = |m: &HashMap<PodKey, f64>, unread: f64| {
                m.get(&key)
                    .copied()
                    .filter(|v| v.is_finite())
                    .unwrap_or(unread)
            };
            // With no request in the window the means are 0/0: zero, as the learner expects.
            // So is a mean with nothing to average (no ITL from one-token outputs).
            let mean = |m: &HashMap<PodKey, f64>| read_or(m, 0.0);
            let mean_waiting = mean(&waiting_mean);
            let stats = ServingStats {
                request_rate_rps: rps,
                mean_input_tokens: mean(&input),
                mean_output_tokens: mean(&output),
                ttft_ms: mean(&ttft) * 1e3,
                itl_ms: mean(&itl) * 1e3,
                mean_waiting,
                // Unread, the queue is taken to have ended where it stood on average: no
                // change, and its mean as the backlog.
                last_waiting: read_or(&waiting_last, mean_waiting),
            };
            sample.serving = stats.is_valid().then_some(stats);
        }
    }

    let mut snapshot = MetricsSnapshot::default();
    for ((namespace, model, _), sample) in samples {
        snapshot
            .by_model
            .entry(ModelKey::new(namespace, model))
            .or_default()
            .push(sample);
    }
    snapshot
}

/// Marks Deployments whose live pods have older series but none in the window.
fn stale_deployments(
    snapshot: &mut MetricsSnapshot,
    newest: &[PodValue],
    pods: &PodIndex,
    now_s: f64,
) {
    let sampled: std::collections::HashSet<(&str, &str)> = snapshot
        .by_model
        .iter()
        .flat_map(|(m, samples)| {
            samples
                .iter()
                .map(move |s| (m.namespace.as_str(), s.deployment.as_str()))
        })
        .collect();
    let mut stale: HashMap<(String, String), u64> = HashMap::new();
    for v in newest {
        let (Some(at), Some(deployment)) =
            (v.value, pods.get(&(v.namespace.clone(), v.pod.clone())))
        else {
            continue;
        };
        if sampled.contains(&(v.namespace.as_str(), deployment.as_str())) {
            continue;
        }
        let age = (now_s - at).max(0.0) as u64;
        let entry = stale
            .entry((v.namespace.clone(), deployment.clone()))
            .or_insert(age);
        *entry = (*entry).min(age);
    }
    snapshot.stale = stale;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(pod: &str, v: Option<f64>) -> PodValue {
        PodValue {
            namespace: "ns".into(),
            model_name: "m".into(),
            pod: pod.into(),
            value: v,
            source: None,
        }
    }

    fn index(entries: &[(&str, &str)]) -> PodIndex {
        entries
            .iter()
            .map(|(p, d)| (("ns".to_string(), p.to_string()), d.to_string()))
            .collect()
    }

    #[test]
    fn only_live_pods_of_managed_deployments_count_and_nan_is_no_sample() {
        let pods = index(&[("a-1", "a"), ("a-2", "a"), ("b-1", "b")]);
        let kv = [
            value("a-1", Some(0.4)),
            value("a-2", None),
            value("gone-1", Some(0.99)),
            value("b-1", None),
        ];
        let waiting = [value("a-1", Some(2.0)), value("a-2", Some(0.0))];
        let snap = assemble(&kv, &waiting, &[], &[], &pods);
        let samples = &snap.by_model[&ModelKey::new("ns", "m")];
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].kv_cache_usage, Some(0.4));
        assert_eq!(samples[1].kv_cache_usage, None, "NaN stays no sample");
        assert_eq!(samples[1].queue_length, Some(0.0));
        assert!(samples.iter().all(|s| s.deployment == "a"));
    }

    #[test]
    fn serving_statistics_join_by_pod_with_zero_means_when_idle() {
        let pods = index(&[("a-1", "a")]);
        let kv = [value("a-1", Some(0.4))];
        let serving = vec![
            vec![value("a-1", Some(0.0))],
            vec![value("a-1", None)],
            vec![],
            vec![value("a-1", None)],
            vec![],
            vec![value("a-1", Some(1.5))],
            vec![],
        ];
        let snap = assemble(&kv, &[], &[], &serving, &pods);
        let s = snap.by_model[&ModelKey::new("ns", "m")][0]
            .serving
            .expect("serving");
        assert_eq!(s.request_rate_rps, 0.0);
        assert_eq!(s.mean_input_tokens, 0.0);
        assert_eq!(s.mean_waiting, 1.5);
        assert_eq!(
            s.last_waiting, 1.5,
            "unread: where the queue stood on average"
        );
    }

    /// CONTRACT section 2: NaN and ±Inf are no sample. A queue's end that is not finite is
    /// taken where the queue stood on average, never as 0 (which would read as a drain).
    #[test]
    fn a_queue_end_that_is_not_finite_is_the_mean() {
        let pods = index(&[("a-1", "a"), ("a-2", "a")]);
        let kv = [value("a-1", Some(0.4)), value("a-2", Some(0.4))];
        let serving = vec![
            vec![value("a-1", Some(1.0)), value("a-2", Some(1.0))],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![value("a-1", Some(4.0)), value("a-2", Some(3.0))],
            vec![value("a-1", Some(f64::NAN)), value("a-2", Some(1.0))],
        ];
        let snap = assemble(&kv, &[], &[], &serving, &pods);
        let samples = &snap.by_model[&ModelKey::new("ns", "m")];
        let of = |pod: &str| {
            samples
                .iter()
                .find(|s| s.pod == pod)
                .and_then(|s| s.serving)
                .expect("serving")
        };
        assert_eq!(of("a-1").last_waiting, 4.0, "NaN: the mean");
        assert_eq!(of("a-2").last_waiting, 1.0, "read: as read");
    }

    #[test]
    fn deployments_with_only_old_samples_are_stale() {
        let pods = index(&[("a-1", "a"), ("b-1", "b")]);
        let mut snap = assemble(&[value("b-1", Some(0.1))], &[], &[], &[], &pods);
        stale_deployments(
            &mut snap,
            &[value("a-1", Some(1000.0)), value("b-1", Some(1590.0))],
            &pods,
            1600.0,
        );
        assert_eq!(snap.stale.get(&("ns".into(), "a".into())), Some(&600));
        assert!(!snap.stale.contains_key(&("ns".into(), "b".into())));
    }
}
