//! The `wva run` process: flags, start-up checks (API server reachable, CRD installed, settings
//! valid), the HTTP servers, the controller, and a graceful stop on SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::config::parse_duration;
use crate::config::settings::{Settings, SettingsArgs, SettingsError};
use crate::controller::http::{self, Authorizer};
use crate::controller::leader::LeaseTiming;
use crate::controller::{ControllerOptions, prometheus_source};
use crate::exit::INVALID_INPUT;
use crate::external_scaler::{self, DesiredScaler, ScalerTls};
use crate::prometheus_api::{PrometheusClient, QueryPolicy};

/// Flags of `wva run`; every one can also be set by its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Directory of the decision log (a persistent volume in a cluster).
    #[arg(long, env = "WVA_DATA_DIR", default_value = "/var/lib/wva")]
    pub data_dir: PathBuf,
    /// Address of the metrics endpoint that HPA's adapter or KEDA's Prometheus read through.
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = "0.0.0.0:8443")]
    pub metrics_bind_address: String,
    /// Serve metrics over HTTPS to callers allowed to GET /metrics (TokenReview and
    /// SubjectAccessReview); false serves plain HTTP to anyone.
    #[arg(long, env = "METRICS_SECURE", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub metrics_secure: bool,
    /// Certificate (PEM) of the metrics endpoint; self-signed when absent.
    #[arg(long, env = "METRICS_CERT_PATH")]
    pub metrics_cert_path: Option<PathBuf>,
    /// Private key (PEM) of the metrics endpoint's certificate.
    #[arg(long, env = "METRICS_KEY_PATH")]
    pub metrics_key_path: Option<PathBuf>,
    /// Address of /healthz and /readyz.
    #[arg(
        long,
        env = "HEALTH_PROBE_BIND_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    pub health_probe_bind_address: String,
    /// Elect a leader through a Lease, for more than one replica; only the leader writes status
    /// and publishes.
    #[arg(long, env = "LEADER_ELECT", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub leader_elect: bool,
    /// Name of the Lease, in the controller's namespace.
    #[arg(
        long,
        env = "LEADER_ELECTION_ID",
        default_value = "wva-controller-leader"
    )]
    pub leader_election_id: String,
    /// Spread the models over this many shards, each held through its own Lease
    /// (`<leader-election-id>-shard-<i>`), so that replicas share them; needs --leader-elect.
    /// 1: one leader decides every model.
    #[arg(long, env = "WVA_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub shards: u32,
    /// This replica's name in the Lease and in Events [default: the host name].
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Timeout of one Prometheus query attempt.
    #[arg(long, env = "PROMETHEUS_QUERY_TIMEOUT", default_value = "10s")]
    pub prometheus_query_timeout: String,
    /// Further attempts of a Prometheus query that failed in a way that may pass.
    #[arg(long, env = "PROMETHEUS_QUERY_RETRIES", default_value_t = 2)]
    pub prometheus_query_retries: u32,
    /// Serve KEDA's external scaler protocol (gRPC) on this address, e.g. 0.0.0.0:9090; off
    /// when empty.
    #[arg(long, env = "EXTERNAL_SCALER_BIND_ADDRESS")]
    pub external_scaler_bind_address: Option<String>,
    /// Certificate (PEM) of the external scaler; plaintext gRPC when absent.
    #[arg(long, env = "EXTERNAL_SCALER_CERT_PATH")]
    pub external_scaler_cert_path: Option<PathBuf>,
    /// Private key (PEM) of the external scaler's certificate.
    #[arg(long, env = "EXTERNAL_SCALER_KEY_PATH")]
    pub external_scaler_key_path: Option<PathBuf>,
    /// Run as a shadow of the main instance: watch the same variants, decide and log
    /// everything, but write no VA status, send no Event, and publish only `wva_shadow_*`
    /// series, which no scaler reads. Its Lease (with --leader-elect) is
    /// `<leader-election-id>-shadow`, never the main instance's. Compare with `wva diff`.
    #[arg(long, env = "WVA_SHADOW", value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub shadow: bool,
}

fn fail(message: &str, code: u8) -> ExitCode {
    crate::exit::fail("run", message, code)
}

/// Runs the controller until SIGTERM or SIGINT.
pub fn main(args: RunArgs) -> ExitCode {
    crate::tls::install_default_provider();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}"))
    };
    let system = actix::System::with_tokio_rt(runtime);
    system.block_on(controller_main(args))
}

/// What `wva run`'s own flags (beyond the shared settings) resolve to.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChecks {
    pub query: QueryPolicy,
    /// The metrics endpoint's certificate and key, when given (both, or neither).
    pub metrics_cert: Option<(PathBuf, PathBuf)>,
    /// Where KEDA's external scaler is served, and its TLS, when it is.
    pub external_scaler: Option<(String, Option<ScalerTls>)>,
}

