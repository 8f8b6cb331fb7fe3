//! Admission webhooks, served over HTTPS by poolnet itself.
//!
//! | route | kind | what |
//! |---|---|---|
//! | `POST /mutate/pods` | mutating, pods CREATE | host ports + env vars ([`pods`]) |
//! | `POST /validate/poolnet` | validating, NodePoolNetwork / HostPortPolicy CREATE, UPDATE | [`validate`] |
//!
//! The serving certificate is poolnet's own (a CA and a leaf kept in a Secret, the CA bundle
//! written into the webhook configurations, renewed before expiry) or read from files that
//! cert-manager maintains ([`certs`]); both kinds of webhook configuration are handled alike
//! ([`configs`]). The configurations shipped in `config/webhook/`
//! explain which requests reach these routes and why.

pub mod args;
pub mod certs;
pub mod configs;
pub mod patch;
pub mod pods;
pub mod tls;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use args::WebhookArgs;
pub use certs::{CertSource, SelfManaged};
pub use pods::PodWebhook;
pub use tls::CertResolver;
pub use validate::PolicyValidator;

use crate::hostports::{HostPortIndex, Reserver, start_index};
use crate::runtime::Metrics;

/// Route of the pod webhook.
pub const PODS_PATH: &str = "/mutate/pods";
/// Route of the validating webhook for NodePoolNetworks and HostPortPolicies.
pub const VALIDATE_PATH: &str = "/validate/poolnet";

/// What the routes need.
#[derive(Clone)]
pub struct WebhookState {
    pub pods: PodWebhook,
    pub validator: PolicyValidator,
    pub metrics: Option<Arc<Metrics>>,
}

/// The webhook routes.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route(PODS_PATH, post(mutate_pods))
        .route(VALIDATE_PATH, post(validate_poolnet))
        .with_state(state)
}

fn reviewed(
    state: &WebhookState,
    webhook: &str,
    started: Instant,
    response: AdmissionResponse,
) -> Json<AdmissionReview<DynamicObject>> {
    if let Some(m) = &state.metrics {
        m.admission(webhook, response.allowed, started.elapsed());
    }
    Json(response.into_review())
}

async fn mutate_pods(
    State(state): State<Arc<WebhookState>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = Instant::now();
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let response = match request {
        Ok(req) => state.pods.admit(&req).await,
        Err(e) => AdmissionResponse::invalid(format!("unreadable AdmissionReview: {e}")),
    };
    reviewed(&state, "pods", started, response)
}

async fn validate_poolnet(
    State(state): State<Arc<WebhookState>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = Instant::now();
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let response = match request {
        Ok(req) => state.validator.admit(&req).await,
        Err(e) => AdmissionResponse::invalid(format!("unreadable AdmissionReview: {e}")),
    };
    reviewed(&state, "poolnet", started, response)
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub certs: CertSource,
}

/// A running webhook server.
pub struct RunningWebhook {
    pub addr: SocketAddr,
    pub resolver: Arc<CertResolver>,
    pub server: JoinHandle<Result<()>>,
    pub certs: JoinHandle<Result<()>>,
}

/// Binds, obtains the serving certificate (waiting at most `cert_wait` for the first one),
/// then serves `state` until `shutdown`. The certificate keeps being renewed meanwhile.
pub async fn start(
    client: Client,
    config: ServeConfig,
    state: Arc<WebhookState>,
    cert_wait: Duration,
    shutdown: CancellationToken,
) -> Result<RunningWebhook> {
    let listener = tls::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let resolver = CertResolver::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let certs = tokio::spawn(certs::run_certs(
        client,
        config.certs,
        Arc::clone(&resolver),
        Some(ready_tx),
        shutdown.clone(),
    ));
    if tokio::time::timeout(cert_wait, ready_rx).await.is_err() {
        tracing::warn!(
            "no webhook serving certificate yet; serving anyway, handshakes fail until one is loaded"
        );
    }
    let server = tokio::spawn(tls::serve(
        listener,
        router(state),
        Arc::clone(&resolver),
        shutdown,
    ));
    tracing::info!(%addr, "admission webhooks serving");
    Ok(RunningWebhook {
        addr,
        resolver,
        server,
        certs,
    })
}

/// What every replica runs for admission: the watches that keep `index` (the caller shares it
/// with the repair loop, which runs on the leader:
/// `Repairer::new(client, index, Some(policies), args.repair()).run(shutdown)`, and with the
/// NodePoolNetwork controller) and the webhook server with both webhooks, as `args` say.
/// `namespace` is the operator's own (for the self-managed certificate's Secret and the
/// host-port Lease, named after `identity`); with
/// `preflight`, NodePoolNetworks are also judged against their cluster's ARM facts.
#[allow(clippy::too_many_arguments)]
pub async fn run_replica(
    client: Client,
    args: &WebhookArgs,
    namespace: &str,
    identity: &str,
    policies: kube::runtime::reflector::Store<poolnet_api::v1alpha1::HostPortPolicy>,
    scopes: poolnet_api::allowed_scopes::AllowedScopes,
    metrics: Arc<Metrics>,
    recorder: kube::runtime::events::Recorder,
    index: Arc<HostPortIndex>,
    preflight: Option<Arc<crate::preflight::FactsReader>>,
    shutdown: CancellationToken,
) -> Result<RunningWebhook> {
    // The index must hold a complete first list before the webhook answers: an empty view
    // would make every proposal a conflict.
    let watches = start_index(client.clone(), Arc::clone(&index)).await;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        watches.abort();
    });
    let mut reserver = Reserver::new(client.clone(), Arc::clone(&index));
    if args.host_port_blocks {
        let blocks = crate::hostports::blocks::Blocks::new(
            client.clone(),
            Arc::clone(&index),
            crate::hostports::blocks::BlockConfig::new(namespace, identity),
        );
        // A first renewal before answering, so the first admissions need not wait for it.
        if let Err(e) = blocks.renew().await {
            tracing::warn!(error = %e, "first renewal of the host-port Lease failed; retrying in the background");
        }
        tokio::spawn(blocks.clone().run(shutdown.clone()));
        reserver = reserver.with_blocks(blocks);
    }
    let state = Arc::new(WebhookState {
        pods: PodWebhook::new(
            client.clone(),
            reserver,
            policies,
            args.webhook_budget,
            Some(recorder),
        ),
        validator: {
            let v = PolicyValidator::new(client.clone()).with_scopes(scopes);
            match preflight {
                Some(reader) => v.with_preflight(reader, validate::PREFLIGHT_DEADLINE),
                None => v,
            }
        },
        metrics: Some(metrics),
    });
    start(
        client,
        ServeConfig {
            addr: args.webhook_addr,
            certs: args.cert_source(namespace),
        },
        state,
        Duration::from_secs(30),
        shutdown,
    )
    .await
}
