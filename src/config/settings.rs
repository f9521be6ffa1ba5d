//! Process settings: flag, then environment variable, then the main ConfigMap, then the built-in
//! default. Clap handles the first two; [`SettingsArgs::resolve`] adds the other two and checks
//! the result.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use serde::Serialize;
use wva_actors::policy::slo_capacity::DEFAULT_BUDGET_SHARE;
use wva_actors::policy::{Analyzer, OperatingMode};

use super::secret::Secret;
use super::{format_duration, parse_duration};

/// Default name of the main ConfigMap.
pub const DEFAULT_CONFIG_MAP_NAME: &str = "workload-variant-autoscaler-variantautoscaling-config";
/// Default namespace of the controller (and so of its ConfigMaps).
pub const DEFAULT_POD_NAMESPACE: &str = "workload-variant-autoscaler-system";
/// Default decision cycle.
pub const DEFAULT_RECONCILIATION_INTERVAL: Duration = Duration::from_secs(15);

/// Prefix of the emitted metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MetricsPrefix {
    /// `inferno_desired_replicas`, ...: what existing HPAs and adapters select.
    #[default]
    Inferno,
    /// `wva_desired_replicas`, ...: for newer dashboards.
    Wva,
}

impl MetricsPrefix {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inferno => "inferno",
            Self::Wva => "wva",
        }
    }
}

/// The controller's settings as given on the command line or in the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettingsArgs {
    /// Prometheus base URL; https:// unless --prometheus-allow-http.
    #[arg(long, env = "PROMETHEUS_BASE_URL")]
    pub prometheus_base_url: Option<String>,
    /// Allow a plain http:// Prometheus URL.
    #[arg(long, env = "PROMETHEUS_ALLOW_HTTP", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub prometheus_allow_http: Option<bool>,
    /// Skip verification of Prometheus' TLS certificate (development only).
    #[arg(long, env = "PROMETHEUS_TLS_INSECURE_SKIP_VERIFY", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub prometheus_tls_insecure_skip_verify: Option<bool>,
    /// CA certificate (PEM) that signs Prometheus' certificate.
    #[arg(long, env = "PROMETHEUS_CA_CERT_PATH")]
    pub prometheus_ca_cert_path: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "PROMETHEUS_CLIENT_CERT_PATH")]
    pub prometheus_client_cert_path: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, env = "PROMETHEUS_CLIENT_KEY_PATH")]
    pub prometheus_client_key_path: Option<PathBuf>,
    /// Server name expected in Prometheus' certificate.
    #[arg(long, env = "PROMETHEUS_SERVER_NAME")]
    pub prometheus_server_name: Option<String>,
    /// Bearer token sent to Prometheus.
    #[arg(long, env = "PROMETHEUS_BEARER_TOKEN", hide_env_values = true)]
    pub prometheus_bearer_token: Option<Secret>,
    /// File holding the bearer token; re-read when it changes.
    #[arg(long, env = "PROMETHEUS_TOKEN_PATH")]
    pub prometheus_token_path: Option<PathBuf>,
    /// Whether the main ConfigMap may set the Prometheus connection (URL, TLS, token). The
    /// chart sets false and passes the connection in the pod's environment, so that whoever can
    /// edit the ConfigMap cannot redirect the controller's credentials [default: true].
    #[arg(long, env = "PROMETHEUS_FROM_CONFIG_MAP", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub prometheus_from_config_map: Option<bool>,
    /// Name of the main ConfigMap in the controller's namespace.
    #[arg(long, env = "CONFIG_MAP_NAME")]
    pub config_map_name: Option<String>,
    /// The controller's namespace, where its ConfigMaps live.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Decision cycle, e.g. 15s or 1m [default: 15s].
    #[arg(long, env = "RECONCILIATION_INTERVAL")]
    pub reconciliation_interval: Option<String>,
    /// Older name of --reconciliation-interval.
    #[arg(long, env = "GLOBAL_OPT_INTERVAL", hide = true)]
    pub global_opt_interval: Option<String>,
    /// Isolation id: manage only VAs labelled wva.llmd.ai/controller-instance with this value.
    #[arg(long, env = "CONTROLLER_INSTANCE")]
    pub controller_instance: Option<String>,
    /// Watch only this namespace; empty watches the whole cluster.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Scale idle models to zero unless a model's configuration says otherwise.
    #[arg(long, env = "WVA_SCALE_TO_ZERO", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub scale_to_zero: Option<bool>,
    /// Hybrid optimization: on, off or model-only.
    #[arg(long, env = "EXPERIMENTAL_HYBRID_OPTIMIZATION")]
    pub experimental_hybrid_optimization: Option<String>,
    /// Older switch for hybrid mode; true is the same as --experimental-hybrid-optimization=on.
    #[arg(long, env = "EXPERIMENTAL_PROACTIVE_MODEL", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub experimental_proactive_model: Option<bool>,
    /// Prefix of the emitted metric names.
    #[arg(long, env = "WVA_METRICS_PREFIX", value_enum)]
    pub metrics_prefix: Option<MetricsPrefix>,
    /// The analyzer of capacity mode: slo-capacity (demand in requests and prompt tokens against
    /// what one replica carries within the TTFT and ITL objectives, prefill and decode learned
    /// per variant; the saturation analysis where that cannot be learned) or saturation-v1 (the
    /// seeds' KV-cache and queue saturation analyzer) [default: slo-capacity].
    #[arg(long, env = "SCALING_ANALYZER")]
    pub scaling_analyzer: Option<String>,
    /// slo-capacity: the share of the service class's TTFT and ITL objectives the mean may use
    /// (lower keeps more headroom, at more cost) [default: 0.5].
    #[arg(long, env = "SLO_BUDGET_SHARE")]
    pub slo_budget_share: Option<String>,
    /// slo-capacity: also size for the demand forecast one measured start-up time ahead
    /// (Holt's trend on the model's demand) [default: false; it cost more than it saved on
    /// the validation loads, see docs/simulation.md].
    #[arg(long, env = "SLO_FORECAST")]
    pub slo_forecast: Option<bool>,
    /// Watch the cluster's Nodes and GPU pods for the accelerator pool: what the nodes offer
    /// of each accelerator type, less what other pods hold, within the `accelerator-pool`
    /// ConfigMap's quotas; when the models want more, priorities decide (needs list and watch
    /// on Nodes and Pods cluster-wide) [default: false; the quotas alone still apply].
    #[arg(long, env = "WVA_ACCELERATOR_POOL")]
    pub accelerator_pool: Option<bool>,
}

