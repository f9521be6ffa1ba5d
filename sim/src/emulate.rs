//! `wva emulate`: emulated vLLM servers in real time, each on its own 127.0.0.1 port, serving
//! `/metrics` (vLLM's metric names, either generation) and a minimal `/v1/completions` that
//! answers after the modelled latency. A load shape or a trace keeps them busy, so a real
//! Prometheus scraping them sees realistic KV-cache use, queues and latencies.
//!
//! The servers are the same model as `wva simulate` uses; only the clock differs: virtual time
//! here follows the wall clock (times `speed`).
//!
//! With an EPP (`--epp`), the load goes through an emulated llm-d scheduler first: its flow
//! control holds a request while every server is saturated (a waiting queue of
//! [`EPP_QUEUE_DEPTH`] or KV-cache use of [`EPP_KV_UTILISATION`], the scheduler's default
//! saturation thresholds) and exposes the held count on its own `/metrics`. With no servers at
//! all (a model at zero), every request waits there.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::cluster::{Cluster, Variant, least_loaded};
use crate::exposition::{EppMetrics, MetricNames, ServerMetrics};
use crate::profiles::AcceleratorProfile;
use crate::server::{Completed, Request};

/// What to emulate.
#[derive(Debug, Clone)]
pub struct EmulateOptions {
    pub servers: usize,
    pub profile: AcceleratorProfile,
    pub model_name: String,
    pub names: MetricNames,
    /// Background load, in arrival order (arrival times relative to the start).
    pub load: Vec<Request>,
    /// Stop after this long (wall-clock seconds); `None` runs until interrupted.
    pub duration_s: Option<f64>,
    /// Virtual time runs this many times faster than the wall clock.
    pub speed: f64,
    pub listen: IpAddr,
    /// First port; server i listens on `base_port + i`. 0 picks free ports.
    pub base_port: u16,
    /// An emulated llm-d scheduler in front, with its metric-name generation.
    pub epp: Option<MetricNames>,
    /// What the servers do in a disaggregated deployment.
    pub role: ServerRole,
}

/// A server's part in disaggregated (prefill/decode) serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerRole {
    /// Prefill and decode, as a plain vLLM server.
    #[default]
    Both,
    /// Prefill only: a request leaves with its first token (its KV goes on to a decode server).
    Prefill,
    /// Decode only: a prompt's KV arrives computed (no prefill compute here), and is held.
    Decode,
}

impl ServerRole {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "both" => Ok(Self::Both),
            "prefill" => Ok(Self::Prefill),
            "decode" => Ok(Self::Decode),
            other => Err(format!("expected both, prefill or decode, got {other:?}")),
        }
    }

    /// The profile a server of this role runs with.
    fn profile(self, profile: &AcceleratorProfile) -> AcceleratorProfile {
        let mut p = profile.clone();
        if self == Self::Decode {
            // The prompt's KV is transferred, not computed (the transfer time is not modelled).
            p.prefill_ms_per_token = 0.0;
        }
        p
    }

    /// The request as this role serves it.
    fn request(self, mut r: Request) -> Request {
        if self == Self::Prefill {
            r.output_tokens = 1;
        }
        r
    }
}

/// A server with this many requests waiting is saturated for the EPP's flow control.
pub const EPP_QUEUE_DEPTH: usize = 5;
/// A server with this much of its KV cache in use is saturated for the EPP's flow control.
pub const EPP_KV_UTILISATION: f64 = 0.8;

/// Where one emulated server listens (printed as JSON at start-up).
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub index: usize,
    pub address: String,
    pub metrics: String,
    pub completions: String,
}

/// Requests from the completions endpoint get ids from here up, so they never collide with the
/// background load's.
const API_ID_BASE: u64 = 1 << 48;

/// The emulated servers: one Deployment of the simulator's cluster, all replicas ready from
/// the start, with the histograms their `/metrics` pages show.
struct Fleet {
    cluster: Cluster,
    metrics: Vec<ServerMetrics>,
    started: Instant,
    speed: f64,
    next_api_id: u64,
    waiting_callers: HashMap<u64, oneshot::Sender<Completed>>,
    model_name: String,
    /// Requests the emulated EPP holds, in arrival order (`None`: no EPP, load goes straight
    /// to the servers).
    held: Option<VecDeque<Request>>,
    role: ServerRole,
}

