//! The Prometheus HTTP API client: instant queries over reqwest and rustls, with a bearer token
//! (fixed, or from a file re-read when it changes), a per-query timeout, and retries with
//! backoff for failures that may pass (unreachable, 5xx, 429), never for a bad query.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use std::collections::HashMap;

use backon::{ExponentialBuilder, Retryable};
use serde::Deserialize;

use crate::config::secret::Secret;
use crate::config::settings::PrometheusSettings;
use crate::tls::{ClientTls, client_config};

/// How queries are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryPolicy {
    /// Per attempt, connection included.
    pub timeout: Duration,
    /// Further attempts after the first, for failures that may pass.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for QueryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(250),
        }
    }
}

/// Why the client cannot be made from the settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("PROMETHEUS_BASE_URL (--prometheus-base-url): expected a URL, got nothing")]
    NoUrl,
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot build the Prometheus client: {0}")]
    Build(reqwest::Error),
}

/// Why a query gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// No HTTP answer: connection refused, TLS failure, timeout.
    #[error("Prometheus unreachable: {0}")]
    Unreachable(String),
    /// An HTTP error status.
    #[error("Prometheus answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// Prometheus answered, with `status: error` (a bad query, a timeout on its side).
    #[error("query failed ({error_type}): {error}")]
    Query { error_type: String, error: String },
    /// The answer was not what the API documents.
    #[error("unexpected answer from Prometheus: {0}")]
    Decode(String),
    /// The bearer token file could not be read.
    #[error("PROMETHEUS_TOKEN_PATH: {0}")]
    Token(String),
}

impl QueryError {
    /// A short label for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Http { .. } => "http",
            Self::Query { .. } => "query",
            Self::Decode(_) => "decode",
            Self::Token(_) => "token",
        }
    }

    /// Whether trying again may help.
    pub fn transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            Self::Query { error_type, .. } => {
                error_type == "timeout" || error_type == "unavailable"
            }
            Self::Decode(_) | Self::Token(_) => false,
        }
    }
}

#[derive(Debug)]
enum Token {
    None,
    Fixed(Secret),
    /// Re-read when its modification time or size changes (projected service-account tokens
    /// are rotated in place).
    File {
        path: PathBuf,
        cached: Mutex<Option<(SystemTime, u64, Secret)>>,
    },
}

impl Token {
    fn current(&self) -> Result<Option<Secret>, QueryError> {
        match self {
            Self::None => Ok(None),
            Self::Fixed(t) => Ok(Some(t.clone())),
            Self::File { path, cached } => {
                let meta = std::fs::metadata(path).map_err(|e| {
                    QueryError::Token(format!("cannot read {}: {e}", path.display()))
                })?;
                let stamp = (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                );
                let mut cache = cached.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((modified, len, token)) = cache.as_ref()
                    && (*modified, *len) == stamp
                {
                    return Ok(Some(token.clone()));
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    QueryError::Token(format!("cannot read {}: {e}", path.display()))
                })?;
                let token = Secret::new(text.trim());
                if token.is_empty() {
                    return Err(QueryError::Token(format!(
                        "expected a token in {}, found an empty file",
                        path.display()
                    )));
                }
                *cache = Some((stamp.0, stamp.1, token.clone()));
                Ok(Some(token))
            }
        }
    }
}

/// A client of one Prometheus. Cheap to share behind an `Arc`; the HTTP client is made once.
#[derive(Debug)]
pub struct PrometheusClient {
    http: reqwest::Client,
    query_url: String,
    token: Token,
    policy: QueryPolicy,
}

impl PrometheusClient {
    /// Builds the client from the resolved settings. Errors name the setting that is wrong.
    pub fn new(settings: &PrometheusSettings, policy: QueryPolicy) -> Result<Self, ClientError> {
        let base = settings.base_url.as_deref().ok_or(ClientError::NoUrl)?;
        let base = base.trim_end_matches('/');
        let mut builder = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .user_agent(concat!("wva/", env!("CARGO_PKG_VERSION")));
        if base.to_ascii_lowercase().starts_with("https://") {
            let tls = ClientTls {
                ca_cert_path: settings.ca_cert_path.as_deref(),
                client_cert: settings
                    .client_cert_path
                    .as_deref()
                    .zip(settings.client_key_path.as_deref()),
                server_name: settings.server_name.as_deref(),
                insecure_skip_verify: settings.insecure_skip_verify,
            };
            builder = builder.tls_backend_preconfigured(client_config(&tls)?);
        }
        let http = builder.build().map_err(ClientError::Build)?;
        let token = match (&settings.token_path, &settings.bearer_token) {
            (Some(path), _) => Token::File {
                path: path.clone(),
                cached: Mutex::new(None),
            },
            (None, Some(t)) => Token::Fixed(t.clone()),
            (None, None) => Token::None,
        };
        Ok(Self {
            http,
            query_url: format!("{base}/api/v1/query"),
            token,
            policy,
        })
    }

