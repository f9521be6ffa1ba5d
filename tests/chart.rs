//! The Helm chart, rendered and linted by Helm's own engine (the Python package
//! `helm-python-sdk`, driven by `tests/helm/render.py`): every install mode, the command lines
//! of the install guides users already follow, the RBAC against what the controller uses, the
//! ConfigMaps through the controller's own parsers, and the README's values table against
//! `values.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PodTemplateSpec, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::{Value, json};
use wva::config::settings::SettingsArgs;
use wva::config::{AcceleratorCosts, CapacityScalingConfig, ServiceClasses};
use wva::controller::rbac;
use wva::crd::VariantAutoscaling;

const CONTROLLER_NS: &str = "workload-variant-autoscaler-system";
/// The controller's workload and service account, named as the seed guides expect.
const CONTROLLER: &str = "workload-variant-autoscaler-controller-manager";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/workload-variant-autoscaler")
}

/// One rendered release.
#[derive(Debug)]
struct Release {
    namespace: String,
    values: Value,
    objects: Vec<Value>,
    notes: String,
    lint: Option<Value>,
}

/// Asks Helm to run `command` (a `helm install|upgrade|template` line), with `env` for the
/// `$VARIABLES` in it.
fn helm_answer(command: &str, env: &[(&str, &str)], lint: bool) -> Value {
    let request = json!({
        "command": command,
        "env": env.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "chart": chart_dir(),
        "lint": lint,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helm/render.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the chart tests need Python 3 with helm-python-sdk)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("request written");
    let out = child.wait_with_output().expect("render.py finishes");
    assert!(
        out.status.success(),
        "render.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "render.py answered no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn helm_env(command: &str, env: &[(&str, &str)]) -> Release {
    let answer = helm_answer(command, env, true);
    if let Some(e) = answer.get("error") {
        panic!(
            "helm refused `{command}`: {}",
            e.as_str().unwrap_or_default()
        );
    }
    let mut objects = Vec::new();
    let mut notes = String::new();
    let manifests = answer["manifests"].as_object().expect("manifests");
    for (template, text) in manifests {
        let text = text.as_str().expect("manifest text");
        if template.ends_with("NOTES.txt") {
            notes = text.to_string();
            continue;
        }
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{template} renders invalid YAML: {e}\n{text}"));
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    let release = Release {
        namespace: answer["namespace"].as_str().expect("namespace").to_string(),
        values: answer["values"].clone(),
        objects,
        notes,
        lint: answer.get("lint").cloned(),
    };
    release.check_types();
    release.check_lint();
    release
}

fn helm(command: &str) -> Release {
    helm_env(command, &[])
}

/// The error Helm gives for `command`.
fn helm_error(command: &str) -> String {
    let answer = helm_answer(command, &[], false);
    match answer.get("error") {
        Some(e) => e.as_str().unwrap_or_default().to_string(),
        None => panic!("helm accepted `{command}`"),
    }
}

impl Release {
    /// (kind, namespace, name) of every object; cluster-scoped objects have namespace "".
    fn inventory(&self) -> BTreeSet<(String, String, String)> {
        self.objects
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap_or_default().to_string(),
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}; have {:?}", self.inventory()))
    }

    fn typed<T: serde::de::DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        serde_json::from_value(self.get(kind, name).clone())
            .unwrap_or_else(|e| panic!("{kind} {name} does not fit the API type: {e}"))
    }

    fn config_map_data(&self, name: &str) -> BTreeMap<String, String> {
        self.typed::<ConfigMap>("ConfigMap", name)
            .data
            .unwrap_or_default()
    }

    fn statefulset(&self) -> StatefulSet {
        self.typed("StatefulSet", CONTROLLER)
    }

    fn deployment(&self) -> Deployment {
        self.typed("Deployment", CONTROLLER)
    }

    /// The controller's pod template, whichever workload runs it.
    fn controller_pod(&self) -> PodTemplateSpec {
        if self.all("StatefulSet").is_empty() {
            self.deployment().spec.expect("spec").template
        } else {
            self.statefulset().spec.expect("spec").template
        }
    }

    fn env(&self) -> BTreeMap<String, String> {
        let pod = self.controller_pod().spec.expect("pod spec");
        pod.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_else(|| "<from>".into())))
            .collect()
    }

    /// Every object deserializes into its API type: a field of the wrong type or shape fails
    /// here, as the API server would refuse it.
    fn check_types(&self) {
        for o in &self.objects {
            let kind = o["kind"].as_str().unwrap_or_default();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            assert!(!name.is_empty(), "an object without a name: {o}");
            assert!(name.len() <= 253, "{kind} {name}: name too long");
            let fits = match kind {
                "StatefulSet" => fits::<StatefulSet>,
                "Deployment" => fits::<Deployment>,
                "PersistentVolumeClaim" => fits::<PersistentVolumeClaim>,
                "NetworkPolicy" => fits::<k8s_openapi::api::networking::v1::NetworkPolicy>,
                "PodDisruptionBudget" => fits::<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
                "Service" => fits::<Service>,
                "ServiceAccount" => fits::<ServiceAccount>,
                "ConfigMap" => fits::<ConfigMap>,
                "Secret" => fits::<k8s_openapi::api::core::v1::Secret>,
                "Role" => fits::<Role>,
                "RoleBinding" => fits::<RoleBinding>,
                "ClusterRole" => fits::<ClusterRole>,
                "ClusterRoleBinding" => fits::<ClusterRoleBinding>,
                "HorizontalPodAutoscaler" => fits::<HorizontalPodAutoscaler>,
                "VariantAutoscaling" => fits::<VariantAutoscaling>,
                // Kinds of CRDs this project does not type: only their shape is checked.
                "ServiceMonitor" | "ScaledObject" | "PrometheusRule" | "Certificate" => {
                    assert!(o["spec"].is_object(), "{kind} {name} has no spec");
                    continue;
                }
                other => panic!("the chart renders an unexpected kind {other}"),
            };
            fits(o)
                .unwrap_or_else(|e| panic!("{kind} {name} does not fit its API type: {e}\n{o:#}"));
        }
    }

    /// `helm lint --strict` reports nothing worse than information.
    fn check_lint(&self) {
        let lint = self.lint.as_ref().expect("lint report");
        let errors = lint["errors"].as_array().cloned().unwrap_or_default();
        assert!(errors.is_empty(), "helm lint --strict: {errors:?}");
        let serious: Vec<_> = lint["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "helm lint --strict: {serious:?}");
    }
}

/// Whether `object` deserializes into the API type `T`.
fn fits<T: serde::de::DeserializeOwned>(object: &Value) -> Result<(), serde_json::Error> {
    T::deserialize(object).map(drop)
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(k, ns, n)| (k.to_string(), ns.to_string(), n.to_string()))
        .collect()
}

/// What a controller release creates in `ns`, watching `watched` (None = cluster-wide).
fn controller_objects(ns: &str, watched: Option<&str>) -> BTreeSet<(String, String, String)> {
    let cluster = format!("workload-variant-autoscaler-{ns}");
    let mut out = set(&[
        ("ServiceAccount", ns, CONTROLLER),
        ("Deployment", ns, CONTROLLER),
        (
            "PersistentVolumeClaim",
            ns,
            "workload-variant-autoscaler-controller-manager-data",
        ),
        (
            "Service",
            ns,
            "workload-variant-autoscaler-controller-manager-metrics-service",
        ),
        (
            "ServiceMonitor",
            ns,
            "workload-variant-autoscaler-controller-manager-metrics-monitor",
        ),
        // The metrics endpoint's certificate, which the ServiceMonitor verifies.
        (
            "Secret",
            ns,
            "workload-variant-autoscaler-controller-manager-metrics-cert",
        ),
        (
            "ConfigMap",
            ns,
            "workload-variant-autoscaler-variantautoscaling-config",
        ),
        ("ConfigMap", ns, "capacity-scaling-config"),
        ("ConfigMap", ns, "accelerator-unitcost"),
        ("ConfigMap", ns, "serviceclass"),
        ("ConfigMap", ns, "accelerator-pool"),
        ("Role", ns, "workload-variant-autoscaler-manager-own"),
        ("RoleBinding", ns, "workload-variant-autoscaler-manager-own"),
    ]);
    for (kind, suffix) in [
        ("ClusterRole", "manager-reviews"),
        ("ClusterRoleBinding", "manager-reviews"),
        ("ClusterRole", "metrics-reader"),
        ("ClusterRoleBinding", "metrics-reader"),
        ("ClusterRole", "va-viewer"),
        ("ClusterRole", "va-editor"),
    ] {
        out.insert((kind.into(), String::new(), format!("{cluster}-{suffix}")));
    }
    let watched_name = format!("{cluster}-manager-watched");
    match watched {
        Some(w) => {
            out.insert(("Role".into(), w.into(), watched_name.clone()));
            out.insert(("RoleBinding".into(), w.into(), watched_name));
        }
        None => {
            out.insert(("ClusterRole".into(), String::new(), watched_name.clone()));
            out.insert(("ClusterRoleBinding".into(), String::new(), watched_name));
        }
    }
    out
}

/// What a model release creates for `model_name` in `ns`.
fn model_objects(ns: &str, model_name: &str) -> BTreeSet<(String, String, String)> {
    let target = format!("{model_name}-decode");
    let svc = format!("{model_name}-vllm");
    set(&[
        ("VariantAutoscaling", ns, &target),
        ("HorizontalPodAutoscaler", ns, &format!("{target}-hpa")),
        ("Service", ns, &svc),
        ("ServiceMonitor", ns, &svc),
    ])
}

const DEFAULT_MODEL: &str = "ms-inference-scheduling-llm-d-modelservice";

#[test]
fn mode_all_installs_the_controller_and_one_models_resources() {
    let r = helm(&format!(
        "helm install workload-variant-autoscaler ./workload-variant-autoscaler -n {CONTROLLER_NS} --set installMode=all"
    ));
    let mut expected = controller_objects(CONTROLLER_NS, Some("llm-d-autoscaler"));
    expected.extend(model_objects("llm-d-autoscaler", DEFAULT_MODEL));
    assert_eq!(r.inventory(), expected);
    // The default mode is `all`.
    let default = helm(&format!(
        "helm install workload-variant-autoscaler ./workload-variant-autoscaler -n {CONTROLLER_NS}"
    ));
    assert_eq!(default.inventory(), expected);
    assert!(r.notes.contains("install mode all"), "{}", r.notes);
}

#[test]
fn mode_controller_only_installs_no_model_resources() {
    // The command of the chart guide users know, for a cluster-wide controller.
    let r = helm(
        "helm install wva-controller ./workload-variant-autoscaler \
           -n workload-variant-autoscaler-system \
           --create-namespace \
           --set installMode=controller-only \
           --set wva.namespaceScoped=false",
    );
    assert_eq!(r.inventory(), controller_objects(CONTROLLER_NS, None));
    let cm = r.config_map_data("workload-variant-autoscaler-variantautoscaling-config");
    assert!(
        !cm.contains_key("WATCH_NAMESPACE"),
        "cluster-wide watches every namespace: {cm:?}"
    );
    // No model of its own, so no service class of its own.
    let classes = ServiceClasses::from_data(Some(&r.config_map_data("serviceclass")));
    assert!(classes.entries.is_empty() && classes.issues.is_empty());
}

