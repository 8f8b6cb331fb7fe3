//! Admission webhooks served by the test process itself, like controller-runtime's envtest:
//! an HTTPS server on 127.0.0.1 with its own CA, registered with the API server through
//! `clientConfig.url` + `caBundle`.
//!
//! A webhook configuration takes effect asynchronously (the API server watches them). So
//! each registration carries a second, harmless "probe" webhook in the same object, and
//! [`WebhookServer::register`] returns only once a dry-run request has reached the probe:
//! from then on the user's webhook is active too.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::Path as UrlPath;
use axum::routing::{MethodRouter, post};
use axum::{Json, extract::State};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::{Client, Resource};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::pki::Ca;

const PROBE_ROUTE: &str = "/poolnet-tests/probe/{token}";
const PROBE_LABEL: &str = "poolnet-tests/webhook-probe";
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which kind of admission webhook to register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mutating,
    Validating,
}

/// One webhook to register on a [`WebhookServer`].
#[derive(Debug, Clone)]
pub struct Hook {
    /// Fully qualified webhook name, e.g. `pods.mutate.poolnet.test`.
    pub name: String,
    /// Route on the webhook server, e.g. `/mutate-pods`.
    pub path: String,
    pub rules: Vec<RuleWithOperations>,
    /// Only requests for objects in this namespace reach the webhook. Cluster-scoped objects
    /// always do (namespaceSelector does not apply to them).
    pub namespace: Option<String>,
}

/// An HTTPS server on 127.0.0.1 answering admission reviews. Stops when dropped.
#[derive(Debug)]
pub struct WebhookServer {
    addr: SocketAddr,
    ca_pem: String,
    probes_seen: Arc<Mutex<HashSet<String>>>,
    task: JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Route handler turning an `AdmissionReview` into `handler`'s response; a review that
/// cannot be read is answered with a denial saying why.
pub fn admission<F>(handler: F) -> MethodRouter
where
    F: Fn(AdmissionRequest<DynamicObject>) -> AdmissionResponse + Clone + Send + Sync + 'static,
{
    post(move |Json(review): Json<AdmissionReview<DynamicObject>>| {
        let handler = handler.clone();
        async move {
            let response = match review.try_into() {
                Ok(request) => handler(request),
                Err(e) => AdmissionResponse::invalid(format!("unreadable AdmissionReview: {e}")),
            };
            Json(response.into_review())
        }
    })
}

/// A rule such as `rule("", "v1", "pods", &["CREATE"])`.
pub fn rule(api_group: &str, version: &str, resource: &str, ops: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![api_group.to_string()]),
        api_versions: Some(vec![version.to_string()]),
        resources: Some(vec![resource.to_string()]),
        operations: Some(ops.iter().map(|o| o.to_string()).collect()),
        scope: None,
    }
}

