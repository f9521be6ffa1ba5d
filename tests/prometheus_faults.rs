//! A Prometheus that misbehaves, scripted on 127.0.0.1: answers that fail for some signals,
//! malformed JSON, `status: error`, a huge answer, duplicate and NaN samples. Each gives a named
//! outcome (the read fails as a whole and the safety net decides, or the signals that did
//! arrive are used and the rest is a warning), never a panic and never a sample that hides load.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use wva::config::settings::PrometheusSettings;
use wva::poller::{PodIndex, PollPlan, PollReport, poll};
use wva::prometheus_api::{PrometheusClient, QueryPolicy};
use wva_actors::messages::{Metrics, ModelKey};

const NS: &str = "llm";
const MODEL: &str = "m";

/// A series of the per-pod shape the controller asks for.
fn series(pod: &str, value: &str) -> String {
    format!(
        r#"{{"metric":{{"namespace":"{NS}","model_name":"{MODEL}","pod":"{pod}"}},"value":[1,"{value}"]}}"#
    )
}

fn answer(series: &[String]) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

/// Which signal a query asks for, by its metric name.
fn signal(query: &str) -> &'static str {
    if query.contains("request_success_total") {
        "rate"
    } else if query.contains("kv_cache_usage") || query.contains("gpu_cache_usage") {
        "kv"
    } else if query.contains("avg_over_time(vllm:num_requests_waiting") {
        "waiting_mean"
    } else if query.contains("last_over_time(vllm:num_requests_waiting") {
        "waiting_last"
    } else if query.contains("num_requests_waiting") {
        "waiting"
    } else if query.contains("num_requests_running") {
        "running"
    } else {
        "other"
    }
}

/// The scripted answer of `mode` to `query`.
fn script(mode: &str, query: &str) -> (StatusCode, String) {
    let ok = |s: Vec<String>| (StatusCode::OK, answer(&s));
    match (mode, signal(query)) {
        // The waiting queue, a required signal, fails.
        ("partial", "waiting") => (
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples"}"#.into(),
        ),
        // An optional signal (the request rate) fails with a 500.
        ("optional", "rate") => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
        // A Prometheus older than 2.26 has no `last_over_time`.
        ("old", "waiting_last") => (
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"1:1: parse error: unknown function with name \"last_over_time\""}"#.into(),
        ),
        ("malformed", _) => (StatusCode::OK, r#"{"status":"success","data":"#.into()),
        ("error", _) => (
            StatusCode::OK,
            r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#.into(),
        ),
        ("huge", "kv") => {
            let mut s: Vec<String> = (0..100_000).map(|i| series(&format!("foreign-{i}"), "0.5")).collect();
            s.push(series("p0", "0.9"));
            ok(s)
        }
        // p0: a real value, a NaN and a lower duplicate; p1: nothing but NaN and Inf.
        ("dupnan", "kv") => ok(vec![
            series("p0", "0.9"),
            series("p0", "NaN"),
            series("p0", "0.5"),
            series("p1", "NaN"),
        ]),
        ("dupnan", "waiting") => ok(vec![series("p0", "NaN"), series("p0", "3"), series("p1", "+Inf")]),
        (_, "kv") => ok(vec![series("p0", "0.9"), series("p1", "0.4")]),
        (_, "waiting" | "running" | "waiting_mean" | "waiting_last") => {
            ok(vec![series("p0", "2"), series("p1", "0")])
        }
        (_, "rate") => ok(vec![series("p0", "1.5"), series("p1", "1.0")]),
        _ => ok(Vec::new()),
    }
}

/// The `query` field of a form body, percent-decoded.
fn form_query(body: &str) -> String {
    let raw = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("query="))
        .unwrap_or("");
    let bytes = raw.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves `/{mode}/api/v1/query` on 127.0.0.1; returns the address.
