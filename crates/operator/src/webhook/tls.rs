//! The webhook's HTTPS server: rustls (ring) with a certificate that can be swapped while
//! serving, so rotation never needs a restart.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long in-flight admission requests may finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// The serving certificate, replaceable at any time; handshakes use whatever is current.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertResolver {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Installs a PEM chain (leaf first) and its PEM private key.
    pub fn install_pem(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<()> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the serving certificate PEM")?;
        anyhow::ensure!(
            !chain.is_empty(),
            "no certificate in the serving certificate PEM"
        );
        let key = PrivateKeyDer::from_pem_slice(key_pem).context("parsing the serving key PEM")?;
        let certified = CertifiedKey::from_der(chain, key, &provider())
            .context("serving certificate and key do not match")?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(certified));
        Ok(())
    }

    pub fn is_loaded(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// DER of the leaf currently served (to tell rotations apart).
    pub fn leaf_der(&self) -> Option<Vec<u8>> {
        let current = self.current.read().ok()?;
        current
            .as_ref()
            .and_then(|c| c.cert.first())
            .map(|c| c.as_ref().to_vec())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.clone()
    }
}

/// Binds the webhook's listening socket.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the webhook server to {addr}"))
}

/// Serves `app` over HTTPS on `listener` until `shutdown`, then lets in-flight requests
/// finish for a few seconds. Handshakes fail until `resolver` holds a certificate.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    resolver: Arc<CertResolver>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut connections = JoinSet::new();
    loop {
        let tcp = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(stream) => {
                    // An error concerns that one connection; the API server retries.
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(error = %e, "webhook connection ended with an error");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "webhook TLS handshake failed"),
            }
        });
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}
