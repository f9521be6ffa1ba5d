//! `wva settings`: flag > environment variable > main ConfigMap > built-in default.

use std::process::Command;

use serde_json::Value;

/// `wva settings` with a clean environment plus `env`.
fn settings(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wva"));
    cmd.env_clear().arg("settings").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run wva");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_map(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("cm.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wva-config\ndata:\n  PROMETHEUS_BASE_URL: https://from-configmap:9091\n  GLOBAL_OPT_INTERVAL: 60s\n",
    )
    .expect("write");
    path.display().to_string()
}

#[test]
fn built_in_defaults() {
    let (code, s, err) = settings(&[], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["reconciliationInterval"], "15s");
    assert_eq!(s["mode"], "capacity-only");
    assert_eq!(s["podNamespace"], "workload-variant-autoscaler-system");
}

#[test]
fn precedence_flag_env_configmap_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = config_map(&dir);
    let (_, s, _) = settings(&["--config-map", &cm], &[]);
    assert_eq!(s["prometheus"]["baseUrl"], "https://from-configmap:9091");
    assert_eq!(s["reconciliationInterval"], "1m");

    let env = [
        ("PROMETHEUS_BASE_URL", "https://from-env:9091"),
        ("RECONCILIATION_INTERVAL", "30s"),
    ];
    let (_, s, _) = settings(&["--config-map", &cm], &env);
    assert_eq!(s["prometheus"]["baseUrl"], "https://from-env:9091");
    assert_eq!(s["reconciliationInterval"], "30s");

    let (_, s, _) = settings(
        &[
            "--config-map",
            &cm,
            "--prometheus-base-url",
            "https://from-flag:9091",
        ],
        &env,
    );
    assert_eq!(s["prometheus"]["baseUrl"], "https://from-flag:9091");
}

#[test]
fn known_environment_names_are_read() {
    let env = [
        ("CONTROLLER_INSTANCE", "canary"),
        ("WATCH_NAMESPACE", "llm-d"),
        ("WVA_SCALE_TO_ZERO", "true"),
        ("EXPERIMENTAL_PROACTIVE_MODEL", "true"),
        ("PROMETHEUS_BASE_URL", "http://prometheus:9090"),
        ("PROMETHEUS_ALLOW_HTTP", "true"),
        ("PROMETHEUS_BEARER_TOKEN", "s3cret"),
        ("GLOBAL_OPT_INTERVAL", "2m"),
    ];
    let (code, s, err) = settings(&[], &env);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["controllerInstance"], "canary");
    assert_eq!(s["watchNamespace"], "llm-d");
    assert_eq!(s["scaleToZero"], true);
    assert_eq!(s["mode"], "hybrid");
    assert_eq!(s["reconciliationInterval"], "2m");
    assert_eq!(s["prometheus"]["bearerToken"], "<redacted>");
    assert!(!s.to_string().contains("s3cret"));
}

#[test]
fn a_bad_setting_exits_2_naming_it() {
    let (code, s, err) = settings(&[], &[("PROMETHEUS_BASE_URL", "http://prometheus:9090")]);
    assert_eq!(code, Some(2));
    assert_eq!(s, Value::Null);
    assert!(
        err.contains("PROMETHEUS_BASE_URL") && err.contains("PROMETHEUS_ALLOW_HTTP"),
        "{err}"
    );
    let (code, _, err) = settings(&[], &[("RECONCILIATION_INTERVAL", "often")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("RECONCILIATION_INTERVAL"), "{err}");
}

/// A ConfigMap that is not trusted with the Prometheus connection cannot set it: the URL it
/// names is ignored, with a warning naming the key (CONTRACT 5 precedence otherwise holds).
#[test]
fn an_untrusted_configmap_cannot_redirect_the_prometheus_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = config_map(&dir);
    let (code, s, err) = settings(
        &["--config-map", &cm],
        &[("PROMETHEUS_FROM_CONFIG_MAP", "false")],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["prometheus"]["baseUrl"], Value::Null);
    assert!(
        err.contains("the ConfigMap sets PROMETHEUS_BASE_URL, ignored"),
        "{err}"
    );
    // The rest of the ConfigMap still applies.
    assert_eq!(s["reconciliationInterval"], "1m");
    // With the environment setting it, the environment's URL is used and nothing is ignored
    // silently.
    let (_, s, _) = settings(
        &["--config-map", &cm],
        &[
            ("PROMETHEUS_FROM_CONFIG_MAP", "false"),
            ("PROMETHEUS_BASE_URL", "https://from-env:9091"),
        ],
    );
    assert_eq!(s["prometheus"]["baseUrl"], "https://from-env:9091");
}

/// Issue 18: a key of the main ConfigMap that the controller does not read (a misspelling
/// would leave the setting at its default without a word) is an error naming the key.
#[test]
fn an_unknown_main_configmap_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cm.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wva-config\ndata:\n  GLOBAL_OPT_INTERVAL: 60s\n  WVA_SCALE_TO_ZER0: \"true\"\n",
    )
    .expect("write");
    let (code, s, err) = settings(&["--config-map", path.to_str().expect("utf-8")], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(s, Value::Null, "nothing printed on stdout");
    assert!(
        err.contains("WVA_SCALE_TO_ZER0: not a setting of the main ConfigMap")
            && err.contains("WVA_SCALE_TO_ZERO"),
        "{err}"
    );
}
