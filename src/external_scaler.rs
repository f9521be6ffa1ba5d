//! KEDA's external scaler protocol (gRPC service `externalscaler.ExternalScaler`), served from
//! the desired counts the publisher publishes: a ScaledObject with an `external` (or
//! `external-push`) trigger gets the desired count of its variant without Prometheus in between.
//!
//! The answers are the published series' values, changed at the same moments, so both paths say
//! the same thing (during the safety net, the fallback count). What the controller does not
//! publish is never 0: an unknown variant is `NOT_FOUND`, a standby replica `UNAVAILABLE`, so
//! KEDA's fallback (or its "keep replicas on error") applies instead of a scale to zero.

use std::path::PathBuf;
use std::pin::Pin;

use futures_util::Stream;
use futures_util::stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use wva_actors::publisher::DesiredBoard;
use wva_storage::VariantKey;

/// The generated protocol types, client and server.
#[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("externalscaler");
}

use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// Trigger metadata key naming the variant (the VA's name, or the annotated scaler's).
pub const VARIANT_KEY: &str = "variantName";
/// Trigger metadata key naming the variant's namespace (default: the ScaledObject's).
pub const NAMESPACE_KEY: &str = "namespace";
/// The one metric this scaler reports: the desired replica count, at a target of 1 per replica.
pub const METRIC_NAME: &str = "desired_replicas";

/// The scaler: a view of the published desired counts and of leadership.
#[derive(Debug, Clone)]
pub struct DesiredScaler {
    board: watch::Receiver<DesiredBoard>,
    leader: watch::Receiver<bool>,
}

impl DesiredScaler {
    pub fn new(board: watch::Receiver<DesiredBoard>, leader: watch::Receiver<bool>) -> Self {
        Self { board, leader }
    }

    /// The gRPC service, for a tonic server.
    pub fn service(self) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(self)
    }

    /// The desired count of a variant, or why there is none to give.
    fn desired(&self, variant: &VariantKey) -> Result<u32, Status> {
        if !*self.leader.borrow() {
            return Err(Status::unavailable(
                "this controller replica is a standby; only the leader publishes desired counts",
            ));
        }
        self.board.borrow().get(variant).copied().ok_or_else(|| {
            Status::not_found(format!(
                "variant {}/{} is not published by this controller (no VariantAutoscaling or annotated scaler of that name, not decided yet, or managed by another controller instance)",
                variant.namespace, variant.name
            ))
        })
    }
}

/// The variant a trigger names: `variantName`, in `namespace` or the ScaledObject's namespace.
pub fn variant_of(scaled_object: &ScaledObjectRef) -> Result<VariantKey, Status> {
    let meta = &scaled_object.scaler_metadata;
    let name = meta
        .get(VARIANT_KEY)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "trigger metadata {VARIANT_KEY}: required, the name of the VariantAutoscaling or annotated scaler whose desired count KEDA should read"
            ))
        })?;
    let namespace = meta
        .get(NAMESPACE_KEY)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .unwrap_or(scaled_object.namespace.as_str());
    if namespace.is_empty() {
        return Err(Status::invalid_argument(format!(
            "trigger metadata {NAMESPACE_KEY}: required when the request names no namespace"
        )));
    }
    Ok(VariantKey::new(namespace, name))
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for DesiredScaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let variant = variant_of(request.get_ref())?;
        let desired = self.desired(&variant)?;
        Ok(Response::new(IsActiveResponse {
            result: desired > 0,
        }))
    }

    type StreamIsActiveStream = ActiveStream;

    /// Sends the current answer at once, then a new one whenever it changes; ends with
    /// `NOT_FOUND` when the variant goes away (KEDA reopens the stream).
    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<ActiveStream>, Status> {
        let variant = variant_of(request.get_ref())?;
        // An unknown variant is refused at once rather than streamed as inactive.
        self.desired(&variant)?;
        let start = Some((self.clone(), variant, None::<bool>));
        let answers = stream::unfold(start, |state| async move {
            let (mut me, variant, last) = state?;
            loop {
                if last.is_some() {
                    // Either a new desired count or a change of leadership may change it.
                    tokio::select! {
                        changed = me.board.changed() => changed.ok()?,
                        changed = me.leader.changed() => changed.ok()?,
                    }
                }
                match me.desired(&variant) {
                    Ok(n) if last == Some(n > 0) => {}
                    Ok(n) => {
                        let active = n > 0;
                        let answer = Ok(IsActiveResponse { result: active });
                        return Some((answer, Some((me, variant, Some(active)))));
                    }
                    Err(status) => return Some((Err(status), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        variant_of(request.get_ref())?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: METRIC_NAME.into(),
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let scaled_object = request
            .get_ref()
            .scaled_object_ref
            .as_ref()
            .ok_or_else(|| {
                Status::invalid_argument("scaledObjectRef: required, the ScaledObject asking")
            })?;
        let variant = variant_of(scaled_object)?;
        let desired = self.desired(&variant)?;
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: METRIC_NAME.into(),
                metric_value: i64::from(desired),
                metric_value_float: f64::from(desired),
            }],
        }))
    }
}

