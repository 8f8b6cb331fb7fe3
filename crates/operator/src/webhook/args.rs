//! Flags of the webhook server and the host-port repair loop, to flatten into the
//! operator's flags (`#[command(flatten)]`); each also readable from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::hostports::repair::{CREATE_DEADLINE, DEFAULT_CONFIRM_AFTER};
use crate::hostports::{ReleasePolicy, RepairConfig};
use crate::runtime::parse_duration;

use super::certs::{CertSource, SelfManaged};

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Serve the admission webhooks (pod host ports, NodePoolNetwork / HostPortPolicy
    /// validation). Without them HostPortPolicies still open their ports in the NSGs, but no
    /// pod gets a host port assigned and only the CRD schema validates input.
    #[arg(long, env = "POOLNET_WEBHOOKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhooks: bool,

    /// Address of the admission webhook server (HTTPS).
    #[arg(long, env = "POOLNET_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,

    /// Serving certificate file (PEM chain), e.g. mounted from a cert-manager Secret; with
    /// --webhook-key-file it replaces the self-managed certificate. Re-read when it changes.
    #[arg(long, env = "POOLNET_WEBHOOK_CERT_FILE", requires = "webhook_key_file")]
    pub webhook_cert_file: Option<PathBuf>,

    /// Private key file (PEM) of --webhook-cert-file.
    #[arg(long, env = "POOLNET_WEBHOOK_KEY_FILE", requires = "webhook_cert_file")]
    pub webhook_key_file: Option<PathBuf>,

    /// Secret (in the operator's namespace) holding the self-managed CA and certificate.
    #[arg(
        long,
        env = "POOLNET_WEBHOOK_SECRET",
        default_value = "poolnet-webhook-tls"
    )]
    pub webhook_secret: String,

    /// Service fronting the webhook; its DNS names go into the self-managed certificate.
    #[arg(
        long,
        env = "POOLNET_WEBHOOK_SERVICE",
        default_value = "poolnet-webhook"
    )]
    pub webhook_service: String,

    /// Extra DNS names or IP addresses for the self-managed certificate, for webhook
    /// configurations that call a `url` instead of the Service (e.g. `127.0.0.1` locally).
    #[arg(long, env = "POOLNET_WEBHOOK_EXTRA_NAMES", value_delimiter = ',')]
    pub webhook_extra_names: Vec<String>,

    /// MutatingWebhookConfigurations whose caBundle poolnet keeps current (self-managed).
    #[arg(
        long,
        env = "POOLNET_MUTATING_WEBHOOKS",
        value_delimiter = ',',
        default_value = "poolnet-host-ports"
    )]
    pub mutating_webhooks: Vec<String>,

    /// ValidatingWebhookConfigurations whose caBundle poolnet keeps current (self-managed).
    #[arg(
        long,
        env = "POOLNET_VALIDATING_WEBHOOKS",
        value_delimiter = ',',
        default_value = "poolnet-validation"
    )]
    pub validating_webhooks: Vec<String>,

    /// Time one pod admission may take; below the configurations' timeoutSeconds (10), so a
    /// reservation the API server stopped waiting for is rolled back by its owner.
    #[arg(long, env = "POOLNET_WEBHOOK_BUDGET", default_value = "8s", value_parser = parse_duration)]
    pub webhook_budget: Duration,

    /// Give automatic host ports from HostPortBlocks this replica holds (64 ports each,
    /// kept by one Lease per replica), with no API write per admission; static ports
    /// outside every block keep one HostPortClaim each. Off: every port is a claim.
    #[arg(long, env = "POOLNET_HOST_PORT_BLOCKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub host_port_blocks: bool,

    /// How old a host-port claim that no pod carries must be before the repair loop may
    /// release it (a later admission step refused its pod, or the request timed out). At
    /// least 34s, the API server's deadline for storing a created pod; the default adds a
    /// margin for clock skew.
    #[arg(long, env = "POOLNET_HOST_PORT_GRACE", default_value = "39s", value_parser = parse_grace)]
    pub host_port_grace: Duration,

    /// Period of the host-port repair loop.
    #[arg(long, env = "POOLNET_HOST_PORT_REPAIR_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub host_port_repair_interval: Duration,
}

impl WebhookArgs {
    /// Where the serving certificate comes from; `namespace` is the operator's own.
    pub fn cert_source(&self, namespace: &str) -> CertSource {
        match (&self.webhook_cert_file, &self.webhook_key_file) {
            (Some(cert), Some(key)) => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
                poll: Duration::from_secs(10),
            },
            _ => {
                let svc = &self.webhook_service;
                let mut names = vec![
                    format!("{svc}.{namespace}.svc"),
                    format!("{svc}.{namespace}.svc.cluster.local"),
                ];
                names.extend(self.webhook_extra_names.iter().cloned());
                let mut cfg = SelfManaged::new(namespace, &self.webhook_secret, names);
                cfg.mutating_configs = self.mutating_webhooks.clone();
                cfg.validating_configs = self.validating_webhooks.clone();
                CertSource::SelfManaged(cfg)
            }
        }
    }

    pub fn repair(&self) -> RepairConfig {
        RepairConfig {
            interval: self.host_port_repair_interval,
            release: ReleasePolicy {
                grace: self.host_port_grace,
                confirm_after: DEFAULT_CONFIRM_AFTER,
            },
            ..RepairConfig::default()
        }
    }
}

/// A grace period shorter than the API server's create deadline would release the claim of
/// a pod that is still being admitted (S3).
fn parse_grace(s: &str) -> Result<Duration, String> {
    let grace = parse_duration(s)?;
    if grace < CREATE_DEADLINE {
        return Err(format!(
            "{grace:?} is shorter than {CREATE_DEADLINE:?}, the API server's deadline for \
             storing a pod after its admission: a claim could be released while its pod is \
             still being created"
        ));
    }
    Ok(grace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        webhook: WebhookArgs,
    }

    #[test]
    fn defaults_are_self_managed_for_the_shipped_configurations() {
        let f = Flags::try_parse_from(["poolnet"]).unwrap();
        let CertSource::SelfManaged(cfg) = f.webhook.cert_source("poolnet-system") else {
            panic!("expected self-managed");
        };
        assert_eq!(cfg.names[0], "poolnet-webhook.poolnet-system.svc");
        assert_eq!(cfg.mutating_configs, ["poolnet-host-ports"]);
        assert_eq!(cfg.validating_configs, ["poolnet-validation"]);
        assert_eq!(f.webhook.repair().release.grace, Duration::from_secs(39));
        assert_eq!(f.webhook.repair(), RepairConfig::default());
        assert!(Flags::try_parse_from(["poolnet", "--host-port-grace=10s"]).is_err());
        assert!(f.webhook.webhooks);
        let local = Flags::try_parse_from([
            "poolnet",
            "--webhooks=false",
            "--webhook-extra-names=127.0.0.1,localhost",
        ])
        .unwrap();
        assert!(!local.webhook.webhooks);
        let CertSource::SelfManaged(cfg) = local.webhook.cert_source("ns") else {
            panic!("expected self-managed");
        };
        assert_eq!(cfg.names[2..], ["127.0.0.1", "localhost"]);
        let files = Flags::try_parse_from([
            "poolnet",
            "--webhook-cert-file=/tls/tls.crt",
            "--webhook-key-file=/tls/tls.key",
        ])
        .unwrap();
        assert!(matches!(
            files.webhook.cert_source("x"),
            CertSource::Files { .. }
        ));
        assert!(Flags::try_parse_from(["poolnet", "--webhook-cert-file=/tls/tls.crt"]).is_err());
    }
}
