//! KEDA's external scaler protocol over a real gRPC connection on 127.0.0.1, with a client
//! generated from the same protocol file: answers, errors, pushes on change, and TLS. The
//! end-to-end test through the controller is in `controller_mock.rs`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use wva::external_scaler::proto::external_scaler_client::ExternalScalerClient;
use wva::external_scaler::proto::{GetMetricsRequest, IsActiveResponse, ScaledObjectRef};
use wva::external_scaler::{DesiredScaler, ScalerTls, serve};
use wva_actors::publisher::DesiredBoard;
use wva_storage::VariantKey;

const T: Duration = Duration::from_secs(10);

fn asking(variant: &str) -> ScaledObjectRef {
    ScaledObjectRef {
        name: format!("{variant}-scaledobject"),
        namespace: "llm".into(),
        scaler_metadata: HashMap::from([("variantName".to_string(), variant.to_string())]),
    }
}

/// Serves a scaler over `board` on a fresh 127.0.0.1 port; returns its address.
fn started(
    board: watch::Receiver<DesiredBoard>,
    leader: watch::Receiver<bool>,
    tls: Option<ScalerTls>,
    stop: CancellationToken,
) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        serve(
            listener,
            DesiredScaler::new(board, leader),
            tls.as_ref(),
            stop,
        )
        .await
        .unwrap();
    });
    address
}

async fn client(endpoint: Endpoint) -> ExternalScalerClient<Channel> {
    let start = std::time::Instant::now();
    loop {
        match endpoint.connect().await {
            Ok(channel) => return ExternalScalerClient::new(channel),
            Err(e) => {
                assert!(start.elapsed() < T, "cannot connect: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

type Answer = Result<Option<IsActiveResponse>, tonic::Status>;

/// The stream's next message, within the time limit.
async fn next(stream: &mut tonic::Streaming<IsActiveResponse>) -> Answer {
    tokio::time::timeout(T, stream.message())
        .await
        .expect("an answer in time")
}

#[tokio::test]
async fn the_desired_count_is_served_pushed_on_change_and_never_made_up() {
    let (board_tx, board) = watch::channel(DesiredBoard::from([(VariantKey::new("llm", "a"), 3)]));
    let (leader_tx, leader) = watch::channel(true);
    let stop = CancellationToken::new();
    let address = started(board, leader, None, stop.clone());
    let mut c = client(Endpoint::from_shared(format!("http://{address}")).unwrap()).await;

    let spec = c.get_metric_spec(asking("a")).await.unwrap().into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].target_size, 1);
    assert_eq!(spec.metric_specs[0].target_size_float, 1.0);
    let metrics = c
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(asking("a")),
            metric_name: spec.metric_specs[0].metric_name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metrics.metric_values[0].metric_value, 3);
    assert_eq!(metrics.metric_values[0].metric_value_float, 3.0);
    assert!(c.is_active(asking("a")).await.unwrap().into_inner().result);

    // Unknown: NOT_FOUND with the name, for every call, never 0.
    for status in [
        c.is_active(asking("b")).await.unwrap_err(),
        c.get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(asking("b")),
            metric_name: String::new(),
        })
        .await
        .unwrap_err(),
        c.stream_is_active(asking("b")).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().contains("llm/b"), "{}", status.message());
    }
    let mut no_name = asking("a");
    no_name.scaler_metadata.clear();
    let status = c.get_metric_spec(no_name).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // The stream answers at once, then only when the answer changes.
    let mut stream = c.stream_is_active(asking("a")).await.unwrap().into_inner();
    assert!(next(&mut stream).await.unwrap().unwrap().result);
    board_tx.send_modify(|b| {
        b.insert(VariantKey::new("llm", "a"), 5);
    });
    board_tx.send_modify(|b| {
        b.insert(VariantKey::new("llm", "a"), 0);
    });
    let pushed = next(&mut stream).await.unwrap().unwrap();
    assert!(!pushed.result, "3 → 5 is no change of activity; 5 → 0 is");
    board_tx.send_modify(|b| {
        b.insert(VariantKey::new("llm", "a"), 2);
    });
    assert!(next(&mut stream).await.unwrap().unwrap().result);
    // A standby answers UNAVAILABLE; the stream says so and ends.
    leader_tx.send_replace(false);
    let status = next(&mut stream).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        c.is_active(asking("a")).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    stop.cancel();
}

#[tokio::test]
async fn tls_is_served_when_a_certificate_is_given() {
    wva::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (_board_tx, board) = watch::channel(DesiredBoard::from([(VariantKey::new("llm", "a"), 4)]));
    let (_leader_tx, leader) = watch::channel(true);
    let stop = CancellationToken::new();
    let address = started(
        board,
        leader,
        Some(ScalerTls {
            cert: cert.clone(),
            key,
        }),
        stop.clone(),
    );
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(made.cert.pem()))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let mut c = client(endpoint).await;
    let metrics = c
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(asking("a")),
            metric_name: "desired_replicas".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metrics.metric_values[0].metric_value, 4);
    // Plaintext to a TLS server fails rather than answering.
    let plain = Endpoint::from_shared(format!("http://{address}")).unwrap();
    if let Ok(channel) = plain.connect().await {
        let mut c = ExternalScalerClient::new(channel);
        assert!(c.is_active(asking("a")).await.is_err());
    }
    stop.cancel();
}
