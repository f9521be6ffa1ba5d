//! `wva run` as a black box without a cluster: its help documents every flag with its
//! environment variable, and unusable settings stop it with exit status 2 naming the setting,
//! before it tries to reach any server.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn wva() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wva"));
    // Nothing from the caller's environment leaks in.
    for (k, _) in std::env::vars() {
        if k.starts_with("PROMETHEUS_") || k == "KUBECONFIG" || k.starts_with("METRICS_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn help_documents_every_flag_with_its_environment_variable() {
    let out = wva().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Each option block runs from its `--flag` line to the next blank line.
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") || trimmed.starts_with("-h,") {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let flags: Vec<&String> = blocks
        .iter()
        .filter(|b| !b.trim_start().starts_with("-h,"))
        .collect();
    assert!(flags.len() >= 30, "{} flags:\n{text}", flags.len());
    for b in flags {
        assert!(
            b.contains("[env: "),
            "no environment variable documented:\n{b}"
        );
    }
    for env in [
        "PROMETHEUS_BASE_URL",
        "PROMETHEUS_CA_CERT_PATH",
        "PROMETHEUS_CLIENT_CERT_PATH",
        "PROMETHEUS_TOKEN_PATH",
        "CONTROLLER_INSTANCE",
        "WATCH_NAMESPACE",
        "METRICS_SECURE",
        "LEADER_ELECT",
        "HEALTH_PROBE_BIND_ADDRESS",
    ] {
        assert!(text.contains(&format!("[env: {env}")), "{env} missing");
    }
}

#[test]
fn unusable_settings_exit_2_naming_the_setting() {
    let cases: [(&[(&str, &str)], &str); 11] = [
        (
            &[("PROMETHEUS_QUERY_TIMEOUT", "soon")],
            "PROMETHEUS_QUERY_TIMEOUT",
        ),
        (
            &[("PROMETHEUS_BASE_URL", "http://prometheus:9090")],
            "PROMETHEUS_BASE_URL",
        ),
        (
            &[("RECONCILIATION_INTERVAL", "0s")],
            "RECONCILIATION_INTERVAL",
        ),
        (
            &[("METRICS_CERT_PATH", "/tmp/cert.pem")],
            "METRICS_CERT_PATH",
        ),
        (
            &[("EXTERNAL_SCALER_KEY_PATH", "/tmp/key.pem")],
            "EXTERNAL_SCALER_KEY_PATH",
        ),
        (
            &[
                ("EXTERNAL_SCALER_CERT_PATH", "/tmp/cert.pem"),
                ("EXTERNAL_SCALER_KEY_PATH", "/tmp/key.pem"),
            ],
            "no EXTERNAL_SCALER_BIND_ADDRESS",
        ),
        // It goes into PromQL matchers: a namespace name, nothing else.
        (
            &[("WATCH_NAMESPACE", "llm\\\"}) or vector(1")],
            "WATCH_NAMESPACE (--watch-namespace): expected a namespace name",
        ),
        // Shards are held through Leases.
        (&[("WVA_SHARDS", "4")], "WVA_SHARDS (--shards): 4 shards"),
        (&[("WVA_SHARDS", "0")], "--shards"),
        // A replica's external scaler knows only its own shards.
        (
            &[
                ("WVA_SHARDS", "4"),
                ("LEADER_ELECT", "true"),
                ("EXTERNAL_SCALER_BIND_ADDRESS", "127.0.0.1:0"),
            ],
            "4 shards with EXTERNAL_SCALER_BIND_ADDRESS",
        ),
        // A shadow's answers must not reach KEDA.
        (
            &[
                ("WVA_SHADOW", "true"),
                ("EXTERNAL_SCALER_BIND_ADDRESS", "127.0.0.1:0"),
            ],
            "WVA_SHADOW (--shadow) with EXTERNAL_SCALER_BIND_ADDRESS",
        ),
    ];
    for (env, name) in cases {
        let out = wva().arg("run").envs(env.iter().copied()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(name), "{env:?}: {err}");
    }
}