/// How to reach Prometheus.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSettings {
    pub base_url: Option<String>,
    pub allow_http: bool,
    pub insecure_skip_verify: bool,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
    pub server_name: Option<String>,
    /// Never printed.
    pub bearer_token: Option<Secret>,
    pub token_path: Option<PathBuf>,
}

/// The resolved, checked settings of the controller.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub prometheus: PrometheusSettings,
    pub config_map_name: String,
    pub pod_namespace: String,
    #[serde(serialize_with = "serialize_duration")]
    pub reconciliation_interval: Duration,
    pub controller_instance: Option<String>,
    pub watch_namespace: Option<String>,
    pub scale_to_zero: bool,
    pub mode: OperatingMode,
    pub metrics_prefix: MetricsPrefix,
    pub analyzer: Analyzer,
    pub slo_budget_share: f64,
    pub slo_forecast: bool,
    /// Read the accelerator pool from the cluster's Nodes and GPU pods.
    pub accelerator_pool: bool,
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// A setting that cannot be used: which one (as flag and variable), and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{env} (--{flag}): {message}")]
pub struct SettingsError {
    pub env: &'static str,
    pub flag: String,
    pub message: String,
}

fn err(env: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        env,
        flag: flag_for(env),
        message: message.into(),
    }
}

/// The long flag that reads `env`, from the argument definitions themselves, so a message can
/// never name a flag that does not exist.
fn flag_for(env: &str) -> String {
    use clap::Args as _;
    let command = SettingsArgs::augment_args(clap::Command::new("settings"));
    command
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == env))
        .and_then(|a| a.get_long())
        .map_or_else(
            || env.to_ascii_lowercase().replace('_', "-"),
            str::to_string,
        )
}

fn parse_bool(env: &'static str, text: &str) -> Result<bool, SettingsError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "y" => Ok(true),
        "false" | "0" | "no" | "off" | "n" | "" => Ok(false),
        _ => Err(err(env, format!("expected true or false, got {text:?}"))),
    }
}