#[test]
fn mode_model_resources_only_stays_in_the_model_namespace() {
    for (release, ns, model, id) in [
        (
            "model-a-resources",
            "namespace-a",
            "model-a",
            "vendor/model-a",
        ),
        (
            "model-b-resources",
            "namespace-b",
            "model-b",
            "vendor/model-b",
        ),
    ] {
        let r = helm(&format!(
            "helm install {release} ./workload-variant-autoscaler \
               -n {ns} \
               --set installMode=model-resources-only \
               --set llmd.namespace={ns} \
               --set llmd.modelName={model} \
               --set llmd.modelID=\"{id}\""
        ));
        assert_eq!(r.inventory(), model_objects(ns, model));
        let va: VariantAutoscaling = r.typed("VariantAutoscaling", &format!("{model}-decode"));
        assert_eq!(va.spec.model_id, id);
        assert!(r.notes.contains("serviceclass"), "{}", r.notes);
    }
}

#[test]
fn an_unknown_install_mode_or_bad_value_fails_naming_the_field() {
    let base = "helm install w ./workload-variant-autoscaler -n ns";
    for (set, field) in [
        ("installMode=everything", "installMode"),
        (
            "wva.experimentalHybridOptimization=sometimes",
            "experimentalHybridOptimization",
        ),
        ("wva.metricsPrefix=vllm", "metricsPrefix"),
        (
            "wva.capacityScaling.default.kvCacheThreshold=1.5",
            "kvCacheThreshold",
        ),
        (
            "wva.capacityScaling.default.kvCacheTreshold=0.5",
            "kvCacheTreshold",
        ),
        ("wva.reconcileInterval=soon", "reconcileInterval"),
        ("hpa.maxReplicas=0", "maxReplicas"),
        ("vllmService.nodePort=80", "nodePort"),
        ("va.variantCost=cheap", "variantCost"),
    ] {
        let e = helm_error(&format!("{base} --set {set}"));
        assert!(e.contains(field), "--set {set}: {e}");
    }
    let e = helm_error(&format!(
        "{base} --set wva.capacityScaling.overrides.fast.kvCacheThreshold=0.5"
    ));
    assert!(
        e.contains("wva.capacityScaling.overrides.fast.modelID"),
        "{e}"
    );
    let e = helm_error(&format!(
        "{base} --set wva.prometheus.baseURL=prometheus:9090"
    ));
    assert!(e.contains("baseURL"), "{e}");
}

/// The OpenShift install of the chart guide users know, verbatim but for the CA file's path.
#[test]
fn the_single_model_openshift_install_of_the_guide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("prometheus-ca.crt");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfake\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca, pem).expect("ca written");
    let command = "helm upgrade -i workload-variant-autoscaler ./workload-variant-autoscaler \
  -n $WVA_NS \
  --set-file wva.prometheus.caCert=/tmp/prometheus-ca.crt \
  --set va.accelerator=L40S \
  --set llmd.modelID=unsloth/Meta-Llama-3.1-8B \
  --set vllmService.enabled=true \
  --set vllmService.nodePort=30000"
        .replace("/tmp/prometheus-ca.crt", &ca.to_string_lossy());
    let r = helm_env(&command, &[("WVA_NS", CONTROLLER_NS)]);
    assert_eq!(r.namespace, CONTROLLER_NS);

    let mut expected = controller_objects(CONTROLLER_NS, Some("llm-d-autoscaler"));
    expected.extend(model_objects("llm-d-autoscaler", DEFAULT_MODEL));
    expected.extend(set(&[(
        "ConfigMap",
        CONTROLLER_NS,
        "workload-variant-autoscaler-prometheus-ca",
    )]));
    assert_eq!(r.inventory(), expected);

    // The CA is mounted where the controller is told to read it.
    assert_eq!(
        r.config_map_data("workload-variant-autoscaler-prometheus-ca")["ca.crt"],
        pem
    );
    let settings = resolved_settings(&r);
    assert_eq!(
        settings["prometheus"]["caCertPath"],
        "/etc/ssl/certs/prometheus-ca.crt"
    );
    assert_eq!(
        settings["prometheus"]["baseUrl"],
        "https://thanos-querier.openshift-monitoring.svc.cluster.local:9091"
    );
    assert_eq!(settings["prometheus"]["insecureSkipVerify"], false);
    assert_eq!(
        settings["prometheus"]["tokenPath"],
        "/var/run/secrets/wva/prometheus/token"
    );
    let pod = r.controller_pod().spec.expect("pod");
    // The token sent to Prometheus is a projected one of its own, short-lived.
    let token = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "prometheus-token")
        .and_then(|v| v.projected.clone())
        .expect("a projected token volume");
    let source = token.sources.expect("sources")[0]
        .service_account_token
        .clone()
        .expect("a service-account token");
    assert_eq!(source.expiration_seconds, Some(3600));
    assert_eq!(
        source.audience, None,
        "the API server's audience by default"
    );
    assert!(
        pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "prometheus-token"
                && m.mount_path == "/var/run/secrets/wva/prometheus")
    );
    let mount = pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.name == "prometheus-ca")
        .expect("CA mounted");
    assert_eq!(mount.mount_path, "/etc/ssl/certs/prometheus-ca.crt");
    assert_eq!(mount.sub_path.as_deref(), Some("ca.crt"));
    assert_eq!(mount.read_only, Some(true));

    let va: VariantAutoscaling = r.typed(
        "VariantAutoscaling",
        "ms-inference-scheduling-llm-d-modelservice-decode",
    );
    assert_eq!(va.spec.model_id, "unsloth/Meta-Llama-3.1-8B");
    assert_eq!(
        va.metadata.labels.as_ref().expect("labels")["inference.optimization/acceleratorName"],
        "L40S"
    );
    // The guide asks for a node port: it gets one, never silently dropped.
    let svc: Service = r.typed("Service", "ms-inference-scheduling-llm-d-modelservice-vllm");
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.ports.expect("ports")[0].node_port, Some(30000));
    // Without one, vLLM stays inside the cluster (the seeds' chart opened it on every node
    // whatever was set).
    let inside = helm_env(
        &command.replace("--set vllmService.nodePort=30000", ""),
        &[("WVA_NS", CONTROLLER_NS)],
    );
    let svc: Service = inside.typed("Service", "ms-inference-scheduling-llm-d-modelservice-vllm");
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.ports.expect("ports")[0].node_port, None);
    // A node port with a type that has none is said, naming both values.
    let e = helm_error(&format!("{command} --set vllmService.type=ClusterIP"));
    assert!(
        e.contains("vllmService.nodePort is 30000 but vllmService.type is ClusterIP"),
        "{e}"
    );

    // The model's SLO reaches the controller's serviceclass ConfigMap.
    let classes = ServiceClasses::from_data(Some(&r.config_map_data("serviceclass")));
    assert!(classes.issues.is_empty(), "{:?}", classes.issues);
    let (_, slo) = classes
        .slo_for("unsloth/Meta-Llama-3.1-8B")
        .expect("the model has an SLO");
    assert_eq!((slo.itl_ms, slo.ttft_ms), (25.0, 1000.0));
}

/// A token from a Secret, a client certificate for mutual TLS and an expected server name reach
/// the controller as the settings it reads, with the files mounted where those settings point.
#[test]
fn prometheus_mutual_tls_and_a_token_from_a_secret() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} \
           --set wva.prometheus.bearerTokenSecret.name=prom-token \
           --set wva.prometheus.tls.clientCertSecretName=prom-client \
           --set wva.prometheus.tls.serverName=prometheus.internal"
    ));
    let s = resolved_settings(&r);
    assert_eq!(
        s["prometheus"]["clientCertPath"],
        "/etc/wva/prometheus-client/tls.crt"
    );
    assert_eq!(
        s["prometheus"]["clientKeyPath"],
        "/etc/wva/prometheus-client/tls.key"
    );
    assert_eq!(s["prometheus"]["serverName"], "prometheus.internal");
    assert_eq!(
        s["prometheus"]["tokenPath"],
        Value::Null,
        "the Secret's token instead"
    );
    let pod = r.controller_pod().spec.expect("pod");
    let c = &pod.containers[0];
    let token = c
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "PROMETHEUS_BEARER_TOKEN")
        .and_then(|e| e.value_from)
        .and_then(|f| f.secret_key_ref)
        .expect("token from a Secret");
    assert_eq!(
        (token.name.as_str(), token.key.as_str()),
        ("prom-token", "token")
    );
    let mount = c
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.name == "prometheus-client")
        .expect("client certificate mounted");
    assert_eq!(mount.mount_path, "/etc/wva/prometheus-client");
    let volume = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "prometheus-client")
        .and_then(|v| v.secret)
        .expect("from the Secret");
    assert_eq!(volume.secret_name.as_deref(), Some("prom-client"));
    // The token is never written into the ConfigMap.
    let cm = r.config_map_data("workload-variant-autoscaler-variantautoscaling-config");
    assert!(!cm.contains_key("PROMETHEUS_BEARER_TOKEN"));
}

/// The settings the controller resolves from the rendered main ConfigMap.
/// The settings the controller resolves from the chart's pod environment (the connection) and
/// its main ConfigMap (the rest), as `wva run` does.
fn resolved_settings(r: &Release) -> Value {
    let data = r.config_map_data("workload-variant-autoscaler-variantautoscaling-config");
    let env = r.env();
    let from_env = |k: &str| env.get(k).filter(|v| *v != "<from>").cloned();
    let boolish = |k: &str| from_env(k).map(|v| v == "true");
    let args = SettingsArgs {
        prometheus_from_config_map: boolish("PROMETHEUS_FROM_CONFIG_MAP"),
        prometheus_base_url: from_env("PROMETHEUS_BASE_URL"),
        prometheus_allow_http: boolish("PROMETHEUS_ALLOW_HTTP"),
        prometheus_tls_insecure_skip_verify: boolish("PROMETHEUS_TLS_INSECURE_SKIP_VERIFY"),
        prometheus_ca_cert_path: from_env("PROMETHEUS_CA_CERT_PATH").map(Into::into),
        prometheus_server_name: from_env("PROMETHEUS_SERVER_NAME"),
        prometheus_client_cert_path: from_env("PROMETHEUS_CLIENT_CERT_PATH").map(Into::into),
        prometheus_client_key_path: from_env("PROMETHEUS_CLIENT_KEY_PATH").map(Into::into),
        prometheus_token_path: from_env("PROMETHEUS_TOKEN_PATH").map(Into::into),
        ..Default::default()
    };
    assert!(
        args.ignored_config_map_keys(Some(&data)).is_empty(),
        "the chart's ConfigMap carries connection settings the controller ignores"
    );
    let settings = args
        .resolve(Some(&data))
        .unwrap_or_else(|e| panic!("the controller refuses the chart's settings: {e}"));
    serde_json::to_value(settings).expect("settings serialize")
}

