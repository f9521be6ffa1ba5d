//! The Prometheus client and the cycle's batched read against a real Prometheus (plain HTTP,
//! TLS with a CA and an expected server name, mutual TLS), and against small local servers for
//! what a real Prometheus cannot show on demand (bearer tokens, slowness, 5xx).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Emulator, Pki, Prometheus, Target};
use wva::config::settings::PrometheusSettings;
use wva::poller::{PodIndex, PollPlan, poll};
use wva::prometheus_api::{PrometheusClient, QueryError, QueryPolicy};
use wva_actors::messages::{Metrics, ModelKey};

fn settings(url: &str) -> PrometheusSettings {
    PrometheusSettings {
        base_url: Some(url.to_string()),
        allow_http: true,
        ..Default::default()
    }
}

fn quick() -> QueryPolicy {
    QueryPolicy {
        timeout: Duration::from_secs(3),
        retries: 1,
        backoff: Duration::from_millis(50),
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Retries a query until Prometheus answers with at least `series` series (it needs a few
/// scrapes after start), bounded in time.
async fn wait_series(
    client: &PrometheusClient,
    query: &str,
    series: usize,
) -> Vec<wva::prometheus_api::Sample> {
    let start = Instant::now();
    loop {
        match client.query(query).await {
            Ok(r) if r.len() >= series => return r,
            other => assert!(
                start.elapsed() < Duration::from_secs(30),
                "{query}: {other:?} after 30s"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_batched_read_covers_both_name_generations_and_drops_foreign_pods() {
    wva::tls::install_default_provider();
    let current = Emulator::start(&["--servers", "2", "--load", "constant:3"]);
    let legacy = Emulator::start(&["--metric-names", "legacy", "--load", "constant:3"]);
    assert_eq!(current.model, legacy.model);
    let prom = Prometheus::start(
        &[
            Target::pod(&current.addresses[0], "llm", "new-7d9f-a"),
            Target::pod(&current.addresses[1], "llm", "deleted-5c4b-z"),
            Target::pod(&legacy.addresses[0], "llm", "old-6b8c-a"),
        ],
        None,
    );
    let client = PrometheusClient::new(&settings(&prom.url()), quick()).unwrap();
    wait_series(&client, "vllm:kv_cache_usage_perc", 2).await;
    wait_series(&client, "vllm:gpu_cache_usage_perc", 1).await;
    wait_series(&client, "rate(vllm:request_success_total[1m]) > 0", 3).await;

    // The pod index holds live pods of managed Deployments only: "deleted-..." is gone.
    let pods: PodIndex = HashMap::from([
        (("llm".into(), "new-7d9f-a".into()), "new".into()),
        (("llm".into(), "old-6b8c-a".into()), "old".into()),
    ]);
    let plan = PollPlan {
        namespaces: vec!["llm".into()],
        serving: true,
        request_counts: vec![(
            ModelKey::new("llm", &current.model),
            Duration::from_secs(600),
        )],
    };
    let report = poll(&client, &plan, &pods, now_s()).await;
    let Metrics::Read(snapshot) = &report.metrics else {
        panic!("read failed: {:?}", report.metrics);
    };
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(
        report.kv_sources,
        vec!["vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"],
        "both generations are found and named"
    );
    let model = ModelKey::new("llm", &current.model);
    let samples = &snapshot.by_model[&model];
    let mut by_deployment: Vec<&str> = samples.iter().map(|s| s.deployment.as_str()).collect();
    by_deployment.sort();
    assert_eq!(by_deployment, ["new", "old"], "{samples:?}");
    for s in samples {
        let kv = s.kv_cache_usage.expect("KV-cache use");
        assert!((0.0..=1.0).contains(&kv), "{s:?}");
        assert!(s.queue_length.is_some() && s.running.is_some(), "{s:?}");
        let serving = s.serving.expect("serving statistics");
        assert!(serving.request_rate_rps > 0.0, "{serving:?}");
        assert!(
            serving.mean_input_tokens > 0.0 && serving.itl_ms > 0.0,
            "{serving:?}"
        );
        // The queue at the window's end (`last_over_time`) is one of the minute's values, so
        // never above its maximum.
        let highest = s.queue_length.expect("waiting queue");
        assert!(
            (0.0..=highest).contains(&serving.last_waiting),
            "{serving:?} against a highest queue of {highest}"
        );
    }
    assert!(
        matches!(snapshot.request_counts[&model], wva_actors::policy::scale_to_zero::RequestCount::Read(n) if n > 0.0),
        "{:?}",
        snapshot.request_counts
    );

    // A namespace nobody serves in: nothing is read, and nothing fails.
    let empty = PollPlan {
        namespaces: vec!["elsewhere".into()],
        ..Default::default()
    };
    let report = poll(&client, &empty, &pods, now_s()).await;
    assert!(matches!(&report.metrics, Metrics::Read(s) if s.by_model.is_empty()));

    // A query Prometheus refuses is an error with its words, and is not retried.
    let e = client.query("sum(").await.expect_err("bad query");
    assert!(
        matches!(&e, QueryError::Query { error_type, .. } if error_type == "bad_data"),
        "{e}"
    );
}

#[tokio::test]
async fn tls_with_a_ca_an_expected_name_and_mutual_tls() {
    wva::tls::install_default_provider();
    let pki = Pki::new();
    let tls = Prometheus::start(&[], Some(&pki.web_config(false)));
    let url = format!("https://{}", tls.address);
    let with = |f: &dyn Fn(&mut PrometheusSettings)| {
        let mut s = settings(&url);
        f(&mut s);
        PrometheusClient::new(&s, quick()).unwrap()
    };
    let trusted = with(&|s| s.ca_cert_path = Some(pki.path("ca.pem")));
    wait_series(&trusted, "vector(1)", 1).await;

    let untrusted = with(&|s| s.ca_cert_path = Some(pki.path("other-ca.pem")));
    let e = untrusted.query("vector(1)").await.expect_err("unknown CA");
    assert!(matches!(e, QueryError::Unreachable(_)), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    let skip = with(&|s| s.insecure_skip_verify = true);
    assert_eq!(skip.query("vector(1)").await.unwrap().len(), 1);

    // Reached by IP, checked against the service name the certificate carries.
    let named = with(&|s| {
        s.ca_cert_path = Some(pki.path("ca.pem"));
        s.server_name = Some("prometheus.monitoring.svc".into());
    });
    assert_eq!(named.query("vector(1)").await.unwrap().len(), 1);
    let wrong_name = with(&|s| {
        s.ca_cert_path = Some(pki.path("ca.pem"));
        s.server_name = Some("thanos.monitoring.svc".into());
    });
    assert!(wrong_name.query("vector(1)").await.is_err());
    drop(tls);

    let mtls = Prometheus::start(&[], Some(&pki.web_config(true)));
    let url = format!("https://{}", mtls.address);
    let mut s = settings(&url);
    s.ca_cert_path = Some(pki.path("ca.pem"));
    let anonymous = PrometheusClient::new(&s, quick()).unwrap();
    s.client_cert_path = Some(pki.path("client.pem"));
    s.client_key_path = Some(pki.path("client-key.pem"));
    let client = PrometheusClient::new(&s, quick()).unwrap();
    wait_series(&client, "vector(1)", 1).await;
    let e = anonymous
        .query("vector(1)")
        .await
        .expect_err("no client certificate");
    assert!(matches!(e, QueryError::Unreachable(_)), "{e}");
}

/// A stand-in for Prometheus' query API on 127.0.0.1 that records the Authorization header
/// and can be slow or fail first.
struct FakeApi {
    address: String,
    auth: Arc<Mutex<Vec<Option<String>>>>,
    calls: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeApi {
    async fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::post;
        #[derive(Clone)]
        struct S {
            auth: Arc<Mutex<Vec<Option<String>>>>,
            calls: Arc<AtomicUsize>,
        }
        const ANSWER: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#;
        let state = S {
            auth: Arc::default(),
            calls: Arc::default(),
        };
        let record = |s: &S, h: &HeaderMap| {
            s.calls.fetch_add(1, Ordering::SeqCst);
            s.auth.lock().unwrap().push(
                h.get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            );
        };
        let app = axum::Router::new()
            .route(
                "/ok/api/v1/query",
                post(move |State(s): State<S>, h: HeaderMap| async move {
                    record(&s, &h);
                    (StatusCode::OK, ANSWER)
                }),
            )
            .route(
                "/slow/api/v1/query",
                post(move |State(s): State<S>, h: HeaderMap| async move {
                    record(&s, &h);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (StatusCode::OK, ANSWER)
                }),
            )
            .route(
                "/flaky/api/v1/query",
                post(move |State(s): State<S>, h: HeaderMap| async move {
                    record(&s, &h);
                    if s.calls.load(Ordering::SeqCst) == 1 {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting up")
                    } else {
                        (StatusCode::OK, ANSWER)
                    }
                }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            auth: state.auth,
            calls: state.calls,
            _server: server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.address)
    }
}

#[tokio::test]
async fn tokens_timeouts_retries_and_a_prometheus_that_is_down() {
    wva::tls::install_default_provider();
    let api = FakeApi::start().await;

    let mut s = settings(&api.url("ok"));
    s.bearer_token = Some(wva::config::secret::Secret::new("fixed-token"));
    let client = PrometheusClient::new(&s, quick()).unwrap();
    client.query("up").await.unwrap();
    assert_eq!(
        api.auth
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()
            .as_deref(),
        Some("Bearer fixed-token")
    );

    // The token file wins over the fixed token and is re-read when it is rotated.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").unwrap();
    s.token_path = Some(token.clone());
    let client = PrometheusClient::new(&s, quick()).unwrap();
    client.query("up").await.unwrap();
    std::fs::write(&token, "second-rotated").unwrap();
    client.query("up").await.unwrap();
    let seen: Vec<Option<String>> = api.auth.lock().unwrap().clone();
    assert_eq!(
        seen[seen.len() - 2..],
        [
            Some("Bearer first".into()),
            Some("Bearer second-rotated".into())
        ]
    );
    std::fs::remove_file(&token).unwrap();
    let e = client.query("up").await.expect_err("token file gone");
    assert!(
        e.to_string()
            .starts_with("PROMETHEUS_TOKEN_PATH: cannot read"),
        "{e}"
    );

    // A 503 is retried; the second attempt answers.
    api.calls.store(0, Ordering::SeqCst);
    let flaky = PrometheusClient::new(&settings(&api.url("flaky")), quick()).unwrap();
    assert_eq!(flaky.query("up").await.unwrap().len(), 1);
    assert_eq!(api.calls.load(Ordering::SeqCst), 2);

    // A slow Prometheus times out per attempt; the whole query stays bounded.
    let slow = PrometheusClient::new(
        &settings(&api.url("slow")),
        QueryPolicy {
            timeout: Duration::from_millis(300),
            retries: 1,
            backoff: Duration::from_millis(50),
        },
    )
    .unwrap();
    let started = Instant::now();
    let e = slow.query("up").await.expect_err("timeout");
    assert!(matches!(e, QueryError::Unreachable(_)), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Nothing listening: unreachable, and the cycle's read fails as a whole.
    let down = format!("http://127.0.0.1:{}", support::free_port());
    let client = PrometheusClient::new(&settings(&down), quick()).unwrap();
    let report = poll(&client, &PollPlan::default(), &PodIndex::new(), now_s()).await;
    match report.metrics {
        Metrics::Failed(e) => assert!(e.contains("Prometheus unreachable"), "{e}"),
        other => panic!("expected a failed read, got {other:?}"),
    }
}

/// CONTRACT section 14: the llm-d scheduler's flow-control queue, under both of its names, is
/// read per model through a real Prometheus, and wakes a model at zero.
#[tokio::test]
async fn the_epp_queue_is_read_under_both_names_and_wakes_a_model_at_zero() {
    use wva_actors::policy::Thresholds;
    use wva_actors::policy::cycle::{CycleInputs, decide_cycle};
    use wva_actors::policy::decision::VariantInput;
    use wva_actors::policy::scale_to_zero::RequestCount;

    wva::tls::install_default_provider();
    // Two models at zero behind their schedulers: every request waits in the EPP's queue.
    let newer = Emulator::start(&[
        "--servers",
        "0",
        "--epp",
        "current",
        "--load",
        "constant:4",
        "--model",
        "asleep-a",
    ]);
    let older = Emulator::start(&[
        "--servers",
        "0",
        "--epp",
        "legacy",
        "--load",
        "constant:4",
        "--model",
        "asleep-b",
    ]);
    let prom = Prometheus::start(
        &[
            Target::pod(newer.epp.as_deref().unwrap(), "llm", "epp-a-6d5c-x"),
            Target::pod(older.epp.as_deref().unwrap(), "llm", "epp-b-7f8d-y"),
        ],
        None,
    );
    let client = PrometheusClient::new(&settings(&prom.url()), quick()).unwrap();
    wait_series(&client, "llm_d_epp_flow_control_queue_size > 0", 1).await;
    wait_series(
        &client,
        "inference_extension_flow_control_queue_size > 0",
        1,
    )
    .await;

    let plan = PollPlan {
        namespaces: vec!["llm".into()],
        ..Default::default()
    };
    let report = poll(&client, &plan, &PodIndex::new(), now_s()).await;
    let Metrics::Read(snapshot) = &report.metrics else {
        panic!("read failed: {:?}", report.metrics);
    };
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let held = |m: &str| {
        snapshot
            .held_requests
            .get(&ModelKey::new("llm", m))
            .copied()
    };
    let (a, b) = (held("asleep-a"), held("asleep-b"));
    assert!(a.is_some_and(|q| q >= 1.0), "{:?}", snapshot.held_requests);
    assert!(b.is_some_and(|q| q >= 1.0), "{:?}", snapshot.held_requests);
    // Another namespace's scheduler is not this one's.
    let elsewhere = PollPlan {
        namespaces: vec!["other".into()],
        ..Default::default()
    };
    let report = poll(&client, &elsewhere, &PodIndex::new(), now_s()).await;
    assert!(matches!(&report.metrics, Metrics::Read(s) if s.held_requests.is_empty()));

    // What was read wakes the model: one replica of its cheapest variant, though it served
    // nothing in the retention window.
    let at_zero = |name: &str, cost: f64| VariantInput {
        name: name.into(),
        cost,
        accelerator: "H100".into(),
        current_replicas: 0,
        ready_replicas: 0,
        previous_desired: Some(0),
        replicas: Vec::new(),
    };
    let variants = [at_zero("dear", 9.0), at_zero("cheap", 3.0)];
    let idle = RequestCount::Read(0.0);
    let decided = decide_cycle(CycleInputs {
        scale_to_zero: true,
        request_count: Some(&idle),
        held_requests: a,
        ..CycleInputs::capacity(&Thresholds::default(), &variants)
    });
    let targets: Vec<(&str, u32)> = decided
        .decision
        .variants
        .iter()
        .map(|t| (t.name.as_str(), t.target))
        .collect();
    assert_eq!(targets, [("dear", 0), ("cheap", 1)]);
}

/// CONTRACT section 14: prefill and decode servers, emulated, read through a real Prometheus:
/// a prefill server's requests leave with their first token, a decode server computes no
/// prompt, and the two are decided apart on their own signals.
#[tokio::test]
async fn prefill_and_decode_servers_are_read_and_decided_by_role() {
    use wva_actors::policy::cycle::{CycleInputs, decide_cycle};
    use wva_actors::policy::roles::Role;
    use wva_actors::policy::{ReplicaSignals, Thresholds, VariantInput};

    wva::tls::install_default_provider();
    let load = [
        "--load",
        "constant:4",
        "--prompt-tokens",
        "3000",
        "--output-tokens",
        "100",
    ];
    let start = |role: &str| {
        let mut args = vec!["--role", role];
        args.extend(load);
        Emulator::start(&args)
    };
    let (both, prefill, decode) = (start("both"), start("prefill"), start("decode"));
    let prom = Prometheus::start(
        &[
            Target::pod(&both.addresses[0], "llm", "plain-5d6f-a"),
            Target::pod(&prefill.addresses[0], "llm", "prefill-7c8d-a"),
            Target::pod(&decode.addresses[0], "llm", "decode-9e1f-a"),
        ],
        None,
    );
    let client = PrometheusClient::new(&settings(&prom.url()), quick()).unwrap();
    wait_series(&client, "rate(vllm:request_success_total[1m]) > 0", 3).await;
    let pods: PodIndex = HashMap::from([
        (("llm".into(), "plain-5d6f-a".into()), "plain".into()),
        (("llm".into(), "prefill-7c8d-a".into()), "prefill".into()),
        (("llm".into(), "decode-9e1f-a".into()), "decode".into()),
    ]);
    let plan = PollPlan {
        namespaces: vec!["llm".into()],
        serving: true,
        ..Default::default()
    };
    let report = poll(&client, &plan, &pods, now_s()).await;
    let Metrics::Read(snapshot) = &report.metrics else {
        panic!("read failed: {:?}", report.metrics);
    };
    let samples = &snapshot.by_model[&ModelKey::new("llm", &both.model)];
    let of = |d: &str| samples.iter().find(|s| s.deployment == d).expect(d).clone();
    let serving = |d: &str| of(d).serving.expect("serving statistics");
    assert!(
        serving("prefill").mean_output_tokens < 1.5,
        "{:?}",
        serving("prefill")
    );
    assert!(serving("plain").mean_output_tokens > 50.0);
    assert!(
        serving("decode").ttft_ms < serving("plain").ttft_ms,
        "decode computes no prompt: {:?} vs {:?}",
        serving("decode"),
        serving("plain")
    );

    // Decided apart: each role on its own signals, with the role in its reason.
    let input = |d: &str, cost: f64| {
        let s = of(d);
        VariantInput {
            name: d.into(),
            cost,
            accelerator: "H100".into(),
            current_replicas: 1,
            ready_replicas: 1,
            previous_desired: None,
            replicas: vec![ReplicaSignals {
                pod: s.pod.clone(),
                kv_cache_usage: s.kv_cache_usage,
                queue_length: s.queue_length,
            }],
        }
    };
    let variants = [input("prefill", 2.0), input("decode", 9.0)];
    let decided = decide_cycle(CycleInputs {
        roles: &[Role::Prefill, Role::Decode],
        ..CycleInputs::capacity(&Thresholds::default(), &variants)
    });
    let reasons: Vec<&str> = decided
        .decision
        .variants
        .iter()
        .map(|t| t.reason.as_str())
        .collect();
    assert!(
        reasons[0].starts_with("prefill: ") && reasons[1].starts_with("decode: "),
        "{reasons:?}"
    );
}