    /// Runs an instant query and returns its samples. Retries failures that may pass, with
    /// doubling backoff.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, QueryError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.backoff)
            .with_factor(2.0)
            .with_max_times(self.policy.retries as usize);
        (|| self.query_once(promql))
            .retry(backoff)
            .when(QueryError::transient)
            .notify(|e, wait| {
                tracing::debug!(error = %e, ?wait, "Prometheus query failed; retrying");
            })
            .await
    }

    async fn query_once(&self, promql: &str) -> Result<Vec<Sample>, QueryError> {
        let mut request = self.http.post(&self.query_url).form(&[("query", promql)]);
        if let Some(token) = self.token.current()? {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| QueryError::Unreachable(error_chain(e)))?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        // Read in chunks, so that an answer past the cap is refused without being held whole.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| QueryError::Unreachable(error_chain(e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        read_answer(status.as_u16(), &body)
    }
}

/// The largest answer read. The batched queries return one series per pod, about 100 bytes
/// each: this is room for hundreds of thousands of pods, and a bound on what a broken or
/// hostile Prometheus can make the controller hold.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Prometheus's own error text is kept up to this long (it reaches logs and conditions).
pub const MAX_ERROR_CHARS: usize = 512;

fn too_large() -> QueryError {
    QueryError::Decode(format!(
        "the answer is larger than {} MiB",
        MAX_ANSWER_BYTES / (1024 * 1024)
    ))
}

/// `text` cut to at most `max` characters, marked when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// One series of an instant vector: its labels and its `[time, "value"]` sample.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sample {
    pub metric: HashMap<String, String>,
    pub value: (f64, String),
}

impl Sample {
    /// A label's value, when present and not empty.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.metric
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The sample's number; NaN and ±Inf are no sample, never 0.
    pub fn number(&self) -> Option<f64> {
        self.value.1.parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

/// The body of an answer of `/api/v1/query`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<AnswerData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerData {
    result_type: String,
    result: serde_json::Value,
}

/// Reads an answer: the samples of a vector, or the error it names.
pub fn read_answer(status: u16, body: &[u8]) -> Result<Vec<Sample>, QueryError> {
    let parsed: Result<Answer, _> = serde_json::from_slice(body);
    // Prometheus answers 400/422/503 with a JSON error body: prefer its words.
    if let Ok(answer) = &parsed
        && answer.status == "error"
    {
        return Err(QueryError::Query {
            error_type: clip(
                answer.error_type.as_deref().unwrap_or("unknown"),
                MAX_ERROR_CHARS,
            ),
            error: clip(answer.error.as_deref().unwrap_or_default(), MAX_ERROR_CHARS),
        });
    }
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(body);
        return Err(QueryError::Http {
            status,
            body: text
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        });
    }
    let answer =
        parsed.map_err(|e| QueryError::Decode(format!("the body is not an answer: {e}")))?;
    let data = answer.data.ok_or_else(|| {
        QueryError::Decode("data: expected the query's result, got nothing".into())
    })?;
    if data.result_type != "vector" {
        return Err(QueryError::Decode(format!(
            "data.resultType: expected \"vector\", got {:?}",
            data.result_type
        )));
    }
    serde_json::from_value(data.result)
        .map_err(|e| QueryError::Decode(format!("data.result: expected a list of samples: {e}")))
}

/// An error with its sources, so that "error sending request" says why (refused, TLS, ...).
fn error_chain(e: reqwest::Error) -> String {
    // reqwest names the URL in its errors; it may carry credentials, and the caller knows it.
    let without_url = e.without_url();
    let e: &dyn std::error::Error = &without_url;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_typed_samples_or_named_errors() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1.5,"0.25"]},{"metric":{},"value":[1.5,"NaN"]}]}}"#;
        let samples = read_answer(200, ok).expect("samples");
        assert_eq!(samples[0].label("pod"), Some("a"));
        assert_eq!(samples[0].number(), Some(0.25));
        assert_eq!(samples[1].number(), None, "NaN is no sample");
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            read_answer(400, err),
            Err(QueryError::Query {
                error_type: "bad_data".into(),
                error: "parse error".into()
            })
        );
        assert!(matches!(
            read_answer(502, b"<html>bad gateway</html>"),
            Err(QueryError::Http { status: 502, .. })
        ));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            matches!(read_answer(200, matrix), Err(QueryError::Decode(m)) if m.contains("\"vector\""))
        );
        let broken = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":"x"}]}}"#;
        assert!(
            matches!(read_answer(200, broken), Err(QueryError::Decode(m)) if m.contains("data.result"))
        );
        assert!(matches!(
            read_answer(200, b"not json"),
            Err(QueryError::Decode(_))
        ));
    }
}