/// The multi-model guide: one cluster-wide controller, then one release per model.
#[test]
fn the_multi_model_guide() {
    let controller = helm(
        "helm install wva-controller ./charts/workload-variant-autoscaler \
  -n workload-variant-autoscaler-system \
  --create-namespace \
  --set installMode=controller-only \
  --set wva.namespaceScoped=false \
  --set wva.prometheus.baseURL=\"https://prometheus:9090\"",
    );
    assert_eq!(
        controller.inventory(),
        controller_objects(CONTROLLER_NS, None)
    );
    let settings = resolved_settings(&controller);
    assert_eq!(settings["prometheus"]["baseUrl"], "https://prometheus:9090");
    assert_eq!(settings["watchNamespace"], Value::Null);

    // Step 2 and 3 of the architecture example (no -n: the release lands in "default", the
    // resources in the model's namespace).
    let a = helm(
        "helm install model-a ./workload-variant-autoscaler \
  --set installMode=model-resources-only \
  --set llmd.namespace=llm-d-model-a \
  --set llmd.modelName=ms-model-a-llm-d-modelservice \
  --set llmd.modelID=\"meta-llama/Llama-2-7b-hf\" \
  --set va.accelerator=H100",
    );
    assert_eq!(
        a.inventory(),
        model_objects("llm-d-model-a", "ms-model-a-llm-d-modelservice")
    );
    // The migration guide's per-model commands, with every flag.
    for (release, ns, model, id, acc, tpot, ttft, max, port) in [
        (
            "wva-model-a",
            "llm-d-model-a",
            "ms-model-a-llm-d-modelservice",
            "meta-llama/Llama-2-7b-hf",
            "H100",
            10,
            1000,
            10,
            30000,
        ),
        (
            "wva-model-b",
            "llm-d-model-b",
            "ms-model-b-llm-d-modelservice",
            "mistralai/Mistral-7B-v0.1",
            "A100",
            8,
            800,
            8,
            30001,
        ),
    ] {
        let r = helm(&format!(
            "helm install {release} ./charts/workload-variant-autoscaler \
  --set installMode=model-resources-only \
  --set llmd.namespace={ns} \
  --set llmd.modelName={model} \
  --set llmd.modelID=\"{id}\" \
  --set va.enabled=true \
  --set va.accelerator={acc} \
  --set va.sloTpot={tpot} \
  --set va.sloTtft={ttft} \
  --set hpa.enabled=true \
  --set hpa.maxReplicas={max} \
  --set vllmService.enabled=true \
  --set vllmService.nodePort={port} \
  --set vllmService.interval=15s"
        ));
        assert_eq!(r.inventory(), model_objects(ns, model));
        let target = format!("{model}-decode");
        let va: VariantAutoscaling = r.typed("VariantAutoscaling", &target);
        assert_eq!(va.spec.model_id, id);
        assert_eq!(
            va.spec.scale_target_ref.as_ref().map(|t| t.name.as_str()),
            Some(target.as_str())
        );
        assert_eq!(
            va.metadata.labels.as_ref().expect("labels")["inference.optimization/acceleratorName"],
            acc
        );
        let hpa: HorizontalPodAutoscaler =
            r.typed("HorizontalPodAutoscaler", &format!("{target}-hpa"));
        let spec = hpa.spec.expect("hpa spec");
        assert_eq!(spec.max_replicas, max);
        assert_eq!(spec.scale_target_ref.name, target);
        let metric = spec.metrics.expect("metrics")[0]
            .external
            .clone()
            .expect("external");
        assert_eq!(
            metric.metric.selector.and_then(|s| s.match_labels),
            Some(BTreeMap::from([
                ("variant_name".to_string(), target.clone()),
                ("exported_namespace".to_string(), ns.to_string()),
            ]))
        );
        // The guide's node port is the Service's.
        let svc: Service = r.typed("Service", &format!("{model}-vllm"));
        assert_eq!(r.values["vllmService"]["nodePort"], port);
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.ports.expect("ports")[0].node_port, Some(port));
        let monitor = r.get("ServiceMonitor", &format!("{model}-vllm"));
        assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
        assert_eq!(monitor["spec"]["endpoints"][0]["scheme"], "http");
        assert_eq!(monitor["metadata"]["namespace"], ns);
    }
}

/// The production and development values files of the guide.
#[test]
fn production_and_development_values_files() {
    let prod = helm(&format!(
        "helm install workload-variant-autoscaler ./workload-variant-autoscaler -n {CONTROLLER_NS} --values values.yaml"
    ));
    let s = resolved_settings(&prod);
    assert_eq!(s["prometheus"]["insecureSkipVerify"], false);
    assert_eq!(prod.env()["LOG_LEVEL"], "info");

    let dev = helm(&format!(
        "helm install workload-variant-autoscaler ./workload-variant-autoscaler -n {CONTROLLER_NS} --values values-dev.yaml"
    ));
    let s = resolved_settings(&dev);
    assert_eq!(s["prometheus"]["insecureSkipVerify"], true);
    assert_eq!(s["reconciliationInterval"], "10s");
    assert_eq!(dev.env()["LOG_LEVEL"], "debug");
    let capacity =
        CapacityScalingConfig::from_data(Some(&dev.config_map_data("capacity-scaling-config")));
    assert!(capacity.issues.is_empty(), "{:?}", capacity.issues);
    assert_eq!(capacity.scaling.default.thresholds.kv_cache_threshold, 0.7);

    let custom = helm(&format!(
        "helm install workload-variant-autoscaler ./workload-variant-autoscaler -n {CONTROLLER_NS} \
           --values values.yaml \
           --set wva.prometheus.tls.insecureSkipVerify=true \
           --set wva.image.tag=v0.0.1-dev"
    ));
    assert_eq!(
        resolved_settings(&custom)["prometheus"]["insecureSkipVerify"],
        true
    );
    let image = custom.controller_pod().spec.expect("pod").containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some("workload-variant-autoscaler:v0.0.1-dev")
    );
}

/// (API group, resources, verbs, resource names) of each rule.
type RuleKey = (String, Vec<String>, Vec<String>, Vec<String>);

fn rules_of(rules: &[rbac::Rule]) -> BTreeSet<RuleKey> {
    rules
        .iter()
        .map(|r| {
            (
                r.api_group.to_string(),
                r.resources.iter().map(|s| s.to_string()).collect(),
                r.verbs.iter().map(|s| s.to_string()).collect(),
                r.names
                    .iter()
                    .map(|n| {
                        if *n == rbac::LEASE_NAME {
                            "workload-variant-autoscaler-leader".to_string()
                        } else {
                            n.to_string()
                        }
                    })
                    .collect(),
            )
        })
        .collect()
}

fn rendered_rules(rules: Option<Vec<PolicyRule>>) -> BTreeSet<RuleKey> {
    rules
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let groups = r.api_groups.unwrap_or_default();
            assert_eq!(groups.len(), 1, "one API group per rule");
            (
                groups[0].clone(),
                r.resources.unwrap_or_default(),
                r.verbs,
                r.resource_names.unwrap_or_default(),
            )
        })
        .collect()
}

/// The roles grant exactly the rules `src/controller/rbac.rs` lists, and the bindings give them
/// to the controller's service account.
#[test]
fn rbac_is_exactly_what_the_controller_uses() {
    for scoped in [true, false] {
        let r = helm(&format!(
            "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.namespaceScoped={scoped} --set llmd.namespace=models"
        ));
        let cluster = format!("workload-variant-autoscaler-{CONTROLLER_NS}");
        let watched_name = format!("{cluster}-manager-watched");
        let watched = if scoped {
            let role: Role = r.typed("Role", &watched_name);
            assert_eq!(role.metadata.namespace.as_deref(), Some("models"));
            assert_eq!(
                r.config_map_data("workload-variant-autoscaler-variantautoscaling-config")["WATCH_NAMESPACE"],
                "models"
            );
            role.rules
        } else {
            r.typed::<ClusterRole>("ClusterRole", &watched_name).rules
        };
        assert_eq!(rendered_rules(watched), rules_of(rbac::WATCHED));
        let own: Role = r.typed("Role", "workload-variant-autoscaler-manager-own");
        assert_eq!(own.metadata.namespace.as_deref(), Some(CONTROLLER_NS));
        assert_eq!(rendered_rules(own.rules), rules_of(rbac::OWN_NAMESPACE));
        let reviews: ClusterRole = r.typed("ClusterRole", &format!("{cluster}-manager-reviews"));
        assert_eq!(rendered_rules(reviews.rules), rules_of(rbac::CLUSTER));

        for (kind, name) in [
            (
                if scoped {
                    "RoleBinding"
                } else {
                    "ClusterRoleBinding"
                },
                watched_name.clone(),
            ),
            (
                "RoleBinding",
                "workload-variant-autoscaler-manager-own".to_string(),
            ),
            ("ClusterRoleBinding", format!("{cluster}-manager-reviews")),
        ] {
            let b = r.get(kind, &name);
            assert_eq!(b["roleRef"]["name"], name.as_str());
            assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
            assert_eq!(b["subjects"][0]["name"], CONTROLLER);
            assert_eq!(b["subjects"][0]["namespace"], CONTROLLER_NS);
        }
        // The scraping Prometheus may GET /metrics, and nothing else.
        let reader: ClusterRole = r.typed("ClusterRole", &format!("{cluster}-metrics-reader"));
        let rule = &reader.rules.expect("rules")[0];
        assert_eq!(rule.non_resource_urls, Some(vec!["/metrics".to_string()]));
        assert_eq!(rule.verbs, vec!["get".to_string()]);
        let b = r.get("ClusterRoleBinding", &format!("{cluster}-metrics-reader"));
        assert_eq!(b["subjects"][0]["name"], "prometheus-user-workload");
        assert_eq!(
            b["subjects"][0]["namespace"],
            "openshift-user-workload-monitoring"
        );
    }
}

