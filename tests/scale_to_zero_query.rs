//! The scale-to-zero request-count query against a real Prometheus scraping `wva emulate`: a
//! busy model counts its requests, an idle one counts zero (so it may go to zero), and a model
//! with no series is reported as such.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::{Emulator, Prometheus, Target};
use wva::queries::{read_request_counts, request_count};
use wva_actors::messages::ModelKey;
use wva_actors::policy::scale_to_zero::{RequestCount, Sight, ZeroVerdict, scale_to_zero};

#[test]
fn busy_idle_and_absent_models() {
    let busy = Emulator::start(&["--load", "constant:8", "--model", "busy-model"]);
    let idle = Emulator::start(&["--load", "none", "--model", "idle-model"]);
    let prometheus = Prometheus::start(
        &[
            Target::pod(&busy.addresses[0], "team-a", "busy-0"),
            Target::pod(&idle.addresses[0], "team-a", "idle-0"),
        ],
        None,
    );
    let query = request_count(Duration::from_secs(600), &["team-a".to_string()]);
    let models = [
        ModelKey::new("team-a", "busy-model"),
        ModelKey::new("team-a", "idle-model"),
        ModelKey::new("team-a", "absent-model"),
    ];
    let start = Instant::now();
    let counts = loop {
        let counts = read_request_counts(&prometheus.samples(&query), &models);
        if matches!(counts[&models[0]], RequestCount::Read(n) if n > 0.0)
            && matches!(counts[&models[1]], RequestCount::Read(_))
        {
            break counts;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no counts after 40 s: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // One ready pod each, seen: the busy one stays, the idle one may go.
    let seen = Sight {
        ready: 1,
        reporting: 1,
    };
    assert!(matches!(
        scale_to_zero(true, counts.get(&models[0]), seen),
        ZeroVerdict::Keep(_)
    ));
    assert_eq!(counts[&models[1]], RequestCount::Read(0.0));
    assert!(matches!(
        scale_to_zero(true, counts.get(&models[1]), seen),
        ZeroVerdict::Zero(_)
    ));
    assert_eq!(counts[&models[2]], RequestCount::NoSeries);
    // Another namespace's query sees none of them.
    let other = request_count(Duration::from_secs(600), &["team-b".to_string()]);
    assert!(prometheus.query(&other).is_empty());
}
