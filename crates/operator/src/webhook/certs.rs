//! The webhook's serving certificate.
//!
//! Self-managed (default): poolnet keeps a private CA and a serving certificate in a Secret,
//! every replica serves what the Secret holds and writes the CA bundle into the webhook
//! configurations. One replica renews (the Secret is replaced with a resourceVersion
//! precondition, so concurrent renewals resolve to one); the others pick it up on their next
//! check. The leaf is renewed when a third of its life is left. A CA nearing its end is
//! rotated in two steps so the API server never meets a certificate it does not trust yet:
//! first the next CA joins the bundle, and only a check later does it start signing.
//!
//! From files (cert-manager): a Certificate's Secret is mounted as files; they are re-read
//! when they change, and cert-manager's CA injector fills the caBundle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_util::sync::CancellationToken;

use super::configs::{WebhookConfiguration, ca_bundle_patch};
use super::tls::CertResolver;

const CA_COMMON_NAME: &str = "poolnet-webhook-ca";
/// Certificates start this long before they are made, for clocks slightly behind ours.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    SelfManaged(SelfManaged),
    /// PEM files (e.g. a cert-manager Secret mounted into the pod), re-read every `poll`.
    Files {
        cert: PathBuf,
        key: PathBuf,
        poll: Duration,
    },
}

/// Settings of the self-managed certificate.
#[derive(Debug, Clone)]
pub struct SelfManaged {
    pub namespace: String,
    pub secret_name: String,
    /// DNS names and IP addresses the certificate is valid for, e.g.
    /// `poolnet-webhook.poolnet-system.svc`.
    pub names: Vec<String>,
    /// MutatingWebhookConfigurations whose webhooks get the CA bundle.
    pub mutating_configs: Vec<String>,
    /// ValidatingWebhookConfigurations whose webhooks get the CA bundle.
    pub validating_configs: Vec<String>,
    pub ca_validity: Duration,
    pub leaf_validity: Duration,
    /// How often the Secret and the configurations are checked.
    pub check_interval: Duration,
}

impl SelfManaged {
    /// Defaults: a 10-year CA, 90-day serving certificates, checked every minute.
    pub fn new(namespace: &str, secret_name: &str, names: Vec<String>) -> Self {
        Self {
            namespace: namespace.into(),
            secret_name: secret_name.into(),
            names,
            mutating_configs: Vec::new(),
            validating_configs: Vec::new(),
            ca_validity: Duration::from_secs(10 * 365 * 86400),
            leaf_validity: Duration::from_secs(90 * 86400),
            check_interval: Duration::from_secs(60),
        }
    }
}

// Secret keys.
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
const CA_BUNDLE: &str = "ca.crt";
const CA_CRT: &str = "ca-current.crt";
const CA_KEY: &str = "ca-current.key";
const NEXT_CA_CRT: &str = "ca-next.crt";
const NEXT_CA_KEY: &str = "ca-next.key";
const PREV_CA_CRT: &str = "ca-previous.crt";
// Secret annotations (validity is kept beside the PEM so nothing needs to parse X.509).
const LEAF_NOT_AFTER: &str = "poolnet.dev/leaf-not-after";
const LEAF_NAMES: &str = "poolnet.dev/leaf-names";
const CA_NOT_AFTER: &str = "poolnet.dev/ca-not-after";
const NEXT_CA_NOT_AFTER: &str = "poolnet.dev/ca-next-not-after";
const NEXT_CA_SINCE: &str = "poolnet.dev/ca-next-since";
const PREV_CA_NOT_AFTER: &str = "poolnet.dev/ca-previous-not-after";

/// The PEM material of one generation, as stored in the Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Material {
    pub data: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Material {
    fn get(&self, k: &str) -> Option<&str> {
        self.data
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn time(&self, k: &str) -> Option<Timestamp> {
        self.annotations.get(k).and_then(|v| v.parse().ok())
    }

    /// The CA bundle the API server must trust.
    pub fn bundle(&self) -> Option<&str> {
        self.get(CA_BUNDLE)
    }

    fn from_secret(secret: &Secret) -> Self {
        let data = secret
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|s| (k.clone(), s)))
            .collect();
        Self {
            data,
            annotations: secret.annotations().clone(),
        }
    }
}