#[test]
fn the_controller_is_a_hardened_single_writer() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS}"
    ));
    // By default a Deployment with its decision log on one claim, replaced (never rolled) so
    // that two pods never open the log at once.
    let deployment = r.deployment();
    let spec = deployment.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate")
    );
    let claim: PersistentVolumeClaim = r.typed(
        "PersistentVolumeClaim",
        "workload-variant-autoscaler-controller-manager-data",
    );
    assert_eq!(
        claim.metadata.annotations.expect("annotations")["helm.sh/resource-policy"],
        "keep"
    );
    let pod = spec.template.spec.clone().expect("pod");
    assert!(pod.volumes.iter().flatten().any(|v| {
        v.name == "data"
            && v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str())
                == Some("workload-variant-autoscaler-controller-manager-data")
    }));
    let psc = pod.security_context.clone().expect("pod security");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.fs_group, Some(65532));
    assert_eq!(
        psc.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".to_string())
    );
    let c = &pod.containers[0];
    assert_eq!(
        c.args,
        Some(vec![
            "run".to_string(),
            "--watch-namespace=llm-d-autoscaler".to_string()
        ])
    );
    let sc = c.security_context.clone().expect("container security");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    for (probe, path) in [
        (c.liveness_probe.clone(), "/healthz"),
        (c.readiness_probe.clone(), "/readyz"),
    ] {
        let get = probe.and_then(|p| p.http_get).expect("http probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("health".into())
        );
    }
    let ports: BTreeMap<_, _> = c
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(ports["health"], 8081);
    assert_eq!(ports["https"], 8443);
    let mounts: BTreeMap<_, _> = c
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.name, m.mount_path))
        .collect();
    assert_eq!(mounts["data"], "/var/lib/wva");
    let env = r.env();
    assert_eq!(env["WVA_DATA_DIR"], "/var/lib/wva");
    assert_eq!(env["LEADER_ELECT"], "true");
    assert_eq!(env["METRICS_SECURE"], "true");
    assert_eq!(env["HEALTH_PROBE_BIND_ADDRESS"], "0.0.0.0:8081");
    assert_eq!(env["POD_NAMESPACE"], "<from>");
    assert_eq!(
        env["CONFIG_MAP_NAME"],
        "workload-variant-autoscaler-variantautoscaling-config"
    );
    // A change of the main ConfigMap (read at start-up) rolls the pods.
    let changed = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.reconcileInterval=30s"
    ));
    let checksum = |r: &Release| {
        r.controller_pod()
            .metadata
            .expect("meta")
            .annotations
            .expect("ann")["checksum/config"]
            .clone()
    };
    assert_ne!(checksum(&r), checksum(&changed));

    // Without persistence the log lives in an emptyDir.
    let ephemeral = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.persistence.enabled=false"
    ));
    assert!(ephemeral.all("PersistentVolumeClaim").is_empty());
    let volumes = ephemeral
        .controller_pod()
        .spec
        .expect("pod")
        .volumes
        .expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v.name == "data" && v.empty_dir.is_some())
    );

    // Standby replicas: a StatefulSet, one claim each.
    let ha = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.workload=StatefulSet --set wva.replicaCount=3"
    ));
    assert!(ha.all("Deployment").is_empty());
    assert!(ha.all("PersistentVolumeClaim").is_empty());
    let spec = ha.statefulset().spec.expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let claims = spec.volume_claim_templates.expect("a claim per replica");
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    // Two replicas cannot share one claim: said, naming the value and the way out.
    let error = helm_error(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.replicaCount=2"
    ));
    assert!(
        error.contains("wva.replicaCount: 2 replicas cannot share one decision-log claim")
            && error.contains("wva.workload: StatefulSet"),
        "{error}"
    );
}

/// The controller's ServiceMonitor scrapes over HTTPS with the scraper's token; plain HTTP
/// only when metrics are not secure; a given certificate is verified.
#[test]
fn the_controller_is_scraped_over_https_with_a_token() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.metrics.serviceMonitor.labels.release=kube-prometheus-stack"
    ));
    let m = r.get(
        "ServiceMonitor",
        "workload-variant-autoscaler-controller-manager-metrics-monitor",
    );
    assert_eq!(m["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let e = &m["spec"]["endpoints"][0];
    assert_eq!(e["scheme"], "https");
    assert_eq!(e["port"], "https");
    assert_eq!(
        e["bearerTokenFile"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    // Verified by default: against the CA of the certificate the chart generated.
    let server_name = format!(
        "workload-variant-autoscaler-controller-manager-metrics-service.{CONTROLLER_NS}.svc"
    );
    assert!(e["tlsConfig"].get("insecureSkipVerify").is_none(), "{e}");
    assert_eq!(e["tlsConfig"]["serverName"], server_name);
    let generated = "workload-variant-autoscaler-controller-manager-metrics-cert";
    assert_eq!(e["tlsConfig"]["ca"]["secret"]["name"], generated);
    let secret = r.get("Secret", generated);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let pem = |key: &str| {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"][key].as_str().expect(key))
                .expect("base64"),
        )
        .expect("PEM text")
    };
    assert!(pem("ca.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(pem("tls.key").contains("PRIVATE KEY"));
    // The certificate names the Service as the ServiceMonitor calls it, signed by that CA.
    let leaf = pem("tls.crt");
    let certs = rustls_pemfile_certs(&leaf);
    assert_eq!(certs.len(), 1);
    let ca = rustls_pemfile_certs(&pem("ca.crt"));
    assert_verified_for(&certs[0], &ca[0], &server_name);
    // And the controller serves that pair as the chart mounts it.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tls.crt"), &leaf).expect("write");
    std::fs::write(dir.path().join("tls.key"), pem("tls.key")).expect("write");
    wva::tls::server_config(
        Some((&dir.path().join("tls.crt"), &dir.path().join("tls.key"))),
        &[],
    )
    .expect("the controller accepts the generated certificate and key");
    assert_eq!(
        r.env()["METRICS_CERT_PATH"],
        "/etc/wva/metrics-cert/tls.crt"
    );

    // cert-manager issues it instead, once told by whom.
    let error = helm_error(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.metrics.certificate=cert-manager"
    ));
    assert!(
        error.contains("wva.metrics.certManager.issuerRef.name"),
        "{error}"
    );
    let cm = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.metrics.certificate=cert-manager \
           --set wva.metrics.certManager.issuerRef.name=cluster-ca --set wva.metrics.certManager.issuerRef.kind=ClusterIssuer"
    ));
    let c = cm.get("Certificate", generated);
    assert_eq!(c["spec"]["secretName"], generated);
    assert_eq!(c["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert!(
        c["spec"]["dnsNames"]
            .as_array()
            .expect("dnsNames")
            .contains(&json!(server_name))
    );
    assert!(
        !cm.inventory().iter().any(|(kind, _, _)| kind == "Secret"),
        "cert-manager writes the Secret"
    );

    // Self-signed by the controller: nothing to verify against, said in the object.
    let self_signed = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.metrics.certificate=self-signed"
    ));
    let e = &self_signed.get(
        "ServiceMonitor",
        "workload-variant-autoscaler-controller-manager-metrics-monitor",
    )["spec"]["endpoints"][0];
    assert_eq!(e["tlsConfig"]["insecureSkipVerify"], true);
    assert!(!self_signed.env().contains_key("METRICS_CERT_PATH"));
    let svc: Service = r.typed(
        "Service",
        "workload-variant-autoscaler-controller-manager-metrics-service",
    );
    let selector = svc.spec.expect("spec").selector.expect("selector");
    let sts_labels = r
        .controller_pod()
        .metadata
        .expect("meta")
        .labels
        .expect("labels");
    for (k, v) in &selector {
        assert_eq!(sts_labels.get(k), Some(v), "the Service selects the pods");
    }

    let verified = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.metrics.certSecretName=wva-metrics-tls"
    ));
    let e = &verified.get(
        "ServiceMonitor",
        "workload-variant-autoscaler-controller-manager-metrics-monitor",
    )["spec"]["endpoints"][0];
    assert_eq!(e["tlsConfig"]["ca"]["secret"]["name"], "wva-metrics-tls");
    assert_eq!(
        e["tlsConfig"]["serverName"],
        format!(
            "workload-variant-autoscaler-controller-manager-metrics-service.{CONTROLLER_NS}.svc"
        )
    );
    assert_eq!(
        verified.env()["METRICS_CERT_PATH"],
        "/etc/wva/metrics-cert/tls.crt"
    );

    let plain = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.metrics.secure=false"
    ));
    let e = &plain.get(
        "ServiceMonitor",
        "workload-variant-autoscaler-controller-manager-metrics-monitor",
    )["spec"]["endpoints"][0];
    assert_eq!(e["scheme"], "http");
    assert!(e.get("bearerTokenFile").is_none());
    assert!(
        !plain
            .inventory()
            .iter()
            .any(|(_, _, name)| name.ends_with("-metrics-reader")),
        "no metrics-reader without HTTPS"
    );
    assert_eq!(plain.env()["METRICS_SECURE"], "false");
}

/// A canary controller and its models: the id labels the VA, filters the HPA, and is passed
/// to the controller.
#[test]
fn a_controller_instance_isolates_its_models() {
    let r = helm(
        "helm install canary ./workload-variant-autoscaler -n wva-canary --set wva.controllerInstance=canary \
           --set hpa.behavior.scaleDown.stabilizationWindowSeconds=300 --set hpa.minReplicas=0 --set wva.scaleToZero=true",
    );
    let target = format!("{DEFAULT_MODEL}-decode");
    let va: VariantAutoscaling = r.typed("VariantAutoscaling", &target);
    assert_eq!(
        va.metadata.labels.expect("labels")["wva.llmd.ai/controller-instance"],
        "canary"
    );
    let hpa: HorizontalPodAutoscaler = r.typed("HorizontalPodAutoscaler", &format!("{target}-hpa"));
    let spec = hpa.spec.expect("spec");
    assert_eq!(spec.min_replicas, Some(0));
    let behavior = spec.behavior.expect("behavior");
    assert_eq!(
        behavior
            .scale_down
            .and_then(|b| b.stabilization_window_seconds),
        Some(300)
    );
    // Values not overridden keep their defaults.
    assert_eq!(
        behavior
            .scale_up
            .and_then(|b| b.stabilization_window_seconds),
        Some(0)
    );
    let external = spec.metrics.expect("metrics")[0]
        .external
        .clone()
        .expect("external");
    assert_eq!(external.metric.name, "inferno_desired_replicas");
    assert_eq!(
        external
            .metric
            .selector
            .and_then(|s| s.match_labels)
            .expect("labels")["controller_instance"],
        "canary"
    );
    assert_eq!(external.target.type_, "AverageValue");
    assert_eq!(
        external.target.average_value,
        Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
            "1".into()
        ))
    );
    let settings = resolved_settings(&r);
    assert_eq!(settings["controllerInstance"], "canary");
    assert_eq!(settings["scaleToZero"], true);
    // Cluster-scoped names carry the namespace, so this release and the main one coexist.
    assert!(
        r.inventory()
            .iter()
            .filter(|(_, ns, _)| ns.is_empty())
            .all(|(_, _, name)| name.starts_with("workload-variant-autoscaler-wva-canary-"))
    );
}

#[test]
fn keda_replaces_the_hpa() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set keda.enabled=true \
           --set keda.minReplicaCount=0 --set wva.controllerInstance=blue --set wva.metricsPrefix=wva"
    ));
    assert!(
        r.all("HorizontalPodAutoscaler").is_empty(),
        "KEDA owns the HPA"
    );
    let target = format!("{DEFAULT_MODEL}-decode");
    let so = r.get("ScaledObject", &format!("{target}-scaledobject"));
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["metadata"]["namespace"], "llm-d-autoscaler");
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], target.as_str());
    assert_eq!(so["spec"]["minReplicaCount"], 0);
    assert_eq!(so["spec"]["maxReplicaCount"], 10);
    let trigger = &so["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    assert_eq!(trigger["metadata"]["threshold"], "1");
    assert_eq!(
        trigger["metadata"]["query"],
        format!(
            "max(wva_desired_replicas{{variant_name=\"{target}\",exported_namespace=\"llm-d-autoscaler\",controller_instance=\"blue\"}})"
        )
    );
    assert_eq!(
        trigger["metadata"]["serverAddress"],
        "https://thanos-querier.openshift-monitoring.svc.cluster.local:9091"
    );
    assert_eq!(
        so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        120
    );
    // A missing answer is never zero: no series is an error, and an error keeps the replicas.
    assert_eq!(trigger["metadata"]["ignoreNullValues"], "false");
    assert_eq!(trigger["metadata"]["activationThreshold"], "0");
    assert_eq!(
        so["spec"]["fallback"],
        json!({"failureThreshold": 3, "replicas": 1, "behavior": "currentReplicas"})
    );
    // KEDA before 2.17 has no fallback behavior: the fallback can be left out.
    let old_keda = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set keda.enabled=true --set keda.fallback.enabled=false"
    ));
    let so = old_keda.get("ScaledObject", &format!("{target}-scaledobject"));
    assert!(so["spec"]["fallback"].is_null());
    assert_eq!(
        so["spec"]["triggers"][0]["metadata"]["ignoreNullValues"],
        "false"
    );
}