/// Where a setting comes from: its flag or environment variable, else the main ConfigMap's key
/// of the same name; the Prometheus connection from the ConfigMap only when it is trusted with
/// it (whoever may edit the ConfigMap must not be able to redirect the controller's credentials).
struct Sources<'a> {
    config_map: Option<&'a BTreeMap<String, String>>,
    trusted: bool,
}

impl Sources<'_> {
    /// The ConfigMap's value of `key`, trimmed, when it may give it and it is not empty.
    fn cm(&self, key: &str) -> Option<String> {
        if !self.trusted && is_connection_key(key) {
            return None;
        }
        self.config_map
            .and_then(|d| d.get(key))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn text(&self, arg: &Option<String>, key: &str) -> Option<String> {
        arg.clone()
            .filter(|v| !v.is_empty())
            .or_else(|| self.cm(key))
    }

    fn path(&self, arg: &Option<PathBuf>, key: &str) -> Option<PathBuf> {
        arg.clone().or_else(|| self.cm(key).map(PathBuf::from))
    }

    fn flag(&self, arg: Option<bool>, key: &'static str) -> Result<bool, SettingsError> {
        match arg {
            Some(v) => Ok(v),
            None => self.cm(key).map_or(Ok(false), |v| parse_bool(key, &v)),
        }
    }
}

impl SettingsArgs {
    /// Resolves the settings. `config_map` is the `data` of the main ConfigMap, when read.
    pub fn resolve(
        &self,
        config_map: Option<&BTreeMap<String, String>>,
    ) -> Result<Settings, SettingsError> {
        let src = Sources {
            config_map,
            trusted: self.prometheus_from_config_map.unwrap_or(true),
        };
        let cm = |key: &str| src.cm(key);
        let text = |arg: &Option<String>, key: &str| src.text(arg, key);
        let flag = |arg: Option<bool>, key: &'static str| src.flag(arg, key);
        let prometheus = self.prometheus_settings(&src)?;

        let (interval_text, interval_source) = match (
            text(&self.reconciliation_interval, "RECONCILIATION_INTERVAL"),
            text(&self.global_opt_interval, "GLOBAL_OPT_INTERVAL"),
        ) {
            (Some(t), _) => (Some(t), "RECONCILIATION_INTERVAL"),
            (None, Some(t)) => (Some(t), "GLOBAL_OPT_INTERVAL"),
            (None, None) => (None, "RECONCILIATION_INTERVAL"),
        };
        let reconciliation_interval = match interval_text {
            None => DEFAULT_RECONCILIATION_INTERVAL,
            Some(t) => {
                let d = parse_duration(&t).map_err(|e| err(interval_source, e.to_string()))?;
                if d < Duration::from_secs(1) {
                    return Err(err(
                        interval_source,
                        format!("expected at least 1s, got {t:?}"),
                    ));
                }
                d
            }
        };
        let hybrid = text(
            &self.experimental_hybrid_optimization,
            "EXPERIMENTAL_HYBRID_OPTIMIZATION",
        );
        let proactive = match self.experimental_proactive_model {
            Some(v) => Some(v),
            None => cm("EXPERIMENTAL_PROACTIVE_MODEL")
                .map(|v| parse_bool("EXPERIMENTAL_PROACTIVE_MODEL", &v))
                .transpose()?,
        };
        let mode = OperatingMode::from_switches(hybrid.as_deref(), proactive)
            .map_err(|e| err("EXPERIMENTAL_HYBRID_OPTIMIZATION", e.to_string()))?;
        let analyzer = match text(&self.scaling_analyzer, "SCALING_ANALYZER") {
            None => Analyzer::SloCapacity,
            Some(t) => Analyzer::parse(&t).map_err(|e| err("SCALING_ANALYZER", e.to_string()))?,
        };
        let slo_budget_share = match text(&self.slo_budget_share, "SLO_BUDGET_SHARE") {
            None => DEFAULT_BUDGET_SHARE,
            Some(t) => match t.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => v,
                _ => {
                    return Err(err(
                        "SLO_BUDGET_SHARE",
                        format!("expected a share above 0 and at most 1, got {t:?}"),
                    ));
                }
            },
        };
        let controller_instance = text(&self.controller_instance, "CONTROLLER_INSTANCE");
        if let Some(id) = &controller_instance
            && !is_label_value(id)
        {
            return Err(err(
                "CONTROLLER_INSTANCE",
                format!(
                    "expected a Kubernetes label value (63 characters at most: letters, digits, '-', '_', '.'; alphanumeric at both ends), got {id:?}"
                ),
            ));
        }

