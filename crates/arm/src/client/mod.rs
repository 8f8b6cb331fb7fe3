//! [`ArmClient`]: the [`ArmNetwork`] implementation on azure_mgmt_network 0.21.
//!
//! [`ArmNetwork`]: crate::ArmNetwork
//!
//! This module holds the client and the machinery every call shares (pipeline, throttle budget,
//! ETag preconditions, long-running operations, body decoding); `network` holds the typed
//! per-resource operations of the `ArmNetwork` implementation.

mod network;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::auth::TokenCredential;
use azure_core::headers::{HeaderName, Headers};
use azure_core::{
    ClientOptions, HttpClient, Method, Pipeline, Request, RetryOptions, TransportOptions, Url,
};
use azure_mgmt_network::package_2024_03::Client as NetworkClient;
use serde::de::DeserializeOwned;

use crate::WriteGate;
use crate::budget::{BudgetConfig, ThrottleBudget};
use crate::credential::CredentialConfig;
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::lro::{
    DEFAULT_POLL_INTERVAL, Lro, Monitor, OperationHandle, OperationStatus, parse_async_operation,
    parse_provisioning_state,
};
use crate::network::{Etagged, Precondition};
use crate::policy::{ArmPolicy, CALL, CallScope, classify, retry_after};
use crate::stats::ArmStats;
use crate::transport::{TransportConfig, http_client};

/// Public cloud ARM endpoint; sovereign clouds and armsim override it.
pub const PUBLIC_ARM_ENDPOINT: &str = "https://management.azure.com/";

/// Where ARM is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ArmConfig {
    pub endpoint: Url,
    /// Token scope; defaults to `{endpoint}/.default`.
    pub scope: Option<String>,
    pub transport: TransportConfig,
    pub budget: BudgetConfig,
    /// Checked before every write leaves (leader fencing); open by default.
    pub write_gate: WriteGate,
    /// Who is calling, appended to every request's `User-Agent` as
    /// `poolnet-replica/<identity>` so ARM's side can attribute requests to a replica.
    pub identity: Option<String>,
}

impl ArmConfig {
    pub fn new(endpoint: Url) -> Self {
        ArmConfig {
            endpoint,
            scope: None,
            transport: TransportConfig::default(),
            budget: BudgetConfig::default(),
            write_gate: WriteGate::default(),
            identity: None,
        }
    }
}

/// The ARM client. Cheap to share behind an `Arc`; all state is internally synchronised.
pub struct ArmClient {
    network: NetworkClient,
    pipeline: Pipeline,
    endpoint: Url,
    credential: Arc<dyn TokenCredential>,
    scopes: Vec<String>,
    stats: Arc<ArmStats>,
    write_gate: WriteGate,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

const ETAG: HeaderName = HeaderName::from_static("etag");
const AZURE_ASYNC_OPERATION: HeaderName = HeaderName::from_static("azure-asyncoperation");
const LOCATION: HeaderName = HeaderName::from_static("location");

impl ArmClient {
    /// Builds the transport, the credential (token requests share the transport) and the client.
    pub fn new(config: ArmConfig, credential: CredentialConfig) -> Result<Self, ArmError> {
        let http = http_client(&config.transport).map_err(|e| ArmError::Transport {
            id: config.endpoint.to_string(),
            message: e.to_string(),
        })?;
        let credential = credential
            .build(http.clone())
            .map_err(|e| ArmError::Credential {
                message: e.to_string(),
            })?;
        Ok(Self::with_parts(config, http, credential))
    }

    /// Builds the client on a given transport and credential.
    pub fn with_parts(
        config: ArmConfig,
        http: Arc<dyn HttpClient>,
        credential: Arc<dyn TokenCredential>,
    ) -> Self {
        let stats = Arc::new(ArmStats::default());
        let budget = Arc::new(ThrottleBudget::new(config.budget.clone()));
        stats.attach_budget(budget.clone());
        let policy = Arc::new(ArmPolicy {
            origin: config.endpoint.origin(),
            stats: stats.clone(),
            budget,
            gate: config.write_gate.clone(),
            replica: config
                .identity
                .as_ref()
                .map(|i| format!("poolnet-replica/{i}")),
        });
        // Retries belong to the controller (requeue with backoff, budget-aware), not the pipeline,
        // so the pipeline never re-sends on its own.
        let mut options =
            ClientOptions::new(TransportOptions::new(http)).retry(RetryOptions::none());
        options.per_retry_policies_mut().push(policy);
        let scope = config.scope.clone().unwrap_or_else(|| {
            format!(
                "{}/.default",
                config.endpoint.as_str().trim_end_matches('/')
            )
        });
        let scopes = vec![scope];
        let network = NetworkClient::new(
            config.endpoint.clone(),
            credential.clone(),
            scopes.clone(),
            options.clone(),
        );
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            Vec::new(),
        );
        ArmClient {
            network,
            pipeline,
            endpoint: config.endpoint,
            credential,
            scopes,
            stats,
            write_gate: config.write_gate,
        }
    }