impl Fleet {
    fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3 * self.speed
    }

    /// Runs the servers up to `now_ms`; finished requests feed the histograms and answer their
    /// callers. The per-request list is not kept: the histograms are what the emulator shows.
    fn advance(&mut self, now_ms: f64) {
        let Self {
            cluster,
            metrics,
            waiting_callers,
            ..
        } = self;
        cluster.advance(now_ms, |_, server, done| {
            metrics[server].record(done);
            if let Some(caller) = waiting_callers.remove(&done.id) {
                let _ = caller.send(done.clone());
            }
        });
        cluster.completed.clear();
    }

    /// Takes an arrival: into the EPP's queue when there is an EPP, else to the least busy
    /// server.
    fn arrive(&mut self, request: Request, now_ms: f64) {
        let request = self.role.request(request);
        match &mut self.held {
            Some(queue) => queue.push_back(request),
            None => self.cluster.route(request, now_ms),
        }
    }

    /// The EPP dispatches held requests, oldest first, to the least busy server that is not
    /// saturated, while there is one.
    fn dispatch_held(&mut self, now_ms: f64) {
        let Some(queue) = &mut self.held else { return };
        let servers = &mut self.cluster.variants[0].servers;
        while let Some(key) = queue.front().map(|r| r.id) {
            let Some(best) = least_loaded(
                servers
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        s.is_ready(now_ms)
                            && s.waiting() < EPP_QUEUE_DEPTH
                            && s.kv_usage() < EPP_KV_UTILISATION
                    })
                    .map(|(i, s)| (i, s.in_system())),
                key,
            ) else {
                break;
            };
            if let Some(request) = queue.pop_front() {
                servers[best].enqueue(request);
            }
        }
    }

    fn held_count(&self) -> usize {
        self.held.as_ref().map_or(0, VecDeque::len)
    }
}

type Shared = Arc<Mutex<Fleet>>;

fn lock(fleet: &Shared) -> MutexGuard<'_, Fleet> {
    // A handler that panicked cannot leave the fleet half-updated in a way that matters more
    // than stopping the emulator would; keep serving.
    fleet
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serves the fleet until the duration ends or the process is interrupted. `on_ready` gets the
/// endpoints once every listener is bound.
pub async fn serve(
    options: EmulateOptions,
    on_ready: impl FnOnce(&[Endpoint], Option<&str>),
) -> Result<(), String> {
    if options.servers == 0 && options.epp.is_none() {
        return Err(
            "--servers: expected at least 1 (0 only with --epp, a model at zero behind its scheduler)"
                .into(),
        );
    }
    if !(options.speed.is_finite() && options.speed > 0.0) {
        return Err("--speed: expected a number > 0".into());
    }
    let replicas = u32::try_from(options.servers)
        .map_err(|_| format!("--servers: expected at most {}", u32::MAX))?;
    let fleet: Shared = Arc::new(Mutex::new(Fleet {
        cluster: Cluster::new(vec![Variant::new(
            "emulated",
            options.role.profile(&options.profile),
            options.profile.cost_per_hour,
            0.0,
            replicas,
        )]),
        metrics: (0..options.servers)
            .map(|_| ServerMetrics::new(&options.model_name, options.names))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot register the emulated metrics: {e}"))?,
        started: Instant::now(),
        speed: options.speed,
        next_api_id: API_ID_BASE,
        waiting_callers: HashMap::new(),
        model_name: options.model_name.clone(),
        held: options.epp.map(|_| VecDeque::new()),
        role: options.role,
    }));
    let epp_metrics = options
        .epp
        .map(|names| EppMetrics::new(&options.model_name, names))
        .transpose()
        .map_err(|e| format!("cannot register the emulated EPP metrics: {e}"))?;

    let mut endpoints = Vec::new();
    let mut listeners = Vec::new();
    for index in 0..options.servers {
        let (listener, address) = bind_nth(&options, index, &format!("server {index}")).await?;
        endpoints.push(Endpoint {
            index,
            address: address.to_string(),
            metrics: format!("http://{address}/metrics"),
            completions: format!("http://{address}/v1/completions"),
        });
        listeners.push(listener);
    }
    // The EPP listens on the port after the servers'.
    let epp_listener = match &epp_metrics {
        None => None,
        Some(_) => {
            let (listener, address) = bind_nth(&options, options.servers, "the EPP").await?;
            Some((listener, address.to_string()))
        }
    };
    on_ready(&endpoints, epp_listener.as_ref().map(|(_, a)| a.as_str()));

    let mut tasks = tokio::task::JoinSet::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health", get(|| async { StatusCode::OK }))
            .route("/v1/completions", post(completions))
            .route("/v1/models", get(models))
            .with_state((fleet.clone(), index));
        tasks.spawn(async move {
            axum::serve(listener, app)
                .await
                .map_err(|e| format!("server {index}: {e}"))
        });
    }
    if let (Some((listener, _)), Some(page)) = (epp_listener, epp_metrics) {
        let app = Router::new()
            .route("/metrics", get(epp_page))
            .with_state((fleet.clone(), page));
        tasks.spawn(async move {
            axum::serve(listener, app)
                .await
                .map_err(|e| format!("EPP: {e}"))
        });
    }
    tasks.spawn(drive(fleet.clone(), options.load));

    let stop = async {
        match options.duration_s {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        Some(ended) = tasks.join_next() => match ended {
            Ok(result) => result,
            Err(e) => Err(format!("an emulator task failed: {e}")),
        },
    }
}

