//! Client-credentials exchange at the Microsoft Entra ID (AAD) v2 token endpoint, with either a
//! client secret or a federated client assertion (workload identity).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret};
use azure_core::error::ErrorKind;
use azure_core::{HttpClient, Method, Request, Url};
use serde::Deserialize;
use time::OffsetDateTime;

use super::cache::TokenSource;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) fn credential_error(message: impl Into<String>) -> azure_core::Error {
    azure_core::Error::message(ErrorKind::Credential, message.into())
}

/// `{authority}/{tenant}/oauth2/v2.0/token`.
pub(crate) fn token_endpoint(authority: &Url, tenant_id: &str) -> azure_core::Result<Url> {
    if tenant_id.is_empty() || tenant_id.contains(['/', '?', '#']) {
        return Err(credential_error(format!(
            "tenant ID {tenant_id:?} is not a tenant ID"
        )));
    }
    let base = authority.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/{tenant_id}/oauth2/v2.0/token"))
        .map_err(|e| credential_error(format!("authority host {authority} is not a URL base: {e}")))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<NumberOrString>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum NumberOrString {
    Number(i64),
    String(String),
}

impl NumberOrString {
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            NumberOrString::Number(n) => Some(*n),
            NumberOrString::String(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Sends `request` and returns the body of a 2xx answer, or a credential error naming `what`.
pub(crate) async fn send_for_body(
    http: &dyn HttpClient,
    request: &Request,
    what: &str,
) -> azure_core::Result<bytes::Bytes> {
    let response = http
        .execute_request(request)
        .await
        .map_err(|e| credential_error(format!("{what}: request failed: {e}")))?;
    let status = u16::from(response.status());
    let body = response.into_body().collect().await?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let detail = match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(e) => format!("{}: {}", e.error, e.error_description),
        Err(_) => String::from_utf8_lossy(&body).chars().take(300).collect(),
    };
    Err(credential_error(format!("{what}: HTTP {status}: {detail}")))
}

async fn exchange(
    http: &dyn HttpClient,
    endpoint: &Url,
    form: &[(&str, &str)],
    what: &str,
) -> azure_core::Result<AccessToken> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = Request::new(endpoint.clone(), Method::Post);
    request.insert_header("content-type", "application/x-www-form-urlencoded");
    request.insert_header("accept", "application/json");
    request.set_body(bytes::Bytes::from(body));
    let body = send_for_body(http, &request, what).await?;
    let token: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| credential_error(format!("{what}: token response is not understood: {e}")))?;
    let lifetime = token
        .expires_in
        .as_ref()
        .and_then(NumberOrString::as_i64)
        .unwrap_or(3600)
        .max(0);
    Ok(AccessToken::new(
        Secret::new(token.access_token),
        OffsetDateTime::now_utc() + Duration::from_secs(lifetime.unsigned_abs()),
    ))
}

/// Workload identity: the Kubernetes-projected service account token is exchanged for an Entra
/// token. The projected file is rotated by the kubelet (typically hourly), so it is read again on
/// every fetch; reading it once, as azure_identity 0.21 does, fails once the first token expires.
#[derive(Debug)]
pub struct WorkloadIdentitySource {
    pub(crate) http: Arc<dyn HttpClient>,
    pub(crate) endpoint: Url,
    pub(crate) client_id: String,
    pub(crate) token_file: PathBuf,
}

impl WorkloadIdentitySource {
    pub fn new(
        http: Arc<dyn HttpClient>,
        authority_host: &Url,
        tenant_id: &str,
        client_id: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> azure_core::Result<Self> {
        Ok(WorkloadIdentitySource {
            http,
            endpoint: token_endpoint(authority_host, tenant_id)?,
            client_id: client_id.into(),
            token_file: token_file.into(),
        })
    }
}

#[async_trait]
impl TokenSource for WorkloadIdentitySource {
    async fn fetch(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let assertion = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                credential_error(format!(
                    "workload identity: cannot read federated token file {}: {e}",
                    self.token_file.display()
                ))
            })?;
        let assertion = assertion.trim();
        if assertion.is_empty() {
            return Err(credential_error(format!(
                "workload identity: federated token file {} is empty",
                self.token_file.display()
            )));
        }
        let scope = scopes.join(" ");
        exchange(
            self.http.as_ref(),
            &self.endpoint,
            &[
                ("client_id", &self.client_id),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
                ("scope", &scope),
            ],
            "workload identity",
        )
        .await
    }
}

/// Service principal with a client secret (development and CI outside Kubernetes).
pub struct ClientSecretSource {
    pub(crate) http: Arc<dyn HttpClient>,
    pub(crate) endpoint: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
}

impl std::fmt::Debug for ClientSecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecretSource")
            .field("endpoint", &self.endpoint.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientSecretSource {
    pub fn new(
        http: Arc<dyn HttpClient>,
        authority_host: &Url,
        tenant_id: &str,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> azure_core::Result<Self> {
        Ok(ClientSecretSource {
            http,
            endpoint: token_endpoint(authority_host, tenant_id)?,
            client_id: client_id.into(),
            client_secret,
        })
    }
}

#[async_trait]
impl TokenSource for ClientSecretSource {
    async fn fetch(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let scope = scopes.join(" ");
        exchange(
            self.http.as_ref(),
            &self.endpoint,
            &[
                ("client_id", &self.client_id),
                ("grant_type", "client_credentials"),
                ("client_secret", self.client_secret.secret()),
                ("scope", &scope),
            ],
            "client secret",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_endpoint_joins_authority_and_tenant() {
        let a = Url::parse("http://127.0.0.1:9/").unwrap();
        assert_eq!(
            token_endpoint(&a, "t1").unwrap().as_str(),
            "http://127.0.0.1:9/t1/oauth2/v2.0/token"
        );
        let a = Url::parse("http://127.0.0.1:9/prefix").unwrap();
        assert_eq!(
            token_endpoint(&a, "t1").unwrap().as_str(),
            "http://127.0.0.1:9/prefix/t1/oauth2/v2.0/token"
        );
        assert!(token_endpoint(&a, "t/../x").is_err());
        assert!(token_endpoint(&a, "").is_err());
    }
}