/// What a check must do with the stored material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Keep,
    /// No usable CA: make a CA and a leaf.
    Bootstrap,
    /// Add a next CA to the bundle (the current one is ageing).
    StageNextCa,
    /// The next CA has been trusted long enough: make it current and sign a new leaf.
    PromoteNextCa,
    /// Sign a new leaf with the current CA (ageing leaf, or the names changed).
    IssueLeaf,
}

/// Decides what to renew, from the stored material alone.
pub fn renewal(m: &Material, cfg: &SelfManaged, now: Timestamp) -> Renewal {
    let left = |t: Option<Timestamp>| {
        t.and_then(|t| Duration::try_from(t.duration_since(now)).ok())
            .unwrap_or(Duration::ZERO)
    };
    let ca_ok = m.get(CA_CRT).is_some() && m.get(CA_KEY).is_some();
    if !ca_ok || left(m.time(CA_NOT_AFTER)).is_zero() {
        return Renewal::Bootstrap;
    }
    if m.get(NEXT_CA_CRT).is_some() {
        let staged_for = m
            .time(NEXT_CA_SINCE)
            .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
            .unwrap_or(Duration::ZERO);
        // Two check intervals: every replica has injected the new bundle by then.
        if staged_for >= 2 * cfg.check_interval {
            return Renewal::PromoteNextCa;
        }
    } else if left(m.time(CA_NOT_AFTER)) < 2 * cfg.leaf_validity {
        return Renewal::StageNextCa;
    }
    let names = cfg.names.join(",");
    let leaf_ok = m.get(TLS_CRT).is_some()
        && m.get(TLS_KEY).is_some()
        && m.annotations.get(LEAF_NAMES) == Some(&names);
    if !leaf_ok || left(m.time(LEAF_NOT_AFTER)) < cfg.leaf_validity / 3 {
        return Renewal::IssueLeaf;
    }
    Renewal::Keep
}

fn offset(t: Timestamp) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).context("timestamp out of range")
}

fn plus(now: Timestamp, d: Duration) -> Result<Timestamp> {
    now.checked_add(k8s_openapi::jiff::SignedDuration::try_from(d)?)
        .context("timestamp out of range")
}

fn ca_params(now: Timestamp, validity: Duration) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset(plus(now, Duration::ZERO)?)? - BACKDATE;
    params.not_after = offset(plus(now, validity)?)?;
    Ok(params)
}

/// A new CA: (cert PEM, key PEM, not after).
fn new_ca(now: Timestamp, validity: Duration) -> Result<(String, String, Timestamp)> {
    let key = KeyPair::generate().context("generating the webhook CA key")?;
    let cert = ca_params(now, validity)?
        .self_signed(&key)
        .context("self-signing the webhook CA")?;
    Ok((cert.pem(), key.serialize_pem(), plus(now, validity)?))
}

/// A serving certificate for `names`, signed by the CA whose key is `ca_key_pem`:
/// (cert PEM, key PEM, not after).
fn new_leaf(
    ca_key_pem: &str,
    names: &[String],
    now: Timestamp,
    validity: Duration,
) -> Result<(String, String, Timestamp)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("reading the webhook CA key")?;
    // The issuer is rebuilt from the same subject and key: that is all a signature and the
    // authority key identifier depend on, so no X.509 parsing is needed.
    let issuer = Issuer::new(ca_params(now, validity)?, ca_key);
    let mut params = CertificateParams::new(names.to_vec()).context("serving certificate names")?;
    params.distinguished_name.push(
        DnType::CommonName,
        names
            .first()
            .map(String::as_str)
            .unwrap_or("poolnet-webhook"),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = offset(now)? - BACKDATE;
    params.not_after = offset(plus(now, validity)?)?;
    let key = KeyPair::generate().context("generating the serving key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the serving certificate")?;
    Ok((cert.pem(), key.serialize_pem(), plus(now, validity)?))
}

