//! What the publisher exposes, as a real Prometheus (on 127.0.0.1) scrapes and stores it: the
//! series HPAs and KEDA select (CONTRACT 8), with their labels and values, the scaling counter,
//! and a variant's old series gone once it moves to another accelerator.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::mpsc;
use std::time::Duration;

use actix::prelude::*;
use support::{Prometheus, Target};
use tokio_util::sync::CancellationToken;
use wva::controller::http::{metrics, serve};
use wva_actors::publisher::{Publish, Published, Publisher, PublisherConfig, ScalingChange};
use wva_storage::VariantKey;

fn published(name: &str, accelerator: &str, desired: u32, current: u32) -> Published {
    Published {
        variant: VariantKey::new("llm", name),
        life: Default::default(),
        accelerator: accelerator.into(),
        desired,
        current,
        baseline: current,
        change: None,
        safety_net: false,
        metrics_missing: false,
    }
}

/// The publisher of instance `a` and its metrics server, on a thread of their own (the test's
/// thread blocks on Prometheus); takes batches to publish from `batches`, and says the
/// server's address.
fn publisher_thread(
    batches: mpsc::Receiver<Vec<Published>>,
    stop: CancellationToken,
) -> (String, std::thread::JoinHandle<()>) {
    let (tell, address) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        System::new().block_on(async move {
            let publisher = Publisher::new(&PublisherConfig {
                prefix: "inferno".into(),
                controller_instance: Some("a".into()),
            })
            .unwrap()
            .start();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            tell.send(listener.local_addr().unwrap().to_string())
                .unwrap();
            let server = tokio::spawn(serve(
                listener,
                metrics(publisher.clone(), None, None),
                None,
                stop.clone(),
            ));
            // Bounded: the test sends a few batches, then stops.
            while !stop.is_cancelled() {
                match batches.try_recv() {
                    Ok(batch) => publisher.send(Publish(batch)).await.unwrap(),
                    Err(mpsc::TryRecvError::Empty) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            }
            stop.cancel();
            let _ = server.await;
        });
    });
    (address.recv().unwrap(), thread)
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_stores_the_published_series_with_their_labels() {
    let stop = CancellationToken::new();
    let (send, batches) = mpsc::channel();
    let (address, thread) = publisher_thread(batches, stop.clone());
    let up = ScalingChange {
        direction: "up",
        reason: "saturated",
    };
    let chat = Published {
        change: Some(up.clone()),
        ..published("chat", "L40S", 3, 2)
    };
    send.send(vec![chat.clone(), published("batch", "H100", 2, 0)])
        .unwrap();
    send.send(vec![chat]).unwrap();
    let prometheus = Prometheus::start(
        &[Target {
            address: address.clone(),
            labels: Vec::new(),
        }],
        None,
    );
    let limit = Duration::from_secs(30);

    let desired = prometheus.wait_for("inferno_desired_replicas", 2, limit);
    let chat = desired
        .iter()
        .find(|s| s["metric"]["variant_name"] == "chat")
        .expect("chat's series");
    assert_eq!(value(chat), 3.0);
    for (label, expected) in [
        ("namespace", "llm"),
        ("accelerator_type", "L40S"),
        ("controller_instance", "a"),
    ] {
        assert_eq!(chat["metric"][label], expected, "{chat}");
    }
    // Desired over current; the desired count when current is 0.
    let ratio = prometheus.wait_for("inferno_desired_ratio", 2, limit);
    let of = |name: &str| {
        ratio
            .iter()
            .find(|s| s["metric"]["variant_name"] == name)
            .map(value)
    };
    assert_eq!((of("chat"), of("batch")), (Some(1.5), Some(2.0)));
    let changes = prometheus.wait_for("inferno_replica_scaling_total", 1, limit);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["metric"]["direction"], "up");
    assert_eq!(changes[0]["metric"]["reason"], "saturated");
    assert_eq!(value(&changes[0]), 2.0, "counted once per published change");
    let health = prometheus.wait_for("wva_safety_net_active", 2, limit);
    assert!(health.iter().all(|s| value(s) == 0.0), "{health:?}");

    // chat moves to another accelerator: its L40S series go (stale at the next scrape).
    send.send(vec![published("chat", "H100", 3, 3)]).unwrap();
    prometheus.wait_for(
        r#"inferno_desired_replicas{variant_name="chat",accelerator_type="H100"}"#,
        1,
        limit,
    );
    let deadline = std::time::Instant::now() + limit;
    loop {
        let old = prometheus
            .query(r#"inferno_desired_replicas{variant_name="chat",accelerator_type="L40S"}"#);
        if old.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the L40S series stays: {old:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.cancel();
    drop(send);
    thread.join().unwrap();
}