impl RunArgs {
    /// Resolves the settings (`config_map`: the main ConfigMap's data, when read) and checks
    /// every flag of `wva run`; the error names the flag and its variable.
    pub fn resolve(
        &self,
        config_map: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<(Settings, RunChecks), SettingsError> {
        let settings = self.settings.resolve(config_map)?;
        let bad = |env: &'static str, flag: &str, message: String| SettingsError {
            env,
            flag: flag.into(),
            message,
        };
        let timeout = parse_duration(&self.prometheus_query_timeout).map_err(|e| {
            bad(
                "PROMETHEUS_QUERY_TIMEOUT",
                "prometheus-query-timeout",
                e.to_string(),
            )
        })?;
        if timeout < Duration::from_millis(100) {
            return Err(bad(
                "PROMETHEUS_QUERY_TIMEOUT",
                "prometheus-query-timeout",
                format!(
                    "expected at least 100ms, got {:?}",
                    self.prometheus_query_timeout
                ),
            ));
        }
        let metrics_cert = match (&self.metrics_cert_path, &self.metrics_key_path) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "METRICS_CERT_PATH",
                    "metrics-cert-path",
                    "expected METRICS_CERT_PATH and METRICS_KEY_PATH both or neither".into(),
                ));
            }
        };
        let scaler_tls = match (
            &self.external_scaler_cert_path,
            &self.external_scaler_key_path,
        ) {
            (Some(cert), Some(key)) => Some(ScalerTls {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "EXTERNAL_SCALER_CERT_PATH",
                    "external-scaler-cert-path",
                    "expected EXTERNAL_SCALER_CERT_PATH and EXTERNAL_SCALER_KEY_PATH both or neither".into(),
                ));
            }
        };
        let external_scaler = match self.external_scaler_bind_address.as_deref().map(str::trim) {
            None | Some("") if scaler_tls.is_some() => {
                return Err(bad(
                    "EXTERNAL_SCALER_CERT_PATH",
                    "external-scaler-cert-path",
                    "a certificate for the external scaler, but no EXTERNAL_SCALER_BIND_ADDRESS to serve it on".into(),
                ));
            }
            None | Some("") => None,
            Some(address) => Some((address.to_string(), scaler_tls)),
        };
        Ok((
            settings,
            RunChecks {
                external_scaler,
                query: QueryPolicy {
                    timeout,
                    retries: self.prometheus_query_retries,
                    ..Default::default()
                },
                metrics_cert,
            },
        ))
    }
}

async fn controller_main(args: RunArgs) -> ExitCode {
    match start_controller(&args).await {
        Ok(running) => run_until_stopped(running).await,
        Err(Failed { message, code }) => fail(&message, code),
    }
}

/// Why `wva run` could not start, and the exit status that says so.
#[derive(Debug)]
struct Failed {
    message: String,
    code: u8,
}

impl Failed {
    /// A flag, variable or ConfigMap value the controller cannot use.
    fn input(e: impl std::fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            code: INVALID_INPUT,
        }
    }

    /// Anything else: the API server, a port, the CRD.
    fn other(e: impl std::fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            code: 1,
        }
    }
}

/// Checks everything it can, starts the controller, and serves its endpoints.
async fn start_controller(args: &RunArgs) -> Result<crate::controller::Running, Failed> {
    let early = preflight(args)?;
    let client = kube::Client::try_default().await.map_err(|e| {
        Failed::other(format!(
            "cannot configure the Kubernetes client (KUBECONFIG or the in-cluster service account): {e}"
        ))
    })?;
    check_crd(&client).await.map_err(Failed::other)?;
    let main_cm = main_config_map(&client, args, &early).await;
    let (settings, checks) = args.resolve(main_cm.as_ref()).map_err(Failed::input)?;
    if settings.prometheus.base_url.is_none() {
        return Err(Failed::input(
            "PROMETHEUS_BASE_URL (--prometheus-base-url): expected the Prometheus URL, got nothing",
        ));
    }
    let prometheus =
        Arc::new(PrometheusClient::new(&settings.prometheus, checks.query).map_err(Failed::input)?);
    tracing::info!(settings = ?settings.redacted(), "starting");
    let endpoints = Endpoints::bind(args, &checks)?;
    let identity = args.pod_name.clone().unwrap_or_else(hostname);
    let options = ControllerOptions {
        settings,
        data_dir: Some(args.data_dir.clone()),
        metrics: prometheus_source(prometheus),
        leader_election: args.leader_elect.then(|| {
            (
                args.leader_election_id.clone(),
                format!(
                    "{identity}_{}_{:x}",
                    std::process::id(),
                    crate::timefmt::wall_clock().millis()
                ),
                LeaseTiming::default(),
            )
        }),
        shards: args.shards,
        instance: identity,
        shadow: args.shadow,
    };
    let mut running = crate::controller::start(client.clone(), options)
        .await
        .map_err(Failed::other)?;
    let authorizer = args.metrics_secure.then(|| Authorizer::new(client));
    endpoints.serve(&mut running, authorizer, &checks)?;
    Ok(running)
}