/// The server's certificate and key (PEM files), for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the external scaler cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("the external scaler's gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the external scaler cannot use its socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// Serves the scaler on `listener` until `stop`, over TLS when `tls` is given.
pub async fn serve(
    listener: std::net::TcpListener,
    scaler: DesiredScaler,
    tls: Option<&ScalerTls>,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server =
            server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity(tls)?))?;
    }
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    server
        .add_service(scaler.service())
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await?;
    Ok(())
}

/// Reads the certificate and key, checking each with an error that names its setting.
fn identity(tls: &ScalerTls) -> Result<tonic::transport::Identity, crate::tls::TlsError> {
    const CERT: &str = "EXTERNAL_SCALER_CERT_PATH";
    const KEY: &str = "EXTERNAL_SCALER_KEY_PATH";
    crate::tls::read_certificates(CERT, &tls.cert)?;
    crate::tls::read_private_key(KEY, &tls.key)?;
    let read = |setting: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| crate::tls::TlsError {
            setting: setting.into(),
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    Ok(tonic::transport::Identity::from_pem(
        read(CERT, &tls.cert)?,
        read(KEY, &tls.key)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled_object(meta: &[(&str, &str)], namespace: &str) -> ScaledObjectRef {
        ScaledObjectRef {
            name: "so".into(),
            namespace: namespace.into(),
            scaler_metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_variant_is_named_by_the_trigger_metadata() {
        assert_eq!(
            variant_of(&scaled_object(&[("variantName", "v")], "llm")).expect("variant"),
            VariantKey::new("llm", "v")
        );
        assert_eq!(
            variant_of(&scaled_object(
                &[("variantName", "v"), ("namespace", "other")],
                "llm"
            ))
            .expect("variant"),
            VariantKey::new("other", "v")
        );
        let e = variant_of(&scaled_object(&[], "llm")).expect_err("no name");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message()
                .starts_with("trigger metadata variantName: required")
        );
        let e = variant_of(&scaled_object(&[("variantName", "v")], "")).expect_err("no ns");
        assert!(e.message().starts_with("trigger metadata namespace"));
    }

    #[test]
    fn unknown_variants_and_standbys_are_errors_never_zero() {
        let (_board_tx, board) =
            watch::channel(DesiredBoard::from([(VariantKey::new("llm", "v"), 0)]));
        let (leader_tx, leader) = watch::channel(true);
        let scaler = DesiredScaler::new(board, leader);
        assert_eq!(scaler.desired(&VariantKey::new("llm", "v")).ok(), Some(0));
        let e = scaler
            .desired(&VariantKey::new("llm", "w"))
            .expect_err("unknown");
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("llm/w"), "{}", e.message());
        leader_tx.send_replace(false);
        let e = scaler
            .desired(&VariantKey::new("llm", "v"))
            .expect_err("standby");
        assert_eq!(e.code(), tonic::Code::Unavailable);
    }
}
