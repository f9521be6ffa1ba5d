//! The controller's HTTP surface: the metrics endpoint (HTTPS, admitting only callers whose
//! bearer token passes a TokenReview and a SubjectAccessReview for `GET /metrics`, as
//! controller-runtime's secure metrics do; plain HTTP only when asked) and the probes
//! (`/healthz`, `/readyz`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;
use wva_actors::publisher::{Gather, Publisher};

use super::health::HealthReceiver;
use super::ops::Ops;

/// `/healthz` and `/readyz`. Ready once the watches are synced: a Prometheus outage keeps the
/// controller ready (it runs on the safety net) and the body says so.
pub fn probes(health: HealthReceiver) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<HealthReceiver>| async move {
                let h = h.borrow().clone();
                let (ready, summary) = h.summary();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let body = serde_json::json!({"status": summary, "detail": h});
                (status, axum::Json(body))
            }),
        )
        .with_state(health)
}

/// Checks bearer tokens against the API server, caching answers for a minute so that a
/// scrape every few seconds costs no API calls.
#[derive(Clone)]
pub struct Authorizer {
    client: kube::Client,
    cache: Arc<Mutex<HashMap<String, (bool, Instant)>>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

impl Authorizer {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Arc::default(),
        }
    }

    /// Whether the token's user may `GET /metrics`. Errors (API unreachable) deny.
    pub async fn allows(&self, token: &str) -> Result<bool, AuthError> {
        if let Some((allowed, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            && at.elapsed() < AUTH_CACHE_TTL
        {
            return Ok(*allowed);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(AuthError::TokenReview)?;
        let status = reviewed.status.unwrap_or_default();
        let allowed = if status.authenticated == Some(true) {
            let user = status.user.unwrap_or_default();
            let access = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: user.username.clone(),
                    groups: user.groups.clone(),
                    uid: user.uid.clone(),
                    extra: user.extra.clone(),
                    non_resource_attributes: Some(NonResourceAttributes {
                        path: Some("/metrics".into()),
                        verb: Some("get".into()),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &access)
                .await
                .map_err(AuthError::SubjectAccessReview)?;
            answer.status.is_some_and(|s| s.allowed)
        } else {
            false
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
        cache.insert(token.to_string(), (allowed, Instant::now()));
        Ok(allowed)
    }
}

#[derive(Clone)]
struct MetricsState {
    publisher: Addr<Publisher>,
    ops: Option<Ops>,
    authorizer: Option<Authorizer>,
}

/// The metrics endpoint: the published series, then the controller's own health series. With
/// an authorizer, only admitted callers get the page.
pub fn metrics(
    publisher: Addr<Publisher>,
    ops: Option<Ops>,
    authorizer: Option<Authorizer>,
) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(MetricsState {
            publisher,
            ops,
            authorizer,
        })
}

async fn serve_metrics(State(s): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &s.authorizer {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
        };
        match auth.allows(token).await {
            Ok(true) => {}
            Ok(false) => {
                return (StatusCode::FORBIDDEN, "not allowed to get /metrics\n").into_response();
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot check a caller");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot check the caller\n",
                )
                    .into_response();
            }
        }
    }
    match s.publisher.send(Gather).await {
        Ok(mut text) => {
            if let Some(ops) = &s.ops {
                text.push_str(&ops.text());
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "publisher stopped\n").into_response(),
    }
}

/// Binds `address` (before anything else starts, so that a taken port fails start-up).
pub fn bind(address: &str, what: &'static str) -> Result<std::net::TcpListener, BindError> {
    let addr: SocketAddr = address.parse().map_err(|_| BindError::Address {
        what,
        address: address.to_string(),
    })?;
    std::net::TcpListener::bind(addr).map_err(|source| BindError::Listen {
        what,
        address: address.to_string(),
        source,
    })
}

/// Why a server's address cannot be listened on.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("{what}: expected host:port, got {address:?}")]
    Address { what: &'static str, address: String },
    #[error("{what}: cannot listen on {address}: {source}")]
    Listen {
        what: &'static str,
        address: String,
        source: std::io::Error,
    },
}

/// Why a caller of the metrics endpoint could not be checked (the caller is denied).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("TokenReview failed: {0}")]
    TokenReview(kube::Error),
    #[error("SubjectAccessReview failed: {0}")]
    SubjectAccessReview(kube::Error),
}

/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may finish after the stop.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` (over TLS when a configuration is given) until `stop`.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::<SocketAddr>::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        shutdown.graceful_shutdown(Some(DRAIN));
    });
    let service = router.into_make_service();
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)?.handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(Some(HEADER_READ_TIMEOUT));
            server.serve(service).await
        }
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(config);
            let mut server =
                axum_server::tls_rustls::from_tcp_rustls(listener, config)?.handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(Some(HEADER_READ_TIMEOUT));
            server.serve(service).await
        }
    }
}
