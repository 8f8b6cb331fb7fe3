//! The two kinds of webhook configuration, handled alike: poolnet writes its CA bundle into
//! the webhooks of both ([`ca_bundle_patch`]), and points both at a URL when it is served
//! outside the cluster ([`point_at_url`], `poolnet-operator webhook-config`).

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use serde::Deserialize;

/// A Mutating- or ValidatingWebhookConfiguration, seen as its webhooks' client configurations.
pub trait WebhookConfiguration:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Each webhook's name and client configuration, in order.
    fn client_configs(&self) -> Vec<(&str, &WebhookClientConfig)>;
    fn client_configs_mut(&mut self) -> Vec<&mut WebhookClientConfig>;
}

macro_rules! webhook_configuration {
    ($kind:ty) => {
        impl WebhookConfiguration for $kind {
            fn client_configs(&self) -> Vec<(&str, &WebhookClientConfig)> {
                self.webhooks
                    .iter()
                    .flatten()
                    .map(|h| (h.name.as_str(), &h.client_config))
                    .collect()
            }

            fn client_configs_mut(&mut self) -> Vec<&mut WebhookClientConfig> {
                self.webhooks
                    .iter_mut()
                    .flatten()
                    .map(|h| &mut h.client_config)
                    .collect()
            }
        }
    };
}
webhook_configuration!(MutatingWebhookConfiguration);
webhook_configuration!(ValidatingWebhookConfiguration);

/// JSON-patch operations setting `caBundle` to `bundle` in every webhook of `config` that
/// differs; empty when none does. Each write is guarded by a `test` of the webhook's name,
/// so a configuration reordered meanwhile fails the patch instead of being written at the
/// wrong index.
pub fn ca_bundle_patch(
    config: &impl WebhookConfiguration,
    bundle: &[u8],
) -> Vec<serde_json::Value> {
    let encoded = ByteString(bundle.to_vec());
    let mut ops = Vec::new();
    for (i, (hook, client_config)) in config.client_configs().into_iter().enumerate() {
        if client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle) {
            continue;
        }
        ops.push(
            serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": hook}),
        );
        ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    ops
}

/// One document of a webhook configuration file.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyWebhookConfiguration {
    Mutating(MutatingWebhookConfiguration),
    Validating(ValidatingWebhookConfiguration),
}

/// The configurations in `yaml` (e.g. `config/webhook/webhooks.yaml`) with every webhook that
/// calls a Service calling `url_base` + the Service's path instead (`https://127.0.0.1:9443`
/// → `https://127.0.0.1:9443/mutate/pods`): for a poolnet served outside the cluster, as in
/// the demo and the integration tests. Everything else is kept as written.
pub fn configs_at_url(yaml: &str, url_base: &str) -> Result<Vec<AnyWebhookConfiguration>> {
    let url_base = url_base.trim_end_matches('/');
    let mut configs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("document {} is not YAML", i + 1))?;
        let kind = value.get("kind").and_then(|k| k.as_str());
        let config = match kind {
            Some("MutatingWebhookConfiguration") => {
                let mut c: MutatingWebhookConfiguration =
                    serde_yaml::from_value(value).with_context(|| format!("document {}", i + 1))?;
                point_at_url(&mut c, url_base);
                AnyWebhookConfiguration::Mutating(c)
            }
            Some("ValidatingWebhookConfiguration") => {
                let mut c: ValidatingWebhookConfiguration =
                    serde_yaml::from_value(value).with_context(|| format!("document {}", i + 1))?;
                point_at_url(&mut c, url_base);
                AnyWebhookConfiguration::Validating(c)
            }
            other => bail!(
                "document {} is a {other:?}, not a Mutating- or ValidatingWebhookConfiguration",
                i + 1
            ),
        };
        configs.push(config);
    }
    Ok(configs)
}

fn point_at_url(config: &mut impl WebhookConfiguration, url_base: &str) {
    for client_config in config.client_configs_mut() {
        if let Some(service) = client_config.service.take() {
            let path = service.path.as_deref().unwrap_or("/");
            client_config.url = Some(format!("{url_base}{path}"));
        }
    }
}

/// `configs` as one multi-document YAML stream.
pub fn to_yaml(configs: &[AnyWebhookConfiguration]) -> Result<String> {
    let mut out = String::new();
    for (i, config) in configs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&match config {
            AnyWebhookConfiguration::Mutating(c) => serde_yaml::to_string(c)?,
            AnyWebhookConfiguration::Validating(c) => serde_yaml::to_string(c)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/webhook/webhooks.yaml"
        );
        std::fs::read_to_string(path).expect("the shipped webhook configurations")
    }

    #[test]
    fn shipped_configurations_point_at_a_url() {
        let configs = configs_at_url(&shipped(), "https://127.0.0.1:9443/").unwrap();
        let mut urls = Vec::new();
        for config in &configs {
            let hooks = match config {
                AnyWebhookConfiguration::Mutating(c) => c.client_configs(),
                AnyWebhookConfiguration::Validating(c) => c.client_configs(),
            };
            for (name, client_config) in hooks {
                assert!(client_config.service.is_none(), "{name}");
                assert!(client_config.ca_bundle.is_none(), "{name}");
                urls.push(client_config.url.clone().unwrap_or_default());
            }
        }
        assert_eq!(
            urls,
            [
                "https://127.0.0.1:9443/mutate/pods",
                "https://127.0.0.1:9443/mutate/pods",
                "https://127.0.0.1:9443/validate/poolnet",
            ]
        );
        assert!(matches!(&configs[0], AnyWebhookConfiguration::Mutating(c)
            if c.metadata.name.as_deref() == Some("poolnet-host-ports")));
        assert!(matches!(&configs[1], AnyWebhookConfiguration::Validating(c)
            if c.metadata.name.as_deref() == Some("poolnet-validation")));
        // Printed and read back, nothing is lost.
        let again = configs_at_url(&to_yaml(&configs).unwrap(), "https://elsewhere").unwrap();
        assert_eq!(again, configs);
    }

    #[test]
    fn other_documents_are_refused() {
        let err = configs_at_url("apiVersion: v1\nkind: ConfigMap\n", "https://x").unwrap_err();
        assert!(format!("{err:#}").contains("ConfigMap"), "{err:#}");
    }

    #[test]
    fn ca_bundle_is_patched_where_it_differs_by_name_and_index() {
        let mut c = match configs_at_url(&shipped(), "https://127.0.0.1:1")
            .unwrap()
            .remove(0)
        {
            AnyWebhookConfiguration::Mutating(c) => c,
            other => panic!("{other:?}"),
        };
        c.client_configs_mut()[0].ca_bundle = Some(ByteString(b"PEM".to_vec()));
        let ops = ca_bundle_patch(&c, b"PEM");
        assert_eq!(
            ops,
            [
                serde_json::json!({"op": "test", "path": "/webhooks/1/name", "value": "policy.host-ports.poolnet.dev"}),
                serde_json::json!({"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "UEVN"}),
            ]
        );
        c.client_configs_mut()[1].ca_bundle = Some(ByteString(b"PEM".to_vec()));
        assert!(ca_bundle_patch(&c, b"PEM").is_empty());
    }
}