/// `keda.mode: external`: the ScaledObject asks the controller's gRPC scaler for the variant,
/// and the controller serves it on a Service of its own.
#[test]
fn keda_can_ask_the_controller_directly() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set keda.enabled=true            --set keda.mode=external --set wva.externalScaler.enabled=true --set wva.externalScaler.tlsSecretName=scaler-tls"
    ));
    let target = format!("{DEFAULT_MODEL}-decode");
    let so = r.get("ScaledObject", &format!("{target}-scaledobject"));
    let trigger = &so["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "external");
    assert_eq!(
        trigger["metadata"],
        json!({
            "scalerAddress": format!("workload-variant-autoscaler-controller-manager-external-scaler.{CONTROLLER_NS}.svc:9090"),
            "namespace": "llm-d-autoscaler",
            "variantName": target,
        })
    );
    assert_eq!(so["spec"]["fallback"]["behavior"], "currentReplicas");
    let svc: Service = r.typed(
        "Service",
        "workload-variant-autoscaler-controller-manager-external-scaler",
    );
    let port = &svc.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("grpc"), 9090));
    let env = r.env();
    assert_eq!(env["EXTERNAL_SCALER_BIND_ADDRESS"], "0.0.0.0:9090");
    assert_eq!(
        env["EXTERNAL_SCALER_CERT_PATH"],
        "/etc/wva/external-scaler-cert/tls.crt"
    );
    let pod = r.controller_pod().spec.expect("pod");
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == "external-scaler-cert"
                && v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("scaler-tls"))
    );
    // A model release for a controller elsewhere names its address.
    let model = helm(
        "helm install m ./workload-variant-autoscaler -n llm --set installMode=model-resources-only            --set keda.enabled=true --set keda.mode=external --set keda.scalerAddress=wva.wva-system.svc:9090",
    );
    let so = model.get("ScaledObject", &format!("{target}-scaledobject"));
    assert_eq!(
        so["spec"]["triggers"][0]["metadata"]["scalerAddress"],
        "wva.wva-system.svc:9090"
    );
}

/// The policy ConfigMaps as rendered are what the controller's parsers accept, with the values
/// given.
#[test]
fn the_policy_config_maps_parse_as_the_controller_reads_them() {
    let values = r#"
wva:
  experimentalHybridOptimization: on
  capacityScaling:
    default:
      kvCacheThreshold: 0.75
      scaleToZeroRetention: 15m
    overrides:
      llm-d:
        modelID: "Qwen/Qwen3-0.6B"
        namespace: "llm-d-autoscaler"
        kvCacheThreshold: 0.70
        kvSpareTrigger: 0.35
  serviceClasses:
    - name: premium
      priority: 1
      model: Qwen/Qwen3-0.6B
      slo-tpot: 24
      slo-ttft: 500
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mine.yaml");
    std::fs::write(&file, values).expect("values written");
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} -f {}",
        file.display()
    ));
    let capacity =
        CapacityScalingConfig::from_data(Some(&r.config_map_data("capacity-scaling-config")));
    assert!(capacity.issues.is_empty(), "{:?}", capacity.issues);
    let d = &capacity.scaling.default;
    assert_eq!(d.thresholds.kv_cache_threshold, 0.75);
    assert_eq!(d.thresholds.queue_length_threshold, 5.0);
    assert_eq!(
        d.scale_to_zero_retention,
        std::time::Duration::from_secs(900)
    );
    let (o, entry) = capacity
        .scaling
        .for_model("llm-d-autoscaler", "Qwen/Qwen3-0.6B");
    assert_eq!(entry, Some("llm-d"));
    assert_eq!(o.thresholds.kv_cache_threshold, 0.70);
    assert_eq!(o.thresholds.kv_spare_trigger, 0.35);
    assert_eq!(
        o.thresholds.queue_spare_trigger, 3.0,
        "inherited from default"
    );

    let costs = AcceleratorCosts::from_data(Some(&r.config_map_data("accelerator-unitcost")));
    assert!(costs.issues.is_empty(), "{:?}", costs.issues);
    assert_eq!(
        costs.by_name.keys().collect::<Vec<_>>(),
        vec!["A100", "H100", "L40S"]
    );
    assert_eq!(
        costs.by_name["H100"].device.as_deref(),
        Some("NVIDIA-H100-80GB-HBM3")
    );

    let classes = ServiceClasses::from_data(Some(&r.config_map_data("serviceclass")));
    assert!(classes.issues.is_empty(), "{:?}", classes.issues);
    assert_eq!(
        classes
            .slo_for("Qwen/Qwen3-0.6B")
            .map(|(c, s)| (c.to_string(), s.itl_ms)),
        Some(("premium".to_string(), 24.0))
    );
    assert!(classes.slo_for("unsloth/Meta-Llama-3.1-8B").is_some());

    // A bare `on` in a values file is YAML's boolean true: it still means hybrid on.
    assert_eq!(resolved_settings(&r)["mode"], "hybrid");

    // `--set` passes 0.65 as a string; the controller still reads a number.
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} \
           --set wva.capacityScaling.default.kvCacheThreshold=0.65 \
           --set wva.capacityScaling.overrides.q.modelID=Qwen/Qwen3-0.6B \
           --set wva.capacityScaling.overrides.q.queueLengthThreshold=8"
    ));
    let capacity =
        CapacityScalingConfig::from_data(Some(&r.config_map_data("capacity-scaling-config")));
    assert!(capacity.issues.is_empty(), "{:?}", capacity.issues);
    assert_eq!(capacity.scaling.default.thresholds.kv_cache_threshold, 0.65);
    let (o, _) = capacity.scaling.for_model("any", "Qwen/Qwen3-0.6B");
    assert_eq!(o.thresholds.queue_length_threshold, 8.0);
    assert_eq!(
        o.thresholds.kv_cache_threshold, 0.65,
        "inherited from default"
    );
}

/// Contract rules the chart carries that the tests above do not reach: the `wva_` prefix in the
/// HPA (section 8), the three operating modes (section 4), per-model scale to zero (section 7),
/// and standby replicas behind the Lease, each with its own decision log and time to shut down
/// gracefully (sections 9 and 10).
#[test]
fn contract_rules_the_chart_carries() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.metricsPrefix=wva"
    ));
    let hpa: HorizontalPodAutoscaler = r.typed(
        "HorizontalPodAutoscaler",
        &format!("{DEFAULT_MODEL}-decode-hpa"),
    );
    let external = hpa.spec.expect("spec").metrics.expect("metrics")[0]
        .external
        .clone()
        .expect("external");
    assert_eq!(external.metric.name, "wva_desired_replicas");
    assert_eq!(resolved_settings(&r)["metricsPrefix"], "wva");
    assert_eq!(
        resolved_settings(&r)["mode"],
        "capacity-only",
        "off by default"
    );

    for (value, mode) in [
        ("on", "hybrid"),
        ("model-only", "model-only"),
        ("off", "capacity-only"),
    ] {
        let r = helm(&format!(
            "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.experimentalHybridOptimization={value}"
        ));
        assert_eq!(resolved_settings(&r)["mode"], mode, "{value}");
    }

    // CONTRACT section 12: the default analyzer, and saturation-v1 one value away.
    assert_eq!(resolved_settings(&r)["analyzer"], "slo-capacity");
    assert_eq!(resolved_settings(&r)["sloBudgetShare"], 0.5);
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} \
           --set wva.scalingAnalyzer=saturation-v1 --set wva.sloBudgetShare=0.4"
    ));
    assert_eq!(resolved_settings(&r)["analyzer"], "saturation-v1");
    assert_eq!(resolved_settings(&r)["sloBudgetShare"], 0.4);
    let refused = helm_error(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.scalingAnalyzer=magic"
    ));
    assert!(refused.contains("scalingAnalyzer"), "{refused}");

    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} \
           --set wva.capacityScaling.overrides.idle.modelID=unsloth/Meta-Llama-3.1-8B \
           --set wva.capacityScaling.overrides.idle.enableScaleToZero=true \
           --set wva.capacityScaling.overrides.idle.scaleToZeroRetention=30m"
    ));
    let capacity =
        CapacityScalingConfig::from_data(Some(&r.config_map_data("capacity-scaling-config")));
    assert!(capacity.issues.is_empty(), "{:?}", capacity.issues);
    let (model, _) = capacity
        .scaling
        .for_model("llm-d-autoscaler", "unsloth/Meta-Llama-3.1-8B");
    assert_eq!(model.enable_scale_to_zero, Some(true));
    assert_eq!(
        model.scale_to_zero_retention,
        std::time::Duration::from_secs(1800)
    );
    assert_eq!(
        resolved_settings(&r)["scaleToZero"],
        false,
        "global default off"
    );

    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.replicaCount=2 --set wva.workload=StatefulSet"
    ));
    let spec = r.statefulset().spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        spec.volume_claim_templates.map(|c| c.len()),
        Some(1),
        "one claim per replica"
    );
    let pod = spec.template.spec.expect("pod");
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let env = r.env();
    assert_eq!(env["LEADER_ELECT"], "true");
    assert_eq!(
        env["LEADER_ELECTION_ID"],
        "workload-variant-autoscaler-leader"
    );
    assert_eq!(env["POD_NAME"], "<from>");
}

/// The keys of the values table of the chart users know, with their type: each still exists
/// with the same meaning (the tests above check the meaning of the ones that render).
#[test]
fn every_key_of_the_known_chart_is_a_value() {
    let known = [
        ("installMode", "string"),
        ("hpa.enabled", "bool"),
        ("hpa.maxReplicas", "int"),
        ("hpa.targetAverageValue", "string"),
        ("llmd.modelID", "string"),
        ("llmd.modelName", "string"),
        ("llmd.namespace", "string"),
        ("va.accelerator", "string"),
        ("va.enabled", "bool"),
        ("va.sloTpot", "int"),
        ("va.sloTtft", "int"),
        ("vllmService.enabled", "bool"),
        ("vllmService.interval", "string"),
        // Unset by default (vLLM stays inside the cluster); the seeds' integer still works,
        // and opens the node port it names.
        ("vllmService.nodePort", "null"),
        ("vllmService.scheme", "string"),
        ("wva.enabled", "bool"),
        ("wva.experimentalHybridOptimization", "string"),
        ("wva.namespaceScoped", "bool"),
        ("wva.image.repository", "string"),
        ("wva.image.tag", "string"),
        ("wva.imagePullPolicy", "string"),
        ("wva.metrics.enabled", "bool"),
        ("wva.metrics.port", "int"),
        ("wva.metrics.secure", "bool"),
        ("wva.prometheus.baseURL", "string"),
        ("wva.prometheus.monitoringNamespace", "string"),
        ("wva.prometheus.tls.caCertPath", "string"),
        ("wva.prometheus.tls.insecureSkipVerify", "bool"),
        ("wva.reconcileInterval", "string"),
        ("wva.scaleToZero", "bool"),
        // Named by the issue that asked for this chart.
        ("wva.controllerInstance", "string"),
        ("wva.capacityScaling.default", "object"),
        ("wva.capacityScaling.overrides", "object"),
        ("wva.prometheus.caCert", "string"),
    ];
    let values = values_yaml();
    for (key, kind) in known {
        let v = lookup(&values, key).unwrap_or_else(|| panic!("values.yaml lacks {key}"));
        assert_eq!(type_name(v), kind, "{key}");
    }
    // `wva.enabled=false` in mode all leaves only the model's resources.
    let r = helm("helm install m ./workload-variant-autoscaler -n ns --set wva.enabled=false");
    assert_eq!(
        r.inventory(),
        model_objects("llm-d-autoscaler", DEFAULT_MODEL)
    );
    // `va.enabled`, `hpa.enabled` and `vllmService.enabled` switch their objects off.
    let r = helm(
        "helm install m ./workload-variant-autoscaler -n ns --set installMode=model-resources-only \
           --set va.enabled=false --set hpa.enabled=false --set vllmService.enabled=false",
    );
    assert!(r.objects.is_empty(), "{:?}", r.inventory());
    // `wva.metrics.enabled=false`: no Service or ServiceMonitor for the controller.
    let r = helm(&format!(
        "helm install m ./workload-variant-autoscaler -n {CONTROLLER_NS} --set installMode=controller-only --set wva.metrics.enabled=false"
    ));
    assert!(r.all("ServiceMonitor").is_empty() && r.all("Service").is_empty());
    // The merged values are what Helm reports.
    assert_eq!(r.values["installMode"], "controller-only");
}

