//! The webhook's serving certificate: poolnet's own (renewed and, for its CA, rotated in two
//! steps while pods keep being admitted) and cert-manager style files re-read on change.

mod hostports_support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hostports_support::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use poolnet_tests::TestEnv;

/// Creates pods for `period`, one at a time; every creation must succeed.
async fn admit_for(client: &Client, ns: &str, period: Duration) -> Result<usize> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + period;
    let mut n = 0;
    while tokio::time::Instant::now() < deadline {
        let p = pods
            .create(&PostParams::default(), &echo_pod("rot-"))
            .await
            .with_context(|| format!("creation {n} during certificate rotation"))?;
        ensure!(host_ports(&p).len() == 2);
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(n)
}

async fn bundles(client: &Client, configs: &Configs) -> Result<BTreeSet<Vec<u8>>> {
    let m = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(&configs.mutating)
        .await?;
    let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(&configs.validating)
        .await?;
    Ok(m.webhooks
        .iter()
        .flatten()
        .map(|h| {
            h.client_config
                .ca_bundle
                .clone()
                .map(|b| b.0)
                .unwrap_or_default()
        })
        .chain(v.webhooks.iter().flatten().map(|h| {
            h.client_config
                .ca_bundle
                .clone()
                .map(|b| b.0)
                .unwrap_or_default()
        }))
        .collect())
}

#[tokio::test]
async fn self_managed_certificate_is_renewed_and_its_ca_rotated_without_failed_admissions()
-> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    // Lifetimes shrunk so a renewal (a third of the leaf's life left) and a CA rotation
    // (less than two leaf lifetimes left) happen within the test.
    let opts = Options {
        leaf_validity: Duration::from_secs(9),
        ca_validity: Duration::from_secs(30),
        check_interval: Duration::from_millis(500),
        ..Options::default()
    };
    let poolnet = Instance::start(&client, &ns, &configs, opts).await?;
    activate(&client, &ns, &poolnet.base_url()).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ca_of = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("ca-current.crt"))
            .cloned()
    };
    let first_ca = ca_of(&secrets.get(SECRET).await?);
    let first_leaf = poolnet.resolver.leaf_der();
    // The CA is staged at ~12 s, promoted a second later; leaves renew every ~6 s.
    let n = admit_for(&client, &ns, Duration::from_secs(16)).await?;
    ensure!(n > 20, "only {n} pods admitted");
    ensure!(
        poolnet.resolver.leaf_der() != first_leaf,
        "the serving certificate was renewed"
    );
    let secret = secrets.get(SECRET).await?;
    ensure!(ca_of(&secret) != first_ca, "the CA was rotated");
    // The configurations trust what the Secret says (current CA, plus the old one while it
    // is valid).
    let bundle = secret
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let injected = eventually("bundle injected", Duration::from_secs(10), || async {
        let b = bundles(&client, &configs).await?;
        ensure!(
            b.len() == 1 && b.contains(&bundle),
            "{} distinct bundles",
            b.len()
        );
        Ok(b)
    })
    .await?;
    ensure!(!injected.is_empty());
    Ok(())
}

#[tokio::test]
async fn certificate_files_are_reloaded_when_they_change() -> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    // Files as a cert-manager Certificate's Secret mounted into the pod would provide.
    let ca = poolnet_tests::pki::Ca::new("cert-manager-test-ca")?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let leaf = ca.issue_server(&["127.0.0.1"])?;
    std::fs::write(&cert, &leaf.cert_pem)?;
    std::fs::write(&key, &leaf.key_pem)?;
    let poolnet = Instance::start(
        &client,
        &ns,
        &configs,
        Options {
            cert_files: Some((cert.clone(), key.clone())),
            check_interval: Duration::from_millis(200),
            ..Options::default()
        },
    )
    .await?;
    install_webhooks(&client, &ns, &poolnet.base_url()).await?;
    // cert-manager's CA injector's job.
    inject(&client, &configs, ca.cert_pem()).await?;
    wait_active(&client, &ns).await?;
    let before = poolnet.resolver.leaf_der();
    ensure!(before.as_deref() == Some(leaf.cert_der.as_slice()));

    // cert-manager renews: new files, same CA.
    let renewed = ca.issue_server(&["127.0.0.1"])?;
    std::fs::write(&key, &renewed.key_pem)?;
    std::fs::write(&cert, &renewed.cert_pem)?;
    eventually("renewed files served", Duration::from_secs(10), || async {
        ensure!(poolnet.resolver.leaf_der().as_deref() == Some(renewed.cert_der.as_slice()));
        Ok(())
    })
    .await?;
    admit_for(&client, &ns, Duration::from_millis(500)).await?;
    Ok(())
}

async fn inject(client: &Client, configs: &Configs, ca_pem: &str) -> Result<()> {
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut m = mutating.get(&configs.mutating).await?;
    for h in m.webhooks.iter_mut().flatten() {
        h.client_config.ca_bundle = Some(bundle.clone());
    }
    mutating
        .replace(&configs.mutating, &PostParams::default(), &m)
        .await?;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut v = validating.get(&configs.validating).await?;
    for h in v.webhooks.iter_mut().flatten() {
        h.client_config.ca_bundle = Some(bundle.clone());
    }
    validating
        .replace(&configs.validating, &PostParams::default(), &v)
        .await?;
    Ok(())
}