/// Feeds the background load and runs the servers' iterations on the wall clock.
async fn drive(fleet: Shared, load: Vec<Request>) -> Result<(), String> {
    let mut arrivals = load.into_iter().peekable();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let mut f = lock(&fleet);
        let now = f.now_ms();
        f.advance(now);
        while let Some(r) = arrivals.next_if(|r| r.arrival_ms <= now) {
            f.arrive(r, now);
        }
        f.dispatch_held(now);
        f.advance(now);
    }
}

async fn metrics(State((fleet, index)): State<(Shared, usize)>) -> Response {
    let body = {
        let mut f = lock(&fleet);
        let now = f.now_ms();
        f.advance(now);
        let Fleet {
            cluster, metrics, ..
        } = &mut *f;
        metrics[index].render(&cluster.variants[0].servers[index])
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Binds the `n`th listener: `--base-port + n`, or any free port when the base is 0.
async fn bind_nth(
    options: &EmulateOptions,
    n: usize,
    what: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), String> {
    let port = if options.base_port == 0 {
        0
    } else {
        u16::try_from(usize::from(options.base_port) + n)
            .map_err(|_| format!("--base-port: the port of {what} is above 65535"))?
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(options.listen, port))
        .await
        .map_err(|e| format!("cannot listen on {}:{port}: {e}", options.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    Ok((listener, address))
}

async fn epp_page(State((fleet, page)): State<(Shared, EppMetrics)>) -> Response {
    let held = {
        let mut f = lock(&fleet);
        let now = f.now_ms();
        f.advance(now);
        f.dispatch_held(now);
        f.held_count()
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        page.render(held),
    )
        .into_response()
}

async fn models(State((fleet, _)): State<(Shared, usize)>) -> Response {
    let name = lock(&fleet).model_name.clone();
    Json(json!({"object": "list", "data": [{"id": name, "object": "model"}]})).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

/// What a completion request asks for: the prompt's length in tokens (an array of token ids, or
/// text at about four characters a token) and `max_tokens` (default 16, as OpenAI's API).
fn read_completion(body: &Value, model_name: &str) -> Result<(u32, u32), (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let Some(obj) = body.as_object() else {
        return Err(bad("request body: expected a JSON object".into()));
    };
    match obj.get("model").and_then(Value::as_str) {
        Some(m) if m == model_name => {}
        Some(m) => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("model: {m:?} is not served here (this server serves {model_name:?})"),
            ));
        }
        None => return Err(bad("model: expected a string".into())),
    }
    let prompt_tokens = match obj.get("prompt") {
        Some(Value::String(text)) => (text.chars().count() as u32).div_ceil(4).max(1),
        Some(Value::Array(tokens)) if !tokens.is_empty() => tokens.len() as u32,
        _ => {
            return Err(bad(
                "prompt: expected a non-empty string or array of token ids".into(),
            ));
        }
    };
    let max_tokens = match obj.get("max_tokens") {
        None | Some(Value::Null) => 16,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=32_768).contains(n))
            .ok_or_else(|| bad(format!("max_tokens: expected an integer 1..32768, got {v}")))?
            as u32,
    };
    Ok((prompt_tokens, max_tokens))
}

