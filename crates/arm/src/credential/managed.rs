//! Managed identity (IMDS on VMs / node pools, or the App Service style `IDENTITY_ENDPOINT`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret};
use azure_core::{HttpClient, Method, Request, Url};
use serde::Deserialize;
use time::OffsetDateTime;

use super::aad::{NumberOrString, credential_error, send_for_body};
use super::cache::TokenSource;

/// The instance metadata service's token endpoint.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Which managed identity to ask for, and where.
#[derive(Debug, Clone)]
pub struct ManagedIdentityConfig {
    /// IMDS, or `IDENTITY_ENDPOINT` when the platform provides one.
    pub endpoint: Url,
    /// `IDENTITY_HEADER` of the App Service style endpoint; `None` for IMDS.
    pub identity_header: Option<String>,
    /// User-assigned identity's client ID; `None` for the system-assigned one.
    pub client_id: Option<String>,
}

#[derive(Debug)]
pub struct ManagedIdentitySource {
    pub(crate) http: Arc<dyn HttpClient>,
    pub(crate) config: ManagedIdentityConfig,
}

#[derive(Deserialize)]
struct MiTokenResponse {
    access_token: String,
    #[serde(default)]
    expires_on: Option<NumberOrString>,
    #[serde(default)]
    expires_in: Option<NumberOrString>,
}

/// Managed identity endpoints take a resource, not a scope: `https://management.azure.com/.default`
/// becomes `https://management.azure.com/`.
pub(crate) fn scope_to_resource(scope: &str) -> &str {
    scope.strip_suffix(".default").unwrap_or(scope)
}

#[async_trait]
impl TokenSource for ManagedIdentitySource {
    async fn fetch(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(credential_error(
                "managed identity: exactly one scope is supported",
            ));
        };
        let mut url = self.config.endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            let api_version = if self.config.identity_header.is_some() {
                "2019-08-01"
            } else {
                "2018-02-01"
            };
            q.append_pair("api-version", api_version);
            q.append_pair("resource", scope_to_resource(scope));
            if let Some(id) = &self.config.client_id {
                q.append_pair("client_id", id);
            }
        }
        let mut request = Request::new(url, Method::Get);
        match &self.config.identity_header {
            Some(h) => request.insert_header("x-identity-header", h.clone()),
            None => request.insert_header("metadata", "true"),
        }
        let body = send_for_body(self.http.as_ref(), &request, "managed identity").await?;
        let token: MiTokenResponse = serde_json::from_slice(&body).map_err(|e| {
            credential_error(format!(
                "managed identity: token response not understood: {e}"
            ))
        })?;
        let now = OffsetDateTime::now_utc();
        let expires_on = token
            .expires_on
            .as_ref()
            .and_then(NumberOrString::as_i64)
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .or_else(|| {
                token
                    .expires_in
                    .as_ref()
                    .and_then(NumberOrString::as_i64)
                    .map(|s| now + Duration::from_secs(s.max(0).unsigned_abs()))
            })
            .unwrap_or(now + Duration::from_secs(300));
        Ok(AccessToken::new(
            Secret::new(token.access_token),
            expires_on,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_resources() {
        assert_eq!(
            scope_to_resource("https://management.azure.com/.default"),
            "https://management.azure.com/"
        );
        assert_eq!(scope_to_resource("https://x/"), "https://x/");
    }
}