/// The settings without the main ConfigMap (they say where it is), and the checks of flags
/// that do not go together.
fn preflight(args: &RunArgs) -> Result<Settings, Failed> {
    let (early, _) = args.resolve(None).map_err(Failed::input)?;
    if args.shards > 1 && !args.leader_elect {
        return Err(Failed::input(format!(
            "WVA_SHARDS (--shards): {} shards are held through Leases; also set LEADER_ELECT=true (--leader-elect)",
            args.shards
        )));
    }
    // KEDA's calls reach any replica through the scaler's Service, and a replica answers only
    // for the models of its own shards: the others would be NOT_FOUND half the time.
    if args.shards > 1
        && args
            .external_scaler_bind_address
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty())
    {
        return Err(Failed::input(format!(
            "WVA_SHARDS (--shards): {} shards with EXTERNAL_SCALER_BIND_ADDRESS: a replica's external scaler answers only for the models of its own shards; with shards, let KEDA read the published series (its Prometheus trigger) and leave EXTERNAL_SCALER_BIND_ADDRESS unset",
            args.shards
        )));
    }
    if args.shadow
        && args
            .external_scaler_bind_address
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty())
    {
        return Err(Failed::input(
            "WVA_SHADOW (--shadow) with EXTERNAL_SCALER_BIND_ADDRESS: a shadow publishes nothing a scaler reads, and KEDA would read its answers; leave EXTERNAL_SCALER_BIND_ADDRESS unset",
        ));
    }
    Ok(early)
}

/// The main ConfigMap's data, if it can be read; keys it should not hold are warned about (in
/// the log, and as an Event on it for the Prometheus connection it is not trusted with).
async fn main_config_map(
    client: &kube::Client,
    args: &RunArgs,
    early: &Settings,
) -> Option<std::collections::BTreeMap<String, String>> {
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &early.pod_namespace);
    let main_cm = match cm_api.get_opt(&early.config_map_name).await {
        Ok(Some(cm)) => Some(cm.data.unwrap_or_default()),
        Ok(None) => {
            tracing::warn!(config_map = %early.config_map_name, namespace = %early.pod_namespace, "main ConfigMap not found; using flags, environment and defaults");
            None
        }
        Err(e) => {
            tracing::warn!(config_map = %early.config_map_name, error = %e, "cannot read the main ConfigMap; using flags, environment and defaults");
            None
        }
    };
    for problem in main_cm
        .as_ref()
        .map(crate::config::settings::unknown_config_map_keys)
        .unwrap_or_default()
    {
        tracing::warn!(config_map = %early.config_map_name, %problem, "the main ConfigMap has a key the controller does not read; ignored");
    }
    let ignored = args.settings.ignored_config_map_keys(main_cm.as_ref());
    for key in &ignored {
        tracing::warn!(
            config_map = %early.config_map_name,
            key,
            "the main ConfigMap sets a Prometheus connection setting, ignored: PROMETHEUS_FROM_CONFIG_MAP=false takes the connection from the pod's environment only"
        );
    }
    if !ignored.is_empty() && !args.shadow {
        // Whoever edited the ConfigMap sees it there too (`kubectl describe configmap`); a
        // shadow sends no Event.
        crate::controller::status_writer::warn_on_config_map(
            client.clone(),
            &args.pod_name.clone().unwrap_or_else(hostname),
            &early.pod_namespace,
            &early.config_map_name,
            ignored_keys_note(&ignored),
        )
        .await;
    }
    main_cm
}

/// The probe and metrics listeners, bound before the controller starts (a taken port fails
/// the start), and the metrics endpoint's TLS.
struct Endpoints {
    health: std::net::TcpListener,
    metrics: std::net::TcpListener,
    tls: Option<http::RustlsConfig>,
}

impl Endpoints {
    fn bind(args: &RunArgs, checks: &RunChecks) -> Result<Self, Failed> {
        let health = http::bind(&args.health_probe_bind_address, "HEALTH_PROBE_BIND_ADDRESS")
            .map_err(Failed::other)?;
        let metrics = http::bind(&args.metrics_bind_address, "METRICS_BIND_ADDRESS")
            .map_err(Failed::other)?;
        let tls = if args.metrics_secure {
            let names = vec!["localhost".to_string(), hostname()];
            let pair = checks
                .metrics_cert
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            let config = crate::tls::server_config(pair, &names).map_err(Failed::input)?;
            Some(http::tls(config))
        } else {
            tracing::warn!(
                "metrics are served over plain HTTP to any caller (--metrics-secure=false)"
            );
            None
        };
        Ok(Self {
            health,
            metrics,
            tls,
        })
    }

