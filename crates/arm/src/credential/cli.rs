//! Azure CLI (`az account get-access-token`) for running the operator from a developer's machine.

use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret};
use serde::Deserialize;
use time::OffsetDateTime;

use super::aad::{NumberOrString, credential_error};
use super::cache::TokenSource;

#[derive(Debug, Clone)]
pub struct AzureCliSource {
    /// The `az` executable.
    pub program: String,
    pub tenant_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CliToken {
    access_token: String,
    /// Unix seconds, printed by CLI 2.54 and later.
    #[serde(default)]
    expires_on: Option<NumberOrString>,
    #[serde(default, rename = "expires_on")]
    expires_on_unix: Option<NumberOrString>,
}

/// Reads `az account get-access-token -o json` output. Older CLIs print only a local-time
/// `expiresOn` without a zone; rather than guess the zone, such tokens are treated as valid for
/// five minutes, which only costs extra `az` runs.
pub(crate) fn parse_cli_output(stdout: &[u8], now: OffsetDateTime) -> Result<AccessToken, String> {
    let token: CliToken = serde_json::from_slice(stdout)
        .map_err(|e| format!("az output is not a token document: {e}"))?;
    let expires_on = token
        .expires_on_unix
        .as_ref()
        .or(token.expires_on.as_ref())
        .and_then(NumberOrString::as_i64)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .unwrap_or(now + Duration::from_secs(300));
    Ok(AccessToken::new(
        Secret::new(token.access_token),
        expires_on,
    ))
}

#[async_trait]
impl TokenSource for AzureCliSource {
    async fn fetch(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(credential_error(
                "azure cli: exactly one scope is supported",
            ));
        };
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(["account", "get-access-token", "--output", "json", "--scope"])
            .arg(scope);
        if let Some(t) = &self.tenant_id {
            cmd.args(["--tenant", t]);
        }
        let out = cmd.output().await.map_err(|e| {
            credential_error(format!("azure cli: cannot run {}: {e}", self.program))
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(credential_error(format!(
                "azure cli: `{} account get-access-token` failed ({}): {}",
                self.program,
                out.status,
                stderr.trim()
            )));
        }
        parse_cli_output(&out.stdout, OffsetDateTime::now_utc())
            .map_err(|e| credential_error(format!("azure cli: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_unix_expiry() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let t = parse_cli_output(
            br#"{"accessToken":"abc","expiresOn":"2023-11-14 23:13:20.000000","expires_on":1700003600,"tokenType":"Bearer"}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.token.secret(), "abc");
        assert_eq!(t.expires_on.unix_timestamp(), 1_700_003_600);
    }

    #[test]
    fn zone_less_expiry_gets_a_short_life() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let t = parse_cli_output(
            br#"{"accessToken":"abc","expiresOn":"2023-11-14 23:13:20.000000"}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.expires_on, now + Duration::from_secs(300));
        assert!(parse_cli_output(b"ERROR: Please run 'az login'", now).is_err());
    }
}