        Ok(Settings {
            prometheus,
            config_map_name: text(&self.config_map_name, "CONFIG_MAP_NAME")
                .unwrap_or_else(|| DEFAULT_CONFIG_MAP_NAME.into()),
            pod_namespace: text(&self.pod_namespace, "POD_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_POD_NAMESPACE.into()),
            reconciliation_interval,
            controller_instance,
            watch_namespace: match text(&self.watch_namespace, "WATCH_NAMESPACE") {
                Some(ns) if !is_namespace_name(&ns) => {
                    return Err(SettingsError {
                        env: "WATCH_NAMESPACE",
                        flag: "watch-namespace".into(),
                        message: format!(
                            "expected a namespace name (lowercase letters, digits and '-', at most 63 characters), got {:?}",
                            ns.chars().take(80).collect::<String>()
                        ),
                    });
                }
                other => other,
            },
            scale_to_zero: flag(self.scale_to_zero, "WVA_SCALE_TO_ZERO")?,
            mode,
            analyzer,
            slo_budget_share,
            slo_forecast: flag(self.slo_forecast, "SLO_FORECAST")?,
            accelerator_pool: flag(self.accelerator_pool, "WVA_ACCELERATOR_POOL")?,
            metrics_prefix: match self.metrics_prefix {
                Some(p) => p,
                None => match cm("WVA_METRICS_PREFIX").as_deref() {
                    None | Some("inferno") => MetricsPrefix::Inferno,
                    Some("wva") => MetricsPrefix::Wva,
                    Some(other) => {
                        return Err(err(
                            "WVA_METRICS_PREFIX",
                            format!("expected inferno or wva, got {other:?}"),
                        ));
                    }
                },
            },
        })
    }

    /// The Prometheus connection, checked: https unless http is allowed, a client certificate
    /// only with its key.
    fn prometheus_settings(&self, src: &Sources<'_>) -> Result<PrometheusSettings, SettingsError> {
        let prometheus = PrometheusSettings {
            base_url: src.text(&self.prometheus_base_url, "PROMETHEUS_BASE_URL"),
            allow_http: src.flag(self.prometheus_allow_http, "PROMETHEUS_ALLOW_HTTP")?,
            insecure_skip_verify: src.flag(
                self.prometheus_tls_insecure_skip_verify,
                "PROMETHEUS_TLS_INSECURE_SKIP_VERIFY",
            )?,
            ca_cert_path: src.path(&self.prometheus_ca_cert_path, "PROMETHEUS_CA_CERT_PATH"),
            client_cert_path: src.path(
                &self.prometheus_client_cert_path,
                "PROMETHEUS_CLIENT_CERT_PATH",
            ),
            client_key_path: src.path(
                &self.prometheus_client_key_path,
                "PROMETHEUS_CLIENT_KEY_PATH",
            ),
            server_name: src.text(&self.prometheus_server_name, "PROMETHEUS_SERVER_NAME"),
            bearer_token: src
                .text(
                    &self
                        .prometheus_bearer_token
                        .as_ref()
                        .map(|t| t.expose().to_string()),
                    "PROMETHEUS_BEARER_TOKEN",
                )
                .map(Secret::new),
            token_path: src.path(&self.prometheus_token_path, "PROMETHEUS_TOKEN_PATH"),
        };
        if let Some(url) = &prometheus.base_url {
            let lower = url.to_ascii_lowercase();
            if lower.starts_with("http://") {
                if !prometheus.allow_http {
                    return Err(err(
                        "PROMETHEUS_BASE_URL",
                        format!(
                            "expected an https:// URL (set PROMETHEUS_ALLOW_HTTP=true to allow http://), got {:?}",
                            redact_url(url)
                        ),
                    ));
                }
            } else if !lower.starts_with("https://") {
                return Err(err(
                    "PROMETHEUS_BASE_URL",
                    format!("expected an https:// URL, got {:?}", redact_url(url)),
                ));
            }
        }
        match (&prometheus.client_cert_path, &prometheus.client_key_path) {
            (Some(_), None) => {
                return Err(err(
                    "PROMETHEUS_CLIENT_KEY_PATH",
                    "expected a client key to go with the client certificate",
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "PROMETHEUS_CLIENT_CERT_PATH",
                    "expected a client certificate to go with the client key",
                ));
            }
            _ => {}
        }
        Ok(prometheus)
    }
}

