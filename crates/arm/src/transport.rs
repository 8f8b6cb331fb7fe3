//! The HTTP client under the azure_core pipeline: reqwest on rustls (ring), optionally trusting an
//! extra CA such as armsim's, with timeouts so a dead endpoint cannot hang a reconcile.

use std::sync::Arc;
use std::time::Duration;

use azure_core::HttpClient;

/// Transport settings.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Extra CA certificates (PEM, one or more) to trust besides the public web roots.
    pub extra_ca_pem: Option<String>,
    pub connect_timeout: Duration,
    /// Upper bound for one request, response body included.
    pub request_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("extra CA PEM holds no certificate")]
    NoCertificate,
    #[error("extra CA PEM is invalid: {0}")]
    InvalidCertificate(#[source] reqwest::Error),
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Builds the reqwest client azure_core sends through.
pub fn http_client(config: &TransportConfig) -> Result<Arc<dyn HttpClient>, TransportError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(pem) = &config.extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(TransportError::InvalidCertificate)?;
        if certs.is_empty() {
            return Err(TransportError::NoCertificate);
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(TransportError::Build)?;
    Ok(Arc::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_pem_without_certificates() {
        let config = TransportConfig {
            extra_ca_pem: Some("not a certificate".into()),
            ..TransportConfig::default()
        };
        assert!(http_client(&config).is_err());
    }

    #[test]
    fn builds_without_extra_ca() {
        http_client(&TransportConfig::default()).unwrap();
    }
}
