use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::test_http::serve;
use crate::transport::{TransportConfig, http_client};

const SCOPE: &str = "https://management.azure.com/.default";

fn http() -> Arc<dyn HttpClient> {
    http_client(&TransportConfig::default()).unwrap()
}

struct MapEnv(HashMap<&'static str, &'static str>);

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| (*v).to_owned())
    }
}

fn temp_token_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "poolnet-arm-{tag}-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("azure-identity-token")
}

/// The projected token file is rotated by the kubelet; every refresh must send the current content.
#[tokio::test]
async fn workload_identity_rereads_the_token_file_on_every_refresh() {
    let issued = Arc::new(AtomicU32::new(0));
    let counter = issued.clone();
    // Tokens live 2 s, so the cache refreshes them after 1 s (half-life).
    let server = serve(move |req| {
        if req.form("client_assertion").as_deref() == Some("expired-jwt") {
            return (
                400,
                r#"{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range."}"#.into(),
            );
        }
        let n = counter.fetch_add(1, Ordering::SeqCst);
        (
            200,
            format!(r#"{{"token_type":"Bearer","expires_in":2,"access_token":"aad-{n}"}}"#),
        )
    })
    .await;
    let file = temp_token_file("wi");
    std::fs::write(&file, "jwt-one\n").unwrap();
    let cred = CredentialConfig::WorkloadIdentity {
        authority_host: Url::parse(&server.base).unwrap(),
        tenant_id: "tenant-1".into(),
        client_id: "client-1".into(),
        token_file: file.clone(),
    }
    .build(http())
    .unwrap();

    let first = cred.get_token(&[SCOPE]).await.unwrap();
    assert_eq!(first.token.secret(), "aad-0");
    // Cached: no second request.
    let again = cred.get_token(&[SCOPE]).await.unwrap();
    assert_eq!(again.token.secret(), "aad-0");
    assert_eq!(server.recorded().len(), 1);

    // The kubelet rotates the projected token.
    std::fs::write(&file, "jwt-two").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let refreshed = cred.get_token(&[SCOPE]).await.unwrap();
    assert_eq!(refreshed.token.secret(), "aad-1");

    let reqs = server.recorded();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/tenant-1/oauth2/v2.0/token");
        assert_eq!(r.form("client_id").as_deref(), Some("client-1"));
        assert_eq!(r.form("grant_type").as_deref(), Some("client_credentials"));
        assert_eq!(
            r.form("client_assertion_type").as_deref(),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert_eq!(r.form("scope").as_deref(), Some(SCOPE));
    }
    assert_eq!(reqs[0].form("client_assertion").as_deref(), Some("jwt-one"));
    assert_eq!(reqs[1].form("client_assertion").as_deref(), Some("jwt-two"));

    // An identity-provider refusal surfaces its description once the cached token is gone.
    std::fs::write(&file, "expired-jwt").unwrap();
    cred.clear_cache().await.unwrap();
    let err = cred.get_token(&[SCOPE]).await.unwrap_err();
    assert!(err.to_string().contains("AADSTS700024"), "{err}");

    std::fs::remove_file(&file).unwrap();
    // Right after a failure the cache backs off and repeats the last error ...
    let err = cred.get_token(&[SCOPE]).await.unwrap_err();
    assert!(err.to_string().contains("AADSTS700024"), "{err}");
    // ... and tries again once the first backoff step (1 s) is over.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let err = cred.get_token(&[SCOPE]).await.unwrap_err();
    assert!(
        err.to_string().contains("cannot read federated token file"),
        "{err}"
    );
}

#[tokio::test]
async fn client_secret_posts_the_secret() {
    let server = serve(|_| {
        (
            200,
            r#"{"token_type":"Bearer","expires_in":"3599","access_token":"cs"}"#.into(),
        )
    })
    .await;
    let cred = CredentialConfig::ClientSecret {
        authority_host: Url::parse(&server.base).unwrap(),
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret: Secret::new("s3cret"),
    }
    .build(http())
    .unwrap();
    let token = cred.get_token(&[SCOPE]).await.unwrap();
    assert_eq!(token.token.secret(), "cs");
    let remaining = token.expires_on - OffsetDateTime::now_utc();
    assert!(remaining.whole_seconds() > 3500);
    let req = &server.recorded()[0];
    assert_eq!(req.form("client_secret").as_deref(), Some("s3cret"));
}

#[tokio::test]
async fn managed_identity_asks_for_the_resource() {
    let server = serve(|_| {
        (
            200,
            r#"{"access_token":"mi","expires_on":"4102444800","resource":"https://management.azure.com/"}"#
                .into(),
        )
    })
    .await;
    let cred = CredentialConfig::ManagedIdentity(ManagedIdentityConfig {
        endpoint: Url::parse(&format!("{}metadata/identity/oauth2/token", server.base)).unwrap(),
        identity_header: None,
        client_id: Some("uami".into()),
    })
    .build(http())
    .unwrap();
    let token = cred.get_token(&[SCOPE]).await.unwrap();
    assert_eq!(token.token.secret(), "mi");
    assert_eq!(token.expires_on.unix_timestamp(), 4_102_444_800);
    let req = &server.recorded()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.header("metadata"), Some("true"));
    let url = Url::parse(&format!("http://x{}", req.target)).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["resource"], "https://management.azure.com/");
    assert_eq!(q["client_id"], "uami");
    assert_eq!(q["api-version"], "2018-02-01");
}

#[test]
fn selection_from_environment() {
    let env = MapEnv(HashMap::from([
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_CLIENT_SECRET", "ignored"),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
    ]));
    match CredentialConfig::from_env(&env).unwrap() {
        CredentialConfig::WorkloadIdentity { authority_host, .. } => {
            assert_eq!(authority_host.as_str(), "https://login.microsoftonline.us/")
        }
        other => panic!("expected workload identity, got {other:?}"),
    }

    let env = MapEnv(HashMap::from([("AZURE_FEDERATED_TOKEN_FILE", "/f")]));
    assert!(
        CredentialConfig::from_env(&env)
            .unwrap_err()
            .contains("AZURE_TENANT_ID")
    );

    let env = MapEnv(HashMap::from([
        ("AZURE_CLIENT_SECRET", "hunter2-secret"),
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
    ]));
    let secret = CredentialConfig::from_env(&env).unwrap();
    assert!(matches!(secret, CredentialConfig::ClientSecret { .. }));
    assert!(!format!("{secret:?}").contains("hunter2"));

    let env = MapEnv(HashMap::from([("AZURE_CLIENT_ID", "uami")]));
    match CredentialConfig::from_env(&env).unwrap() {
        CredentialConfig::ManagedIdentity(c) => {
            assert_eq!(c.endpoint.as_str(), IMDS_ENDPOINT);
            assert_eq!(c.client_id.as_deref(), Some("uami"));
        }
        other => panic!("expected managed identity, got {other:?}"),
    }
}
