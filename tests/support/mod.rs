//! Real parts for the integration tests: `wva emulate` serving emulated vLLM servers, and a real
//! Prometheus (the Debian package, which `.ci/run` installs) started on 127.0.0.1 with its own
//! configuration, scraping them. Everything is killed when dropped.
#![allow(dead_code, clippy::unwrap_used)]

pub mod apiserver;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `wva emulate`.
#[derive(Debug)]
pub struct Emulator {
    pub process: Guard,
    /// `host:port` of each server.
    pub addresses: Vec<String>,
    pub model: String,
    /// `host:port` of the emulated EPP, when started with `--epp`.
    pub epp: Option<String>,
}

impl Emulator {
    /// Starts `wva emulate` with these arguments (plus a bounded duration) and waits for its
    /// endpoints line.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wva"))
            .arg("emulate")
            .args(["--duration", "10m"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wva emulate");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the endpoints line");
        let process = Guard(child);
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("endpoints line {line:?}: {e}"));
        let addresses = v["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .map(|s| s["address"].as_str().expect("address").to_string())
            .collect();
        Self {
            process,
            addresses,
            model: v["model"].as_str().expect("model").to_string(),
            epp: v["epp"]["address"].as_str().map(str::to_string),
        }
    }
}

/// An HTTP request to `http://{address}{path}` (a JSON body when not empty); returns the
/// status and the body. Bounded by `timeout`.
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> (u16, String) {
    wva::tls::install_default_provider();
    // The blocking client runs its own runtime: keep it off any async test's runtime.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let client = reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .build()
                    .expect("http client");
                let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                let mut request = client.request(method, format!("http://{address}{path}"));
                if !body.is_empty() {
                    request = request
                        .header("content-type", "application/json")
                        .body(body.to_string());
                }
                let response = request.send().expect("send");
                let status = response.status().as_u16();
                (status, response.text().expect("body"))
            })
            .join()
            .expect("request thread")
    })
}

/// A free 127.0.0.1 port (bound and released; the small race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One scrape target: address and the target labels Prometheus attaches (as the Kubernetes
/// service discovery would attach `namespace` and `pod`).
#[derive(Debug, Clone)]
pub struct Target {
    pub address: String,
    pub labels: Vec<(String, String)>,
}

impl Target {
    pub fn pod(address: &str, namespace: &str, pod: &str) -> Self {
        Self {
            address: address.to_string(),
            labels: vec![
                ("namespace".into(), namespace.into()),
                ("pod".into(), pod.into()),
            ],
        }
    }
}

/// A real Prometheus on 127.0.0.1.
#[derive(Debug)]
pub struct Prometheus {
    pub process: Guard,
    pub address: String,
    pub dir: tempfile::TempDir,
}