/// The main ConfigMap's keys besides the Prometheus connection ([`CONNECTION_KEYS`]); each is
/// also the environment variable of the same name.
pub const SETTING_KEYS: [&str; 14] = [
    "GLOBAL_OPT_INTERVAL",
    "RECONCILIATION_INTERVAL",
    "EXPERIMENTAL_HYBRID_OPTIMIZATION",
    "EXPERIMENTAL_PROACTIVE_MODEL",
    "SCALING_ANALYZER",
    "SLO_BUDGET_SHARE",
    "SLO_FORECAST",
    "WVA_ACCELERATOR_POOL",
    "WVA_SCALE_TO_ZERO",
    "WVA_METRICS_PREFIX",
    "CONTROLLER_INSTANCE",
    "WATCH_NAMESPACE",
    "CONFIG_MAP_NAME",
    "POD_NAMESPACE",
];

/// Every key the main ConfigMap may hold.
pub fn main_config_map_keys() -> impl Iterator<Item = &'static str> {
    CONNECTION_KEYS.into_iter().chain(SETTING_KEYS)
}

/// Keys the main ConfigMap may carry that are settings of the process's start rather than of
/// the controller: logging is set up before the ConfigMap is read, so they take effect from the
/// environment only, but a ConfigMap holding them is a valid one.
const PROCESS_KEYS: [&str; 1] = ["LOG_LEVEL"];