    /// Serves the probes, the metrics and (when asked) KEDA's external scaler, each a critical
    /// task of `running`.
    fn serve(
        self,
        running: &mut crate::controller::Running,
        authorizer: Option<Authorizer>,
        checks: &RunChecks,
    ) -> Result<(), Failed> {
        let Self {
            health,
            metrics,
            tls,
        } = self;
        let probes = http::probes(running.health.clone());
        let metrics_routes = http::metrics(
            running.publisher.clone(),
            Some(running.ops.clone()),
            authorizer,
        );
        let stop = running.stop_token();
        running.spawn_critical("probe-server", {
            let stop = stop.clone();
            async move {
                if let Err(e) = http::serve(health, probes, None, stop).await {
                    tracing::error!(error = %e, "the probe server failed");
                }
            }
        });
        if let Some((address, scaler_tls)) = checks.external_scaler.clone() {
            let listener =
                http::bind(&address, "EXTERNAL_SCALER_BIND_ADDRESS").map_err(Failed::other)?;
            let scaler = DesiredScaler::new(running.board(), running.leader.clone());
            let stop = stop.clone();
            tracing::info!(%address, tls = scaler_tls.is_some(), "serving KEDA's external scaler protocol");
            running.spawn_critical("external-scaler", async move {
                if let Err(e) =
                    external_scaler::serve(listener, scaler, scaler_tls.as_ref(), stop).await
                {
                    tracing::error!(error = %e, "the external scaler failed");
                }
            });
        }
        // A renewed certificate (cert-manager, a rotated Secret) is served without a restart.
        if let (Some(config), Some((cert, key))) = (&tls, &checks.metrics_cert) {
            tokio::spawn(http::reload_certificate(
                config.clone(),
                cert.clone(),
                key.clone(),
                Duration::from_secs(30),
                stop.clone(),
            ));
        }
        running.spawn_critical("metrics-server", async move {
            if let Err(e) = http::serve(metrics, metrics_routes, tls, stop).await {
                tracing::error!(error = %e, "the metrics server failed");
            }
        });
        Ok(())
    }
}

/// Runs until SIGTERM or SIGINT (a graceful stop, exit 0) or until a critical task dies (exit 1,
/// so that Kubernetes restarts the pod rather than keep one that is half gone).
pub async fn run_until_stopped(mut running: crate::controller::Running) -> ExitCode {
    let died = tokio::select! {
        () = wait_for_signal() => None,
        ended = running.critical() => Some(ended),
    };
    match &died {
        None => tracing::info!(
            "stopping: finishing the cycle in flight, flushing the decision log, releasing the Lease"
        ),
        Some(ended) => tracing::error!(error = %ended, "stopping: a critical task died"),
    }
    running.shutdown().await;
    match died {
        None => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Some(ended) => fail(&ended.to_string(), 1),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wva-controller".into())
}

/// Why the VariantAutoscaling resource cannot be used, with one line on what to do.
#[derive(Debug, thiserror::Error)]
pub enum CrdCheckError {
    #[error(
        "the VariantAutoscaling CRD (variantautoscalings.llmd.ai) is not installed: install it with `kubectl apply -f crds/llmd.ai_variantautoscalings.yaml` (or the Helm chart's crds/) and start again"
    )]
    NotInstalled,
    #[error("cannot reach the Kubernetes API server to check for the VariantAutoscaling CRD: {0}")]
    Unreachable(kube::Error),
}

/// Checks that the API server serves the VariantAutoscaling resource.
pub async fn check_crd(client: &kube::Client) -> Result<(), CrdCheckError> {
    match client.list_api_group_resources("llmd.ai/v1alpha1").await {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.name == "variantautoscalings") =>
        {
            Ok(())
        }
        Ok(_) => Err(CrdCheckError::NotInstalled),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(CrdCheckError::NotInstalled),
        Err(e) => Err(CrdCheckError::Unreachable(e)),
    }
}

/// The Warning Event's text for main-ConfigMap keys ignored because the ConfigMap is not trusted
/// with the Prometheus connection.
pub fn ignored_keys_note(keys: &[&str]) -> String {
    format!(
        "{} ignored: PROMETHEUS_FROM_CONFIG_MAP=false, so the Prometheus connection (URL, TLS, token) comes from the controller's environment only; set it there (chart: wva.prometheus.*)",
        keys.join(", ")
    )
}