/// Applies `what` to `m`, returning the new material.
pub fn renew(m: &Material, what: Renewal, cfg: &SelfManaged, now: Timestamp) -> Result<Material> {
    let mut out = m.clone();
    let stamp = |t: Timestamp| t.to_string();
    let issue_leaf = |out: &mut Material| -> Result<()> {
        let ca_key = out.data.get(CA_KEY).cloned().unwrap_or_default();
        let (crt, key, not_after) = new_leaf(&ca_key, &cfg.names, now, cfg.leaf_validity)?;
        out.data.insert(TLS_CRT.into(), crt);
        out.data.insert(TLS_KEY.into(), key);
        out.annotations
            .insert(LEAF_NOT_AFTER.into(), stamp(not_after));
        out.annotations
            .insert(LEAF_NAMES.into(), cfg.names.join(","));
        Ok(())
    };
    match what {
        Renewal::Keep => return Ok(out),
        Renewal::Bootstrap => {
            out = Material::default();
            let (crt, key, not_after) = new_ca(now, cfg.ca_validity)?;
            out.data.insert(CA_CRT.into(), crt);
            out.data.insert(CA_KEY.into(), key);
            out.annotations
                .insert(CA_NOT_AFTER.into(), stamp(not_after));
            issue_leaf(&mut out)?;
        }
        Renewal::StageNextCa => {
            let (crt, key, not_after) = new_ca(now, cfg.ca_validity)?;
            out.data.insert(NEXT_CA_CRT.into(), crt);
            out.data.insert(NEXT_CA_KEY.into(), key);
            out.annotations
                .insert(NEXT_CA_NOT_AFTER.into(), stamp(not_after));
            out.annotations.insert(NEXT_CA_SINCE.into(), stamp(now));
        }
        Renewal::PromoteNextCa => {
            let take = |out: &mut Material, k: &str| out.data.remove(k).unwrap_or_default();
            let old_crt = take(&mut out, CA_CRT);
            let old_not_after = out.annotations.remove(CA_NOT_AFTER).unwrap_or_default();
            let next_crt = take(&mut out, NEXT_CA_CRT);
            let next_key = take(&mut out, NEXT_CA_KEY);
            let next_not_after = out
                .annotations
                .remove(NEXT_CA_NOT_AFTER)
                .unwrap_or_default();
            out.annotations.remove(NEXT_CA_SINCE);
            out.data.insert(CA_CRT.into(), next_crt);
            out.data.insert(CA_KEY.into(), next_key);
            out.annotations.insert(CA_NOT_AFTER.into(), next_not_after);
            // The old CA stays trusted until it expires: leaves it signed are still served by
            // replicas that have not reloaded yet.
            out.data.insert(PREV_CA_CRT.into(), old_crt);
            out.annotations
                .insert(PREV_CA_NOT_AFTER.into(), old_not_after);
            issue_leaf(&mut out)?;
        }
        Renewal::IssueLeaf => issue_leaf(&mut out)?,
    }
    // The bundle: current, next, and previous while it is valid.
    let previous_valid = out.time(PREV_CA_NOT_AFTER).is_some_and(|t| t > now);
    if !previous_valid {
        out.data.remove(PREV_CA_CRT);
        out.annotations.remove(PREV_CA_NOT_AFTER);
    }
    let bundle: String = [CA_CRT, NEXT_CA_CRT, PREV_CA_CRT]
        .iter()
        .filter_map(|k| out.get(k))
        .collect();
    out.data.insert(CA_BUNDLE.into(), bundle);
    Ok(out)
}

