//! The controller's HTTP surface: the metrics endpoint (HTTPS, admitting only callers whose
//! bearer token passes a TokenReview and a SubjectAccessReview for `GET /metrics`, as
//! controller-runtime's secure metrics do; plain HTTP only when asked) and the probes
//! (`/healthz`, `/readyz`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// Longest bearer token looked at. Service-account tokens are about 1 KB; a bigger one is not
/// a token, and reviewing it would only spend the controller's API-server quota.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Review answers kept, at most (moka evicts the least likely to be asked again).
pub const AUTH_CACHE_ENTRIES: u64 = 1024;
/// TokenReviews (with their SubjectAccessReviews) in flight at once.
pub const MAX_REVIEWS_IN_FLIGHT: usize = 4;
/// How long a caller waits for a review slot before being told to come back.
const REVIEW_WAIT: Duration = Duration::from_secs(5);
const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// A token as the cache knows it: its SHA-256, never the token itself.
type TokenKey = [u8; 32];

fn token_key(token: &str) -> TokenKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// Checks bearer tokens against the API server, caching answers for a minute so that a
/// scrape every few seconds costs no API calls. Bounded against abuse: tokens over
/// [`MAX_TOKEN_BYTES`] are refused unreviewed, the cache holds at most [`AUTH_CACHE_ENTRIES`]
/// hashes, one review per token is in flight (others wait for its answer: moka's
/// `try_get_with` runs one lookup per key; a failed one is not cached), and at most
/// [`MAX_REVIEWS_IN_FLIGHT`] reviews run at once.
#[derive(Clone)]
pub struct Authorizer {
    client: kube::Client,
    cache: moka::future::Cache<TokenKey, bool>,
    reviews: Arc<tokio::sync::Semaphore>,
    reviewed: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(AUTH_CACHE_ENTRIES)
                .time_to_live(AUTH_CACHE_TTL)
                .build(),
            reviews: Arc::new(tokio::sync::Semaphore::new(MAX_REVIEWS_IN_FLIGHT)),
            reviewed: Arc::default(),
        }
    }

    /// TokenReviews sent so far.
    pub fn reviews_sent(&self) -> u64 {
        self.reviewed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the token's user may `GET /metrics`. Errors (API unreachable, too busy) deny.
    pub async fn allows(&self, token: &str) -> Result<bool, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TokenTooLong(token.len()));
        }
        // One review per token: a second request with the same token waits for the first's
        // answer instead of sending its own.
        self.cache
            .try_get_with(token_key(token), async {
                let _slot = tokio::time::timeout(REVIEW_WAIT, self.reviews.acquire())
                    .await
                    .map_err(|_| AuthError::Busy)?
                    .map_err(|_| AuthError::Busy)?;
                self.review(token).await
            })
            .await
            .map_err(|shared| (*shared).clone())
    }

    /// A TokenReview, then a SubjectAccessReview for `GET /metrics`.
    async fn review(&self, token: &str) -> Result<bool, AuthError> {
        self.reviewed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            .map_err(|e| AuthError::TokenReview(Arc::new(e)))?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(false);
        }
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
            .map_err(|e| AuthError::SubjectAccessReview(Arc::new(e)))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
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
            Err(AuthError::TokenTooLong(_)) => {
                return (StatusCode::UNAUTHORIZED, "the bearer token is too long\n")
                    .into_response();
            }
            Err(AuthError::Busy) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "5")],
                    "too many callers are being checked; retry\n",
                )
                    .into_response();
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
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token of {0} bytes, more than {MAX_TOKEN_BYTES}")]
    TokenTooLong(usize),
    #[error("every review slot is taken")]
    Busy,
    #[error("TokenReview failed: {0}")]
    TokenReview(Arc<kube::Error>),
    #[error("SubjectAccessReview failed: {0}")]
    SubjectAccessReview(Arc<kube::Error>),
}

/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may finish after the stop.
const DRAIN: Duration = Duration::from_secs(5);

pub use axum_server::tls_rustls::RustlsConfig;

/// A server's TLS configuration, which [`reload_certificate`] can swap while it serves.
pub fn tls(config: rustls::ServerConfig) -> RustlsConfig {
    RustlsConfig::from_config(Arc::new(config))
}

/// Watches the certificate and key files every `every`, and serves the new pair to new
/// connections once both changed files load (a renewed certificate needs no restart). A pair
/// that does not load is reported and the old one kept.
pub async fn reload_certificate(
    config: RustlsConfig,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    every: Duration,
    stop: CancellationToken,
) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = (stamp(&cert), stamp(&key));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        match crate::tls::server_config(Some((&cert, &key)), &[]) {
            Ok(fresh) => {
                config.reload_from_config(Arc::new(fresh));
                seen = now;
                tracing::info!(cert = %cert.display(), "metrics certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed metrics certificate does not load; keeping the one in use");
            }
        }
    }
}

/// Connections one server holds at once; past that, a new connection is closed at once, so
/// that idle or slow clients cannot take every socket (the kubelet's probes, Prometheus'
/// scrapes).
pub const MAX_CONNECTIONS: usize = 256;

/// An acceptor that gives each connection one of a fixed number of slots, held until the
/// connection closes; with none free, the connection is refused.
#[derive(Debug, Clone)]
struct Capped {
    slots: Arc<tokio::sync::Semaphore>,
}

impl<S> axum_server::accept::Accept<tokio::net::TcpStream, S> for Capped {
    type Stream = Slotted;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Slotted, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        std::future::ready(match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => Ok((
                Slotted {
                    stream,
                    _slot: slot,
                },
                service,
            )),
            Err(_) => Err(std::io::Error::other(format!(
                "{MAX_CONNECTIONS} connections open already"
            ))),
        })
    }
}

/// A connection with its slot.
#[derive(Debug)]
struct Slotted {
    stream: tokio::net::TcpStream,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Slotted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Slotted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` (over TLS when a configuration is given) until `stop`. Request
/// headers must arrive within [`HEADER_READ_TIMEOUT`], a TLS handshake within 10 s, and at most
/// [`MAX_CONNECTIONS`] connections are held.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<RustlsConfig>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::<SocketAddr>::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        shutdown.graceful_shutdown(Some(DRAIN));
    });
    let service = router.into_make_service();
    let capped = Capped {
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(capped)
                .handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(Some(HEADER_READ_TIMEOUT));
            server.serve(service).await
        }
        Some(config) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(capped);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(Some(HEADER_READ_TIMEOUT));
            server.serve(service).await
        }
    }
}