async fn completions(State((fleet, index)): State<(Shared, usize)>, body: String) -> Response {
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let (rx, id, speed, prompt_tokens) = {
        let mut f = lock(&fleet);
        let (prompt_tokens, output_tokens) = match read_completion(&body, &f.model_name) {
            Ok(v) => v,
            Err((status, message)) => return error(status, message),
        };
        // A prompt the KV cache can never hold would wait forever; vLLM refuses it up front.
        let profile = &f.cluster.variants[0].profile;
        if !profile.holds_prompt(prompt_tokens) {
            let capacity = profile.kv_tokens();
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "prompt: {prompt_tokens} tokens do not fit this server's KV cache of {capacity} tokens"
                ),
            );
        }
        let now = f.now_ms();
        f.advance(now);
        let id = f.next_api_id;
        f.next_api_id += 1;
        let (tx, rx) = oneshot::channel();
        f.waiting_callers.insert(id, tx);
        // Sent to this server (this pod's port), not through the gateway.
        let request = f.role.request(Request {
            id,
            arrival_ms: now,
            prompt_tokens,
            output_tokens,
        });
        f.cluster.variants[0].servers[index].enqueue(request);
        f.advance(now);
        (rx, id, f.speed, prompt_tokens)
    };
    let Ok(done) = rx.await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the emulator stopped before the request finished".into(),
        );
    };
    // The model computes the whole iteration at once; answer when it ends on the wall clock.
    let ahead_ms = {
        let f = lock(&fleet);
        done.finish_ms - f.now_ms()
    };
    if ahead_ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(ahead_ms / 1e3 / speed)).await;
    }
    let model = lock(&fleet).model_name.clone();
    Json(json!({
        "id": format!("cmpl-{id}"),
        "object": "text_completion",
        "model": model,
        "choices": [{
            "index": 0,
            "text": " token".repeat(done.output_tokens as usize),
            "finish_reason": "length",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": done.output_tokens,
            "total_tokens": prompt_tokens + done.output_tokens,
        },
        "timing": {
            "ttft_ms": done.ttft_ms,
            "itl_ms": done.itl_ms,
            "e2e_ms": done.finish_ms - done.arrival_ms,
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_requests_are_validated_field_by_field() {
        let ok = json!({"model": "m", "prompt": "abcdefgh", "max_tokens": 5});
        assert_eq!(read_completion(&ok, "m"), Ok((2, 5)));
        let tokens = json!({"model": "m", "prompt": [1, 2, 3]});
        assert_eq!(read_completion(&tokens, "m"), Ok((3, 16)));
        let wrong_model = read_completion(&json!({"model": "x", "prompt": "a"}), "m");
        assert!(
            matches!(wrong_model, Err((StatusCode::NOT_FOUND, ref m)) if m.starts_with("model:"))
        );
        let no_prompt = read_completion(&json!({"model": "m"}), "m");
        assert!(
            matches!(no_prompt, Err((StatusCode::BAD_REQUEST, ref m)) if m.starts_with("prompt:"))
        );
        let bad_max = read_completion(&json!({"model": "m", "prompt": "a", "max_tokens": 0}), "m");
        assert!(
            matches!(bad_max, Err((StatusCode::BAD_REQUEST, ref m)) if m.starts_with("max_tokens:"))
        );
        let not_object = read_completion(&json!([1]), "m");
        assert!(not_object.is_err());
    }
}