fn prometheus_binary() -> PathBuf {
    for candidate in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("prometheus is not installed: `apt-get install prometheus` (.ci/run does this)");
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second. `web_config` is the content of a
    /// `--web.config.file` (TLS, client certificates), if any; `scheme` is how to reach it.
    pub fn start(targets: &[Target], web_config: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vllm\n    static_configs:\n",
        );
        for t in targets {
            config.push_str(&format!(
                "      - targets: [\"{}\"]\n        labels:\n",
                t.address
            ));
            for (k, v) in &t.labels {
                config.push_str(&format!("          {k}: \"{v}\"\n"));
            }
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut command = Command::new(prometheus_binary());
        command
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(web) = web_config {
            std::fs::write(dir.path().join("web.yml"), web).expect("write web config");
            command.arg(format!(
                "--web.config.file={}",
                dir.path().join("web.yml").display()
            ));
        }
        let process = Guard(command.spawn().expect("start prometheus"));
        let prometheus = Self {
            process,
            address,
            dir,
        };
        if web_config.is_none() {
            prometheus.wait_ready(Duration::from_secs(30));
        } else {
            wait_listening(&prometheus.address, Duration::from_secs(30));
        }
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if TcpStream::connect(&self.address).is_ok() {
                let (status, _) =
                    http(&self.address, "GET", "/-/ready", "", Duration::from_secs(2));
                if status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus on {} not ready after {limit:?}", self.address);
    }

    /// Runs an instant query and reads its samples as the controller does.
    pub fn samples(&self, expr: &str) -> Vec<wva::prometheus_api::Sample> {
        serde_json::from_value(serde_json::Value::Array(self.query(expr))).expect("samples")
    }

    /// Runs an instant query over plain HTTP; returns the `data.result` array.
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = http(&self.address, "GET", &path, "", Duration::from_secs(5));
        assert_eq!(status, 200, "query {expr}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `expr` until it returns at least `series` series, or panics after `limit`.
    pub fn wait_for(&self, expr: &str, series: usize, limit: Duration) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let result = self.query(expr);
            if result.len() >= series {
                return result;
            }
            assert!(
                start.elapsed() < limit,
                "{expr}: {} series after {limit:?}, wanted {series}",
                result.len()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn wait_listening(address: &str, limit: Duration) {
    let start = Instant::now();
    while TcpStream::connect(address).is_err() {
        assert!(
            start.elapsed() < limit,
            "{address} not listening after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A test certificate authority with a server and a client certificate, as PEM files in `dir`:
/// `ca.pem`, `server.pem`/`server-key.pem` (for `localhost`, `127.0.0.1` and
/// `prometheus.monitoring.svc`), `client.pem`/`client-key.pem`, and an unrelated `other-ca.pem`.
#[derive(Debug)]
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, cn);
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let issuer = ca("wva test CA");
        write("ca.pem", issuer.pem());
        write("other-ca.pem", ca("unrelated CA").pem());
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            params.distinguished_name.push(DnType::CommonName, stem);
            let cert = params.signed_by(&key, &issuer).unwrap();
            write(&format!("{stem}.pem"), cert.pem());
            write(&format!("{stem}-key.pem"), key.serialize_pem());
        };
        leaf(
            vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "prometheus.monitoring.svc".into(),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "client");
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A Prometheus `--web.config.file` serving TLS, asking for a client certificate when
    /// `mutual` is set.
    pub fn web_config(&self, mutual: bool) -> String {
        let mut text = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            self.path("server.pem").display(),
            self.path("server-key.pem").display()
        );
        if mutual {
            text.push_str(&format!(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
                self.path("ca.pem").display()
            ));
        }
        text
    }
}

/// The controller, against the fake API server, reading the real Prometheus at `url` (3 s
/// timeouts, one retry), with the rest of its settings from `args`; returns once its watches
/// have listed everything.
pub async fn controller_reading(
    api: &apiserver::FakeApi,
    url: &str,
    args: wva::config::settings::SettingsArgs,
) -> wva::controller::Running {
    use wva::config::settings::{PrometheusSettings, SettingsArgs};
    use wva::prometheus_api::{PrometheusClient, QueryPolicy};
    let settings = SettingsArgs {
        prometheus_base_url: Some(url.to_string()),
        prometheus_allow_http: Some(true),
        ..args
    }
    .resolve(None)
    .unwrap();
    let client = PrometheusClient::new(
        &PrometheusSettings {
            base_url: Some(url.to_string()),
            allow_http: true,
            ..Default::default()
        },
        QueryPolicy {
            timeout: Duration::from_secs(3),
            retries: 1,
            backoff: Duration::from_millis(50),
        },
    )
    .unwrap();
    let running = wva::controller::start(
        api.client(),
        wva::controller::ControllerOptions {
            settings,
            data_dir: None,
            metrics: wva::controller::prometheus_source(std::sync::Arc::new(client)),
            leader_election: None,
            shards: 1,
            instance: "test".into(),
            shadow: false,
        },
    )
    .await
    .unwrap();
    assert!(running.synced(Duration::from_secs(10)).await);
    running
}