// ---- The README's values table, generated from values.yaml ------------------------------------

fn values_yaml_text() -> String {
    std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml")
}

fn values_yaml() -> Value {
    serde_yaml::from_str(&values_yaml_text()).expect("values.yaml parses")
}

fn lookup<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// The documented keys of values.yaml, in file order: a key preceded by a `# --` comment (which
/// may go on over further `#` lines), with that description.
fn documented_keys(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut doc: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(rest) = trimmed.strip_prefix("# --") {
            doc = Some(rest.trim().to_string());
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('#') {
            if let Some(d) = doc.as_mut() {
                d.push(' ');
                d.push_str(rest.trim());
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('-') {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.trim().to_string()));
        if let Some(d) = doc.take() {
            let path = stack
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>()
                .join(".");
            out.push((path, d));
        }
    }
    out
}

/// Every leaf of `v` (scalars, lists, empty maps) by dotted path.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn values_table() -> String {
    let values = values_yaml();
    let documented = documented_keys(&values_yaml_text());
    let mut all = Vec::new();
    leaves(&values, "", &mut all);
    for leaf in &all {
        assert!(
            documented
                .iter()
                .any(|(k, _)| leaf == k || leaf.starts_with(&format!("{k}."))),
            "values.yaml: {leaf} has no `# --` description (nor has a key above it)"
        );
    }
    let mut table = String::from("| Key | Type | Default | Description |\n|---|---|---|---|\n");
    for (key, description) in documented {
        let v = lookup(&values, &key).unwrap_or_else(|| panic!("documented {key} has no value"));
        let default = serde_json::to_string(v).expect("json");
        table.push_str(&format!(
            "| `{key}` | {} | `{}` | {} |\n",
            type_name(v),
            default.replace('|', "\\|"),
            description.replace('|', "\\|")
        ));
    }
    table
}

/// The chart README carries the table generated from values.yaml; regenerate it with
/// `WVA_BLESS=1 cargo test --test chart readme`.
#[test]
fn the_chart_readme_lists_every_value() {
    let path = chart_dir().join("README.md");
    let text = std::fs::read_to_string(&path).expect("chart README.md");
    let (start, end) = ("<!-- values:start -->\n", "<!-- values:end -->");
    let a = text.find(start).expect("README has <!-- values:start -->") + start.len();
    let b = text.find(end).expect("README has <!-- values:end -->");
    let table = values_table();
    if text[a..b] != table {
        assert!(
            std::env::var_os("WVA_BLESS").is_some(),
            "charts/workload-variant-autoscaler/README.md's values table drifted from values.yaml; run `WVA_BLESS=1 cargo test --test chart readme`"
        );
        let mut updated = text.clone();
        updated.replace_range(a..b, &table);
        std::fs::write(&path, updated).expect("README written");
    }
}

/// Against a real API server (`cargo test --test chart -- --ignored`, KUBECONFIG set, rights to
/// create namespaces and CRDs): the CRD is applied, then every object of an `all` release is
/// applied with server-side dry run, so the API server's own schema validation (and the CRD's)
/// judges it. Kinds whose API the cluster lacks (ServiceMonitor without the Prometheus
/// Operator, ScaledObject without KEDA) are reported and skipped. The two namespaces are
/// created and deleted.
#[tokio::test]
#[ignore = "needs a real cluster: KUBECONFIG"]
async fn a_real_api_server_accepts_every_rendered_object() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
    use kube::discovery::{Discovery, Scope};
    use kube::runtime::wait::{await_condition, conditions};

    wva::tls::install_default_provider();
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let suffix = std::process::id();
    let (controller_ns, model_ns) = (format!("wva-chart-{suffix}"), format!("wva-model-{suffix}"));

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("crds/llmd.ai_variantautoscalings.yaml"))
            .expect("crd"),
    )
    .expect("crd parses");
    crds.patch(
        "variantautoscalings.llmd.ai",
        &PatchParams::apply("wva-chart-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        await_condition(
            crds,
            "variantautoscalings.llmd.ai",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .expect("CRD watch");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [&controller_ns, &model_ns] {
        let object: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        namespaces
            .patch(
                ns,
                &PatchParams::apply("wva-chart-test"),
                &Patch::Apply(&object),
            )
            .await
            .expect("namespace created");
    }

    let release = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {controller_ns} --set llmd.namespace={model_ns}"
    ));
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let mut refused = Vec::new();
    let mut skipped = Vec::new();
    for object in &release.objects {
        let (group, version) = match object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .split_once('/')
        {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                object["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Some((resource, caps)) =
            discovery.resolve_gvk(&GroupVersionKind::gvk(&group, &version, &kind))
        else {
            skipped.push(format!("{kind} {name}"));
            continue;
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        if let Err(e) = api
            .patch(
                &name,
                &PatchParams::apply("wva-chart-test").dry_run(),
                &Patch::Apply(object),
            )
            .await
        {
            refused.push(format!("{kind} {name}: {e}"));
        }
    }
    for ns in [&controller_ns, &model_ns] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
    eprintln!("not served by this cluster, skipped: {skipped:?}");
    assert!(refused.is_empty(), "the API server refused: {refused:#?}");
}

/// Every `wva_*` or `inferno_*` series a PromQL text refers to, without histogram suffixes.
fn series_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && (rest.starts_with("wva_") || rest.starts_with("inferno_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..len];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(base.to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

/// What the controller can expose, under either prefix.
fn exposed_series() -> BTreeSet<String> {
    let ops = wva::controller::ops::Ops::new(15.0).expect("health series");
    let mut names: BTreeSet<String> = ops.series_names().into_iter().collect();
    for prefix in ["inferno", "wva"] {
        let publisher =
            wva_actors::publisher::Publisher::new(&wva_actors::publisher::PublisherConfig {
                prefix: prefix.into(),
                controller_instance: None,
            })
            .expect("rendered");
        names.extend(publisher.series_names());
    }
    names
}

#[test]
fn the_optional_alerts_and_dashboard_use_only_series_the_controller_exposes() {
    let off = helm(&format!(
        "helm install workload-variant-autoscaler ./workload-variant-autoscaler -n {CONTROLLER_NS}"
    ));
    assert!(
        !off.inventory()
            .iter()
            .any(|(kind, _, name)| kind == "PrometheusRule" || name.ends_with("-dashboard")),
        "both are off by default"
    );
    let exposed = exposed_series();
    for prefix in ["inferno", "wva"] {
        let r = helm(&format!(
            "helm install workload-variant-autoscaler ./workload-variant-autoscaler -n {CONTROLLER_NS} \
             --set wva.metricsPrefix={prefix} \
             --set wva.monitoring.prometheusRule.enabled=true --set wva.monitoring.prometheusRule.labels.release=kube-prometheus-stack \
             --set wva.monitoring.grafanaDashboard.enabled=true --set wva.monitoring.grafanaDashboard.namespace=monitoring"
        ));
        let rule = r.get(
            "PrometheusRule",
            "workload-variant-autoscaler-controller-manager-alerts",
        );
        assert_eq!(
            rule["metadata"]["labels"]["release"],
            "kube-prometheus-stack"
        );
        let rules = rule["spec"]["groups"][0]["rules"]
            .as_array()
            .expect("rendered");
        let alerts: Vec<&str> = rules
            .iter()
            .map(|r| r["alert"].as_str().expect("rendered"))
            .collect();
        assert_eq!(
            alerts,
            [
                "WVAControlLoopStalled",
                "WVAMetricsCollectionFailing",
                "WVASafetyNetActiveTooLong",
                "WVAMetricsMissing",
                "WVAScalingThrash",
                "WVAStatusWritesFailing",
                "WVADecisionLogWritesFailing",
                "WVATaskRestarting",
                "WVAModelDecisionFailing"
            ]
        );
        let mut used = BTreeSet::new();
        for rule in rules {
            let expr = rule["expr"].as_str().expect("rendered");
            assert!(
                expr.contains(
                    "job=\"workload-variant-autoscaler-controller-manager-metrics-service\""
                ),
                "{expr}"
            );
            used.extend(series_in(expr));
        }
        let dashboard: ConfigMap = r.typed(
            "ConfigMap",
            "workload-variant-autoscaler-controller-manager-dashboard",
        );
        assert_eq!(dashboard.metadata.namespace.as_deref(), Some("monitoring"));
        assert_eq!(
            dashboard.metadata.labels.expect("rendered")["grafana_dashboard"],
            "1"
        );
        let json: Value = serde_json::from_str(
            &dashboard.data.expect("rendered")["workload-variant-autoscaler.json"],
        )
        .expect("the dashboard is JSON");
        for panel in json["panels"].as_array().expect("rendered") {
            for target in panel["targets"].as_array().expect("rendered") {
                used.extend(series_in(target["expr"].as_str().expect("rendered")));
            }
        }
        let wrong_prefix = if prefix == "inferno" {
            "wva_desired"
        } else {
            "inferno_"
        };
        assert!(
            !used.iter().any(|u| u.starts_with(wrong_prefix)),
            "{prefix}: {used:?}"
        );
        let unknown: Vec<&String> = used.iter().filter(|u| !exposed.contains(*u)).collect();
        assert!(unknown.is_empty(), "{prefix}: not exposed: {unknown:?}");
        assert!(used.len() >= 15, "{used:?}");
    }
}

/// The seed guides' kubectl lines that can run offline, answered from rendered objects the way
/// kubectl would find them: `get deployment NAME -n NS -o yaml | grep X`, `logs -n NS -l SEL`,
/// `logs -n NS deployment/NAME` and `auth can-i VERB RESOURCE --as=system:serviceaccount:..`.
/// An object kubectl would not find is an error naming it.
fn kubectl(objects: &[Value], line: &str) -> Result<String, String> {
    let (command, grep) = match line.split_once(" | grep ") {
        Some((c, g)) => (c, Some(g.trim_matches('"'))),
        None => (line, None),
    };
    let words: Vec<&str> = command.split_whitespace().collect();
    let flag = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1).copied())
    };
    let namespace = flag("-n").unwrap_or("default");
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"] == name
                    && o["metadata"]["namespace"] == namespace
            })
            .ok_or_else(|| format!("{kind} {name:?} not found in namespace {namespace}"))
    };
    let pod_labels = |o: &Value| o["spec"]["template"]["metadata"]["labels"].clone();
    match words.get(1).copied() {
        Some("get") if words.get(2) == Some(&"deployment") => {
            let name = words[3..]
                .iter()
                .find(|w| !w.starts_with('-') && **w != namespace && **w != "yaml")
                .ok_or("no name")?;
            let yaml =
                serde_yaml::to_string(find("Deployment", name)?).map_err(|e| e.to_string())?;
            let lines: Vec<&str> = yaml
                .lines()
                .filter(|l| grep.is_none_or(|g| l.contains(g)))
                .collect();
            Ok(lines.join("\n"))
        }
        Some("logs") => {
            if let Some(selector) = flag("-l") {
                let (key, value) = selector.split_once('=').ok_or("selector")?;
                let workloads = objects.iter().filter(|o| {
                    (o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
                        && o["metadata"]["namespace"] == namespace
                        && pod_labels(o)[key] == value
                });
                return match workloads.count() {
                    0 => Err(format!("no pods match {selector} in namespace {namespace}")),
                    _ => Ok("logs".into()),
                };
            }
            let target = words
                .iter()
                .find_map(|w| w.strip_prefix("deployment/"))
                .ok_or("no deployment/NAME")?;
            find("Deployment", target).map(|_| "logs".into())
        }
        Some("auth") if words.get(2) == Some(&"can-i") => {
            let (verb, resource) = (words[3], words[4]);
            let account = words
                .iter()
                .find_map(|w| w.strip_prefix("--as=system:serviceaccount:"))
                .ok_or("no --as")?;
            let (sa_ns, sa) = account.split_once(':').ok_or("account")?;
            let bound = |b: &Value| {
                b["subjects"].as_array().into_iter().flatten().any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == sa_ns
                })
            };
            let grants = |role: &Value| {
                role["rules"].as_array().into_iter().flatten().any(|r| {
                    let has = |field: &str, v: &str| {
                        r[field]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|x| x == v || x == "*")
                    };
                    has("resources", resource) && has("verbs", verb)
                })
            };
            let allowed = objects.iter().any(|b| {
                let role_kind = b["roleRef"]["kind"].as_str().unwrap_or_default();
                let applies = b["kind"] == "ClusterRoleBinding"
                    || (b["kind"] == "RoleBinding" && b["metadata"]["namespace"] == namespace);
                applies
                    && bound(b)
                    && objects.iter().any(|role| {
                        role["kind"] == role_kind
                            && role["metadata"]["name"] == b["roleRef"]["name"]
                            && (role_kind == "ClusterRole"
                                || role["metadata"]["namespace"] == namespace)
                            && grants(role)
                    })
            });
            Ok(if allowed { "yes" } else { "no" }.into())
        }
        _ => Err(format!("not a command this test runs offline: {line}")),
    }
}