/// Keeps the serving certificate current until `shutdown`: loads it, renews it when due,
/// installs it into `resolver` and (self-managed) writes the CA bundle into the webhook
/// configurations. Returns once the first certificate is installed if `ready` is given.
pub async fn run_certs(
    client: Client,
    source: CertSource,
    resolver: Arc<CertResolver>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut ready = ready;
    let interval = match &source {
        CertSource::SelfManaged(cfg) => cfg.check_interval,
        CertSource::Files { poll, .. } => *poll,
    };
    loop {
        let result = match &source {
            CertSource::SelfManaged(cfg) => check_self_managed(&client, cfg, &resolver).await,
            CertSource::Files { cert, key, .. } => load_files(cert, key, &resolver).await,
        };
        match result {
            Ok(()) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Err(e) => tracing::warn!(error = format!("{e:#}"), "webhook serving certificate"),
        }
        // Retry soon while nothing is served yet.
        let wait = if resolver.is_loaded() {
            interval
        } else {
            interval.min(Duration::from_secs(2))
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn load_files(cert: &PathBuf, key: &PathBuf, resolver: &CertResolver) -> Result<()> {
    let chain = tokio::fs::read(cert)
        .await
        .with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = tokio::fs::read(key)
        .await
        .with_context(|| format!("reading {}", key.display()))?;
    let leaf = rustls::pki_types::pem::PemObject::pem_slice_iter(&chain)
        .next()
        .transpose()
        .map(|c: Option<rustls::pki_types::CertificateDer<'_>>| c.map(|c| c.as_ref().to_vec()))
        .ok()
        .flatten();
    if leaf.is_some() && leaf == resolver.leaf_der() {
        return Ok(());
    }
    resolver.install_pem(&chain, &key_pem)?;
    tracing::info!(cert = %cert.display(), "webhook serving certificate loaded from files");
    Ok(())
}

/// One self-managed check: read, renew if due (one writer wins), serve, inject the bundle.
pub async fn check_self_managed(
    client: &Client,
    cfg: &SelfManaged,
    resolver: &CertResolver,
) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let existing = secrets
        .get_opt(&cfg.secret_name)
        .await
        .context("reading the webhook certificate Secret")?;
    let current = existing
        .as_ref()
        .map(Material::from_secret)
        .unwrap_or_default();
    let now = Timestamp::now();
    let what = renewal(&current, cfg, now);
    let material = if what == Renewal::Keep {
        current
    } else {
        let next = renew(&current, what, cfg, now)?;
        match write_secret(&secrets, cfg, existing.as_ref(), &next).await? {
            // Another replica renewed first: serve what it wrote.
            false => match secrets.get_opt(&cfg.secret_name).await? {
                Some(s) => Material::from_secret(&s),
                None => bail!("the webhook certificate Secret vanished while renewing"),
            },
            true => {
                tracing::info!(?what, secret = %cfg.secret_name, "webhook serving certificate renewed");
                next
            }
        }
    };
    let (Some(crt), Some(key)) = (material.get(TLS_CRT), material.get(TLS_KEY)) else {
        bail!("the webhook certificate Secret has no tls.crt / tls.key yet");
    };
    let leaf = rustls::pki_types::pem::PemObject::pem_slice_iter(crt.as_bytes())
        .next()
        .and_then(|c: Result<rustls::pki_types::CertificateDer<'_>, _>| c.ok())
        .map(|c| c.as_ref().to_vec());
    if leaf.is_none() || leaf != resolver.leaf_der() {
        resolver.install_pem(crt.as_bytes(), key.as_bytes())?;
    }
    if let Some(bundle) = material.bundle() {
        inject_ca_bundle(client, cfg, bundle.as_bytes()).await?;
    }
    Ok(())
}

/// Creates or replaces the Secret; `false` when another writer got there first.
async fn write_secret(
    secrets: &Api<Secret>,
    cfg: &SelfManaged,
    existing: Option<&Secret>,
    m: &Material,
) -> Result<bool> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(cfg.secret_name.clone()),
            namespace: Some(cfg.namespace.clone()),
            annotations: Some(m.annotations.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "poolnet".to_string(),
            )])),
            resource_version: existing.and_then(|s| s.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            m.data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    };
    let pp = PostParams::default();
    let result = match existing {
        None => secrets.create(&pp, &secret).await,
        Some(_) => secrets.replace(&cfg.secret_name, &pp, &secret).await,
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e).context("writing the webhook certificate Secret"),
    }
}

/// Writes `bundle` into every webhook of the named configurations that lacks it.
async fn inject_ca_bundle(client: &Client, cfg: &SelfManaged, bundle: &[u8]) -> Result<()> {
    inject_into::<MutatingWebhookConfiguration>(client, &cfg.mutating_configs, bundle).await?;
    inject_into::<ValidatingWebhookConfiguration>(client, &cfg.validating_configs, bundle).await
}