async fn scripted_prometheus() -> String {
    let app =
        axum::Router::new().route(
            "/{mode}/api/v1/query",
            post(|Path(mode): Path<String>, body: String| async move {
                script(&mode, &form_query(&body))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address
}

async fn read(address: &str, mode: &str) -> PollReport {
    let settings = PrometheusSettings {
        base_url: Some(format!("http://{address}/{mode}")),
        allow_http: true,
        ..Default::default()
    };
    let client = PrometheusClient::new(
        &settings,
        QueryPolicy {
            timeout: Duration::from_secs(10),
            retries: 0,
            backoff: Duration::from_millis(10),
        },
    )
    .unwrap();
    let pods: PodIndex = HashMap::from([
        ((NS.into(), "p0".into()), "dep".into()),
        ((NS.into(), "p1".into()), "dep".into()),
    ]);
    let plan = PollPlan {
        namespaces: vec![NS.into()],
        serving: true,
        ..Default::default()
    };
    poll(&client, &plan, &pods, 0.0).await
}

fn failed(report: &PollReport) -> &str {
    match &report.metrics {
        Metrics::Failed(e) => e,
        Metrics::Read(s) => panic!("expected a failed read, got {s:?}"),
    }
}

/// An endless answer and an error with a novel for its text: refused and clipped.
#[tokio::test]
async fn an_oversized_answer_is_refused_and_error_text_clipped() {
    use axum::body::Body;
    wva::tls::install_default_provider();
    // 80 MiB of series, streamed (never held by the server either).
    let endless = axum::Router::new().route(
        "/api/v1/query",
        post(|| async {
            let head = futures_util::stream::once(async {
                Ok::<_, std::convert::Infallible>(bytes_of(
                    r#"{"status":"success","data":{"resultType":"vector","result":["#,
                ))
            });
            let rows = futures_util::stream::iter((0..80 * 1024).map(|i| {
                let row = series(&format!("pod-{i}"), "0.5");
                Ok(bytes_of(&format!("{row},").repeat(1024 / row.len() + 1)))
            }));
            Body::from_stream(futures_util::StreamExt::chain(head, rows))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, endless).await;
    });
    let settings = PrometheusSettings {
        base_url: Some(format!("http://{address}")),
        allow_http: true,
        ..Default::default()
    };
    let client = PrometheusClient::new(&settings, QueryPolicy::default()).unwrap();
    let e = client.query("up").await.expect_err("too large");
    assert_eq!(
        e.to_string(),
        "unexpected answer from Prometheus: the answer is larger than 64 MiB"
    );

    let novel = format!(
        r#"{{"status":"error","errorType":"bad_data","error":"{}"}}"#,
        "x".repeat(100_000)
    );
    let e = wva::prometheus_api::read_answer(400, novel.as_bytes()).expect_err("error");
    assert!(e.to_string().len() < 700, "{}", e.to_string().len());
}

fn bytes_of(text: &str) -> bytes::Bytes {
    bytes::Bytes::from(text.to_string())
}

#[tokio::test]
async fn every_kind_of_bad_answer_has_a_named_outcome() {
    wva::tls::install_default_provider();
    let address = scripted_prometheus().await;

    // A required signal fails: the read fails as a whole (the safety net decides), saying
    // which signal and what Prometheus said; the failure is counted by signal and kind.
    let partial = read(&address, "partial").await;
    let e = failed(&partial);
    assert!(
        e.starts_with("waiting queue:") && e.contains("too many samples"),
        "{e}"
    );
    assert!(
        partial
            .failures
            .iter()
            .any(|f| f.query_type == "queue" && f.reason == "query"),
        "{:?}",
        partial.failures
    );

    // An optional signal fails: the signals that arrived are used, the rest is a warning.
    let optional = read(&address, "optional").await;
    let Metrics::Read(snapshot) = &optional.metrics else {
        panic!("{:?}", optional.metrics);
    };
    let samples = &snapshot.by_model[&ModelKey::new(NS, MODEL)];
    assert_eq!(samples.len(), 2);
    assert!(samples.iter().all(|s| s.serving.is_none()));
    assert!(
        optional
            .warnings
            .iter()
            .any(|w| w.starts_with("request rate:")),
        "{:?}",
        optional.warnings
    );

    // A Prometheus without `last_over_time`: the read goes on with a warning, and each pod's
    // queue is taken to have ended at its mean (no change, the mean as the backlog).
    let old = read(&address, "old").await;
    let Metrics::Read(snapshot) = &old.metrics else {
        panic!("{:?}", old.metrics);
    };
    let samples = &snapshot.by_model[&ModelKey::new(NS, MODEL)];
    assert_eq!(samples.len(), 2);
    for s in samples {
        let serving = s.serving.expect("serving statistics");
        assert_eq!(serving.last_waiting, serving.mean_waiting, "{s:?}");
    }
    assert!(
        old.warnings
            .iter()
            .any(|w| w.starts_with("waiting queue at the window's end:")),
        "{:?}",
        old.warnings
    );

    // Malformed JSON and `status: error`: the read fails, naming the fault.
    let malformed = read(&address, "malformed").await;
    let e = failed(&malformed);
    assert!(e.starts_with("KV-cache utilisation:"), "{e}");
    assert!(
        malformed.failures.iter().all(|f| f.reason == "decode"),
        "{:?}",
        malformed.failures
    );
    let error = read(&address, "error").await;
    let e = failed(&error);
    assert!(
        e.contains("query timed out in expression evaluation"),
        "{e}"
    );

    // A huge answer (100,001 series): read whole, foreign pods dropped (how long it took is
    // printed, not judged: speed is the benchmarks' to report).
    let started = Instant::now();
    let huge = read(&address, "huge").await;
    let took = started.elapsed();
    eprintln!("a 100,001-series answer read in {took:?}");
    let Metrics::Read(snapshot) = &huge.metrics else {
        panic!("{:?}", huge.metrics);
    };
    let samples = &snapshot.by_model[&ModelKey::new(NS, MODEL)];
    let p0 = samples.iter().find(|s| s.pod == "p0").unwrap();
    assert_eq!(p0.kv_cache_usage, Some(0.9));
    assert_eq!(samples.len(), 2, "only the indexed pods");

    // Duplicates keep the highest value, NaN and Inf are no sample; a pod with nothing else
    // has no sample at all, so it never reads as idle.
    let dupnan = read(&address, "dupnan").await;
    let Metrics::Read(snapshot) = &dupnan.metrics else {
        panic!("{:?}", dupnan.metrics);
    };
    let samples = &snapshot.by_model[&ModelKey::new(NS, MODEL)];
    let p0 = samples.iter().find(|s| s.pod == "p0").unwrap();
    assert_eq!((p0.kv_cache_usage, p0.queue_length), (Some(0.9), Some(3.0)));
    assert!(samples.iter().all(|s| s.pod != "p1"), "{samples:?}");
}