    /// Shared handle on the counters (for a metrics exporter that outlives borrows).
    pub fn stats_handle(&self) -> Arc<ArmStats> {
        self.stats.clone()
    }

    /// Runs one generated operation with the per-call settings, mapping errors back.
    async fn call<R, F>(
        &self,
        id: &ResourceId,
        precondition: Precondition,
        op: F,
    ) -> Result<azure_core::Response, ArmError>
    where
        F: Future<Output = azure_core::Result<R>>,
        R: Into<azure_core::Response>,
    {
        let scope = CallScope {
            precondition,
            resource_id: id.to_string(),
        };
        match CALL.scope(scope, op).await {
            Ok(r) => Ok(r.into()),
            Err(e) => Err(self.after_error(classify(e, &id.to_string())).await),
        }
    }

    /// A 401 usually means the cached token was revoked or expired early: drop it so the retry
    /// fetches a new one.
    async fn after_error(&self, error: ArmError) -> ArmError {
        if error.status() == Some(401)
            && let Err(e) = self.credential.clear_cache().await
        {
            tracing::warn!(error = %e, "clearing the credential cache failed");
        }
        error
    }

    /// Sends a request this crate builds itself (agent pools, LRO monitors) through the same
    /// pipeline as the generated operations.
    async fn send_raw(
        &self,
        method: Method,
        url: Url,
        body: Option<bytes::Bytes>,
        precondition: Precondition,
        resource_id: &str,
    ) -> Result<azure_core::Response, ArmError> {
        let token = self
            .credential
            .get_token(&self.scopes.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .map_err(|e| ArmError::Credential {
                message: e.to_string(),
            })?;
        let mut request = Request::new(url, method);
        request.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        request.insert_header("accept", "application/json");
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(body);
        }
        let scope = CallScope {
            precondition,
            resource_id: resource_id.to_owned(),
        };
        let ctx = azure_core::Context::new();
        match CALL
            .scope(scope, self.pipeline.send(&ctx, &mut request))
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => Err(self.after_error(classify(e, resource_id)).await),
        }
    }

    fn resource_url(&self, id: &ResourceId, api_version: &str) -> Result<Url, ArmError> {
        let mut url = self.endpoint.clone();
        url.set_path(&id.to_string());
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    async fn read<T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        response: azure_core::Response,
    ) -> Result<Etagged<T>, ArmError> {
        let (_, headers, body) = response.deconstruct();
        let body = collect(id, body).await?;
        decode(id, &headers, &body)
    }

    /// Interprets the answer to a PUT: finished, failed, or pending behind a monitor.
    async fn put_outcome<T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        response: azure_core::Response,
        api_version: &str,
    ) -> Result<Lro<Etagged<T>>, ArmError> {
        let (_, headers, body) = response.deconstruct();
        let body = collect(id, body).await?;
        // An empty body (a bare 202) says nothing about the state: the monitor headers decide.
        let state = if body.is_empty() {
            Some(OperationStatus::Running)
        } else {
            parse_provisioning_state(&body).ok()
        };
        match state {
            Some(OperationStatus::Failed {
                status,
                code,
                message,
            }) => {
                return Err(ArmError::OperationFailed {
                    id: id.to_string(),
                    status,
                    code: if code.is_empty() {
                        "ProvisioningFailed".into()
                    } else {
                        code
                    },
                    message,
                });
            }
            Some(OperationStatus::Succeeded) | None => {
                return Ok(Lro::Done(decode(id, &headers, &body)?));
            }
            Some(OperationStatus::Running) => {}
        }
        let handle = match monitor_of(&headers) {
            Some((monitor, url)) => self.handle(id, "PUT", monitor, url, &headers)?,
            None => {
                let url = self.resource_url(id, api_version)?;
                self.handle(
                    id,
                    "PUT",
                    Monitor::ProvisioningState,
                    url.to_string(),
                    &headers,
                )?
            }
        };
        self.stats.record_lro_pending();
        Ok(Lro::Pending(handle))
    }

    async fn delete_outcome(
        &self,
        id: &ResourceId,
        result: Result<azure_core::Response, ArmError>,
    ) -> Result<Lro<()>, ArmError> {
        let response = match result {
            Ok(r) => r,
            Err(ArmError::NotFound { .. }) => return Ok(Lro::Done(())),
            Err(e) => return Err(e),
        };
        let status = u16::from(response.status());
        let headers = response.headers().clone();
        if status != 202 {
            return Ok(Lro::Done(()));
        }
        let Some((monitor, url)) = monitor_of(&headers) else {
            return Err(ArmError::InvalidResponse {
                id: id.to_string(),
                message: "DELETE answered 202 without Azure-AsyncOperation or Location".into(),
            });
        };
        self.stats.record_lro_pending();
        Ok(Lro::Pending(
            self.handle(id, "DELETE", monitor, url, &headers)?,
        ))
    }

    fn handle(
        &self,
        id: &ResourceId,
        method: &str,
        monitor: Monitor,
        url: String,
        headers: &Headers,
    ) -> Result<OperationHandle, ArmError> {
        let parsed = Url::parse(&url).map_err(|e| ArmError::InvalidResponse {
            id: id.to_string(),
            message: format!("operation monitor URL {url:?}: {e}"),
        })?;
        Ok(OperationHandle {
            resource_id: id.to_string(),
            method: method.to_owned(),
            monitor,
            url: parsed.to_string(),
            retry_after_secs: retry_after(headers)
                .unwrap_or(DEFAULT_POLL_INTERVAL)
                .as_secs(),
        })
    }

    fn check(id: &ResourceId, provider: &str, type_path: &str) -> Result<(), ArmError> {
        id.expect_type(provider, type_path)?;
        Ok(())
    }
}