/// The keys of a main ConfigMap's data that the controller does not read (a misspelt key would
/// otherwise be a setting silently left at its default), each with what was expected.
pub fn unknown_config_map_keys(data: &BTreeMap<String, String>) -> Vec<String> {
    data.keys()
        .filter(|k| !PROCESS_KEYS.contains(&k.as_str()))
        .filter(|k| !main_config_map_keys().any(|known| known == k.as_str()))
        .map(|k| {
            format!(
                "{k}: not a setting of the main ConfigMap (expected one of {})",
                main_config_map_keys().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

/// The main ConfigMap's keys that set the Prometheus connection.
pub const CONNECTION_KEYS: [&str; 9] = [
    "PROMETHEUS_BASE_URL",
    "PROMETHEUS_ALLOW_HTTP",
    "PROMETHEUS_TLS_INSECURE_SKIP_VERIFY",
    "PROMETHEUS_CA_CERT_PATH",
    "PROMETHEUS_CLIENT_CERT_PATH",
    "PROMETHEUS_CLIENT_KEY_PATH",
    "PROMETHEUS_SERVER_NAME",
    "PROMETHEUS_BEARER_TOKEN",
    "PROMETHEUS_TOKEN_PATH",
];

fn is_connection_key(key: &str) -> bool {
    CONNECTION_KEYS.contains(&key)
}

impl SettingsArgs {
    /// The connection keys the main ConfigMap sets that are ignored because it is not trusted
    /// with the connection (`PROMETHEUS_FROM_CONFIG_MAP=false`): each deserves a warning.
    pub fn ignored_config_map_keys(
        &self,
        config_map: Option<&BTreeMap<String, String>>,
    ) -> Vec<&'static str> {
        if self.prometheus_from_config_map.unwrap_or(true) {
            return Vec::new();
        }
        CONNECTION_KEYS
            .into_iter()
            .filter(|k| {
                config_map
                    .and_then(|d| d.get(*k))
                    .is_some_and(|v| !v.trim().is_empty())
            })
            .collect()
    }
}

impl Settings {
    /// A copy safe to print or log: any credentials in the URL are replaced (the bearer token
    /// is a [`Secret`], never printed anyway).
    pub fn redacted(&self) -> Self {
        let mut s = self.clone();
        s.prometheus.base_url = s.prometheus.base_url.as_deref().map(redact_url);
        s
    }
}

/// `url` with the user and password it may carry (`https://user:pass@host`) replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Whether `s` is a valid namespace name (an RFC 1123 label): it goes into PromQL matchers.
pub fn is_namespace_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a valid Kubernetes label value (non-empty here: an empty id means "none").
pub fn is_label_value(s: &str) -> bool {
    let ok_inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(ok_inner)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = SettingsArgs::default()
            .resolve(None)
            .expect("defaults resolve");
        assert_eq!(s.reconciliation_interval, Duration::from_secs(15));
        assert_eq!(s.config_map_name, DEFAULT_CONFIG_MAP_NAME);
        assert_eq!(s.pod_namespace, DEFAULT_POD_NAMESPACE);
        assert_eq!(s.mode, OperatingMode::CapacityOnly);
        assert_eq!(s.metrics_prefix, MetricsPrefix::Inferno);
        assert!(!s.scale_to_zero);
        assert_eq!(s.prometheus.base_url, None);
    }

    #[test]
    fn flag_or_env_wins_over_config_map_which_wins_over_default() {
        let data = cm(&[
            ("PROMETHEUS_BASE_URL", "https://from-configmap:9091"),
            ("GLOBAL_OPT_INTERVAL", "60s"),
            ("PROMETHEUS_TLS_INSECURE_SKIP_VERIFY", "true"),
        ]);
        let s = SettingsArgs::default()
            .resolve(Some(&data))
            .expect("resolves");
        assert_eq!(
            s.prometheus.base_url.as_deref(),
            Some("https://from-configmap:9091")
        );
        assert_eq!(s.reconciliation_interval, Duration::from_secs(60));
        assert!(s.prometheus.insecure_skip_verify);

        let args = SettingsArgs {
            prometheus_base_url: Some("https://from-flag:9091".into()),
            reconciliation_interval: Some("30s".into()),
            prometheus_tls_insecure_skip_verify: Some(false),
            ..Default::default()
        };
        let s = args.resolve(Some(&data)).expect("resolves");
        assert_eq!(
            s.prometheus.base_url.as_deref(),
            Some("https://from-flag:9091")
        );
        assert_eq!(s.reconciliation_interval, Duration::from_secs(30));
        assert!(!s.prometheus.insecure_skip_verify);
    }

    #[test]
    fn http_needs_permission() {
        let args = SettingsArgs {
            prometheus_base_url: Some("http://prometheus:9090".into()),
            ..Default::default()
        };
        let e = args.resolve(None).expect_err("http refused");
        assert_eq!(e.env, "PROMETHEUS_BASE_URL");
        assert!(e.to_string().contains("PROMETHEUS_ALLOW_HTTP"), "{e}");
        let args = SettingsArgs {
            prometheus_allow_http: Some(true),
            ..args
        };
        assert!(args.resolve(None).is_ok());
        let args = SettingsArgs {
            prometheus_base_url: Some("prometheus:9090".into()),
            ..Default::default()
        };
        assert!(args.resolve(None).is_err());
    }

    #[test]
    fn bad_values_name_the_setting() {
        type Case = (SettingsArgs, Option<BTreeMap<String, String>>, &'static str);
        let cases: Vec<Case> = vec![
            (
                SettingsArgs {
                    reconciliation_interval: Some("soon".into()),
                    ..Default::default()
                },
                None,
                "RECONCILIATION_INTERVAL",
            ),
            (
                SettingsArgs::default(),
                Some(cm(&[("GLOBAL_OPT_INTERVAL", "0s")])),
                "GLOBAL_OPT_INTERVAL",
            ),
            (
                SettingsArgs {
                    experimental_hybrid_optimization: Some("maybe".into()),
                    ..Default::default()
                },
                None,
                "EXPERIMENTAL_HYBRID_OPTIMIZATION",
            ),
            (
                SettingsArgs {
                    prometheus_client_cert_path: Some("c.pem".into()),
                    ..Default::default()
                },
                None,
                "PROMETHEUS_CLIENT_KEY_PATH",
            ),
            (
                SettingsArgs {
                    controller_instance: Some("Not Valid!".into()),
                    ..Default::default()
                },
                None,
                "CONTROLLER_INSTANCE",
            ),
            (
                SettingsArgs::default(),
                Some(cm(&[("WVA_SCALE_TO_ZERO", "perhaps")])),
                "WVA_SCALE_TO_ZERO",
            ),
        ];
        for (args, data, env) in cases {
            let e = args.resolve(data.as_ref()).expect_err(env);
            assert_eq!(e.env, env);
            assert!(e.to_string().starts_with(env), "{e}");
        }
    }

    #[test]
    fn every_error_names_the_flag_that_sets_it() {
        let data = cm(&[("WVA_SCALE_TO_ZERO", "perhaps")]);
        let e = SettingsArgs::default()
            .resolve(Some(&data))
            .expect_err("bad bool");
        assert_eq!(
            e.to_string(),
            "WVA_SCALE_TO_ZERO (--scale-to-zero): expected true or false, got \"perhaps\""
        );
        for (env, flag) in [
            ("PROMETHEUS_ALLOW_HTTP", "prometheus-allow-http"),
            (
                "PROMETHEUS_TLS_INSECURE_SKIP_VERIFY",
                "prometheus-tls-insecure-skip-verify",
            ),
            (
                "EXPERIMENTAL_PROACTIVE_MODEL",
                "experimental-proactive-model",
            ),
            ("WVA_METRICS_PREFIX", "metrics-prefix"),
            ("RECONCILIATION_INTERVAL", "reconciliation-interval"),
            ("GLOBAL_OPT_INTERVAL", "global-opt-interval"),
            ("CONTROLLER_INSTANCE", "controller-instance"),
        ] {
            assert_eq!(flag_for(env), flag, "{env}");
        }
    }

    #[test]
    fn hybrid_switches() {
        let args = SettingsArgs {
            experimental_proactive_model: Some(true),
            ..Default::default()
        };
        assert_eq!(
            args.resolve(None).map(|s| s.mode),
            Ok(OperatingMode::Hybrid)
        );
        let data = cm(&[("EXPERIMENTAL_HYBRID_OPTIMIZATION", "model-only")]);
        assert_eq!(
            SettingsArgs::default().resolve(Some(&data)).map(|s| s.mode),
            Ok(OperatingMode::ModelOnly)
        );
    }

    #[test]
    fn no_printed_form_of_the_settings_shows_the_token() {
        let args = SettingsArgs {
            prometheus_bearer_token: Some(Secret::new("s3cr3t-token")),
            ..Default::default()
        };
        assert!(!format!("{args:?}").contains("s3cr3t"), "{args:?}");
        let s = args.resolve(None).expect("resolves");
        assert_eq!(
            s.prometheus.bearer_token.as_ref().map(Secret::expose),
            Some("s3cr3t-token")
        );
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let json = serde_json::to_string(&s.redacted()).expect("serializes");
        assert!(
            !json.contains("s3cr3t") && json.contains("<redacted>"),
            "{json}"
        );
    }

    #[test]
    fn redaction_hides_credentials_in_the_url() {
        let args = SettingsArgs {
            prometheus_base_url: Some("https://admin:hunter2@thanos:9091/api?x=@y".into()),
            ..Default::default()
        };
        let s = args.resolve(None).expect("resolves").redacted();
        assert_eq!(
            s.prometheus.base_url.as_deref(),
            Some("https://<redacted>@thanos:9091/api?x=@y")
        );
        assert_eq!(redact_url("https://thanos:9091"), "https://thanos:9091");
        let e = SettingsArgs {
            prometheus_base_url: Some("http://admin:hunter2@thanos:9090".into()),
            ..Default::default()
        }
        .resolve(None)
        .expect_err("http");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn every_key_the_resolver_reads_is_a_known_key_and_no_other() {
        let source = include_str!("settings.rs");
        let body = &source[source.find("pub fn resolve(").expect("resolve")
            ..source
                .find("/// The main ConfigMap's keys besides")
                .expect("keys")];
        let mut read: Vec<&str> = body
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.len() > 3 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .collect();
        read.sort_unstable();
        read.dedup();
        let mut known: Vec<&str> = main_config_map_keys().collect();
        known.sort_unstable();
        assert_eq!(read, known);
        let data: BTreeMap<String, String> = [
            ("LOG_LEVEL", "debug"),
            ("RECONCILIATION_INTERVAL", "1m"),
            ("RECONCILE_INTERVAL", "1m"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let unknown = unknown_config_map_keys(&data);
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with("RECONCILE_INTERVAL: not a setting"),
            "{unknown:?}"
        );
    }

    #[test]
    fn label_values() {
        assert!(is_label_value("instance-a"));
        assert!(is_label_value("a.b_c"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value("a b"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