/// CONTRACT section 18: the install, verification and troubleshooting lines of the seed guides
/// work as written against what the chart renders.
#[test]
fn the_seed_guides_command_lines_work_as_written() {
    // The multi-model guide: a namespace-scoped controller first, then the cluster-wide one its
    // troubleshooting section reinstalls, and a model release.
    let scoped = helm(
        "helm install wva-controller ./charts/workload-variant-autoscaler \
  -n workload-variant-autoscaler-system \
  --create-namespace \
  --set installMode=controller-only \
  --set wva.namespaceScoped=true \
  --set wva.watchNamespace=llm-d-model-a \
  --set wva.prometheus.baseURL=\"https://prometheus:9090\"",
    );
    let check = "kubectl get deployment -n workload-variant-autoscaler-system workload-variant-autoscaler-controller-manager -o yaml | grep watch-namespace";
    let found = kubectl(&scoped.objects, check).expect(check);
    assert!(found.contains("--watch-namespace=llm-d-model-a"), "{found}");
    for line in [
        "kubectl logs -n workload-variant-autoscaler-system -l app.kubernetes.io/name=workload-variant-autoscaler",
        "kubectl logs -n workload-variant-autoscaler-system -l app.kubernetes.io/name=workload-variant-autoscaler | grep \"Starting workers\"",
        "kubectl logs -n workload-variant-autoscaler-system deployment/workload-variant-autoscaler-controller-manager",
        "kubectl logs -n workload-variant-autoscaler-system deployment/workload-variant-autoscaler-controller-manager | grep -i prometheus",
    ] {
        kubectl(&scoped.objects, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let can_i = "kubectl auth can-i get variantautoscalings --as=system:serviceaccount:workload-variant-autoscaler-system:workload-variant-autoscaler-controller-manager -n llm-d-model-a";
    assert_eq!(kubectl(&scoped.objects, can_i).as_deref(), Ok("yes"));
    // Scoped to model a, the controller may not read model b's VAs.
    assert_eq!(
        kubectl(&scoped.objects, &can_i.replace("model-a", "model-b")).as_deref(),
        Ok("no")
    );

    let cluster_wide = helm(
        "helm install wva-controller ./charts/workload-variant-autoscaler \
  -n workload-variant-autoscaler-system \
  --create-namespace \
  --set installMode=controller-only \
  --set wva.namespaceScoped=false \
  --set wva.prometheus.baseURL=\"https://prometheus:9090\"",
    );
    // (The guide's `<your-prometheus-url>` filled in.) "If --watch-namespace is present, reinstall": after the reinstall it is not.
    assert_eq!(kubectl(&cluster_wide.objects, check).as_deref(), Ok(""));
    assert_eq!(
        kubectl(&cluster_wide.objects, &can_i.replace("model-a", "model-b")).as_deref(),
        Ok("yes")
    );
}

/// The optional guards: a NetworkPolicy that admits each port to who needs it, and a PDB.
#[test]
fn the_optional_network_policy_and_disruption_budget() {
    let plain = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS}"
    ));
    assert!(plain.all("NetworkPolicy").is_empty() && plain.all("PodDisruptionBudget").is_empty());
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.networkPolicy.enabled=true \
           --set wva.podDisruptionBudget.enabled=true --set wva.externalScaler.enabled=true"
    ));
    let policy: k8s_openapi::api::networking::v1::NetworkPolicy =
        r.typed("NetworkPolicy", CONTROLLER);
    let spec = policy.spec.expect("spec");
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    let ingress = spec.ingress.expect("ingress");
    let port_of = |i: usize| match &ingress[i].ports.as_ref().expect("ports")[0].port {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => *p,
        other => panic!("{other:?}"),
    };
    let from_of = |i: usize| -> Vec<String> {
        ingress[i].from.as_ref().expect("from")[0]
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_expressions.as_ref())
            .expect("expressions")[0]
            .values
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(port_of(0), 8081);
    assert!(
        ingress[0].from.is_none(),
        "probes from anywhere (the kubelet)"
    );
    assert_eq!(port_of(1), 8443);
    assert_eq!(from_of(1), ["openshift-user-workload-monitoring"]);
    assert_eq!(port_of(2), 9090);
    assert_eq!(from_of(2), ["keda"]);
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
        r.typed("PodDisruptionBudget", CONTROLLER);
    assert_eq!(
        pdb.spec.expect("spec").max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
}

/// The certificates in a PEM text.
fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certificates")
}

/// `leaf` verifies for `server_name` against `ca` alone, as the scraper checks it.
fn assert_verified_for(
    leaf: &rustls::pki_types::CertificateDer<'static>,
    ca: &rustls::pki_types::CertificateDer<'static>,
    server_name: &str,
) {
    wva::tls::install_default_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("the CA is a usable root");
    let verifier = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .expect("verifier");
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("name");
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
        .unwrap_or_else(|e| panic!("the certificate does not verify for {server_name}: {e}"));
}

// ---- The install paths of the docs, rendered as written -----------------------------------------

/// The `helm install|upgrade` command lines of each `##` section of a guide, continuation lines
/// joined.
fn documented_helm_commands(guide: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(guide))
        .unwrap_or_else(|e| panic!("{guide}: {e}"));
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let (mut in_code, mut pending) = (false, String::new());
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            sections.push((title.to_string(), Vec::new()));
            continue;
        }
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                let command = std::mem::take(&mut pending);
                if (command.starts_with("helm upgrade") || command.starts_with("helm install"))
                    && let Some((_, commands)) = sections.last_mut()
                {
                    commands.push(command);
                }
            }
        }
    }
    sections.retain(|(_, c)| !c.is_empty());
    sections
}

/// `scheme://host:port` of a URL (the default port of the scheme when none is given).
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains(':') {
        format!("{scheme}://{authority}")
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{scheme}://{authority}:{port}")
    }
}

/// Issue 18: every install path of the guides works as written, in order: each of our `helm`
/// commands renders and lints; the releases of one path never render the same object twice
/// (several models, several variants of one model); the vLLM Service stays inside the cluster;
/// and prometheus-adapter, given the documented values files, reads the same Prometheus as the
/// controller, with the CA and token OpenShift's Thanos Querier asks for.
#[test]
fn every_documented_install_path_renders_without_collisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("prometheus-ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfake\n-----END CERTIFICATE-----\n",
    )
    .expect("ca");
    let env = [("WVA_NS", CONTROLLER_NS)];
    let mut paths = 0;
    for guide in ["docs/install.md", "docs/quickstart.md"] {
        for (section, commands) in documented_helm_commands(guide) {
            let mut seen: BTreeMap<(String, String, String), String> = BTreeMap::new();
            let mut controller_prometheus = None;
            let mut adapter_values: Option<Value> = None;
            for command in &commands {
                let command = command.replace("/tmp/prometheus-ca.crt", &ca.to_string_lossy());
                if command.contains("prometheus-community/prometheus-adapter") {
                    let mut merged = json!({});
                    let words: Vec<&str> = command.split_whitespace().collect();
                    for pair in words.windows(2).filter(|w| w[0] == "-f") {
                        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(pair[1]);
                        let text = std::fs::read_to_string(&file)
                            .unwrap_or_else(|e| panic!("{guide} / {section}: {}: {e}", pair[1]));
                        let values: Value = serde_yaml::from_str(&text).expect("adapter values");
                        json_merge(&mut merged, values);
                    }
                    adapter_values = Some(merged);
                    continue;
                }
                if !command.contains("/workload-variant-autoscaler") {
                    // Another project's chart (the monitoring stack itself).
                    continue;
                }
                let r = helm_env(&command, &env);
                let release = command.split_whitespace().nth(3).unwrap_or_default();
                for key in r.inventory() {
                    if let Some(other) = seen.insert(key.clone(), release.to_string()) {
                        panic!(
                            "{guide} / {section}: {key:?} rendered by both {other} and {release}"
                        );
                    }
                }
                for svc in r.all("Service") {
                    if svc["metadata"]["labels"]["app.kubernetes.io/component"] == "vllm-metrics" {
                        assert_eq!(svc["spec"]["type"], "ClusterIP", "{guide} / {section}");
                    }
                }
                if include_controller(&r) {
                    controller_prometheus = Some(
                        r.values["wva"]["prometheus"]["baseURL"]
                            .as_str()
                            .expect("baseURL")
                            .to_string(),
                    );
                }
            }
            if let (Some(base), Some(adapter)) = (&controller_prometheus, &adapter_values) {
                let url = adapter["prometheus"]["url"].as_str().expect("adapter url");
                let port = adapter["prometheus"]["port"]
                    .as_u64()
                    .expect("adapter port");
                // `svc` and `svc.cluster.local` name the same Service.
                let same = |u: &str| origin(u).replace(".svc.cluster.local", ".svc");
                assert_eq!(
                    same(base),
                    same(&format!("{url}:{port}")),
                    "{guide} / {section}: the adapter and the controller read different Prometheus servers"
                );
                if url.starts_with("https://thanos-querier.openshift-monitoring") {
                    let args = adapter["extraArguments"].to_string();
                    assert!(
                        args.contains("--prometheus-ca-file=")
                            && args.contains("--prometheus-token-file="),
                        "{guide} / {section}: Thanos Querier needs a CA and a token: {args}"
                    );
                }
                assert!(
                    adapter["rules"]["external"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty()),
                    "{guide} / {section}: the adapter has no external rule"
                );
            }
            paths += 1;
        }
    }
    assert!(paths >= 6, "only {paths} install paths found in the guides");
}