fn monitor_of(headers: &Headers) -> Option<(Monitor, String)> {
    if let Some(u) = headers.get_optional_str(&AZURE_ASYNC_OPERATION) {
        return Some((Monitor::AsyncOperation, u.to_owned()));
    }
    headers
        .get_optional_str(&LOCATION)
        .map(|u| (Monitor::Location, u.to_owned()))
}

async fn collect(
    id: &ResourceId,
    body: azure_core::ResponseBody,
) -> Result<bytes::Bytes, ArmError> {
    body.collect().await.map_err(|e| ArmError::Transport {
        id: id.to_string(),
        message: format!("reading the response body: {e}"),
    })
}

/// Decodes a resource body; the ETag comes from the body (`etag`, or AKS's `properties.eTag`) or
/// else the `ETag` header.
fn decode<T: DeserializeOwned>(
    id: &ResourceId,
    headers: &Headers,
    body: &[u8],
) -> Result<Etagged<T>, ArmError> {
    let invalid = |message: String| ArmError::InvalidResponse {
        id: id.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("body is not JSON: {e}")))?;
    let etag = value
        .get("etag")
        .or_else(|| value.pointer("/properties/eTag"))
        .and_then(|e| e.as_str())
        .map(str::to_owned)
        .or_else(|| headers.get_optional_string(&ETAG));
    let resource = serde_json::from_value(value)
        .map_err(|e| invalid(format!("body does not match the resource model: {e}")))?;
    Ok(Etagged { resource, etag })
}

/// The Microsoft.Network API version of the generated operations (package-2024-03).
pub const NETWORK_API_VERSION: &str = "2024-03-01";

/// Raw JSON reads, for tools that must see a resource exactly as ARM returns it (the
/// invariant checker compares foreign entries byte for byte, which the typed models cannot
/// promise: they drop what they do not name).
impl ArmClient {
    /// GET of `path_or_url` (an ARM path such as `/subscriptions/…?api-version=…`, or an
    /// absolute URL on the same endpoint such as a `nextLink`), as JSON.
    pub async fn get_json(&self, path_or_url: &str) -> Result<serde_json::Value, ArmError> {
        let url = if path_or_url.starts_with('/') {
            let base = self.endpoint.as_str().trim_end_matches('/');
            Url::parse(&format!("{base}{path_or_url}"))
        } else {
            Url::parse(path_or_url)
        }
        .map_err(|e| ArmError::InvalidResponse {
            id: path_or_url.to_string(),
            message: format!("not a URL: {e}"),
        })?;
        let id = url.path().to_string();
        let r = self
            .send_raw(Method::Get, url, None, Precondition::None, &id)
            .await?;
        let (_, _, body) = r.deconstruct();
        let body = body.collect().await.map_err(|e| ArmError::Transport {
            id: id.clone(),
            message: format!("reading the response body: {e}"),
        })?;
        serde_json::from_slice(&body).map_err(|e| ArmError::InvalidResponse {
            id,
            message: format!("body is not JSON: {e}"),
        })
    }

