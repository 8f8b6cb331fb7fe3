//! Credentials for ARM: workload identity first, then managed identity, client secret, Azure CLI,
//! and a static token for armsim. All but the static one are wrapped in [`CachingCredential`].

mod aad;
mod cache;
mod cli;
mod managed;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::{HttpClient, Url};
use time::OffsetDateTime;

pub use aad::{ClientSecretSource, WorkloadIdentitySource};
pub use cache::{CachingCredential, TokenSource};
pub use cli::AzureCliSource;
pub use managed::{IMDS_ENDPOINT, ManagedIdentityConfig, ManagedIdentitySource};

/// Public cloud Entra ID authority; sovereign clouds override it (`AZURE_AUTHORITY_HOST`).
pub const PUBLIC_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// How to authenticate to ARM.
#[derive(Clone)]
pub enum CredentialConfig {
    /// Kubernetes workload identity: projected service-account token exchanged at Entra ID.
    WorkloadIdentity {
        authority_host: Url,
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    ManagedIdentity(ManagedIdentityConfig),
    ClientSecret {
        authority_host: Url,
        tenant_id: String,
        client_id: String,
        client_secret: Secret,
    },
    AzureCli {
        program: String,
        tenant_id: Option<String>,
    },
    /// A fixed bearer token (armsim accepts any).
    Static(Secret),
}

impl std::fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialConfig::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
                ..
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            CredentialConfig::ManagedIdentity(c) => {
                f.debug_tuple("ManagedIdentity").field(c).finish()
            }
            CredentialConfig::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            CredentialConfig::AzureCli { program, .. } => f
                .debug_struct("AzureCli")
                .field("program", program)
                .finish(),
            CredentialConfig::Static(_) => f.write_str("Static"),
        }
    }
}

/// Environment lookup, injectable so selection is testable without touching the process env.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl CredentialConfig {
    /// Picks a credential from the standard Azure variables, in this order:
    /// workload identity (`AZURE_FEDERATED_TOKEN_FILE` + `AZURE_TENANT_ID` + `AZURE_CLIENT_ID`, as
    /// the AKS webhook injects), client secret (`AZURE_CLIENT_SECRET` + tenant + client), then
    /// managed identity (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, else IMDS, with optional
    /// `AZURE_CLIENT_ID`). `AZURE_AUTHORITY_HOST` overrides the authority.
    pub fn from_env(env: &impl Env) -> Result<CredentialConfig, String> {
        let authority_host = match env.var("AZURE_AUTHORITY_HOST") {
            Some(h) => Url::parse(&h).map_err(|e| format!("AZURE_AUTHORITY_HOST {h:?}: {e}"))?,
            None => Url::parse(PUBLIC_AUTHORITY_HOST).map_err(|e| e.to_string())?,
        };
        let tenant = env.var("AZURE_TENANT_ID");
        let client = env.var("AZURE_CLIENT_ID");
        if let Some(file) = env.var("AZURE_FEDERATED_TOKEN_FILE") {
            let (Some(tenant_id), Some(client_id)) = (tenant, client) else {
                return Err(
                    "AZURE_FEDERATED_TOKEN_FILE is set but AZURE_TENANT_ID or AZURE_CLIENT_ID is not"
                        .into(),
                );
            };
            return Ok(CredentialConfig::WorkloadIdentity {
                authority_host,
                tenant_id,
                client_id,
                token_file: file.into(),
            });
        }
        if let Some(secret) = env.var("AZURE_CLIENT_SECRET") {
            let (Some(tenant_id), Some(client_id)) = (tenant, client) else {
                return Err(
                    "AZURE_CLIENT_SECRET is set but AZURE_TENANT_ID or AZURE_CLIENT_ID is not"
                        .into(),
                );
            };
            return Ok(CredentialConfig::ClientSecret {
                authority_host,
                tenant_id,
                client_id,
                client_secret: Secret::new(secret),
            });
        }
        let (endpoint, identity_header) = match env.var("IDENTITY_ENDPOINT") {
            Some(e) => (e, env.var("IDENTITY_HEADER")),
            None => (IMDS_ENDPOINT.to_owned(), None),
        };
        Ok(CredentialConfig::ManagedIdentity(ManagedIdentityConfig {
            endpoint: Url::parse(&endpoint).map_err(|e| format!("IDENTITY_ENDPOINT: {e}"))?,
            identity_header,
            client_id: client,
        }))
    }

    /// Builds the credential; token requests go through `http`.
    pub fn build(self, http: Arc<dyn HttpClient>) -> azure_core::Result<Arc<dyn TokenCredential>> {
        Ok(match self {
            CredentialConfig::WorkloadIdentity {
                authority_host,
                tenant_id,
                client_id,
                token_file,
            } => Arc::new(CachingCredential::new(WorkloadIdentitySource::new(
                http,
                &authority_host,
                &tenant_id,
                client_id,
                token_file,
            )?)),
            CredentialConfig::ManagedIdentity(config) => {
                Arc::new(CachingCredential::new(ManagedIdentitySource {
                    http,
                    config,
                }))
            }
            CredentialConfig::ClientSecret {
                authority_host,
                tenant_id,
                client_id,
                client_secret,
            } => Arc::new(CachingCredential::new(ClientSecretSource::new(
                http,
                &authority_host,
                &tenant_id,
                client_id,
                client_secret,
            )?)),
            CredentialConfig::AzureCli { program, tenant_id } => {
                Arc::new(CachingCredential::new(AzureCliSource {
                    program,
                    tenant_id,
                }))
            }
            CredentialConfig::Static(token) => Arc::new(StaticToken(token)),
        })
    }
}

/// A fixed token that never expires; for armsim, which checks only that a bearer token is sent.
#[derive(Debug, Clone)]
pub struct StaticToken(pub Secret);

#[async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            self.0.clone(),
            OffsetDateTime::now_utc() + std::time::Duration::from_secs(24 * 3600),
        ))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
