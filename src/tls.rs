//! TLS material: PEM files read with errors that name the setting, the client configuration
//! used towards Prometheus (custom CA, expected server name, mutual TLS, or no verification),
//! and the server configuration of the metrics endpoint (a given certificate, or a self-signed
//! one made at start-up).

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A TLS setting that cannot be used: the flag or variable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct TlsError {
    pub setting: String,
    pub message: String,
}

impl TlsError {
    fn new(setting: &str, message: String) -> Self {
        Self {
            setting: setting.to_string(),
            message,
        }
    }
}

/// The one crypto provider of the process (kube, reqwest and the servers all use rustls).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs [`provider`] as the process default; harmless when already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate of a PEM file. `setting` names the flag or variable that gave the path.
pub fn read_certificates(
    setting: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TlsError::new(setting, format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            TlsError::new(
                setting,
                format!("expected PEM certificates in {}: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(TlsError::new(
            setting,
            format!(
                "expected at least one PEM certificate in {}, found none",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TlsError::new(setting, format!("cannot read {}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        TlsError::new(
            setting,
            format!("expected a PEM private key in {}: {e}", path.display()),
        )
    })
}

/// How the client checks and presents certificates.
#[derive(Debug, Clone, Default)]
pub struct ClientTls<'a> {
    /// CA bundle (PEM); the system roots when absent.
    pub ca_cert_path: Option<&'a Path>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub client_cert: Option<(&'a Path, &'a Path)>,
    /// Name the server's certificate must carry, instead of the URL's host.
    pub server_name: Option<&'a str>,
    /// Accept any certificate (development only).
    pub insecure_skip_verify: bool,
}

/// Builds a rustls client configuration. Errors name the setting that is wrong.
pub fn client_config(tls: &ClientTls<'_>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("TLS", format!("{e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAny(provider.signature_verification_algorithms))
    } else {
        let mut roots = RootCertStore::empty();
        match tls.ca_cert_path {
            Some(path) => {
                for cert in read_certificates("PROMETHEUS_CA_CERT_PATH", path)? {
                    roots.add(cert).map_err(|e| {
                        TlsError::new(
                            "PROMETHEUS_CA_CERT_PATH",
                            format!("not a usable CA certificate in {}: {e}", path.display()),
                        )
                    })?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    tracing::warn!(
                        "no system CA certificates found; set PROMETHEUS_CA_CERT_PATH to verify Prometheus"
                    );
                }
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::new("PROMETHEUS_CA_CERT_PATH", format!("{e}")))?;
        match tls.server_name {
            None => webpki,
            Some(name) => Arc::new(ExpectedName {
                name: ServerName::try_from(name.to_string()).map_err(|_| {
                    TlsError::new(
                        "PROMETHEUS_SERVER_NAME",
                        format!("expected a DNS name or IP address, got {name:?}"),
                    )
                })?,
                inner: webpki,
            }),
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match tls.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = read_certificates("PROMETHEUS_CLIENT_CERT_PATH", cert)?;
            let key = read_private_key("PROMETHEUS_CLIENT_KEY_PATH", key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsError::new(
                    "PROMETHEUS_CLIENT_KEY_PATH",
                    format!("the key does not match the client certificate: {e}"),
                )
            })
        }
    }
}

/// Verifies the chain as usual, but against a configured name rather than the URL's host: a
/// Prometheus reached through a port-forward or an IP still has its certificate checked.
#[derive(Debug)]
struct ExpectedName {
    name: ServerName<'static>,
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ExpectedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate, still checking that the handshake is signed by its key.
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The metrics endpoint's server configuration: the given certificate and key, or a
/// self-signed certificate for `names` made now (its fingerprint is logged).
pub fn server_config(
    cert_and_key: Option<(&Path, &Path)>,
    names: &[String],
) -> Result<rustls::ServerConfig, TlsError> {
    let (chain, key) = match cert_and_key {
        Some((cert, key)) => (
            read_certificates("METRICS_CERT_PATH", cert)?,
            read_private_key("METRICS_KEY_PATH", key)?,
        ),
        None => {
            let made = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| {
                TlsError::new(
                    "METRICS_CERT_PATH",
                    format!("cannot make a self-signed certificate: {e}"),
                )
            })?;
            let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(|e| {
                TlsError::new(
                    "METRICS_CERT_PATH",
                    format!("cannot use the self-signed key: {e}"),
                )
            })?;
            (vec![made.cert.der().clone()], key)
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("TLS", format!("{e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError::new(
                "METRICS_KEY_PATH",
                format!("the key does not match the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_wrong_files_name_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let e = read_certificates("PROMETHEUS_CA_CERT_PATH", &missing).expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("PROMETHEUS_CA_CERT_PATH: cannot read"),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let e = read_certificates("PROMETHEUS_CA_CERT_PATH", &junk).expect_err("junk");
        assert!(
            e.to_string()
                .contains("expected at least one PEM certificate"),
            "{e}"
        );
        let e = read_private_key("PROMETHEUS_CLIENT_KEY_PATH", &junk).expect_err("junk key");
        assert!(
            e.to_string()
                .starts_with("PROMETHEUS_CLIENT_KEY_PATH: expected a PEM private key"),
            "{e}"
        );
        let e = client_config(&ClientTls {
            ca_cert_path: Some(&junk),
            ..Default::default()
        })
        .expect_err("bad CA");
        assert!(e.to_string().starts_with("PROMETHEUS_CA_CERT_PATH"), "{e}");
        let e = client_config(&ClientTls {
            server_name: Some("not a name!"),
            insecure_skip_verify: false,
            ..Default::default()
        })
        .expect_err("bad name");
        assert!(e.to_string().starts_with("PROMETHEUS_SERVER_NAME"), "{e}");
    }

    #[test]
    fn a_self_signed_server_certificate_is_made_when_none_is_given() {
        let config = server_config(None, &["localhost".into()]).expect("self-signed");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