    /// The resource `id` as ARM returns it at `api_version`, with its ETag.
    pub async fn get_resource_json(
        &self,
        id: &ResourceId,
        api_version: &str,
    ) -> Result<Etagged<serde_json::Value>, ArmError> {
        let url = self.resource_url(id, api_version)?;
        let r = self
            .send_raw(Method::Get, url, None, Precondition::None, &id.to_string())
            .await?;
        self.read(id, r).await
    }

    /// Every item of the collection at `path` (e.g.
    /// `/subscriptions/…/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups`),
    /// following `nextLink` pages.
    pub async fn list_json(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Vec<serde_json::Value>, ArmError> {
        let mut out = Vec::new();
        let mut next = Some(format!("{path}?api-version={api_version}"));
        while let Some(page) = next.take() {
            let body = self.get_json(&page).await?;
            if let Some(items) = body.get("value").and_then(|v| v.as_array()) {
                out.extend(items.iter().cloned());
            }
            next = body
                .get("nextLink")
                .and_then(|n| n.as_str())
                .filter(|n| !n.is_empty())
                .map(String::from);
        }
        Ok(out)
    }
}

impl ArmClient {
    /// One status check of a long-running operation (`ArmNetwork::poll`).
    async fn poll_operation(&self, handle: &OperationHandle) -> Result<Lro<()>, ArmError> {
        let invalid = |message: String| ArmError::InvalidResponse {
            id: handle.resource_id.clone(),
            message,
        };
        let url = Url::parse(&handle.url)
            .map_err(|e| invalid(format!("operation URL {:?}: {e}", handle.url)))?;
        let result = self
            .send_raw(
                Method::Get,
                url,
                None,
                Precondition::None,
                &handle.resource_id,
            )
            .await;
        let response = match result {
            Ok(r) => r,
            // The resource being watched is gone: that is what a DELETE wanted.
            Err(ArmError::NotFound { .. })
                if handle.is_delete() && handle.monitor == Monitor::ProvisioningState =>
            {
                return Ok(Lro::Done(()));
            }
            Err(e) => return Err(e),
        };
        let status = u16::from(response.status());
        let (_, headers, body) = response.deconstruct();
        let body = body.collect().await.map_err(|e| ArmError::Transport {
            id: handle.resource_id.clone(),
            message: format!("reading the operation status: {e}"),
        })?;
        let progress = match handle.monitor {
            Monitor::AsyncOperation => parse_async_operation(&body).map_err(invalid)?,
            Monitor::ProvisioningState => parse_provisioning_state(&body).map_err(invalid)?,
            Monitor::Location if status == 202 => OperationStatus::Running,
            Monitor::Location => OperationStatus::Succeeded,
        };
        match progress {
            OperationStatus::Succeeded => Ok(Lro::Done(())),
            OperationStatus::Running => {
                let mut next = handle.clone();
                next.retry_after_secs = retry_after(&headers)
                    .unwrap_or(DEFAULT_POLL_INTERVAL)
                    .as_secs();
                Ok(Lro::Pending(next))
            }
            OperationStatus::Failed {
                status,
                code,
                message,
            } => Err(ArmError::OperationFailed {
                id: handle.resource_id.clone(),
                status,
                code,
                message,
            }),
        }
    }

    /// Polls until the operation ends or `deadline` passes (`ArmNetwork::wait`).
    async fn wait_operation(
        &self,
        handle: OperationHandle,
        deadline: Duration,
    ) -> Result<(), ArmError> {
        let start = Instant::now();
        let mut handle = handle;
        loop {
            let pause = handle.next_poll_in();
            if start.elapsed() + pause > deadline {
                return Err(ArmError::OperationTimeout {
                    id: handle.resource_id.clone(),
                    waited: start.elapsed(),
                    handle: Box::new(handle),
                });
            }
            tokio::time::sleep(pause).await;
            match self.poll_operation(&handle).await? {
                Lro::Done(()) => return Ok(()),
                Lro::Pending(next) => handle = next,
            }
        }
    }
}