impl WebhookServer {
    /// Serves `routes` over HTTPS on a free 127.0.0.1 port, on the current tokio runtime.
    pub async fn start(routes: Router) -> Result<Self> {
        let ca = Ca::new("poolnet-test-webhook-ca")?;
        let leaf = ca.issue_server(&["127.0.0.1"])?;
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der)),
        )
        .context("webhook serving certificate")?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let probes_seen = Arc::new(Mutex::new(HashSet::new()));
        let app = routes.route(
            PROBE_ROUTE,
            post(probe).with_state(Arc::clone(&probes_seen)),
        );

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook server")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        // A connection error concerns that one request; the API server retries.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            ca_pem: ca.cert_pem().to_string(),
            probes_seen,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` + `caBundle` pointing the API server at `path` on this server.
    pub fn client_config(&self, path: &str) -> WebhookClientConfig {
        WebhookClientConfig {
            url: Some(format!("https://{}{path}", self.addr)),
            ca_bundle: Some(ByteString(self.ca_pem.clone().into_bytes())),
            service: None,
        }
    }

    /// Creates a webhook configuration (named after the hook and its namespace) and waits
    /// until the API server calls it. Returns the configuration's name.
    pub async fn register(&self, client: &Client, kind: Kind, hook: &Hook) -> Result<String> {
        static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);
        let token = format!("p{}", NEXT_TOKEN.fetch_add(1, Ordering::Relaxed));
        // Probes are dry-run ConfigMap creations in a namespace that certainly exists.
        let probe_ns = hook.namespace.clone().unwrap_or_else(|| "default".into());
        let name = match &hook.namespace {
            Some(ns) => format!("{ns}.{}", hook.name),
            None => hook.name.clone(),
        };
        let target = Target {
            name: hook.name.clone(),
            client_config: self.client_config(&hook.path),
            rules: hook.rules.clone(),
            namespace_selector: hook.namespace.as_deref().map(namespace_selector),
            object_selector: None,
        };
        let probe = Target {
            name: "probe.poolnet-tests.test".into(),
            client_config: self.client_config(&PROBE_ROUTE.replace("{token}", &token)),
            rules: vec![rule("", "v1", "configmaps", &["CREATE"])],
            namespace_selector: Some(namespace_selector(&probe_ns)),
            object_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(PROBE_LABEL.into(), token.clone())])),
                ..LabelSelector::default()
            }),
        };
        let meta = ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        };
        match kind {
            Kind::Mutating => {
                let config = MutatingWebhookConfiguration {
                    metadata: meta,
                    webhooks: Some(vec![target.mutating(), probe.mutating()]),
                };
                create(client, &config).await?;
            }
            Kind::Validating => {
                let config = ValidatingWebhookConfiguration {
                    metadata: meta,
                    webhooks: Some(vec![target.validating(), probe.validating()]),
                };
                create(client, &config).await?;
            }
        }
        self.await_probe(client, &probe_ns, &token)
            .await
            .with_context(|| format!("webhook configuration {name} never became active"))?;
        Ok(name)
    }

    async fn await_probe(&self, client: &Client, namespace: &str, token: &str) -> Result<()> {
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let probe = ConfigMap {
            metadata: ObjectMeta {
                generate_name: Some("webhook-probe-".into()),
                labels: Some(BTreeMap::from([(PROBE_LABEL.into(), token.into())])),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
        loop {
            configmaps
                .create(&dry_run, &probe)
                .await
                .context("dry-run probe request")?;
            if self.saw_probe(token) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the API server did not call the probe within {ACTIVE_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn saw_probe(&self, token: &str) -> bool {
        self.probes_seen
            .lock()
            .map(|seen| seen.contains(token))
            .unwrap_or(false)
    }
}

async fn probe(
    State(seen): State<Arc<Mutex<HashSet<String>>>>,
    UrlPath(token): UrlPath<String>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    if let Ok(mut seen) = seen.lock() {
        seen.insert(token);
    }
    let response = match TryInto::<AdmissionRequest<DynamicObject>>::try_into(review) {
        Ok(request) => AdmissionResponse::from(&request),
        Err(e) => AdmissionResponse::invalid(format!("unreadable AdmissionReview: {e}")),
    };
    Json(response.into_review())
}

/// Fields shared by mutating and validating webhooks.
struct Target {
    name: String,
    client_config: WebhookClientConfig,
    rules: Vec<RuleWithOperations>,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
}

/// `MutatingWebhook` and `ValidatingWebhook` have these fields in common but no shared type.
macro_rules! webhook_for {
    ($kind:ident, $target:expr) => {
        $kind {
            name: $target.name.clone(),
            client_config: $target.client_config.clone(),
            rules: Some($target.rules.clone()),
            namespace_selector: $target.namespace_selector.clone(),
            object_selector: $target.object_selector.clone(),
            admission_review_versions: vec!["v1".into()],
            // No side effects, so dry-run requests (the probe) are sent to it as well.
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            timeout_seconds: Some(10),
            ..$kind::default()
        }
    };
}

impl Target {
    fn mutating(&self) -> MutatingWebhook {
        webhook_for!(MutatingWebhook, self)
    }

    fn validating(&self) -> ValidatingWebhook {
        webhook_for!(ValidatingWebhook, self)
    }
}

fn namespace_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".into(),
            namespace.into(),
        )])),
        ..LabelSelector::default()
    }
}

async fn create<K>(client: &Client, object: &K) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    api.create(&PostParams::default(), object)
        .await
        .with_context(|| format!("creating {} {:?}", K::kind(&()), object.meta().name))?;
    Ok(())
}