fn include_controller(r: &Release) -> bool {
    r.all("Deployment")
        .iter()
        .chain(r.all("StatefulSet").iter())
        .any(|d| d["metadata"]["name"] == CONTROLLER)
}

/// Helm's merge of values files: maps key by key, anything else replaced.
fn json_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Issue 18: the install notes say what a newcomer would otherwise learn from a failure: that no
/// image is published (while the default name is left), and that an inter-token objective below
/// what the hardware does is one the model will miss.
#[test]
fn the_install_notes_warn_about_the_image_and_an_unreachable_objective() {
    let default = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS}"
    ));
    assert!(
        default
            .notes
            .contains("IMAGE: workload-variant-autoscaler:0.1.0 is not published"),
        "{}",
        default.notes
    );
    assert!(
        default.notes.contains("Controller: Deployment"),
        "{}",
        default.notes
    );
    assert!(
        default.notes.contains("logs deployment/"),
        "{}",
        default.notes
    );
    assert!(
        !default.notes.contains("WARNING: va.sloTpot"),
        "25 ms is reachable"
    );
    assert_eq!(default.values["va"]["sloTpot"], 25);

    let pushed = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} \
           --set wva.image.repository=registry.example.com/wva/workload-variant-autoscaler --set va.sloTpot=10"
    ));
    assert!(!pushed.notes.contains("IMAGE:"), "{}", pushed.notes);
    assert!(
        pushed.notes.contains("WARNING: va.sloTpot=10 ms"),
        "{}",
        pushed.notes
    );
    let sts = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.workload=StatefulSet"
    ));
    assert!(sts.notes.contains("logs statefulset/"), "{}", sts.notes);
}

/// The quickstart's emulated model fits what the quickstart's release looks for: the decode
/// Deployment's name and labels, the image the chart defaults to, arguments `wva emulate`
/// accepts, and a load generator aimed at the Service the release creates.
#[test]
fn the_quickstart_manifests_fit_the_quickstart_release() {
    #[derive(clap::Parser)]
    struct Emulate {
        #[command(flatten)]
        args: wva::cli::emulate::EmulateArgs,
    }
    let read = |name: &str| -> Value {
        let path = chart_dir().join("samples/quickstart").join(name);
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("YAML")
    };
    let (_, commands) = documented_helm_commands("docs/quickstart.md")
        .into_iter()
        .find(|(_, c)| {
            c.iter()
                .any(|c| c.contains("./charts/workload-variant-autoscaler"))
        })
        .expect("the quickstart's release");
    let release = helm(
        commands
            .iter()
            .find(|c| c.contains("./charts/workload-variant-autoscaler"))
            .expect("command"),
    );
    let ns = release.values["llmd"]["namespace"].as_str().expect("ns");
    let model = release.values["llmd"]["modelName"].as_str().expect("model");

    let emulator = read("vllm-emulator.yaml");
    let deployment: Deployment = serde_json::from_value(emulator.clone()).expect("a Deployment");
    assert_eq!(
        deployment.metadata.name.as_deref(),
        Some(format!("{model}-decode").as_str())
    );
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(ns));
    let template = deployment.spec.expect("spec").template;
    let labels = template.metadata.expect("meta").labels.expect("labels");
    assert_eq!(
        labels.get("llm-d.ai/model").map(String::as_str),
        Some(model)
    );
    let container = &template.spec.expect("pod").containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(format!("workload-variant-autoscaler:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let args = container.args.clone().expect("args");
    assert_eq!(args[0], "emulate");
    let parsed = <Emulate as clap::Parser>::try_parse_from(
        std::iter::once("wva".to_string()).chain(args.into_iter().skip(1)),
    );
    assert!(
        parsed.is_ok(),
        "wva emulate refuses the arguments: {:?}",
        parsed.err()
    );
    // The chart's vLLM Service selects these pods, on the port they serve.
    let svc: Service = release.typed("Service", &format!("{model}-vllm"));
    let spec = svc.spec.expect("spec");
    assert_eq!(
        spec.selector
            .expect("selector")
            .get("llm-d.ai/model")
            .map(String::as_str),
        Some(model)
    );
    let port = spec.ports.expect("ports")[0].port;
    assert_eq!(port, 8200);

    let load = read("load.yaml");
    let env = load["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(
        env.contains(&format!(
            "http://{model}-vllm.{ns}.svc:{port}/v1/completions"
        )),
        "{env}"
    );
}

/// Issue 17: `wva.shards` spreads the models over shards held through Leases: the controller
/// gets `--shards`, its Role the Lease access sharding needs (and no more without it), and a
/// chart without leader election refuses it, naming the values.
#[test]
fn shards_pass_the_flag_and_the_lease_access() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.shards=4 \
           --set wva.workload=StatefulSet --set wva.replicaCount=2"
    ));
    let args = r.controller_pod().spec.expect("pod").containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(args.contains(&"--shards=4".to_string()), "{args:?}");
    let own: Role = r.typed("Role", "workload-variant-autoscaler-manager-own");
    let mut expected = rules_of(rbac::OWN_NAMESPACE);
    expected.extend(rules_of(rbac::SHARDED));
    assert_eq!(rendered_rules(own.rules), expected);

    let unsharded = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS}"
    ));
    let args = unsharded.controller_pod().spec.expect("pod").containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(!args.iter().any(|a| a.starts_with("--shards")), "{args:?}");

    let error = helm_error(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.shards=2 \
           --set wva.leaderElection.enabled=false"
    ));
    assert!(
        error.contains("wva.shards: 2 shards are held through Leases")
            && error.contains("wva.leaderElection.enabled"),
        "{error}"
    );

    // A replica's external scaler knows only its own shards: refused, naming both values.
    let error = helm_error(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.shards=4 \
           --set wva.workload=StatefulSet --set wva.replicaCount=2 \
           --set wva.externalScaler.enabled=true"
    ));
    assert!(
        error.contains("wva.externalScaler.enabled") && error.contains("wva.shards: 4"),
        "{error}"
    );
}

/// A shadow release: the controller runs with `--shadow`, installs nothing a scaler reads, and
/// refuses what would let a scaler read it.
#[test]
fn a_shadow_release_runs_the_controller_as_a_shadow_and_nothing_a_scaler_reads() {
    let r = helm(
        "helm install wva-shadow ./workload-variant-autoscaler -n wva-shadow --set installMode=controller-only --set wva.shadow=true --set wva.image.tag=next",
    );
    let pod = r.controller_pod().spec.expect("pod");
    let manager = &pod.containers[0];
    assert!(
        manager.args.iter().flatten().any(|a| a == "--shadow"),
        "{:?}",
        manager.args
    );
    assert!(
        manager
            .image
            .as_deref()
            .is_some_and(|i| i.ends_with(":next"))
    );
    for kind in ["HorizontalPodAutoscaler", "ScaledObject"] {
        assert!(
            r.inventory().iter().all(|(k, _, _)| k != kind),
            "a shadow release renders no {kind}"
        );
    }
    // Its RBAC names the Lease it takes (its own), not the main instance's.
    let lease_names: Vec<String> = r
        .objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .flat_map(|o| o["rules"].as_array().cloned().unwrap_or_default())
        .filter(|rule| rule["resources"] == json!(["leases"]))
        .flat_map(|rule| {
            rule["resourceNames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    assert_eq!(lease_names, ["workload-variant-autoscaler-leader-shadow"]);
    let err = helm_error(
        "helm install wva-shadow ./workload-variant-autoscaler -n wva-shadow --set wva.shadow=true",
    );
    assert!(err.contains("set installMode: controller-only"), "{err}");
    let err = helm_error(
        "helm install wva-shadow ./workload-variant-autoscaler -n wva-shadow --set installMode=controller-only --set wva.shadow=true --set wva.externalScaler.enabled=true",
    );
    assert!(err.contains("wva.externalScaler.enabled false"), "{err}");
}

/// CONTRACT 20: with the accelerator pool on, the controller may read Nodes and every
/// namespace's pods (a ClusterRole even when namespace-scoped), is told to through its main
/// ConfigMap, and its `accelerator-pool` ConfigMap parses as the controller reads it.
#[test]
fn an_accelerator_pool_release_reads_the_nodes_with_its_quotas() {
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS} --set wva.namespaceScoped=true --set llmd.namespace=models --set wva.acceleratorPool.enabled=true --set wva.acceleratorPool.quotas.H100=16 --set wva.acceleratorPool.namespaceQuotas.models.H100=8"
    ));
    let cluster = format!("workload-variant-autoscaler-{CONTROLLER_NS}");
    let pool: ClusterRole = r.typed("ClusterRole", &format!("{cluster}-manager-pool"));
    assert_eq!(rendered_rules(pool.rules), rules_of(rbac::POOL));
    let b = r.get("ClusterRoleBinding", &format!("{cluster}-manager-pool"));
    assert_eq!(b["subjects"][0]["name"], CONTROLLER);
    assert_eq!(
        r.config_map_data("workload-variant-autoscaler-variantautoscaling-config")["WVA_ACCELERATOR_POOL"],
        "true"
    );
    let config = wva::config::PoolConfig::from_data(Some(&r.config_map_data("accelerator-pool")));
    assert_eq!(config.issues, vec![]);
    assert_eq!(config.resource_name, "nvidia.com/gpu");
    assert_eq!(config.quotas.get("H100"), Some(&16));
    assert_eq!(
        config
            .namespace_quotas
            .get(&("models".to_string(), "H100".to_string())),
        Some(&8)
    );
    // Off by default: no access to Nodes, and the setting says so.
    let r = helm(&format!(
        "helm install wva ./workload-variant-autoscaler -n {CONTROLLER_NS}"
    ));
    assert!(
        r.inventory()
            .iter()
            .all(|(_, _, name)| !name.ends_with("manager-pool")),
        "no pool RBAC unless enabled"
    );
    assert_eq!(
        r.config_map_data("workload-variant-autoscaler-variantautoscaling-config")["WVA_ACCELERATOR_POOL"],
        "false"
    );
}
