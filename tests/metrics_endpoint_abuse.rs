//! The controller's HTTP servers against abusive callers, on 127.0.0.1: a flood of bogus bearer
//! tokens (huge, or many distinct ones) costs bounded memory and a bounded number of reviews; a
//! token asked for by many callers at once is reviewed once; a client that never finishes its
//! headers is dropped; and idle connections cannot take every socket.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use actix::Actor;
use support::apiserver::FakeApi;
use tokio_util::sync::CancellationToken;
use wva::controller::http::{
    Authorizer, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_TOKEN_BYTES, metrics, probes, serve,
};
use wva_actors::publisher::{Publisher, PublisherConfig};

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn reviews(api: &FakeApi) -> usize {
    api.writes()
        .iter()
        .filter(|w| w.path.ends_with("/tokenreviews"))
        .count()
}

/// A metrics server with token checks on 127.0.0.1 (plain HTTP: what is measured is the
/// checking, not TLS); returns its address.
fn metrics_server(api: &FakeApi, stop: &CancellationToken) -> (String, Authorizer) {
    let publisher = Publisher::new(&PublisherConfig::default()).unwrap().start();
    let authorizer = Authorizer::new(api.client());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve(
        listener,
        metrics(publisher, None, Some(authorizer.clone())),
        None,
        stop.clone(),
    ));
    (address, authorizer)
}

#[actix_rt::test]
async fn a_bogus_token_flood_costs_bounded_memory_and_reviews() {
    wva::tls::install_default_provider();
    let api = FakeApi::new();
    api.add_token(
        "scraper",
        "system:serviceaccount:monitoring:prometheus",
        true,
    );
    let stop = CancellationToken::new();
    let (address, authorizer) = metrics_server(&api, &stop);
    let client = reqwest::Client::new();
    let url = format!("http://{address}/metrics");
    let before = rss_mib();

    // 1,200 distinct 400 KB tokens: refused unreviewed.
    let huge = |i: usize| format!("{i:06}{}", "x".repeat(400 * 1024));
    let mut refused = 0;
    for chunk in (0..1200).collect::<Vec<_>>().chunks(50) {
        let sent = chunk
            .iter()
            .map(|&i| client.get(&url).bearer_auth(huge(i)).send());
        for answer in futures_util::future::join_all(sent).await {
            let status = answer.map(|r| r.status().as_u16()).unwrap_or(0);
            // Too long for the server (431) or for the checker (401); never reviewed.
            refused += usize::from(status == 401 || status == 431 || status == 0);
        }
    }
    assert_eq!(refused, 1200);
    assert_eq!(
        reviews(&api),
        0,
        "a token over {MAX_TOKEN_BYTES} bytes is never reviewed"
    );
    let after_huge = rss_mib();

    // 1,200 distinct plausible bogus tokens: reviewed (denied), the cache stays bounded.
    let mut denied = 0;
    for chunk in (0..1200).collect::<Vec<_>>().chunks(50) {
        let sent = chunk.iter().map(|&i| {
            client
                .get(&url)
                .bearer_auth(format!("bogus-{i}-{}", "y".repeat(1000)))
                .send()
        });
        for answer in futures_util::future::join_all(sent).await {
            let status = answer.unwrap().status().as_u16();
            denied += usize::from(status == 403 || status == 503);
        }
    }
    assert_eq!(denied, 1200);
    let after_many = rss_mib();
    eprintln!(
        "token flood: {before} MiB before, {after_huge} MiB after 1,200 x 400 KB tokens ({} reviews), {after_many} MiB after 1,200 distinct 1 KB tokens ({} reviews)",
        0,
        authorizer.reviews_sent()
    );
    assert!(authorizer.reviews_sent() <= 1200);
    assert!(
        after_many < before + 100,
        "{before} MiB -> {after_many} MiB"
    );

    // Fifty callers with one new token at once: one review.
    let sent_before = authorizer.reviews_sent();
    let sent = (0..50).map(|_| client.get(&url).bearer_auth("scraper").send());
    for answer in futures_util::future::join_all(sent).await {
        assert_eq!(answer.unwrap().status(), 200);
    }
    assert_eq!(authorizer.reviews_sent() - sent_before, 1);
    stop.cancel();
}

#[actix_rt::test]
async fn slow_and_idle_clients_are_dropped_and_capped() {
    let (health, _tx) = {
        let (tx, rx) = tokio::sync::watch::channel(wva::controller::health::Health {
            watches_synced: true,
            ..Default::default()
        });
        (rx, tx)
    };
    let stop = CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, probes(health), None, stop.clone()));
    // Blocking clients on their own threads: the server runs on this test's runtime.
    let ok = |address: std::net::SocketAddr| async move {
        tokio::task::spawn_blocking(move || -> bool {
            let Ok(mut s) = TcpStream::connect(address) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_err()
            {
                return false;
            }
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer.starts_with("HTTP/1.1 200")
        })
        .await
        .unwrap()
    };
    assert!(ok(address).await);

    // A slowloris: headers begun, never finished. And enough idle connections to take every
    // slot.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !ok(address).await,
        "every slot is taken: a new connection is refused"
    );

    // After the header timeout, the slow and idle connections are dropped and slots free.
    let started = Instant::now();
    tokio::time::sleep(HEADER_READ_TIMEOUT + Duration::from_secs(1)).await;
    let mut buf = [0u8; 256];
    // Closed (end of stream, or reset), or answered 408 - not still waiting.
    let read = tokio::time::timeout(Duration::from_secs(2), slow.read(&mut buf))
        .await
        .expect("the slow connection was still open after the header timeout");
    let n = read.unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 408"),
        "the slow client is dropped: {answer:?}"
    );
    assert!(ok(address).await, "slots are free again");
    eprintln!(
        "slow and idle connections dropped after {:?}",
        started.elapsed()
    );
    drop(idle);
    stop.cancel();
}

/// A renewed serving certificate is picked up without a restart: new connections get it.
#[actix_rt::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    use wva::controller::http::{reload_certificate, tls};
    wva::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let issue = |cn: &str| {
        let made =
            rcgen::generate_simple_self_signed(vec![cn.to_string(), "localhost".into()]).unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let ca = dir.path().join(format!("{cn}.pem"));
        std::fs::write(&ca, made.cert.pem()).unwrap();
        ca
    };
    let first = issue("first");
    let config = tls(wva::tls::server_config(Some((&cert, &key)), &[]).unwrap());
    let (health, _tx) = {
        let (tx, rx) = tokio::sync::watch::channel(wva::controller::health::Health::default());
        (rx, tx)
    };
    let stop = CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        probes(health),
        Some(config.clone()),
        stop.clone(),
    ));
    tokio::spawn(reload_certificate(
        config,
        cert.clone(),
        key.clone(),
        Duration::from_millis(100),
        stop.clone(),
    ));
    let trusting = |ca: std::path::PathBuf| {
        let tls = wva::tls::client_config(&wva::tls::ClientTls {
            ca_cert_path: Some(&ca),
            server_name: Some("localhost"),
            ..Default::default()
        })
        .unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap()
    };
    let url = format!("https://{address}/healthz");
    assert!(trusting(first.clone()).get(&url).send().await.is_ok());

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = issue("second");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        trusting(second).get(&url).send().await.is_ok(),
        "the new certificate is served"
    );
    assert!(
        trusting(first).get(&url).send().await.is_err(),
        "the old one is not"
    );
    stop.cancel();
}