/// One JSON patch per configuration of kind `K` ([`ca_bundle_patch`]).
async fn inject_into<K: WebhookConfiguration>(
    client: &Client,
    names: &[String],
    bundle: &[u8],
) -> Result<()> {
    let api: Api<K> = Api::all(client.clone());
    for name in names {
        let Some(config) = api.get_opt(name).await? else {
            tracing::debug!(%name, "{} not found (yet)", K::kind(&()));
            continue;
        };
        let ops = ca_bundle_patch(&config, bundle);
        if ops.is_empty() {
            continue;
        }
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))?;
        match api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => {}
            // A failed `test` (reordered meanwhile): the next check looks again.
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("writing the CA bundle into {name}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SelfManaged {
        let mut c = SelfManaged::new(
            "poolnet-system",
            "poolnet-webhook-tls",
            vec![
                "poolnet-webhook.poolnet-system.svc".into(),
                "127.0.0.1".into(),
            ],
        );
        c.ca_validity = Duration::from_secs(1000 * 86400);
        c.leaf_validity = Duration::from_secs(90 * 86400);
        c
    }

    fn days(n: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_hours(24 * n)
    }

    #[test]
    fn lifecycle_of_leaf_and_ca() {
        let cfg = cfg();
        let t0 = Timestamp::now();
        let empty = Material::default();
        assert_eq!(renewal(&empty, &cfg, t0), Renewal::Bootstrap);
        let m = renew(&empty, Renewal::Bootstrap, &cfg, t0).unwrap();
        assert_eq!(renewal(&m, &cfg, t0), Renewal::Keep);
        // The served pair is valid and matches.
        CertResolver::new()
            .install_pem(m.data[TLS_CRT].as_bytes(), m.data[TLS_KEY].as_bytes())
            .unwrap();
        // A third of the leaf's life left: reissue, same CA.
        let t1 = t0 + days(61);
        assert_eq!(renewal(&m, &cfg, t1), Renewal::IssueLeaf);
        let m1 = renew(&m, Renewal::IssueLeaf, &cfg, t1).unwrap();
        assert_ne!(m1.data[TLS_CRT], m.data[TLS_CRT]);
        assert_eq!(m1.bundle(), m.bundle());
        // Names changed: reissue.
        let mut other = cfg.clone();
        other
            .names
            .push("poolnet-webhook.poolnet-system.svc.cluster.local".into());
        assert_eq!(renewal(&m1, &other, t1), Renewal::IssueLeaf);

        // The CA nears its end: stage the next CA (bundle grows, leaf unchanged)...
        let t2 = t0 + days(1000 - 170);
        let m2 = renew(&m1, renewal(&m1, &cfg, t2), &cfg, t2).unwrap();
        assert!(m2.data.contains_key(NEXT_CA_CRT));
        assert_eq!(m2.data[TLS_CRT], m1.data[TLS_CRT]);
        assert_eq!(m2.bundle().unwrap().matches("BEGIN CERTIFICATE").count(), 2);
        // ...not promoted before every replica can have injected the bundle...
        assert_ne!(renewal(&m2, &cfg, t2), Renewal::PromoteNextCa);
        // ...then promoted: new leaf, old CA still trusted until it expires.
        let t3 = t2 + k8s_openapi::jiff::SignedDuration::from_secs(121);
        assert_eq!(renewal(&m2, &cfg, t3), Renewal::PromoteNextCa);
        let m3 = renew(&m2, Renewal::PromoteNextCa, &cfg, t3).unwrap();
        assert_eq!(m3.data[CA_CRT], m2.data[NEXT_CA_CRT]);
        assert_ne!(m3.data[TLS_CRT], m2.data[TLS_CRT]);
        assert_eq!(m3.bundle().unwrap().matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(renewal(&m3, &cfg, t3), Renewal::Keep);
        // Once the old CA has expired, a renewal drops it from the bundle.
        let t4 = t0 + days(1001);
        let m4 = renew(&m3, Renewal::IssueLeaf, &cfg, t4).unwrap();
        assert_eq!(m4.bundle().unwrap().matches("BEGIN CERTIFICATE").count(), 1);
    }
}
